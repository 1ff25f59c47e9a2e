#!/bin/sh
# run-campaign.sh TARGET SECONDS [BUILD_DIR]: an AFL++ campaign on both
# cores, one main (-M) and one secondary (-S) instance, persistent mode
# (fuzz/afl_main.c), from fuzz/corpus/TARGET with fuzz/smtp.dict.  Builds
# BUILD_DIR (default build-afl) with afl-clang-fast and AFL_USE_ASAN=1.
# Findings: BUILD_DIR/afl-out/TARGET/{main,sec}/crashes/; the run fails if
# one is not a known open finding (fuzz/findings/known-signatures.txt).
# NINJA_JOBS limits the build's parallelism.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
t=${1:?target}; secs=${2:?seconds}; b=${3:-$root/build-afl}
export AFL_USE_ASAN=1 AFL_USE_UBSAN=1
CC=afl-clang-fast cmake -S "$root" -B "$b" -G Ninja -DSLUICE_CORE_ONLY=ON \
  -DSLUICE_AFL=ON -DCMAKE_C_COMPILER=afl-clang-fast >/dev/null
# shellcheck disable=SC2086
ninja -C "$b" ${NINJA_JOBS:+-j$NINJA_JOBS} "fuzz_${t}_afl" >"$b/afl-build.log" 2>&1 ||
  { tail -20 "$b/afl-build.log"; exit 1; }
out=$b/afl-out/$t
mkdir -p "$out"
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
bin=$b/fuzz/fuzz_${t}_afl
afl-fuzz -V "$secs" -M main -i "$here/corpus/$t" -o "$out" -x "$here/smtp.dict" \
  -m none -- "$bin" >"$out/main.log" 2>&1 &
p1=$!
afl-fuzz -V "$secs" -S sec -i "$here/corpus/$t" -o "$out" -x "$here/smtp.dict" \
  -m none -- "$bin" >"$out/sec.log" 2>&1 &
p2=$!
rc=0
wait "$p1" || rc=$?
wait "$p2" || rc=$?
# Each crash is replayed (the binary reads stdin outside afl-fuzz); one
# whose message matches fuzz/findings/known-signatures.txt is an open,
# reported finding; any other fails the run, as in ci.sh.
known=$here/findings/known-signatures.txt
sigs=$out/known.re
grep -v '^#' "$known" | grep -v '^$' >"$sigs" || true
n=0; new=0
for c in "$out"/*/crashes/id:*; do
  [ -f "$c" ] || continue
  n=$((n + 1))
  if ! sh -c '"$0" <"$1" 2>&1' "$bin" "$c" 2>/dev/null | grep -E -q -f "$sigs"; then
    new=$((new + 1))
    echo "   new: $c"
  fi
done
echo "AFL++ $t: $n crash(es), $new not a known open finding, in $out/*/crashes (afl-fuzz exit $rc)"
[ "$rc" -eq 0 ] && [ "$new" -eq 0 ]
