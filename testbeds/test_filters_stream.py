"""Filters that see the message while it streams (issue 11): the milter is
told each RCPT when it comes and gets body chunks before the client has
sent the final dot, clamd reads the INSTREAM while the client pauses
mid-body, a filter that hangs mid-stream costs the client filter_timeout
and the default action (nothing delivered, no descriptor kept), and the
per-process cap on spool memory sends spools to their temporary file.
Judged from the filter's side (its own timestamps, clamd's answer), the
client's replies and the receiving Postfix's queue."""
import time

import pytest

from lib.clients import RawSMTP
from lib.filters import ClamdServer, MilterServer
from test_filters_support import (QueueStep, filtered_sluiced, message, raw_send,  # noqa: F401
                                  reply_code, settled_fds, wait_session_verdict)

pytestmark = pytest.mark.deadline(120)

PAUSE_S = 1.5


def _paused_transaction(address, first: bytes, rest: bytes, pause: float = PAUSE_S):
    """EHLO, MAIL, RCPT, DATA in lock step; the message's first part, a
    pause, the rest and the dot.  Returns (time the client sent DATA, time
    the pause ended, end-of-data Reply)."""
    with RawSMTP(address, timeout=30) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
        assert c.cmd("RCPT TO:<rcpt@example.test>").code == 250
        t_data = time.time()
        assert c.cmd("DATA").code == 354
        c.send(first)
        time.sleep(pause)
        t_resume = time.time()
        c.send(rest + b".\r\n")
        end = c.read_reply()
        assert c.cmd("QUIT").code == 221
    return t_data, t_resume, end


def _big_body(lines: int) -> str:
    return "\n".join(f"line {i:06d} " + "y" * 60 for i in range(lines))


@pytest.fixture
def stamp_milter():
    m = MilterServer("stamp")
    yield m
    m.stop()


def test_milter_hears_rcpt_live_and_body_before_the_dot(stamp_milter, filter_postfix,
                                                        filtered_sluiced):
    """The milter's own clock: RCPT before the client's DATA, end of headers
    and body chunks during the client's pause mid-body, the end of body
    only after it; the message is delivered once."""
    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {stamp_milter.filter_address} name=m-stamp"],
                         conf={"filter_mode": "stream"})
    msg = message("streamed to the milter", body=_big_body(3000))
    cut = len(msg) // 2
    cut = msg.index(b"\r\n", cut) + 2  # whole lines before the pause
    step = QueueStep(filter_postfix)
    t_data, t_resume, end = _paused_transaction(s.address, msg[:cut], msg[cut:])
    what = f"{end!r} {stamp_milter.stamps()}\n{s.stderr()[-2000:]}"
    assert end.code == 250, what
    assert len(step.new()) == 1, what
    st = stamp_milter.stamps()
    ev = {}
    for e, t, n in st:
        ev.setdefault(e, []).append((t, n))
    assert ev["rcpt"][0][0] < t_data, what
    assert ev["eoh"][0][0] < t_resume, what
    before = sum(n for t, n in ev["body"] if t < t_resume)
    assert before > 0, what
    assert ev["eom"][0][0] > t_resume, what
    # every body byte reached the milter: the part after the header section
    assert sum(n for t, n in ev["body"]) == len(msg) - msg.index(b"\r\n\r\n") - 4, what


