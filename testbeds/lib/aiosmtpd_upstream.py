"""Fixture side of aiosmtpd_server.py."""
import json
import signal
from dataclasses import dataclass
from pathlib import Path

from .net import LOCALHOST, wait_for, wait_port
from .paths import PYTHON
from .proc import Proc

SERVER = Path(__file__).with_name("aiosmtpd_server.py")


@dataclass
class AioMessage:
    id: int
    data: bytes          # envelope.original_content
    envelope: dict       # mail_from, mail_options, rcpt_tos, rcpt_options, helo, peer, proxy, tls, auth_login


class AiosmtpdUpstream:
    def __init__(self, workdir: Path, host: str = LOCALHOST, smtputf8: bool = False,
                 reject_rcpt=(), tempfail_data: bool = False, proxy_protocol: bool = False,
                 tls_cert=None, tls_key=None, hostname: str = "aiosmtpd.test", auth=None):
        self.workdir = Path(workdir)
        self.host = host
        self.maildir = self.workdir / "aiosmtpd-mail"
        self.maildir.mkdir(parents=True, exist_ok=True)
        argv = [PYTHON, SERVER, "--host", host, "--dir", self.maildir, "--hostname", hostname]
        if smtputf8:
            argv.append("--smtputf8")
        for r in reject_rcpt:
            argv += ["--reject-rcpt", r]
        if tempfail_data:
            argv.append("--tempfail-data")
        if proxy_protocol:
            argv.append("--proxy-protocol")
        if tls_cert:
            argv += ["--tls-cert", tls_cert, "--tls-key", tls_key]
        if auth:
            login, password = auth
            argv += ["--auth", login, password]
        self.proc = Proc(argv, self.workdir / "logs", "aiosmtpd", stdout_pipe=True)
        try:
            self.port = int(self.proc.read_line(timeout=20))
            wait_port(host, self.port, timeout=10, proc=self.proc.popen)
        except Exception:
            self.proc.stop(signal.SIGKILL)
            raise

    @property
    def address(self):
        return (self.host, self.port)

    def message_ids(self):
        return sorted(int(p.stem) for p in self.maildir.glob("*.eml")
                      if p.stem.isdigit())

    def messages(self):
        return [AioMessage(i, (self.maildir / f"{i}.eml").read_bytes(),
                           json.loads((self.maildir / f"{i}.json").read_text()))
                for i in self.message_ids()]

    def wait_messages(self, n: int, timeout: float = 10.0):
        wait_for(lambda: len(self.message_ids()) >= n, timeout, what=f"{n} messages in aiosmtpd")
        return self.messages()

    def stop(self) -> int:
        return self.proc.stop(signal.SIGTERM, timeout=10)
