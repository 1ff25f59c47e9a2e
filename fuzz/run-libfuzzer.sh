#!/bin/sh
# run-libfuzzer.sh TARGET SECONDS [BUILD_DIR]: one libFuzzer process on
# TARGET (relay cmd reply data bdat proxy milter rspamd clamd) for SECONDS,
# with fuzz/TARGET.dict if there is one (else smtp.dict), starting from
# fuzz/corpus/TARGET, new inputs kept in BUILD_DIR/fuzz-work/TARGET, crashes
# written as BUILD_DIR/fuzz-work/TARGET-crash-*.  Builds BUILD_DIR
# (default build-fuzz, clang, SLUICE_FUZZ=ON) first.  Extra libFuzzer flags
# via LIBFUZZER_FLAGS; for a long unattended campaign that keeps going past
# a crash (each one saved under BUILD_DIR/fuzz-work/TARGET-crash-*):
#   LIBFUZZER_FLAGS="-fork=1 -ignore_crashes=1 -ignore_timeouts=1" \
#     fuzz/run-libfuzzer.sh relay 14400
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
t=${1:?target}; secs=${2:?seconds}; b=${3:-$root/build-fuzz}
cmake -S "$root" -B "$b" -G Ninja -DSLUICE_CORE_ONLY=ON -DCMAKE_C_COMPILER=clang \
  -DSLUICE_FUZZ=ON >/dev/null
ninja -C "$b" "fuzz_$t" >/dev/null
work=$b/fuzz-work/$t
mkdir -p "$work"
dict=$here/$t.dict
[ -f "$dict" ] || dict=$here/smtp.dict
exec "$b/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -dict="$dict" -artifact_prefix="$b/fuzz-work/$t-" ${LIBFUZZER_FLAGS:-} \
  "$work" "$here/corpus/$t"
