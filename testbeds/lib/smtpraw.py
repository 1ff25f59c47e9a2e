"""A raw-socket SMTP client for the receiver matrix: BDAT chunks, pipelined
groups, arbitrary bytes.

Two kinds of use:

- a *legitimate* client (`Session` + `send_tx`) that behaves like a careful
  MTA: it reads the EHLO reply and uses an extension only when offered
  (BDAT only with CHUNKING, pipelined groups only with PIPELINING, SMTPUTF8,
  BODY=8BITMIME and DSN parameters only when offered), waits for 354 before
  content, and after a 452 to RCPT sends the rest in a further transaction;
- a *hostile* client (`attack`) that writes whatever bytes it is given,
  whatever the server said, then QUIT, and collects every reply until the
  server closes.

Every operation is bounded in time (RawSMTP's timeout).
"""
import re
import socket
import time
from dataclasses import dataclass, field

from .clients import RawSMTP, Reply


def stuff(content: bytes) -> bytes:
    """Dot-stuffing (RFC 5321 4.5.2) of a CRLF message for DATA."""
    out = re.sub(rb"(?m)^\.", b"..", content)
    return out


class Session(RawSMTP):
    """A connected client that has read the greeting and sent EHLO."""

    def __init__(self, server, timeout: float = 15.0, ehlo: str = "client.test"):
        super().__init__(server, timeout)
        self.greeting = self.read_reply()
        self.caps = {}
        self.ehlo_reply = None
        self.helo_fallback = None
        if self.greeting.code == 220:
            r = self.ehlo(ehlo)
            if r.code // 100 == 5:
                # RFC 5321 3.2: a client whose EHLO is refused falls back to HELO.
                self.helo_fallback = self.cmd(f"HELO {ehlo}")

    def ehlo(self, name="client.test") -> Reply:
        r = self.cmd(f"EHLO {name}")
        self.ehlo_reply = r
        self.caps = {}
        if r.code == 250:
            for line in r.lines[1:]:
                kw, _, arg = line.strip().partition(" ")
                self.caps[kw.upper()] = arg
        return r

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.caps

    def replies(self, n: int, timeout=None) -> list:
        return [self.read_reply(timeout) for _ in range(n)]


