"""Each model's output shape, its masking of padding, and its input encoding."""

import jax
import numpy as np
import pytest

from stfe_jax.configs import get_config
from stfe_jax.models import build_model
from stfe_jax.models.encoding import PAD_TOKEN, byte_tokens

MODELS = ("mlp", "cnn", "lstm", "cnn_lstm")
PACKETS, BYTES = 4, 32


def random_batch(rng, b=5, packets=PACKETS, num_bytes=BYTES):
    return {
        "packets": rng.integers(0, 256, (b, packets, num_bytes), dtype=np.uint8),
        "packet_caplen": rng.integers(1, num_bytes + 1, (b, packets)).astype(np.uint16),
        "direction": rng.integers(0, 2, (b, packets)).astype(np.uint8),
        "iat_s": rng.exponential(0.5, (b, packets)).astype(np.float32),
        "n_packets": np.array([1, 2, 3, 4, 2][:b], np.int32),
    }


def scramble_padding(batch, rng):
    """The batch with random content in every packet past ``n_packets`` and in
    every byte past the caplen."""
    batch = {name: value.copy() for name, value in batch.items()}
    b, packets, num_bytes = batch["packets"].shape
    padding_packet = np.arange(packets)[None, :] >= batch["n_packets"][:, None]
    padding_byte = (
        np.arange(num_bytes)[None, None, :] >= batch["packet_caplen"][:, :, None]
    )
    noise = rng.integers(0, 256, batch["packets"].shape, dtype=np.uint8)
    scrambled = padding_packet[:, :, None] | padding_byte
    batch["packets"] = np.where(scrambled, noise, batch["packets"])
    batch["packet_caplen"] = np.where(
        padding_packet,
        rng.integers(0, num_bytes + 1, (b, packets)),
        batch["packet_caplen"],
    ).astype(np.uint16)
    batch["direction"] = np.where(
        padding_packet, 1 - batch["direction"], batch["direction"]
    ).astype(np.uint8)
    batch["iat_s"] = np.where(padding_packet, 99.0, batch["iat_s"]).astype(np.float32)
    return batch


def append_padding_packets(batch, extra, rng):
    """The batch with ``extra`` more packets of random content per flow."""
    b, packets, num_bytes = batch["packets"].shape
    grown = random_batch(rng, b, packets + extra, num_bytes)
    for name in ("packets", "packet_caplen", "direction", "iat_s"):
        grown[name][:, :packets] = batch[name]
    grown["n_packets"] = batch["n_packets"]
    return grown


def init_model(name, **overrides):
    config = get_config(name, tiny=True)
    for key, value in overrides.items():
        config.model[key] = value
    model = build_model(config.model)
    batch = random_batch(np.random.default_rng(0))
    variables = model.init(jax.random.key(0), batch)
    return model, variables, config


