"""A real unbound on a loopback port that serves test DNSBL/DNSWL zones.

Listings are local-data in static local-zones, so answers are authoritative
and instant: a listed name gets its A record(s), anything else in the zone
NXDOMAIN.  A "timeout zone" is a stub-zone whose only server is a loopback
UDP socket that reads nothing and answers nothing, so a lookup there takes
as long as the client is willing to wait (DNS-timeout tests).
"""
import ipaddress
import signal
import socket
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for
from .paths import system_tool
from .proc import Proc, run


def reverse_name(ip: str, zone: str) -> str:
    """The DNSBL query name for ip in zone (IPv4 octets or IPv6 nibbles reversed)."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        label = ".".join(reversed(ip.split(".")))
    else:
        label = ".".join(reversed(addr.exploded.replace(":", "")))
    return f"{label}.{zone.rstrip('.')}"


class UnboundServer:
    """Configure with add_zone/list_ip/add_timeout_zone, then start()."""

    def __init__(self, workdir: Path, host: str = LOCALHOST):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = None
        self.zones = {}          # zone -> list of (name, rtype, value)
        self.timeout_zones = []
        self._blackhole = None
        self.proc = None

    # -- configuration before start
    def add_zone(self, zone: str):
        self.zones.setdefault(zone.rstrip("."), [])
        return self

    def list_ip(self, zone: str, ip: str, answer: str = "127.0.0.2", txt: str = None):
        """Lists ip in zone with the A record answer (and an optional TXT)."""
        name = reverse_name(ip, zone)
        self.add_zone(zone)
        self.zones[zone.rstrip(".")].append((name, "A", answer))
        if txt is not None:
            self.zones[zone.rstrip(".")].append((name, "TXT", f'"{txt}"'))
        return self

    def add_record(self, zone: str, name: str, rtype: str, value: str):
        self.add_zone(zone)
        self.zones[zone.rstrip(".")].append((name.rstrip("."), rtype, value))
        return self

    def add_timeout_zone(self, zone: str):
        self.timeout_zones.append(zone.rstrip("."))
        return self

    # -- lifecycle
    def start(self):
        if self.timeout_zones and self._blackhole is None:
            # Bound but never read: queries are swallowed, no ICMP error comes
            # back, so the resolver can only wait.
            self._blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._blackhole.bind((LOCALHOST, 0))
        self.port = free_port(self.host, udp_too=True)
        conf = self.workdir / "unbound.conf"
        lines = [
            "server:",
            f"  interface: {self.host}",
            f"  port: {self.port}",
            "  do-ip6: no" if ":" not in self.host else "  do-ip6: yes",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.workdir}"',
            f'  pidfile: "{self.workdir / "unbound.pid"}"',
            "  use-syslog: no",
            f'  logfile: "{self.workdir / "unbound.log"}"',
            "  verbosity: 1",
            "  do-daemonize: no",
            "  num-threads: 1",
            "  access-control: 127.0.0.0/8 allow",
            "  access-control: ::1/128 allow",
            '  module-config: "iterator"',
            "  do-not-query-localhost: no",
            "  cache-max-ttl: 0",
            "  cache-max-negative-ttl: 0",
            "  msg-cache-size: 1m",
            "  rrset-cache-size: 1m",
            # No Internet here: never chase the real root for other names.
            '  local-zone: "." refuse',
        ]
        for zone, records in self.zones.items():
            lines.append(f'  local-zone: "{zone}." static')
            lines.append(f'  local-data: "{zone}. 300 IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60"')
            for name, rtype, value in records:
                lines.append(f"  local-data: '{name}. 60 IN {rtype} {value}'")
        for zone in self.timeout_zones:
            lines.append(f'  local-zone: "{zone}." transparent')
            lines.append(f'  domain-insecure: "{zone}."')
        for zone in self.timeout_zones:
            lines += ["stub-zone:", f'  name: "{zone}."',
                      f"  stub-addr: {LOCALHOST}@{self._blackhole.getsockname()[1]}"]
        lines += ["remote-control:", "  control-enable: no"]
        conf.write_text("\n".join(lines) + "\n")
        unbound = system_tool("unbound", "/usr/sbin/unbound")
        chk = run([system_tool("unbound-checkconf", "/usr/sbin/unbound-checkconf"), conf], timeout=20)
        if chk.returncode != 0:
            raise RuntimeError("unbound-checkconf: " + (chk.stdout + chk.stderr).decode(errors="replace"))
        self.proc = Proc([unbound, "-d", "-c", conf], self.workdir, "unbound")
        try:
            wait_for(self._answers, timeout=15, interval=0.1, what="unbound to answer")
        except Exception:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if self.proc.popen.poll() is not None:
            raise RuntimeError(f"unbound exited: {self.proc.stderr()}"
                               f"{(self.workdir / 'unbound.log').read_text(errors='replace') if (self.workdir / 'unbound.log').exists() else ''}")
        try:
            self.query("probe.invalid", timeout=0.5)
            return True
        except (OSError, TimeoutError):
            return False

    @property
    def address(self):
        return (self.host, self.port)

    def query(self, name: str, rtype: str = "A", timeout: float = 2.0):
        """A minimal stub lookup: returns (rcode, [answers as strings])."""
        return dns_query(self.host, self.port, name, rtype, timeout)

    def dig(self, name: str, rtype: str = "A", timeout: int = 2, tries: int = 1):
        """Runs dig against this server; returns the CompletedProcess."""
        dig = system_tool("dig", "/usr/bin/dig")
        return run([dig, f"@{self.host}", "-p", str(self.port), f"+time={timeout}",
                    f"+tries={tries}", "+nocookie", name, rtype],
                   timeout=timeout * tries + 10)

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=10)
        if self._blackhole is not None:
            self._blackhole.close()
            self._blackhole = None


_RTYPES = {"A": 1, "TXT": 16, "AAAA": 28}


def dns_query(host: str, port: int, name: str, rtype: str = "A", timeout: float = 2.0):
    """One UDP query without any DNS library; returns (rcode, answers)."""
    import os
    import struct
    qid = int.from_bytes(os.urandom(2), "big")
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", _RTYPES[rtype], 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (host, port))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            raise TimeoutError(f"no DNS answer for {name} within {timeout}s")
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        raise OSError("DNS id mismatch")
    rcode = flags & 0xF
    off = 12

    def skip_name(o):
        while True:
            ln = data[o]
            if ln == 0:
                return o + 1
            if ln & 0xC0 == 0xC0:
                return o + 2
            o += 1 + ln

    for _ in range(qd):
        off = skip_name(off) + 4
    answers = []
    for _ in range(an):
        off = skip_name(off)
        t, _, _, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        rdata = data[off:off + rdlen]
        off += rdlen
        if t == 1:
            answers.append(socket.inet_ntoa(rdata))
        elif t == 28:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
        elif t == 16:
            answers.append(rdata[1:1 + rdata[0]].decode(errors="replace"))
    return rcode, answers
