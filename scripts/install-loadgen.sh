#!/usr/bin/env bash
# Installs Debian's h2load (package nghttp2-client) for bench/overload.py, plus wrk when apt has it (optional).
# Idempotent: exits 0 quietly when h2load is already on PATH. Needs root or sudo.
set -euo pipefail

if command -v h2load >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-loadgen.sh: need root (or sudo) to apt-get install nghttp2-client" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
# wrk is only a convenience for manual runs; the bench does not need it.
$SUDO apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 || echo "install-loadgen.sh: wrk not installed (optional)" >&2
command -v h2load >/dev/null
