"""Max-pooling along the byte axis, written so its backward pass is cheap on CPU.

``flax.linen.max_pool`` lowers to XLA's reduce-window, whose gradient is a
select-and-scatter that XLA's CPU backend runs slowly (about 100 ms a training step
for the CNN-LSTM at batch 256). The same pooling written as an element-wise maximum
of strided slices differentiates into cheap element-wise selects. The two agree
exactly on the forward pass (tested against ``nn.max_pool``).
"""

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

    if window == stride:
        # Non-overlapping windows: one reshape and a maximum over the window axis.
        trimmed = x[..., : out_length * window, :]
        shape = (*x.shape[:-2], out_length, window, x.shape[-1])
        return jnp.max(trimmed.reshape(shape), axis=-2)

    pooled = x[..., 0:span:stride, :]
    for offset in range(1, window):
        pooled = jnp.maximum(pooled, x[..., offset : offset + span : stride, :])
    return pooled


def max_pool_1d_slices(
    x: jax.Array, window: int, stride: int | None = None
) -> jax.Array:
    """The same pooling as ``max_pool_1d``, always as a maximum of strided slices."""
    stride = window if stride is None else stride
    out_length = (x.shape[-2] - window) // stride + 1
    span = (out_length - 1) * stride + 1
    pooled = x[..., 0:span:stride, :]
    for offset in range(1, window):
        pooled = jnp.maximum(pooled, x[..., offset : offset + span : stride, :])
    return pooled
