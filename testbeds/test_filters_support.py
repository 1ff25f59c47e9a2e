"""sluiced with content filters, and the receiver-side checks the
test_filters_*.py files share (no tests of its own; a test_ module like
test_proxy_support.py because sluiced fixtures belong to the driver's tests).

Every verdict is judged from the two ends: the client's own result (swaks'
exit status and the reply to the end of data) and the receiving Postfix's
queue (the queue ids new since the step began, after the receiver is idle).
"""
import re
import time

import pytest

from lib.clients import swaks
from lib.net import wait_for
from test_proxy_support import Sluiced, sluiced_binary

# Enough below every upstream timeout and short enough for the CI budget.
FILTER_TIMEOUT = "2s"


def data_reply(result) -> str:
    """The server's reply to the end of data in a swaks transcript ("" if the
    session never got that far)."""
    lines = result.server_lines()
    for i, line in enumerate(lines):
        if line.startswith("354"):
            rest = [l for l in lines[i + 1:] if re.match(r"^\d{3}[ -]", l)]
            out = []
            for l in rest:
                out.append(l)
                if l[3] == " ":
                    break
            return "\n".join(out)
    return ""


def reply_code(result) -> int:
    r = data_reply(result)
    return int(r[:3]) if r else 0


class QueueStep:
    """What one step added to a receiver's queue: ids not seen at the start."""

    def __init__(self, receiver):
        self.receiver = receiver
        self.before = set(receiver.message_ids())

    def new(self, settle: float = 0.3):
        """The receiver's new messages (lib.receiver.ReceivedMessage), once it is idle."""
        self.receiver.wait_idle()
        time.sleep(settle)  # cleanup's last write after the client's 250
        return [self.receiver.message(i) for i in self.receiver.message_ids()
                if i not in self.before]


def headers_and_body(data: bytes):
    """(sorted header lines without Received:, body) of a message as a
    receiver stored it (LF line ends, continuation lines unfolded)."""
    head, _, body = data.partition(b"\n\n")
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        elif line:
            fields.append(line)
    fields = [f for f in fields if not f.lower().startswith(b"received:")]
    return sorted(fields), body


def header_values(data: bytes, name: str) -> list:
    n = name.lower().encode() + b":"
    fields, _ = headers_and_body(data)
    return [f[len(n):].strip().decode(errors="replace") for f in fields
            if f.lower().startswith(n)]


def message(subject: str, body: str = "a message for the filter test beds", headers=()) -> bytes:
    """A small well-formed message with CRLF line ends (byte-exact through swaks)."""
    lines = ["From: sender@example.test", "To: rcpt@example.test", f"Subject: {subject}",
             "Date: Wed, 02 Dec 2026 12:00:00 +0000",
             f"Message-ID: <{re.sub(r'[^a-z0-9]+', '-', subject.lower())}@client.test>",
             *headers, "", *body.split("\n")]
    return ("\r\n".join(lines) + "\r\n").encode()


def send(server, data: bytes, **kw):
    return swaks(server, data=data, timeout=20, **kw)


_filters_supported = None


def require_filter_support():
    """Skips when this build's sluiced has no `filter` key (a build from
    before the content filters); any other configuration error fails."""
    global _filters_supported
    if _filters_supported is None:
        import subprocess
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:25\nrelay_domains = *\n"
                    "filter = milter inet:127.0.0.1:9\n")
            f.flush()
            r = subprocess.run([str(sluiced_binary()), "--check-config", "-c", f.name],
                               capture_output=True, text=True, timeout=30)
        _filters_supported = (r.returncode == 0, r.stdout + r.stderr)
    ok, text = _filters_supported
    if not ok:
        pytest.skip(f"this sluiced has no content filters (--check-config: {text.strip()[:300]})")


@pytest.fixture
def filtered_sluiced(tmp_path):
    """filtered_sluiced(upstream, filters=["milter inet:..."], conf={...}) ->
    a started Sluiced (lib: test_proxy_support) with one `filter =` line
    per entry and filter_timeout = FILTER_TIMEOUT unless conf sets it; stopped
    at teardown, failing the test on a crash or a sanitizer report."""
    require_filter_support()
    started = []

    def make(upstream, filters, conf=None, **kw):
        c = {"filter_timeout": FILTER_TIMEOUT, "filter": list(filters)}
        c.update(conf or {})
        s = Sluiced(tmp_path / f"sluiced{len(started) + 1}", [upstream], conf=c, **kw)
        started.append(s)
        return s

    yield make
    for s in reversed(started):
        rc = s.stop()
        assert rc in (0, None), f"sluiced exited with {rc}: {s.stderr()[-3000:]}"
        assert "ERROR: AddressSanitizer" not in s.stderr(), s.stderr()[-5000:]
        assert "runtime error:" not in s.stderr(), s.stderr()[-5000:]


def settled_fds(s, base: int, timeout: float = 10.0):
    """Waits until sluiced holds no more descriptors than base (no leak)."""
    wait_for(lambda: s.fd_count() <= base, timeout,
             what=f"sluiced's descriptors back to {base} (now {s.fd_count()}: "
                  f"{sorted(fd_targets(s))})")


def fd_targets(s):
    import os
    out = []
    for fd in os.listdir(f"/proc/{s.pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{s.pid}/fd/{fd}"))
        except OSError:
            pass
    return out
