"""Where the external programs live (promtool, amtool, prometheus, alertmanager).

Below everything that runs or calls them: the alert generator validates its output with promtool
and amtool, the embedded stack starts Prometheus and Alertmanager; both look them up here, so
generating rules never imports the stack that runs servers.
"""

from __future__ import annotations

import shutil


def find_binary(name: str, *alternatives: str) -> str | None:
    """Absolute path of the first of ``name, *alternatives`` found on PATH, or None.

    Alternatives exist because distributions rename binaries (Debian ships ``prometheus-alertmanager``
    where upstream ships ``alertmanager``).
    """
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path:
            return path
    return None
