"""Files the CLI reads by default (the SLO spec, runbooks, generated rules), as package data.

Why: ``npuobs`` must run from a wheel in any directory, so nothing may be found by walking up from
``__file__`` into a source checkout or by a path relative to the working directory. Every default
file is read through ``importlib.resources`` from ``npuobs/data/``.

One copy of each fact: ``npuobs/data/alerts`` and ``npuobs/data/runbooks`` are symbolic links to
the repository's top-level ``alerts/`` and ``runbooks/`` (the files people edit and review), and
``pyproject.toml`` ships them as package data; building the wheel copies the files the links point
at. So an editable install reads the checkout's files and a wheel carries the same bytes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "npuobs"
DATA = "data"


def data() -> Path:
    """The root of the packaged data (``npuobs/data``)."""
    return _path(resources.files(PACKAGE) / DATA)


def default_slo_spec() -> Path:
    """The default SLO spec (``alerts/slo.yaml`` in the repository), shipped with the package."""
    return _path(data() / "alerts" / "slo.yaml")


def runbook_dir() -> Path:
    """The runbooks (``runbooks/<AlertName>.md``), shipped with the package."""
    return _path(data() / "runbooks")


def _path(item: object) -> Path:
    """A filesystem path for a packaged file.

    npuobs installs as plain files (a wheel unpacked into site-packages, or an editable install), so
    the Traversable is already a path; a zipped install is refused loudly rather than read half-way.
    """
    if isinstance(item, Path):
        return item
    raise RuntimeError(f"npuobs package data is not on the filesystem ({item!r}); install npuobs unzipped "
                       "(pip install npuobs)")
