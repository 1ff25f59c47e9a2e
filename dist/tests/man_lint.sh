#!/bin/sh
# The manual pages pass mandoc's lint at warning level, and sluiced.conf(5)
# names every key sluiced knows (--print-defaults plus the repeatable ones).
# usage: man_lint.sh MANDOC SLUICED MANDIR
set -u
M=$1 D=$2 DIR=$3
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -x "$M" ] || fail "mandoc not found (apt-get install mandoc; tools/install-deps.sh)"
for p in "$DIR/man8/sluiced.8" "$DIR/man5/sluiced.conf.5" "$DIR/man1/sluice-replay.1" \
         "$DIR/man1/sluice-sink.1" "$DIR/man1/sluice-gen-traffic.1"; do
  [ -s "$p" ] || fail "$p missing"
  out=$("$M" -T lint -W warning "$p" 2>&1) || fail "mandoc -T lint $p: $out"
  [ -z "$out" ] || fail "mandoc -T lint $p: $out"
done
conf=$DIR/man5/sluiced.conf.5
keys=$("$D" --print-defaults | sed 's/ = .*//')
n=0
for k in $keys listen upstream trusted_proxy sni dnsbl; do
  grep -qx "\.B $k" "$conf" || fail "sluiced.conf(5) does not list key $k"
  n=$((n + 1))
done
[ "$n" -gt 90 ] || fail "only $n keys"
# Each entry is a .TP paragraph: as many as keys, no stray ones.
tp=$(grep -c '^\.TP$' "$conf")
[ "$tp" -ge "$n" ] || fail "$tp entries for $n keys"
echo "ok: 5 pages lint clean, sluiced.conf(5) lists $n keys"
