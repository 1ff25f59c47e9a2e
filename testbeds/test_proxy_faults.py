"""Faults on the upstream side and resource hygiene: whatever breaks, the
client gets the right 4xx/5xx, no message is lost or duplicated, and
sluiced gives back every descriptor and its memory."""
import socket
import time

import pytest

from lib.clients import RawSMTP, swaks
from lib.net import LOCALHOST, free_port, wait_for
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401


def dead_port():
    """A loopback port nothing listens on (connect is refused)."""
    return (LOCALHOST, free_port())


def first_reply_or_close(c, timeout=15):
    try:
        return c.read_reply(timeout)
    except ConnectionError:
        return None


def assert_tempfailed(c):
    """The session is refused with a 4xx: either sluice checks the upstream
    (greeting and EHLO) before greeting the client and answers 421 itself, or
    the client's EHLO gets the 4xx.  Never a 2xx from a broken upstream."""
    r = first_reply_or_close(c)
    assert r is not None, "closed without a reply"
    if r.code == 220:
        r = c.cmd("EHLO client.test")
    assert 400 <= r.code < 500, r
    return r


def test_upstream_refuses(sluiced_factory):
    s = sluiced_factory([dead_port()], conf={"upstream_attempts": 2})
    with RawSMTP(s.address) as c:
        r = first_reply_or_close(c)
        assert r is not None and r.code == 421, r
        assert c.expect_closed(10)
    rec = s.wait_sessions(1)[0]
    assert rec["upstream_attempts"] == 2
    assert "connect" in rec["upstream_failures"]
    assert s.metric("sluice_upstream_failures_total", {"kind": "connect"}) >= 1


def test_all_upstreams_down(sluiced_factory):
    s = sluiced_factory([dead_port(), dead_port(), dead_port()])
    r = swaks(s.address, body="x", timeout=15)
    assert r.rc != 0
    assert r.replies("421"), r.transcript


def test_failover_to_second_upstream(sink, sluiced_factory):
    dead = dead_port()
    s = sluiced_factory([dead, sink.address])
    r = swaks(s.address, body="failover")
    assert r.rc == 0, r.transcript
    assert len(sink.wait_messages(1)) == 1
    rec = s.wait_sessions(1)[0]
    assert rec["upstream"] == f"{sink.address[0]}:{sink.address[1]}"
    assert rec["upstream_attempts"] == 2


@pytest.mark.parametrize("sink", [{"stall": True}], indirect=True)
def test_upstream_stalls_after_greeting(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"upstream_command_timeout": "1s",
                                              "upstream_greeting_timeout": "1s"})
    t0 = time.monotonic()
    with RawSMTP(s.address, timeout=15) as c:
        assert_tempfailed(c)
    # 3 attempts of about 1 s each at most
    assert time.monotonic() - t0 < 8
    assert sink.message_ids() == []


def test_upstream_silent_before_greeting(sluiced_factory):
    # A TCP listener that never says anything.
    srv = socket.socket()
    srv.bind((LOCALHOST, 0))
    srv.listen(16)
    try:
        s = sluiced_factory([srv.getsockname()], conf={"upstream_greeting_timeout": "1s",
                                                       "upstream_attempts": 1})
        with RawSMTP(s.address, timeout=15) as c:
            t0 = time.monotonic()
            r = first_reply_or_close(c)
            assert r is not None and r.code == 421, r
            assert time.monotonic() - t0 < 8
    finally:
        srv.close()


@pytest.mark.parametrize("sink", [{"close_after_data_bytes": 3000}], indirect=True)
def test_upstream_dies_mid_data(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        try:
            c.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 200 + b".\r\n")
            r = c.read_reply()
            # Never a 2xx for a message the upstream did not accept.
            assert 400 <= r.code < 500, r
        except (ConnectionError, OSError):
            pass  # closed after a 421 is acceptable; a 250 is not
    assert sink.message_ids() == []
    rec = s.wait_sessions(1)[0]
    assert rec["messages_accepted"] == 0


@pytest.mark.parametrize("sink", [{"garbage": True}], indirect=True)
def test_upstream_answers_garbage(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        r = assert_tempfailed(c)
        # Whatever the upstream sent, the client only sees sluice's own
        # well-formed reply (RawSMTP raises on a malformed line).
        assert b"garbage" not in r.raw.lower()
    assert sink.message_ids() == []
    rec = s.wait_sessions(1)[0]
    assert "malformed" in rec["upstream_failures"], rec


def test_upstream_requires_tls_but_has_none(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"upstream_tls": "required",
                                              "upstream_attempts": 1})
    with RawSMTP(s.address) as c:
        assert_tempfailed(c)
    assert sink.message_ids() == []


def test_implicit_tls_to_plain_upstream_fails_cleanly(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"upstream_tls": "implicit",
                                              "upstream_attempts": 1})
    with RawSMTP(s.address) as c:
        r = first_reply_or_close(c)
        assert r is not None and r.code == 421, r
    rec = s.wait_sessions(1)[0]
    assert "tls" in rec.get("upstream_failures", "") or "connect" in rec.get("upstream_failures", "") \
        or rec["upstream_attempts"] >= 1


def test_no_fd_leak_and_no_memory_growth(sink, sluiced_factory):
    s = sluiced_factory([sink.address, dead_port()], conf={"command_timeout": "2s"})

    def mixed_round(n):
        for i in range(n):
            with RawSMTP(s.address) as c:
                assert c.read_reply().code == 220
                c.cmd("EHLO client.test")
                if i % 3 == 0:
                    assert send_message(c).code == 250
                    c.cmd("QUIT")
                elif i % 3 == 1:
                    c.send(b"MAIL FROM:<a@example.test>\r\nRCPT")  # abort mid-command
                # else: just drop the connection after EHLO

    mixed_round(30)
    wait_for(lambda: s.metric("sluice_connections_active") == 0, 15, what="sessions to end")
    time.sleep(2.5)  # lingering closes end within 2 s
    base_fds = s.fd_count()
    mixed_round(60)
    wait_for(lambda: s.metric("sluice_connections_active") == 0, 15, what="sessions to end")
    rss1 = s.rss_kb()
    wait_for(lambda: s.fd_count() <= base_fds, 10, what=f"fd count back to {base_fds}")
    mixed_round(150)
    wait_for(lambda: s.metric("sluice_connections_active") == 0, 15, what="sessions to end")
    wait_for(lambda: s.fd_count() <= base_fds, 10, what=f"fd count back to {base_fds}")
    rss2 = s.rss_kb()
    # 150 more sessions may not cost memory that stays: allow allocator noise.
    assert rss2 - rss1 < 2048, (rss1, rss2)
    assert len(sink.message_ids()) == 80


def test_dns_timeout_does_not_block_mail(sink, sluiced_factory, dnsbl_server):
    s = sluiced_factory([sink.address], conf={
        "dnsbl": ["timeout.test 10"], "dns_servers": f"{dnsbl_server.host}:{dnsbl_server.port}",
        "dns_timeout": "300ms", "dns_tries": 1, "dnsbl_timeout": "1s",
        "reject_score": 5, "mode": "screen"})
    t0 = time.monotonic()
    with RawSMTP(s.address, timeout=15) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert send_message(c).code == 250
    assert time.monotonic() - t0 < 8
    assert len(sink.wait_messages(1)) == 1
