"""Render what is scraped, once per snapshot, and serve cached bytes on every other scrape.

Rendering an exposition with prometheus_client costs milliseconds per hundred series and grows
with the device count. A node's exporter samples every 5 s but Prometheus scrapes every 15 s,
asking for one format (OpenMetrics) and gzip: rendering both formats after every sample spent
most of the exporter's CPU on bytes nobody fetched (1.33 % of a core at 8 devices, issue 18). So
each snapshot becomes a :class:`Rendered` that holds the recipe for its families, and each
format is rendered (and gzipped) the first time a scrape asks for it, then cached for every later
scrape of that snapshot: a snapshot nobody scrapes costs nothing past sampling, one that is
scraped costs one render of the one format asked for. :meth:`RenderCache.update` swaps in a new
:class:`Rendered` with one assignment, so a scrape sees either the old or the new snapshot,
never a mix; concurrent scrapes of a format not yet rendered wait for the one render.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable

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


FamiliesSource = Iterable[Metric] | Callable[[], Iterable[Metric]]


class Rendered:
    """One snapshot's exposition: each format rendered on first use, gzip variants likewise."""

    def __init__(self, families: FamiliesSource, sequence: int = 0) -> None:
        self._source = families
        self.sequence = sequence
        self._bodies: dict[str, bytes] = {}
        self._gzipped: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _registry(self) -> _Families:
        if callable(self._source):
            self._source = list(self._source())  # build the families once, on the first render
        elif not isinstance(self._source, list):
            self._source = list(self._source)
        return _Families(self._source)

    def is_ready(self, content_type: str, gzip_ok: bool) -> bool:
        """True when serving this format costs no rendering (so it can be answered on the event loop)."""
        return content_type in (self._gzipped if gzip_ok else self._bodies)

    def text(self, content_type: str) -> bytes:
        """The uncompressed exposition in ``content_type`` (rendered now if no scrape asked before)."""
        with self._lock:
            return self._text(content_type)

    def _text(self, content_type: str) -> bytes:
        data = self._bodies.get(content_type)
        if data is None:
            generate = generate_openmetrics if content_type == OPENMETRICS else generate_text
            data = self._bodies[content_type] = generate(self._registry())
        return data

    def body(self, content_type: str, gzip_ok: bool) -> bytes:
        with self._lock:  # render/compress once per snapshot, however many scrapers ask at once
            if not gzip_ok:
                return self._text(content_type)
            data = self._gzipped.get(content_type)
            if data is None:
                data = self._gzipped[content_type] = gzip.compress(self._text(content_type), compresslevel=1)
            return data

    @property
    def rendered_formats(self) -> frozenset[str]:
        """Formats rendered so far (what scrapes asked for)."""
        return frozenset(self._bodies)

    @property
    def bodies(self) -> dict[str, bytes]:
        """Both formats (renders whichever was not asked for yet): for tests and tools, not scrapes."""
        return {content_type: self.text(content_type) for content_type in (TEXT, OPENMETRICS)}


def render(families: FamiliesSource, sequence: int = 0) -> Rendered:
    """A :class:`Rendered` for ``families`` (a list, or a callable building them on first render)."""
    return Rendered(families, sequence)


class RenderCache:
    """The latest :class:`Rendered` exposition; None until the first sample has been rendered."""

    def __init__(self) -> None:
        self._current: Rendered | None = None
        self._sequence = 0

    def update(self, families: FamiliesSource) -> Rendered:
        self._sequence += 1
        rendered = render(families, self._sequence)
        self._current = rendered
        return rendered

    @property
    def current(self) -> Rendered | None:
        return self._current
