#!/bin/sh
# run-campaign.sh TARGET SECONDS [BUILD_DIR]: an AFL++ campaign on both
# cores, one main (-M) and one secondary (-S) instance, persistent mode
# (fuzz/afl_main.c), from fuzz/corpus/TARGET with fuzz/smtp.dict.  Builds
# BUILD_DIR (default build-afl) with afl-clang-fast and AFL_USE_ASAN=1.
# Findings: BUILD_DIR/afl-out/TARGET/{main,sec}/crashes/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
t=${1:?target}; secs=${2:?seconds}; b=${3:-$root/build-afl}
export AFL_USE_ASAN=1 AFL_USE_UBSAN=1
CC=afl-clang-fast cmake -S "$root" -B "$b" -G Ninja -DSLUICE_CORE_ONLY=ON \
  -DSLUICE_AFL=ON -DCMAKE_C_COMPILER=afl-clang-fast >/dev/null
ninja -C "$b" "fuzz_${t}_afl" >/dev/null
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
n=$(find "$out"/*/crashes -type f -name 'id:*' 2>/dev/null | wc -l)
echo "AFL++ $t: $n crash(es) in $out/*/crashes (afl-fuzz exit $rc)"
[ "$n" -eq 0 ]
