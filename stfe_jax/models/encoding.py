"""Model inputs: byte tokens with a padding token, packet masks and side channels.

Bytes past a packet's captured length (``packet_caplen``) and every byte of the
packets past the flow's ``n_packets`` become token 256, so a model can tell padding
from a real 0x00 byte. Direction and inter-arrival time of the padding packets are
zeroed, so nothing past ``n_packets`` reaches a model.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

PAD_TOKEN = 256
NUM_TOKENS = 257  # the 256 byte values and the padding token


def packet_mask(batch: dict) -> jax.Array:
    """(b, P) bool: True for the real packets of each flow (index < n_packets)."""
    num_packets = batch["packets"].shape[1]
    n_packets = jnp.asarray(batch["n_packets"]).astype(jnp.int32)
    return jnp.arange(num_packets)[None, :] < n_packets[:, None]


def byte_tokens(batch: dict) -> jax.Array:
    """(b, P, B) int32 tokens: the byte value, or ``PAD_TOKEN`` past the caplen."""
    packets = jnp.asarray(batch["packets"]).astype(jnp.int32)
    bytes_per_packet = packets.shape[2]
    caplen = jnp.asarray(batch["packet_caplen"]).astype(jnp.int32)
    real_byte = jnp.arange(bytes_per_packet)[None, None, :] < caplen[:, :, None]
    real_byte = real_byte & packet_mask(batch)[:, :, None]
    return jnp.where(real_byte, packets, PAD_TOKEN)


def side_features(batch: dict, use_direction: bool, use_iat: bool) -> jax.Array:
    """(b, P, S) float32 per-packet side channels, zero on padding packets.

    Direction is 0 (initiator to responder) or 1; the inter-arrival time enters as
    log1p(seconds) so that microseconds and minutes both stay in a usable range.
    S is 0, 1 or 2 depending on the flags.
    """
    mask = packet_mask(batch)
    columns = []
    if use_direction:
        columns.append(jnp.asarray(batch["direction"]).astype(jnp.float32))
    if use_iat:
        iat_s = jnp.asarray(batch["iat_s"]).astype(jnp.float32)
        columns.append(jnp.log1p(jnp.maximum(iat_s, 0.0)))
    if not columns:
        return jnp.zeros(mask.shape + (0,), jnp.float32)
    return jnp.stack(columns, axis=-1) * mask[:, :, None]


class ByteEncoder(nn.Module):
    """Byte tokens (b, P, B) to vectors (b, P, B, E): learned embedding or one-hot."""

    encoding: str = "embedding"
    embed_dim: int = 8
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        if self.encoding == "embedding":
            return nn.Embed(NUM_TOKENS, self.embed_dim, dtype=self.dtype)(tokens)
        if self.encoding == "onehot":
            return jax.nn.one_hot(tokens, NUM_TOKENS, dtype=self.dtype)
        raise ValueError(
            f"unknown byte encoding {self.encoding!r}; expected 'embedding' or 'onehot'"
        )