@pytest.mark.parametrize("name", MODELS)
def test_output_and_feature_shapes(name):
    model, variables, config = init_model(name)
    batch = random_batch(np.random.default_rng(1))
    logits = model.apply(variables, batch)
    features = model.apply(variables, batch, method="features")
    assert logits.shape == (5, 2)
    assert logits.dtype == np.float32
    expected_width = {
        "mlp": config.model.mlp_hidden[-1],
        "cnn": 2 * (config.model.packet_features + 2),
        "lstm": config.model.lstm_hidden,
        "cnn_lstm": config.model.lstm_hidden,
    }[name]
    assert features.shape == (5, expected_width)
    assert np.isfinite(np.asarray(logits)).all()
    # The classifier reads exactly the features.
    dense = variables["params"]["classifier"]
    np.testing.assert_allclose(
        logits, features @ dense["kernel"] + dense["bias"], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", MODELS)
def test_padding_content_does_not_change_output(name):
    rng = np.random.default_rng(2)
    model, variables, _ = init_model(name)
    batch = random_batch(rng)
    scrambled = scramble_padding(batch, rng)
    assert not np.array_equal(scrambled["packets"], batch["packets"])
    np.testing.assert_array_equal(
        model.apply(variables, scrambled), model.apply(variables, batch)
    )


@pytest.mark.parametrize("name", ("cnn", "lstm", "cnn_lstm"))
def test_extra_padding_packets_do_not_change_output(name):
    rng = np.random.default_rng(3)
    model, variables, _ = init_model(name)
    batch = random_batch(rng)
    grown = append_padding_packets(batch, 3, rng)
    assert grown["packets"].shape[1] == PACKETS + 3
    np.testing.assert_allclose(
        model.apply(variables, grown), model.apply(variables, batch), atol=1e-6
    )


@pytest.mark.parametrize("name", MODELS)
def test_real_packets_change_output(name):
    """The converse of the masking tests: the last real packet matters."""
    rng = np.random.default_rng(4)
    model, variables, _ = init_model(name)
    batch = random_batch(rng)
    changed = {key: value.copy() for key, value in batch.items()}
    last = batch["n_packets"][3] - 1  # flow 3 has 4 real packets
    changed["packets"][3, last] = 255 - changed["packets"][3, last]
    changed["packet_caplen"][3, last] = BYTES
    before = np.asarray(model.apply(variables, batch))
    after = np.asarray(model.apply(variables, changed))
    assert not np.allclose(after[3], before[3])
    np.testing.assert_array_equal(np.delete(after, 3, 0), np.delete(before, 3, 0))


def test_padding_token_is_not_byte_zero():
    batch = random_batch(np.random.default_rng(5))
    batch["packets"][:] = 0
    batch["packet_caplen"][:] = 10
    tokens = np.asarray(byte_tokens(batch))
    assert (tokens[0, 0, :10] == 0).all()
    assert (tokens[0, 0, 10:] == PAD_TOKEN).all()
    assert (tokens[0, 1:] == PAD_TOKEN).all()  # flow 0 has one real packet

    model, variables, _ = init_model("cnn")
    all_zero_bytes = dict(batch, packet_caplen=np.full_like(batch["packet_caplen"], 32))
    assert not np.allclose(
        model.apply(variables, all_zero_bytes), model.apply(variables, batch)
    )


@pytest.mark.parametrize("name", ("mlp", "cnn_lstm"))
def test_onehot_encoding_and_bfloat16_compute(name):
    model, variables, _ = init_model(name, byte_encoding="onehot")
    assert "encoder" not in variables["params"]  # one-hot has no parameters
    batch = random_batch(np.random.default_rng(6))
    assert model.apply(variables, batch).shape == (5, 2)

    model32, variables32, _ = init_model(name)
    model16, _, _ = init_model(name, dtype="bfloat16")
    logits32 = np.asarray(model32.apply(variables32, batch))
    logits16 = np.asarray(model16.apply(variables32, batch))
    assert logits16.dtype == np.float32
    np.testing.assert_allclose(logits16, logits32, atol=0.1)


def test_build_model_rejects_unknown_names():
    config = get_config("cnn", tiny=True)
    config.model.name = "transformer"
    with pytest.raises(ValueError, match="transformer"):
        build_model(config.model)
    config = get_config("cnn", tiny=True)
    config.model.byte_encoding = "ascii"
    model = build_model(config.model)
    with pytest.raises(ValueError, match="ascii"):
        model.init(jax.random.key(0), random_batch(np.random.default_rng(0)))


def test_side_inputs_can_be_switched_off():
    rng = np.random.default_rng(7)
    batch = random_batch(rng)
    changed = dict(batch, iat_s=batch["iat_s"] + 5.0, direction=1 - batch["direction"])

    model, variables, config = init_model("cnn", use_direction=False, use_iat=False)
    features = model.apply(variables, batch, method="features")
    assert features.shape == (5, 2 * config.model.packet_features)
    np.testing.assert_array_equal(
        model.apply(variables, changed), model.apply(variables, batch)
    )

    model, variables, _ = init_model("cnn", use_direction=False)
    assert not np.allclose(
        model.apply(variables, changed), model.apply(variables, batch)
    )
