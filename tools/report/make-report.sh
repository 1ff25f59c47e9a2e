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
MODELS="--patience empirical --patience ops90 --patience vendor10"
DELAYS=0,2,6,10,21,45,100
run_set() { # tag files...
  tag=$1; shift
  echo "make-report: $tag" >&2
  $R patience --csv "$DATA/$tag-km.csv" --obs "$DATA/$tag-obs.csv" "$@" > "$DATA/$tag-km.txt"
  $R sim -q --policy "$POL/base.conf" --sweep greet_delay=$DELAYS $MODELS \
    --jsonl "$DATA/$tag-greet.jsonl" "$@"
  $R sim -q --policy "$POL/base.conf" --sweep reply_delay=$DELAYS $MODELS \
    --jsonl "$DATA/$tag-reply.jsonl" "$@"
  $R sim -q --policy "$POL/base.conf" --policy "$POL/spamd-stutter.conf" \
    --policy "$POL/throttle-1k.conf" $MODELS --jsonl "$DATA/$tag-shape.jsonl" "$@"
  $R sim -q --policy "$POL/base.conf" --sweep mode=passthrough,screen \
    --set greet_delay=6 --patience ops90 --patience empirical \
    --jsonl "$DATA/$tag-mode.jsonl" "$@"
  $R bench --policy "$POL/base.conf" "$@" > "$DATA/$tag-bench.txt"
}
# shellcheck disable=SC2086
run_set real $REAL
run_set synth "$SYN"
$R patience --csv "$DATA/synth-tarpit-km.csv" --obs "$DATA/synth-tarpit-obs.csv" \
  "$ROOT"/pcap-replay/generated/tarpit-*.pcap > "$DATA/synth-tarpit-km.txt"
"$PY" "$ROOT/tools/report/analyze.py" --data "$DATA" --assets "$OUT" \
  --sources "$PCAPS/SOURCES.md" --generated "$ROOT/pcap-replay/generated" \
  --relay "$R" --out "$ROOT/REPORT.md"
echo "make-report: wrote REPORT.md and $OUT" >&2
