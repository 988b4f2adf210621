"""Data parallel training over 4 fake CPU devices matches one device."""

import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np

    from stfe_jax.configs import get_config
    from stfe_jax.train import train_and_evaluate
    from stfe_jax.train.steps import make_sharding
    from stfe_jax.train.toy import toy_dataset

    assert jax.local_device_count() == 4, jax.local_devices()
    sharding = make_sharding()
    batch = sharding.put_batch({"x": np.zeros((8, 3), np.float32)})
    assert len(batch["x"].sharding.device_set) == 4
    assert batch["x"].addressable_shards[0].data.shape == (2, 3)

    dataset = toy_dataset(400, 4, 32, attack_share=0.3, seed=6)
    outputs = {}
    for data_parallel in (True, False):
        config = get_config("mlp", tiny=True)
        config.train.steps = 20
        config.train.eval_every = 10
        config.train.data_parallel = data_parallel
        results = train_and_evaluate(config, dataset, sys.argv[1] + str(data_parallel))
        name = "sharded" if data_parallel else "single"
        outputs[name + "_devices"] = results["timings"]["num_devices"]
        outputs[name + "_test_probs"] = results["splits"]["test"]["probs"]
        for i, leaf in enumerate(jax.tree.leaves(results["params"])):
            outputs[f"{name}_param_{i}"] = leaf
    np.savez(sys.argv[1] + ".npz", **outputs)
    """
)


def test_four_devices_match_one(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    )
    env["JAX_PLATFORMS"] = "cpu"
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
    out = str(tmp_path / "run")
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, out],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    outputs = np.load(out + ".npz")
    assert int(outputs["sharded_devices"]) == 4
    assert int(outputs["single_devices"]) == 1
    params = sorted(k[len("single_param_") :] for k in outputs if "single_param" in k)
    assert params
    for index in params:
        np.testing.assert_allclose(
            outputs["sharded_param_" + index],
            outputs["single_param_" + index],
            rtol=1e-4,
            atol=1e-5,
        )
    np.testing.assert_allclose(
        outputs["sharded_test_probs"], outputs["single_test_probs"], atol=1e-4
    )
