"""What every receiver of the matrix offers (Exim, OpenSMTPD, Postfix).

A receiver is judged from its own log and queue, never from sluice's view:

- ``messages()`` -> ``[ReceivedMessage]``: what it accepted, oldest first,
  with the envelope it recorded and the content it stored;
- ``log_text()``: its own log; ``log_mark()`` / ``log_since(mark)``;
- ``mail_commands(text)``: the MAIL commands it read in that stretch of log
  (each one a transaction it opened, accepted or not), from a line each
  receiver writes for every MAIL command (Exim: an ACL ``logwrite``; Postfix:
  ``check_sender_access static:INFO``; OpenSMTPD: its ``-T smtp`` trace);
- ``wait_idle()``: waits until every SMTP connection it accepted has ended, so
  nothing a session sent can still arrive after a check.

Content: every receiver stores lines with LF ends and its own trace header on
top.  ``ReceivedMessage.data`` is the stored message without that first
``Received:`` header the receiver added, with LF line ends;
``canonical(sent)`` turns what a client sent (CRLF, after unstuffing) into the
same form, so ``m.data == canonical(sent)`` is the byte-exact check.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# Where tools/install-deps.sh unpacks exim4-daemon-light and opensmtpd.
RECEIVERS_ROOT = Path(os.environ.get("SLUICE_RECEIVERS_ROOT", "/opt/sluice-test-receivers"))


@dataclass
class ReceivedMessage:
    id: str
    sender: str                 # envelope sender without <>, "" for the null sender
    rcpts: list                 # envelope recipients as the receiver recorded them
    data: bytes                 # stored content, receiver's own Received: header removed
    stored: bytes = b""         # stored content as is
    envelope: dict = field(default_factory=dict)   # receiver-specific records (DSN, SMTPUTF8...)


def canonical(sent: bytes) -> bytes:
    """A message as a client sent it (CRLF lines) in the receivers' storage form."""
    return sent.replace(b"\r\n", b"\n")


def strip_own_received(stored: bytes, by_host: str) -> bytes:
    """Removes the first header if it is a Received: header naming by_host."""
    if not stored[:9].lower() == b"received:":
        return stored
    end = 0
    while True:
        nl = stored.find(b"\n", end)
        if nl < 0:
            return stored
        end = nl + 1
        if end >= len(stored) or stored[end:end + 1] not in (b" ", b"\t"):
            break
    header = stored[:end]
    if by_host.encode() not in header:
        return stored
    return stored[end:]


def open_connections(ports) -> int:
    """TCP connections to these local ports still open on the server side
    (ESTABLISHED, SYN_RECV, CLOSE_WAIT), from /proc/net/tcp and tcp6."""
    want = {f"{p:04X}" for p in ports}
    n = 0
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(f).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[1].rsplit(":", 1)[1] in want and parts[3] in ("01", "03", "08"):
                n += 1
    return n


def wait_connections_closed(ports, timeout: float = 15.0):
    from .net import wait_for
    wait_for(lambda: open_connections(ports) == 0, timeout, interval=0.02,
             what=f"connections to {list(ports)} closed")


def file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def read_from(path, offset: int) -> str:
    """The text of a log file from a byte offset (a mark) on."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


class LineCounter:
    """Counts lines matching a few regexes in a growing log file, reading only
    what was added since the last call."""

    def __init__(self, path, **patterns):
        self.path = path
        self.offset = 0
        self.patterns = {k: re.compile(v, re.M) for k, v in patterns.items()}
        self.counts = {k: 0 for k in patterns}
        self.size_seen = -1

    def update(self) -> dict:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        data = data[:data.rfind(b"\n") + 1]     # whole lines only
        self.offset += len(data)
        text = data.decode(errors="replace")
        for k, rx in self.patterns.items():
            self.counts[k] += len(rx.findall(text))
        return self.counts

    def settled(self) -> bool:
        """Counts updated; True if the file did not grow since the previous call."""
        self.update()
        size = file_size(self.path)
        same = size == self.size_seen
        self.size_seen = size
        return same


def count_lines(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, re.M))


# The receivers of the matrix: Exim, OpenSMTPD, Postfix, and Postfix with each
# of its EHLO keywords turned off in turn (smtpd_discard_ehlo_keywords).
POSTFIX_VARIANTS = ["postfix-no-" + k for k in ("chunking", "pipelining", "smtputf8", "8bitmime",
                                               "dsn", "enhancedstatuscodes")]
RECEIVER_NAMES = ["exim", "opensmtpd", "postfix"] + POSTFIX_VARIANTS


def make_receiver(name: str):
    """Starts the named receiver of RECEIVER_NAMES on a free loopback port."""
    if name == "exim":
        from .exim import EximInstance
        return EximInstance()
    if name == "opensmtpd":
        from .opensmtpd import OpenSMTPDInstance
        return OpenSMTPDInstance()
    if name == "postfix" or name.startswith("postfix-no-"):
        from .postfix import PostfixInstance, matrix_main_cf
        discard = name[len("postfix-no-"):] if name != "postfix" else None
        r = PostfixInstance(main_cf=matrix_main_cf(discard))
        r.name = name
        return r
    raise ValueError(f"unknown receiver {name}")
