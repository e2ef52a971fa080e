"""npuobs: one schema, exporter, alerts, dashboards and runbooks for fleets of NPUs (and the GPUs beside them)."""

__version__ = "0.1.0"
