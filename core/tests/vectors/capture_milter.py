#!/usr/bin/python3
"""Captures milter exchanges as unit-test vectors (sl_milter_test.c).

The MTA side is played here, packet by packet (framing from libmilter's
mfdef.h and Postfix's milter8.c); the filters are real:
  - test_milter.py, a python3-milter (libmilter) filter, one session per
    scenario (accept, reject, tempfail, discard, replycode, change);
  - rspamd's proxy worker in milter mode (milter = yes), which asks for no
    replies to any event (all SMFIP_NR_* flags), with GTUBE (reject) and a
    clean message (accept with rspamd's headers).
Each session is saved as milter/<name>.bin: records of one direction byte
('>' MTA to filter, '<' filter to MTA), a 4-byte big-endian length and one
whole packet (its own length prefix included).  Run it once by hand:
    /usr/bin/python3 capture_milter.py
"""
import os, socket, struct, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "milter")

ACTIONS = 0x1FD  # every SMFIF_* but CHGBODY: sluice refuses body replacement
PROTOCOL = 0x1FFFFF  # every SMFIP_* step and no-reply flag is offered
NR = {b"C": 1 << 12, b"H": 1 << 13, b"M": 1 << 14, b"R": 1 << 15,
      b"T": 1 << 16, b"L": 1 << 7, b"N": 1 << 18, b"B": 1 << 19}
NO = {b"C": 1 << 0, b"H": 1 << 1, b"M": 1 << 2, b"R": 1 << 3, b"B": 1 << 4,
      b"L": 1 << 5, b"N": 1 << 6, b"T": 1 << 9}
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*strings):
    return b"".join(s + b"\0" for s in strings)


class Session:
    def __init__(self, addr):
        fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(addr)
        self.rec = b""
        self.proto = 0

    def send(self, p):
        self.rec += b">" + struct.pack(">I", len(p)) + p
        self.s.sendall(p)

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            x = self.s.recv(n - len(b))
            if not x:
                raise EOFError("filter closed")
            b += x
        return b

    def read(self):
        hdr = self.recv_exact(4)
        body = self.recv_exact(struct.unpack(">I", hdr)[0])
        p = hdr + body
        self.rec += b"<" + struct.pack(">I", len(p)) + p
        return body[:1], body[1:]

    def event(self, cmd, data=b""):
        """Sends an event unless the filter opted out; returns the final
        reply byte, or b'' when no reply is due."""
        if cmd in NO and self.proto & NO[cmd]:
            return b""
        self.send(pkt(cmd, data))
        if cmd in NR and self.proto & NR[cmd]:
            return b""
        while True:
            c, _ = self.read()
            if c in (b"c", b"a", b"r", b"t", b"d", b"y", b"s", b"4", b"f"):
                return c
            # progress and (at end of body) modifications: keep reading

    def run(self, sender, body):
        self.send(pkt(b"O", struct.pack(">III", 6, ACTIONS, PROTOCOL)))
        c, d = self.read()
        assert c == b"O", c
        self.proto = struct.unpack(">III", d[:12])[2]
        self.send(pkt(b"D", b"C" + z(b"j", b"mx.example.org",
                                      b"{daemon_name}", b"sluice")))
        final = self.event(b"C", z(b"client.example.org") + b"4" +
                           struct.pack(">H", 54321) + z(b"192.0.2.1"))
        final = self.event(b"H", z(b"client.example.org")) or final
        self.send(pkt(b"D", b"M" + z(b"i", b"4XyZ1")))
        self.event(b"M", z(b"<" + sender + b">", b"SIZE=1000", b"BODY=8BITMIME"))
        self.event(b"R", z(b"<b@example.org>"))
        self.event(b"T")
        for name, value in ((b"From", b"a@example.org"), (b"To", b"b@example.org"),
                            (b"Subject", b"capture")):
            self.event(b"L", z(name, value))
        self.event(b"N")
        self.event(b"B", body)
        final = self.event(b"E")
        self.send(pkt(b"Q"))
        self.s.close()
        return final


def wait_for(addr):
    for _ in range(300):
        try:
            fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.connect(addr)
            s.close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("filter did not start on %r" % (addr,))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def python_milter(tmp):
    sock = os.path.join(tmp, "milter.sock")
    log = os.path.join(tmp, "milter.log")
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "test_milter.py"),
                          "unix:" + sock, log])
    try:
        wait_for(sock)
        for mode in ("accept", "reject", "tempfail", "discard", "replycode", "change"):
            s = Session(sock)
            final = s.run(mode.encode() + b"@example.org", b"Hello milter.\r\n")
            open(os.path.join(OUT, "pymilter_%s.bin" % mode), "wb").write(s.rec)
            print("pymilter", mode, final)
    finally:
        p.terminate()
        p.wait(timeout=30)
    print(open(log).read())


def rspamd_milter(tmp):
    from rspamd_instance import Rspamd
    with Rspamd(tmp) as r:
        for name, body in (("gtube", b"Spam test " + GTUBE + b"\r\n"),
                           ("ham", b"Hello, this is a normal message.\r\n")):
            s = Session(("127.0.0.1", r.milter_port))
            final = s.run(b"a@example.org", body)
            open(os.path.join(OUT, "rspamd_%s.bin" % name), "wb").write(s.rec)
            print("rspamd", name, final)


def main():
    os.makedirs(OUT, exist_ok=True)
    sys.path.insert(0, HERE)
    with tempfile.TemporaryDirectory() as tmp:
        python_milter(tmp)
    with tempfile.TemporaryDirectory() as tmp:
        rspamd_milter(tmp)


main()
