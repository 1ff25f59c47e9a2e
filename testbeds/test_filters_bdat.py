"""Filtered BDAT stays BDAT (issue 11): a client's chunked message through
sluiced with a content filter (the scripted python3-milter that rejects on
a header) into a real Postfix.  With CHUNKING upstream the client's LAST
chunk goes up as a plain chunk and "BDAT 0 LAST" waits for the verdict: a
refusal ends the upstream transaction with RSET (Postfix's log shows it,
its queue has nothing of the message) and the next transaction of the same
client session goes through; an accepted message arrives byte-exact.
Against Postfix with smtpd_discard_ehlo_keywords = chunking the same
session goes upstream as DATA.  Judged from the client's replies and the
receiving Postfix's queue and log."""
import re

import pytest

from lib.clients import RawSMTP
from lib.filters import milters, _require_root  # noqa: F401
from lib.postfix import PostfixInstance, service
from test_filters_support import QueueStep, filtered_sluiced, message  # noqa: F401

pytestmark = pytest.mark.deadline(120)

# Postfix logs every command line of a loopback client ("< ...: RSET") and a
# command count per session in its disconnect line ("bdat=3 rset=1").
DEBUG = {"debug_peer_list": "127.0.0.1", "debug_peer_level": "1"}


@pytest.fixture(scope="module")
def bdat_postfix():
    """A private Postfix: its main listener offers CHUNKING (Postfix's
    default), the extra listener "nochunking" does not."""
    _require_root("bdat_postfix")
    pf = PostfixInstance(hostname="bdat-receiver.test", main_cf=dict(DEBUG),
                         extra_smtpd={"nochunking": {"smtpd_discard_ehlo_keywords": "chunking",
                                                     **DEBUG}})
    yield pf
    pf.stop()


def chunks_of(data: bytes, sizes):
    """data cut into chunks of the given sizes, the rest as the last one."""
    out, at = [], 0
    for n in sizes:
        out.append(data[at:at + n])
        at += n
    out.append(data[at:])
    return out


def bdat_transaction(c, chunks, log):
    """MAIL, RCPT and the chunks as BDAT (the last one LAST) on an open
    session; the reply to each chunk, as (code, text)."""
    for cmd in ("MAIL FROM:<sender@example.test>", "RCPT TO:<rcpt@example.test>"):
        r = c.cmd(cmd)
        log.append(f"{cmd} -> {r.code} {r.text}")
        assert r.code == 250, log
    replies = []
    for i, part in enumerate(chunks):
        last = " LAST" if i == len(chunks) - 1 else ""
        c.send(f"BDAT {len(part)}{last}\r\n".encode() + part)
        r = c.read_reply()
        log.append(f"BDAT {len(part)}{last} -> {r.code} {r.text}")
        replies.append((r.code, r.text))
    return replies


SPAM = message("bdat spam", body="flagged for the milter\n.a dot line\nend",
               headers=("X-Sluice-Verdict: reject",))
# Dots at line starts, a line of one dot, a chunk boundary inside CRLF.
HAM = message("bdat ham", body=".leading dot\n.\n..two dots\nlast line")
HAM_CUTS = (40, 33, 1)


def stored(msg) -> bytes:
    """A message as the receiver keeps it (lib.receiver: LF line ends)."""
    return msg.replace(b"\r\n", b"\n")


def sluiced_for(factory, receiver, milter, **conf):
    """Stream mode: the filters do not change the message, so BDAT stays
    BDAT (spool mode hands the upstream a changed DATA body)."""
    return factory(receiver.address, [f"milter {milter.filter_address} name=m-reject"],
                   conf={"filter_mode": "stream", **conf})


def sessions(text):
    return re.findall(r"disconnect from [^\n]*", text)


