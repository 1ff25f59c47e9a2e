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
                 hostname: str = "postfix-upstream.test"):
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
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=listen))
        self.started = False
        try:
            self._postfix("start", timeout=60)
            self.started = True
            wait_port(host, self.port, timeout=20)
        except Exception:
            self.stop()
            raise

    def _postfix(self, verb, timeout=30):
        r = run([POSTFIX, "-c", self.config_dir, verb], timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"postfix {verb} failed ({r.returncode}): "
                               f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
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
