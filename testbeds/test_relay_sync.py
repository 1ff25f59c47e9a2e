"""Relay synchronisation against a real Postfix upstream (issue 8, defects 4
and 5), judged from Postfix's own queue and log.

- A client that pipelines more RCPTs than recipients_max (as Postfix's own
  smtp client does) gets 452 for the excess, not a 421: it sends DATA for
  the accepted ones and the message is in Postfix's queue for exactly those.
- A body pipelined after a DATA that Postfix refuses never reaches Postfix
  as commands, whether sluice forbids unauthorised pipelining (the default:
  554 5.5.0 and close) or not (the body is dropped up to its end).
"""
import time

import pytest

from lib.clients import RawSMTP
from test_proxy_support import sluiced_factory  # noqa: F401

REJECTING = {
    # nobody@ is refused at RCPT; every other recipient is accepted and held
    "smtpd_recipient_restrictions":
        "check_recipient_access inline:{nobody@example.test=REJECT}, "
        "check_recipient_access static:HOLD",
}


def replies(c, n, timeout=20):
    return [c.read_reply(timeout) for _ in range(n)]


def ehlo(c):
    assert c.read_reply().code == 220
    r = c.cmd("EHLO client.test")
    assert r.code == 250 and "PIPELINING" in r.text, r
    return r


@pytest.mark.deadline(120)
def test_pipelined_rcpt_overshoot_delivers_accepted(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address])  # recipients_max 100
    rcpts = [f"user{i}@example.test" for i in range(150)]
    with RawSMTP(s.address, timeout=20) as c:
        ehlo(c)
        # One pipelined group: MAIL and 150 RCPTs (RFC 2920 3.1 allows it).
        c.send("MAIL FROM:<sender@example.test>\r\n" +
               "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts))
        got = replies(c, 151)
        codes = [r.code for r in got]
        assert codes[0] == 250, got[0]
        assert codes[1:101] == [250] * 100, codes
        assert codes[101:] == [452] * 50, codes
        assert all("4.5.3" in r.text for r in got[101:])
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(b"Subject: overshoot\r\n\r\nfor the first hundred\r\n.\r\n")
        r = c.read_reply()
        assert r.code == 250, r
        # the session goes on
        assert c.cmd("NOOP").code == 250
        assert c.cmd("QUIT").code == 221
    held = postfix_upstream.wait_held(1)
    assert len(held) == 1
    assert sorted(held[0].recipients) == sorted(rcpts[:100])
    assert "for the first hundred" in held[0].text
    log = postfix_upstream.log()
    assert "user100@" not in log and "user149@" not in log


def _pipeline_refused_data(c):
    """MAIL, a refused RCPT, DATA and a body with commands in it, in one
    write, before any reply: what a blind pipeliner (or a smuggler) sends."""
    c.send("MAIL FROM:<sender@example.test>\r\n"
           "RCPT TO:<nobody@example.test>\r\n"
           "DATA\r\n"
           "Subject: early\r\n\r\n"
           "MAIL FROM:<evil-sender@example.test>\r\n"
           "RCPT TO:<evil@example.test>\r\n"
           "DATA\r\n"
           "smuggled\r\n"
           ".\r\n"
           "QUIT\r\n")


@pytest.mark.parametrize("postfix_upstream", [{"main_cf": REJECTING}], indirect=True)
def test_body_after_refused_data_dropped(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address],
                        conf={"forbid_unauth_pipelining": "no"})
    with RawSMTP(s.address, timeout=20) as c:
        ehlo(c)
        _pipeline_refused_data(c)
        got = replies(c, 4)
        codes = [r.code for r in got]
        # MAIL ok, RCPT refused, DATA refused (no valid recipients), then the
        # QUIT after the dropped body: nothing in between was a command.
        assert codes[0] == 250 and codes[1] == 554 and codes[2] in (503, 554), got
        assert codes[3] == 221, got
        assert c.expect_closed(10)
    postfix_upstream.wait_log(r"disconnect from")
    time.sleep(0.5)
    log = postfix_upstream.log()
    assert "nobody@example.test" in log  # Postfix saw and refused the RCPT
    assert "evil" not in log, log[-3000:]
    assert postfix_upstream.held() == []


@pytest.mark.parametrize("postfix_upstream", [{"main_cf": REJECTING}], indirect=True)
def test_body_after_data_default_sync_error(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address])  # forbid_unauth_pipelining on
    with RawSMTP(s.address, timeout=20) as c:
        ehlo(c)
        _pipeline_refused_data(c)
        got = []
        try:
            while True:
                got.append(c.read_reply(10))
        except (ConnectionError, TimeoutError, OSError):
            pass
        codes = [r.code for r in got]
        assert codes and codes[-1] == 554 and "5.5.0" in got[-1].text, got
        assert 221 not in codes
        assert c.expect_closed(10)
    time.sleep(1)
    log = postfix_upstream.log()
    assert "evil" not in log, log[-3000:]
    assert postfix_upstream.held() == []


def test_ehlo_and_mail_in_one_write_refused(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address])
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        c.send("EHLO client.test\r\nMAIL FROM:<sender@example.test>\r\n")
        r = c.read_reply()
        assert r.code == 554 and "5.5.0" in r.text, r
        assert c.expect_closed(10)
    time.sleep(0.5)
    assert "sender@example.test" not in postfix_upstream.log()


REFUSING_SENDER = {
    # bad@ is refused at MAIL (not at RCPT: no delayed reject); every
    # accepted message is held
    "smtpd_delay_reject": "no",
    "smtpd_sender_restrictions":
        "check_sender_access inline:{bad@example.test=REJECT}",
    "smtpd_recipient_restrictions": "check_recipient_access static:HOLD",
}


def _mail_after_refused_mail(address):
    """MAIL (refused), MAIL, RCPT, RCPT in one write, then DATA: the replies
    the client gets, and the message's fate."""
    with RawSMTP(address, timeout=20) as c:
        ehlo(c)
        c.send("MAIL FROM:<bad@example.test>\r\n"
               "MAIL FROM:<good@example.test>\r\n"
               "RCPT TO:<r1@example.test>\r\n"
               "RCPT TO:<r2@example.test>\r\n")
        codes = [r.code for r in replies(c, 4)]
        r = c.cmd("DATA")
        codes.append(r.code)
        if r.code == 354:
            c.send(b"Subject: second MAIL\r\n\r\nafter a refused one\r\n.\r\n")
            codes.append(c.read_reply().code)
        c.cmd("QUIT")
    return codes


@pytest.mark.deadline(120)
@pytest.mark.parametrize("postfix_upstream", [{"main_cf": REFUSING_SENDER}], indirect=True)
def test_pipelined_mail_after_refused_mail(postfix_upstream, sluiced_factory):
    """A MAIL pipelined behind a refused MAIL is a first MAIL to Postfix; the
    client gets through sluice what it gets from Postfix directly (the relay
    once answered 503 "nested MAIL" from its own guess)."""
    direct = _mail_after_refused_mail(postfix_upstream.address)
    assert direct[0] in (550, 553, 554) and direct[1:] == [250, 250, 250, 354, 250], direct
    s = sluiced_factory([postfix_upstream.address])
    assert _mail_after_refused_mail(s.address) == direct
    held = postfix_upstream.wait_held(2)
    assert len(held) == 2
    assert all(sorted(h.recipients) == ["r1@example.test", "r2@example.test"] for h in held)