def test_rejected_bdat_is_reset_and_next_one_delivered(milters, bdat_postfix, filtered_sluiced):
    s = sluiced_for(filtered_sluiced, bdat_postfix, milters["reject"])
    step = QueueStep(bdat_postfix)
    mark = bdat_postfix.log_mark()
    log = []
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        ehlo = c.cmd("EHLO client.test")
        assert "CHUNKING" in ehlo.text, ehlo.text
        spam = bdat_transaction(c, chunks_of(SPAM, (50,)), log)
        ham = bdat_transaction(c, chunks_of(HAM, HAM_CUTS), log)
        assert c.cmd("QUIT").code == 221
    what = "\n".join(log) + f"\n--- sluiced:\n{s.stderr()[-3000:]}"
    # The first chunk is the upstream's own 250; the LAST one the milter's refusal.
    assert spam[0][0] == 250, what
    assert spam[-1][0] == 550 and "rejected by the test milter" in spam[-1][1], what
    assert [code for code, _ in ham] == [250] * len(ham), what
    new = step.new()
    assert [m.data for m in new] == [stored(HAM)], (what, [m.data for m in new])
    text = bdat_postfix.log_since(mark)
    # One upstream session carried both: the refused message ended with RSET
    # (never "BDAT 0 LAST"), the accepted one with "BDAT 0 LAST".
    lines = sessions(text)
    lines = [l for l in lines if "commands=0/0" not in l]  # sluiced's health checks
    assert len(lines) == 1 and "rset=1" in lines[0] and "bdat=" in lines[0], (lines, text[-4000:])
    commands = re.findall(r"< [^:]+: (BDAT [^\n]*|RSET|DATA|MAIL[^\n]*)", text)
    assert "DATA" not in commands, commands
    rset = commands.index("RSET")
    assert "BDAT 0 LAST" not in commands[:rset], commands
    assert commands[rset - 1] == f"BDAT {len(SPAM) - 50}", commands
    assert commands[-1] == "BDAT 0 LAST", commands
    assert milters["reject"].seen()[-2:] == ["reject reject <sender@example.test>",
                                             "reject accept <sender@example.test>"], \
        milters["reject"].seen()


def test_accepted_bdat_byte_exact(milters, bdat_postfix, filtered_sluiced):
    s = sluiced_for(filtered_sluiced, bdat_postfix, milters["reject"])
    step = QueueStep(bdat_postfix)
    log = []
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        # one chunk per line and a LAST chunk that is empty
        parts = [line + b"\n" for line in HAM.split(b"\n")[:-1]] + [b""]
        replies = bdat_transaction(c, parts, log)
        assert c.cmd("QUIT").code == 221
    what = "\n".join(log) + f"\n--- sluiced:\n{s.stderr()[-3000:]}"
    assert [code for code, _ in replies] == [250] * len(replies), what
    assert "queued as" in replies[-1][1], what  # Postfix's own reply to the end
    new = step.new()
    assert [m.data for m in new] == [stored(HAM)], (what, [m.data for m in new])


def test_without_chunking_upstream_goes_as_data(milters, bdat_postfix, filtered_sluiced):
    up = service(bdat_postfix, "nochunking")
    # screen mode offers CHUNKING before it knows the upstream lacks it
    s = sluiced_for(filtered_sluiced, up, milters["reject"], mode="screen")
    step = QueueStep(bdat_postfix)
    mark = bdat_postfix.log_mark()
    log = []
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        assert "CHUNKING" in c.cmd("EHLO client.test").text
        spam = bdat_transaction(c, chunks_of(SPAM, (50,)), log)
        ham = bdat_transaction(c, chunks_of(HAM, HAM_CUTS), log)
        assert c.cmd("QUIT").code == 221
    what = "\n".join(log) + f"\n--- sluiced:\n{s.stderr()[-3000:]}"
    assert spam[-1][0] == 550 and "rejected by the test milter" in spam[-1][1], what
    assert [code for code, _ in ham] == [250] * len(ham), what
    new = step.new()
    assert [m.data for m in new] == [stored(HAM)], (what, [m.data for m in new])
    text = bdat_postfix.log_since(mark)
    commands = re.findall(r"< [^:]+: (BDAT[^\n]*|RSET|DATA)", text)
    assert commands and all(c == "DATA" for c in commands), commands
    # The refused message's leg was closed without its terminator; the
    # next message came on a new one.
    lines = [l for l in sessions(text) if "commands=0/0" not in l]
    assert len(lines) == 2 and "data=0/1" in lines[0] and "data=1" in lines[1], lines
