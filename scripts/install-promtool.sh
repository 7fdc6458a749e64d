#!/usr/bin/env bash
# Installs promtool (Debian package prometheus) for the exposition, Grafana and alert-rule checks (idempotent; see
# apt-install.sh). Only its promtool binary is used; the package's server is never started.
exec bash "$(dirname "$0")/apt-install.sh" promtool prometheus
