"""Greylisting before the upstream is connected (README "Greylisting before
the mail server is connected"): in screen-first mode with a RCPT check,
sluice answers the MAIL itself and connects to the mail server only for
the first RCPT that passes, so a greylisted first attempt costs a real
Postfix nothing, not even a connection; the retry after the delay is
delivered with the client's own envelope and identity; a sender Postfix
refuses gets Postfix's refusal at the RCPT and for the rest of the
transaction, and the client starts over.  Judged from Postfix's own log
and queue and from the client's replies."""
import re
import time

import pytest

from lib.policy_server import answering
from test_greylist import DELAY, grey_conf  # noqa: F401
from test_proxy_support import raw_connect, sluiced_factory  # noqa: F401

CONNECT = re.compile(r"/smtpd\[\d+\]: connect from ")


def connects(pf):
    return len(CONNECT.findall(pf.log()))


def baseline(pf):
    """Connections so far, once the fixture's own port probe is logged."""
    pf.wait_log(r"disconnect from ")
    return connects(pf)


def session_ends(s, n):
    return s.wait_sessions(n)


XFWD_OK = {"main_cf": {"smtpd_authorized_xforward_hosts": "127.0.0.0/8",
                       "smtpd_authorized_xclient_hosts": ""}}


@pytest.mark.parametrize("postfix_upstream,identity", [({}, "xclient"), (XFWD_OK, "xforward")],
                         indirect=["postfix_upstream"])
def test_greylisted_first_attempt_never_reaches_postfix(postfix_upstream, identity,
                                                        sluiced_factory):
    pf = postfix_upstream
    s = sluiced_factory([pf.address], conf=grey_conf(identity=identity))
    before = baseline(pf)
    with raw_connect(s.address, source_ip="127.0.0.81") as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO bot.test").code == 250
        # pipelined, as a bulk sender does: MAIL, RCPT, DATA in one write
        c.send(b"MAIL FROM:<news@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\n")
        mail, rcpt, data = c.read_reply(), c.read_reply(), c.read_reply()
        assert mail.code == 250 and mail.text == "2.1.0 Ok", mail
        assert rcpt.code == 450 and "Greylisted" in rcpt.text, rcpt
        assert data.code == 503, data
        assert c.cmd("QUIT").code == 221
    rec = session_ends(s, 1)[-1]
    assert rec.get("upstream_attempts", 0) == 0, rec
    time.sleep(1.0)  # postlogd writes a little after the fact
    assert connects(pf) == before, pf.log()[-2000:]
    assert pf.queue() == []

    time.sleep(DELAY + 0.5)
    with raw_connect(s.address, source_ip="127.0.0.81") as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO bot.test").code == 250
        c.send(b"MAIL FROM:<news@example.test> SIZE=60\r\nRCPT TO:<user@example.test>\r\n"
               b"RCPT TO:<other@example.test>\r\nDATA\r\n")
        replies = [c.read_reply() for _ in range(4)]
        assert [r.code for r in replies] == [250, 250, 450, 354], replies
        c.send(b"Subject: retry\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        assert c.cmd("QUIT").code == 221
    held = pf.wait_held(1)
    assert len(held) == 1
    env = held[0].raw
    # the envelope is the client's held MAIL, the identity the client's own
    assert held[0].sender == "news@example.test", env
    assert held[0].recipients == ["user@example.test"], env
    assert "log_client_address=127.0.0.81" in env, env
    assert "log_helo_name=bot.test" in env, env
    # one connection, for the retry, and one MAIL in it
    assert connects(pf) == before + 1, pf.log()[-2000:]


@pytest.mark.parametrize("postfix_upstream", [{"main_cf": {
    # refuse at MAIL itself, not at the next RCPT (Postfix's default delay)
    "smtpd_delay_reject": "no",
    "smtpd_sender_restrictions":
        "check_sender_access inline:{{bad@example.test=REJECT Sender refused by test}}"}}],
    indirect=True)
def test_postfix_refusing_the_held_sender(postfix_upstream, sluiced_factory):
    pf = postfix_upstream
    policy = answering(b"action=DUNNO\n\n")
    try:
        s = sluiced_factory([pf.address], conf={
            "mode": "screen", "greet_teaser": "no", "identity": "xclient",
            "policy_service": policy.address})
        with raw_connect(s.address, source_ip="127.0.0.82") as c:
            assert c.read_reply().code == 220
            assert c.cmd("EHLO client.test").code == 250
            c.send(b"MAIL FROM:<bad@example.test>\r\nRCPT TO:<user@example.test>\r\n"
                   b"RCPT TO:<user2@example.test>\r\nDATA\r\n")
            mail = c.read_reply()
            assert mail.code == 250, mail  # sluice's own, before any upstream
            refused = [c.read_reply() for _ in range(3)]
            # Postfix's refusal of the sender answers the RCPT, the next
            # RCPT and the DATA
            for r in refused:
                assert r.code == 554 and r.text.startswith("5.7.1 <bad@example.test>: Sender "
                                                           "address rejected: Sender refused "
                                                           "by test"), refused
            # the client starts over; the upstream is there now
            assert c.cmd("RSET").code == 250
            assert c.cmd("MAIL FROM:<good@example.test>").code == 250
            assert c.cmd("RCPT TO:<user@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: good\r\n\r\nhello\r\n.\r\n")
            assert c.read_reply().code == 250
            assert c.cmd("QUIT").code == 221
        held = pf.wait_held(1)
        assert len(held) == 1
        assert held[0].sender == "good@example.test", held[0].raw
        log = pf.log()
        # Postfix saw the held MAIL once and refused it; it never saw the
        # RCPTs or the DATA of that transaction
        assert len(re.findall(r"Sender address rejected: Sender refused by test", log)) == 1, log
        assert "user2@example.test" not in log, log
        recs = s.wait_sessions(1)
        assert "554" in (recs[-1].get("refusals") or ""), recs[-1]
    finally:
        policy.stop()
