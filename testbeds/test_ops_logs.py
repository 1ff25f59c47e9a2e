"""Logs an operator can act on (issue 10): session id, HELO, each message's
final upstream reply with its queue id, the escaped pregreet, the upstream's
reply text when it failed (an identity refused by a real Postfix)."""
import re
import time

import pytest

from lib.net import LOCALHOST
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401


def test_session_line_has_id_helo_and_queue_ids(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address], conf={"identity": "xclient"})
    with raw_connect(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO helo-name.example")
        assert send_message(c, rcpts=("user@example.test",)).code == 250
        assert send_message(c, rcpts=("user@example.test",)).code == 250
        c.cmd("QUIT")
    rec = s.wait_sessions(1)[0]
    assert re.fullmatch(r"[0-9a-f]{16}", rec["session"])
    assert rec["helo"] == "helo-name.example"
    replies = rec["replies"].split("; ")
    assert len(replies) == 2
    ids = [re.search(r"queued as (\w+)", r)[1] for r in replies]
    # The ids are Postfix's own: they are in its log.
    for qid in ids:
        postfix_upstream.wait_log(qid)


def test_pregreet_bytes_are_logged_escaped(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"mode": "screen", "normal_greet_delay": "1s"})
    with raw_connect(s.address) as c:
        c.send(b"EHLO too-early\r\n\x01")
        c.read_reply(5)
    rec = s.wait_sessions(1)[0]
    assert rec["pregreet"] == "EHLO too-early\\r\\n\\x01", rec
    assert rec["pregreet_bytes"] == 17


@pytest.mark.parametrize("postfix_upstream", [{"main_cf": {"inet_protocols": "ipv4"}}],
                         indirect=True)
def test_identity_refused_is_logged_and_not_retried(postfix_upstream, sluiced_factory):
    # An IPv6 client named by XCLIENT to a Postfix with inet_protocols = ipv4:
    # the refusal and its text are logged, the same server is not asked
    # again, and the client gets a temporary failure.
    s = sluiced_factory([postfix_upstream.address], host="::1",
                        conf={"identity": "xclient", "upstream_attempts": 3, "mode": "screen"})
    t0 = time.monotonic()
    with raw_connect(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO v6-client.test")
        r = c.cmd("MAIL FROM:<a@example.test>")
        assert 400 <= r.code < 500, r
        c.cmd("QUIT")
    rec = s.wait_sessions(1)[0]
    assert rec["upstream_failures"].count("identity") == 1, rec
    assert rec["upstream_reply"].startswith("501"), rec
    errs = [l for l in s.stderr().splitlines() if "failed (identity)" in l]
    assert len(errs) == 1 and "501" in errs[0] and rec["session"] in errs[0], errs
    assert time.monotonic() - t0 < 5


def test_syslog_facility_mail(sink, sluiced_factory, tmp_path):
    import socket
    path = str(tmp_path / "log.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(10)
    s = Sluiced_noready(sluiced_factory, sink, {"log_file": f"syslog:{path}",
                                                "log_format": "logfmt"})
    with raw_connect(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("QUIT")
    got = []
    while not any("msg=session" in g for g in got):
        got.append(rx.recv(4096).decode())
    line = next(g for g in got if "msg=session" in g)
    # <22> = facility mail (2) * 8 + info (6), then the tag Postfix
    # operators grep for.
    assert re.match(r"<22>\w{3} [ \d]\d \d\d:\d\d:\d\d sluiced\[\d+\]: ts=", line), line
    assert any(g.startswith("<22>") and "ready" in g for g in got)
    rx.close()


def Sluiced_noready(factory, sink, conf):
    """A started sluiced whose lines go to syslog: its readiness is the
    listening port, not a line on stderr."""
    from test_proxy_support import Sluiced
    from lib.net import wait_port
    s = factory([sink.address], conf=conf, start=False)
    from lib.proc import Proc
    from test_proxy_support import sluiced_binary
    s.proc = Proc([sluiced_binary(), "-c", s.conf_path], s.workdir / "logs", "sluiced")
    wait_port(s.host, s.port, timeout=10, proc=s.proc.popen)
    return s


@pytest.mark.parametrize("sink", [{"reject_rcpt": "bad"}], indirect=True)
def test_refused_commands_are_logged_with_their_codes(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with raw_connect(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<a@example.test> NOSUCHPARAM=1").code == 555  # sluice's own
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<bad@example.test>").code == 550  # the upstream's
        assert c.cmd("RCPT TO:<good@example.test>").code == 250
        c.cmd("QUIT")
    rec = s.wait_sessions(1)[0]
    ref = rec["refusals"].split("; ")
    assert [r[:8] for r in ref] == ["MAIL 555", "RCPT 550"], rec["refusals"]


# A Postfix that refuses a sender at MAIL and a recipient at RCPT (the
# inline maps' texts are its own), on PIPELINING: the session log names the
# command each refusal answered, which sluiced could not tell from the bytes.
REFUSING_POSTFIX = {
    "smtpd_delay_reject": "no",
    "smtpd_sender_restrictions":
        "check_sender_access inline:{{bad-sender@example.test = 553 5.7.1 sender refused by the testbed}}",
    "smtpd_recipient_restrictions":
        "check_recipient_access inline:{{reject-me@example.test = 550 5.1.1 refused by the testbed}}"
        " check_recipient_access static:HOLD",
}


@pytest.mark.parametrize("postfix_upstream", [{"main_cf": REFUSING_POSTFIX}], indirect=True)
def test_refusals_name_their_commands_postfix(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address])
    with raw_connect(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<bad-sender@example.test>").code == 553
        # One write: the replies come back in order, and only the relay knows
        # which command each answered.
        c.send(b"MAIL FROM:<a@example.test>\r\n"
               b"RCPT TO:<reject-me@example.test>\r\n"
               b"RCPT TO:<user@example.test>\r\n"
               b"DATA\r\n")
        codes = [c.read_reply().code for _ in range(4)]
        assert codes == [250, 550, 250, 354], codes
        c.send(b"Subject: t\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        c.cmd("QUIT")
    rec = s.wait_sessions(1)[0]
    ref = rec["refusals"].split("; ")
    assert len(ref) == 2, rec["refusals"]
    assert ref[0].startswith("MAIL 553 5.7.1 <bad-sender@example.test>"), ref
    assert "sender refused by the testbed" in ref[0], ref
    assert ref[1].startswith("RCPT 550 5.1.1 <reject-me@example.test>"), ref
    assert "refused by the testbed" in ref[1], ref
    # The refusals are Postfix's: its log has both, and the message went
    # through to the one accepted recipient.
    postfix_upstream.wait_log(r"reject: MAIL from .*bad-sender@example\.test")
    postfix_upstream.wait_log(r"reject: RCPT from .*reject-me@example\.test")
    held = postfix_upstream.wait_held(1)
    assert held[0].recipients == ["user@example.test"], held[0]
