#!/bin/sh
# Every key line of sluiced.conf.example, uncommented, is a valid file for
# both drivers: sluice-replay takes it as is (daemon-only keys are parsed,
# then ignored with a note), and sluiced --check-config takes it once the
# certificate paths, which must exist, point at real files.
# usage: example_all_keys.sh SLUICED SLUICE_REPLAY EXAMPLE PCAP WORKDIR
set -u
D=$1 R=$2 EX=$3 PCAP=$4 W=$5
rm -rf "$W" && mkdir -p "$W" || exit 1
fail() { echo "FAIL: $*" >&2; exit 1; }

# "#key = value" lines (no blank after '#': prose comments keep theirs).
sed -E 's/^#([a-z0-9_]+[[:space:]]*=)/\1/' "$EX" > "$W/all.conf"
n=$(grep -cE '^[a-z0-9_]+[[:space:]]*=' "$W/all.conf")
[ "$n" -gt 90 ] || fail "only $n key lines uncommented"
# Every key sluiced knows is on one of those lines.
"$D" --print-defaults > "$W/defaults" || fail "--print-defaults"
for k in $(sed 's/ = .*//' "$W/defaults"); do
  grep -qE "^$k[[:space:]]*=" "$W/all.conf" || fail "key $k is not in the example"
done

# sluice-replay: the file as is.
"$R" sim -q --policy "$W/all.conf" "$PCAP" > "$W/replay.out" 2> "$W/replay.err" ||
  fail "sluice-replay refused the example: $(cat "$W/replay.err")"
grep -q "note: .*daemon-only keys ignored by the replay: listen" "$W/replay.err" ||
  fail "no note about daemon-only keys: $(cat "$W/replay.err")"

# sluiced: with a throwaway certificate where the example leaves the path
# empty or names /etc/ssl files that need not exist here.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mail.example.org \
  -keyout "$W/key.pem" -out "$W/cert.pem" > /dev/null 2>&1 || fail "openssl req"
sed -E -e "s|^tls_cert[[:space:]]*=.*|tls_cert = $W/cert.pem|" \
       -e "s|^tls_key[[:space:]]*=.*|tls_key = $W/key.pem|" \
       -e "s|^(sni = [^ ]+) .*|\1 $W/cert.pem $W/key.pem|" \
       "$W/all.conf" > "$W/sluiced.conf"
"$D" --check-config -c "$W/sluiced.conf" > "$W/check.out" 2>&1 ||
  fail "sluiced --check-config refused the example: $(cat "$W/check.out")"
# -n shows what the file changed, and parses back.
"$D" --print-config -n -c "$W/sluiced.conf" > "$W/changed.conf" || fail "--print-config -n"
grep -q "^listen = 0.0.0.0:465 tls$" "$W/changed.conf" || fail "-n lacks a listen line"
grep -q "^tls_cert = $W/cert.pem$" "$W/changed.conf" || fail "-n lacks tls_cert"
grep -q "^mode = " "$W/changed.conf" && fail "-n shows mode, which is the default"
"$D" --check-config -c "$W/changed.conf" > /dev/null 2>&1 || fail "-n output does not parse"
# ... and means the same configuration as the whole file.
"$D" --print-config -c "$W/sluiced.conf" > "$W/full1" || fail "--print-config"
"$D" --print-config -c "$W/changed.conf" > "$W/full2" || fail "--print-config of -n"
cmp -s "$W/full1" "$W/full2" || fail "-n output is another configuration: $(diff "$W/full1" "$W/full2")"
echo "ok: $n key lines, accepted by sluice-replay and sluiced --check-config"
