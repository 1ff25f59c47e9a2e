#!/bin/sh
# Validates generated captures with tshark: one conversation per session,
# no TCP analysis anomaly or bad checksum, and each dialect's commands.
set -u
tool=$1 dir=$2
if ! command -v tshark >/dev/null 2>&1; then
  echo "gen_traffic_tshark: SKIPPED: tshark is not installed"
  exit 77
fi
rm -rf "$dir" && mkdir -p "$dir" || exit 1
fail=0
ts() { tshark -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE "$@" 2>/dev/null; }
gen() { out=$1; shift; "$tool" --out "$dir/$out" "$@" >/dev/null || { echo "FAIL: generating $out"; exit 1; }; }
bad() { echo "FAIL: $*"; fail=1; }

# Anomalies: TCP analysis flags (retransmission, lost segment, dup ACK,
# window problems...), bad checksums, malformed packets, and warnings other
# than the RSTs a giving-up bot sends on purpose.
check_clean() {
  f=$dir/$1
  n=$(ts -r "$f" -q -z conv,tcp | grep -c '<->')
  [ "$n" -eq "$2" ] || bad "$1: $n TCP conversations, want $2"
  a=$(ts -r "$f" -Y 'tcp.analysis.flags || tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed || (_ws.expert.severity >= 0x00600000 && !tcp.flags.reset)' | wc -l)
  [ "$a" -eq 0 ] || { bad "$1: $a anomalous packets:"; ts -r "$f" -Y 'tcp.analysis.flags || tcp.checksum.status == 0 || (_ws.expert.severity >= 0x00600000 && !tcp.flags.reset)' | head -5; }
}
commands() { ts -r "$dir/$1" -Y smtp.req.command -T fields -e smtp.req.command | tr ',' '\n' | sort -u | tr '\n' ' '; }
has() { case " $(commands "$1")" in *" $2 "*) return 0;; esac; return 1; }

gen mixed.pcap --sessions 150 --seed 11
check_clean mixed.pcap 150
gen mixed6.pcap --sessions 60 --seed 12 --server '[2001:db8::25]:25' --linktype raw
check_clean mixed6.pcap 60
gen big.pcap --sessions 20 --seed 13 --message-size 200000 --mix mta=1,bot-pipeline=1
check_clean big.pcap 20

for d in mta mta-helo bot-pregreet bot-pipeline bot-impatient bot-noquit bot-helo-forms; do
  gen "$d.pcap" --sessions 30 --seed 21 --mix "$d=1" --reject-rate 0 --patience fixed:60
  check_clean "$d.pcap" 30
done
for c in EHLO MAIL RCPT DATA QUIT; do has mta.pcap $c || bad "mta: no $c"; done
has mta.pcap HELO && bad "mta: sent HELO"
for c in HELO MAIL RCPT DATA QUIT; do has mta-helo.pcap $c || bad "mta-helo: no $c"; done
has mta-helo.pcap EHLO && bad "mta-helo: sent EHLO"
has bot-noquit.pcap DATA || bad "bot-noquit: no DATA"
has bot-noquit.pcap QUIT && bad "bot-noquit: sent QUIT"
for c in MAIL RCPT DATA QUIT; do has bot-impatient.pcap $c || bad "bot-impatient: no $c"; done

# Pipelining: the MTA pipelines MAIL/RCPT/DATA since the server offers it;
# mta-helo never puts two commands in one segment.
multi() { ts -r "$dir/$1" -Y 'smtp.req.command == "MAIL"' -T fields -e smtp.req.command | grep -c ','; }
[ "$(multi mta.pcap)" -eq 30 ] || bad "mta: not every MAIL was pipelined"
[ "$(multi mta-helo.pcap)" -eq 0 ] || bad "mta-helo: pipelined"
# tshark decodes no commands in a segment that also starts the body, so
# look at the bytes: MAIL, RCPT and DATA in one segment, sometimes the body.
seg() { ts -r "$dir/bot-pipeline.pcap" -Y "tcp.dstport == 25 && $1" -T fields -e tcp.stream | sort -u | wc -l; }
[ "$(seg 'frame contains "MAIL FROM:" && frame contains "RCPT TO:" && frame contains "DATA\r\n"')" -eq 30 ] \
  || bad "bot-pipeline: not every MAIL/RCPT/DATA was pipelined"
