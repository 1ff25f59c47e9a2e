"""SMTP smuggling through sluiced (SECURITY.md 1.1): every end-of-data
variant used by the public scanners, followed by a smuggled second
transaction, sent to aiosmtpd, sluice-sink and Postfix behind sluiced.  At
most the one legitimate message may arrive, and never the smuggled one."""
import time

import pytest

from lib.net import wait_for
from test_proxy_support import raw_connect, sluiced_factory  # noqa: F401

# hannob/smtpsmug and The-Login/SMTP-Smuggling-Tools end-of-data variants.
VARIANTS = [b"\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n",
            b"\r\n.\r", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n"]

SMUGGLED = (b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n")


def attempt(address, variant, rcpt="victim@example.test"):
    """One session with one smuggling attempt; returns the replies seen."""
    codes = []
    with raw_connect(address, timeout=10) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO attacker.test")
        assert c.cmd("MAIL FROM:<legit@example.test>").code == 250
        assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250
        assert c.cmd("DATA").code == 354
        try:
            c.send(b"Subject: legit\r\n\r\nlegit body" + variant + SMUGGLED + b"\r\n.\r\n")
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                try:
                    codes.append(c.read_reply(timeout=2).code)
                except TimeoutError:
                    break
            c.send(b"QUIT\r\n")
        except (ConnectionError, OSError):
            pass
    return codes


def check_upstream(messages, codes):
    """At most one message, and it is the legitimate one, with no bare CR/LF."""
    assert len(messages) <= 1, [m[:200] for m in messages]
    for data in messages:
        assert b"smuggled@evil" not in data or b"legit body" in data
        stripped = data.replace(b"\r\n", b"")
        assert b"\n" not in stripped and b"\r" not in stripped, data
    # A 250 for end-of-data only when the upstream accepted exactly one.
    assert codes.count(250) <= len(messages)


@pytest.mark.parametrize("variant", VARIANTS, ids=[repr(v)[2:-1] for v in VARIANTS])
def test_smuggling_to_aiosmtpd(aiosmtpd_upstream, sluiced_factory, variant):
    s = sluiced_factory([aiosmtpd_upstream.address])
    codes = attempt(s.address, variant)
    s.wait_sessions(1)
    msgs = [m for m in aiosmtpd_upstream.messages()]
    assert all(m.envelope["mail_from"] != "smuggled@evil.test" for m in msgs)
    check_upstream([m.data for m in msgs], codes)


@pytest.mark.parametrize("variant", VARIANTS, ids=[repr(v)[2:-1] for v in VARIANTS])
def test_smuggling_to_sink(sink, sluiced_factory, variant):
    s = sluiced_factory([sink.address])
    codes = attempt(s.address, variant)
    s.wait_sessions(1)
    # Completed messages only: an aborted upstream transaction may leave the
    # sink's ".tmp.N.eml" partial file behind, which was never accepted.
    msgs = [sink.message(int(p.stem)) for p in sink.maildir.glob("*.eml") if p.stem.isdigit()]
    assert all(m.envelope.mail_from != "<smuggled@evil.test>" for m in msgs)
    check_upstream([m.data for m in msgs], codes)


def test_smuggling_to_postfix(postfix_factory, sluiced_factory):
    # A Postfix that would accept bare-LF variants on its own (the vulnerable
    # "B" of the attack): sluiced must keep it safe.
    pf = postfix_factory(main_cf={"smtpd_forbid_bare_newline": "no"})
    s = sluiced_factory([pf.address])
    total_250 = 0
    for i, v in enumerate(VARIANTS):
        codes = attempt(s.address, v, rcpt="user@example.test")
        total_250 += codes.count(250)
    s.wait_sessions(len(VARIANTS))
    held = pf.wait_held(total_250, timeout=20) if total_250 else []
    time.sleep(1)
    held = pf.held()
    assert len(held) == total_250
    for h in held:
        assert h.get("sender") != "smuggled@evil.test"
