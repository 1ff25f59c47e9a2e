"""sluice-sink, the project's own SMTP sink, as a test upstream."""
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path

from .net import LOCALHOST, wait_for, wait_port
from .paths import project_binary
from .proc import Proc


@dataclass
class Envelope:
    """What sluice-sink recorded beside a message (DIR/<n>.env)."""
    peer: str = ""
    proxy: str = ""          # e.g. "v1 TCP4 192.0.2.7:1234 127.0.0.1:25"
    xclient: dict = field(default_factory=dict)  # {"ADDR": "192.0.2.7", ...}
    helo: str = ""           # the whole command, e.g. "EHLO client.test"
    mail_from: str = ""      # with brackets, e.g. "<a@b.test>"
    mail_params: str = ""
    rcpts: list = field(default_factory=list)        # ["<x@y.test>", ...]
    rcpt_params: list = field(default_factory=list)
    transfer: str = ""       # "DATA" or "BDAT"
    size: int = 0
    raw: str = ""


@dataclass
class Message:
    id: int
    data: bytes              # exactly the bytes received, after dot-unstuffing
    envelope: Envelope


def parse_env(text: str) -> Envelope:
    env = Envelope(raw=text)
    for line in text.splitlines():
        key, _, val = line.partition(": ")
        if key == "peer":
            env.peer = val
        elif key == "proxy":
            env.proxy = val
        elif key == "xclient":
            for tok in val.split():
                k, _, v = tok.partition("=")
                env.xclient[k.upper()] = v
        elif key == "helo":
            env.helo = val
        elif key == "mail":
            env.mail_from, _, env.mail_params = val.partition(" ")
        elif key == "rcpt":
            addr, _, params = val.partition(" ")
            env.rcpts.append(addr)
            env.rcpt_params.append(params)
        elif key == "transfer":
            env.transfer = val
        elif key == "size":
            env.size = int(val)
    return env


class Sink:
    """A running sluice-sink on a kernel-chosen loopback port.

    Options map to the command line: reject_rcpt=["bad"] -> --reject-rcpt bad,
    delay_ms=200 -> --delay-ms 200, stall=True -> --stall, and so on.
    """

    def __init__(self, workdir: Path, host: str = LOCALHOST, count_only: bool = False,
                 stats: bool = True, **opts):
        self.workdir = Path(workdir)
        self.host = host
        self.maildir = None if count_only else self.workdir / "maildir"
        argv = [project_binary("sluice-sink"), "--listen",
                f"[{host}]:0" if ":" in host else f"{host}:0", "--print-port"]
        if self.maildir is not None:
            argv += ["--maildir", self.maildir]
        else:
            argv.append("--count-only")
        if stats:
            argv.append("--stats")
        for k, v in opts.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                argv.append(flag)
            elif v is False or v is None:
                continue
            elif isinstance(v, (list, tuple)):
                for item in v:
                    argv += [flag, str(item)]
            else:
                argv += [flag, str(v)]
        self.argv = argv
        self.proc = Proc(argv, self.workdir / "logs", "sluice-sink", stdout_pipe=True)
        try:
            self.port = int(self.proc.read_line(timeout=10))
            wait_port(host, self.port, timeout=10, proc=self.proc.popen)
        except Exception:
            self.proc.stop(signal.SIGKILL)
            raise
        self.stats = None

    @property
    def address(self):
        return (self.host, self.port)

    def message_ids(self):
        if self.maildir is None or not self.maildir.exists():
            return []
        # <n>.eml only: the sink writes .tmp.<n>.eml first and renames it
        return sorted(int(p.stem) for p in self.maildir.glob("*.eml")
                      if p.stem.isdigit())

    def message(self, mid: int) -> Message:
        data = (self.maildir / f"{mid}.eml").read_bytes()
        env = parse_env((self.maildir / f"{mid}.env").read_text(encoding="utf-8", errors="surrogateescape"))
        return Message(mid, data, env)

    def messages(self):
        """Every message accepted so far, oldest first."""
        return [self.message(i) for i in self.message_ids()]

    def wait_messages(self, n: int, timeout: float = 10.0):
        """Waits until at least n messages were accepted; returns them all."""
        wait_for(lambda: len(self.message_ids()) >= n, timeout, what=f"{n} messages in sink")
        return self.messages()

    def stop(self) -> dict:
        """Stops the sink (SIGTERM) and returns its counters."""
        if self.stats is not None:
            return self.stats
        rc = self.proc.stop(signal.SIGTERM, timeout=10)
        out = self.proc.remaining_stdout()
        m = re.search(r"stats sessions=(\d+) messages=(\d+) bytes=(\d+) rejected=(\d+)", out)
        self.stats = {"rc": rc, "stdout": out}
        if m:
            self.stats.update(sessions=int(m[1]), messages=int(m[2]), bytes=int(m[3]),
                              rejected=int(m[4]))
        return self.stats