[ "$(seg 'frame contains "MAIL FROM:" && frame contains "Subject:"')" -gt 0 ] \
  || bad "bot-pipeline: never pipelined the body"

# Pregreet: in every stream the client's first payload precedes the server's.
pre=$(ts -r "$dir/bot-pregreet.pcap" -Y 'tcp.len > 0' -T fields -e tcp.stream -e tcp.dstport |
  awk '!($1 in seen) { seen[$1] = 1; if ($2 == 25) n++ } END { print n + 0 }')
[ "$pre" -eq 30 ] || bad "bot-pregreet: $pre of 30 streams talk first"
pre=$(ts -r "$dir/mta.pcap" -Y 'tcp.len > 0' -T fields -e tcp.stream -e tcp.dstport |
  awk '!($1 in seen) { seen[$1] = 1; if ($2 == 25) n++ } END { print n + 0 }')
[ "$pre" -eq 0 ] || bad "mta: $pre streams talk before the greeting"

# HELO forms: a bare IP, the server's own name, and no argument (answered 501).
ts -r "$dir/bot-helo-forms.pcap" -Y 'smtp.req.command == "HELO" || smtp.req.command == "EHLO"' \
  -T fields -e smtp.req.parameter >"$dir/helo.txt"
grep -Eq '^198\.51\.100\.[0-9]+$' "$dir/helo.txt" || bad "bot-helo-forms: no bare IP"
grep -q '^mx\.example\.net$' "$dir/helo.txt" || bad "bot-helo-forms: no server name"
grep -q '^$' "$dir/helo.txt" || bad "bot-helo-forms: no empty HELO"
[ "$(ts -r "$dir/bot-helo-forms.pcap" -Y 'smtp.response.code == 501' | wc -l)" -gt 0 ] \
  || bad "bot-helo-forms: no 501"

# Rejections: 550 replies at the configured rate.
gen rej.pcap --sessions 40 --seed 31 --mix mta=1 --reject-rate 0.5
r=$(ts -r "$dir/rej.pcap" -Y 'smtp.response.code == 550' | wc -l)
[ "$r" -gt 0 ] || bad "--reject-rate 0.5 gave no 550"

# Against a greeting tarpit longer than their patience, every impatient bot
# closes (FIN or RST) before the server has said anything.
gen tarpit.pcap --sessions 40 --seed 41 --mix bot-impatient=1 \
  --server-delay-greeting 30 --patience uniform:2:20
check_clean tarpit.pcap 40
s=$(ts -r "$dir/tarpit.pcap" -Y 'tcp.srcport == 25 && tcp.len > 0' | wc -l)
[ "$s" -eq 0 ] || bad "tarpit: the server spoke in $s packets"
c=$(ts -r "$dir/tarpit.pcap" -Y 'tcp.dstport == 25 && (tcp.flags.fin == 1 || tcp.flags.reset == 1)' \
  -T fields -e tcp.stream | sort -u | wc -l)
[ "$c" -eq 40 ] || bad "tarpit: $c of 40 clients closed"
g=$(grep -c '"gave_up": true' "$dir/tarpit.pcap.json")
[ "$g" -eq 40 ] || bad "tarpit: sidecar says $g gave up"
# ...and with infinite patience nobody leaves, and all get the greeting late.
gen patient.pcap --sessions 20 --seed 42 --mix bot-impatient=1 \
  --server-delay-greeting 30 --patience fixed:600
g=$(grep -c '"gave_up": true' "$dir/patient.pcap.json")
[ "$g" -eq 0 ] || bad "patient: $g gave up"
q=$(ts -r "$dir/patient.pcap" -Y 'smtp.req.command == "QUIT"' | wc -l)
[ "$q" -eq 20 ] || bad "patient: $q of 20 sent QUIT"

[ $fail -eq 0 ] && echo "gen_traffic_tshark: ok"
exit $fail
