"""IP addresses as the 16-byte rows of the flow columns, and integer ids for them.

Flow metadata stores every address as 16 bytes (IPv4 as ``::ffff:a.b.c.d``). Label
sources name addresses as text. These helpers turn text into such rows and give
equal addresses equal small integers, so that matching can sort and join on plain
integer keys instead of comparing byte rows flow by flow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np

ADDRESS_BYTES = 16


def address_row(text: str) -> bytes:
    """The 16 bytes of the address ``text`` (IPv4 mapped into IPv6).

    Raises ``ValueError`` when ``text`` is not an IPv4 or IPv6 address.
    """
    address = ipaddress.ip_address(text.strip())
    if address.version == 4:
        return b"\x00" * 10 + b"\xff\xff" + address.packed
    return address.packed


def address_rows(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Addresses as a ``(n, 16)`` uint8 array, and a mask of the ones given.

    ``None`` (a wildcard) gives a zero row and ``False`` in the mask.
    """
    rows = np.zeros((len(texts), ADDRESS_BYTES), dtype=np.uint8)
    given = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        if text is not None:
            rows[i] = np.frombuffer(address_row(text), dtype=np.uint8)
            given[i] = True
    return rows, given


def address_text(row: np.ndarray) -> str:
    """The usual text form of a 16-byte address row (dotted quad for IPv4)."""
    address = ipaddress.IPv6Address(bytes(np.asarray(row, dtype=np.uint8)))
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _as_void(rows: np.ndarray) -> np.ndarray:
    rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, ADDRESS_BYTES)
    return rows.view(np.dtype((np.void, ADDRESS_BYTES))).ravel()


def address_ids(*arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    """One integer id per distinct address over all ``arrays`` of ``(n, 16)`` rows.

    Returns the ids of each array's rows (int64, same order) and the number of
    distinct addresses. Sorting-based: O(n log n), no Python loop over rows.
    """
    sizes = [len(a) for a in arrays]
    if sum(sizes) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in arrays], 0
    everything = np.concatenate([_as_void(a) for a in arrays])
    unique, inverse = np.unique(everything, return_inverse=True)
    inverse = inverse.astype(np.int64).ravel()
    out = np.split(inverse, np.cumsum(sizes)[:-1])
    return out, int(len(unique))
