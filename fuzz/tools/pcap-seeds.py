#!/usr/bin/python3
"""pcap-seeds.py: writes the seed corpus of the pcap fuzz target (fuzz_pcap.c).

Reads the shared captures (classic pcap in either byte order, microsecond or
nanosecond; pcapng) with its own parser, cuts single frames out of them and
writes small seeds, each under 2 KB, named by SHA-256, into
fuzz/corpus/pcap/.  Whole captures are never copied: a seed holds at most
the first few frames of a capture (or of one of its sessions), re-encoded.

Seeds (format: fuzz/README.md, "The pcap target"):
  - frames mode: the opening frames of a session (SYN ... greeting, EHLO,
    MAIL) of several captures, as captured (Ethernet, or BSD NULL);
  - the same segments re-encapsulated in every link type (Linux SLL, SLL2,
    NULL, LOOP, raw, IPv4, IPv6 as IPv6 with a hop-by-hop header, and 802.1Q
    / QinQ tags), out of order with duplicates, cut by a snapshot length,
    with a burst under an idle timeout and with the clock stepping back;
  - whole-file mode: new classic pcap files (little and big endian,
    microsecond and nanosecond) and pcapng files holding the first frames.

Usage: pcap-seeds.py [PCAP_DIR [FUZZ_DIR]]   (defaults ../shared/pcaps, fuzz/)
"""
import glob
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FUZZ = os.path.dirname(HERE)
PCAPS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FUZZ, "..", "..", "shared", "pcaps")
if len(sys.argv) > 2:
    FUZZ = sys.argv[2]
OUT = os.path.join(FUZZ, "corpus", "pcap")
LIMIT = 2000

# fuzz_pcap.c link type table (byte 0, bits 0-2)
EN10MB, SLL, SLL2, NULL, LOOP, RAW, IPV4, IPV6 = range(8)
LINKTYPE_TO_INDEX = {1: EN10MB, 113: SLL, 276: SLL2, 0: NULL, 108: LOOP, 101: RAW,
                     228: IPV4, 229: IPV6}
# tracker byte: max_ooo 64 KiB, max_pending 64 KiB, idle never, default ports
CFG = 0x0E

written = []


def write(data):
    assert len(data) < LIMIT, len(data)
    os.makedirs(OUT, exist_ok=True)
    name = hashlib.sha256(data).hexdigest()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    written.append(name)


