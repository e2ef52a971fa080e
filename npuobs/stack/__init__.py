"""Real-stack runners: start the actual Prometheus, Alertmanager and a local PagerDuty Events v2 sink.

Tests, the demo and game days use these to exercise generated rules and routing against the real
binaries instead of mocks. Every process runs in its own process group on loopback with an
ephemeral port, waits for readiness by polling (never a blind sleep) and is reaped on ``stop()``.
"""

from npuobs.binaries import find_binary
from npuobs.stack.alertmanager import AlertmanagerServer
from npuobs.stack.pagerduty_sink import PagerDutySink
from npuobs.stack.proc import ManagedProcess, free_port, wait_http_ok
from npuobs.stack.prometheus import PrometheusServer, scrape_config

__all__ = [
    "AlertmanagerServer",
    "ManagedProcess",
    "PagerDutySink",
    "PrometheusServer",
    "find_binary",
    "free_port",
    "scrape_config",
    "wait_http_ok",
]
