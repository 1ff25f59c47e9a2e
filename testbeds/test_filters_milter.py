"""Scripted milters (python3-milter) behind sluiced, each judged against the
same milter behind a real Postfix (smtpd_milters): the same message gets
the same verdict from both, seen by the client (exit status, reply code,
the milter's own text) and by the receiving Postfix's queue (how many
messages, which headers)."""
import pytest

from lib.filters import DIFFERENTIAL_MODES, MILTER_TIMEOUT_S  # noqa: F401
from lib.postfix import service
from test_filters_support import (QueueStep, assert_filter_counted, data_reply,  # noqa: F401
                                  filtered_sluiced, header_values, headers_and_body, message,
                                  reply_code, raw_send, transaction_code,
                                  session_filter_verdicts, wait_session_verdict)

# The first test to run also starts the session's daemons (Postfix, rspamd:
# 3-15 s each on a loaded machine) within its setup phase.
pytestmark = pytest.mark.deadline(120)

FLAGGED = ("X-Sluice-Verdict: reject",)

# (milter mode, message headers, expected code from both, text both replies
# carry, the verdicts sluiced's session log may name)
CASES = {
    "accept": ("accept", (), 250, None, ("accept",)),
    "reject-flagged": ("reject", FLAGGED, 550, "rejected by the test milter", ("reject",)),
    "reject-unflagged": ("reject", (), 250, None, ("accept",)),
    "addheader": ("addheader", (), 250, None, ("change", "accept")),
    "tempfail": ("tempfail", (), 451, "try again later, says the test milter", ("tempfail",)),
    # Postfix waits milter_content_timeout, sluiced filter_timeout (both
    # MILTER_TIMEOUT_S), then both apply their default action: tempfail.
    "hang": ("hang", (), 451, None, ("fail", "tempfail")),
    # A raw socket server answering bytes no milter sends: both count it as
    # their default action.
    "garbage": ("garbage", (), 451, None, ("fail", "tempfail")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_milter_same_verdict_as_postfix(case, milters, filter_postfix, filtered_sluiced):
    mode, headers, code, text, logged = CASES[case]
    milter = milters[mode]
    msg = message(f"milter differential {case}", headers=headers)
    seen_before = len(milter.seen())

    direct_step = QueueStep(filter_postfix)
    direct = raw_send(service(filter_postfix, f"milter-{mode}").address, msg)
    direct_new = direct_step.new()

    s = filtered_sluiced(filter_postfix.address, [f"milter {milter.filter_address} name=m-{mode}"],
                         conf={"filter_timeout": f"{MILTER_TIMEOUT_S}s"})
    via_step = QueueStep(filter_postfix)
    via = raw_send(s.address, msg)
    via_new = via_step.new()

    what = (f"\n--- direct:\n{direct.transcript}\n--- via sluiced:\n{via.transcript}\n"
            f"--- sluiced log:\n{s.stderr()[-3000:]}")
    # The reference is Postfix's own behaviour; it must be what the case expects.
    # (The garbage filter fails Postfix's negotiation at connect, so Postfix
    # refuses MAIL; sluice asks its filters at the end of data: the same code
    # for the same message, at another stage.)
    assert transaction_code(direct) == code, what
    assert transaction_code(via) == transaction_code(direct), what
    if mode != "garbage":
        assert reply_code(direct) == code and via.rc == direct.rc, what
    if text:
        assert text in data_reply(direct) and text in data_reply(via), what
    # Only the reply to the end of data may be the milter's: one line, no CR/LF smuggled in.
    assert "\n" not in data_reply(via), what

    assert len(direct_new) == (1 if code == 250 else 0), what
    assert len(via_new) == len(direct_new), what
    for d, v in zip(direct_new, via_new):
        assert headers_and_body(v.data) == headers_and_body(d.data), (d.data, v.data)
    if mode == "addheader":
        assert header_values(via_new[0].data, "X-Sluice-Milter") == \
            ["seen by sluice-test-addheader"], via_new[0].data
    # The filter was asked once on each path (hang and garbage too).
    assert len(milter.seen()) == seen_before + 2, milter.seen()
    tok = wait_session_verdict(s, f"m-{mode}", *logged)
    if mode in ("hang", "garbage"):
        assert_filter_counted(s, f"m-{mode}", failure=True)
    else:
        assert_filter_counted(s, f"m-{mode}", tok.rpartition(":")[2])


def test_reject_on_header_leaves_later_transaction_alone(milters, filter_postfix,
                                                          filtered_sluiced):
    """A rejected message and an accepted one in the same client session:
    the reject ends the first transaction only."""
    from lib.clients import RawSMTP
    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {milters['reject'].filter_address}"])
    step = QueueStep(filter_postfix)
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        replies = []
        for headers in (FLAGGED, ()):
            assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
            assert c.cmd("RCPT TO:<rcpt@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(message("two in one session", headers=headers) + b".\r\n")
            replies.append(c.read_reply())
        assert c.cmd("QUIT").code == 221
    assert [r.code for r in replies] == [550, 250], replies
    new = step.new()
    assert len(new) == 1, new
    assert header_values(new[0].data, "X-Sluice-Verdict") == []


def test_control_postfix_applies_each_scripted_milter(milters, filter_postfix):
    """The reference side alone (no sluice): each scripted milter does to
    Postfix what CASES say, so a differential failure is sluice's."""
    for case, (mode, headers, code, text, _) in CASES.items():
        if mode in ("hang", "garbage"):
            continue  # failures: covered by the differential
        step = QueueStep(filter_postfix)
        r = raw_send(service(filter_postfix, f"milter-{mode}").address,
                 message(f"control {case}", headers=headers))
        assert reply_code(r) == code, (case, r.transcript)
        if text:
            assert text in data_reply(r), (case, r.transcript)
        new = step.new()
        assert len(new) == (1 if code == 250 else 0), (case, new)
        if mode == "addheader":
            assert header_values(new[0].data, "X-Sluice-Milter") == \
                ["seen by sluice-test-addheader"]


# case -> (the milter's SMFIR_REPLYCODE text, words of it the client must
# see: the filter's own reply was used, re-framed, not a default text)
INJECTIONS = {
    # a refusal followed by a forged success line
    "crlf-250": (b"550 5.7.1 refused\r\n250 2.0.0 Ok: injected", "refused"),
    # a multi-line reply, as smfi_setmlreply builds it
    "multiline": (b"550-5.7.1 first line\r\n550 5.7.1 second line", "second line"),
    # a bare LF and an escape byte inside the text
    "lf-ctl": (b"451 4.7.1 later\n\x1b[1m354 go ahead", "later"),
    # 421 would make the client drop the session; 2xx is no refusal at all
    "421": (b"421 4.3.0 closing now", "closing now"),
    "2xx": (b"250 2.0.0 accepted by the filter", None),
}


@pytest.mark.parametrize("case", list(INJECTIONS))
def test_milter_reply_cannot_inject(case, filter_postfix, filtered_sluiced):
    """A milter's reply (SMFIR_REPLYCODE, written by hand here since
    libmilter refuses such texts) reaches the client as one safe line: one
    CRLF, a 4xx/5xx code, never 421, nothing after it; a 250 only if it is
    the upstream's own (the message then queued once)."""
    from lib.clients import RawSMTP
    from lib.filters import RawMilter
    text, words = INJECTIONS[case]
    m = RawMilter(text)
    try:
        s = filtered_sluiced(filter_postfix.address, [f"milter {m.filter_address} name=raw"])
        step = QueueStep(filter_postfix)
        with RawSMTP(s.address, timeout=20) as c:
            assert c.read_reply().code == 220
            assert c.cmd("EHLO client.test").code == 250
            assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
            assert c.cmd("RCPT TO:<rcpt@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(message(f"injection {case}") + b".\r\n")
            r = c.read_reply()
            import time
            time.sleep(0.3)  # anything injected after the reply would be here by now
            leftover = c.buf
            noop = c.cmd("NOOP")
            assert c.cmd("QUIT").code == 221
        what = f"{r!r} leftover={leftover!r}\n{s.stderr()[-2000:]}"
        assert "E" in m.events, m.events  # the milter got the end of body
        assert r.raw.count(b"\n") == 1 and r.raw.endswith(b"\r\n"), what
        assert leftover == b"" and noop.code == 250, what
        assert all(32 <= b < 127 for b in r.raw[:-2]), what
        assert r.code != 421, what
        if words:
            assert words in r.text, what
        new = step.new()
        if r.code == 250:
            assert len(new) == 1 and "queued as" in r.text, what
        else:
            assert r.code // 100 in (4, 5) and new == [], what
    finally:
        m.stop()


def test_bdat_last_waits_for_the_verdict(milters, filter_postfix, filtered_sluiced):
    """BDAT: the LAST chunk's reply is the verdict (the reject milter's for a
    flagged message; the upstream's 250 for the next one, sent in two
    chunks), and only the accepted message is queued, byte-exact."""
    from lib.clients import RawSMTP
    from lib.receiver import canonical
    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {milters['reject'].filter_address} name=m-reject"])
    step = QueueStep(filter_postfix)
    flagged = message("bdat flagged", headers=FLAGGED)
    clean = message("bdat clean", body="first half\n.a dot line\nsecond half")
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        assert "CHUNKING" in c.cmd("EHLO client.test").text
        assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
        assert c.cmd("RCPT TO:<rcpt@example.test>").code == 250
        c.send(f"BDAT {len(flagged)} LAST\r\n".encode() + flagged)
        refused = c.read_reply()
        assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
        assert c.cmd("RCPT TO:<rcpt@example.test>").code == 250
        half = len(clean) // 2
        c.send(f"BDAT {half}\r\n".encode() + clean[:half])
        assert c.read_reply().code == 250
        c.send(f"BDAT {len(clean) - half} LAST\r\n".encode() + clean[half:])
        accepted = c.read_reply()
        assert c.cmd("QUIT").code == 221
    what = f"{refused!r} {accepted!r}\n{s.stderr()[-2000:]}"
    assert refused.code == 550 and "rejected by the test milter" in refused.text, what
    assert accepted.code == 250 and "queued as" in accepted.text, what
    new = step.new()
    assert len(new) == 1, what
    assert new[0].data == canonical(clean)
    assert wait_session_verdict(s, "m-reject", "reject")


def test_spool_past_memory_goes_through_a_file_byte_exact(milters, filter_postfix,
                                                           filtered_sluiced, tmp_path):
    """Spool mode with a 4 KiB memory spool: a 300 KB message (dot lines,
    long lines) is held mostly in the temporary file (O_TMPFILE in
    filter_spool_dir, which therefore never shows a name), gets the
    milter's header, and arrives otherwise byte-exact; the directory stays
    empty and no descriptor stays open."""
    import os
    from lib.receiver import canonical
    spool = tmp_path / "spool"
    spool.mkdir()
    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {milters['addheader'].filter_address} name=m-addheader"],
                         conf={"filter_mode": "spool", "filter_spool_memory": "4096",
                               "filter_spool_dir": str(spool)})
    base_fds = s.fd_count()
    lines = [f"{'.' if i % 50 == 0 else ''}line {i:06d} " + "x" * (i % 900) for i in range(800)]
    sent = message("spooled to a file", body="\n".join(lines))
    assert len(sent) > 300_000
    step = QueueStep(filter_postfix)
    r = raw_send(s.address, sent)
    assert r.rc == 0 and reply_code(r) == 250, r.transcript + s.stderr()[-2000:]
    new = step.new()
    assert len(new) == 1
    head, sep, body = canonical(sent).partition(b"\n\n")
    assert new[0].data == head + b"\nX-Sluice-Milter: seen by sluice-test-addheader" + sep + body
    assert os.listdir(spool) == []
    from test_filters_support import settled_fds
    settled_fds(s, base_fds)


def test_nofilter_listener_is_not_filtered(milters, filter_postfix, filtered_sluiced):
    """`listen = ... nofilter`: the flagged message the reject milter refuses
    elsewhere is relayed, and the milter is never asked."""
    milter = milters["reject"]
    s = filtered_sluiced(filter_postfix.address, [f"milter {milter.filter_address} name=m-reject"],
                         listen_opts="nofilter")
    seen = len(milter.seen())
    step = QueueStep(filter_postfix)
    r = raw_send(s.address, message("not filtered", headers=FLAGGED))
    assert reply_code(r) == 250, r.transcript + s.stderr()[-2000:]
    assert len(step.new()) == 1
    assert len(milter.seen()) == seen
    s.wait_sessions(1)
    assert not [t for t in session_filter_verdicts(s) if t.startswith("m-reject:")]


def _two_recipient_transaction(address, bad_rcpt, subject):
    """MAIL, RCPT bad_rcpt, RCPT rcpt@example.test, DATA, the message, QUIT
    in lock step; returns (RCPT Replies, end-of-data Reply or None, message)."""
    from lib.clients import RawSMTP
    msg = message(subject)
    with RawSMTP(address, timeout=20) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
        rcpt_replies = [c.cmd(f"RCPT TO:<{r}>") for r in (bad_rcpt, "rcpt@example.test")]
        end = None
        if c.cmd("DATA").code == 354:
            c.send(msg + b".\r\n")
            end = c.read_reply()
        assert c.cmd("QUIT").code == 221
    return rcpt_replies, end, msg


# bad recipient -> (the milter's code and text for it)
PER_RECIPIENT = {
    "refused@example.test": (550, "recipient refused by the test milter"),
    "deferred@example.test": (451, "recipient deferred by the test milter"),
}


@pytest.mark.parametrize("bad_rcpt", list(PER_RECIPIENT))
def test_per_recipient_milter_verdict_same_as_postfix(bad_rcpt, milters, filter_postfix,
                                                      filtered_sluiced):
    """A milter refusing one recipient at RCPT.  Postfix asks its milter at
    each RCPT and refuses that recipient alone; the other is delivered.
    sluiced asks its milters at each RCPT too (the RCPT check, before the
    RCPT goes upstream): the same RCPT codes with the milter's own text,
    the same one delivery to the good recipient, judged from the client and
    the receiving Postfix's queue."""
    code, text = PER_RECIPIENT[bad_rcpt]
    milter = milters["rcptreject"]
    step = QueueStep(filter_postfix)
    rcpts, end, sent = _two_recipient_transaction(
        service(filter_postfix, "milter-rcptreject").address, bad_rcpt, f"postfix {bad_rcpt}")
    direct = step.new()
    # Postfix: the milter's verdict is the bad recipient's RCPT reply; the
    # other recipient's message is delivered.
    assert [r.code for r in rcpts] == [code, 250] and end is not None and end.code == 250, \
        (rcpts, end)
    assert text in rcpts[0].text
    assert len(direct) == 1 and direct[0].rcpts == ["rcpt@example.test"], direct

    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {milter.filter_address} name=m-rcptreject"],
                         conf={"filter_timeout": f"{MILTER_TIMEOUT_S}s"})
    step = QueueStep(filter_postfix)
    rcpts, end, sent = _two_recipient_transaction(s.address, bad_rcpt, f"sluice {bad_rcpt}")
    via = step.new()
    what = f"{rcpts} {end!r}\n{s.stderr()[-3000:]}"
    assert [r.code for r in rcpts] == [code, 250], what
    assert text in rcpts[0].text and rcpts[0].raw.count(b"\n") == 1, what
    assert end is not None and end.code == 250, what
    assert len(via) == 1 and via[0].rcpts == ["rcpt@example.test"], what
    s.wait_sessions(1)
    assert f"m-rcptreject:rcpt-{'reject' if code == 550 else 'tempfail'}" in \
        " ".join(str(r.get("filters", "")) for r in s.sessions()), what
