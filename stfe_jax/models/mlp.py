"""MLP over the flattened flow: all bytes and side channels of all packets at once."""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from stfe_jax.models.base import FlowModel


class MLP(FlowModel):
    """Dense layers of ``mlp_hidden`` units (ReLU) over the flattened flow.

    Padding packets are already padding tokens with zero side channels, so their
    content cannot reach the output.
    """

    mlp_hidden: Sequence[int] = (512, 128)

    def setup_body(self):
        self.layers = [nn.Dense(units, dtype=self.dtype) for units in self.mlp_hidden]

    def represent(self, encoded_bytes, side, mask, train):
        b = encoded_bytes.shape[0]
        x = jnp.concatenate([encoded_bytes.reshape(b, -1), side.reshape(b, -1)], -1)
        for layer in self.layers:
            x = nn.relu(layer(x))
        return x
