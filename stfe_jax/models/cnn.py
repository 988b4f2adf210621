"""CNN alone: per-packet 1-D convolutions, pooled across the flow's real packets."""

from collections.abc import Sequence

import jax.numpy as jnp

from stfe_jax.models.base import FlowModel
from stfe_jax.models.layers import PacketCNN, masked_mean_max


class CNN(FlowModel):
    """``PacketCNN`` on every packet, then the mean and max over real packets.

    The flow vector is (b, 2 * (packet_features + S)) for S side channels.
    """

    conv_features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    pool_size: int = 2
    packet_features: int = 128
    pooling: str = "slices"

    def setup_body(self):
        self.packet_cnn = PacketCNN(
            self.conv_features,
            self.kernel_size,
            self.pool_size,
            self.packet_features,
            self.pooling,
            self.dtype,
        )

    def represent(self, encoded_bytes, side, mask, train):
        packets = jnp.concatenate([self.packet_cnn(encoded_bytes), side], axis=-1)
        return masked_mean_max(packets, mask)
