#!/usr/bin/env bash
# Builds the Debian package from this tree and checks that it installs and
# runs:
#   1. copies the tree (tracked and new files, no build dirs) to a temp dir,
#      so dpkg-buildpackage writes its .deb there and not beside the tree;
#   2. dpkg-buildpackage -us -uc -b, then lintian: no error (warnings are
#      printed);
#   3. dpkg-deb -x into a temp root (nothing is installed on this machine):
#      the layout, systemd-analyze verify of the packaged unit, the conffile;
#   4. the extracted sluiced with the packaged /etc/sluice/sluiced.conf
#      (only listen/upstream/pid_file/log_file pointed at temp places, on a
#      free port below 1024): --check-config, start as root, drop to user
#      sluice (created for the test with the postinst's adduser line, and
#      removed again if it did not exist), pid file, process titles, a
#      message relayed to sluice-sink, SIGUSR1 reopen, SIGTERM stop.
# Bounded: each wait has a timeout; the build is the long part (~2-3 min
# on two cores).  Usage: tools/package-test.sh [--keep] [--dpkg]
# --dpkg also installs the package with dpkg -i (maintainer scripts: the
# user, the directories, the conffile; policy-rc.d keeps any service from
# starting), runs --check-config on the installed /etc/sluice/sluiced.conf,
# then purges it and checks that nothing is left (the user is removed too
# when this script created it).  Refused if sluice is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
keep=0 dpkg_trial=0
for a in "$@"; do
  case $a in
    --keep) keep=1 ;;
    --dpkg) dpkg_trial=1 ;;
    *) echo "usage: $0 [--keep] [--dpkg]" >&2; exit 2 ;;
  esac
done

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '\n=== %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || fail "needs root (it starts sluiced as root to see it drop privileges)"
for t in dpkg-buildpackage lintian dpkg-deb systemd-analyze swaks adduser; do
  command -v "$t" >/dev/null || fail "$t missing (tools/install-deps.sh)"
done

tmp=$(mktemp -d /tmp/sluice-pkg.XXXXXX)
chmod 755 "$tmp"
created_user=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ $created_user -eq 1 ]; then
    userdel sluice 2>/dev/null || true
    groupdel sluice 2>/dev/null || true
  fi
  if [ $keep -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi
}
trap cleanup EXIT
start=$(date +%s)

step "copy of the tree"
mkdir "$tmp/src"
git ls-files -z -co --exclude-standard | grep -zv '^build' | tar -C "$repo" --null -T - -cf - |
  tar -C "$tmp/src" -xf -

step "dpkg-buildpackage -us -uc -b"
(cd "$tmp/src" && DEB_BUILD_OPTIONS="parallel=2" dpkg-buildpackage -us -uc -b) \
  > "$tmp/build.log" 2>&1 || { tail -50 "$tmp/build.log"; fail "dpkg-buildpackage"; }
deb=$(ls "$tmp"/sluice_*.deb)
echo "built $(basename "$deb") in $(( $(date +%s) - start )) s"

step "lintian"
lintian --allow-root --tag-display-limit 0 "$tmp"/sluice_*.changes > "$tmp/lintian.txt" 2>&1 || true
cat "$tmp/lintian.txt"
grep -q '^E: ' "$tmp/lintian.txt" && fail "lintian reports errors"
echo "lintian: $(grep -c '^E: ' "$tmp/lintian.txt" || true) errors, $(grep -c '^W: ' "$tmp/lintian.txt" || true) warnings"

step "contents"
root=$tmp/root
dpkg-deb -x "$deb" "$root"
for f in usr/sbin/sluiced usr/bin/sluice-replay usr/bin/sluice-sink usr/bin/sluice-gen-traffic \
         usr/share/doc/sluice/examples/sluiced.conf.example etc/sluice/sluiced.conf \
         usr/share/man/man8/sluiced.8.gz usr/share/man/man5/sluiced.conf.5.gz \
         usr/share/man/man1/sluice-replay.1.gz usr/share/man/man1/sluice-sink.1.gz \
         usr/share/man/man1/sluice-gen-traffic.1.gz lib/systemd/system/sluiced.service \
         etc/logrotate.d/sluiced usr/lib/tmpfiles.d/sluice.conf; do
  [ -e "$root/$f" ] || fail "$f not in the package"
done
dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/sluice/sluiced.conf "$tmp/control/conffiles" || fail "sluiced.conf is not a conffile"
grep -qx /etc/logrotate.d/sluiced "$tmp/control/conffiles" || fail "logrotate is not a conffile"
grep -q 'adduser --system' "$tmp/control/postinst" || fail "postinst does not create the user"
unit=$root/lib/systemd/system/sluiced.service
grep -q '^ExecStart=/usr/sbin/sluiced -c /etc/sluice/sluiced.conf$' "$unit" || fail "unit ExecStart"
sed "s|^\(Exec[A-Za-z]*=\)/usr/sbin/sluiced |\1$root/usr/sbin/sluiced |" "$unit" > "$tmp/sluiced.service"
out=$(MANPATH=$root/usr/share/man systemd-analyze verify "$tmp/sluiced.service" 2>&1) ||
  fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
echo "layout, conffiles and unit ok"

step "the extracted sluiced, packaged config"
if ! getent passwd sluice > /dev/null; then
  adduser --system --group --quiet --home /nonexistent --no-create-home sluice
  created_user=1
