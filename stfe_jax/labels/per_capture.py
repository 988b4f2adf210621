"""Per-capture classes: a manifest CSV that gives every flow of a file one class.

The manifest has a header with at least ``capture`` and ``class`` columns (more,
such as ``source`` and ``source_label``, are carried along). ``capture`` is a path
or a glob pattern (``*``, ``?``, ``[...]`` with ``fnmatch`` rules, so ``*`` also
crosses folders), relative to the manifest's own folder unless absolute. A capture
named by an exact row takes that row's class; otherwise the first glob row that
matches it, in file order. These labels are weak: every flow of an attack
capture, its incidental DNS lookups included, gets the attack's class.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np
from absl import logging

REQUIRED_COLUMNS = ("capture", "class")
_GLOB_CHARS = re.compile(r"[*?\[]")


class ManifestError(ValueError):
    """A per-capture manifest that cannot be read (names file and line)."""


@dataclasses.dataclass
class ManifestRow:
    """One manifest row: a capture path or pattern (absolute) and its class."""

    pattern: str
    label: str
    line: int
    is_glob: bool
    extra: dict[str, str]


def looks_like_manifest(head: bytes) -> bool:
    """Whether a file's first bytes are a manifest header with capture and class."""
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("utf-8", "replace")
    columns = [c.strip().lower() for c in first.split(",")]
    return all(column in columns for column in REQUIRED_COLUMNS)


def _normal(path: str | os.PathLike) -> str:
    # Symbolic links resolved on both sides, so that a manifest reached through a
    # link (a data folder linked beside the checkout) names the same files as the
    # capture paths it is compared with.
    return os.path.realpath(os.fspath(path))


def read_manifest(path: str | pathlib.Path) -> list[ManifestRow]:
    """The rows of a per-capture manifest, paths made absolute."""
    path = pathlib.Path(path)
    base = path.resolve().parent
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = [column.strip().lower() for column in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ManifestError(
                f"{path}: line 1: expected columns {REQUIRED_COLUMNS}, found {header}"
            )
        for line, fields in enumerate(reader, start=2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise ManifestError(
                    f"{path}: line {line}: expected {len(header)} fields, "
                    f"found {len(fields)}"
                )
            record = dict(zip(header, (f.strip() for f in fields), strict=True))
            capture, label = record.pop("capture"), record.pop("class")
            if not capture or not label:
                raise ManifestError(f"{path}: line {line}: empty capture or class")
            pattern = capture if os.path.isabs(capture) else str(base / capture)
            rows.append(
                ManifestRow(
                    pattern=_normal(pattern),
                    label=label,
                    line=line,
                    is_glob=bool(_GLOB_CHARS.search(capture)),
                    extra=record,
                )
            )
    logging.info("capture manifest %s: %d rows", path, len(rows))
    return rows


@dataclasses.dataclass
class CaptureClasses:
    """The class of each capture ('' when the manifest names it nowhere)."""

    labels: list[str]
    rows: list[ManifestRow | None]
    rows_matching_nothing: int


def capture_classes(
    manifest_path: str | pathlib.Path, capture_paths: Sequence[str]
) -> CaptureClasses:
    """The class of each of ``capture_paths`` from one manifest."""
    rows = read_manifest(manifest_path)
    exact = {}
    for row in rows:
        if not row.is_glob:
            exact.setdefault(row.pattern, row)
    globs = [row for row in rows if row.is_glob]
    used = set()
    labels, chosen = [], []
    for capture in capture_paths:
        key = _normal(capture)
        row = exact.get(key)
        if row is None:
            row = next((r for r in globs if fnmatch.fnmatchcase(key, r.pattern)), None)
        chosen.append(row)
        labels.append(row.label if row is not None else "")
        if row is not None:
            used.add(row.line)
    unused = sum(row.line not in used for row in rows)
    return CaptureClasses(labels=labels, rows=chosen, rows_matching_nothing=unused)


def flow_names(capture_index: np.ndarray, classes: CaptureClasses) -> np.ndarray:
    """Per-flow label names ('' unlabelled) from each flow's capture."""
    labels = np.array([*classes.labels, ""], dtype=object).astype(str)
    index = np.asarray(capture_index, dtype=np.int64)
    bad = (index < 0) | (index >= len(classes.labels))
    if bad.any():
        raise ValueError(
            f"capture_index {int(index[bad][0])} outside the "
            f"{len(classes.labels)} capture paths given"
        )
    return labels[index]
