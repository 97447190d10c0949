#!/usr/bin/env bash
# Install OWASP CRS 3.3.x from Debian's modsecurity-crs package (idempotent).
# Rules land in /usr/share/modsecurity-crs/rules, the setup file in /etc/modsecurity/crs/crs-setup.conf.
set -euo pipefail

RULES_DIR=/usr/share/modsecurity-crs/rules
SETUP=/etc/modsecurity/crs/crs-setup.conf

if [ -f "$RULES_DIR/REQUEST-901-INITIALIZATION.conf" ] && [ -f "$SETUP" ]; then
  echo "CRS already installed: $RULES_DIR ($(dpkg-query -W -f='${Version}' modsecurity-crs 2>/dev/null || echo unknown))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq modsecurity-crs
echo "CRS installed: $RULES_DIR (setup: $SETUP)"
