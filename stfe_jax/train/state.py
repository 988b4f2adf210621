"""The train state and the optimiser: warm-up, decay, clipping, weight decay."""

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
    """Step, parameters and optimiser state (``flax.training`` train state)."""


def learning_rate_schedule(train_config: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up to ``learning_rate`` over ``warmup_steps``, then cosine or
    linear decay to ``learning_rate * end_learning_rate_factor`` at ``steps``."""
    peak = train_config.learning_rate
    end = peak * train_config.end_learning_rate_factor
    warmup = min(train_config.warmup_steps, max(train_config.steps - 1, 0))
    decay_steps = max(train_config.steps - warmup, 1)
    if train_config.decay == "cosine":
        decay = optax.cosine_decay_schedule(
            peak, decay_steps, alpha=train_config.end_learning_rate_factor
        )
    elif train_config.decay == "linear":
        decay = optax.linear_schedule(peak, end, decay_steps)
    elif train_config.decay == "constant":
        decay = optax.constant_schedule(peak)
    else:
        raise ValueError(
            f"unknown decay {train_config.decay!r}; expected cosine, linear or constant"
        )
    warmup_schedule = optax.linear_schedule(peak / max(warmup, 1), peak, warmup)
    return optax.join_schedules([warmup_schedule, decay], [warmup])


def make_optimizer(train_config: ml_collections.ConfigDict):
    """AdamW on the schedule, after clipping the global gradient norm."""
    return optax.chain(
        optax.clip_by_global_norm(train_config.grad_clip_norm),
        optax.adamw(
            learning_rate_schedule(train_config),
            weight_decay=train_config.weight_decay,
        ),
    )


def create_train_state(
    model: nn.Module,
    example_batch: dict,
    train_config: ml_collections.ConfigDict,
    sharding=None,
) -> TrainState:
    """A fresh state: parameters initialised from ``train_config.seed``.

    One compiled function builds parameters and optimiser state together;
    ``sharding`` (e.g. replicated over a mesh) places the result.
    """
    example = {name: np.asarray(value[:1]) for name, value in example_batch.items()}
    tx = make_optimizer(train_config)

    def create(init_key):
        params = model.init(init_key, example)["params"]
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    return jax.jit(create, out_shardings=sharding)(jax.random.key(train_config.seed))
