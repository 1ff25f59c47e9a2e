"""Postfix's own smtp-sink(1) as a second, independent test upstream."""
import os
import shutil
import signal
import tempfile
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for, wait_port
from .postfix import smtp_sink_binary
from .proc import Proc


class PostfixSmtpSink:
    """smtp-sink on a loopback port; with dump=True each transaction is kept.

    smtp-sink must drop privileges when started as root (-u), so its dump
    directory lives under /tmp with mode 0777 rather than in pytest's 0700
    tmp dir.  extra_args go straight to smtp-sink (e.g. ["-q", "DATA"]).
    """

    def __init__(self, workdir: Path, host: str = LOCALHOST, dump: bool = True,
                 extra_args=(), hostname: str = "pf-smtp-sink.test", backlog: int = 256):
        self.workdir = Path(workdir)
        self.host = host
        self.port = free_port(host)
        self.dump_dir = None
        argv = [smtp_sink_binary(), "-c", "-h", hostname, "-t", "30"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        if dump:
            self.dump_dir = Path(tempfile.mkdtemp(prefix="sluice-smtp-sink-", dir="/tmp"))
            os.chmod(self.dump_dir, 0o777)
            argv += ["-d", f"{self.dump_dir}/msg."]
        argv += list(extra_args)
        listen = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        argv += [listen, str(backlog)]
        self.proc = Proc(argv, self.workdir / "logs", "smtp-sink")
        try:
            wait_port(host, self.port, timeout=10, proc=self.proc.popen)
        except Exception:
            self.stop()
            raise

    @property
    def address(self):
        return (self.host, self.port)

    def dumps(self):
        """The dump files' contents (smtp-sink's dump format: envelope records then message)."""
        if self.dump_dir is None:
            return []
        return [p.read_bytes() for p in sorted(self.dump_dir.glob("msg.*"))]

    def wait_dumps(self, n: int, timeout: float = 10.0):
        wait_for(lambda: len(self.dumps()) >= n, timeout, what=f"{n} smtp-sink dumps")
        return self.dumps()

    def stop(self):
        self.proc.stop(signal.SIGTERM, timeout=5)
        if self.dump_dir is not None:
            shutil.rmtree(self.dump_dir, ignore_errors=True)
