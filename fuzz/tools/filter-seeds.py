#!/usr/bin/python3
"""filter-seeds.py: seed corpora for the content-filter codec targets
(fuzz/corpus/{milter,rspamd,clamd}/), from the exchanges captured with
real filters in core/tests/vectors/ (capture_*.py there) plus a few
hand-made hostile inputs.  Files are named by their SHA-256, so re-running
is idempotent.  Usage: filter-seeds.py [FUZZ_DIR]
"""
import glob
import hashlib
import os
import struct
import sys

FUZZ = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
VEC = os.path.join(FUZZ, "..", "core", "tests", "vectors")


def write(target, data):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha256(data).hexdigest()), "wb") as f:
        f.write(data)


def records(path):
    b = open(path, "rb").read()
    i = 0
    while i < len(b):
        n = struct.unpack(">I", b[i + 1:i + 5])[0]
        yield b[i:i + 1], b[i + 5:i + 5 + n]
        i += 5 + n


def pkt(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


# clamd: byte 0 is the chunk size for the framing round trip
for path in sorted(glob.glob(os.path.join(VEC, "clamd", "*.reply"))):
    write("clamd", b"\x00" + open(path, "rb").read())
for reply in (b"stream: OK\n", b"stream: Win.Test.EICAR_HDB-1 FOUND\0",
              b"stream: a\x1bb FOUND\r\n", b"stream: Can't allocate memory ERROR\0",
              b"stream:  FOUND\0", b"stream: OK", b"A" * 1100):
    write("clamd", b"\x10" + reply)

# milter, filter mode (byte 0 even): the filter's packets of each session
for path in sorted(glob.glob(os.path.join(VEC, "milter", "*.bin"))):
    stream = b"".join(p for d, p in records(path) if d == b"<")
    for seed in (0x07, 0x3f):
        write("milter", b"\x00" + bytes([seed]) + stream)
optneg = pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x0FF080))
for extra in (pkt(b"b", b"new body"), pkt(b"s"), pkt(b"y", b"250 2.0.0 ok\0"),
              pkt(b"y", b"550-5.7.1 a\r\n550 5.7.1 b\r\n250 ok\0"),
              pkt(b"h", b"X-A\0a\r\nBcc: x@y\0"),
              pkt(b"m", b"\0\0\0\1Subject\0\0"), pkt(b"i", b"\0\0\0\0X\0v\n\tw\0"),
              pkt(b"2", b"<x@y>\0NOTIFY=NEVER\0"), pkt(b"e", b"<>\0"),
              pkt(b"O", struct.pack(">III", 6, 1, 2) + struct.pack(">I", 2) + b"{a}\0"),
              b"\0\0\0\0", b"\xff\xff\xff\xff"):
    write("milter", b"\x00\x3f" + optneg + extra)
# milter, encoder mode (byte 0 odd): strings split at 0xff
for s in (b"a@example.org\xffSIZE=1000\xffBODY=8BITMIME", b"\xff", b"X-Name\xffvalue",
          b"a\0b\xffc", b"j\xffmx.example.org\xff{daemon_name}\xffsluice"):
    for seed in (0x01, 0x80, 0xff):
        write("milter", b"\x01" + bytes([seed]) + s)

# rspamd: HTTP mode (0) with the captured responses, JSON mode (1) with
# their bodies, request mode (2) with envelope fields split at 0xff
for path in sorted(glob.glob(os.path.join(VEC, "rspamd", "*.response"))):
    resp = open(path, "rb").read()
    write("rspamd", b"\x00\xff" + resp)
    body = resp.partition(b"\r\n\r\n")[2]
    write("rspamd", b"\x01\x80" + body)
    head = resp.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    chunked = head.replace(b"Content-Length", b"X-Was-Length").replace(
        b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n", 1)
    parts = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100])
                     for i in range(0, len(body), 100))
    write("rspamd", b"\x00\xff" + chunked + parts + b"0\r\n\r\n")
for resp in (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
             b"HTTP/1.0 200 OK\r\n\r\n{\"action\":\"reject\"}",
             b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
             b"HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: 1\r\n\r\nx",
             b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n"):
    write("rspamd", b"\x03\x40" + resp)
for body in (b'{"action":"soft reject","messages":{"smtp_message":"a\\r\\n250 ok"}}',
             b'{"milter":{"add_headers":{"X-A":[{"value":"1","order":0},"2"]},'
             b'"remove_headers":{"X-Spam":1}},"score":-1.5e2}',
             b'{"action":"reject","score":1e400,"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
             b'{"subject":"\\ud83d\\ude00 \\udc00 \\u00e9","action":"rewrite subject"}',
             b'{"action":"\\u0000"}'):
    write("rspamd", b"\x01\x80" + body)
for env in (b"192.0.2.1\xffclient.example.org\xff\xffa@example.org\xff4XyZ1\xff\xff\xff\xffb@example.org",
            b"1.2.3.4\r\nX-Injected: 1\xffhelo\x00\xff\xff\xff\xff\xff\xff\xffr1\xffr2\xffr3"):
    for seed in (0x03, 0x22):
        write("rspamd", b"\x02" + bytes([seed]) + env)
