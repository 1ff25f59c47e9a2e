"""A private HAProxy (Debian's haproxy 2.6) in TCP mode in front of servers
that take the PROXY protocol v2: the scale-out deployment of sluiced (README
"Scale-out: HAProxy and Redis")."""
import signal
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for
from .proc import Proc, run

HAPROXY = "/usr/sbin/haproxy"

CONFIG = """global
    maxconn 4096
    stats socket {stats} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    # a connect refused by a dead instance is retried on another one
    retries 3
    option redispatch

frontend smtp
    bind {host}:{port}
    default_backend sluiced

backend sluiced
    balance {balance}
    # send-proxy-v2 also sends a LOCAL header on health checks, which
    # sluiced answers with nothing: a check costs no session and no tarpit
{servers}
"""


class HAProxy:
    """servers: [(name, host, port)].  inter: health-check interval."""

    def __init__(self, workdir: Path, servers, balance="roundrobin", inter="300ms",
                 fall=2, rise=2):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOCALHOST
        self.port = free_port()
        self.stats = self.workdir / "stats.sock"
        lines = [f"    server {n} {h}:{p} send-proxy-v2 check inter {inter} fall {fall} rise {rise}"
                 for n, h, p in servers]
        self.conf_path = self.workdir / "haproxy.cfg"
        self.conf_path.write_text(CONFIG.format(stats=self.stats, host=self.host, port=self.port,
                                                balance=balance, servers="\n".join(lines)))
        r = run([HAPROXY, "-c", "-f", self.conf_path], timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"haproxy -c: {r.stdout.decode()}{r.stderr.decode()}")
        self.proc = Proc([HAPROXY, "-db", "-f", self.conf_path], self.workdir / "logs", "haproxy")
        # Ready when its checks see every server up, read from the stats
        # socket: a probe of the frontend would be a session at a backend.
        wait_for(self.stats.exists, 10, what="haproxy stats socket")
        self.wait_up(len(servers))

    @property
    def address(self):
        return (self.host, self.port)

    def command(self, cmd: str) -> str:
        """A stats-socket command (show stat, disable server ...)."""
        import socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.stats))
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        return out.decode()

    def server_status(self) -> dict:
        """{server name: "UP"/"DOWN"/...} of the sluiced backend."""
        st = {}
        lines = self.command("show stat").splitlines()
        if not lines:
            return st
        head = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            f = dict(zip(head, line.split(",")))
            if f.get("pxname") == "sluiced" and f.get("svname") not in ("BACKEND", "FRONTEND"):
                st[f["svname"]] = f.get("status", "")
        return st

    def wait_up(self, n: int, timeout: float = 15.0):
        wait_for(lambda: sum(1 for v in self.server_status().values() if v.startswith("UP")) == n,
                 timeout, what=f"{n} HAProxy servers UP")

    def wait_down(self, name: str, timeout: float = 15.0):
        wait_for(lambda: self.server_status().get(name, "").startswith("DOWN"), timeout,
                 what=f"HAProxy marks {name} DOWN")

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM)
            self.proc = None
