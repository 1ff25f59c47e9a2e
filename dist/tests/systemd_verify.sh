#!/bin/sh
# systemd-analyze verify accepts the unit with no message at all (unknown
# keys and bad values are only warnings there, with status 0, so any output
# fails).  The unit's binary paths point at this build and MANPATH at the
# built pages, so its ExecStart and Documentation= checks run too.
# usage: systemd_verify.sh SYSTEMD_ANALYZE UNIT SLUICED MANDIR WORKDIR
set -u
SA=$1 UNIT=$2 D=$3 MAN=$4 W=$5
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$SA" ] || fail "systemd-analyze not found (apt-get install systemd)"
rm -rf "$W" && mkdir -p "$W" || exit 1
grep -q '^ExecStart=/.*/sluiced -c ' "$UNIT" || fail "no ExecStart in $UNIT"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$UNIT" || fail "no ExecReload"
grep -q '^NoNewPrivileges=yes$' "$UNIT" || fail "no NoNewPrivileges"
sed "s|^\(Exec[A-Za-z]*=\)/[^ ]*/sluiced |\1$D |" "$UNIT" > "$W/sluiced.service"
out=$(MANPATH=$MAN SYSTEMD_LOG_LEVEL=notice "$SA" verify "$W/sluiced.service" 2>&1)
rc=$?
# verify also loads the units the machine has enabled (multi-user.target
# pulls them in) and warns about their files: those lines are about other
# packages (policyd-rate-limit's unit still says StandardOutput=syslog),
# not this unit.
out=$(printf '%s\n' "$out" | grep -Ev '^(/usr)?/lib/systemd/system/|^/etc/systemd/system/' || true)
[ $rc -eq 0 ] || fail "systemd-analyze verify: status $rc: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
echo "ok: systemd-analyze verify is silent"
