"""Shared test fixtures: where the real captures and datasets live."""

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """The read-only ``../shared`` folder beside the checkout; skips when absent."""
    if not (SHARED_DIR / "captures" / "MANIFEST.tsv").exists():
        pytest.skip(f"real captures not found at {SHARED_DIR} (../shared is absent)")
    return SHARED_DIR
