#!/usr/bin/python3
"""Captures rspamd /checkv2 exchanges as unit-test vectors
(sl_rspamd_test.c).

Starts rspamd (rspamd_instance.py: Debian's rules, a temporary
configuration on loopback) and posts messages with the request head
sluice writes (sl_rspamd_request_head; the same bytes are checked there),
saving rspamd/<name>.request (head and body) and rspamd/<name>.response
(the raw HTTP response).  Run it once by hand:
    /usr/bin/python3 capture_rspamd.py
"""
import os, socket, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "rspamd")
sys.path.insert(0, HERE)
from rspamd_instance import Rspamd  # noqa: E402

GTUBE = b"JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(extra_headers, body):
    return (b"From: Alice <a@example.org>\r\nTo: b@example.org\r\n"
            b"Subject: capture\r\nMessage-ID: <rspamd-capture@example.org>\r\n"
            b"Date: Wed, 02 Dec 2026 14:00:00 +0000\r\n" + extra_headers +
            b"\r\n" + body + b"\r\n")


def head(length):
    # the envelope of the unit test's sl_rspamd_request, in its order
    return (b"POST /checkv2 HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: %d\r\nIP: 192.0.2.1\r\nHelo: client.example.org\r\n"
            b"Hostname: client.example.org\r\nFrom: a@example.org\r\n"
            b"Rcpt: b@example.org\r\nRcpt: c@example.org\r\nQueue-Id: 4XyZ1\r\n"
            b"\r\n" % length)


def post(port, msg):
    req = head(len(msg)) + msg
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(req)
    resp = b""
    # rspamd keeps the connection; the response ends with its body
    while True:
        b = s.recv(65536)
        if not b:
            break
        resp += b
        h, sep, body = resp.partition(b"\r\n\r\n")
        if sep:
            for line in h.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    if len(body) >= int(line.split(b":")[1]):
                        s.close()
                        return req, resp
    s.close()
    return req, resp


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = {
        "reject": message(b"", b"Spam test X" + GTUBE),
        "soft_reject": message(b"X-Sluice-Test: soft-reject\r\n", b"Please retry."),
        "rewrite_subject": message(b"X-Sluice-Test: rewrite-subject\r\n", b"Rewrite me."),
        "greylist": message(b"X-Sluice-Test: greylist\r\n", b"Come back later."),
        # an upstream spam flag scores enough for "add header"
        "add_header": message(b"X-Spam: yes\r\n", b"Hello, flagged before."),
        "ham": message(b"", b"Hello, this is a normal message."),
    }
    with tempfile.TemporaryDirectory() as tmp:
        with Rspamd(tmp) as r:
            for name, msg in cases.items():
                req, resp = post(r.port, msg)
                open(os.path.join(OUT, name + ".request"), "wb").write(req)
                open(os.path.join(OUT, name + ".response"), "wb").write(resp)
                print(name, resp[:2000].decode(errors="replace"))


main()
