"""Game days and soaks: prove with the real rules, real Prometheus and real routing that failures page.

Two engines, one per question:

* ``soak`` (virtual time): "does a healthy day page anyone?" The simulated fleet runs 24 virtual
  hours as fast as the CPU allows; what its exporters would have served is written as timestamped
  OpenMetrics (``record``), backfilled with ``promtool tsdb create-blocks-from openmetrics`` and the
  generated rules are evaluated over it by a real Prometheus (``promeval``).
* ``runner`` (live): "does each failure mode reach the right person with the right runbook?" On the
  embedded stack (fleet, exporters, Prometheus, Alertmanager, PagerDuty sink), each scenario of
  ``scenarios`` is injected, its alerts and PagerDuty events are watched, and ``grader`` scores them.

``report`` turns either result into a table, Markdown and JSON.
"""
