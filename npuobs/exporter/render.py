"""Render once per snapshot, serve cached bytes on every scrape.

Rendering an exposition with prometheus_client costs milliseconds per hundred series and grows
with the device count; scrapes (Prometheus, a second Prometheus, a debugging curl, 100 scrapers
in a load test) arrive far more often than the sampler produces a new snapshot. So the sampler
thread renders both exposition formats right after each sample, and a scrape only picks the
bytes for its format (and gzips them once, lazily, if asked). The scrape path then costs the same
at 8 or 64 devices. :meth:`RenderCache.update` swaps in a new :class:`Rendered` with one
assignment, so a scrape sees either the old or the new exposition, never a mix.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def negotiate(accept: str | None) -> str:
    """The content type for an ``Accept`` header: OpenMetrics when the client lists it, else text.

    Prometheus lists OpenMetrics first; curl and older scrapers send ``*/*`` and get the
    classic text format, which is what they can parse.
    """
    media_types = (part.split(";", 1)[0].strip() for part in (accept or "").split(","))
    return OPENMETRICS if "application/openmetrics-text" in media_types else TEXT


class _Families:
    """Adapter: prometheus_client's generate_latest wants an object with ``collect()``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


@dataclass
class Rendered:
    """One snapshot's exposition in both formats, with lazily added gzip variants."""

    bodies: dict[str, bytes]
    sequence: int
    _gzipped: dict[str, bytes] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, content_type: str, gzip_ok: bool) -> bytes:
        if not gzip_ok:
            return self.bodies[content_type]
        with self._lock:  # compress once per snapshot, however many scrapers ask at once
            data = self._gzipped.get(content_type)
            if data is None:
                data = self._gzipped[content_type] = gzip.compress(self.bodies[content_type], compresslevel=1)
            return data


def render(families: Iterable[Metric], sequence: int = 0) -> Rendered:
    registry = _Families(list(families))
    return Rendered({TEXT: generate_text(registry), OPENMETRICS: generate_openmetrics(registry)}, sequence)


class RenderCache:
    """The latest :class:`Rendered` exposition; None until the first sample has been rendered."""

    def __init__(self) -> None:
        self._current: Rendered | None = None
        self._sequence = 0

    def update(self, families: Iterable[Metric]) -> Rendered:
        self._sequence += 1
        rendered = render(families, self._sequence)
        self._current = rendered
        return rendered

    @property
    def current(self) -> Rendered | None:
        return self._current
