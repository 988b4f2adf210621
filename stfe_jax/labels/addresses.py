"""IP addresses as the 16-byte rows of the flow columns, and integer ids for them.

Flow metadata stores every address as 16 bytes (IPv4 as ``::ffff:a.b.c.d``). Label
sources name addresses as text. These helpers turn text into such rows and give
the addresses a label source names small integer ids, looked up for every flow,
so that matching can sort and join on plain integer keys instead of comparing
byte rows flow by flow.
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


def _halves(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and last 8 bytes of each address as big-endian uint64."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(-1, ADDRESS_BYTES)
    halves = rows.view(">u8").astype(np.uint64)
    return halves[:, 0], halves[:, 1]


def address_lookup(
    table: np.ndarray, *queries: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Ids of the distinct addresses of a small ``table``; each query row's id or -1.

    ``table`` and ``queries`` are ``(n, 16)`` uint8 rows. Returns the table rows'
    ids and, per query array, the id of each row (int64), -1 when the address is
    not in the table. Costs O(q log t) per query array, with a Python loop only
    over the distinct first halves of the table's addresses (one for IPv4).
    """
    hi, lo = _halves(table)
    order = np.lexsort((lo, hi))
    hi_sorted, lo_sorted = hi[order], lo[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (hi_sorted[1:] != hi_sorted[:-1]) | (lo_sorted[1:] != lo_sorted[:-1])
    sorted_ids = np.cumsum(new) - 1
    table_ids = np.empty(len(order), dtype=np.int64)
    table_ids[order] = sorted_ids
    unique_hi, unique_lo = hi_sorted[new], lo_sorted[new]

    results = []
    for query in queries:
        q_hi, q_lo = _halves(query)
        ids = np.full(len(q_hi), -1, dtype=np.int64)
        for value in np.unique(unique_hi):
            start = np.searchsorted(unique_hi, value, side="left")
            stop = np.searchsorted(unique_hi, value, side="right")
            candidates = unique_lo[start:stop]
            rows = np.flatnonzero(q_hi == value)
            at = np.searchsorted(candidates, q_lo[rows])
            at_clipped = np.minimum(at, len(candidates) - 1)
            found = candidates[at_clipped] == q_lo[rows]
            ids[rows[found]] = start + at_clipped[found]
        results.append(ids)
    return table_ids, results
