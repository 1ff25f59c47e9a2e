#!/bin/sh
# The same capture replayed through the core on the virtual clock (sim) and
# live against a running sluiced (time-scaled, captured arrivals, one
# loopback source address per captured client), for the agreement table of
# REPORT.md.  sluiced relays to sluice-sink; sim models the same upstream
# (--upstream sink).  sluiced's delays are wall-clock, so its greeting delay
# and timeouts are the capture-time values (sim: the defaults, 300 s for a
# command, 180 s for a data block) times the time scale.
# Both sides run one policy: sluiced's default relay_domains (none: every
# recipient refused 454 4.7.1) is not the replay's (every domain passes, as
# its upstream is simulated), so the policy names relay_domains = *; without
# it the live run refused every RCPT and 96 sessions delivered in sim ended
# after the message in live.  sluiced's log is kept as OUT_PREFIX-sluiced.log
# (its session lines: refusals, last_upstream_code) to explain a difference.
# usage: tools/report/sim-vs-live.sh BUILD_DIR OUT_PREFIX CAPTURE...
# env: SCALE (0.1), GREET (capture seconds, 21), PATIENCE (ops90), SEED (1)
set -eu
BUILD=$1 OUTP=$2
shift 2
SCALE=${SCALE:-0.1} GREET=${GREET:-21} PATIENCE=${PATIENCE:-ops90} SEED=${SEED:-1}
R=$BUILD/pcap-replay/sluice-replay SINK=$BUILD/tools/sink/sluice-sink SLUICED=$BUILD/drivers/sluiced
for x in "$R" "$SINK" "$SLUICED"; do
  [ -x "$x" ] || { echo "sim-vs-live: $x not built" >&2; exit 1; }
done
W=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  cp "$W/sluiced.log" "$OUTP-sluiced.log" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM
port_of() { # file: waits for the first line
  i=0
  while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  head -1 "$1"
}
"$SINK" --listen 127.0.0.1:0 --print-port --count-only --quiet > "$W/sink.port" 2> "$W/sink.err" &
pids="$pids $!"
SP=$(port_of "$W/sink.port")
"$SINK" --listen 127.0.0.1:0 --print-port --count-only --quiet > "$W/p2" 2>/dev/null &
tp=$!
LP=$(port_of "$W/p2")
kill $tp; wait $tp 2>/dev/null || true
POLICY="mode = passthrough
features = all
auth_requires_tls = no
lenient_bare_lf = yes
relay_domains = *"
WALLMS=$(awk "BEGIN { printf \"%d\", $GREET * $SCALE * 1000 + 0.5 }")
cat > "$W/sluiced.conf" <<CONF
listen = 127.0.0.1:$LP
upstream = 127.0.0.1:$SP
workers = 1
greet_teaser = no
upstream_tls = none
health_interval = 0
$POLICY
normal_greet_delay = ${WALLMS}ms
command_timeout = $(awk "BEGIN { printf \"%d\", 300 * $SCALE * 1000 }")ms
data_block_timeout = $(awk "BEGIN { printf \"%d\", 180 * $SCALE * 1000 }")ms
send_timeout = $(awk "BEGIN { printf \"%d\", 300 * $SCALE * 1000 }")ms
CONF
printf '%s\nnormal_greet_delay = %ss\n' "$POLICY" "$GREET" > "$W/sim.conf"
"$SLUICED" -c "$W/sluiced.conf" > "$W/sluiced.log" 2>&1 &
pids="$pids $!"
i=0
until grep -q "listening" "$W/sluiced.log" 2>/dev/null || [ $i -ge 50 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
kill -0 "${pids##* }" 2>/dev/null || { cat "$W/sluiced.log" >&2; exit 1; }
echo "sim-vs-live: sim" >&2
"$R" sim -q --seed "$SEED" --policy "$W/sim.conf" --patience "$PATIENCE" --upstream sink:0 \
  --jsonl "$OUTP-sim.jsonl" "$@"
echo "sim-vs-live: live against sluiced (time scale $SCALE)" >&2
"$R" live --seed "$SEED" --connect "127.0.0.1:$LP" --time-scale "$SCALE" --concurrency 2000 \
  --time-limit 900 --patience "$PATIENCE" --jsonl "$OUTP-live.jsonl" "$@" > "$OUTP-live.txt"
printf 'scale %s\ngreet_delay %s\npatience %s\nseed %s\n' "$SCALE" "$GREET" "$PATIENCE" "$SEED" \
  > "$OUTP-params.txt"