def test_clamd_reads_the_stream_while_the_client_pauses(filter_postfix, filtered_sluiced):
    """clamd with StreamMaxLength 64 KiB: 200 KB of body before a pause.
    clamd can only refuse the stream as too long (its own answer, logged by
    sluiced as the filter's failure) if it has read it before the dot; the
    message then gets the default action (tempfail) and is not delivered."""
    clamd = ClamdServer(stream_max="64K")
    try:
        s = filtered_sluiced(filter_postfix.address, [f"clamd {clamd.filter_address} name=cl"],
                             conf={"filter_mode": "stream"})
        msg = message("streamed to clamd", body=_big_body(4000))
        first = msg[:200_000]
        first = first[:first.rindex(b"\r\n") + 2]
        step = QueueStep(filter_postfix)
        seen_in_pause = []

        def watch():
            # clamd's refusal, or its close right after it (a reset may
            # take the answer with it): either way clamd read the stream
            seen_in_pause.append(any(f"filter cl failed ({why})" in s.stderr()
                                     for why in ("size_limit", "read", "write")))

        with RawSMTP(s.address, timeout=30) as c:
            assert c.read_reply().code == 220
            assert c.cmd("EHLO client.test").code == 250
            assert c.cmd("MAIL FROM:<sender@example.test>").code == 250
            assert c.cmd("RCPT TO:<rcpt@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(first)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                watch()
                if seen_in_pause[-1]:
                    break
                time.sleep(0.1)
            c.send(msg[len(first):] + b".\r\n")
            end = c.read_reply()
            assert c.cmd("QUIT").code == 221
        what = f"{end!r}\n{s.stderr()[-2000:]}"
        assert seen_in_pause and seen_in_pause[-1], what
        assert end.code == 451, what
        assert step.new() == [], what
        wait_session_verdict(s, "cl", "fail")
    finally:
        clamd.stop()


def test_milter_hanging_mid_stream_default_nothing_lost(filter_postfix, filtered_sluiced):
    """A milter that stops reading at its first body chunk: the client is
    never stalled (sluiced keeps reading it; the body waits in the spool,
    past 64 KiB in its temporary file), gets the default tempfail about
    filter_timeout after the milter stopped, nothing is delivered, and no
    descriptor stays open."""
    m = MilterServer("bodyhang")
    try:
        s = filtered_sluiced(filter_postfix.address, [f"milter {m.filter_address} name=m-hang"],
                             conf={"filter_mode": "stream", "filter_timeout": "1s",
                                   "filter_spool_memory": "65536"})
        base_fds = s.fd_count()
        msg = message("hangs mid-stream", body=_big_body(30000))  # about 2 MB
        assert len(msg) > 2_000_000
        step = QueueStep(filter_postfix)
        t0 = time.monotonic()
        r = raw_send(s.address, msg, timeout=30)
        took = time.monotonic() - t0
        what = f"{r.transcript[-2000:]}\n{s.stderr()[-2000:]}"
        assert reply_code(r) == 451, what
        assert took < 1 + 10, what
        assert step.new() == [], what
        assert any(l.startswith("bodyhang ") for l in m.seen()), what
        wait_session_verdict(s, "m-hang", "fail")
        settled_fds(s, base_fds)
    finally:
        m.stop()


def test_spool_memory_total_sends_spools_to_their_file(milters, filter_postfix,
                                                       filtered_sluiced, tmp_path):
    """filter_spool_memory_total caps the spools' memory of a worker: with a
    cap of 4 KiB a 100 KB spool needs its temporary file, which a missing
    filter_spool_dir refuses (the filters fail: default tempfail); without
    the cap the same message stays in memory and is delivered."""
    missing = tmp_path / "no-such-dir"
    msg = message("spool cap", body=_big_body(1500))
    assert len(msg) > 100_000
    results = {}
    for total in ("4096", "67108864"):
        s = filtered_sluiced(filter_postfix.address,
                             [f"milter {milters['accept'].filter_address} name=m-accept"],
                             conf={"filter_mode": "spool", "filter_spool_memory": "1048576",
                                   "filter_spool_memory_total": total,
                                   "filter_spool_dir": str(missing)})
        step = QueueStep(filter_postfix)
        r = raw_send(s.address, msg)
        results[total] = (reply_code(r), len(step.new()), r.transcript[-600:] + s.stderr()[-1500:])
    assert results["4096"][:2] == (451, 0), results["4096"]
    assert results["67108864"][:2] == (250, 1), results["67108864"]


def test_milter_refuses_a_recipient_of_the_null_sender(milters, filter_postfix, filtered_sluiced):
    """MAIL FROM:<> (a bounce): the milter is asked at RCPT all the same and
    refuses the one recipient; the other gets the message."""
    milter = milters["rcptreject"]
    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {milter.filter_address} name=m-rcptreject"])
    step = QueueStep(filter_postfix)
    with RawSMTP(s.address, timeout=20) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<>").code == 250
        bad = c.cmd("RCPT TO:<refused@example.test>")
        good = c.cmd("RCPT TO:<rcpt@example.test>")
        assert c.cmd("DATA").code == 354
        c.send(message("a bounce") + b".\r\n")
        end = c.read_reply()
        assert c.cmd("QUIT").code == 221
    what = f"{bad!r} {good!r} {end!r}\n{s.stderr()[-2000:]}"
    assert bad.code == 550 and "recipient refused by the test milter" in bad.text, what
    assert good.code == 250 and end.code == 250, what
    new = step.new()
    assert len(new) == 1 and new[0].rcpts == ["rcpt@example.test"], what
