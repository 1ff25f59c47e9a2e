#!/usr/bin/env bash
# Installs, from Debian's archive, every package that building, running and
# testing sluice needs.  Idempotent: packages already present are skipped, so
# the README commands and .ci/run can call it unconditionally.
set -euo pipefail

packages=(
  build-essential cmake ninja-build clang llvm lld libclang-rt-14-dev
  libssl-dev openssl libpcap-dev libc-ares-dev pkg-config
  python3-pytest python3-aiosmtpd python3-matplotlib python3-numpy python3-scipy
  swaks libnet-ssleay-perl libio-socket-inet6-perl postfix unbound dnsutils tshark tcpdump
  gnuplot-nox lcov afl++ iproute2 procps
  libidn12 util-linux
)

# sluice as a service: man page lint, unit and logrotate checks, the Debian
# package build and its lintian (dist/, debian/, tools/package-test.sh).
packages+=(mandoc logrotate systemd debhelper dpkg-dev fakeroot lintian adduser)

# Content filters (rspamd, clamd, python milters), scale-out (HAProxy, Redis),
# the test beds run in parallel (pytest-xdist), and the format check.
packages+=(rspamd clamav-daemon clamav python3-milter haproxy redis-server redis-tools
           python3-pytest-xdist clang-format postgrey
           postfix-policyd-spf-python policyd-rate-limit)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# The receiver matrix (testbeds/test_receivers_*.py) also runs Exim and
# OpenSMTPD.  Both conflict with postfix as packages (mail-transport-agent), so
# they are unpacked, never installed: apt-get download + dpkg-deb -x into
# $SLUICE_RECEIVERS_ROOT; no maintainer script runs, no daemon starts.
# Debian's builds want the users Debian-exim (Exim) and opensmtpd/opensmtpq
# (OpenSMTPD).  ../shared/RECEIVERS.md; testbeds/README.md "Receiver matrix".
install_receivers() {
  local root="${SLUICE_RECEIVERS_ROOT:-/opt/sluice-test-receivers}"
  if [ ! -x "$root/usr/sbin/exim4" ] || [ ! -x "$root/usr/sbin/smtpd" ]; then
    local dl
    dl="$(mktemp -d)"
    chmod 755 "$dl"
    ( cd "$dl" && { $sudo apt-get download -qq exim4-daemon-light opensmtpd 2>/dev/null ||
                    { $sudo apt-get update -qq && $sudo apt-get download -qq exim4-daemon-light opensmtpd; }; } )
    $sudo mkdir -p "$root"
    for deb in "$dl"/*.deb; do $sudo dpkg-deb -x "$deb" "$root"; done
    rm -rf "$dl"
  fi
  id Debian-exim >/dev/null 2>&1 || $sudo useradd -r -M -d /var/spool/exim4 -s /usr/sbin/nologin Debian-exim
  local u
  for u in opensmtpd opensmtpq; do
    id "$u" >/dev/null 2>&1 || $sudo useradd -r -M -d /var/lib/opensmtpd/empty -s /usr/sbin/nologin "$u"
  done
  # Mount points for each OpenSMTPD instance's private queue (it runs in its own
  # mount namespace; these host directories stay empty).
  $sudo mkdir -p /var/spool/smtpd /var/lib/opensmtpd/empty
}

if [ ${#missing[@]} -eq 0 ]; then
  install_receivers
  exit 0
fi

# Postfix and unbound must not start as system daemons: the tests start their
# own instances.  policy-rc.d exiting 101 tells invoke-rc.d "not now".
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT

echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_receivers
