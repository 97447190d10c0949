#!/usr/bin/env bash
# Install the system tools the benchmarks need: haproxy (>= 2.5 for jwt_verify; Debian 12 ships
# 2.6), wrk, curl, taskset (util-linux) for bench/gateway_bench.py; nginx and its ModSecurity 3
# connector (libnginx-mod-http-modsecurity, which pulls libmodsecurity3) for
# bench/bench_waf_compare.py, which also needs the CRS (modsecurity-crs: scripts/install-crs.sh).
# Idempotent: installs only what is missing, prints what it did, exits non-zero on failure. Never
# starts a system service (nginx or haproxy on :80): the benchmarks run their own instances.
# Needs root (or sudo) for apt-get.
set -euo pipefail

log() { printf '[install-bench-tools] %s\n' "$*"; }
die() { printf '[install-bench-tools] ERROR: %s\n' "$*" >&2; exit 1; }

TOOLS=(haproxy wrk curl taskset nginx)
declare -A PKG_OF=([haproxy]=haproxy [wrk]=wrk [curl]=curl [taskset]=util-linux [nginx]=nginx)
# nginx lives in /usr/sbin, which a non-root PATH may lack
PATH="$PATH:/usr/sbin:/sbin"
MODSEC_PKG=libnginx-mod-http-modsecurity
modsec_module() { dpkg -L "$MODSEC_PKG" 2>/dev/null | grep -m1 '/ngx_http_modsecurity_module\.so$' || true; }
missing=()
for tool in "${TOOLS[@]}"; do
  if command -v "$tool" >/dev/null 2>&1; then
    log "present: $tool ($(command -v "$tool"))"
  else
    missing+=("${PKG_OF[$tool]}")
  fi
done
if [[ -n "$(modsec_module)" ]]; then
  log "present: $MODSEC_PKG ($(modsec_module))"
else
  missing+=("$MODSEC_PKG")
fi

if ((${#missing[@]})); then
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install by hand: ${missing[*]}"
    SUDO=(sudo)
  fi
  # Keep the haproxy and nginx packages from starting their system services (they would bind :80
  # etc.): invoke-rc.d asks policy-rc.d first, and 101 means "action forbidden".
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  cleanup() { if ((made_policy)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  log "apt-get update"
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || die "apt-get install failed"
  log "installed: ${missing[*]}"
else
  log "nothing to install"
fi

for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after install"
done
[[ -n "$(modsec_module)" ]] || die "$MODSEC_PKG installed no ngx_http_modsecurity_module.so"
[[ -d /usr/share/modsecurity-crs/rules ]] \
  || log "note: no CRS in /usr/share/modsecurity-crs/rules (bench_waf_compare.py needs scripts/install-crs.sh)"

hv=$(haproxy -v 2>/dev/null | sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\).*/\1/p' | head -1)
awk -v v="$hv" 'BEGIN{split(v,a,"."); exit !((a[1]>2)||(a[1]==2&&a[2]>=5))}' \
  || die "HAProxy >= 2.5 needed for jwt_verify (found '${hv:-none}')"
log "haproxy $hv, $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(curl --version | head -1 | cut -d' ' -f1-2)"
log "$(nginx -v 2>&1), ModSecurity module $(modsec_module)"
