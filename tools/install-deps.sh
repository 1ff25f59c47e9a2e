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
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

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
