"""A private Exim (Debian's exim4-daemon-light, unpacked, not installed) on a loopback port.

exim4-daemon-light conflicts with postfix as a package, so tools/install-deps.sh
unpacks it under RECEIVERS_ROOT (/opt/sluice-test-receivers) with dpkg-deb -x
(../shared/RECEIVERS.md).  Each instance has its own exim.conf, spool and log
in a fresh /tmp/sluice-exim-* directory owned by Debian-exim (Exim's
compiled-in user), runs in the foreground (`exim4 -C exim.conf -bdf -oX PORT`)
and keeps every accepted message in its spool (`queue_only`; nothing is ever
delivered: the unpacked binary could not re-exec /usr/sbin/exim4 anyway).

The ACLs accept everything from anyone, except the recipient
reject-me@example.test (550), and write one mainlog line per MAIL, RCPT and
DATA/first BDAT they see (`SLUICE-TB MAIL <sender>` ...): that is how a test
counts the transactions Exim opened, whether or not they ended in the queue.
"""
import grp
import os
import pwd
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for, wait_port
from .proc import Proc
from .receiver import (RECEIVERS_ROOT, ReceivedMessage, count_lines, file_size, read_from,
                       strip_own_received)

EXIM = RECEIVERS_ROOT / "usr/sbin/exim4"
EXIM_USER = "Debian-exim"

EXIM_CONF = """\
exim_path = {exim}
keep_environment =
primary_hostname = {hostname}
qualify_domain = {hostname}
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
log_selector = +all -arguments
local_interfaces = {host}
queue_only = true
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
pipelining_connect_advertise_hosts =
chunking_advertise_hosts = *
pipelining_advertise_hosts = *
smtputf8_advertise_hosts = *
dsn_advertise_hosts = *
accept_8bitmime = true
message_size_limit = 50M
recipients_max = 0
smtp_accept_max = 200
smtp_accept_max_per_host = 0
smtp_accept_queue_per_connection = 0
smtp_accept_max_per_connection = 10000
smtp_max_unknown_commands = 1000
smtp_max_synprot_errors = 1000
smtp_receive_timeout = 30s
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_predata = acl_predata
acl_smtp_data = acl_data
{extra}
begin acl
acl_mail:
  accept logwrite = SLUICE-TB MAIL <$sender_address>
acl_rcpt:
  deny    condition = ${{if eq{{$local_part@$domain}}{{reject-me@example.test}}}}
          logwrite = SLUICE-TB RCPT-REJECTED <$local_part@$domain>
          message = reject-me is refused by this test receiver
  accept  logwrite = SLUICE-TB RCPT <$local_part@$domain>
acl_predata:
  accept logwrite = SLUICE-TB DATA
acl_data:
  accept
begin routers
begin transports
"""


