#!/bin/sh
# Bad arguments are refused with a message and status 2; good ones work.
set -u
tool=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir" || exit 1
fail=0
expect2() {
  "$tool" "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  if [ $rc -ne 2 ] || [ ! -s "$dir/err" ]; then
    echo "FAIL: '$*' gave status $rc (want 2 and a message)"; fail=1
  fi
}
o="--out $dir/x.pcap"
expect2                                   # no --out
expect2 $o --sessions 0
expect2 $o --sessions -3
expect2 $o --sessions 12abc
expect2 $o --mix mta=1,spambot=2
expect2 $o --mix mta=0
expect2 $o --mix mta
expect2 $o --seed x
expect2 $o --rate 0
expect2 $o --server 10.0.0.1:25           # not a documentation address
expect2 $o --server 192.0.2.1             # no port
expect2 $o --server 192.0.2.1:70000
expect2 $o --client-net 10.0.0.0/8
expect2 $o --client-net 198.51.100.0/16   # wider than the documentation range
expect2 $o --client-net 2001:db8::/32     # family differs from the server's
expect2 $o --patience normal:3
expect2 $o --patience uniform:5:2
expect2 $o --patience exp:-1
expect2 $o --server-delay-greeting -1
expect2 $o --reject-rate 1.5
expect2 $o --linktype ppp
expect2 $o --no-such-option
expect2 $o stray-argument
"$tool" --help >/dev/null || { echo "FAIL: --help"; fail=1; }
"$tool" $o --sessions 3 --server '[2001:db8::25]:2525' --linktype raw \
  || { echo "FAIL: a valid IPv6 command line was refused"; fail=1; }
[ -s "$dir/x.pcap" ] && [ -s "$dir/x.pcap.json" ] \
  || { echo "FAIL: no output files"; fail=1; }
[ $fail -eq 0 ] && echo "gen_traffic_args: ok"
exit $fail
