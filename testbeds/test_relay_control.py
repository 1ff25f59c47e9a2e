"""Relay control in front of an upstream that trusts sluice's address.

The Postfix upstream here is an open relay for sluice: its mynetworks holds
127.0.0.0/8 and smtpd_relay_restrictions starts with permit_mynetworks, as in
Postfix's own before-queue proxy example (SMTPD_PROXY_README).  sluice must
then do the relay control itself (../shared/SECURITY.md, "Open relay").
Judged from Postfix's log and queue: the refused recipients never reach it,
the local-domain one is queued (held).
"""
import re

import pytest

from lib.clients import RawSMTP
from test_proxy_support import sluiced_factory  # noqa: F401

OPEN_RELAY = {
    "mynetworks": "127.0.0.0/8",
    "relay_domains": "local.test",
    "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
}

REFUSED = {
    "foreign.test": ("v@foreign.test", 554),
    "source route": ("@local.test:v@foreign.test", 554),
    "percent hack": ("v%foreign.test@local.test", 554),
    "bang path": ("foreign.test!v@local.test", 554),
    "quoted @": ('"v@foreign.test"@local.test', 554),
    "address literal": ("v@[192.0.2.1]", 554),
}


def _rcpt_lines(postfix):
    """Every recipient Postfix's smtpd saw, refused or accepted, from its log."""
    return re.findall(r"to=<([^>]*)>", postfix.log())


def test_postfix_is_an_open_relay_without_sluice(postfix_factory):
    """The control: straight to this Postfix, a foreign recipient and a percent
    hack are accepted, so the refusals below are sluice's doing."""
    pf = postfix_factory(main_cf=OPEN_RELAY)
    with RawSMTP(pf.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@sender.test>").code == 250
        assert c.cmd("RCPT TO:<v@foreign.test>").code == 250
        assert c.cmd("RCPT TO:<v%foreign.test@local.test>").code == 250
        assert c.cmd("QUIT").code == 221


def test_relay_control_in_front_of_an_open_relay(postfix_factory, sluiced_factory):  # noqa: F811
    pf = postfix_factory(main_cf=OPEN_RELAY)
    s = sluiced_factory([pf.address], conf={"relay_domains": "local.test, .local.test"})
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@sender.test>").code == 250
        for what, (rcpt, code) in REFUSED.items():
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            assert r.code == code, (what, r)
            assert "Relay access denied" in r.text, (what, r)
        assert c.cmd("RCPT TO:<v@local.test>").code == 250
        assert c.cmd("RCPT TO:<w@mx.local.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: relay control\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        assert c.cmd("QUIT").code == 221
    held = pf.wait_held(1)
    assert len(held) == 1
    assert sorted(held[0].recipients) == ["v@local.test", "w@mx.local.test"]
    pf.wait_log(r"disconnect from")
    seen = _rcpt_lines(pf)
    for what, (rcpt, _) in REFUSED.items():
        assert rcpt not in seen, (what, seen)
    assert "foreign.test" not in pf.log()
    assert "192.0.2.1" not in pf.log()
    # sluiced's own account: the session line and the counter
    sess = s.wait_sessions(1)[0]
    assert sess.get("relay_denied") == len(REFUSED), sess
    assert s.metric("sluice_recipients_relay_denied_total") == len(REFUSED)


def test_default_refuses_every_recipient(postfix_factory, sluiced_factory):  # noqa: F811
    """No relay_domains at all: sluiced warns at startup and defers (454)
    every recipient; nothing reaches Postfix."""
    pf = postfix_factory(main_cf=OPEN_RELAY)
    s = sluiced_factory([pf.address], conf={"relay_domains": []})
    assert "relay_domains is not set" in s.stderr()
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@sender.test>").code == 250
        r = c.cmd("RCPT TO:<v@local.test>")
        assert r.code == 454 and "Relay access denied" in r.text, r
        assert c.cmd("QUIT").code == 221
    pf.wait_log(r"disconnect from")
    assert "v@local.test" not in pf.log()
    assert pf.held() == []


def test_mynetworks_bypass(postfix_factory, sluiced_factory):  # noqa: F811
    """A client in sluice's mynetworks is trusted, as Postfix's
    permit_mynetworks: its foreign recipient is relayed."""
    pf = postfix_factory(main_cf=OPEN_RELAY)
    s = sluiced_factory([pf.address], conf={"relay_domains": "local.test",
                                            "mynetworks": "127.0.0.0/8"})
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@sender.test>").code == 250
        assert c.cmd("RCPT TO:<v@foreign.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: trusted\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        assert c.cmd("QUIT").code == 221
    held = pf.wait_held(1)
    assert held[0].recipients == ["v@foreign.test"]


@pytest.mark.parametrize("line,code", [
    (b"MAIL FROM:<\xc0\xaf@sender.test> SMTPUTF8", 500),   # overlong '/'
    (b"MAIL FROM:<\xc3\xa9@sender.test>", 553),             # 8-bit without SMTPUTF8
])
def test_bad_utf8_never_reaches_postfix(postfix_factory, sluiced_factory, line, code):  # noqa: F811
    pf = postfix_factory(main_cf=OPEN_RELAY)
    s = sluiced_factory([pf.address], conf={"relay_domains": "local.test"})
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        c.send(line + b"\r\n")
        assert c.read_reply().code == code
        assert c.cmd("QUIT").code == 221
    pf.wait_log(r"disconnect from")
    assert "sender.test" not in pf.log()


def test_utf8_address_with_smtputf8_relayed(postfix_factory, sluiced_factory):  # noqa: F811
    pf = postfix_factory(main_cf=OPEN_RELAY)
    s = sluiced_factory([pf.address], conf={"relay_domains": "local.test"})
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        r = c.cmd("EHLO client.test")
        assert r.code == 250 and "SMTPUTF8" in r.text, r
        c.send("MAIL FROM:<élise@sender.test> SMTPUTF8\r\n".encode())
        assert c.read_reply().code == 250
        c.send("RCPT TO:<Ünïcode@local.test>\r\n".encode())
        assert c.read_reply().code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: utf8\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        assert c.cmd("QUIT").code == 221
    held = pf.wait_held(1)
    assert held[0].recipients == ["Ünïcode@local.test"]