class EximInstance:
    """A started Exim; see the module docstring.

    extra: more main-section lines for exim.conf (text), e.g.
    "chunking_advertise_hosts =" to turn CHUNKING off.
    """

    name = "exim"

    def __init__(self, host: str = LOCALHOST, port: int = 0, extra: str = "",
                 hostname: str = "exim-upstream.test"):
        if not EXIM.exists():
            raise FileNotFoundError(f"{EXIM} missing: run tools/install-deps.sh")
        self.host = host
        self.hostname = hostname
        self.root = Path(tempfile.mkdtemp(prefix="sluice-exim-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.spool = self.root / "spool"
        self.logdir = self.root / "log"
        self.mainlog = self.logdir / "mainlog"
        uid, gid = pwd.getpwnam(EXIM_USER).pw_uid, grp.getgrnam(EXIM_USER).gr_gid
        for d in (self.spool, self.logdir, self.spool / "input"):
            d.mkdir(mode=0o750, exist_ok=True)
            os.chown(d, uid, gid)
        self.port = port or free_port(host)
        self.conf = self.root / "exim.conf"
        self.conf.write_text(EXIM_CONF.format(exim=EXIM, hostname=hostname, root=self.root,
                                              host=host, extra=extra))
        self.proc = None
        self.kept_log = ""
        try:
            self.proc = Proc([EXIM, "-C", self.conf, "-bdf", "-oX", str(self.port)],
                             self.root / "out", "exim")
            wait_port(host, self.port, timeout=15, proc=self.proc.popen)
            wait_for(lambda: "daemon started" in self.log_text(), 10, what="exim daemon started")
            self.wait_idle()
        except Exception:
            err = self.proc.stderr() if self.proc else ""
            self.stop()
            raise RuntimeError(f"exim did not start: {err}\n{self.kept_log}")

    @property
    def address(self):
        return (self.host, self.port)

    # ------------------------------------------------------------------ log
    def log_text(self) -> str:
        try:
            return self.mainlog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        return file_size(self.mainlog)

    def log_since(self, mark: int) -> str:
        return read_from(self.mainlog, mark)

    @staticmethod
    def mail_commands(text: str) -> int:
        return count_lines(r"SLUICE-TB MAIL <", text)

    def _children(self):
        """Live (non-zombie) processes whose parent is the daemon: one per SMTP session."""
        out = []
        if not self.proc or not self.proc.alive():
            return out
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            rest = stat[stat.rfind(")") + 2:].split()
            if int(rest[1]) == self.proc.pid and rest[0] != "Z":
                out.append(int(p.name))
        return out

    def wait_idle(self, timeout: float = 15.0):
        """Waits until no connection is open and no session process of the daemon is left."""
        from .receiver import wait_connections_closed
        wait_connections_closed([self.port], timeout)
        wait_for(lambda: not self._children(), timeout, interval=0.02, what="exim sessions ended")

    # ------------------------------------------------------------------ queue
    def message_ids(self) -> list:
        inp = self.spool / "input"
        hs = [p for p in inp.glob("*-H")]
        hs.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.name[:-2] for p in hs if (inp / (p.name[:-2] + "-D")).exists()]

    def message(self, mid: str) -> ReceivedMessage:
        inp = self.spool / "input"
        h = (inp / f"{mid}-H").read_bytes()
        d = (inp / f"{mid}-D").read_bytes()
        return parse_spool(mid, h, d, self.hostname)

    def messages(self) -> list:
        return [self.message(m) for m in self.message_ids()]

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=5)
            # A session child that outlived the daemon (it never should).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc = None
        self.kept_log = self.log_text()
        shutil.rmtree(self.root, ignore_errors=True)


def parse_spool(mid: str, h: bytes, d: bytes, hostname: str) -> ReceivedMessage:
    """Exim's -H (envelope and headers) and -D (body) spool files as one message.

    -H: id line, "user uid gid", "<sender>", "time delay", "-option" lines,
    optional non-recipients tree ("XX"), the recipient count, one recipient
    per line, a blank line, then the headers, each as "NNNc text" (NNN its
    length, c a flag; "*" = deleted).  -D: id line, then the body.
    """
    lines = h.split(b"\n")
    sender = lines[2].decode(errors="replace").strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    i = 4
    options = {}
    while i < len(lines) and lines[i].startswith(b"-"):
        k, _, v = lines[i].lstrip(b"-").decode(errors="replace").partition(" ")
        options[k] = v
        i += 1
    # non-recipients tree: lines made of "XX" / "NN" / "YN" markers and addresses
    while i < len(lines) and not lines[i].strip().isdigit():
        i += 1
    n = int(lines[i])
    rcpt_lines = [l.decode(errors="replace") for l in lines[i + 1:i + 1 + n]]
    rcpts = [l.split(" ")[0] for l in rcpt_lines]
    # headers start after the blank line that follows the recipients
    off = 0
    for _ in range(i + 1 + n + 1):
        off = h.index(b"\n", off) + 1
    headers = b""
    pos = off
    while pos < len(h):
        m = re.match(rb"(\d+)(.) ", h[pos:pos + 12])
        if not m:
            break
        length = int(m[1])
        start = pos + len(m[0])
        text = h[start:start + length]
        if m[2] != b"*":
            headers += text
        pos = start + length
    body = d[d.index(b"\n") + 1:]
    stored = headers + b"\n" + body
    return ReceivedMessage(mid, sender, rcpts, strip_own_received(stored, hostname), stored,
                           {"options": options, "rcpt_lines": rcpt_lines})
