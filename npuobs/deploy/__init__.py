"""Deploy artifacts: the Helm chart rendered without Helm and everything kept in sync with it.

``template`` (a strict interpreter for the Go-template/Sprig subset the chart uses), ``chart``
(values, Helm's objects, render every template), ``sync`` (the files generated from the chart and
the SLO spec: ``python -m npuobs.deploy [--check]``). docs/deploy.md explains the choices.
"""
