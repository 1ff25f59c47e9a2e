#!/bin/sh
# replay_live: the live replay against sluice-sink on loopback, and, when
# sluiced is built, through sluiced with a greeting delay in front of it.
# usage: live.sh SLUICE-REPLAY SLUICE-SINK SLUICED|- SOURCE-DIR WORKDIR
set -u
R=$1 SINK=$2 SLUICED=$3 SRC=$4 W=$5
rm -rf "$W" && mkdir -p "$W" || exit 1
fail=0
bad() { echo "FAIL: $*"; fail=1; }
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT INT TERM
"$SINK" --listen 127.0.0.1:0 --print-port --count-only > "$W/sink.port" 2> "$W/sink.err" &
pids="$pids $!"
i=0
while [ ! -s "$W/sink.port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
SP=$(head -1 "$W/sink.port")
[ -n "$SP" ] || { echo "FAIL: sink did not start"; exit 1; }
IN="$SRC/generated/tarpit-greet-2.pcap"
# refuses a non-loopback target
"$R" live --connect 192.0.2.1:25 "$IN" > /dev/null 2> "$W/refuse.err"
[ $? -eq 2 ] && grep -q "refusing" "$W/refuse.err" || bad "non-loopback target not refused"
# straight to the sink, at 1/10 of the captured time
timeout 60 "$R" live -q --connect "127.0.0.1:$SP" --time-scale 0.1 --concurrency 64 \
  --time-limit 40 --patience none --csv "$W/sink.csv" "$IN" || bad "live exit $?"
n=$(grep -vc '^#' "$W/sink.csv")
[ "$n" -eq 201 ] || bad "expected 200 records, got $((n - 1))"
d=$(grep -c ',delivered,' "$W/sink.csv")
[ "$d" -ge 150 ] || bad "only $d delivered through the sink"
grep -q ',error,' "$W/sink.csv" && bad "errors against the sink"
if [ "$SLUICED" != "-" ] && [ -x "$SLUICED" ]; then
  # a free port for sluiced: ask the kernel through a throwaway sink
  "$SINK" --listen 127.0.0.1:0 --print-port --count-only > "$W/p2" 2>/dev/null &
  tp=$!
  i=0
  while [ ! -s "$W/p2" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  LP=$(head -1 "$W/p2"); kill $tp; wait $tp 2>/dev/null
  cat > "$W/sluiced.conf" <<CONF
listen = 127.0.0.1:$LP
upstream = 127.0.0.1:$SP
mode = screen
workers = 1
normal_greet_delay = 1s
greet_teaser = no
upstream_tls = none
health_interval = 0
per_ip_concurrency = 0
CONF
  "$SLUICED" -c "$W/sluiced.conf" > "$W/sluiced.log" 2>&1 &
  pids="$pids $!"
  i=0
  while ! "$R" live -q --connect "127.0.0.1:$LP" --time-limit 1 "$SRC/generated/tarpit-greet-2.pcap" --patience fixed:0.01 > /dev/null 2>&1 && [ $i -lt 30 ]; do
    sleep 0.2; i=$((i + 1)); done
  # 1 s real greeting delay = 10 s of capture time at scale 0.1; patience
  # 5 s (0.5 s real): every client gives up at the greeting
  timeout 60 "$R" live -q --connect "127.0.0.1:$LP" --time-scale 0.1 --concurrency 64 \
    --time-limit 40 --patience fixed:5 --csv "$W/tarpit5.csv" "$IN" || bad "live exit $?"
  g=$(grep -c ',gave-up,greeting,' "$W/tarpit5.csv")
  [ "$g" -eq 200 ] || bad "patience 5 s under a 10 s greeting delay: $g of 200 gave up"
  # patience 20 s: nobody gives up at the greeting, mail gets through
  timeout 60 "$R" live -q --connect "127.0.0.1:$LP" --time-scale 0.1 --concurrency 64 \
    --time-limit 40 --patience fixed:20 --csv "$W/tarpit20.csv" "$IN" || bad "live exit $?"
  grep -q ',gave-up,greeting,' "$W/tarpit20.csv" && bad "patient clients gave up at the greeting"
  d=$(grep -c ',delivered,' "$W/tarpit20.csv")
  [ "$d" -ge 150 ] || bad "only $d delivered through sluiced"
else
  echo "live: sluiced not built, proxy part skipped"
fi
[ $fail -eq 0 ] && echo "live: all passed"
exit $fail
