"""Sample tensors to memory-mapped shards and a manifest; splits; batch feeding."""

from stfe_jax.store.build import build_store
from stfe_jax.store.errors import (
    StoreConfigMismatchError,
    StoreError,
    StoreFormatError,
    StoreIncompleteError,
)
from stfe_jax.store.store import Store, StoreColumn

__all__ = [
    "Store",
    "StoreColumn",
    "StoreConfigMismatchError",
    "StoreError",
    "StoreFormatError",
    "StoreIncompleteError",
    "build_store",
]
