#!/usr/bin/python3
"""Tests fuzz/tools/relay-states.py's reading of the harness trace (ctest
replay_relay_states): unescaping, reply splitting, the stage of each reply
(command verbs, DATA bodies, BDAT chunks, AUTH continuations, replies with no
input left), transitions, and a trace cut by the harness's 8 KiB limit."""
import importlib.util
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location(
    "relay_states", os.path.join(ROOT, "fuzz", "tools", "relay-states.py"))
rs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rs)

fails = 0


def check(cond, what):
    global fails
    if not cond:
        print("FAIL: " + what)
        fails += 1


def dump(name, data, total=None):
    """The harness's dump() format (fuzz_relay.c)."""
    out = b"--- %s (%d bytes)\n" % (name.encode(), len(data) if total is None else total)
    for c in data:
        if c == 0x0A:
            out += b"\\n\n"
        elif c == 0x0D:
            out += b"\\r"
        elif c < 0x20 or c >= 0x7F:
            out += b"\\x%02x" % c
        else:
            out += bytes([c])
    return out + b"\n"


def trace(path, cin, cout, cin_total=None):
    return (b"running %s (10 bytes)\n" % path.encode() + dump("client in", cin, cin_total)
            + dump("client out", cout) + dump("upstream out", b"") + dump("upstream in", b"")
            + b"--- requests (now 1)\n  type 7 id 1 kind/zone/attempt 9 arg 0\n")


cin = (b"EHLO a\r\nAUTH LOGIN\r\ndXNlcg==\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
       b"body\r\nMAIL FROM:<in body>\r\n.\r\nBDAT 12 LAST\r\nQUIT\r\nxx\r\n\r\nNOOP\r\n"
       b"bogus\x00\r\n")
cout = (b"220 hi\r\n250-x\r\n250 PIPELINING\r\n334 VXNlcm5hbWU6\r\n535 no\r\n250 ok\r\n"
        b"250 ok\r\n354 go\r\n250 queued\r\n250 chunk\r\n250 noop\r\n500 what\r\n421 bye\r\n")
stream = io.BytesIO(trace("a", cin, cout) + trace("b", b"", b"220 x\r\n"))
got = list(rs.parse_traces(stream))
check([p for p, _ in got] == ["a", "b"], "two traced inputs: %r" % [p for p, _ in got])
secs = got[0][1]
check(secs["client in"] == (cin, True), "client in round trip: %r" % (secs["client in"],))
check(secs["client out"][0] == cout, "client out round trip")
check(rs.replies(cout) == [220, 250, 334, 535, 250, 250, 354, 250, 250, 250, 500, 421],
      "reply codes: %r" % rs.replies(cout))
cs, ct, ss, st = rs.session_states(secs)
check(cs == {220, 250, 334, 535, 354, 500, 421}, "code states %r" % cs)
check((0, 220) in ct and (334, 535) in ct and (354, 250) in ct and (500, 421) in ct,
      "code transitions %r" % ct)
want = [("greeting", 220), ("EHLO", 250), ("AUTH", 334), ("AUTH-cont", 535), ("MAIL", 250),
        ("RCPT", 250), ("DATA", 354), ("DATA-end", 250), ("BDAT", 250), ("NOOP", 250),
        ("other", 500), ("none", 421)]
check(ss == set(want), "stage states %r" % sorted(ss, key=str))
check((("start", 0), ("greeting", 220)) in st, "the first transition starts at (start, 0)")
check((("DATA", 354), ("DATA-end", 250)) in st, "DATA -> its end")
check(len(st) == len(want), "one transition per reply: %d" % len(st))

# The harness prints at most 8192 bytes: with the client input cut, replies
# past it get no stage (not "none"), but still count as codes.
cut = rs.session_states({"client in": (b"EHLO a\r\n", False),
                         "client out": (b"220 a\r\n250 b\r\n421 c\r\n", True)})
check(cut[0] == {220, 250, 421}, "cut: codes %r" % cut[0])
check(cut[2] == {("greeting", 220), ("EHLO", 250)}, "cut: stages %r" % cut[2])
# An incomplete last reply line is not a reply.
check(rs.replies(b"220 a\r\n250-b\r\n250 c") == [220], "a cut reply is left out")
# PROXY v1 header: no reply of its own.
pv = rs.session_states({"client in": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nQUIT\r\n", True),
                        "client out": (b"220 a\r\n221 b\r\n", True)})
check(pv[2] == {("greeting", 220), ("QUIT", 221)}, "PROXY header skipped: %r" % pv[2])

print("relay-states: %s" % ("all passed" if not fails else "%d failed" % fails))
sys.exit(1 if fails else 0)
