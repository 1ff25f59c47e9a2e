#!/bin/sh
# replay_sim_cli: sim output is deterministic byte for byte, reacts to the
# seed and the policy, and bad policy input fails with FILE:LINE.
# usage: sim_cli.sh SLUICE-REPLAY SOURCE-DIR WORKDIR
set -u
R=$1 SRC=$2 W=$3
rm -rf "$W" && mkdir -p "$W" || exit 1
fail=0
bad() { echo "FAIL: $*"; fail=1; }
IN="$SRC/generated/tarpit-greet-10.pcap $SRC/generated/mixed-1000.pcap"
run() { # seed tag
  timeout 120 "$R" sim -q --seed "$1" --sweep greet_delay=0,10,45 --sweep reply_delay=2 \
    --patience ops90 --patience vendor10 --patience empirical \
    --jsonl "$W/$2.jsonl" --csv "$W/$2.csv" $IN || bad "sim exit $? ($2)"
}
run 1 a
run 1 b
run 2 c
cmp -s "$W/a.jsonl" "$W/b.jsonl" || bad "JSONL differs between two identical runs"
cmp -s "$W/a.csv" "$W/b.csv" || bad "CSV differs between two identical runs"
cmp -s "$W/a.jsonl" "$W/c.jsonl" && bad "another seed gave the same JSONL"
# 1 model line + 1200 sessions x 4 policies x 3 models
n=$(wc -l < "$W/a.jsonl")
[ "$n" -eq 14401 ] || bad "expected 14401 JSONL lines, got $n"
grep -q '"outcome":"gave-up","gave_up_at":"greeting"' "$W/a.jsonl" || bad "no greeting give-up"
grep -q '"outcome":"delivered"' "$W/a.jsonl" || bad "nothing delivered"
# more give-ups at 45 s than at 0 s under ops90
g0=$(grep -c '"policy":"greet_delay=0","patience_model":"ops90".*"gave-up"' "$W/a.jsonl")
g45=$(grep -c '"policy":"greet_delay=45","patience_model":"ops90".*"gave-up"' "$W/a.jsonl")
[ "$g45" -gt "$g0" ] || bad "give-ups at 45 s ($g45) not above 0 s ($g0)"
# bad policy input
printf 'mode = screen\nnormal_greet_dealy = 5s\n' > "$W/bad.conf"
"$R" sim --policy "$W/bad.conf" "$SRC/generated/tarpit-greet-2.pcap" > /dev/null 2> "$W/err"
[ $? -eq 2 ] || bad "unknown key: exit status not 2"
grep -q "bad.conf:2: unknown key \"normal_greet_dealy\"" "$W/err" || bad "message: $(cat "$W/err")"
"$R" sim --set greet_delay=soon "$SRC/generated/tarpit-greet-2.pcap" > /dev/null 2>&1
[ $? -eq 2 ] || bad "bad --set value: exit status not 2"
"$R" sim --patience ops91 "$SRC/generated/tarpit-greet-2.pcap" > /dev/null 2>&1
[ $? -eq 2 ] || bad "bad patience model: exit status not 2"
# patience: a KM table and CSV that km: reads back
"$R" patience --csv "$W/km.csv" "$SRC/generated/tarpit-greet-30.pcap" > "$W/km.txt" || bad "patience exit"
head -1 "$W/km.csv" | grep -q '^time_s,at_risk,events,censored,survival' || bad "KM CSV header"
[ "$(wc -l < "$W/km.csv")" -gt 5 ] || bad "KM CSV has too few rows"
"$R" sim -q --patience "km:$W/km.csv" --jsonl "$W/km.jsonl" "$SRC/generated/tarpit-greet-2.pcap" || bad "km: model"
# DNSBL answers from a file: every client listed, drop at the reject score
"$R" stats "$SRC/generated/tarpit-greet-2.pcap" 2>/dev/null |
  awk '/ session /{print $5" zen.test 127.0.0.2"}' | sort -u > "$W/answers"
printf 'mode = screen\ndnsbl = zen.test 5\nreject_score = 5\ndnsbl_action = drop\n' > "$W/dnsbl.conf"
"$R" sim -q --policy "$W/dnsbl.conf" --dnsbl-answers "$W/answers" --jsonl "$W/listed.jsonl" \
  "$SRC/generated/tarpit-greet-2.pcap" || bad "sim with dnsbl answers"
"$R" sim -q --policy "$W/dnsbl.conf" --jsonl "$W/unlisted.jsonl" \
  "$SRC/generated/tarpit-greet-2.pcap" || bad "sim without dnsbl answers"
grep -q '"outcome":"delivered"' "$W/listed.jsonl" && bad "a listed client delivered"
grep -q '"outcome":"delivered"' "$W/unlisted.jsonl" || bad "no unlisted client delivered"
# the listed clients are refused by sluice itself, not by the upstream
grep -q '"outcome":"rejected".*"reject_by":"sluice"' "$W/listed.jsonl" || bad "DNSBL drop not reject_by sluice"
# --version
"$R" --version | grep -q '^sluice-replay [0-9]' || bad "--version"
# --grid: 2 x 3 policies, numeric sweep columns, a summary line each
G="$SRC/generated/tarpit-greet-2.pcap"
"$R" sim -q --grid --sweep greet_delay=0,10s --sweep reply_delay=0,500ms,2 --csv "$W/grid.csv" \
  --summary-csv "$W/sum.csv" "$G" || bad "grid exit"
