"""train_and_evaluate end to end on a toy set, and exact resume after a stop."""

import json

import jax
import numpy as np
import pytest

from stfe_jax.configs import get_config
from stfe_jax.train import train_and_evaluate
from stfe_jax.train.toy import toy_dataset


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """Runs of the same config compile the same programs: cache them on disk."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update(names[1], 0)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


def resume_config():
    config = get_config("lstm", tiny=True)
    config.train.steps = 30
    config.train.eval_every = 10
    config.train.log_every = 5
    config.train.early_stopping_patience = 3
    config.model.dropout_rate = 0.2  # dropout keys must follow the step too
    return config


def test_resumed_run_ends_where_an_unbroken_run_ends(tmp_path):
    dataset = toy_dataset(500, 4, 32, attack_share=0.2, seed=3)

    unbroken = train_and_evaluate(resume_config(), dataset, tmp_path / "unbroken")
    assert unbroken["final_step"] == 30 and not unbroken["interrupted"]

    stopped_config = resume_config()
    stopped_config.train.stop_at_step = 17  # between two validations
    stopped = train_and_evaluate(stopped_config, dataset, tmp_path / "broken")
    assert stopped["interrupted"] and stopped["final_step"] == 17
    assert "splits" not in stopped
    differs = jax.tree.map(
        lambda a, b: not np.array_equal(a, b), stopped["params"], unbroken["params"]
    )
    assert any(jax.tree.leaves(differs))

    resumed = train_and_evaluate(
        resume_config(), dataset, tmp_path / "broken", resume=True
    )
    assert resumed["resumed_from"] == 17
    assert resumed["final_step"] == 30
    jax.tree.map(np.testing.assert_array_equal, resumed["params"], unbroken["params"])
    assert resumed["history"] == unbroken["history"]
    assert resumed["best_step"] == unbroken["best_step"]
    for split in ("val", "test"):
        np.testing.assert_array_equal(
            resumed["splits"][split]["probs"], unbroken["splits"][split]["probs"]
        )


def test_results_cover_every_flow_once_and_record_the_threshold(tmp_path):
    dataset = toy_dataset(333, 4, 32, attack_share=0.3, seed=4)
    config = get_config("mlp", tiny=True)
    config.eval.batch_size = 64  # 67 test flows: the last batch is padded
    results = train_and_evaluate(config, dataset, tmp_path)

    for split, indices in (("val", dataset.val_idx), ("test", dataset.test_idx)):
        outputs = results["splits"][split]
        np.testing.assert_array_equal(outputs["indices"], indices)
        np.testing.assert_array_equal(outputs["labels"], dataset.labels[indices])
        assert outputs["probs"].shape == (indices.size, 2)
        np.testing.assert_allclose(outputs["probs"].sum(axis=1), 1.0, rtol=1e-5)
        assert outputs["features"].shape == (indices.size, config.model.mlp_hidden[-1])
    assert results["splits"]["train"]["features"].shape[0] == dataset.train_idx.size

    test = results["splits"]["test"]
    assert np.mean(np.argmax(test["probs"], 1) == test["labels"]) > 0.9
    assert [entry["step"] for entry in results["history"]] == [25, 50, 75, 100]
    assert results["history"][-1]["val_metric_name"] == "macro_f1"
    assert results["timings"]["compile_s"] > 0
    assert results["timings"]["samples_per_s"] > 0

    checkpoint_dir = tmp_path / "checkpoints"
    threshold = json.loads((checkpoint_dir / "threshold.json").read_text())
    assert threshold["threshold"] == results["threshold"]["threshold"]
    assert 0.0 < threshold["threshold"] <= 1.0
    assert threshold["score"] == "1 - p(benign)"
    saved_config = json.loads((checkpoint_dir / "config.json").read_text())
    assert saved_config["model"]["name"] == "mlp"
    assert (checkpoint_dir / "best" / str(results["best_step"])).is_dir()
    assert (checkpoint_dir / "last" / "100").is_dir()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))

    with pytest.raises(FileExistsError, match="step 100"):
        train_and_evaluate(config, dataset, tmp_path)  # a finished run, no resume


def test_early_stopping_stops_when_validation_stalls(tmp_path):
    dataset = toy_dataset(300, 4, 32, seed=5)
    config = get_config("mlp", tiny=True)
    config.train.steps = 400
    config.train.eval_every = 10
    config.train.early_stopping_patience = 2
    config.train.learning_rate = 0.0  # nothing improves after the first validation
    config.train.end_learning_rate_factor = 1.0
    config.train.class_balance = "sampled"  # balanced batches, unweighted loss
    results = train_and_evaluate(config, dataset, tmp_path)
    assert results["class_weights"] == [1.0, 1.0]
    assert results["early_stopped"]
    assert results["final_step"] == 30
    assert results["best_step"] == 10
