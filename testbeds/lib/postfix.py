"""A private Postfix instance: its own config, queue and log, on a loopback port.

Nothing here reads or writes /etc/postfix/main.cf, /etc/postfix/master.cf or
/var/spool/postfix: every command is given `-c <instance>/etc`, and main.cf
points queue_directory, data_directory and maillog_file into the instance.
The instance directory is made under /tmp with mode 0755 because Postfix
daemons drop to the `postfix` user and must be able to reach the queue
(pytest's own tmp dirs are 0700).

Every accepted message is put on HOLD (check_recipient_access static:HOLD)
and every transport is `discard`, so nothing is ever delivered: tests read
messages back with postcat/postqueue.
"""
import json
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .net import LOCALHOST, free_port, wait_for, wait_port
from .paths import system_tool
from .proc import run

POSTFIX = "/usr/sbin/postfix"
POSTCAT = "/usr/sbin/postcat"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class HeldMessage:
    queue_id: str
    sender: str
    recipients: list
    raw: str            # full postcat -q output: envelope records, content, extracted records
    text: str           # postcat -hb -q: the message (Postfix's Received: header first)


class PostfixInstance:
    """A started Postfix; see the module docstring.

    main_cf: extra/overriding main.cf parameters (dict), e.g.
    {"smtpd_forbid_bare_newline": "reject"}.
    tls: a TLSCerts (from tls.make_certs) to offer STARTTLS with.
    """

    def __init__(self, host: str = LOCALHOST, port: int = 0, main_cf=None, tls=None,
                 hostname: str = "postfix-upstream.test", extra_smtpd=None):
        # extra_smtpd: {name: {param: value}}: more smtpd listeners in the same
        # instance, each on its own port (self.service_ports[name]) with these
        # main.cf overrides (master.cf -o; values without spaces); see service().
        self.host = host
        self.hostname = hostname
        self.root = Path(tempfile.mkdtemp(prefix="sluice-postfix-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "spool"
        self.data_dir = self.root / "data"
        self.maillog = self.root / "maillog"
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(mode=0o755)
        shutil.chown(self.data_dir, "postfix", "postfix")
        self.port = port or free_port(host)
        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": hostname,
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": host,
            "inet_protocols": "ipv6" if ":" in host else "ipv4",
            "mynetworks": "127.0.0.0/8 [::1]/128",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8 [::1]/128",
            "relay_domains": "static:all",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "check_recipient_access static:HOLD",
            "default_transport": "discard:testbed instance delivers nothing",
            "relay_transport": "discard:testbed instance delivers nothing",
            "local_transport": "discard:testbed instance delivers nothing",
            "virtual_transport": "discard:testbed instance delivers nothing",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtputf8_enable": "yes",
            "smtpd_banner": "$myhostname ESMTP Postfix",
            "syslog_name": f"postfix-testbed-{self.port}",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "anvil_rate_time_unit": "60s",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_timeout": "30s",
            "delay_warning_time": "0",
            "queue_run_delay": "3600s",
        }
        if tls is not None:
            params.update({
                "smtpd_tls_security_level": "may",
                "smtpd_tls_cert_file": str(tls.server_cert),
                "smtpd_tls_key_file": str(tls.server_key),
                "smtpd_tls_loglevel": "1",
                "smtpd_tls_received_header": "yes",
            })
        params.update(main_cf or {})
        self.params = params
        (self.config_dir / "main.cf").write_text(
            "".join(f"{k} = {v}\n" for k, v in params.items()))
        listen = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        master = MASTER_CF.format(listen=listen)
        self.service_ports = {}
        for name, overrides in (extra_smtpd or {}).items():
            p = free_port(host)
            self.service_ports[name] = p
            lst = f"[{host}]:{p}" if ":" in host else f"{host}:{p}"
            opts = "".join(f" -o {k}={v}" for k, v in overrides.items())
            master += f"{lst} inet n - n - - smtpd -o syslog_name=postfix-testbed-{name}{opts}\n"
        (self.config_dir / "master.cf").write_text(master)
        self.started = False
        try:
            self._postfix("start", timeout=60)
            self.started = True
            wait_port(host, self.port, timeout=20)
            for p in self.service_ports.values():
                wait_port(host, p, timeout=20)
        except Exception:
            self.stop()
            raise

    def _postfix(self, verb, timeout=30):
        r = run([POSTFIX, "-c", self.config_dir, verb], timeout=timeout)
        if r.returncode != 0:
            # postfix(1) says why on its log, not on its output
            raise RuntimeError(f"postfix {verb} failed ({r.returncode}): "
                               f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}"
                               f"maillog: {self.log()[-1500:]}")
        return r

    @property
    def address(self):
        return (self.host, self.port)

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        """Waits until the maillog matches the regex; returns the match."""
        return wait_for(lambda: re.search(pattern, self.log()), timeout,
                        what=f"/{pattern}/ in Postfix maillog")

    def queue(self) -> list:
        """postqueue -j: one dict per queued message (queue_name 'hold' for ours)."""
        r = run([POSTQUEUE, "-c", self.config_dir, "-j"], timeout=20)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.decode(errors="replace"))
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]

    def held(self) -> list:
        return [q for q in self.queue() if q.get("queue_name") == "hold"]

    def postcat(self, queue_id: str, *flags: str) -> str:
        """postcat -c DIR [flags] -q ID, e.g. postcat(id, "-h", "-b") for the message only."""
        r = run([POSTCAT, "-c", self.config_dir, *flags, "-q", queue_id], timeout=20)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.decode(errors="replace"))
        return r.stdout.decode(errors="replace")

    def wait_held(self, n: int, timeout: float = 15.0) -> list:
        """Waits until n messages are on hold; returns HeldMessage objects."""
        q = wait_for(lambda: (lambda h: h if len(h) >= n else None)(self.held()), timeout,
                     interval=0.2, what=f"{n} messages in Postfix hold queue")
        return [HeldMessage(m["queue_id"], m.get("sender", ""),
                            [r["address"] for r in m.get("recipients", [])],
                            self.postcat(m["queue_id"]),
                            self.postcat(m["queue_id"], "-h", "-b")) for m in q]

    def stop(self):
        """postfix stop, then make sure the master is gone, then remove the instance."""
        pid = None
        pidfile = self.queue_dir / "pid" / "master.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        if self.started:
            try:
                run([POSTFIX, "-c", self.config_dir, "stop"], timeout=30)
            except Exception:
                pass
            self.started = False
        if pid:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.kept_log = self.log()
        shutil.rmtree(self.root, ignore_errors=True)