@dataclass
class Tx:
    """One transaction as the client saw it."""
    sender: str
    rcpts: list
    content: bytes
    transfer: str = "DATA"
    mail: Reply = None
    rcpt_replies: list = field(default_factory=list)
    data: Reply = None            # the 354 (or its refusal) for DATA
    chunk_replies: list = field(default_factory=list)
    final: Reply = None           # end-of-data or BDAT LAST reply
    error: str = ""

    @property
    def accepted(self) -> list:
        return [a for a, r in zip(self.rcpts, self.rcpt_replies) if r.code // 100 == 2]

    @property
    def delivered(self) -> bool:
        return self.final is not None and self.final.code // 100 == 2

    def codes(self):
        out = [self.mail.code if self.mail else None] + [r.code for r in self.rcpt_replies]
        if self.data:
            out.append(self.data.code)
        out += [r.code for r in self.chunk_replies]
        if self.final and self.final not in self.chunk_replies:
            out.append(self.final.code)
        return out


def split_chunks(content: bytes, sizes) -> list:
    out, pos = [], 0
    for n in sizes:
        if pos >= len(content):
            break
        out.append(content[pos:pos + n])
        pos += n
    if pos < len(content):
        out.append(content[pos:])
    return out


def send_tx(s: Session, sender: str, rcpts, content: bytes, *, mail_params: str = "",
            rcpt_params: str = "", bdat=None, chunk_sizes=(64, 1, 200), pipeline=None,
            after: bytes = b"") -> Tx:
    """One careful transaction on Session s.

    bdat: None = BDAT if CHUNKING is offered; True/False to force.  content
    is the message with CRLF line ends (unstuffed).  pipeline: None = if
    PIPELINING is offered.  after: bytes written right behind the end of data
    (pipelining the next group; only used with pipeline).  A closed
    connection or a malformed reply ends the transaction with .error set.
    """
    pipeline = s.has("PIPELINING") if pipeline is None else pipeline
    bdat = s.has("CHUNKING") if bdat is None else bdat
    tx = Tx(sender, list(rcpts), content, "BDAT" if bdat else "DATA")
    mp = f" {mail_params}" if mail_params else ""
    rp = f" {rcpt_params}" if rcpt_params else ""
    mail = f"MAIL FROM:<{sender}>{mp}\r\n".encode()
    rcpt_lines = [f"RCPT TO:<{r}>{rp}\r\n".encode() for r in rcpts]
    try:
        if bdat:
            chunks = split_chunks(content, chunk_sizes) or [b""]
            bdat_bytes = []
            for i, c in enumerate(chunks):
                last = " LAST" if i == len(chunks) - 1 else ""
                bdat_bytes.append(f"BDAT {len(c)}{last}\r\n".encode() + c)
            if pipeline:
                s.send(mail + b"".join(rcpt_lines) + b"".join(bdat_bytes) + after)
                tx.mail = s.read_reply()
                for _ in rcpts:
                    tx.rcpt_replies.append(s.read_reply())
                for _ in chunks:
                    tx.chunk_replies.append(s.read_reply())
                tx.final = tx.chunk_replies[-1]
                for r in tx.chunk_replies:
                    if r.code // 100 != 2:
                        tx.final = r
                        break
            else:
                tx.mail = s.cmd(mail.decode().rstrip("\r\n"))
                if tx.mail.code // 100 != 2:
                    return tx
                for line in rcpt_lines:
                    s.send(line)
                    tx.rcpt_replies.append(s.read_reply())
                if not tx.accepted:
                    return tx
                for b in bdat_bytes:
                    s.send(b)
                    r = s.read_reply()
                    tx.chunk_replies.append(r)
                    tx.final = r
                    if r.code // 100 != 2:
                        break
        else:
            if pipeline:
                s.send(mail + b"".join(rcpt_lines) + b"DATA\r\n")
                tx.mail = s.read_reply()
                for _ in rcpts:
                    tx.rcpt_replies.append(s.read_reply())
                tx.data = s.read_reply()
            else:
                tx.mail = s.cmd(mail.decode().rstrip("\r\n"))
                if tx.mail.code // 100 != 2:
                    return tx
                for line in rcpt_lines:
                    s.send(line)
                    tx.rcpt_replies.append(s.read_reply())
                if not tx.accepted:
                    return tx
                tx.data = s.cmd("DATA")
            if tx.data.code != 354:
                return tx
            s.send(stuff(content) + b".\r\n" + (after if pipeline else b""))
            tx.final = s.read_reply()
    except (ConnectionError, TimeoutError, ValueError, OSError) as e:
        tx.error = f"{type(e).__name__}: {e}"
    return tx


# ---------------------------------------------------------------- hostile client

@dataclass
class AttackResult:
    replies: list          # every complete reply line the client got, in order
    raw: bytes             # every byte the client got
    closed: bool           # the server closed (as opposed to the client giving up)

    def codes(self):
        return [int(l[:3]) for l in self.replies if re.match(rb"^\d{3} ", l)]


def attack(server, steps, timeout: float = 10.0, ehlo: str = "attacker.test") -> AttackResult:
    """Greeting, EHLO, then each step: bytes to write, or an int n = wait for
    n more final reply lines (tolerating a close).  Then QUIT, and read
    everything until the server closes or timeout passes."""
    raw = b""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection(tuple(server[:2]), timeout=timeout)

    def finals(buf):
        return len(re.findall(rb"(?m)^\d{3} ", buf))

    def read_until(pred):
        nonlocal raw
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return False
            except OSError:
                return None
            if not chunk:
                return None
            raw += chunk
        return True

    closed = False
    try:
        want = 1
        if read_until(lambda: finals(raw) >= want) is None:
            closed = True
        if not closed:
            sock.sendall(f"EHLO {ehlo}\r\n".encode())
            want += 1
            if read_until(lambda: finals(raw) >= want) is None:
                closed = True
        for st in steps:
            if closed:
                break
            if isinstance(st, int):
                want += st
                if read_until(lambda: finals(raw) >= want) is None:
                    closed = True
            else:
                try:
                    sock.sendall(st)
                except OSError:
                    closed = True
        if not closed:
            try:
                sock.sendall(b"QUIT\r\n")
            except OSError:
                pass
            closed = read_until(lambda: False) is None
    finally:
        sock.close()
    lines = [l + b"\n" for l in raw.split(b"\n") if l]
    return AttackResult(lines, raw, closed)


# The end-of-data variants of hannob/smtpsmug and The-Login/SMTP-Smuggling-Tools
# (../shared/SECURITY.md 1.1).
SMUGGLING_VARIANTS = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n",
                      b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n",
                      b"\r\r\n.\r\r\n"]


def variant_id(v: bytes) -> str:
    return v.replace(b"\r", b"CR").replace(b"\n", b"LF").replace(b"\x00", b"NUL").decode()


def smuggled(tag: str) -> bytes:
    """A complete second transaction, as a smuggler writes it after a fake end of data."""
    return (f"MAIL FROM:<smuggled-{tag}@evil.test>\r\n"
            f"RCPT TO:<smuggled-victim@example.test>\r\n"
            f"DATA\r\n"
            f"From: ceo@example.test\r\nSubject: forged {tag}\r\n\r\nforged body\r\n").encode()
