"""What every flow classifier shares: input encoding, features, classifier head.

A model maps an input batch (see ``stfe_jax.flows.columns``: ``packets``,
``packet_caplen``, ``direction``, ``iat_s``, ``n_packets``) to class logits.
``features`` returns the layer just before the classifier, the learned
representation that the feature probes compare across models.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stfe_jax.models.encoding import (
    ByteEncoder,
    byte_tokens,
    packet_mask,
    side_features,
)


class FlowModel(nn.Module):
    """Base of the four models; subclasses define ``setup_body`` and ``represent``."""

    num_classes: int = 2
    byte_encoding: str = "embedding"
    embed_dim: int = 8
    use_direction: bool = True
    use_iat: bool = True
    head_hidden: int = 0
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    def setup(self):
        self.encoder = ByteEncoder(self.byte_encoding, self.embed_dim, self.dtype)
        self.setup_body()
        if self.head_hidden:
            self.hidden_layer = nn.Dense(self.head_hidden, dtype=self.dtype)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.classifier = nn.Dense(self.num_classes, dtype=self.dtype)

    def setup_body(self):
        raise NotImplementedError

    def represent(self, encoded_bytes, side, mask, train: bool) -> jax.Array:
        """(b, D) flow vector from encoded bytes (b, P, B, E), side channels
        (b, P, S) and the packet mask (b, P)."""
        raise NotImplementedError

    def features(self, batch: dict, train: bool = False) -> jax.Array:
        """(b, D) float32: the layer before the classifier."""
        encoded_bytes = self.encoder(byte_tokens(batch))
        side = side_features(batch, self.use_direction, self.use_iat).astype(self.dtype)
        x = self.represent(encoded_bytes, side, packet_mask(batch), train)
        if self.head_hidden:
            x = nn.relu(self.hidden_layer(x))
        return x.astype(jnp.float32)

    def logits_and_features(self, batch: dict, train: bool = False):
        """(logits (b, num_classes), features (b, D)), both float32."""
        features = self.features(batch, train)
        x = self.dropout(features.astype(self.dtype), deterministic=not train)
        return self.classifier(x).astype(jnp.float32), features

    def __call__(self, batch: dict, train: bool = False) -> jax.Array:
        """(b, num_classes) float32 logits."""
        return self.logits_and_features(batch, train)[0]
