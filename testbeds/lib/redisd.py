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

    def __init__(self, workdir: Path, port: int = 0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.n = 0
        self.start()

    @property
    def address(self) -> str:
        """The value of sluiced's redis key."""
        return f"inet:{LOCALHOST}:{self.port}"

    def start(self):
        self.n += 1
        self.proc = Proc([REDIS_SERVER, "--port", self.port, "--bind", LOCALHOST,
                          "--save", "", "--appendonly", "no", "--daemonize", "no",
                          "--dir", self.workdir, "--loglevel", "warning"],
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
        r = run([REDIS_CLI, "-h", LOCALHOST, "-p", self.port, "--raw", *args], timeout=10)
        return r.stdout.decode().strip()

    def keys(self, pattern="*") -> list:
        out = self.cli("--scan", "--pattern", pattern)
        return sorted(out.split()) if out else []
