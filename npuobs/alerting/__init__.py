"""Alert and recording-rule generation: SLO specs -> burn-rate rules, the device alert catalogue,
runbook links and the Alertmanager routing config. ``npuobs alerts generate`` drives it."""