def smtp_sink_binary() -> str:
    return system_tool("smtp-sink", "/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")


def smtp_source_binary() -> str:
    return system_tool("smtp-source", "/usr/sbin/smtp-source", "/usr/lib/postfix/sbin/smtp-source")


# ---------------------------------------------------------------- receiver matrix
# The interface of lib/receiver.py (messages(), log_text(), mail_commands(),
# wait_idle()) on a PostfixInstance, and the main.cf of the matrix's Postfix.

# Every MAIL command is logged ("NOQUEUE: info: MAIL from ...": check_sender_access
# static:INFO evaluated at MAIL time), reject-me@example.test is refused, every
# other recipient is put on HOLD; the pipelining check of Postfix 3.9 is on
# (3.7 has it, off by default), bare newlines are left at 3.7's default (no):
# this Postfix is a vulnerable "B" of SMTP smuggling on its own.
MATRIX_MAIN_CF = {
    "smtpd_delay_reject": "no",
    "smtpd_sender_restrictions": "check_sender_access static:INFO",
    "smtpd_recipient_restrictions":
        "check_recipient_access inline:{{reject-me@example.test = 550 5.1.1 refused by the testbed}}"
        " check_recipient_access static:HOLD",
    "smtpd_forbid_unauth_pipelining": "yes",
    "smtpd_recipient_limit": "1000",
    "local_header_rewrite_clients": "",
    "always_add_missing_headers": "no",
}

# The EHLO keywords the matrix turns off in turn (smtpd_discard_ehlo_keywords).
DISCARDABLE_KEYWORDS = ("chunking", "pipelining", "smtputf8", "8bitmime", "dsn",
                        "enhancedstatuscodes")


def matrix_main_cf(discard=None, **extra):
    """MATRIX_MAIN_CF, with smtpd_discard_ehlo_keywords = discard if given."""
    cf = dict(MATRIX_MAIN_CF)
    if discard:
        cf["smtpd_discard_ehlo_keywords"] = discard
    cf.update(extra)
    return cf


def _pf_log_text(self) -> str:
    return self.log()


def _pf_log_mark(self) -> int:
    from .receiver import file_size
    return file_size(self.maillog)


def _pf_log_since(self, mark: int) -> str:
    from .receiver import read_from
    return read_from(self.maillog, mark)


def _pf_mail_commands(text: str) -> int:
    """MAIL commands smtpd evaluated (needs MATRIX_MAIN_CF's static:INFO)."""
    return len(re.findall(r": info: MAIL from ", text))


