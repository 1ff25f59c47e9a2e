#!/bin/sh
# Malformed and unusable inputs: sluice-replay must exit with the documented
# status and name the file and the byte offset, never crash or hang.
# usage: malformed.sh SLUICE_REPLAY WORK_DIR
exe=$1
dir=$2
rm -rf "$dir" && mkdir -p "$dir" || exit 1
fails=0

# pcap global header, little-endian, microseconds; $1 = link type byte.
hdr() { printf '\324\303\262\241\002\000\004\000\000\000\000\000\000\000\000\000\377\377\000\000'"$1"'\000\000\000'; }

# expect STATUS PATTERN -- args...: runs the tool with a 20 s limit.
expect() {
  want=$1 pat=$2
  shift 3
  timeout 20 "$exe" "$@" >"$dir/out" 2>"$dir/err"
  got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: $* exited $got, want $want"; cat "$dir/err"; fails=$((fails + 1))
  elif [ -n "$pat" ] && ! grep -q -- "$pat" "$dir/err"; then
    echo "FAIL: $*: stderr lacks '$pat':"; cat "$dir/err"; fails=$((fails + 1))
  else
    echo "ok: $* -> $got"
  fi
}

: >"$dir/empty.pcap"
printf 'this is not a capture at all, just text\n' >"$dir/garbage.pcap"
hdr '\001' | head -c 10 >"$dir/short-header.pcap"
# Header, then a record header announcing 100 bytes of which 5 are present.
{ hdr '\001'; printf '\001\000\000\000\000\000\000\000\144\000\000\000\144\000\000\000abcde'; } >"$dir/short-record.pcap"
# Header, then a record whose caplen (0x7fffffff) exceeds any snaplen.
{ hdr '\001'; printf '\001\000\000\000\000\000\000\000\377\377\377\177\377\377\377\177'; } >"$dir/huge-record.pcap"
# One good empty Ethernet frame of 14 bytes, then a truncated record header.
{ hdr '\001'; printf '\001\000\000\000\000\000\000\000\016\000\000\000\016\000\000\000'; head -c 14 /dev/zero; printf '\001\000\000'; } >"$dir/second-bad.pcap"
hdr '\151' >"$dir/wifi.pcap"   # link type 105, IEEE 802.11: not handled

expect 1 "empty.pcap: offset 0" -- extract --out "$dir/o" "$dir/empty.pcap"
expect 1 "garbage.pcap: offset 0" -- extract --out "$dir/o" "$dir/garbage.pcap"
expect 1 "short-header.pcap: offset 0" -- stats "$dir/short-header.pcap"
expect 1 "short-record.pcap: packet 1 at offset 24" -- stats "$dir/short-record.pcap"
expect 1 "huge-record.pcap: packet 1 at offset 24" -- extract --out "$dir/o" "$dir/huge-record.pcap"
expect 1 "second-bad.pcap: packet 2 at offset 54" -- stats "$dir/second-bad.pcap"
expect 1 "wifi.pcap: unsupported link type 105" -- stats "$dir/wifi.pcap"
# A bad file among good ones still fails the run, after the others ran.
expect 1 "garbage.pcap" -- stats "$dir/wifi.pcap" "$dir/garbage.pcap"
expect 2 "cannot open" -- stats "$dir/does-not-exist.pcap"
expect 2 "no capture file" -- extract
expect 2 "unknown command" -- frobnicate x.pcap
expect 2 "bad --ports" -- stats --ports 25,,587 "$dir/empty.pcap"
expect 2 "bad --ports" -- stats --ports 70000 "$dir/empty.pcap"
expect 2 "bad --max-ooo" -- stats --max-ooo -5 "$dir/empty.pcap"
expect 2 "" -- stats --no-such-option "$dir/empty.pcap"
expect 2 "" -- "$dir"
expect 0 "" -- --help
expect 0 "" -- extract --help

[ "$fails" = 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }
