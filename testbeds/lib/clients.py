"""Real SMTP clients: swaks, Postfix's smtp-source, smtplib and a raw socket client."""
import re
import smtplib
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import system_tool
from .postfix import smtp_source_binary
from .proc import run


@dataclass
class SwaksResult:
    rc: int              # 0 ok; swaks uses 21..29 for the SMTP stage that failed
    transcript: str      # swaks' stdout: "<-" server lines, " ->" client lines
    stderr: str

    def server_lines(self):
        """Reply lines as the server sent them (without swaks' markers)."""
        out = []
        for line in self.transcript.splitlines():
            m = re.match(r"^<(?:-|~|\*\*|~\*)\s+(.*)$", line)
            if m:
                out.append(m[1])
        return out

    def replies(self, code_prefix: str):
        return [l for l in self.server_lines() if l.startswith(code_prefix)]


def swaks(server, to="rcpt@example.test", from_="sender@example.test", *, data=None,
          body=None, headers=None, ehlo="client.test", tls=False, tls_on_connect=False,
          tls_verify_ca=None, auth=None, pipeline=False, quit_after=None, xclient=None,
          extra=(), timeout: float = 20) -> SwaksResult:
    """Runs swaks against server=(host, port).

    data: bytes or str for the whole DATA section.  A message with CRLF line
    ends that ends in CRLF arrives byte for byte (swaks dot-stuffs it on the
    wire and turns bare LF into CRLF; it also expands %TOKENS%, so avoid '%').
    auth: (mechanism, user, password).  tls: STARTTLS required.
    tls_verify_ca: a CA file; swaks then verifies the server certificate.
    xclient: a dict of XCLIENT attributes, sent by swaks after EHLO.
    """
    host, port = server[0], server[1]
    argv = [system_tool("swaks", "/usr/bin/swaks"), "--server", f"{host}:{port}",
            "--to", to, "--from", from_, "--helo", ehlo, "--timeout", str(int(timeout))]
    tmp = None
    if data is not None:
        raw = data.encode() if isinstance(data, str) else data
        # swaks always sends CRLF before the terminating dot; dropping one
        # final line end makes a CRLF-terminated message arrive unchanged.
        if raw.endswith(b"\r\n"):
            raw = raw[:-2]
        elif raw.endswith(b"\n"):
            raw = raw[:-1]
        tmp = tempfile.NamedTemporaryFile(prefix="swaks-data-", delete=False)
        tmp.write(raw)
        tmp.close()
        argv += ["--data", "@" + tmp.name]
    if body is not None:
        argv += ["--body", body]
    for h in headers or ():
        argv += ["--header", h]
    if tls:
        argv.append("--tls")
    if tls_on_connect:
        argv.append("--tls-on-connect")
    if tls_verify_ca:
        argv += ["--tls-verify", "--tls-ca-path", str(tls_verify_ca)]
    if auth:
        mech, user, password = auth
        argv += ["--auth", mech, "--auth-user", user, "--auth-password", password]
    if pipeline:
        argv.append("--pipeline")
    if quit_after:
        argv += ["--quit-after", quit_after]
    if xclient:
        argv += ["--xclient", " ".join(f"{k}={v}" for k, v in xclient.items())]
    argv += list(extra)
    try:
        r = run(argv, timeout=timeout + 15)
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    return SwaksResult(r.returncode, r.stdout.decode(errors="replace"),
                       r.stderr.decode(errors="replace"))


def smtp_source(server, messages: int = 10, sessions: int = 1, *, msglen: int = 100,
                recipients: int = 1, reuse: bool = True, from_="src@example.test",
                to="dst@example.test", timeout: float = 60, extra=()):
    """Postfix's smtp-source: messages in sessions parallel connections.

    reuse=True sends all of a session's messages over one connection (-d).
    Returns the CompletedProcess (returncode 0 on success).
    """
    argv = [smtp_source_binary(), "-m", str(messages), "-s", str(sessions), "-l", str(msglen),
            "-r", str(recipients), "-f", from_, "-t", to]
    if reuse:
        argv.append("-d")
    argv += list(extra) + [f"{server[0]}:{server[1]}"]
    return run(argv, timeout=timeout)


def smtplib_client(server, timeout: float = 10, local_hostname="client.test") -> smtplib.SMTP:
    """A connected smtplib.SMTP (use as a context manager)."""
    return smtplib.SMTP(server[0], server[1], local_hostname=local_hostname, timeout=timeout)


def smtplib_send(server, from_addr, to_addrs, msg: bytes, *, starttls_ca=None,
                 timeout: float = 10):
    """Sends one message with smtplib; returns the refused-recipients dict.

    smtplib normalises line ends to CRLF and dot-stuffs.  With starttls_ca,
    STARTTLS is required and the server certificate verified against it.
    """
    with smtplib_client(server, timeout) as s:
        s.ehlo()
        if starttls_ca:
            s.starttls(context=ssl.create_default_context(cafile=str(starttls_ca)))
            s.ehlo()
        return s.sendmail(from_addr, to_addrs, msg)


class Reply:
    def __init__(self, code: int, lines: list, raw: bytes):
        self.code = code
        self.lines = lines   # text of each line after "NNN-"/"NNN "
        self.raw = raw       # the bytes as received, CRLFs included

    @property
    def text(self):
        return "\n".join(self.lines)

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"


class RawSMTP:
    """A byte-level SMTP client for tests that must control every byte.

    All operations are bounded by timeout seconds; a closed connection is
    reported as ConnectionError, a silent server as TimeoutError.
    """

    def __init__(self, server, timeout: float = 10.0):
        self.timeout = timeout
        self.sock = socket.create_connection(tuple(server[:2]), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete SMTP reply in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no complete SMTP reply in time")
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_line(self, timeout=None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_reply(self, timeout=None) -> Reply:
        """One (possibly multi-line) reply; raises ValueError if malformed."""
        raw = b""
        lines = []
        while True:
            line = self.read_line(timeout)
            raw += line
            m = re.match(rb"^(\d{3})([ -])(.*?)\r?\n$", line, re.S)
            if not m:
                raise ValueError(f"malformed reply line {line!r}")
            lines.append(m[3].decode(errors="replace"))
            if m[2] == b" ":
                return Reply(int(m[1]), lines, raw)

    def cmd(self, line: str, timeout=None) -> Reply:
        self.send(line + "\r\n")
        return self.read_reply(timeout)

    def expect_closed(self, timeout=None) -> bool:
        """True if the server closes (EOF or reset) within timeout; bytes sent meanwhile stay in self.buf."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        except OSError:
            return True

    def starttls(self, ca_file, server_hostname="localhost"):
        ctx = ssl.create_default_context(cafile=str(ca_file))
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self.sock
