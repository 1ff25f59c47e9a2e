"""The Exim and OpenSMTPD fixtures on their own (conftest.py): a real client
(swaks) delivers, and the fixture's messages(), log and MAIL count see
exactly that; the receivers' own strictness is pinned where the matrix
relies on it."""
import pytest

from lib.clients import swaks
from lib.receiver import canonical
from lib.smtpraw import Session, send_tx

# Complete headers: OpenSMTPD adds a missing Date:, Exim and Postfix (as configured) add nothing.
MSG = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: fixture\r\n"
       b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n"
       b"Message-Id: <fixture@client.test>\r\n\r\nline one\r\n.leading dot\r\n.\r\nlast\r\n")


@pytest.mark.parametrize("fixture", ["exim_upstream", "opensmtpd_upstream"])
def test_swaks_message_arrives_byte_exact(request, fixture):
    r = request.getfixturevalue(fixture)
    mark = r.log_mark()
    res = swaks(r.address, to="b@example.test", from_="a@example.test", data=MSG)
    assert res.rc == 0, res.transcript
    r.wait_idle()
    msgs = r.messages()
    assert len(msgs) == 1
    m = msgs[0]
    assert m.sender == "a@example.test"
    assert m.rcpts == ["b@example.test"]
    assert m.data == canonical(MSG)
    assert m.stored != m.data and m.stored.startswith(b"Received:")   # the receiver's own header
    assert r.mail_commands(r.log_since(mark)) == 1


@pytest.mark.parametrize("fixture", ["exim_upstream", "opensmtpd_upstream"])
def test_refused_recipient_and_counts(request, fixture):
    r = request.getfixturevalue(fixture)
    mark = r.log_mark()
    with Session(r.address) as s:
        t = send_tx(s, "a@example.test", ["reject-me@example.test", "ok@example.test"], MSG,
                    bdat=False)
        assert [x.code for x in t.rcpt_replies] == [550, 250]
        assert t.delivered
        t2 = send_tx(s, "c@example.test", ["ok2@example.test"], MSG, bdat=False)
        assert t2.delivered
        s.cmd("QUIT")
    r.wait_idle()
    assert r.mail_commands(r.log_since(mark)) == 2
    assert [m.rcpts for m in r.messages()] == [["ok@example.test"], ["ok2@example.test"]]


def test_exim_offers_chunking_and_takes_bdat(exim_upstream):
    with Session(exim_upstream.address) as s:
        for kw in ("CHUNKING", "PIPELINING", "SMTPUTF8", "8BITMIME", "DSN"):
            assert s.has(kw), s.caps
        t = send_tx(s, "a@example.test", ["b@example.test"], MSG, bdat=True,
                    chunk_sizes=(10, 1, 5))
        assert t.delivered, t
        s.cmd("QUIT")
    exim_upstream.wait_idle()
    assert exim_upstream.messages()[0].data == canonical(MSG)


def test_opensmtpd_capabilities(opensmtpd_upstream):
    """What the matrix relies on: OpenSMTPD 6.8 lacks PIPELINING, CHUNKING, SMTPUTF8."""
    with Session(opensmtpd_upstream.address) as s:
        assert s.has("8BITMIME") and s.has("DSN") and s.has("ENHANCEDSTATUSCODES")
        assert not (s.has("PIPELINING") or s.has("CHUNKING") or s.has("SMTPUTF8")), s.caps
        s.cmd("QUIT")


def test_opensmtpd_refuses_a_second_ehlo(opensmtpd_upstream):
    """OpenSMTPD 6.8 answers a second EHLO with 503 "Already identified"
    (RFC 5321 4.1.4 allows it): a proxy that sends its own EHLO and then the
    client's gets this."""
    with Session(opensmtpd_upstream.address) as s:
        assert s.ehlo_reply.code == 250
        r = s.cmd("EHLO again.test")
        assert r.code == 503 and "Already identified" in r.text, r
        s.cmd("QUIT")
