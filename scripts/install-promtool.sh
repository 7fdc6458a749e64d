#!/usr/bin/env bash
# Installs promtool (Debian package prometheus) for the exposition, Grafana and alert-rule checks (CI runs this as
# root). Idempotent: exits 0 quietly when promtool is already on the PATH.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-promtool.sh: need root (or sudo) to apt-get install prometheus" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package's server is not started: only its promtool binary is used.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