def _pf_wait_idle(self, timeout: float = 15.0):
    """Waits until no TCP connection to any smtpd port of the instance is
    open, then until the maillog (written by postlogd, a little later) has a
    'disconnect from' for every 'connect from' and has stopped growing."""
    from .receiver import LineCounter, wait_connections_closed
    ports = [self.port] + list(getattr(self, "service_ports", {}).values())
    wait_connections_closed(ports, timeout)
    if getattr(self, "_idle_counter", None) is None:
        self._idle_counter = LineCounter(self.maillog, conn=r"\]: connect from ",
                                         disc=r"\]: disconnect from ")
    c = self._idle_counter

    def idle():
        stable = c.settled()
        return stable and c.counts["conn"] <= c.counts["disc"]
    wait_for(idle, timeout, interval=0.02, what="Postfix sessions ended")


def _pf_message_ids(self) -> list:
    """Queue ids of every complete queue file, oldest first, read from the
    queue directory itself (Postfix sets the owner-execute bit on a queue
    file once it is complete); faster than postqueue -j."""
    found = []
    for sub in ("incoming", "active", "deferred", "hold", "corrupt"):
        for dp, _, files in os.walk(self.queue_dir / sub):
            for f in files:
                try:
                    st = os.stat(os.path.join(dp, f))
                except FileNotFoundError:
                    continue
                if st.st_mode & 0o100:
                    found.append((st.st_mtime_ns, f))
    return [f for _, f in sorted(found)]


def _pf_message(self, queue_id: str):
    """One queued message (see _pf_messages), from a single `postcat -ehb`."""
    from .receiver import ReceivedMessage, strip_own_received
    r = run([POSTCAT, "-c", self.config_dir, "-e", "-h", "-b", "-q", queue_id], timeout=20)
    out = r.stdout
    m = re.search(rb"\*\*\* MESSAGE CONTENTS [^\n]*\n(.*)\*\*\* HEADER EXTRACTED", out, re.S)
    stored = m[1] if m else b""
    env = out.split(b"*** MESSAGE CONTENTS", 1)[0].decode(errors="replace")
    sender = ""
    rcpts = []
    for line in env.splitlines():
        if line.startswith("sender: "):
            sender = line[len("sender: "):]
        elif line == "sender:":
            sender = ""
        elif line.startswith("recipient: "):
            rcpts.append(line[len("recipient: "):])
    return ReceivedMessage(queue_id, sender, rcpts, strip_own_received(stored, self.hostname),
                           stored, {"records": env})


def _pf_messages(self, content: bool = True) -> list:
    """Every queued message, oldest first, as lib.receiver.ReceivedMessage.

    data is `postcat -bh` (header and body, LF line ends) without the
    Received: header Postfix added; envelope["records"] is `postcat -e`
    (envelope records: dsn_orig_rcpt, notify_flags, ret, envid, smtputf8...).
    content=False skips the postcat calls (data stays b"").
    """
    from .receiver import ReceivedMessage, strip_own_received
    out = []
    q = sorted(self.queue(), key=lambda m: (m.get("arrival_time", 0), m["queue_id"]))
    for m in q:
        stored, env = b"", ""
        if content:
            r = run([POSTCAT, "-c", self.config_dir, "-bh", "-q", m["queue_id"]], timeout=20)
            stored = r.stdout
            env = self.postcat(m["queue_id"], "-e")
        out.append(ReceivedMessage(m["queue_id"], m.get("sender", ""),
                                   [r["address"] for r in m.get("recipients", [])],
                                   strip_own_received(stored, self.hostname), stored,
                                   {"records": env, "queue_name": m.get("queue_name")}))
    return out


PostfixInstance.name = "postfix"
PostfixInstance.log_text = _pf_log_text
PostfixInstance.log_mark = _pf_log_mark
PostfixInstance.log_since = _pf_log_since
PostfixInstance.mail_commands = staticmethod(_pf_mail_commands)
PostfixInstance.wait_idle = _pf_wait_idle
PostfixInstance.message_ids = _pf_message_ids
PostfixInstance.messages = _pf_messages
PostfixInstance.message = _pf_message


class PostfixService:
    """One extra smtpd listener of a PostfixInstance (extra_smtpd): its own
    address and name; log, queue and everything else are the instance's."""

    def __init__(self, instance: PostfixInstance, name: str):
        self.instance = instance
        self.name = name
        self.host = instance.host
        self.port = instance.service_ports[name]

    @property
    def address(self):
        return (self.host, self.port)

    def stop(self):
        pass  # the instance's owner stops it

    def __getattr__(self, attr):
        return getattr(self.instance, attr)


def service(instance: PostfixInstance, name: str) -> PostfixService:
    return PostfixService(instance, name)
