"""LSTM alone: each packet's encoded bytes, in arrival order, through an LSTM."""

import jax.numpy as jnp

from stfe_jax.models.base import FlowModel
from stfe_jax.models.layers import MaskedLSTM


class LSTM(FlowModel):
    """The flattened encoded bytes and side channels of each packet feed one LSTM
    step; the flow vector is the hidden state after the last real packet."""

    lstm_hidden: int = 64

    def setup_body(self):
        self.lstm = MaskedLSTM(self.lstm_hidden, self.dtype)

    def represent(self, encoded_bytes, side, mask, train):
        b, num_packets = encoded_bytes.shape[:2]
        packets = encoded_bytes.reshape(b, num_packets, -1)
        return self.lstm(jnp.concatenate([packets, side], axis=-1), mask)
