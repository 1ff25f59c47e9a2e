"""Capability mismatch between the two legs (SECURITY.md 1.5, guarantee 8),
judged from a real Postfix's own queue and log.

Screen mode answers EHLO before it knows its upstream, so it may promise a
client CHUNKING, DSN, SMTPUTF8... that the upstream it reaches lacks.  The
upstream must still only receive what its own EHLO reply offered: a BDAT
transaction arrives as one DATA transaction (byte-exact content, and a
"MAIL FROM:" line inside a chunk never becomes a transaction of its own),
parameters of missing extensions are dropped or refused, and once the
health checks have read the pool's EHLO replies, screen mode no longer
offers what the pool lacks.

The control test shows what is at stake: the same bytes sent straight to
that Postfix run the smuggled transaction.
"""
import re
import time

import pytest

from lib.net import wait_for
from test_proxy_support import raw_connect, sluiced_factory  # noqa: F401

NO_CHUNKING = {"smtpd_discard_ehlo_keywords": "chunking"}
# Postfix offers none of the extensions sluice can downgrade or refuse.
BARE = {"smtpd_discard_ehlo_keywords": "chunking, dsn, smtputf8, 8bitmime, size"}

LEGIT = "legit@example.test"
RCPT = "user@example.test"

# Lines that would be commands if the upstream ever read chunk bytes as
# SMTP: a whole second transaction, with dots that need stuffing.
SMUGGLED = (b"RSET\r\n"
            b"MAIL FROM:<smuggled@evil.test>\r\n"
            b"RCPT TO:<victim@example.test>\r\n"
            b"DATA\r\n"
            b"From: ceo@example.test\r\n\r\nsmuggled\r\n"
            b".\r\n")

CONTENT = (b"From: legit@example.test\r\n"
           b"To: user@example.test\r\n"
           b"Subject: chunked through sluice\r\n"
           b"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\n"
           b"Message-ID: <bdat-downgrade@example.test>\r\n"
           b"\r\n"
           b"first line\r\n"
           + SMUGGLED +
           b"..two dots\r\n"
           b".leading dot\r\n"
           b"\r\n"
           b"last line\r\n")


# Chunk boundaries that matter: a CRLF split between two chunks, a chunk
# that starts with a "." line, a one-byte chunk.
CRLF_CUT = CONTENT.index(b"\r\nRCPT TO:<victim") + 1
DOT_CUT = CONTENT.index(b"\r\n.\r\n") + 2


def ehlo_keywords(reply):
    return [l.split()[0].upper() for l in reply.lines[1:] if l.split()]