[ "$(grep -vc '^#' "$W/sum.csv")" -eq 7 ] || bad "grid: expected 6 summary lines + header"
grep -q '^greet_delay=10s,reply_delay=500ms,none,all,200,.*,10,0.5$' "$W/sum.csv" ||
  bad "grid summary numeric columns: $(grep 500ms "$W/sum.csv")"
head -20 "$W/grid.csv" | grep -q ',sweep_greet_delay,sweep_reply_delay$' || bad "grid CSV header"
# --labels: classes per file, a session line overriding its file's; the
# records carry the class and the summary has a line per class
printf '# test\ntarpit-greet-2.pcap * bot\ntarpit-greet-2.pcap 3 mta\n' > "$W/labels"
"$R" sim -q --labels "$W/labels" --jsonl "$W/lab.jsonl" --summary-csv "$W/lab.csv" "$G" || bad "labels exit"
[ "$(grep -c '"class":"bot"' "$W/lab.jsonl")" -eq 199 ] || bad "labels: 199 bot records expected"
grep -q '"session":3,.*"class":"mta"' "$W/lab.jsonl" || bad "labels: session line did not win"
grep -q '^base,none,mta,1,' "$W/lab.csv" || grep -q ',none,mta,1,' "$W/lab.csv" || bad "labels: no mta summary line: $(cat "$W/lab.csv")"
printf 'tarpit-greet-2.pcap x bot\n' > "$W/badlabels"
"$R" sim -q --labels "$W/badlabels" "$G" 2> "$W/err"
[ $? -eq 2 ] && grep -q "badlabels:1:" "$W/err" || bad "bad labels line: $(cat "$W/err")"
# --keep-going: a truncated capture keeps its sessions read before the
# damage and the other files' results, with exit status 1; --progress
# reports each file on stderr
head -c 20000 "$SRC/generated/tarpit-greet-10.pcap" > "$W/cut.pcap"
"$R" sim -q --keep-going --progress --jsonl "$W/kg.jsonl" "$W/cut.pcap" "$G" 2> "$W/kg.err"
[ $? -eq 1 ] || bad "--keep-going: exit status not 1"
grep -q "\[2/2\] .*tarpit-greet-2.pcap: 200 sessions" "$W/kg.err" || bad "progress: $(cat "$W/kg.err")"
[ "$(grep -c '"source":"tarpit-greet-2.pcap"' "$W/kg.jsonl")" -eq 200 ] || bad "--keep-going lost the other file"
"$R" sim -q --jsonl "$W/nkg.jsonl" "$W/cut.pcap" "$G" 2> /dev/null
[ $? -eq 1 ] || bad "a truncated capture without --keep-going: exit status not 1"
# --stream: the same records (in session order) and the same summary
"$R" sim --stream --sweep greet_delay=0,21 --patience ops90 --jsonl "$W/st.jsonl" \
  --summary-csv "$W/st.csv" $IN > "$W/st.txt" || bad "stream exit"
"$R" sim --sweep greet_delay=0,21 --patience ops90 --jsonl "$W/ns.jsonl" \
  --summary-csv "$W/ns.csv" $IN > "$W/ns.txt" || bad "non-stream exit"
[ "$(tail -n +2 "$W/st.jsonl" | sort | md5sum)" = "$(tail -n +2 "$W/ns.jsonl" | sort | md5sum)" ] || bad "--stream records differ"
cmp -s "$W/st.csv" "$W/ns.csv" || bad "--stream summary differs"
# --stream with --labels: every session labelled as it is read, the same
# records and per-class summary lines as without --stream (a session line
# wins over its file's line in either order; of two lines for one key the
# later wins)
printf 'mixed-1000.pcap 7 mta\nmixed-1000.pcap * bot\nmixed-1000.pcap 9 bot\nmixed-1000.pcap 9 mta\ntarpit-greet-10.pcap * other\n' > "$W/slabels"
"$R" sim -q --stream --labels "$W/slabels" --sweep greet_delay=0,21 --patience ops90 \
  --jsonl "$W/sl.jsonl" --summary-csv "$W/sl.csv" $IN || bad "stream labels exit"
"$R" sim -q --labels "$W/slabels" --sweep greet_delay=0,21 --patience ops90 \
  --jsonl "$W/nl.jsonl" --summary-csv "$W/nl.csv" $IN || bad "non-stream labels exit"
[ "$(tail -n +2 "$W/sl.jsonl" | sort | md5sum)" = "$(tail -n +2 "$W/nl.jsonl" | sort | md5sum)" ] || bad "--stream --labels records differ"
cmp -s "$W/sl.csv" "$W/nl.csv" || bad "--stream --labels summary differs"
grep -q '"source":"mixed-1000.pcap","session":7,.*"class":"mta"' "$W/sl.jsonl" || bad "--stream --labels: session 7 not mta"
grep -q '"source":"mixed-1000.pcap","session":9,.*"class":"mta"' "$W/sl.jsonl" || bad "--stream --labels: the later line for session 9 did not win"
[ "$(grep -c '"class":"mta"' "$W/sl.jsonl")" -eq 4 ] || bad "--stream --labels: 2 mta sessions x 2 policies expected"
[ "$(grep -c '"class":"other"' "$W/sl.jsonl")" -eq 400 ] || bad "--stream --labels: 200 other sessions x 2 policies expected"
grep -q ',ops90,bot,998,' "$W/sl.csv" || bad "--stream --labels: no bot summary line of 998: $(cat "$W/sl.csv")"
"$R" sim --stream --patience empirical "$G" > /dev/null 2>&1
[ $? -eq 2 ] || bad "--stream with the empirical model: exit status not 2"
[ $fail -eq 0 ] && echo "sim_cli: all passed"
exit $fail
