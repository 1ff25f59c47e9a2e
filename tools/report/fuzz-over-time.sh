#!/bin/sh
# fuzz-over-time.sh: the fuzzing-over-time experiment of REPORT.md section 9.
#   fuzz-over-time.sh start OUT [RUNS] [SECONDS]
#     builds the libFuzzer relay target (build-fuzz, clang, ASan+UBSan),
#     freezes a copy of it and the core revision in OUT, writes the seed-only
#     corpus (make-seeds.py's hand-written seeds + the capture seeds of
#     fuzz/tools/capture-seeds.txt, not the merged campaign corpus: starting
#     from that measures nothing) to OUT/seeds, and launches RUNS (3) arms of
#     SECONDS (4500) each, detached, nice 19, one process each
#     (fuzz-run-one.sh), seeds 1..RUNS.
#   fuzz-over-time.sh report OUT
#     after the runs: a gcc --coverage build of the fuzzed revision in OUT/cov,
#     then fuzz_over_time.py replays each run's units in discovery order and
#     writes OUT/over-time.tsv, OUT/summary.md and
#     REPORT.assets/fuzz-over-time.png (core branch coverage, relay states and
#     transitions against wall and CPU time).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
cmd=${1:?start or report}; out=${2:?output directory}
case $cmd in
start)
  runs=${3:-3}; secs=${4:-4500}
  b=$root/build-fuzz
  cmake -S "$root" -B "$b" -G Ninja -DSLUICE_CORE_ONLY=ON -DCMAKE_C_COMPILER=clang \
    -DSLUICE_FUZZ=ON >/dev/null
  nice -n 10 ninja -j2 -C "$b" fuzz_relay >/dev/null
  mkdir -p "$out/bin"
  cp "$b/fuzz/fuzz_relay" "$out/bin/fuzz_relay"
  git -C "$root" rev-parse HEAD >"$out/core-revision"
  git -C "$root" status --porcelain core/ >>"$out/core-revision"
  gen=$out/seedgen
  rm -rf "$gen" "$out/seeds"
  mkdir -p "$gen/findings" "$out/seeds"
  [ ! -f "$root/fuzz/findings/held-seeds.txt" ] ||
    cp "$root/fuzz/findings/held-seeds.txt" "$gen/findings/"
  /usr/bin/python3 "$root/fuzz/tools/make-seeds.py" "$gen"
  cp "$gen/corpus/relay/"* "$out/seeds/"
  grep -v '^#' "$root/fuzz/tools/capture-seeds.txt" | while read -r h _; do
    cp "$root/fuzz/corpus/relay/$h" "$out/seeds/"
  done
  echo "seeds: $(ls "$out/seeds" | wc -l)"
  i=1
  while [ "$i" -le "$runs" ]; do
    setsid nohup nice -n 19 "$here/fuzz-run-one.sh" "$out/bin/fuzz_relay" \
      "$out/seeds" "$out/run-$i" "$i" "$secs" >/dev/null 2>&1 </dev/null &
    echo "run-$i: pid $!"
    i=$((i + 1))
  done
  ;;
report)
  # The coverage build is of the fuzzed revision (OUT/core-revision), from a
  # git archive, so the checkout may have moved on since the runs.
  rev=$(head -1 "$out/core-revision")
  if [ ! -x "$out/cov/fuzz/fuzz_relay_runner" ]; then
    rm -rf "$out/src" && mkdir -p "$out/src"
    git -C "$root" archive "$rev" | tar -x -C "$out/src"
    cmake -S "$out/src" -B "$out/cov" -G Ninja -DSLUICE_CORE_ONLY=ON \
      -DCMAKE_C_COMPILER=gcc -DSLUICE_COVERAGE=ON -DSLUICE_WERROR=OFF >/dev/null
    nice -n 10 ninja -j2 -C "$out/cov" fuzz_relay_runner >/dev/null
  fi
  FUZZ_RELAY_SKIP_OPEN_FINDINGS=1 nice -n 10 /usr/bin/python3 \
    "$here/fuzz_over_time.py" "$out" "$root/REPORT.assets"
  # every crash, grouped by the oracle's message, against the fuzzed revision;
  # the reproducers (small) are kept beside the report
  crashes=$(ls "$out"/run-*/crash-* 2>/dev/null || true)
  rm -rf "$root/REPORT.assets/fuzz-crashes"
  if [ -n "$crashes" ]; then
    mkdir -p "$root/REPORT.assets/fuzz-crashes"
    for c in $crashes; do
      r=$(basename "$(dirname "$c")")
      cp "$c" "$root/REPORT.assets/fuzz-crashes/$r-$(basename "$c")"
    done
  fi
  if [ -n "$crashes" ]; then
    # shellcheck disable=SC2086
    sh "$root/fuzz/tools/triage.sh" "$out/cov/fuzz/fuzz_relay_runner" $crashes |
      sed "s|$out/||"
  fi >"$root/REPORT.assets/fuzz-over-time-crashes.txt"
  cat "$root/REPORT.assets/fuzz-over-time-crashes.txt"
  ;;
*)
  echo "usage: fuzz-over-time.sh start|report OUT" >&2; exit 2 ;;
esac
