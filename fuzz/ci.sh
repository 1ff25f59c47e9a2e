#!/bin/sh
# ci.sh BUILD_ROOT: the fuzzing part of CI.
#  (a) builds the libFuzzer targets (clang, ASan+UBSan) in BUILD_ROOT/fuzz
#      and runs relay, data, reply, cmd, proxy, resp, milter, rspamd, clamd
#      and pcap for FUZZ_SECONDS each (40), one process at a time, from the
#      corpus, with fuzz/<target>.dict if there is one, else smtp.dict;
#      any crash fails,
#      except one matching fuzz/findings/known-signatures.txt (an open,
#      reported bug), which is only reported;
#  (b) builds a gcc coverage configuration in BUILD_ROOT/cov (target
#      fuzz_ci only), runs ctest on core/ and fuzz/ (core unit and
#      transcript tests, corpus replays, oracle test), captures lcov data
#      into BUILD_ROOT/coverage/html and fails if core/ line coverage is
#      under COVERAGE_FLOOR (see fuzz/README.md).  -Werror is off there:
#      -O0 --coverage changes what gcc warns about; other builds enforce it.
# Both configure the full tree, so the pcap target (pcap-replay's
# sluice_pcap, needs libpcap) is included when it can be built; only the
# targets named are compiled.  NINJA_JOBS / CTEST_JOBS limit parallelism.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
B=${1:?usage: ci.sh BUILD_ROOT}
mkdir -p "$B"
B=$(cd "$B" && pwd)
# CI fuzzing is deterministic: a fixed seed and a bounded number of runs
# per target (about 20-40 s each here), so a red run reproduces exactly with
# the same command.  FUZZ_SECONDS caps each target's wall time in any case;
# long, randomly seeded campaigns are run-libfuzzer.sh and run-campaign.sh.
secs=${FUZZ_SECONDS:-90}
seed=${FUZZ_SEED:-1}
runs_for() {
  case $1 in
    relay) echo "${FUZZ_RUNS_RELAY:-30000}" ;;
    data) echo 800000 ;;
    reply) echo 300000 ;;
    cmd) echo 2000000 ;;
    proxy) echo 500000 ;;
    resp) echo 300000 ;;
    pcap) echo 10000 ;;
    *) echo 100000 ;;
  esac
}
floor=${COVERAGE_FLOOR:-92.4}
known=$here/findings/known-signatures.txt
jobs=${NINJA_JOBS:+-j$NINJA_JOBS}

echo "== libFuzzer build"
# Sanitizer metadata embeds source paths, and they shift the code, so the
# fuzzers are built from a copy of the sources at one fixed path: the same
# binaries, hence the same seeded runs, from any checkout.
fixed=${FUZZ_FIXED_DIR:-/tmp/sluice-ci-fuzz}
rm -rf "$fixed" && mkdir -p "$fixed/src"
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$fixed/src")
else
  (cd "$root" && tar --exclude='./build*' -cf - .) | (cd "$fixed/src" && tar -xf -)
fi
FB=$fixed/build
cmake -S "$fixed/src" -B "$FB" -G Ninja -DCMAKE_C_COMPILER=clang -DSLUICE_FUZZ=ON \
  -DSLUICE_CORE_ONLY=OFF >/dev/null
targets="relay data reply cmd proxy resp milter rspamd clamd"
if ninja -C "$FB" -t targets all | grep -q '^fuzz_pcap:'; then
  targets="$targets pcap"
else
  echo "   (no sluice_pcap: libpcap missing, the pcap target is skipped)"
fi
# shellcheck disable=SC2086
ninja -C "$FB" $jobs $(for t in $targets; do printf 'fuzz_%s ' "$t"; done) >/dev/null
fail=0
for t in $targets; do
  work=$B/fuzz-work/$t
  mkdir -p "$work"
  log=$B/fuzz-work/$t.log
  runs=$(runs_for "$t")
  echo "== fuzz $t: $runs runs, seed $seed (at most ${secs}s)"
  rm -rf "$work" && mkdir -p "$work"
  dict=$here/$t.dict
  [ -f "$dict" ] || dict=$here/smtp.dict
  if "$FB/fuzz/fuzz_$t" -seed="$seed" -runs="$runs" -max_total_time="$secs" \
       -timeout=10 -rss_limit_mb=2048 \
       -dict="$dict" -artifact_prefix="$B/fuzz-work/$t-" \
       "$work" "$here/corpus/$t" >"$log" 2>&1; then
    grep -E '^Done|stat::' "$log" | tail -1 || true
  elif grep -v '^#' "$known" | grep -v '^$' | grep -E -q -f - "$log"; then
    echo "   known open finding reproduced (fuzz/findings/README.md):"
    grep -E '^fuzz_' "$log" | head -2 | sed 's/^/   /'
  else
    echo "   CRASH in $t, see $log"
    grep -E '^fuzz_|ERROR|runtime error|Test unit written' "$log" | head -5 | sed 's/^/   /'
    fail=1
  fi
done

echo "== coverage build"
cmake -S "$root" -B "$B/cov" -G Ninja -DCMAKE_C_COMPILER=gcc \
  -DSLUICE_COVERAGE=ON -DSLUICE_WERROR=OFF >/dev/null
# shellcheck disable=SC2086
ninja -C "$B/cov" $jobs fuzz_ci >/dev/null
find "$B/cov" -name '*.gcda' -delete
(cd "$B/cov" && ctest --output-on-failure -j"${CTEST_JOBS:-2}" -R '^(core_|sl_|fuzz_)' -E '^sl_config_test$') || fail=1
mkdir -p "$B/coverage"
lcov --quiet --capture --rc lcov_branch_coverage=1 --directory "$B/cov" \
  --output-file "$B/coverage/all.info" >/dev/null 2>&1
lcov --quiet --rc lcov_branch_coverage=1 --extract "$B/coverage/all.info" \
  "$root/core/src/*" --output-file "$B/coverage/core.info" >/dev/null 2>&1
lcov --quiet --rc lcov_branch_coverage=1 --extract "$B/coverage/all.info" \
  "$root/core/src/*" "$root/pcap-replay/src/*" --output-file "$B/coverage/html.info" >/dev/null 2>&1
genhtml --quiet --branch-coverage "$B/coverage/html.info" \
  --output-directory "$B/coverage/html" >/dev/null 2>&1
if lcov --quiet --rc lcov_branch_coverage=1 --extract "$B/coverage/all.info" \
     "$root/pcap-replay/src/*" --output-file "$B/coverage/pcap.info" >/dev/null 2>&1 &&
   [ -s "$B/coverage/pcap.info" ]; then
  echo "== pcap-replay (corpus replay of the pcap target only)"
  lcov --rc lcov_branch_coverage=1 --summary "$B/coverage/pcap.info" 2>&1 | grep -E 'lines|branches'
fi
echo "== core/"
lcov --rc lcov_branch_coverage=1 --list "$B/coverage/core.info"
summary=$(lcov --rc lcov_branch_coverage=1 --summary "$B/coverage/core.info" 2>&1)
echo "$summary"
lines=$(echo "$summary" | sed -n 's/.*lines\.*: \([0-9.]*\)%.*/\1/p')
echo "== core line coverage ${lines}% (floor ${floor}%), html: $B/coverage/html/index.html"
if [ -z "$lines" ] || [ "$(echo "$lines < $floor" | bc)" = 1 ]; then
  echo "   coverage below the floor"
  fail=1
fi
exit $fail
