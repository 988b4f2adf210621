"""Configs per model and ``key=value`` overrides."""

import pytest

from stfe_jax.configs import ConfigOverrideError, apply_overrides, get_config


@pytest.mark.parametrize("model", ["mlp", "cnn", "lstm", "cnn_lstm"])
def test_each_model_has_the_shared_sections(model):
    config = get_config(model)
    assert config.model.name == model
    assert config.flows.packets_per_flow == 8
    assert config.flows.bytes_per_packet == 100
    assert config.split.fractions == (0.7, 0.1, 0.2)
    assert config.labels.suspicious == "anomalous"
    tiny = get_config(model, tiny=True)
    assert tiny.model.name == model
    assert tiny.train.steps < config.train.steps
    assert tiny.flows.bytes_per_packet < config.flows.bytes_per_packet


def test_overrides_take_the_type_of_the_field():
    config = get_config("cnn_lstm")
    apply_overrides(
        config,
        [
            "train.steps=200",
            "flows.bytes_per_packet=64",
            "train.learning_rate=3e-4",
            "flows.mask_ttl=true",
            "model.conv_features=16,32,64",
            "model.mlp_hidden=(256,)",
            "model.byte_encoding=onehot",
            "flows.idle_timeout_s=60",
        ],
    )
    assert config.train.steps == 200 and isinstance(config.train.steps, int)
    assert config.flows.bytes_per_packet == 64
    assert config.train.learning_rate == 3e-4
    assert config.flows.mask_ttl is True
    assert config.model.conv_features == (16, 32, 64)
    assert config.model.mlp_hidden == (256,)
    assert config.model.byte_encoding == "onehot"
    assert config.flows.idle_timeout_s == 60.0
    assert isinstance(config.flows.idle_timeout_s, float)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stepz=3", "train.stepz"),
        ("nosection.steps=3", "nosection.steps"),
        ("train=3", "'train'"),
        ("train.steps=many", "train.steps: expected an integer"),
        ("flows.mask_ttl=perhaps", "flows.mask_ttl: expected a boolean"),
        ("train.steps", "section.field=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigOverrideError, match=message):
        apply_overrides(get_config("mlp"), [override])


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="rnn"):
        get_config("rnn")
