"""Where the shared vendor fixtures live, for every backend test.

The fixtures are real tool outputs kept outside the repository (``/work/shared/fixtures`` next to
the checkout, or ``shared/fixtures`` inside a copied tree); ``NPUOBS_SHARED_DIR`` points at the
``shared`` folder when neither layout applies. Tests must never edit these files.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_fixtures() -> Path:
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "shared" / "fixtures", here.parents[1] / "shared" / "fixtures"]
    env = os.environ.get("NPUOBS_SHARED_DIR")
    if env:
        candidates.append(Path(env) / "fixtures")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "shared fixtures not found; looked in " + ", ".join(str(c) for c in candidates)
        + " (set NPUOBS_SHARED_DIR to the folder that holds fixtures/)"
    )


FIXTURES: Path = _find_fixtures()
VENDOR: Path = FIXTURES / "vendor"
NVIDIA_H100: Path = FIXTURES / "nvidia-h100"


def fixture(relative: str) -> Path:
    """Path of a fixture given relative to the fixtures root, e.g. ``"vendor/furiosa/x.txt"``."""
    path = FIXTURES / relative
    if not path.is_file():
        raise FileNotFoundError(f"fixture {relative!r} not found under {FIXTURES}")
    return path


def read_fixture(relative: str) -> str:
    """Text of a fixture (UTF-8, as the tools write it)."""
    return fixture(relative).read_text(encoding="utf-8")
