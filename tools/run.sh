#!/usr/bin/env bash
# The README's first command: builds sluice, then runs its main job on an
# embedded default, with nothing else to install by hand.
#
#   1. sluice-sink (tools/sink) listens on 127.0.0.1 as the upstream mail
#      server, sluiced proxies in front of it in screen-first mode, and
#      mail is sent through the proxy with swaks (plain, pipelined,
#      STARTTLS); the sink's mail directory shows what arrived, and a
#      smuggling attempt shows what did not.
#   2. sluice-gen-traffic generates a labelled synthetic capture of MTAs and
#      spambots, and sluice-replay replays it through the core on a virtual
#      clock under a sweep of greeting delays: who gives up, who delivers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash tools/install-deps.sh
cmake -S . -B build -G Ninja >/dev/null
ninja -C build sluiced sluice-sink sluice-replay sluice-gen-traffic sl_walkthrough >/dev/null

work=$(mktemp -d /tmp/sluice-run.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== 1. sluiced in front of a sink, mail sent through it"
mkdir -p "$work/mail"
build/tools/sink/sluice-sink --listen 127.0.0.1:0 --print-port --maildir "$work/mail" \
  >"$work/sink.port" 2>"$work/sink.log" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/sink.port" ] && break; sleep 0.1; done
sink_port=$(head -n1 "$work/sink.port")
proxy_port=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat >"$work/sluiced.conf" <<CONF
listen = 127.0.0.1:$proxy_port
upstream = 127.0.0.1:$sink_port
hostname = mx.sluice.test
mode = screen
identity = xclient
tls_cert = $work/cert.pem
tls_key = $work/key.pem
normal_greet_delay = 1s
pregreet_action = drop
workers = 1
log_format = logfmt
log_file = $work/sluiced.log
CONF
build/drivers/sluiced --check-config -c "$work/sluiced.conf"
build/drivers/sluiced -c "$work/sluiced.conf" &
pids+=($!)
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$proxy_port") 2>/dev/null && break; sleep 0.1; done

send() { swaks --server 127.0.0.1:"$proxy_port" --helo client.example --from alice@example.org \
  --to bob@example.net --timeout 30 "$@" >"$work/swaks.out" 2>&1; }
send --header "Subject: plain" && echo "plain message: accepted"
send --pipeline --header "Subject: pipelined" && echo "pipelined message: accepted"
send --tls --header "Subject: over STARTTLS" && echo "STARTTLS message: accepted"
# An SMTP smuggling attempt: <LF>.<CR><LF> then a second, forged message.
/usr/bin/python3 - "$proxy_port" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline(); lines.append(l)
        if len(l) < 4 or l[3:4] != b"-": return b"".join(lines)
reply()
for c in [b"EHLO c.example", b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.net>", b"DATA"]:
    s.sendall(c + b"\r\n"); reply()
s.sendall(b"Subject: smuggle\r\n\r\nhi\n.\r\nMAIL FROM:<ceo@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nforged\r\n.\r\n")
print("smuggling attempt answered:", reply().decode().strip())
PY
sleep 0.5
echo "messages in the sink: $(ls "$work/mail"/*.eml 2>/dev/null | wc -l) (three sent, the smuggled one refused)"
grep -l "forged" "$work/mail"/*.eml >/dev/null 2>&1 && { echo "FORGED MESSAGE ARRIVED"; exit 1; }
echo "sluiced session log (last lines):"
tail -n 4 "$work/sluiced.log" | cut -c1-220

echo
echo "== 2. a synthetic capture replayed through the core on a virtual clock"
build/tools/gen-traffic/sluice-gen-traffic --out "$work/synthetic.pcap" --sessions 300 --seed 7 \
  --mix mta=0.4,bot-pregreet=0.2,bot-impatient=0.25,bot-pipeline=0.15 >/dev/null
echo "generated $work/synthetic.pcap (synthetic; parameters in its .json sidecar)"
build/pcap-replay/sluice-replay sim --sweep greet_delay=0,2,6,10,21,45 --patience exp:10 \
  "$work/synthetic.pcap"
echo
echo "work directory: $work"