fi
sink=$root/usr/bin/sluice-sink
mkdir -p "$tmp/mail" "$tmp/run" "$tmp/log"
chown sluice:sluice "$tmp/run" "$tmp/log"
"$sink" --listen 127.0.0.1:0 --print-port --maildir "$tmp/mail" > "$tmp/sink.port" 2> "$tmp/sink.err" &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/sink.port" ] && break; sleep 0.1; done
sport=$(head -1 "$tmp/sink.port")
[ -n "$sport" ] || fail "sink did not start"
# A free port below 1024: binding it needs root, so the drop is exercised.
port=$(/usr/bin/python3 - <<'PY'
import socket
for p in range(700, 1000):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
PY
)
conf=$tmp/sluiced.conf
sed -e "s|^listen = .*|listen = 127.0.0.1:$port|" -e "s|^upstream = .*|upstream = 127.0.0.1:$sport|" \
    -e "s|^pid_file = .*|pid_file = $tmp/run/sluiced.pid|" \
    -e "s|^log_file = .*|log_file = $tmp/log/sluiced.log|" \
    -e "s|^#relay_domains = .*|relay_domains = example.test|" "$root/etc/sluice/sluiced.conf" > "$conf"
chmod 644 "$conf"
diff <(grep -v '^#\?\(listen\|upstream\|pid_file\|log_file\|relay_domains\) =' "$root/etc/sluice/sluiced.conf") \
     <(grep -v '^#\?\(listen\|upstream\|pid_file\|log_file\|relay_domains\) =' "$conf") || fail "config differs"
grep -qx 'user = sluice' "$conf" || fail "packaged config has no user = sluice"
"$root/usr/sbin/sluiced" --check-config -c "$conf" || fail "--check-config"
"$root/usr/sbin/sluiced" -c "$conf" -w 2 > "$tmp/sluiced.out" 2>&1 &
spid=$!
pids+=($spid)
for _ in $(seq 100); do [ -s "$tmp/run/sluiced.pid" ] && break; sleep 0.1; done
[ "$(cat "$tmp/run/sluiced.pid" 2>/dev/null)" = "$spid" ] || fail "pid file: $(cat "$tmp/sluiced.out")"
for _ in $(seq 100); do [ "$(grep -c ' ready: ' "$tmp/log/sluiced.log")" -ge 2 ] && break; sleep 0.1; done
ps -o pid=,user=,args= --pid "$spid" --ppid "$spid" > "$tmp/ps"
cat "$tmp/ps"
grep -q "^ *$spid sluice  *sluiced: master$" "$tmp/ps" || fail "master is not 'sluiced: master' as sluice"
for n in 0 1; do
  grep -q " sluice  *sluiced: worker $n$" "$tmp/ps" || fail "no 'sluiced: worker $n' as sluice"
done
grep -q ' root ' "$tmp/ps" && fail "a process runs as root"
swaks --server "127.0.0.1:$port" --from a@example.test --to b@example.test \
  --body "packaged sluiced" > "$tmp/swaks.out" 2>&1 || fail "swaks: $(tail -5 "$tmp/swaks.out")"
for _ in $(seq 50); do ls "$tmp/mail"/*.eml > /dev/null 2>&1 && break; sleep 0.1; done
grep -q "packaged sluiced" "$tmp/mail"/*.eml || fail "message not in the sink"
mv "$tmp/log/sluiced.log" "$tmp/log/sluiced.log.1"
kill -USR1 "$spid"
for _ in $(seq 50); do [ -e "$tmp/log/sluiced.log" ] && break; sleep 0.1; done
[ "$(stat -c %U "$tmp/log/sluiced.log" 2>/dev/null)" = sluice ] || fail "log not reopened as sluice"
kill -TERM "$spid"
for _ in $(seq 150); do kill -0 "$spid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$spid" 2>/dev/null && fail "sluiced did not stop on SIGTERM"
wait "$spid" && rc=0 || rc=$?
[ $rc -eq 0 ] || fail "sluiced exited with $rc: $(cat "$tmp/sluiced.out")"
[ ! -e "$tmp/run/sluiced.pid" ] || fail "pid file left behind"
grep -q 'msg=session .*stage=delivered' "$tmp/log/sluiced.log.1" || fail "no session line"
if [ $dpkg_trial -eq 1 ]; then
  step "dpkg -i, then purge"
  dpkg-query -W -f='${Status}' sluice 2>/dev/null | grep -q 'installed' &&
    fail "sluice is installed on this machine already: not touching it"
  # The user this script made for the run goes first, so that the
  # postinst's own adduser is what is tested (cleanup removes its user).
  if [ $created_user -eq 1 ]; then
    userdel sluice
    groupdel sluice 2>/dev/null || true
  fi
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  dpkg -i "$deb" > "$tmp/dpkg-i.log" 2>&1 || { cat "$tmp/dpkg-i.log"; dpkg --purge sluice || true; fail "dpkg -i"; }
  getent passwd sluice > /dev/null || fail "postinst did not create user sluice"
  [ "$(stat -c %U:%G:%a /run/sluice)" = sluice:sluice:755 ] || fail "/run/sluice: $(stat -c %U:%G:%a /run/sluice)"
  [ "$(stat -c %U:%G:%a /var/log/sluice)" = sluice:adm:750 ] || fail "/var/log/sluice"
  /usr/sbin/sluiced --check-config -c /etc/sluice/sluiced.conf || fail "installed config does not check"
  dpkg --purge sluice > "$tmp/dpkg-purge.log" 2>&1 || { cat "$tmp/dpkg-purge.log"; fail "dpkg --purge"; }
  [ $policy_created -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  for f in /usr/sbin/sluiced /etc/sluice /var/log/sluice /run/sluice /lib/systemd/system/sluiced.service; do
    [ ! -e "$f" ] || fail "$f left after purge"
  done
  echo "installed and purged cleanly"
fi

echo "ok: package built, lintian clean of errors, installed sluiced ran as sluice and relayed" \
     "($(( $(date +%s) - start )) s)"
