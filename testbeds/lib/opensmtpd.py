"""A private OpenSMTPD (Debian's opensmtpd 6.8, unpacked, not installed) on a loopback port.

opensmtpd conflicts with postfix as a package, so tools/install-deps.sh
unpacks it under RECEIVERS_ROOT with dpkg-deb -x and creates the users
Debian's build was compiled for: `opensmtpd` and `opensmtpq` (not the
upstream `_smtpd`/`_smtpq`).

OpenSMTPD has its paths compiled in: the queue /var/spool/smtpd (must be
0711, root), the control socket /run/smtpd.sock and the privsep chroot
/var/lib/opensmtpd/empty.  Each instance therefore runs in its own mount
namespace (`unshare -m`), where a fresh /tmp/sluice-opensmtpd-*/spool is bound
on /var/spool/smtpd and a private directory on /run; several instances run
side by side and nothing of the host's /run or spool is touched.  The
directories /var/spool/smtpd and /var/lib/opensmtpd/empty are created empty
on the host as mount points.

smtpd runs in the foreground (`smtpd -d -T smtp`): its stderr is the log,
including the trace of every SMTP command it read (`smtp: 0x...: <<< MAIL
FROM:...`), which is how a test counts the transactions it opened.  Every
message is relayed to 127.0.0.1:9, which refuses, so it stays in the queue
(queue/<bucket>/<msgid>/message and one envelope file per recipient) where
the test reads it.  The recipient reject-me@example.test is refused (550).
"""
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for, wait_port
from .proc import Proc
from .receiver import (RECEIVERS_ROOT, LineCounter, ReceivedMessage, count_lines, file_size,
                       read_from, strip_own_received)

SMTPD = RECEIVERS_ROOT / "usr/sbin/smtpd"

SMTPD_CONF = """\
table rejects {{ "reject-me@example.test" }}
listen on {host} port {port} hostname {hostname}
action "hold" relay host smtp://127.0.0.1:9
match from any for rcpt-to <rejects> reject
match from any for any action "hold"
"""

RUN_SH = """\
set -e
mount --make-rprivate /
mount --bind {root}/spool /var/spool/smtpd
mount --bind {root}/run /run
exec {smtpd} -d -T smtp -f {root}/smtpd.conf
"""


class OpenSMTPDInstance:
    """A started OpenSMTPD; see the module docstring."""

    name = "opensmtpd"

    def __init__(self, host: str = LOCALHOST, port: int = 0,
                 hostname: str = "opensmtpd-upstream.test", conf: str = SMTPD_CONF):
        if not SMTPD.exists():
            raise FileNotFoundError(f"{SMTPD} missing: run tools/install-deps.sh")
        self.host = host
        self.hostname = hostname
        self.root = Path(tempfile.mkdtemp(prefix="sluice-opensmtpd-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        (self.root / "spool").mkdir(mode=0o711)
        os.chmod(self.root / "spool", 0o711)
        (self.root / "run").mkdir(mode=0o755)
        for mp in ("/var/spool/smtpd", "/var/lib/opensmtpd/empty"):
            Path(mp).mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(host)
        (self.root / "smtpd.conf").write_text(conf.format(host=host, port=self.port,
                                                          hostname=hostname))
        (self.root / "run.sh").write_text(RUN_SH.format(root=self.root, smtpd=SMTPD))
        self.proc = None
        self.kept_log = ""
        try:
            self.proc = Proc(["unshare", "-m", "sh", self.root / "run.sh"], self.root / "out",
                             "smtpd")
            wait_port(host, self.port, timeout=15, proc=self.proc.popen)
            self.wait_idle()
        except Exception:
            log = self.log_text()
            self.stop()
            raise RuntimeError(f"opensmtpd did not start: {log[-3000:]}")

    @property
    def address(self):
        return (self.host, self.port)

    # ------------------------------------------------------------------ log
    def log_text(self) -> str:
        return self.proc.stderr() if self.proc else self.kept_log

    def log_mark(self) -> int:
        return file_size(self.proc.stderr_path)

    def log_since(self, mark: int) -> str:
        return read_from(self.proc.stderr_path, mark)

    @staticmethod
    def mail_commands(text: str) -> int:
        # Command lines only: message content is traced as "<<< [MSG] ...".
        return count_lines(r"^smtp: 0x[0-9a-f]+: <<< (?i:mail from)", text)

    def wait_idle(self, timeout: float = 15.0):
        from .receiver import wait_connections_closed
        wait_connections_closed([self.port], timeout)

        if getattr(self, "_idle_counter", None) is None:
            self._idle_counter = LineCounter(self.proc.stderr_path, conn=r" smtp connected ",
                                             disc=r" smtp disconnected ")
        c = self._idle_counter

        def idle():
            c.update()
            return c.counts["conn"] <= c.counts["disc"]
        wait_for(idle, timeout, interval=0.02, what="opensmtpd sessions ended")

    # ------------------------------------------------------------------ queue
    def _dirs(self):
        q = self.root / "spool" / "queue"
        if not q.exists():
            return []
        dirs = [d for b in q.iterdir() for d in b.iterdir() if (d / "message").exists()]
        dirs.sort(key=lambda d: ((d / "message").stat().st_mtime_ns, d.name))
        return dirs

    def message_ids(self) -> list:
        return [d.name for d in self._dirs()]

    def message(self, mid: str) -> ReceivedMessage:
        return [m for m in self.messages() if m.id == mid][0]

    def messages(self) -> list:
        out = []
        for d in self._dirs():
            envs = []
            for f in sorted(d.iterdir()):
                if f.name == "message" or not re.fullmatch(r"[0-9a-f]{16}", f.name):
                    continue
                env = {}
                for line in f.read_text(errors="replace").splitlines():
                    k, _, v = line.partition(": ")
                    env[k] = v
                envs.append(env)
            stored = (d / "message").read_bytes()
            sender = envs[0].get("sender", "") if envs else ""
            out.append(ReceivedMessage(d.name, sender, [e.get("rcpt", "") for e in envs],
                                       strip_own_received(stored, self.hostname), stored,
                                       {"envelopes": envs}))
        return out

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=5)
            self.kept_log = self.proc.stderr()
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
