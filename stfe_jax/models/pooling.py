"""Max-pooling along the byte axis, written so its backward pass is cheap on CPU.

``flax.linen.max_pool`` lowers to XLA's reduce-window, whose gradient is a
select-and-scatter that XLA's CPU backend runs slowly (about 100 ms a training step
for the CNN-LSTM at batch 256). The same pooling written as an element-wise maximum
of strided slices differentiates into cheap element-wise selects. The two agree
exactly on the forward pass (tested against ``nn.max_pool``).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def max_pool_1d(x: jax.Array, window: int, stride: int | None = None) -> jax.Array:
    """Max over windows of ``window`` positions along axis -2, no padding.

    Args:
      x: (..., length, channels).
      window: positions per window.
      stride: positions between window starts; defaults to ``window``.

    Returns:
      (..., (length - window) // stride + 1, channels), as
      ``nn.max_pool(x, (window,), (stride,), "VALID")`` computes it.
    """
    stride = window if stride is None else stride
    length = x.shape[-2]
    if length < window:
        raise ValueError(f"cannot pool {length} positions with a window of {window}")
    out_length = (length - window) // stride + 1
    span = (out_length - 1) * stride + 1
    pooled = x[..., 0:span:stride, :]
    for offset in range(1, window):
        pooled = jnp.maximum(pooled, x[..., offset : offset + span : stride, :])
    return pooled


def reduce_window_max_pool_1d(
    x: jax.Array, window: int, stride: int | None = None
) -> jax.Array:
    """The same pooling through ``nn.max_pool`` (XLA reduce-window), for
    comparison: equal results, a slower backward pass on CPU."""
    stride = window if stride is None else stride
    return nn.max_pool(x, (window,), strides=(stride,), padding="VALID")


POOLING = {"slices": max_pool_1d, "reduce_window": reduce_window_max_pool_1d}
