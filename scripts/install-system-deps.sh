#!/usr/bin/env bash
# Installs the real Prometheus stack the demo and the tests run against (Debian/Ubuntu packages),
# plus docker-compose (validation only: no engine is needed) and VictoriaMetrics (victoria-metrics,
# vmagent, vmalert: the global tier and `npuobs scale`). Skips what is already installed.
set -euo pipefail

need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v vmagent >/dev/null || need+=(victoria-metrics)
command -v vmalert >/dev/null || need+=(victoria-metrics)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-system-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: no apt-get here; install these yourself: ${need[*]}" >&2
  exit 1
fi
echo "install-system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2046
$sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
# Debian starts the services on install where an init system runs; the demo and tests start their own.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter victoria-metrics vmagent vmalert; do
  $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
