"""Debian's postgrey (the Postfix greylisting policy server) on a loopback
port, with its own database directory and short timers."""
import shutil
import signal
import tempfile
from pathlib import Path

from .net import LOCALHOST, free_port, wait_port
from .proc import Proc

POSTGREY = "/usr/sbin/postgrey"


class Postgrey:
    def __init__(self, workdir: Path, delay: int = 2):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # postgrey drops to its own user, who cannot enter pytest's private
        # tmp_path: its database lives in a directory of its own in /tmp
        self.db = Path(tempfile.mkdtemp(prefix="sluice-postgrey-"))
        self.db.chmod(0o777)
        self.port = free_port()
        empty = self.workdir / "empty"
        empty.write_text("")
        self.proc = Proc([POSTGREY, f"--inet={LOCALHOST}:{self.port}", f"--dbdir={self.db}",
                          f"--delay={delay}", f"--whitelist-clients={empty}",
                          f"--whitelist-recipients={empty}", "--auto-whitelist-clients=0",
                          "-v"], self.workdir / "logs", "postgrey")
        wait_port(LOCALHOST, self.port, timeout=20, proc=self.proc.popen)

    @property
    def address(self) -> str:
        """The value of sluiced's policy_service key."""
        return f"inet:{LOCALHOST}:{self.port}"

    def log(self) -> str:
        """Its log (to stderr or stdout, as Net::Server decides)."""
        try:
            out = self.proc.stdout_path.read_text(errors="replace")
        except OSError:
            out = ""
        return self.proc.stderr() + out

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM)
            self.proc = None
        shutil.rmtree(self.db, ignore_errors=True)