# ---- reading ------------------------------------------------------------------
def read_pcap(b):
    """[(linktype, ts_us, data, wirelen)] of a classic pcap."""
    magic = b[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        return []
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    lt = struct.unpack(e + "I", b[20:24])[0] & 0xFFFF
    out, off = [], 24
    while off + 16 <= len(b):
        sec, frac, cap, wire = struct.unpack(e + "IIII", b[off:off + 16])
        off += 16
        if cap > len(b) - off:
            break
        out.append((lt, sec * 1000000 + (frac // 1000 if nano else frac), b[off:off + cap], wire))
        off += cap
    return out


def read_pcapng(b):
    out, off, e, ifaces = [], 0, "<", []
    while off + 12 <= len(b):
        btype = struct.unpack(e + "I", b[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            e = "<" if b[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack(e + "I", b[off + 4:off + 8])[0]
        if blen < 12 or off + blen > len(b):
            break
        body = b[off + 8:off + blen - 4]
        if btype == 1:  # IDB (microsecond resolution assumed: the default)
            ifaces.append(struct.unpack(e + "H", body[:2])[0])
        elif btype == 6 and len(body) >= 20:  # EPB
            iface, hi, lo, cap, wire = struct.unpack(e + "IIIII", body[:20])
            if iface < len(ifaces):
                out.append((ifaces[iface], (hi << 32) | lo, body[20:20 + cap], wire))
        off += blen
    return out


def read_capture(path):
    b = open(path, "rb").read()
    return read_pcapng(b) if b[:4] == b"\x0a\x0d\x0d\x0a" else read_pcap(b)


# ---- frame surgery ---------------------------------------------------------------
def ip_of(lt, frame):
    """The IP packet inside a frame of link type lt, or None."""
    if lt == 1:
        off, et = 12, None
        while off + 2 <= len(frame):
            et = struct.unpack(">H", frame[off:off + 2])[0]
            if et in (0x8100, 0x88A8):
                off += 4
                continue
            break
        return frame[off + 2:] if et in (0x0800, 0x86DD) else None
    if lt in (0, 108):
        return frame[4:]
    if lt in (101, 228, 229):
        return frame
    if lt == 113:
        return frame[16:]
    if lt == 276:
        return frame[20:]
    return None


def to_ipv6(ip4, hop_by_hop):
    """An IPv4 TCP packet as IPv6 (optionally with a hop-by-hop header)."""
    ihl = (ip4[0] & 15) * 4
    tcp = ip4[ihl:struct.unpack(">H", ip4[2:4])[0]]
    src = b"\x20\x01\x0d\xb8" + b"\x00" * 8 + ip4[12:16]
    dst = b"\x20\x01\x0d\xb8" + b"\x00" * 8 + ip4[16:20]
    ext = b""
    nxt = 6
    if hop_by_hop:
        ext = bytes([6, 0]) + b"\x01\x04\x00\x00\x00\x00"  # PadN option
        nxt = 0
    hdr = struct.pack(">IHBB", 0x60000000, len(ext) + len(tcp), nxt, 64) + src + dst
    return hdr + ext + tcp


def encap(idx, ip, vlan=0):
    v6 = ip[0] >> 4 == 6
    et = 0x86DD if v6 else 0x0800
    if idx == EN10MB:
        tags = b""
        for i in range(vlan):
            tags += struct.pack(">HH", 0x88A8 if (vlan == 2 and i == 0) else 0x8100, 100 + i)
        return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02" + tags + struct.pack(">H", et) + ip
    if idx == SLL:
        return struct.pack(">HHH", 0, 1, 6) + b"\x02\x00\x00\x00\x00\x01\x00\x00" + struct.pack(">H", et) + ip
    if idx == SLL2:
        return struct.pack(">HHIHBB", et, 0, 1, 1, 0, 6) + b"\x02\x00\x00\x00\x00\x01\x00\x00" + ip
    if idx == NULL:
        return struct.pack("<I", 24 if v6 else 2) + ip
    if idx == LOOP:
        return struct.pack(">I", 24 if v6 else 2) + ip
    return ip  # RAW, IPV4, IPV6


def dt_byte(prev, ts):
    d = (ts - prev) // 10000 if prev is not None else 0
    return max(0, min(0xEF, d))


def frames_seed(idx, frames, cfg=CFG, cuts=None, extra=b""):
    """frames: [(ts_us, bytes, wirelen)]."""
    out = bytes([idx, cfg])
    prev = None
    for i, (ts, data, wire) in enumerate(frames):
        cut = max(0, min(255, wire - len(data)))
        if cuts and i in cuts:
            cut = cuts[i]
        rec = struct.pack("<HBB", len(data), dt_byte(prev, ts), cut) + data
        if len(out) + len(rec) + len(extra) >= LIMIT:
            break
        out += rec
        prev = ts
    return out + extra


def opening(frames, limit=LIMIT - 100):
    """The first frames of a capture up to limit bytes of seed."""
    got, n = [], 2
    for lt, ts, data, wire in frames:
        if n + 4 + len(data) >= limit:
            break
        got.append((lt, ts, data, wire))
        n += 4 + len(data)
    return got


def tcp_frames(frames):
    """Frames carrying IPv4 TCP, as (ts, ip packet) without link padding."""
    out = []
    for lt, ts, data, wire in frames:
        ip = ip_of(lt, data)
        if not ip or len(ip) < 40 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        total = struct.unpack(">H", ip[2:4])[0]
        out.append((ts, ip[:total] if total else ip))
    return out


# ---- file writers -------------------------------------------------------------------
def pcap_file(lt, frames, endian="<", nano=False):
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, lt)
    for ts, data, wire in frames:
        frac = (ts % 1000000) * (1000 if nano else 1)
        rec = struct.pack(endian + "IIII", ts // 1000000, frac, len(data), wire) + data
        if len(out) + len(rec) >= LIMIT:
            break
        out += rec
    return out


def pcapng_file(lt, frames):
    def block(t, body):
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", t, n) + body + struct.pack("<I", n)
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", lt, 0, 65535))
    for ts, data, wire in frames:
        b = block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), wire) + data)
        if len(out) + len(b) >= LIMIT:
            break
        out += b
    return out


# ---- the seeds ----------------------------------------------------------------------
def main():
    paths = sorted(glob.glob(os.path.join(PCAPS, "*.pcap*")))
    if not paths:
        sys.exit("pcap-seeds.py: no captures in %s" % PCAPS)
    caps = {os.path.basename(p): read_capture(p) for p in paths}

    # 1. Opening frames of several captures, link types as captured.
    picks = ["suricata-verify__smtp-quit__input.pcap",
             "suricata-verify__smtp-simple-session.pcap",
             "suricata-verify__smtp-pipelining__input.pcap",  # BSD NULL
             "suricata-verify__smtp-rset-starttls__input.pcap",  # BSD NULL, STARTTLS
             "suricata-verify__smtp-out-of-order.pcap",
             "zeek__smtp-one-side-only.pcap",
             "zeek__rfc3030-bdat-example1.pcap",
             "nDPI__smtps.pcapng",
             "osi-model__smtp.pcapng",
             "markofu-pcaps__CVE-2008-1275_Mailenable_VRFY.pcap",
             "IntrusionDetection__Misc3.pcap",
             "zeek__connect-with-smtp.pcap"]
    for name in picks:
        fr = caps.get(name) or []
        fr = [f for f in fr if f[0] in LINKTYPE_TO_INDEX]
        if not fr:
            continue
        op = opening(fr)
        write(frames_seed(LINKTYPE_TO_INDEX[op[0][0]], [(ts, d, w) for _, ts, d, w in op]))

    # 2. One small session re-encapsulated in every link type, and variants.
    base = tcp_frames(caps["suricata-verify__smtp-quit__input.pcap"])
    assert base, "no TCP frames in the quit capture"
    v4 = [(ts, ip) for ts, ip in base]
    for idx in (EN10MB, SLL, SLL2, NULL, LOOP, RAW, IPV4):
        fs = [(ts, encap(idx, ip), len(encap(idx, ip))) for ts, ip in v4]
        write(frames_seed(idx, fs))
    for hbh in (False, True):
        fs = [(ts, to_ipv6(ip, hbh), len(to_ipv6(ip, hbh))) for ts, ip in v4]
        write(frames_seed(IPV6, fs))
        fs = [(ts, encap(EN10MB, to_ipv6(ip, hbh)), 0) for ts, ip in v4]
        write(frames_seed(EN10MB, [(t, d, len(d)) for t, d, _ in fs]))
    for vlan in (1, 2):
        fs = [(ts, encap(EN10MB, ip, vlan)) for ts, ip in v4]
        write(frames_seed(EN10MB, [(t, d, len(d)) for t, d in fs]))
    eth = [(ts, encap(EN10MB, ip)) for ts, ip in v4]
    # out of order with duplicates (retransmissions and overlaps)
    shuffled = []
    for i in range(0, len(eth) - 1, 2):
        shuffled += [eth[i + 1], eth[i], eth[i + 1]]
    if len(eth) % 2:
        shuffled.append(eth[-1])
    write(frames_seed(EN10MB, [(t, d, len(d)) for t, d in shuffled]))
    # snapshot length: every frame cut to 60 bytes (wire length kept)
    write(frames_seed(EN10MB, [(t, d[:60], len(d)) for t, d in eth]))
    # a burst of retransmissions under a 2 s idle timeout, and a clock step back
    fs = [(t, d, len(d)) for t, d in eth[:4]]
    burst = struct.pack("<HBB", 0, 0xFF, 70)  # 70 x 64 copies: past the sweep
    write(frames_seed(EN10MB, fs, cfg=0x1E, extra=burst + frames_seed(EN10MB, [(t, d, len(d)) for t, d in eth[4:6]])[2:]))
    back = frames_seed(EN10MB, fs)
    back += struct.pack("<HBB", len(eth[4][1]), 0xFE, 0) + eth[4][1]
    write(back)
    # tiny out-of-order buffer and pending limit
    write(frames_seed(EN10MB, [(t, d, len(d)) for t, d in shuffled], cfg=0x40))

    # 3. Whole-file mode: new files holding the first frames of captures.
    for name, variants in (("suricata-verify__smtp-quit__input.pcap", ("<", ">", "ns", "ng")),
                           ("suricata-verify__smtp-rset-starttls__input.pcap", ("<",)),
                           ("osi-model__smtp.pcapng", ("ng",)),
                           ("zeek__smtp-one-side-only.pcap", ("<",))):
        fr = caps.get(name) or []
        if not fr:
            continue
        lt = fr[0][0]
        first = [(ts, d, w) for _, ts, d, w in fr[:6]]
        for v in variants:
            if v == "ng":
                f = pcapng_file(lt, first)
            elif v == "ns":
                f = pcap_file(lt, first, nano=True)
            else:
                f = pcap_file(lt, first, endian=v)
            write(bytes([0x80, CFG]) + f)
    print("pcap-seeds.py: %d seeds in %s" % (len(set(written)), OUT))


main()
