#!/bin/sh
# Regenerates REPORT.md and its plots (REPORT.assets/) from the real
# captures (../shared/pcaps) and the synthetic corpus (pcap-replay/generated).
# usage: tools/report/make-report.sh [BUILD_DIR]     (default: build)
# env: PCAPS=DIR (real captures), PYTHON=/usr/bin/python3
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PCAPS=${PCAPS:-$ROOT/../shared/pcaps}
PY=${PYTHON:-/usr/bin/python3}
OUT=$ROOT/REPORT.assets
DATA=$BUILD/report-data
cmake -S "$ROOT" -B "$BUILD" -G Ninja > /dev/null
ninja -C "$BUILD" sluice-replay > /dev/null
R=$BUILD/pcap-replay/sluice-replay
mkdir -p "$OUT" "$DATA"
POL=$ROOT/tools/report/policies
REAL=$(ls "$PCAPS"/*.pcap "$PCAPS"/*.pcapng 2>/dev/null | sort)
SYN=$ROOT/pcap-replay/generated/mixed-1000.pcap
[ -n "$REAL" ] || { echo "make-report: no captures in $PCAPS" >&2; exit 1; }
GREET=0,2,6,10,21,45,90,100
REPLY=0,2,6,10,21,45,100
SEEDS="1 2 3 4 5 6 7 8 9 10"
# Give-up is computed exactly from the waits each policy imposes (records
# w_read, w_reply, w_session with patience "none"; tools/report/estimators.py),
# so the sweeps run without a patience model.  Only the costs (time held,
# which depends on when a client leaves) use seeded patience draws.
run_set() { # tag files...
  tag=$1; shift
  echo "make-report: $tag: patience observations" >&2
  $R patience --csv "$DATA/$tag-km.csv" --obs "$DATA/$tag-obs.csv" "$@" > "$DATA/$tag-km.txt"
  echo "make-report: $tag: waits under greeting, reply, stutter and throttle policies" >&2
  $R sim -q --policy "$POL/base.conf" --sweep greet_delay=$GREET \
    --jsonl "$DATA/$tag-greet.jsonl" "$@"
  $R sim -q --policy "$POL/base.conf" --sweep reply_delay=$REPLY \
    --jsonl "$DATA/$tag-reply.jsonl" "$@"
  $R sim -q --policy "$POL/base.conf" --policy "$POL/spamd-stutter.conf" \
    --policy "$POL/throttle-1k.conf" --jsonl "$DATA/$tag-shape.jsonl" "$@"
  $R sim -q --policy "$POL/base.conf" --sweep mode=passthrough,screen \
    --set greet_delay=6 --jsonl "$DATA/$tag-mode.jsonl" "$@"
  echo "make-report: $tag: costs over seeded patience draws ($SEEDS)" >&2
  for seed in $SEEDS; do
    $R sim -q --seed "$seed" --policy "$POL/base.conf" --sweep greet_delay=$GREET \
      --patience ops90 --patience ops90-late --patience vendor10 \
      --jsonl "$DATA/$tag-cost-$seed.jsonl" "$@"
    $R sim -q --seed "$seed" --policy "$POL/base.conf" --sweep mode=passthrough,screen \
      --set greet_delay=6 --patience ops90 --patience vendor10 \
      --jsonl "$DATA/$tag-costmode-$seed.jsonl" "$@"
  done
  echo "make-report: $tag: slow-lane scenario under each clock" >&2
  for seed in $SEEDS; do
    for clock in read reply; do
      $R sim -q --seed "$seed" --policy "$POL/spamd-stutter.conf" --policy "$POL/throttle-1k.conf" \
        --patience vendor10 --patience ops90 --patience-clock $clock \
        --jsonl "$DATA/$tag-scen2-$clock-$seed.jsonl" "$@"
    done
  done
  $R bench --policy "$POL/base.conf" "$@" > "$DATA/$tag-bench.txt"
}
# shellcheck disable=SC2086
run_set real $REAL
run_set synth "$SYN"
$R patience --csv "$DATA/synth-tarpit-km.csv" --obs "$DATA/synth-tarpit-obs.csv" \
  "$ROOT"/pcap-replay/generated/tarpit-*.pcap > "$DATA/synth-tarpit-km.txt"
# The simulator against the live proxy (SIMLIVE=0 skips: needs sluiced and
# sluice-sink built, about a minute of wall time).
if [ "${SIMLIVE:-1}" != 0 ]; then
  ninja -C "$BUILD" sluiced sluice-sink > /dev/null
  echo "make-report: sim against live sluiced on mixed-1000" >&2
  sh "$ROOT/tools/report/sim-vs-live.sh" "$BUILD" "$DATA/simlive" "$SYN"
fi
"$PY" "$ROOT/tools/report/analyze.py" --data "$DATA" --assets "$OUT" --seeds "$SEEDS" \
  --sources "$PCAPS/SOURCES.md" --generated "$ROOT/pcap-replay/generated" \
  --relay "$R" --out "$ROOT/REPORT.md"
echo "make-report: wrote REPORT.md and $OUT" >&2
