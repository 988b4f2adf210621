"""Typed errors of the flow store: refusing what would otherwise be misread."""


class StoreError(ValueError):
    """A store directory that cannot be used as asked (the message says why)."""


class StoreIncompleteError(StoreError):
    """The store has no manifest: its build never finished (or is still running)."""


class StoreFormatError(StoreError):
    """The store was written in another format version, or its files disagree with
    its manifest."""


class StoreConfigMismatchError(StoreError):
    """The store was built with another flows config than the one expected."""
