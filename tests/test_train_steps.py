"""The train step: loss falls on a separable toy set, and it compiles once."""

import numpy as np
import pytest

from stfe_jax.configs import get_config
from stfe_jax.models import build_model
from stfe_jax.store.batches import iterate_eval_batches, iterate_train_batches
from stfe_jax.train.loop import class_weights, predict_split
from stfe_jax.train.state import create_train_state, learning_rate_schedule
from stfe_jax.train.steps import make_eval_step, make_sharding, make_train_step
from stfe_jax.train.toy import toy_dataset


def setup_training(name, steps=80):
    config = get_config(name, tiny=True)
    config.train.steps = steps
    config.train.warmup_steps = 3
    dataset = toy_dataset(600, 4, 32, attack_share=0.3, seed=1)
    model = build_model(config.model)
    sharding = make_sharding()
    state = create_train_state(
        model, dataset.model_arrays, config.train, sharding.replicated
    )
    weights = class_weights(dataset.labels[dataset.train_idx], 2, "weighted")
    train_step = make_train_step(
        weights, sharding, schedule=learning_rate_schedule(config.train)
    )
    batches = iterate_train_batches(
        dataset.model_arrays,
        dataset.train_idx,
        config.train.batch_size,
        seed=0,
        labels=dataset.labels,
    )
    return config, dataset, model, sharding, state, train_step, batches


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "cnn_lstm"])
def test_loss_falls_on_a_separable_toy_set(name):
    config, dataset, model, sharding, state, train_step, batches = setup_training(name)
    losses = []
    for _ in range(config.train.steps):
        state, metrics = train_step(state, sharding.put_batch(next(batches)))
        losses.append(float(metrics["loss"]))
    batches.close()
    assert np.isfinite(losses).all()
    assert np.mean(losses[:3]) > 0.5
    assert np.mean(losses[-5:]) < 0.4, losses
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
    assert int(state.step) == config.train.steps

    # The trained model separates the held-out test flows too.
    eval_step = make_eval_step(model.apply, sharding)
    test = predict_split(
        eval_step, state.params, dataset, dataset.test_idx, 64, sharding
    )
    accuracy = np.mean(np.argmax(test["probs"], -1) == test["labels"])
    assert accuracy > 0.9


def test_train_and_eval_steps_compile_once():
    config, dataset, model, sharding, state, train_step, batches = setup_training(
        "cnn", steps=5
    )
    for _ in range(5):
        state, _ = train_step(state, sharding.put_batch(next(batches)))
    batches.close()
    assert train_step._cache_size() == 1

    eval_step = make_eval_step(model.apply, sharding)
    flows = 0
    for batch in iterate_eval_batches(
        dataset.model_arrays, dataset.test_idx, 48, labels=dataset.labels
    ):
        batch.pop("flow_index")
        outputs = eval_step(state.params, sharding.put_batch(batch))
        flows += int(np.sum(np.asarray(outputs["loss"]) > 0))
    assert eval_step._cache_size() == 1
    assert flows == dataset.test_idx.size  # the padded last batch counts nothing


def test_class_weights_balance_the_classes():
    labels = np.array([0] * 90 + [1] * 10, np.int32)
    weights = class_weights(labels, 3, "weighted")
    np.testing.assert_allclose(weights, [100 / (2 * 90), 100 / (2 * 10), 0.0])
    # Each present class carries the same total weight.
    assert weights[0] * 90 == pytest.approx(weights[1] * 10)
    np.testing.assert_array_equal(class_weights(labels, 2, "sampled"), [1, 1])
    with pytest.raises(ValueError, match="balanced"):
        class_weights(labels, 2, "balanced")


def test_schedule_warms_up_then_decays():
    config = get_config("cnn", tiny=True)
    config.train.steps, config.train.warmup_steps = 100, 10
    schedule = learning_rate_schedule(config.train)
    peak = config.train.learning_rate
    assert float(schedule(0)) < peak / 5
    assert float(schedule(10)) == pytest.approx(peak)
    assert float(schedule(99)) < peak * 0.05
    decay = np.array([float(schedule(step)) for step in range(10, 100)])
    assert (np.diff(decay) <= 1e-9).all()