def bdat_session(address, content, cuts, mail_params="", rcpt_params=""):
    """EHLO, MAIL, RCPT, then content in BDAT chunks cut at the given offsets
    (all chunks pipelined in one write); returns (ehlo reply, replies)."""
    with raw_connect(address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        ehlo = c.read_reply()
        r = c.cmd(f"MAIL FROM:<{LEGIT}>{mail_params}")
        assert r.code == 250, r
        r = c.cmd(f"RCPT TO:<{RCPT}>{rcpt_params}")
        assert r.code == 250, r
        bounds = [0] + list(cuts) + [len(content)]
        wire = b""
        for i in range(len(bounds) - 1):
            chunk = content[bounds[i]:bounds[i + 1]]
            last = " LAST" if i == len(bounds) - 2 else ""
            wire += f"BDAT {len(chunk)}{last}\r\n".encode() + chunk
        c.send(wire)
        replies = [c.read_reply(timeout=15) for _ in range(len(bounds) - 1)]
        c.send(b"QUIT\r\n")
        try:
            c.read_reply(timeout=5)
        except (ConnectionError, TimeoutError):
            pass
    return ehlo, replies


def held_content(pf, held):
    """The message as Postfix queued it, from our first header on (postcat
    prints it with LF line ends; Postfix adds its own Received: first)."""
    text = held.text
    start = text.index("From: legit@example.test")
    return text[start:]


def transactions(pf):
    """Senders of the transactions Postfix's smtpd and cleanup logged."""
    return re.findall(r"from=<([^>]*)>", pf.log())


def direct_bdat(address, chunk):
    """The client's BDAT straight to a server; returns the codes it said."""
    codes = []
    with raw_connect(address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        assert "CHUNKING" not in ehlo_keywords(c.read_reply())
        assert c.cmd(f"MAIL FROM:<{LEGIT}>").code == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>").code == 250
        c.send(f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                codes.append(c.read_reply(timeout=2).code)
            except (TimeoutError, ConnectionError, ValueError):
                break
        try:
            c.send(b"QUIT\r\n")
        except OSError:
            pass
    return codes


def test_control_postfix_refuses_bdat(postfix_factory):
    """Without sluice: Postfix without CHUNKING answers BDAT with a permanent
    error and hangs up, so the client's mail bounces."""
    pf = postfix_factory(main_cf=NO_CHUNKING)
    codes = direct_bdat(pf.address, CONTENT)
    assert codes and codes[0] >= 500, codes
    time.sleep(1)
    assert pf.held() == []


def test_control_aiosmtpd_runs_chunk_bytes_as_commands(aiosmtpd_upstream):
    """Without sluice: a server without BDAT refuses the command, then reads
    the chunk's bytes as commands, and the smuggled transaction is queued."""
    codes = direct_bdat(aiosmtpd_upstream.address, SMUGGLED)
    assert codes and codes[0] >= 500, codes
    msgs = aiosmtpd_upstream.wait_messages(1)
    assert [m.envelope["mail_from"] for m in msgs] == ["smuggled@evil.test"]


def test_bdat_to_aiosmtpd_without_bdat(aiosmtpd_upstream, sluiced_factory):
    """Through sluice, the same client reaches the same server with exactly
    its one message, byte for byte."""
    s = sluiced_factory([aiosmtpd_upstream.address], conf={"mode": "screen"})
    ehlo, replies = bdat_session(s.address, CONTENT, (CRLF_CUT, DOT_CUT))
    assert "CHUNKING" in ehlo_keywords(ehlo)
    assert [r.code for r in replies] == [250, 250, 250], replies
    s.wait_sessions(1)
    msgs = aiosmtpd_upstream.wait_messages(1)
    time.sleep(0.5)
    msgs = aiosmtpd_upstream.messages()
    assert len(msgs) == 1
    assert msgs[0].envelope["mail_from"] == LEGIT
    assert msgs[0].envelope["rcpt_tos"] == [RCPT]
    assert msgs[0].data == CONTENT


@pytest.mark.parametrize("cuts", [(), (30,), (7, CRLF_CUT, DOT_CUT, DOT_CUT + 1)],
                         ids=["one-chunk", "two-chunks", "crlf-and-dot-splits"])
def test_bdat_to_postfix_without_chunking(postfix_factory, sluiced_factory, cuts):
    """A BDAT client through screen mode to a Postfix without CHUNKING: the
    message arrives byte-exact, as the one transaction the client opened."""
    pf = postfix_factory(main_cf=NO_CHUNKING)
    s = sluiced_factory([pf.address], conf={"mode": "screen"})
    ehlo, replies = bdat_session(s.address, CONTENT, cuts)
    # Promised before the upstream was known (no health checks here) ...
    assert "CHUNKING" in ehlo_keywords(ehlo)
    # ... so every non-LAST chunk gets a 250 that claims nothing, and LAST
    # gets Postfix's own reply to the end of data.
    for r in replies[:-1]:
        assert r.code == 250 and "queued" not in " ".join(r.lines), r
    assert replies[-1].code == 250, replies[-1]
    assert "queued as" in replies[-1].lines[-1], replies[-1]
    s.wait_sessions(1)
    held = pf.wait_held(1, timeout=15)
    time.sleep(0.5)
    held = pf.wait_held(1)
    assert len(held) == 1, [h.sender for h in held]
    assert held[0].sender == LEGIT and held[0].recipients == [RCPT]
    assert held_content(pf, held[0]) == CONTENT.decode().replace("\r\n", "\n")
    # Postfix's own account of the session: exactly the client's one
    # transaction, as DATA; no BDAT, RSET or unknown command ever reached it,
    # and one EHLO (the client's own, replayed: no probe before it).
    log = pf.log()
    assert re.search(r"disconnect from \S+ ehlo=1 mail=1 rcpt=1 data=1 quit=1 "
                     r"commands=5\n", log), log[-2000:]
    assert transactions(pf) == [LEGIT], log[-2000:]
    assert "smuggled@evil.test" not in log and "victim@example.test" not in log


def test_bdat_refused_data_reaches_last_chunk(postfix_factory, sluiced_factory):
    """Postfix refuses DATA (no valid recipient): the first chunk gets that
    refusal, the LAST one a failure too, no chunk byte reaches Postfix as a
    command, and the next transaction of the session goes through."""
    pf = postfix_factory(main_cf={**NO_CHUNKING,
                                  "smtpd_recipient_restrictions":
                                      "check_recipient_access inline:{nobody@example.test=REJECT}, "
                                      "check_recipient_access static:HOLD"})
    s = sluiced_factory([pf.address], conf={"mode": "screen"})
    with raw_connect(s.address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        assert "CHUNKING" in ehlo_keywords(c.read_reply())
        # a client that pipelines the whole transaction (RFC 2920, 3030):
        # sluice relays DATA before the RCPT's refusal is known, so the
        # refusal comes from Postfix, to DATA
        c.send(f"MAIL FROM:<{LEGIT}>\r\nRCPT TO:<nobody@example.test>\r\n"
               f"BDAT {len(SMUGGLED)}\r\n".encode() + SMUGGLED +
               b"BDAT 7 LAST\r\nend\r\n\r\n")
        mail, rcpt = c.read_reply(timeout=15), c.read_reply(timeout=15)
        first, last = c.read_reply(timeout=15), c.read_reply(timeout=15)
        assert mail.code == 250 and rcpt.code >= 500, (mail, rcpt)
        assert first.code == 554 and "no valid recipients" in first.text, (first, pf.log()[-3000:])
        assert last.code == 554, last
        # the client's transaction ended with LAST: it starts a new one at
        # once, and Postfix (whose DATA refusal left its MAIL in force) must
        # not see it as nested
        assert c.cmd(f"MAIL FROM:<{LEGIT}>").code == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>").code == 250
        c.send(f"BDAT {len(CONTENT)} LAST\r\n".encode() + CONTENT)
        assert c.read_reply(timeout=15).code == 250
        c.send(b"QUIT\r\n")
    s.wait_sessions(1)
    held = pf.wait_held(1, timeout=15)
    time.sleep(0.5)
    held = pf.held()
    assert [h.get("sender") for h in held] == [LEGIT]
    assert "smuggled@evil.test" not in pf.log()
    assert "nested MAIL" not in pf.log()


def test_command_between_downgraded_chunks(postfix_factory, sluiced_factory):
    """Between two chunks of a BDAT transaction downgraded to DATA, Postfix
    is reading a message body: a RCPT the client sends there must not reach
    it (it would be message content, and its reply would never come).
    sluice answers NOOP itself and lets the RCPT abort the transaction: the
    client gets an answer at once, Postfix queues nothing and its log shows
    the DATA aborted by the lost connection, and the next transaction of the
    same session is delivered."""
    pf = postfix_factory(main_cf={**NO_CHUNKING,
                                  "smtpd_recipient_restrictions": "check_recipient_access static:HOLD"})
    s = sluiced_factory([pf.address], conf={"mode": "screen"})
    with raw_connect(s.address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        assert "CHUNKING" in ehlo_keywords(c.read_reply())
        assert c.cmd(f"MAIL FROM:<{LEGIT}>").code == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>").code == 250
        chunk = b"Subject: aborted\r\n\r\nfirst\r\n"
        c.send(f"BDAT {len(chunk)}\r\n".encode() + chunk)
        assert c.read_reply(timeout=15).code == 250
        assert c.cmd("NOOP").code == 250
        t = time.monotonic()
        r = c.cmd("RCPT TO:<victim@example.test>", timeout=15)
        assert r.code == 503 and time.monotonic() - t < 5, r
        # a new transaction, delivered
        assert c.cmd(f"MAIL FROM:<{LEGIT}>").code == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>").code == 250
        c.send(f"BDAT {len(CONTENT)} LAST\r\n".encode() + CONTENT)
        assert c.read_reply(timeout=15).code == 250
        c.send(b"QUIT\r\n")
    s.wait_sessions(1)
    held = pf.wait_held(1, timeout=15)
    time.sleep(0.5)
    held = pf.wait_held(1)
    assert len(held) == 1, [h.sender for h in held]
    assert held_content(pf, held[0]) == CONTENT.decode().replace("\r\n", "\n")
    log = pf.log()
    assert "victim@example.test" not in log
    assert "Subject: aborted" not in "".join(h.text for h in held)
    assert re.search(r"lost connection after DATA", log), log[-3000:]


def test_parameters_to_postfix_without_extensions(postfix_factory, sluiced_factory):
    """DSN and SIZE parameters are dropped for a Postfix that offers neither
    (it would refuse them); SMTPUTF8 and BODY=8BITMIME are refused by sluice
    with RFC 6531 / RFC 6152 codes and never reach Postfix."""
    pf = postfix_factory(main_cf=BARE)
    s = sluiced_factory([pf.address], conf={"mode": "screen"})
    with raw_connect(s.address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        kw = ehlo_keywords(c.read_reply())
        assert {"DSN", "SMTPUTF8", "8BITMIME", "SIZE"} <= set(kw), kw
        r = c.cmd(f"MAIL FROM:<{LEGIT}> SMTPUTF8")
        assert r.code == 553 and r.lines[0].startswith("5.6.7"), r
        r = c.cmd(f"MAIL FROM:<{LEGIT}> BODY=8BITMIME")
        assert r.code == 550 and r.lines[0].startswith("5.6.3"), r
        r = c.cmd(f"MAIL FROM:<{LEGIT}> SIZE=2000 RET=HDRS ENVID=env+2B1")
        assert r.code == 250, r
        r = c.cmd(f"RCPT TO:<{RCPT}> NOTIFY=SUCCESS,FAILURE "
                  "ORCPT=rfc822;first+2Brecipient@example.test")
        assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(b"From: legit@example.test\r\nSubject: params\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply(timeout=15).code == 250
        c.send(b"QUIT\r\n")
    held = pf.wait_held(1, timeout=15)
    assert [h.sender for h in held] == [LEGIT]
    log = pf.log()
    assert "Unsupported option" not in log and "reject" not in log, log[-2000:]
    # no DSN request survived into Postfix's queue file (it records the
    # recipient itself as the original one when no ORCPT was given)
    raw = held[0].raw
    for absent in ("dsn_envid", "dsn_ret", "dsn_notify", "first+recipient", "env+2B1"):
        assert absent not in raw, raw


def test_control_postfix_refuses_parameters(postfix_factory):
    """Without sluice: the parameters screen mode promised are refused by
    this Postfix, so a direct client would have failed."""
    pf = postfix_factory(main_cf=BARE)
    with raw_connect(pf.address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        kw = ehlo_keywords(c.read_reply())
        assert not {"DSN", "SMTPUTF8", "8BITMIME", "SIZE", "CHUNKING"} & set(kw), kw
        r = c.cmd(f"MAIL FROM:<{LEGIT}> SIZE=2000 RET=HDRS ENVID=env+2B1")
        assert r.code >= 500, r
        c.send(b"QUIT\r\n")


def test_health_checks_narrow_screen_ehlo(postfix_factory, sluiced_factory):
    """With health checks on, screen mode's EHLO offers only what the healthy
    pool's own EHLO replies offered (and Postfix's SIZE)."""
    pf = postfix_factory(main_cf={"smtpd_discard_ehlo_keywords": "chunking, dsn, smtputf8",
                                  "message_size_limit": "5000000"})
    s = sluiced_factory([pf.address], conf={"mode": "screen", "health_interval": "1s"})

    def narrowed():
        with raw_connect(s.address, timeout=10) as c:
            assert c.read_reply().code == 220
            c.send(b"EHLO client.test\r\n")
            r = c.read_reply()
            c.send(b"QUIT\r\n")
        return r if "CHUNKING" not in ehlo_keywords(r) else None

    r = wait_for(narrowed, 15, interval=0.5, what="screen EHLO without CHUNKING")
    kw = ehlo_keywords(r)
    assert "DSN" not in kw and "SMTPUTF8" not in kw, kw
    assert "PIPELINING" in kw and "8BITMIME" in kw, kw
    assert "SIZE 5000000" in r.lines, r.lines
    # and mail still flows (as DATA)
    with raw_connect(s.address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.send(b"EHLO client.test\r\n")
        c.read_reply()
        c.send(b"BDAT 3 LAST\r\nabc")  # its chunk follows whatever the reply
        r = c.read_reply()
        assert r.code == 502, r  # CHUNKING is no longer offered
        assert c.cmd(f"MAIL FROM:<{LEGIT}>").code == 250
        assert c.cmd(f"RCPT TO:<{RCPT}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"From: legit@example.test\r\nSubject: after checks\r\n\r\nbody\r\n.\r\n")
        assert c.read_reply(timeout=15).code == 250
        c.send(b"QUIT\r\n")
    held = pf.wait_held(1, timeout=15)
    assert [h.sender for h in held] == [LEGIT]
