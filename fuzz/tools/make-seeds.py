#!/usr/bin/python3
"""make-seeds.py: writes the hand-written seed corpora of fuzz/corpus/<target>/.

Every attack class of DESIGN.md / SECURITY.md gets a relay seed in the op
language of fuzz_relay.c (fuzz/README.md documents it); the parser targets
get small valid and hostile inputs.  Files are named by their SHA-256, so
re-running the script is idempotent.  Usage: make-seeds.py [FUZZ_DIR]
"""
import hashlib
import os
import struct
import sys

FUZZ = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")


# Seeds that reproduce an open finding stay out of the corpus until it is
# fixed (findings/README.md); their names are listed here.
HELD_FILE = os.path.join(FUZZ, "findings", "held-seeds.txt")
HELD = set(open(HELD_FILE).read().split()) if os.path.exists(HELD_FILE) else set()


def write(target, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()
    if name in HELD:
        return
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- relay op language --------------------------------------------------------
def header(b0=0, b1=0, b2=0, b3=0, b4=0, b5=3, seed=1):
    return bytes([b0, b1, b2, b3, b4, b5]) + struct.pack("<H", seed)


def C(s):
    s = s.encode("latin-1") if isinstance(s, str) else s
    return b"C" + struct.pack("<H", len(s)) + s


def U(s):
    s = s.encode("latin-1") if isinstance(s, str) else s
    return b"U" + struct.pack("<H", len(s)) + s


def A(st=0):
    return b"A" + bytes([st])


def S(st=0):
    return b"S" + bytes([st])


def s_up(st=0):
    return b"s" + bytes([st])


def T(x, unit=2):
    return b"T" + bytes([x, unit])


D = b"D"
E = b"E"
e_up = b"e"

GREET = U("220 up.example ESMTP\r\n")
EHLO_UP = U("250-up.example\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 CHUNKING\r\n")
ENV = "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"


def passthrough_to_354(h=None):
    """pass-through session up to the client seeing 354."""
    return (h or header()) + A(0) + GREET + C("EHLO client.example\r\n") + EHLO_UP + \
        C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n") + \
        U("250 ok\r\n") + U("250 ok\r\n") + U("354 go\r\n")


def relay_seeds():
    seeds = []
    # a clean message, pass-through
    seeds.append(passthrough_to_354() + C("Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n") +
                 U("250 2.0.0 queued\r\n") + C("QUIT\r\n") + U("221 bye\r\n"))
    # screen-first, teaser, then relayed
    seeds.append(header(b0=1) + T(10) + C(ENV) + A(0) + GREET +
                 U("250 ok\r\n250 ok\r\n") + C("DATA\r\n") + U("354 go\r\n") +
                 C("x\r\n.\r\n") + U("250 ok\r\n") + C("QUIT\r\n"))
    # every smuggling end-of-data variant, strict and lenient
    variants = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n",
                b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]
    for lenient in (0, 8):
        for v in variants:
            body = b"first body" + v + b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<v@example.net>\r\nDATA\r\nsmuggled\r\n.\r\n"
            seeds.append(passthrough_to_354(header(b0=lenient)) + C(body) + U("250 ok\r\n") + T(5))
    # pipelined MAIL after end-of-data in the same segment (smtpsmug "pipelining")
    seeds.append(passthrough_to_354() + C("body\r\n.\r\nMAIL FROM:<x@example.org>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n") +
                 U("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n") + C("two\r\n.\r\n") + U("250 ok\r\n"))
    # the two Haraka probes of PEERS.md A8
    seeds.append(header(b0=2) + A(0) + GREET + C("EHLO c\r\n") + EHLO_UP +
                 C("STARTTLS\r\nNOOP injected\r\n") + S(0) + C("EHLO c\r\nQUIT\r\n"))
    seeds.append(passthrough_to_354() + C("first body\n.\r\nMAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<v@example.net>\r\nDATA\r\nx\r\n.\r\n"))
    # STARTTLS injection on the client leg, TLS failure
    seeds.append(header(b0=3) + C("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.c>\r\n") + S(1))
    # STARTTLS on the upstream leg with a reply pipelined after the 220
    seeds.append(header(b1=4) + A(0) + GREET + U("250-up\r\n250 STARTTLS\r\n") +
                 U("220 go ahead\r\n250 injected\r\n") + s_up(0) + EHLO_UP + C(ENV) + EHLO_UP)
    seeds.append(header(b1=8) + A(0) + GREET + U("250 up\r\n") + C(ENV))  # TLS required, missing
    # reply injection: bare LF, NUL, code change, overlong line, unsolicited
    for bad in ["250 ok\nX-Injected: 1\r\n", "250 o\x00k\r\n", "250-a\r\n354 b\r\n",
                "250 " + "x" * 600 + "\r\n", "250 ok\r\n250 unsolicited\r\n"]:
        seeds.append(header() + A(0) + GREET + C("EHLO c\r\nMAIL FROM:<a@b.c>\r\n") + EHLO_UP + U(bad))
    # upstream dies mid-DATA, failover
    seeds.append(passthrough_to_354() + C("part one\r\n") + e_up + C("rest\r\n.\r\n") + T(1))
    seeds.append(header() + A(1) + A(2) + T(40) + A(0) + GREET + C("EHLO c\r\n"))
    # overlong command line, NUL in command, bare LF command, small limits
    seeds.append(header(b2=1) + A(0) + GREET + C("EHLO " + "a" * 300 + "\r\nNOOP\r\n"))
    seeds.append(header() + A(0) + GREET + C("EHLO c\x00d\r\nNOOP\nHELO x\r\n"))
    seeds.append(header(b2=3) + A(0) + GREET + C("EHLO c\r\n") + EHLO_UP +
                 C("MAIL FROM:<" + "a" * 100 + "@b.c>\r\n"))
    # PROXY header from the balancer: valid v1, valid v2, spoofed (untrusted), malformed
    v2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12]) + bytes([203, 0, 113, 9, 198, 51, 100, 1]) + struct.pack(">HH", 4242, 25)
    seeds.append(header(b0=0x20) + C("PROXY TCP4 203.0.113.9 198.51.100.1 4242 25\r\nEHLO c\r\n") + A(0) + GREET + EHLO_UP)
    seeds.append(header(b0=0x20, b1=2) + C(v2 + b"EHLO c\r\n") + A(0) + GREET + EHLO_UP)
    seeds.append(header() + C("PROXY TCP4 203.0.113.9 198.51.100.1 4242 25\r\n") + A(0) + GREET)
    seeds.append(header(b0=0x20) + C("PROXY TCP4 203.0.113.09 198.51.100.1 4242 25\r\n"))
    seeds.append(header(b0=0x20) + C("PROXY TCP4 1.2.3.4\n") + T(10))
    # identity toward the upstream: XCLIENT, PROXY v1/v2
    seeds.append(header(b1=1) + A(0) + GREET + U("250-up\r\n250 XCLIENT ADDR NAME HELO\r\n") +
                 U("220 up again\r\n") + C(ENV) + EHLO_UP + U("250 ok\r\n250 ok\r\n"))
    seeds.append(header(b0=1, b1=3 | 0xc0) + C(ENV) + A(0) + GREET + EHLO_UP)
    # client XCLIENT / XFORWARD never relayed
    seeds.append(header() + A(0) + GREET + C("EHLO c\r\nXCLIENT ADDR=10.0.0.1\r\nXFORWARD NAME=x\r\n") + EHLO_UP)
    # BDAT: clean, bare LF, CR at the end of LAST, oversize
    for chunk in ["BDAT 5 LAST\r\nab\r\nc", "BDAT 3\r\na\nbBDAT 0 LAST\r\n", "BDAT 2 LAST\r\na\r",
                  "BDAT 99999999 LAST\r\nxx"]:
        seeds.append(header() + A(0) + GREET + C(ENV) + EHLO_UP + U("250 ok\r\n250 ok\r\n") + C(chunk) + U("250 ok\r\n"))
    # AUTH with continuations
    seeds.append(header(b0=4 | 0x40) + A(0) + GREET +
                 C("EHLO c\r\n") + U("250-up\r\n250 AUTH PLAIN LOGIN\r\n") + C("AUTH LOGIN\r\n") +
                 U("334 VXNlcm5hbWU6\r\n") + C("dXNlcg==\r\n") + U("334 UGFzc3dvcmQ6\r\n") + C("*\r\n") + U("501 cancelled\r\n"))
    # forbid_unauth_pipelining
    seeds.append(header(b0=0x10) + A(0) + GREET + C("EHLO c\r\nMAIL FROM:<a@b.c>\r\n"))
    # tarpit, stutter, throttle, DNSBL screening
    seeds.append(header(b0=1, b3=1 | 4, b4=1 | 0x10 | 0x20) + b"N\x00\x00\x01\x02" + T(3) + C("EHLO c\r\nQUIT\r\n") + T(30))
    seeds.append(header(b0=1, b3=2, b4=2 | 8) + b"N\x01\x00\x01\x05" + b"N\x00\x02\x00" + D + D + C("HELO c\r\n") + D + D)
    seeds.append(header(b0=1, b3=0x10) + C("EHLO early\r\n") + T(30))  # pregreet
    seeds.append(header(b0=1, b3=0x30) + C("EHLO early\r\n") + T(30))  # pregreet drop
    seeds.append(header(b3=3) + A(0) + GREET + C("EHLO c\r\n") + T(5) + EHLO_UP + T(5))
    # admission tarpit / tempfail, timeouts, pool exhaustion, partial acks
    seeds.append(header(b1=0x40) + A(0) + GREET + T(30) + C("EHLO c\r\n") + EHLO_UP)
    seeds.append(header(b1=0x80) + T(1))
    seeds.append(header() + A(0) + GREET + T(250, 3))
    seeds.append(header(b5=0) + b"P\x07P\x47" + A(0) + GREET + C("EHLO c\r\n") + b"P\x80" + D + EHLO_UP)
    seeds.append(header(b5=0x0b) + A(0) + GREET + C("EHLO c\r\nHELP\r\nNOOP\r\n") + EHLO_UP + b"K\x01" + C("QUIT\r\n"))
    seeds.append(header() + A(0) + GREET + C("EHLO c\r\n") + b"X")
    # cross-protocol
    seeds.append(header() + A(0) + GREET + C("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    # guarantee 8: the simulated upstream's EHLO offers a chosen set (op H,
    # mask bits as in fuzz_relay.c: 0 PIPELINING 1 CHUNKING 2 BINARYMIME
    # 3 8BITMIME 4 SMTPUTF8 5 DSN 6 SIZE 7 STARTTLS 8 AUTH 9 XCLIENT
    # 12 lower case 13 refuse EHLO 14 SIZE without value 15 greeting first)
    def H(mask):
        return b"H" + struct.pack("<H", mask)
    BODY = "Subject: x\r\n\r\nbody \xc3\xa9\r\n.\r\n"
    UTF8ENV = ("EHLO c\r\nMAIL FROM:<j\xc3\xb6rg@example.org> SMTPUTF8 BODY=8BITMIME SIZE=99\r\n"
               "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net\r\n")
    for mode in (0, 1):                       # pass-through, screen-first
        for mask in (0x0000, 0x0001, 0x0002, 0x0003, 0x007f, 0x0049, 0x0021, 0x1fff,
                     0x2000, 0x4043, 0x1003, 0x0080, 0x0100):
            h = header(b0=mode | (4 if mask & 0x100 else 0) | (0x40 if mask & 0x100 else 0), b5=7)
            # one EHLO upstream (the client's): pass-through relays the
            # greeting and then the client's EHLO; screen-first replays the
            # client's EHLO after the greeting (no probe without upstream
            # TLS or XCLIENT)
            if mode == 0:
                pre = h + A(0) + GREET
                post = H(mask)
            else:
                pre = h + C("EHLO c\r\n")
                post = A(0) + H(0x8000 | mask)
            # BDAT whether offered or not
            seeds.append(pre + (C("EHLO c\r\n") if mode == 0 else b"") +
                         C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 6 LAST\r\nhi\r\n\r\n") +
                         post + U("250 ok\r\n250 ok\r\n") + U("250 ok\r\n") + T(2))
            # parameters of every extension, UTF-8 path, DATA body
            seeds.append(pre + C(UTF8ENV if mode == 0 else UTF8ENV[len("EHLO c\r\n"):]) + post +
                         U("250 ok\r\n250 ok\r\n") + C("DATA\r\n") + U("354 go\r\n") + C(BODY) +
                         U("250 ok\r\n") + T(2))
        # pipelined group to an upstream without PIPELINING; then STARTTLS
        # upstream and a smaller set after the handshake
        # (screen-first connects at the MAIL: the client's commands first)
        client = C(ENV + "DATA\r\n")
        seeds.append(header(b0=mode, b1=4, b5=7) + (client if mode else b"") + A(0) + H(0x8000 | 0x0083) +
                     (b"" if mode else client) + U("220 go\r\n") + s_up(0) + H(0x0002) + H(0x0002) +
                     U("250 ok\r\n250 ok\r\n") + U("354 go\r\n") + C(BODY) + U("250 ok\r\n"))
        # EHLO refused upstream (HELO fallback), extensions promised to the client
        txn = C("MAIL FROM:<a@example.org> BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\nBDAT 3 LAST\r\nx\r\n")
        seeds.append(header(b0=mode, b5=7) + C("EHLO c\r\n") + (txn if mode else b"") + A(0) +
                     H(0x8000 | 0x2000) + U("250 up\r\n") + (b"" if mode else txn) +
                     U("250 ok\r\n250 ok\r\n") + T(2))
    # content filters (issue 11): seed bit 0x8000 turns them on, op F gives
    # the verdict (byte: sl_verdict, byte: text index).  A filtered BDAT
    # transaction to a CHUNKING upstream stays BDAT: the LAST chunk goes up
    # as a plain one, "BDAT 0 LAST" is held; accept sends it, a refusal RSET.
    def F(verdict, text=0):
        return b"F" + bytes([verdict, text])
    FH = header(b5=7, seed=0x8001)
    PRE = FH + A(0) + GREET + C("EHLO client.example\r\n") + H(0x0003)
    chunked = (PRE + C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n") +
               U("250 ok\r\n250 ok\r\n") + C("BDAT 9\r\n.dot\r\nx\r\n") + U("250 ok 9\r\n") +
               C("BDAT 5 LAST\r\nend\r\n"))
    nxt = C("MAIL FROM:<c@example.org>\r\n") + U("250 ok\r\n") + C("QUIT\r\n")
    seeds.append(chunked + U("250 ok 5\r\n") + F(0) + U("250 2.0.0 queued\r\n") + nxt)
    seeds.append(chunked + F(0) + U("250 ok 5\r\n") + U("250 2.0.0 queued\r\n") + nxt)
    for v, t in ((4, 1), (3, 2), (2, 0), (4, 4), (4, 7)):
        seeds.append(chunked + F(v, t) + U("250 ok 5\r\n") + U("250 2.0.0 reset\r\n") + nxt)
    # the LAST chunk refused upstream, under an accept and a reject
    seeds.append(chunked + U("552 5.3.4 too big\r\n") + F(0) + U("250 2.0.0 reset\r\n") + nxt)
    seeds.append(chunked + U("552 5.3.4 too big\r\n") + F(4, 1) + U("250 2.0.0 reset\r\n") + nxt)
    # an empty LAST chunk; the leg lost while the end is held
    seeds.append(PRE + C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                         "BDAT 3\r\nx\r\nBDAT 0 LAST\r\n") +
                 U("250 ok\r\n250 ok\r\n") + U("250 ok 3\r\n") + F(0) +
                 U("250 2.0.0 queued\r\n") + nxt)
    seeds.append(chunked + e_up + F(0) + C("QUIT\r\n"))
    # an empty LAST chunk after a chunk that ended on CR, unfiltered: the
    # message would end on a bare CR upstream (refused, the leg closed)
    seeds.append(header(b5=7) + A(0) + GREET + C("EHLO c\r\n") + H(0x0003) +
                 C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n") +
                 U("250 ok\r\n250 ok\r\n") + C("BDAT 2\r\nx\r") + U("250 ok 2\r\n") +
                 C("BDAT 0 LAST\r\n") + U("250 queued\r\n"))
    # spool mode (seed bit 10): the same client goes upstream as DATA
    seeds.append(header(b5=7, seed=0x8401) + A(0) + GREET + C("EHLO client.example\r\n") +
                 H(0x0003) + C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n") +
                 U("250 ok\r\n250 ok\r\n") + C("BDAT 9\r\n.dot\r\nx\r\nBDAT 5 LAST\r\nend\r\n") +
                 U("354 go\r\n") + F(4, 1) + nxt)
    # RCPT checks (seed bit 12): screen-first holds the MAIL (local 250)
    # until a RCPT passes; greylisted, then passed, the held MAIL refused
    # by the upstream, the upstream lost while the held MAIL is out
    def G(st, k):
        return b"G" + bytes([st, k])
    chk = 0x1001
    seeds.append(header(b0=1, seed=chk) + C(ENV) + G(0, 1) + C("DATA\r\nQUIT\r\n") + T(2))
    seeds.append(header(b0=1, seed=chk) + C(ENV + "RCPT TO:<c@example.net>\r\nDATA\r\n") + G(0, 1) +
                 G(0, 0) + A(0) + GREET + EHLO_UP + U("250 ok\r\n") + U("250 ok\r\n") +
                 U("354 go\r\n") + C("x\r\n.\r\n") + U("250 ok\r\n") + C("QUIT\r\n"))
    seeds.append(header(b0=1, seed=chk) + C(ENV + "DATA\r\n") + G(0, 0) + A(0) + GREET +
                 U("553 5.7.1 sender refused\r\n") + C("MAIL FROM:<c@example.org>\r\n") + U("250 ok\r\n") + T(2))
    seeds.append(header(b0=1, seed=chk) + C(ENV) + G(0, 0) + A(0) + GREET + EHLO_UP + e_up + T(2))
    seeds.append(header(b0=0x11, b3=1, seed=chk) + C(ENV) + G(0, 8 | 2) + G(1, 0) + T(3) + A(0) + GREET + EHLO_UP + T(3))
    # checks at MAIL and DATA too (seed bit 11): MAIL refused, then passed;
    # DATA asked once the RCPT replies are in, refused, then passed
    stg = 0x1801
    seeds.append(header(seed=stg) + A(0) + GREET + C("EHLO c\r\n") + G(0, 0) + EHLO_UP +
                 C("MAIL FROM:<a@example.org>\r\n") + G(0, 2) + C("MAIL FROM:<a@example.org>\r\n") + G(0, 0) +
                 U("250 ok\r\n") + C("RCPT TO:<b@example.net>\r\nDATA\r\n") + G(0, 0) + U("250 ok\r\n") +
                 G(0, 1) + C("DATA\r\n") + G(0, 0) + U("354 go\r\n") + C("x\r\n.\r\n") + U("250 ok\r\n"))
    seeds.append(header(b0=1, seed=stg) + C(ENV + "DATA\r\n") + G(0, 0) + G(0, 0) + A(0) + GREET +
                 EHLO_UP + U("250 ok\r\n") + U("250 ok\r\n") + G(2, 1) + U("354 go\r\n") + C("x\r\n.\r\n") +
                 U("250 ok\r\n"))
    # the AUTH user (guarantee 2), with filters and RCPT checks on (seed
    # bits 15 and 12; the preamble's EHLO reply answers the client's): a
    # PLAIN the upstream accepted, a checked RCPT, a further AUTH refused
    # 503, another checked RCPT; then the authenticated leg lost (no new
    # leg: 421); and the same with LOGIN
    au = 0x9001
    au_ext = "250-up\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"
    for auth in [C("AUTH PLAIN AGFsaWNlAHB3\r\n") + U("235 2.7.0 ok\r\n"),
                 C("AUTH LOGIN\r\n") + U("334 VXNlcm5hbWU6\r\n") + C("YWxpY2U=\r\n") +
                 U("334 UGFzc3dvcmQ6\r\n") + C("cHc=\r\n") + U("235 2.7.0 ok\r\n")]:
        seeds.append(header(b0=4 | 0x40, seed=au) + A(0) + GREET + C("EHLO c\r\n") + U(au_ext) +
                     auth + C("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n") +
                     U("250 ok\r\n") + G(0, 0) + U("250 ok\r\n") + C("AUTH PLAIN AGJvYgBwdw==\r\n") +
                     U("503 5.5.1 already authenticated\r\n") + C("RSET\r\n") + U("250 ok\r\n") +
                     C("MAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.net>\r\n") + U("250 ok\r\n") +
                     G(0, 0) + U("250 ok\r\n") + e_up + C("MAIL FROM:<a@example.org>\r\n") + T(2))
    for s in seeds:
        write("relay", s)


def parser_seeds():
    for line in [b"EHLO client.example", b"MAIL FROM:<a@example.org> SIZE=1000 BODY=8BITMIME",
                 b"RCPT TO:<b@example.net> NOTIFY=SUCCESS ORCPT=rfc822;b@example.net",
                 b"BDAT 100 LAST", b"BDAT 0", b"BDAT 18446744073709551615 LAST", b"DATA",
                 b"MAIL FROM:<@a,@b:c@d>", b"RCPT TO:<\"quoted local\"@x.y>", b"MAIL FROM:<>",
                 b"HELO " + b"a" * 300, b"AUTH PLAIN AGFAYg==", b"XCLIENT ADDR=1.2.3.4", b"Subject: x",
                 b"GET / HTTP/1.0", b"MAIL FROM:<a@b.c> SMTPUTF8", b"RCPT TO:<\xc3\xa9@x.y>"]:
        write("cmd", b"\x55" + line)
        write("cmd", b"\xff" + line)
    for rep in [b"250 ok\r\n", b"250-a\r\n250-b\r\n250 c\r\n", b"220\r\n", b"250-a\r\n251 b\r\n",
                b"250 a\nb\r\n", b"250 a\x00b\r\n", b"354 go\r\nextra", b"199 x\r\n", b"250 " + b"x" * 700 + b"\r\n",
                b"250-x\r\n250 \x1b[31mred\r\n"]:
        write("reply", b"\x40\x40" + rep)
        write("reply", b"\x02\x01" + rep)
    bodies = [b"Subject: x\r\n\r\nbody\r\n.\r\n", b"..dot\r\n.\r\n", b"a\n.\n", b"a\r\n.\n",
              b"a\n.\r\n", b"a\r.\r\n", b"a\r\n\x00.\r\n", b"a\r\n.\r\r\n", b"x" * 1200 + b"\r\n.\r\n",
              b"l1\nl2\n.\r\n", b"a\n.\n.\r\n", b"a\r\n..\r\n.\r\n"]
    for b in bodies:
        write("data", b"\x00\x00\x00\x01" + b)
        write("data", b"\x00\x00\x01\x07" + b)
        write("data", b"\x02\x04\x01\x09" + b)
    for b in [b"ab\r\ncd\r\n", b"a\nb", b"a\rb", b"a\x00", b"abc\r", b"\r\n\r\n"]:
        write("bdat", b"\x05" + b)
    v2 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12]) + bytes([1, 2, 3, 4, 5, 6, 7, 8]) + struct.pack(">HH", 1, 2)
    v2l = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0, 0])
    v26 = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x21, 0, 36 + 7]) + bytes(range(32)) + b"\x00\x19\x00\x19" + b"\x04\x00\x04abcd"
    for p in [b"PROXY TCP4 1.2.3.4 5.6.7.8 1000 25\r\n", b"PROXY TCP6 ::1 2001:db8::1 1 2\r\n",
              b"PROXY UNKNOWN\r\n", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
              b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", v2, v2l, v26]:
        write("proxy", b"\x00" + p)
    write("proxy", b"\x01" + bytes(range(40)))
    write("proxy", b"\x03" + bytes(range(40)))
    write("proxy", b"\x05")


relay_seeds()
parser_seeds()
