#!/bin/sh
# triage.sh RUNNER FILE...: groups fuzz crashes by the oracle's message
# (numbers folded), one line per group: count, first file, known (matches
# fuzz/findings/known-signatures.txt) or NEW, message.  RUNNER is a
# standalone runner, e.g. build/fuzz/fuzz_relay_runner.
here=$(cd "$(dirname "$0")/.." && pwd)
run=${1:?runner}; shift
sigs=$(mktemp)
grep -v '^#' "$here/findings/known-signatures.txt" | grep -v '^$' >"$sigs"
for c in "$@"; do
  m=$("$run" "$c" 2>&1 |
      grep -E 'fuzz_[a-z]+: g|ERROR: |runtime error|passed, 0 failed' | grep -v ': violation$' | head -1)
  printf '%s\t%s\n' "$c" "$m"
done 2>/dev/null | awk -F'\t' -v sigs="$sigs" '
  { k = $2; gsub(/[0-9][0-9][0-9][0-9]+/, "N", k)
    if (!(k in first)) { first[k] = $1; msg[k] = $2 }
    n[k]++ }
  END { for (k in n) {
          known = (system("printf %s " quote(msg[k]) " | grep -E -q -f " sigs) == 0) ? "known" : "NEW"
          if (msg[k] ~ /passed, 0 failed/) known = "passes-now"
          printf "%d\t%s\t%s\t%s\n", n[k], first[k], known, substr(msg[k], 1, 200) } }
  function quote(s) { gsub(/\x27/, "\x27\\\x27\x27", s); return "\x27" s "\x27" }' | sort -rn
rm -f "$sigs"
