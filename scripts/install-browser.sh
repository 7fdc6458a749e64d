#!/usr/bin/env bash
# Installs Debian's chromium for the headless dashboard tests (idempotent; see apt-install.sh).
exec bash "$(dirname "$0")/apt-install.sh" chromium chromium
