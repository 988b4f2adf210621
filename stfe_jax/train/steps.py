"""Pure, jit-compiled train and eval steps, data parallel over the local devices.

Each batch is sharded along its first axis over a one-axis ``("data",)`` mesh of
the local devices; the train state is replicated. XLA inserts the gradient
all-reduce, so the step reads like single-device code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from stfe_jax.train.state import TrainState

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class Sharding:
    """The device mesh and the two shardings a step uses."""

    mesh: Mesh
    batch: NamedSharding  # first axis split over the devices
    replicated: NamedSharding

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def put_batch(self, batch: dict) -> dict:
        """Host batch -> device arrays split over the mesh."""
        return jax.device_put(batch, self.batch)


def make_sharding(data_parallel: bool = True) -> Sharding:
    """A mesh over all local devices (or only the first one)."""
    devices = jax.local_devices() if data_parallel else jax.local_devices()[:1]
    mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
    return Sharding(
        mesh=mesh,
        batch=NamedSharding(mesh, PartitionSpec(DATA_AXIS)),
        replicated=NamedSharding(mesh, PartitionSpec()),
    )


def weighted_cross_entropy(
    logits: jax.Array, labels: jax.Array, class_weights: jax.Array
) -> jax.Array:
    """Mean cross-entropy with each flow weighted by its class weight (scalar)."""
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    weights = class_weights[labels]
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def make_train_step(
    class_weights: np.ndarray,
    sharding: Sharding,
    *,
    dropout_seed: int = 0,
    schedule: Callable | None = None,
) -> Callable:
    """``train_step(state, batch) -> (state, metrics)``, jit-compiled.

    The state's buffers are donated. ``metrics`` holds the weighted ``loss``, the
    batch ``accuracy``, the gradient norm before clipping and the learning rate.
    Dropout keys come from ``dropout_seed`` and the step, so a resumed run draws
    the same masks.
    """
    class_weights = jnp.asarray(class_weights, jnp.float32)
    dropout_key = jax.random.key(dropout_seed)

    def train_step(state: TrainState, batch: dict):
        step_key = jax.random.fold_in(dropout_key, state.step)

        def loss_fn(params):
            logits = state.apply_fn(
                {"params": params}, batch, train=True, rngs={"dropout": step_key}
            )
            loss = weighted_cross_entropy(logits, batch["label"], class_weights)
            return loss, logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
            "grad_norm": optax.global_norm(grads),
        }
        if schedule is not None:
            metrics["learning_rate"] = schedule(state.step)
        return state.apply_gradients(grads=grads), metrics

    return jax.jit(
        train_step,
        in_shardings=(sharding.replicated, sharding.batch),
        out_shardings=(sharding.replicated, sharding.replicated),
        donate_argnums=0,
    )


def make_eval_step(apply_fn: Callable, sharding: Sharding) -> Callable:
    """``eval_step(params, batch) -> dict`` of per-flow ``probs`` (b, C),
    ``features`` (b, D) and ``loss`` (b,) (unweighted cross-entropy; zero where
    ``mask`` is False), jit-compiled; ``apply_fn`` is the model's ``apply``."""

    def eval_step(params, batch):
        logits, features = apply_fn(
            {"params": params}, batch, method="logits_and_features"
        )
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return {
            "probs": jax.nn.softmax(logits),
            "features": features,
            "loss": jnp.where(batch["mask"], losses, 0.0),
        }

    return jax.jit(
        eval_step,
        in_shardings=(sharding.replicated, sharding.batch),
        out_shardings=sharding.batch,
    )
