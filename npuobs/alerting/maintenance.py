"""Maintenance windows: Alertmanager silences for planned work on nodes or devices.

The SRE guide's fix for "alert storm during maintenance" is to automate maintenance windows in
alerting. A window is one Alertmanager silence per node (so each node's window can end on its
own) matching every npuobs alert on that node, optionally one device: ``alertname=~"Npu.+"``,
``node="..."`` and ``device="..."``. SLO burn alerts carry no node label and stay live on purpose:
if the drained capacity hurts users, someone must still be paged.

Windows are recognised by their comment prefix, so ``list`` and ``end`` never touch silences
someone made by hand with ``amtool``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from npuobs.amapi import AlertmanagerAPI, AlertmanagerError, Matcher

COMMENT_PREFIX = "npuobs maintenance: "
ALL_NPUOBS_ALERTS = Matcher("alertname", "Npu.+", regex=True)


@dataclass(frozen=True)
class Window:
    """One maintenance silence as Alertmanager holds it."""

    id: str
    node: str
    device: str  # "" = the whole node
    starts_at: str
    ends_at: str
    state: str  # "active", "pending" or "expired"
    created_by: str
    comment: str  # without the prefix

    @classmethod
    def from_silence(cls, silence: dict[str, Any]) -> Window | None:
        """The window a silence is, or None when it is not one of ours."""
        comment = str(silence.get("comment", ""))
        if not comment.startswith(COMMENT_PREFIX):
            return None
        labels = {m.name: m.value for m in map(Matcher.from_api, silence.get("matchers", [])) if not m.regex}
        return cls(str(silence["id"]), labels.get("node", ""), labels.get("device", ""), silence["startsAt"],
                   silence["endsAt"], silence.get("status", {}).get("state", ""), silence.get("createdBy", ""),
                   comment[len(COMMENT_PREFIX):])


def start(api: AlertmanagerAPI, nodes: list[str], *, duration: timedelta, comment: str, created_by: str,
          device: str = "") -> list[str]:
    """Open a window on each node (only ``device`` of it when given); the new silence ids."""
    if not nodes or not all(n.strip() for n in nodes):
        # an empty node would match every alert without a node label: the SLO pages this must not silence
        raise ValueError("name at least one node, none of them empty")
    if duration <= timedelta(0):
        raise ValueError("a maintenance window needs a positive duration")
    if not comment.strip():
        raise ValueError("say why in the comment (a change ticket, the work being done)")
    starts = datetime.now(timezone.utc)
    ids: list[str] = []
    for node in nodes:
        matchers = [ALL_NPUOBS_ALERTS, Matcher("node", node)] + ([Matcher("device", device)] if device else [])
        try:
            ids.append(api.create_silence(matchers, starts, starts + duration, created_by=created_by,
                                          comment=COMMENT_PREFIX + comment.strip()))
        except AlertmanagerError as exc:
            if not ids:
                raise
            opened = ", ".join(f"{n} ({i})" for n, i in zip(nodes, ids, strict=False))
            raise type(exc)(f"{exc}; windows already open: {opened}") from exc
    return ids


def windows(api: AlertmanagerAPI, *, include_expired: bool = False) -> list[Window]:
    """npuobs maintenance windows, soonest end first; expired ones only when asked."""
    found = [w for w in map(Window.from_silence, api.silences()) if w is not None]
    return sorted((w for w in found if include_expired or w.state != "expired"), key=lambda w: w.ends_at)


def end(api: AlertmanagerAPI, *, ids: list[str] | None = None, node: str = "") -> list[str]:
    """Expire the open windows with these ids, or every open window on ``node``; the ids ended.

    An id that is not an open npuobs window is an error (nothing is expired then), so a typo
    cannot end someone else's silence.
    """
    if not ids and not node:
        raise ValueError("name the windows to end (ids) or a node")
    open_windows = {w.id: w for w in windows(api)}
    if ids:
        unknown = [i for i in ids if i not in open_windows]
        if unknown:
            raise ValueError(f"not an open npuobs maintenance window: {', '.join(unknown)}")
        chosen = list(ids)
    else:
        chosen = [w.id for w in open_windows.values() if w.node == node]
    for silence_id in chosen:
        api.expire_silence(silence_id)
    return chosen
