#!/usr/bin/python3
"""transcripts-to-seeds.py: captured SMTP sessions -> relay fuzz seeds.

Reads the transcripts that `sluice-replay extract` writes (format:
pcap-replay/TRANSCRIPT.md) and turns each session into an input of the relay
harness's op language (fuzz_relay.c; fuzz/README.md documents it):

  header   pass-through mode (the relay connects upstream on accept and
           relays the captured server's greeting); STARTTLS offered when the
           client asked for it, AUTH relayed (and allowed without TLS) when
           it authenticated, lenient bare-LF normalisation when the client
           sent bare LFs; pipeline_max 30, four large buffers, output acked
           in full; no tarpit, DNSBL or identity;
  A 0      the connect answer the pass-through relay waits for;
           (no preamble reply: without upstream TLS or XCLIENT the relay
           sends no EHLO of its own, and the client's captured EHLO is the
           upstream's first, answered by the captured reply to it; a reply
           fed before it would be unsolicited and fail the leg);
  C / U    the client's bytes and the captured server replies as upstream
           bytes, in capture order, one op per captured segment;
  T        the time between records, from the transcript's timestamps;
  S 0      the client STARTTLS handshake succeeds where the capture's
           plaintext ends (E tls);
  E / e    client / server FIN (or RST of the server); X a client RST.

Skipped: sessions without client bytes, implicit TLS, sessions whose client
stream is mostly message body (over 60 % of it between DATA and the end of
data, or over 12 KB of body), seeds of 16 KB or more, and sessions of the
same shape (the sequence of command verbs and reply codes) as one already
taken.  At most MAX_SEEDS seeds, in capture name and session order.  Files
are named by SHA-256; the list of what was written, with each seed's source
session, goes to fuzz/tools/capture-seeds.txt, and seeds listed there from
an earlier run are removed first, so a re-run replaces them.

Usage: transcripts-to-seeds.py TRANSCRIPT_DIR [CORPUS_DIR [MANIFEST]]
(make-capture-seeds.sh BUILD_DIR runs extract and then this.)
"""
import hashlib
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_SEEDS = 80
MAX_SEED_BYTES = 16 * 1024
MAX_BODY_FRACTION = 0.6
MAX_BODY_BYTES = 12 * 1024


class Bad(Exception):
    pass


def read_transcript(path):
    """Header dict and records [(type, t_us, payload)]: C/S bytes, G
    (side, n), E reason.  A minimal independent reader of TRANSCRIPT.md."""
    b = open(path, "rb").read()
    pos = 0

    def line():
        nonlocal pos
        e = b.find(b"\n", pos)
        if e < 0:
            raise Bad("%s: unterminated line at %d" % (path, pos))
        s = b[pos:e].decode("latin-1")
        pos = e + 1
        return s

    if line() != "sluice-transcript 1":
        raise Bad("%s: not a version 1 transcript" % path)
    hdr = {}
    while True:
        s = line()
        if s == "":
            break
        k, _, v = s.partition(" ")
        hdr[k] = v
    recs = []
    while pos < len(b):
        f = line().split(" ")
        typ, t = f[0], int(f[1])
        if typ in ("C", "S"):
            n = int(f[2])
            data = b[pos:pos + n]
            if len(data) != n or b[pos + n:pos + n + 1] != b"\n":
                raise Bad("%s: bad data record" % path)
            pos += n + 1
            recs.append((typ, t, data))
        elif typ == "G":
            recs.append(("G", t, (f[2], int(f[3]))))
        elif typ == "E":
            recs.append(("E", t, f[2]))
        else:
            raise Bad("%s: unknown record %r" % (path, typ))
    return hdr, recs


def client_stream(recs):
    return b"".join(d for typ, _, d in recs if typ == "C")


def body_bytes(stream):
    """Bytes of the client stream inside DATA bodies."""
    body, i = 0, 0
    while True:
        m = re.search(rb"(?im)^DATA[ \t]*\r?\n", stream[i:])
        if not m:
            return body
        start = i + m.end()
        end = stream.find(b"\r\n.\r\n", start - 2)
        end = len(stream) if end < 0 else end + 5
        body += end - start
        i = end


def shape(recs):
    verbs = re.findall(rb"(?m)^([A-Za-z]{4,8})\b", client_stream(recs))
    codes = re.findall(rb"(?m)^([2-5][0-9][0-9])[ -]",
                       b"".join(d for typ, _, d in recs if typ == "S"))
    return (tuple(v.upper() for v in verbs), tuple(codes))


