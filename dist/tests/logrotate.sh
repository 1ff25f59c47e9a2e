#!/bin/sh
# logrotate parses the snippet and, run for real on a copy whose paths point
# into WORKDIR, rotates the log, creates the new one and signals the pid in
# the pid file with SIGUSR1 (what makes sluiced reopen log_file).  The user
# sluice need not exist here: the copy creates the file for the caller.
# usage: logrotate.sh LOGROTATE SNIPPET WORKDIR
set -u
L=$1 S=$2 W=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$L" ] || fail "logrotate not found (apt-get install logrotate)"
rm -rf "$W" && mkdir -p "$W/log" || exit 1
grep -q 'kill -USR1 "$(cat /run/sluice/sluiced.pid)"' "$S" || fail "no SIGUSR1 in postrotate"
grep -q '^[[:space:]]*create 0640 sluice adm$' "$S" || fail "no create line for sluice"
u=$(id -un) g=$(id -gn)
sed -e "s|/var/log/sluice/|$W/log/|" -e "s|/run/sluice/sluiced.pid|$W/pid|g" \
    -e "s|create 0640 sluice adm|create 0640 $u $g|" "$S" > "$W/snippet"
chmod 644 "$W/snippet"
# A stand-in for sluiced that records SIGUSR1.
sh -c "trap 'echo reopened > $W/usr1; exit 0' USR1; while :; do sleep 0.1; done" &
pid=$!
echo $pid > "$W/pid"
echo "a line" > "$W/log/sluiced.log"
out=$("$L" -f -s "$W/state" "$W/snippet" 2>&1)
rc=$?
i=0
while [ ! -e "$W/usr1" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kill $pid 2>/dev/null
[ $rc -eq 0 ] || fail "logrotate: $out"
[ -e "$W/usr1" ] || fail "postrotate did not send SIGUSR1"
[ -e "$W/log/sluiced.log.1" ] || fail "not rotated: $(ls "$W/log")"
[ -e "$W/log/sluiced.log" ] || fail "no new log created"
echo "ok: logrotate rotates, creates, and signals SIGUSR1"
