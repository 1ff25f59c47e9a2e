#!/bin/sh
# make-capture-seeds.sh BUILD_DIR [PCAP_DIR]: regenerates the seeds cut from
# the shared captures (default ../shared/pcaps):
#  - relay: BUILD_DIR/pcap-replay/sluice-replay extract writes every SMTP
#    session as a transcript, transcripts-to-seeds.py turns them into relay
#    op-language seeds in fuzz/corpus/relay/ (replacing the ones listed in
#    tools/capture-seeds.txt from the previous run);
#  - pcap: pcap-seeds.py cuts single frames out of the captures into
#    fuzz/corpus/pcap/.
# BUILD_DIR is a full-tree build (not SLUICE_CORE_ONLY) with sluice-replay.
# Afterwards: ctest -R fuzz_corpus in BUILD_DIR, then commit fuzz/corpus.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fuzz=$(dirname "$here")
b=${1:?usage: make-capture-seeds.sh BUILD_DIR [PCAP_DIR]}
pcaps=${2:-$(dirname "$(dirname "$fuzz")")/shared/pcaps}
replay=$b/pcap-replay/sluice-replay
[ -x "$replay" ] || { echo "no $replay: build the full tree (ninja sluice-replay)" >&2; exit 2; }
[ -d "$pcaps" ] || { echo "no capture directory $pcaps" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A damaged capture makes extract exit 1 after writing what it could read.
"$replay" extract -q --out "$tmp" "$pcaps"/*.pcap* || [ $? -eq 1 ]
python3 "$here/transcripts-to-seeds.py" "$tmp" "$fuzz/corpus/relay" "$here/capture-seeds.txt"
python3 "$here/pcap-seeds.py" "$pcaps" "$fuzz"
