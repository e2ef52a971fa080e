"""The in-repo copy of the shared vendor fixtures is identical to the original, where both exist."""

from __future__ import annotations

from pathlib import Path

import pytest

COPY = Path(__file__).resolve().parent / "shared" / "fixtures"
ORIGINAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_copy_matches_the_shared_original() -> None:
    if not ORIGINAL.is_dir():
        pytest.skip(f"no original at {ORIGINAL} (a standalone clone tests against the copy)")
    assert _files(COPY) == _files(ORIGINAL)
