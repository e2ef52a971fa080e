"""Route alerts to ``npuobs remediate``: the Alertmanager route and receiver that add the webhook.

The route goes first with ``continue: true``, so every alert still reaches the generated PagerDuty
routes exactly as before; remediation is in addition to paging, never instead of it.
"""

from __future__ import annotations

from typing import Any

import yaml

RECEIVER = "npuobs-remediate"


def with_webhook(config: dict[str, Any], url: str, matcher: str = 'alertname=~"Npu.+"') -> dict[str, Any]:
    """A copy of an Alertmanager config whose alerts matching ``matcher`` also go to the webhook ``url``."""
    out = yaml.safe_load(yaml.safe_dump(config))
    route = out.setdefault("route", {})
    route["routes"] = [{"matchers": [matcher], "receiver": RECEIVER, "continue": True,
                        "group_wait": route.get("group_wait", "30s")}] + list(route.get("routes") or [])
    out["receivers"] = list(out.get("receivers") or []) + [
        {"name": RECEIVER, "webhook_configs": [{"url": url, "send_resolved": False}]}]
    return out