def time_ops(dt_us):
    """T ops advancing the clock by about dt_us (x * unit, units 1 ms, 100 ms,
    1 s, 10 s)."""
    ops = b""
    ms = dt_us // 1000
    while ms > 0:
        for unit, scale in ((0, 1), (1, 100), (2, 1000), (3, 10000)):
            if ms < 256 * scale or unit == 3:
                x = min(255, ms // scale)
                break
        if x == 0:
            break
        ops += b"T" + bytes([x, unit])
        ms -= x * scale
        if unit == 3 and len(ops) > 40:
            break  # hours of silence: a few minutes of ops are enough
    return ops


def data_ops(op, data):
    out = b""
    for i in range(0, len(data), 0xFFFF):
        piece = data[i:i + 0xFFFF]
        out += op + struct.pack("<H", len(piece)) + piece
    return out


def convert(recs):
    cs = client_stream(recs)
    b0 = 0  # pass-through, greet teaser on
    if re.search(rb"(?im)^STARTTLS", cs):
        b0 |= 0x02
    if re.search(rb"(?im)^AUTH ", cs):
        b0 |= 0x04 | 0x40
    if re.search(rb"(?<!\r)\n", cs):
        b0 |= 0x08
    b2 = 7 << 2  # pipeline_max 30
    hdr = bytes([b0, 0, b2, 0, 0, 3]) + struct.pack("<H", 1)
    out = hdr + b"A\x00"
    last_t = 0
    for typ, t, d in recs:
        if t > last_t:
            out += time_ops(t - last_t)
            last_t = t
        if typ == "C":
            out += data_ops(b"C", d)
        elif typ == "S":
            out += data_ops(b"U", d)
        elif typ == "E":
            out += {"client-fin": b"E", "client-rst": b"X", "server-fin": b"e",
                    "server-rst": b"e", "tls": b"S\x00", "capture-end": b""}[d]
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    tdir = sys.argv[1]
    corpus = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "..", "corpus", "relay")
    manifest = sys.argv[3] if len(sys.argv) > 3 else os.path.join(HERE, "capture-seeds.txt")
    if os.path.exists(manifest):
        for ln in open(manifest):
            name = ln.split(" ")[0].strip()
            if re.fullmatch(r"[0-9a-f]{64}", name):
                try:
                    os.remove(os.path.join(corpus, name))
                except FileNotFoundError:
                    pass

    def key(n):
        m = re.match(r"(.*)\.(\d+)\.transcript$", n)
        return (m.group(1), int(m.group(2))) if m else (n, 0)

    names = sorted((n for n in os.listdir(tdir) if n.endswith(".transcript")), key=key)
    seen, taken, skipped = set(), [], {}

    def skip(why):
        skipped[why] = skipped.get(why, 0) + 1

    for n in names:
        if len(taken) >= MAX_SEEDS:
            skip("cap")
            continue
        hdr, recs = read_transcript(os.path.join(tdir, n))
        cs = client_stream(recs)
        if not cs:
            skip("no client bytes")
            continue
        if cs[:1] == b"\x16":
            skip("implicit tls")
            continue
        body = body_bytes(cs)
        if body > MAX_BODY_BYTES or body > MAX_BODY_FRACTION * len(cs):
            skip("mostly body")
            continue
        sh = shape(recs)
        if sh in seen:
            skip("same shape")
            continue
        seed = convert(recs)
        if len(seed) >= MAX_SEED_BYTES:
            skip("too large")
            continue
        seen.add(sh)
        name = hashlib.sha256(seed).hexdigest()
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(seed)
        taken.append((name, "%s session %s" % (hdr.get("source", n).split(" ")[0],
                                               hdr.get("source", "").split(" ")[-1])))
    with open(manifest, "w") as f:
        f.write("# Relay seeds written by transcripts-to-seeds.py from the shared captures\n"
                "# (make-capture-seeds.sh); a re-run removes these and writes them anew.\n")
        for name, src in taken:
            f.write("%s %s\n" % (name, src))
    print("transcripts-to-seeds.py: %d seeds from %d transcripts (skipped: %s)"
          % (len(taken), len(names),
             ", ".join("%s %d" % kv for kv in sorted(skipped.items())) or "none"))


main()
