#!/bin/sh
# fuzz-run-one.sh BINARY SEEDS DIR SEED SECONDS: one arm of the
# fuzzing-over-time experiment (fuzz-over-time.sh start launches three).
# One libFuzzer process at a time (no -fork), from SEEDS, new units written to
# DIR/corpus (a unit's mtime is its discovery time: -reduce_inputs=0, so
# libFuzzer never deletes a unit it found for a smaller one), crashes to
# DIR/crash-*.  libFuzzer stops at the first crash; so that one crash does not
# end the arm, the loop starts it again from DIR/corpus + SEEDS for what is left
# of SECONDS (wall), with the next seed, and logs each restart in DIR/restarts.
# A sampler writes DIR/cpu.tsv every 30 s: wall epoch, seconds since start,
# CPU seconds used by the arm so far (finished processes from this shell's
# cutime+cstime, plus the running one's utime+stime), so coverage can be put
# against CPU time: the machine's cores are shared.
set -u
bin=$1 seeds=$2 dir=$3 seed=$4 secs=$5
mkdir -p "$dir/corpus"
export FUZZ_RELAY_SKIP_OPEN_FINDINGS=${FUZZ_RELAY_SKIP_OPEN_FINDINGS:-1}
here=$(cd "$(dirname "$0")" && pwd)
dict=$(dirname "$(dirname "$here")")/fuzz/smtp.dict
t0=$(date +%s)
echo "$t0" >"$dir/start"
tck=$(getconf CLK_TCK)
shell=$$
(
  while kill -0 "$shell" 2>/dev/null; do
    now=$(date +%s)
    child=$(cat "$dir/pid" 2>/dev/null || echo 0)
    # a process may exit between the test and the read: an empty read
    # counts 0 (under set -u an empty "set --" would end the sampler)
    st=$(cut -d' ' -f16,17 "/proc/$shell/stat" 2>/dev/null)
    set -- ${st:-0 0}
    done_t=$(($1 + $2))
    run_t=0
    if [ "$child" != 0 ]; then
      # fields after the ")" of comm: utime is 14, stime 15 of the full line
      st=$(sed 's/^.*) //' "/proc/$child/stat" 2>/dev/null | cut -d' ' -f12,13)
      set -- ${st:-0 0}
      run_t=$(($1 + $2))
    fi
    echo "$now	$((now - t0))	$(echo "scale=2; ($done_t + $run_t) / $tck" | bc)" >>"$dir/cpu.tsv"
    sleep 30
  done
) &
n=0
while :; do
  left=$((t0 + secs - $(date +%s)))
  [ "$left" -gt 5 ] || break
  "$bin" -seed=$((seed + 1000 * n)) -max_total_time="$left" -timeout=10 \
    -rss_limit_mb=2048 -dict="$dict" -print_final_stats=1 -reduce_inputs=0 \
    -artifact_prefix="$dir/crash-$n-" "$dir/corpus" "$seeds" \
    >>"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  wait $!
  rc=$?
  # a process that dies at once (a broken build, a unit that crashes on
  # load) must not spin the loop
  [ $(($(date +%s) - t0 - secs + left)) -ge 5 ] || sleep 5
  echo "$(date +%s) process $n exit $rc" >>"$dir/restarts"
  echo 0 >"$dir/pid"
  n=$((n + 1))
done
echo "$(date +%s)" >"$dir/end"
