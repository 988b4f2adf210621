"""The fast max-pooling equals ``flax.linen.max_pool``, forward and backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stfe_jax.models.pooling import max_pool_1d, reduce_window_max_pool_1d


@pytest.mark.parametrize(
    "length, window, stride",
    [(100, 2, 2), (50, 2, 2), (7, 2, 2), (9, 3, 3), (10, 3, 2)],
)
def test_max_pool_1d_equals_nn_max_pool(length, window, stride):
    x = jax.random.normal(jax.random.key(length), (6, length, 5))

    def plain(x):
        return nn.max_pool(x, (window,), strides=(stride,), padding="VALID")

    def fast(x):
        return max_pool_1d(x, window, stride)

    np.testing.assert_array_equal(fast(x), plain(x))
    assert fast(x).shape == (6, (length - window) // stride + 1, 5)

    # Random normals have no ties, so the gradients must agree exactly too.
    weights = jax.random.normal(jax.random.key(1), plain(x).shape)
    grad_plain = jax.grad(lambda x: jnp.sum(plain(x) * weights))(x)
    grad_fast = jax.grad(lambda x: jnp.sum(fast(x) * weights))(x)
    np.testing.assert_array_equal(grad_fast, grad_plain)


def test_max_pool_1d_keeps_leading_axes_and_rejects_short_input():
    x = jnp.arange(2 * 3 * 8 * 4, dtype=jnp.float32).reshape(2, 3, 8, 4)
    pooled = max_pool_1d(x, 2)
    assert pooled.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(pooled, x[:, :, 1::2, :])
    with pytest.raises(ValueError, match="window of 4"):
        max_pool_1d(jnp.zeros((1, 3, 2)), 4)


def test_cnn_lstm_pooling_choices_agree():
    """The model with either pooling gives the same logits from the same params."""
    from stfe_jax.configs import get_config
    from stfe_jax.models import build_model

    rng = np.random.default_rng(0)
    batch = {
        "packets": rng.integers(0, 256, (3, 4, 32), dtype=np.uint8),
        "packet_caplen": rng.integers(1, 33, (3, 4)).astype(np.uint16),
        "direction": rng.integers(0, 2, (3, 4)).astype(np.uint8),
        "iat_s": rng.random((3, 4)).astype(np.float32),
        "n_packets": np.array([1, 3, 4], np.int32),
    }
    config = get_config("cnn_lstm", tiny=True)
    fast = build_model(config.model)
    variables = fast.init(jax.random.key(0), batch)
    config.model.pooling = "reduce_window"
    plain = build_model(config.model)
    np.testing.assert_allclose(
        fast.apply(variables, batch), plain.apply(variables, batch), atol=1e-6
    )
    np.testing.assert_array_equal(
        reduce_window_max_pool_1d(batch["iat_s"][:, :, None], 2),
        max_pool_1d(batch["iat_s"][:, :, None], 2),
    )
