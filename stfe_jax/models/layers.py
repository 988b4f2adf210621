"""Building blocks shared by the models: the per-packet CNN and the masked LSTM."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stfe_jax.models.pooling import POOLING


class PacketCNN(nn.Module):
    """1-D convolutions and max-pooling over the bytes of each packet.

    Maps encoded bytes (b, P, B, E) to one vector per packet (b, P, packet_features):
    each convolution (``kernel_size`` bytes, "SAME" padding) is followed by a ReLU
    and a max-pool of ``pool_size`` bytes; the result is flattened and projected by
    a dense layer. The same weights serve every packet of every flow. ``pooling``
    "slices" is the fast formulation (see ``pooling``), "reduce_window" the
    plain ``nn.max_pool``.
    """

    conv_features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    pool_size: int = 2
    packet_features: int = 128
    pooling: str = "slices"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, encoded_bytes: jax.Array) -> jax.Array:
        if self.pooling not in POOLING:
            raise ValueError(
                f"unknown pooling {self.pooling!r}; expected one of {list(POOLING)}"
            )
        max_pool_1d = POOLING[self.pooling]
        b, num_packets, num_bytes, width = encoded_bytes.shape
        x = encoded_bytes.reshape(b * num_packets, num_bytes, width)
        for features in self.conv_features:
            x = nn.Conv(
                features, (self.kernel_size,), padding="SAME", dtype=self.dtype
            )(x)
            x = nn.relu(x)
            x = max_pool_1d(x, self.pool_size)
        x = x.reshape(b, num_packets, -1)
        return nn.relu(nn.Dense(self.packet_features, dtype=self.dtype)(x))


class MaskedLSTM(nn.Module):
    """An LSTM over the packets of each flow, run with ``jax.lax.scan``.

    Input (b, P, D) and a packet mask (b, P); returns the hidden state (b, hidden)
    after each flow's last real packet. At a masked step the state is carried over
    unchanged, so padding packets never touch the result. The input projection of
    all steps is one matrix product ahead of the scan; the scan holds only the
    recurrent product.
    """

    hidden: int = 64
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        b = x.shape[0]
        hidden = self.hidden
        input_gates = nn.Dense(4 * hidden, dtype=self.dtype, name="input")(x)
        recurrent_kernel = self.param(
            "recurrent_kernel", nn.initializers.orthogonal(), (hidden, 4 * hidden)
        ).astype(self.dtype)

        def step(carry, inputs):
            cell, state = carry
            gates_in, real = inputs
            gates = gates_in + state @ recurrent_kernel
            i, f, g, o = jnp.split(gates.astype(jnp.float32), 4, axis=-1)
            # A forget-gate bias of +1 keeps the cell's memory early in training.
            new_cell = nn.sigmoid(f + 1.0) * cell + nn.sigmoid(i) * jnp.tanh(g)
            new_state = (nn.sigmoid(o) * jnp.tanh(new_cell)).astype(self.dtype)
            real = real[:, None]
            return (
                jnp.where(real, new_cell, cell),
                jnp.where(real, new_state, state),
            ), None

        carry = (
            jnp.zeros((b, hidden), jnp.float32),
            jnp.zeros((b, hidden), self.dtype),
        )
        time_major = (jnp.swapaxes(input_gates, 0, 1), jnp.swapaxes(mask, 0, 1))
        (_, state), _ = jax.lax.scan(step, carry, time_major)
        return state


def masked_mean_max(x: jax.Array, mask: jax.Array) -> jax.Array:
    """(b, P, D) pooled over the real packets of ``mask`` (b, P) to (b, 2 D).

    The mean and the maximum over real packets, concatenated; zero for a flow
    without any real packet.
    """
    real = mask[:, :, None]
    count = jnp.maximum(real.sum(axis=1), 1).astype(x.dtype)
    mean = jnp.where(real, x, 0).sum(axis=1) / count
    lowest = jnp.finfo(x.dtype).min
    maximum = jnp.where(real, x, lowest).max(axis=1)
    maximum = jnp.where(real.any(axis=1), maximum, 0)
    return jnp.concatenate([mean, maximum], axis=-1)
