"""Real content filters on loopback: rspamd, clamd, scripted milters, and a
raw socket server standing for a broken filter (see README.md, "Content
filter test beds").

Every server lives in its own fresh directory under /tmp (mode 0755: rspamd
and clamd drop to their own users), listens on a loopback port or a socket
of its own, never reaches the network, and is stopped by stop().
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for, wait_port
from .paths import PYTHON
from .proc import Proc, run

RSPAMD = "/usr/bin/rspamd"
RSPAMC = "/usr/bin/rspamc"
RSPAMD_USER = "_rspamd"
CLAMD = "/usr/sbin/clamd"
CLAMAV_USER = "clamav"

# The GTUBE strings rspamd 3.4 recognises (src/libmime/message.c): the first
# forces "reject", the second "add header".
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_ADD_HEADER = b"YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# A message with this header gets "soft reject" from the private rspamd's
# prefilter (rspamd.local.lua below).
SOFT_REJECT_HEADER = "X-Sluice-Test: soft-reject"
SOFT_REJECT_MESSAGE = "sluice test bed: try again later"

# The EICAR test file (68 bytes) and the name the test database gives it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Sluice.Testbed.EICAR"


def _instance_dir(prefix: str, owner: str = None) -> Path:
    # Outside pytest's 0700 tmp tree: the daemons drop to their own users.
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    if owner and os.geteuid() == 0:
        shutil.chown(d, owner, owner)
    return d


def _chown_tree(root: Path, owner: str):
    if os.geteuid() != 0:
        return
    for dp, dirs, files in os.walk(root):
        shutil.chown(dp, owner, owner)
        for f in files:
            shutil.chown(os.path.join(dp, f), owner, owner)


# ---------------------------------------------------------------- rspamd

# Modules that would reach DNS, HTTP maps or Redis; the machine has no
# network and the tests need none of them.  GTUBE is in rspamd's core.
RSPAMD_DISABLED_MODULES = (
    "antivirus", "arc", "asn", "bimi", "clickhouse", "dcc", "dkim", "dkim_signing", "dmarc",
    "elastic", "emails", "external_services", "fuzzy_check", "greylist", "hfilter",
    "history_redis", "metadata_exporter", "mid", "mime_types", "multimap", "mx_check", "neural",
    "p0f", "phishing", "ratelimit", "rbl", "replies", "reputation", "rspamd_update",
    "spamassassin", "spf", "surbl", "url_redirector", "whitelist",
)

RSPAMD_LOCAL_LUA = """\
-- A deterministic "soft reject" for the test beds: no real rule gives one
-- without Redis (greylisting) or DNS.
rspamd_config:register_symbol({
  name = 'SLUICE_TESTBED_SOFT_REJECT',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local h = task:get_header('X-Sluice-Test')
    if h and h == 'soft-reject' then
      task:set_pre_result('soft reject', '%s')
      return true
    end
    return false
  end,
})
""" % SOFT_REJECT_MESSAGE


class RspamdServer:
    """rspamd 3.4 with Debian's stock configuration (/etc/rspamd) and a
    private LOCAL_CONFDIR, DBDIR, RUNDIR: one normal worker on a loopback
    port, no controller, no proxy, no Redis; DNS goes to a dead loopback
    port, network modules are off, the TLD list is a four-line file (the
    full public-suffix list takes rspamd half a minute to compile);
    milter_headers adds X-Spamd-Result and X-Spam-Status to every reply
    (milter.add_headers), also for local clients."""

    def __init__(self, host: str = LOCALHOST, wait: bool = True):
        # wait=False returns once the process is spawned (call wait_ready()):
        # rspamd's start-up then overlaps another daemon's.
        self.host = host
        self.root = _instance_dir("sluice-rspamd-")
        self.port = free_port(host)
        conf = self.root / "conf"
        for d in ("conf/local.d", "conf/override.d", "db", "run", "log"):
            (self.root / d).mkdir(parents=True)
        (conf / "tld.dat").write_text("test\ncom\norg\nnet\n")
        (conf / "override.d" / "worker-normal.inc").write_text(
            f'bind_socket = "{host}:{self.port}";\ncount = 1;\n')
        (conf / "override.d" / "worker-controller.inc").write_text("enabled = false;\n")
        # rspamd's own milter (the proxy worker scanning in-process): a milter
        # that is not libmilter and asks for every no-reply flag.
        self.milter_port = free_port(host)
        (conf / "override.d" / "worker-proxy.inc").write_text(
            f'bind_socket = "{host}:{self.milter_port}";\nmilter = yes;\ntimeout = 120s;\n'
            'count = 1;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n')
        (conf / "override.d" / "logging.inc").write_text('type = "console";\nlevel = "info";\n')
        (conf / "local.d" / "options.inc").write_text(
            'dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }\n'
            "disable_hyperscan = true;\n"
            f'url_tld = "{conf}/tld.dat";\n')
        for m in RSPAMD_DISABLED_MODULES:
            (conf / "override.d" / f"{m}.conf").write_text("enabled = false;\n")
        (conf / "local.d" / "milter_headers.conf").write_text(
            'use = ["x-spamd-result", "x-rspamd-queue-id", "x-spam-status"];\n'
            "skip_local = false;\nskip_authenticated = false;\n")
        (conf / "rspamd.local.lua").write_text(RSPAMD_LOCAL_LUA)
        _chown_tree(self.root, RSPAMD_USER)
        argv = [RSPAMD, "-f", "-c", "/etc/rspamd/rspamd.conf",
                f"--var=LOCAL_CONFDIR={conf}", f"--var=DBDIR={self.root}/db",
                f"--var=RUNDIR={self.root}/run", f"--var=LOGDIR={self.root}/log"]
        if os.geteuid() == 0:
            argv += ["-u", RSPAMD_USER, "-g", RSPAMD_USER]
        self.proc = Proc(argv, self.root / "log", "rspamd")
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60):
        try:
            wait_port(self.host, self.port, timeout=timeout, proc=self.proc.popen)
            wait_port(self.host, self.milter_port, timeout=timeout, proc=self.proc.popen)
        except Exception:
            log = self.log()
            self.stop()
            raise RuntimeError(f"rspamd did not start: {log[-3000:]}")

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def filter_address(self) -> str:
        return f"inet:{self.host}:{self.port}"

    @property
    def milter_address(self) -> str:
        """rspamd's milter (proxy worker, self_scan), as sluiced and Postfix write it."""
        return f"inet:{self.host}:{self.milter_port}"

    def log(self) -> str:
        return self.proc.stdout_path.read_text(errors="replace") + self.proc.stderr()

    def checkv2(self, message: bytes, headers=None, timeout: float = 20) -> dict:
        """POST /checkv2 as an MTA would; returns the JSON reply."""
        req = urllib.request.Request(f"http://{self.host}:{self.port}/checkv2", data=message,
                                     headers=dict(headers or {}), method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def rspamc(self, path, timeout: float = 30):
        """rspamc (rspamd's own client) on a message file; CompletedProcess."""
        return run([RSPAMC, "-h", f"{self.host}:{self.port}", "-t", "20", path], timeout=timeout)

    def stop(self):
        if getattr(self, "proc", None) is not None:
            self.proc.stop(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- clamd

CLAMD_CONF = """\
Foreground yes
LocalSocket {socket}
LocalSocketMode 666
FixStaleSocket yes
TCPSocket {port}
TCPAddr {host}
DatabaseDirectory {db}
PidFile {root}/clamd.pid
LogFile {root}/clamd.log
LogTime yes
LogVerbose yes
LogClean yes
TemporaryDirectory {root}/tmp
User {user}
ScanMail yes
SelfCheck 0
Bytecode no
OfficialDatabaseOnly no
StreamMaxLength {stream_max}
ExtendedDetectionInfo no
"""


class ClamdServer:
    """clamd (ClamAV 1.4) with a signature database written here: an .ndb
    body signature for the EICAR string (any file type, any offset), so the
    virus is found in a mail body whatever its encoding of line ends; no
    freshclam, no official database.  Listens on a unix socket (.socket)
    and a loopback TCP port; StreamMaxLength is small enough to test the
    size limit."""

    def __init__(self, host: str = LOCALHOST, stream_max: str = "1M"):
        self.host = host
        user = CLAMAV_USER if os.geteuid() == 0 else None
        self.root = _instance_dir("sluice-clamd-", user)
        self.db = self.root / "db"
        self.db.mkdir()
        (self.root / "tmp").mkdir()
        (self.db / "sluice-testbed.ndb").write_text(f"{EICAR_SIGNATURE}:0:*:{EICAR.hex()}\n")
        self.socket = self.root / "clamd.sock"
        self.port = free_port(host)
        conf = CLAMD_CONF.format(socket=self.socket, port=self.port, host=host, db=self.db,
                                 root=self.root, user=user or os.environ.get("USER", "root"),
                                 stream_max=stream_max)
        if user is None:
            conf = "\n".join(l for l in conf.splitlines() if not l.startswith("User ")) + "\n"
        self.conf = self.root / "clamd.conf"
        self.conf.write_text(conf)
        if user:
            _chown_tree(self.root, user)
        self.proc = Proc([CLAMD, "-c", self.conf], self.root / "out", "clamd")
        try:
            wait_port(host, self.port, timeout=60, proc=self.proc.popen)
            wait_for(self.socket.exists, 10, what="clamd unix socket")
        except Exception:
            self.stop()
            raise RuntimeError(f"clamd did not start: {self.log()[-3000:]}")

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def filter_address(self) -> str:
        return f"unix:{self.socket}"

    @property
    def tcp_filter_address(self) -> str:
        return f"inet:{self.host}:{self.port}"

    def log(self) -> str:
        try:
            text = (self.root / "clamd.log").read_text(errors="replace")
        except OSError:
            text = ""
        return text + self.proc.stderr()

    def clean_scans(self) -> int:
        """Streams clamd logged as clean (LogClean): "instream(...): OK"."""
        return len(re.findall(r"instream\([^)]*\): OK", self.log()))

    def instream(self, data: bytes, chunk: int = 4096, timeout: float = 20) -> str:
        """The INSTREAM exchange, done here with a plain socket; returns
        clamd's reply line ("stream: OK", "stream: NAME FOUND", ...)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(b"zINSTREAM\0")
            for i in range(0, len(data), chunk):
                part = data[i:i + chunk]
                s.sendall(struct.pack(">I", len(part)) + part)
            s.sendall(struct.pack(">I", 0))
            reply = b""
            while not reply.endswith(b"\0"):
                c = s.recv(4096)
                if not c:
                    break
                reply += c
        return reply.rstrip(b"\0").decode(errors="replace")

    def stop(self):
        if getattr(self, "proc", None) is not None:
            self.proc.stop(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- milters

MILTER_SCRIPT = Path(__file__).resolve().parent / "milter_script.py"
MILTER_MODES = ("accept", "reject", "addheader", "tempfail", "hang", "rcptreject", "stamp",
                "bodyhang")


class MilterServer:
    """A scripted python3-milter filter (lib/milter_script.py) on a loopback
    port.  seen() lists "<mode> <verdict> <sender>" lines, one per message
    the milter decided on."""

    def __init__(self, mode: str, host: str = LOCALHOST):
        assert mode in MILTER_MODES, mode
        self.mode = mode
        self.host = host
        # Postfix's smtpd (user postfix) and sluiced both connect: TCP, not a
        # socket file in a private directory.
        self.root = _instance_dir(f"sluice-milter-{mode}-")
        self.port = free_port(host)
        self.logfile = self.root / "seen.log"
        self.logfile.touch()
        self.proc = Proc([PYTHON, MILTER_SCRIPT, mode, f"inet:{self.port}@{host}", self.logfile],
                         self.root, "milter")
        try:
            wait_port(host, self.port, timeout=20, proc=self.proc.popen)
        except Exception:
            self.stop()
            raise RuntimeError(f"milter {mode} did not start: {self.proc.stderr()[-3000:]}")

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def filter_address(self) -> str:
        return f"inet:{self.host}:{self.port}"

    @property
    def postfix_address(self) -> str:
        return f"inet:{self.host}:{self.port}"

    def seen(self) -> list:
        try:
            return self.logfile.read_text().splitlines()
        except OSError:
            return []

    def stamps(self) -> list:
        """The stamp mode's (event, unix time, bytes) tuples, in order."""
        try:
            text = (self.root / "seen.log.stamps").read_text()
        except OSError:
            return []
        return [(e, float(t), int(n)) for e, t, n in (l.split() for l in text.splitlines())]

    def stop(self):
        if getattr(self, "proc", None) is not None:
            # libmilter waits for its callback threads on SIGTERM; the hang
            # mode's thread sleeps for an hour.
            self.proc.stop(signal.SIGKILL, timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- broken filters

class BrokenFilter:
    """A loopback TCP server standing for a filter that misbehaves:
      "garbage": reads what comes, answers bytes no filter protocol accepts
                 (for milter: a packet length of 0xffffffff; for HTTP/clamd:
                 binary noise), then closes;
      "silent":  accepts and reads, never answers (a hung filter);
      "close":   accepts and closes at once.
    connections counts the accepted connections; open_connections() those
    the peer has not closed yet (a leak check from the filter's side)."""

    GARBAGE = b"\xff\xff\xff\xff\x00garbage\r\n\x00\x01\x02 HTTP/9.9 ???\r\n\r\n"

    def __init__(self, behaviour: str, host: str = LOCALHOST):
        assert behaviour in ("garbage", "silent", "close"), behaviour
        self.behaviour = behaviour
        self.host = host
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.closed = 0
        self._conns = []
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def filter_address(self) -> str:
        return f"inet:{self.host}:{self.port}"

    postfix_address = filter_address

    def seen(self) -> list:
        """One entry per connection, as MilterServer.seen() has one per message."""
        return [f"{self.behaviour} connection"] * self.connections

    def _serve(self):
        while not self._stopping:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(c)
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c):
        try:
            if self.behaviour == "close":
                return
            c.settimeout(0.5)
            deadline = time.monotonic() + 120
            answered = False
            while time.monotonic() < deadline and not self._stopping:
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                if self.behaviour == "garbage" and not answered:
                    c.sendall(self.GARBAGE)
                    answered = True
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed += 1
            c.close()

    def open_connections(self) -> int:
        """Connections the peer has not closed yet (seen within half a second)."""
        with self._lock:
            return self.connections - self.closed

    def stop(self):
        self._stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass


def dead_filter_address(host: str = LOCALHOST) -> str:
    """inet:HOST:PORT where nothing listens (a filter that is down)."""
    return f"inet:{host}:{free_port(host)}"


# ---------------------------------------------------------------- pytest fixtures
# Imported by the test_filters_*.py files (``from lib.filters import ...``);
# session-scoped where the daemon is slow to start (rspamd ~3-10 s, Postfix
# ~3-10 s on a loaded machine), so each starts once per pytest run.

import pytest  # noqa: E402

from .postfix import PostfixInstance  # noqa: E402

# The milters the differential tests put behind Postfix and behind sluice
# ("garbage" is a BrokenFilter, not a milter).
DIFFERENTIAL_MODES = ("accept", "reject", "addheader", "tempfail", "hang", "garbage",
                      "rcptreject")
# Postfix's wait for a hung milter, the same as the sluiced configurations
# of the tests give filter_timeout.
MILTER_TIMEOUT_S = 2


def _require_root(what):
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (rspamd, clamd and Postfix drop to their own users)")


@pytest.fixture(scope="session")
def _rspamd_spawned():
    """rspamd spawned, not yet waited for: filter_postfix asks for it so that
    rspamd's start-up (3-10 s) overlaps Postfix's."""
    if os.geteuid() != 0:
        yield None
        return
    r = RspamdServer(wait=False)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def rspamd_server(_rspamd_spawned):
    """A private rspamd (RspamdServer), checked with rspamd's own client:
    rspamc must see GTUBE as "reject" before any test relies on it."""
    _require_root("rspamd_server")
    r = _rspamd_spawned
    r.wait_ready()
    try:
        path = r.root / "gtube.eml"
        path.write_bytes(b"From: selftest@example.test\r\nTo: rcpt@example.test\r\n"
                         b"Subject: GTUBE self-test\r\n\r\n" + GTUBE + b"\r\n")
        out = r.rspamc(path)
        text = out.stdout.decode(errors="replace")
        if out.returncode != 0 or "Action: reject" not in text or "GTUBE" not in text:
            raise RuntimeError(f"rspamd self-test failed (rc {out.returncode}):\n{text}\n"
                               f"{out.stderr.decode(errors='replace')}\n{r.log()[-3000:]}")
    except Exception:
        r.stop()
        raise
    yield r


@pytest.fixture(scope="session")
def clamd_server():
    """A private clamd (ClamdServer) with the test EICAR signature, checked
    with an INSTREAM of EICAR (found) and of a clean text (OK)."""
    _require_root("clamd_server")
    c = ClamdServer()
    try:
        found = c.instream(b"Subject: self-test\r\n\r\n" + EICAR + b"\r\n")
        clean = c.instream(b"Subject: self-test\r\n\r\nnothing to see\r\n")
        if EICAR_SIGNATURE not in found or "FOUND" not in found or clean != "stream: OK":
            raise RuntimeError(f"clamd self-test failed: {found!r} / {clean!r}\n{c.log()[-3000:]}")
    except Exception:
        c.stop()
        raise
    yield c
    c.stop()


@pytest.fixture(scope="session")
def milters():
    """{mode: MilterServer} for every mode of DIFFERENTIAL_MODES, and
    "garbage": a BrokenFilter answering garbage to the first packet."""
    started = {}
    try:
        for mode in DIFFERENTIAL_MODES:
            started[mode] = BrokenFilter(mode) if mode == "garbage" else MilterServer(mode)
    except Exception:
        for m in started.values():
            m.stop()
        raise
    yield started
    for m in started.values():
        m.stop()


@pytest.fixture(scope="session")
def filter_postfix(milters, _rspamd_spawned):
    """One private Postfix for every filter test (one start instead of one
    per test): its main listener (.address) has no milter and is the
    receiver behind sluiced; each extra listener "milter-MODE"
    (lib.postfix.service(pf, "milter-MODE")) runs the milter of that mode
    (smtpd_milters, milter_default_action = tempfail, content timeout
    MILTER_TIMEOUT_S), and "milter-rspamd" runs rspamd's own milter: the
    reference side of the differential tests.
    Tests tell their messages apart by the queue ids new since their start."""
    _require_root("filter_postfix")
    extra = {f"milter-{mode}": {"smtpd_milters": m.postfix_address,
                                "milter_default_action": "tempfail",
                                "milter_protocol": "6",
                                "milter_connect_timeout": f"{MILTER_TIMEOUT_S}s",
                                "milter_command_timeout": f"{MILTER_TIMEOUT_S}s",
                                "milter_content_timeout": f"{MILTER_TIMEOUT_S}s"}
             for mode, m in milters.items()}
    if _rspamd_spawned is not None:
        extra["milter-rspamd"] = {"smtpd_milters": _rspamd_spawned.milter_address,
                                  "milter_default_action": "tempfail",
                                  "milter_protocol": "6"}
    pf = PostfixInstance(hostname="filter-receiver.test", extra_smtpd=extra)
    yield pf
    pf.stop()


class RawMilter(BrokenFilter):
    """A hand-written milter (the MTA-facing half of milter v6, in the test
    process): negotiates version 6 with no actions and no protocol flags
    (so every event is sent and answered), continues every event, and at
    end of body answers SMFIR_REPLYCODE with `reply` as given, bytes
    libmilter would refuse included (CR/LF: a reply-injection attempt)."""

    def __init__(self, reply: bytes, host: str = LOCALHOST):
        self.reply = reply
        self.events = []
        super().__init__("silent", host)

    @staticmethod
    def _packet(cmd: bytes, data: bytes = b"") -> bytes:
        return struct.pack(">I", len(data) + 1) + cmd + data

    def _handle(self, c):
        buf = b""
        try:
            c.settimeout(0.5)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not self._stopping:
                try:
                    d = c.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                buf += d
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                    n = struct.unpack(">I", buf[:4])[0]
                    cmd, data, buf = buf[4:5], buf[5:4 + n], buf[4 + n:]
                    with self._lock:
                        self.events.append(cmd.decode(errors="replace"))
                    if cmd == b"O":
                        c.sendall(self._packet(b"O", struct.pack(">III", 6, 0, 0)))
                    elif cmd == b"E":
                        c.sendall(self._packet(b"y", self.reply + b"\0"))
                    elif cmd not in (b"D", b"A", b"Q"):
                        c.sendall(self._packet(b"c"))
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed += 1
            c.close()
