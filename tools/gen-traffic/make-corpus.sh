#!/bin/sh
# Regenerates the synthetic corpus in pcap-replay/generated/ byte for byte.
# usage: make-corpus.sh PATH/TO/sluice-gen-traffic [OUTDIR]
# Runs inside OUTDIR with bare file names, so the command lines recorded in
# the sidecars do not depend on where the tree or the build lives.
set -eu
tool=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
out=${2:-$here/../../pcap-replay/generated}
mkdir -p "$out"
cd "$out"

# A realistic day-time mix against an ordinary server.
"$tool" --out mixed-1000.pcap --sessions 1000 --seed 1000 --rate 4 \
  --message-size 400 \
  --mix mta=0.25,mta-helo=0.05,bot-pregreet=0.15,bot-pipeline=0.15,bot-impatient=0.2,bot-noquit=0.1,bot-helo-forms=0.1

# The same population against a server that delays its greeting (postscreen's
# greet wait, spamd's stutter): the impatient bots leave while waiting.
for d in 2 10 30; do
  "$tool" --out "tarpit-greet-$d.pcap" --sessions 200 --seed "$d" --rate 2 \
    --message-size 300 --server-delay-greeting "$d" \
    --patience exp:10 --bot-patience uniform:20:120 \
    --mix mta=0.3,bot-pregreet=0.15,bot-pipeline=0.15,bot-impatient=0.3,bot-noquit=0.1
done

# A per-reply tarpit (Haraka's tarpit plugin) over IPv6.
"$tool" --out tarpit-reply-5-ipv6.pcap --sessions 60 --seed 5 --rate 1 \
  --message-size 500 --server '[2001:db8::25]:25' \
  --client-net 2001:db8:5100::/48 --server-reply-delay 5 --patience uniform:2:30
echo "corpus written to $out"
