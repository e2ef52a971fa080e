"""Grafana dashboards generated from the metric schema, the shared thresholds and the SLO spec.

One module per dashboard (``executive``, ``oncall``, ``debug``), shared building blocks in
``panels`` and ``queries``, rendering and provisioning in ``generate``, checks in ``validate``,
PromQL extraction in ``promql`` and the PNG/HTML renderer in ``snapshot``.
"""
