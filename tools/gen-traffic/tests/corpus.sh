#!/bin/sh
# make-corpus.sh regenerates the committed corpus byte for byte.
set -u
tool=$1 dir=$2 committed=$3
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$dir" && mkdir -p "$dir" || exit 1
sh "$here/make-corpus.sh" "$tool" "$dir" >/dev/null || { echo "FAIL: make-corpus.sh"; exit 1; }
fail=0 n=0
for f in "$dir"/*.pcap "$dir"/*.pcap.json; do
  b=$(basename "$f")
  n=$((n + 1))
  cmp "$f" "$committed/$b" || { echo "FAIL: $b differs from the committed file"; fail=1; }
done
[ $n -ge 8 ] || { echo "FAIL: only $n corpus files"; fail=1; }
[ $fail -eq 0 ] && echo "gen_traffic_corpus: ok ($n files)"
exit $fail
