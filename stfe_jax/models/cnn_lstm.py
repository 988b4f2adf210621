"""CNN-LSTM: spatial features of packet bytes, temporal features across packets."""

from collections.abc import Sequence

import jax.numpy as jnp

from stfe_jax.models.base import FlowModel
from stfe_jax.models.layers import MaskedLSTM, PacketCNN


class CNNLSTM(FlowModel):
    """``PacketCNN`` shared across packets feeds a ``MaskedLSTM``.

    The LSTM reads one vector per packet (CNN output and side channels) and stops
    at the flow's real packet count; the flow vector is its last hidden state.
    """

    conv_features: Sequence[int] = (32, 64)
    kernel_size: int = 3
    pool_size: int = 2
    packet_features: int = 128
    pooling: str = "slices"
    lstm_hidden: int = 64

    def setup_body(self):
        self.packet_cnn = PacketCNN(
            self.conv_features,
            self.kernel_size,
            self.pool_size,
            self.packet_features,
            self.pooling,
            self.dtype,
        )
        self.lstm = MaskedLSTM(self.lstm_hidden, self.dtype)

    def represent(self, encoded_bytes, side, mask, train):
        packets = jnp.concatenate([self.packet_cnn(encoded_bytes), side], axis=-1)
        return self.lstm(packets, mask)
