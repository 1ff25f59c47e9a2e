"""sluiced with content filters, and the receiver-side checks the
test_filters_*.py files share (no tests of its own; a test_ module like
test_proxy_support.py because sluiced fixtures belong to the driver's tests).

Every verdict is judged from the two ends: the client's own result (swaks'
exit status and the reply to the end of data) and the receiving Postfix's
queue (the queue ids new since the step began, after the receiver is idle).
"""
import re

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


def transaction_code(result) -> int:
    """The code that decided the client's transaction: the first 4xx/5xx
    after the greeting (a filter failing at connect makes Postfix refuse
    MAIL already), else the reply to the end of data; 0 if neither came."""
    finals = [l for l in result.server_lines() if re.match(r"^\d{3}( |$)", l)]
    after_354 = False
    for line in finals[1:]:
        code = int(line[:3])
        if after_354 or code >= 400:
            return code
        after_354 = code == 354
    return 0


class QueueStep:
    """What one step added to a receiver's queue: ids not seen at the start."""

    def __init__(self, receiver):
        self.receiver = receiver
        self.before = set(receiver.message_ids())

    def new(self):
        """The receiver's new messages (lib.receiver.ReceivedMessage), once it
        is idle (Postfix answers 250 only once the queue file is complete)."""
        self.receiver.wait_idle()
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
    """swaks (Debian's) sends data; a SwaksResult."""
    return swaks(server, data=data, timeout=20, **kw)


class RawResult:
    """A transaction by lib.clients.RawSMTP with swaks' result interface:
    rc as swaks would exit (0 delivered, 23 MAIL, 24 RCPT, 25 DATA, 26 end of
    data refused, 29 no reply), server_lines(), transcript."""

    def __init__(self):
        self.rc = 0
        self.lines = []
        self.transcript = ""

    def server_lines(self):
        return list(self.lines)

    def add(self, sent, reply):
        if sent is not None:
            self.transcript += f" -> {sent}\n"
        for i, text in enumerate(reply.lines):
            sep = " " if i == len(reply.lines) - 1 else "-"
            self.lines.append(f"{reply.code}{sep}{text}")
            self.transcript += f"<-  {reply.code}{sep}{text}\n"


def raw_send(server, data: bytes, sender="sender@example.test", rcpt="rcpt@example.test",
             timeout: float = 20) -> RawResult:
    """One careful lock-step transaction (EHLO, MAIL, RCPT, DATA, the
    dot-stuffed message, QUIT) with the raw client: the same bytes as swaks
    sends, without a second of Perl start-up per message on a loaded CI box."""
    from lib.clients import RawSMTP
    out = RawResult()
    try:
        with RawSMTP(server, timeout=timeout) as c:
            out.add(None, c.read_reply())
            out.add("EHLO client.test", c.cmd("EHLO client.test"))
            for cmd, rc, ok in ((f"MAIL FROM:<{sender}>", 23, 250), (f"RCPT TO:<{rcpt}>", 24, 250),
                                ("DATA", 25, 354)):
                r = c.cmd(cmd)
                out.add(cmd, r)
                if r.code != ok:
                    out.rc = rc
                    break
            else:
                c.send(re.sub(rb"(?m)^\.", b"..", data) + b".\r\n")
                r = c.read_reply()
                out.add("<message>.", r)
                if r.code != 250:
                    out.rc = 26
            out.add("QUIT", c.cmd("QUIT"))
    except (ConnectionError, TimeoutError, ValueError, OSError) as e:
        out.transcript += f"*** {e!r}\n"
        if out.rc == 0:
            out.rc = 29
    return out


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


# ---------------------------------------------------------------- log and metrics
# README "Content filters": the session line names each filter's verdict per
# message (filters="rspamd:reject clamav:accept"); OpenMetrics counts
# sluice_filter_verdicts_total{filter,verdict}, sluice_filter_failures_total
# {filter,reason} and the histogram sluice_filter_seconds{filter}.

def session_filter_verdicts(s) -> list:
    """Every NAME:VERDICT token of the filters field of sluiced's session lines."""
    import json
    out = []
    for rec in s.sessions():
        text = json.dumps(rec)
        out += re.findall(r"([A-Za-z0-9_.-]+):(accept|change|discard|tempfail|reject|fail)\b",
                          str(rec.get("filters", "")) or text)
    return [f"{n}:{v}" for n, v in out]


def wait_session_verdict(s, name: str, *verdicts: str, timeout: float = 10.0) -> str:
    """Waits for a session line naming filter name with one of verdicts
    (any verdict if none given); returns that NAME:VERDICT token."""
    def found():
        for tok in session_filter_verdicts(s):
            n, _, v = tok.rpartition(":")
            if n == name and (not verdicts or v in verdicts):
                return tok
        return None
    return wait_for(found, timeout,
                    what=f"{name}:{'|'.join(verdicts) or '*'} in sluiced's session log (have "
                         f"{session_filter_verdicts(s)}; log: {s.stderr()[-1500:]})")


def metric_samples(s, name: str, **labels) -> float:
    """The sum of the samples of metric name whose labels include labels."""
    total = 0.0
    for line in s.metrics().splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m[1] != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m[2] or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m[3])
    return total


def assert_filter_counted(s, name: str, verdict: str = None, failure: bool = False):
    """The metrics endpoint counted this filter's decision (and its latency)."""
    text = s.metrics()
    if failure:
        assert metric_samples(s, "sluice_filter_failures_total", filter=name) >= 1, text
    else:
        assert metric_samples(s, "sluice_filter_verdicts_total", filter=name,
                              verdict=verdict) >= 1, text
        assert metric_samples(s, "sluice_filter_seconds_count", filter=name) >= 1, text
