#!/usr/bin/env bash
# Installs a Debian package for tests that need a system program: `apt-install.sh PROGRAM PACKAGE`.
# Idempotent: exits 0 quietly when PROGRAM is already on the PATH (CI runs this as root; sudo otherwise).
set -euo pipefail
program=$1 package=$2

if command -v "$program" >/dev/null 2>&1; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "apt-install.sh: need root (or sudo) to apt-get install $package" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$package" >/dev/null
command -v "$program" >/dev/null
