#!/usr/bin/env bash
# Runs every test of sluice, the README's second command.
#
#   -. tools/check-format.sh: every C file as clang-format (.clang-format)
#      makes it;
#   0. gcc Release and Debug builds with -Werror (the core's tests run in
#      Release too);
#   1. gcc RelWithDebInfo build with -Werror: every ctest (core unit tests and transcripts,
#      driver unit tests, pcap-replay, traffic generator, fuzz corpus
#      replays), then the pytest test beds (real Postfix, aiosmtpd, sink,
#      unbound, swaks, smtplib, smtp-source) against sluiced;
#   2. clang build with ASan+UBSan: the same ctest suite and the test beds
#      that run sluiced against real peers (proxy, operations, receiver
#      matrix, downgrade, relay control, XFORWARD, filters, scale-out)
#      again, so memory errors in sluiced show up under real traffic;
#   3. fuzz/ci.sh: a bounded libFuzzer run of each main target and the lcov
#      coverage report of core/ with its floor;
#   4. tools/package-test.sh: the Debian package is built, linted and its
#      sluiced run as a service would (3 minutes, most of it
#      dpkg-buildpackage's own build).
#
# Environment: SLUICE_TEST_QUICK=1 skips step 2's test beds, step 3 and
# step 4.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc 2>/dev/null || echo 2)

bash tools/install-deps.sh

step() { printf '\n=== %s\n' "$*"; }

step "format (clang-format)"
bash tools/check-format.sh

# Warnings are errors here (not by default, for packagers), at every
# optimisation level a packager may pick: GCC warns differently at -O3.
for type in Release Debug; do
  step "gcc $type build (-Werror)"
  cmake -S . -B "build-$type" -G Ninja -DCMAKE_C_COMPILER=gcc -DSLUICE_WERROR=ON \
    -DCMAKE_BUILD_TYPE="$type" >/dev/null
  ninja -C "build-$type" -j"$jobs"
done
step "core unit tests (gcc Release)"
ctest --test-dir build-Release --output-on-failure -j"$jobs" -R '^(sl_|core_)'

step "gcc RelWithDebInfo build (-Werror)"
cmake -S . -B build -G Ninja -DCMAKE_C_COMPILER=gcc -DSLUICE_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j"$jobs"

step "ctest (gcc)"
ctest --test-dir build --output-on-failure -j"$jobs" -LE testbeds

# The test beds spend most of their time waiting on peers and timers, not
# on the CPU: three pytest-xdist workers (each with its own servers on its
# own ports) finish them in about a third of the time on two cores.
beds_jobs=${SLUICE_TESTBED_JOBS:-3}
step "test beds against the gcc build ($beds_jobs workers)"
SLUICE_BUILD_DIR=$root/build /usr/bin/python3 -m pytest testbeds -q -p no:cacheprovider \
  -n "$beds_jobs"

step "clang build with ASan+UBSan"
cmake -S . -B build-asan -G Ninja -DCMAKE_C_COMPILER=clang -DSLUICE_SANITIZE=ON \
  -DSLUICE_WERROR=ON >/dev/null
ninja -C build-asan -j"$jobs"

step "ctest (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

if [ "${SLUICE_TEST_QUICK:-0}" != 1 ]; then
  step "sluiced test beds against the ASan+UBSan build ($beds_jobs workers)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    SLUICE_BUILD_DIR=$root/build-asan /usr/bin/python3 -m pytest testbeds -q \
    -p no:cacheprovider -n "$beds_jobs" \
    -k "proxy or ops_ or receivers or downgrade or relay_ or xforward or filters or scaleout or greylist or policy"

  step "Debian package: build, lintian, run the installed sluiced"
  bash tools/package-test.sh

  if [ -x fuzz/ci.sh ]; then
    step "fuzzing and coverage"
    bash fuzz/ci.sh "$root/build-fuzzci"
  fi
fi
step "all tests passed"
