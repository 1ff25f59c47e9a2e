"""A private redis-server (Debian's) on a loopback port, no persistence."""
import signal
from pathlib import Path

from .net import LOCALHOST, free_port, wait_port
from .proc import Proc, run

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


class RedisServer:
    """redis-server on LOCALHOST:port; stop()/start() keep the port, so a
    restart is the same server address with empty data (no persistence),
    as after a crash of a cache-only Redis."""

    def __init__(self, workdir: Path, port: int = 0, extra=(), tls=None, user=None,
                 password=None):
        """extra: more redis-server arguments (config directives, e.g.
        ["--requirepass", "pw"]); tls: a lib.tls.TLSCerts, then the port
        speaks TLS only (tls-port, no plaintext port) and wants client
        certificates (Redis's default); user/password: what redis-cli()
        authenticates with."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = [str(a) for a in extra]
        self.tls = tls
        self.user, self.password = user, password
        self.proc = None
        self.n = 0
        self.start()

    @property
    def address(self) -> str:
        """The value of sluiced's redis key."""
        return f"inet:{LOCALHOST}:{self.port}"

    def start(self):
        self.n += 1
        ports = ["--port", self.port]
        if self.tls is not None:
            ports = ["--port", "0", "--tls-port", self.port,
                     "--tls-cert-file", self.tls.server_cert, "--tls-key-file", self.tls.server_key,
                     "--tls-ca-cert-file", self.tls.ca_cert]
        self.proc = Proc([REDIS_SERVER, *ports, "--bind", LOCALHOST,
                          "--save", "", "--appendonly", "no", "--daemonize", "no",
                          "--dir", self.workdir, "--loglevel", "warning", *self.extra],
                         self.workdir / "logs", f"redis{self.n}")
        wait_port(LOCALHOST, self.port, timeout=10, proc=self.proc.popen)
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM)
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def cli(self, *args) -> str:
        opts = []
        if self.tls is not None:
            opts += ["--tls", "--cacert", self.tls.ca_cert, "--cert", self.tls.client_cert,
                     "--key", self.tls.client_key]
        if self.user:
            opts += ["--user", self.user]
        if self.password:
            opts += ["--pass", self.password, "--no-auth-warning"]
        r = run([REDIS_CLI, "-h", LOCALHOST, "-p", self.port, *opts, "--raw", *args], timeout=10)
        return r.stdout.decode().strip()

    def keys(self, pattern="*") -> list:
        out = self.cli("--scan", "--pattern", pattern)
        return sorted(out.split()) if out else []
