"""Limits, reload and drain: per-IP caps, the global cap, EMFILE, slow
clients, SIGHUP without dropping sessions, SIGTERM drain."""
import os
import resource
import signal
import socket
import time

import pytest

from lib.clients import RawSMTP, swaks
from lib.net import LOCALHOST, wait_for
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401


def greet(c, timeout=10):
    return c.read_reply(timeout)


def test_per_ip_concurrency(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"per_ip_concurrency": 2})
    a = raw_connect(s.address)
    b = raw_connect(s.address)
    assert greet(a).code == 220 and greet(b).code == 220
    c = raw_connect(s.address)
    r = greet(c)
    assert r.code == 421 and "4.7.0" in r.text, r
    c.close()
    # Another client address is not affected.
    d = raw_connect(s.address, source_ip="127.0.0.9")
    assert greet(d).code == 220
    d.close()
    # Releasing one lets the same address in again.
    a.cmd("QUIT")
    a.close()
    wait_for(lambda: s.metric("sluice_connections_active") <= 1, 10)
    e = raw_connect(s.address)
    assert greet(e).code == 220
    for x in (b, e):
        x.close()


def test_global_cap_answers_421(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"max_connections": 3})
    held = [raw_connect(s.address) for _ in range(3)]
    for h in held:
        assert greet(h).code == 220
    extra = raw_connect(s.address)
    r = greet(extra)
    assert r.code == 421 and "4.7.0" in r.text
    assert extra.expect_closed(5)
    assert s.metric("sluice_connections_refused_total", {"reason": "global_cap"}) == 1
    for h in held:
        h.close()


def test_global_cap_across_workers(sink, sluiced_factory):
    # Two workers share one cap: connections land on either (SO_REUSEPORT),
    # and the fourth is refused whichever worker takes it.
    s = sluiced_factory([sink.address],
                        conf={"workers": 2, "max_connections_total": 3})
    held = [raw_connect(s.address) for _ in range(3)]
    for h in held:
        assert greet(h).code == 220
    extra = raw_connect(s.address)
    r = greet(extra)
    assert r.code == 421 and "4.7.0" in r.text
    assert extra.expect_closed(5)
    for h in held:
        h.close()


def test_emfile_answers_421(sink, sluiced_factory):
    if os.geteuid() != 0:
        pytest.skip("lowering another process's fd limit needs root")
    s = sluiced_factory([sink.address])
    n = s.fd_count()
    # Room for a few sessions (2 fds each: client and upstream) and no more.
    soft, hard = resource.prlimit(s.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (n + 6, hard))
    conns, refused = [], 0
    try:
        for _ in range(8):
            c = raw_connect(s.address)
            conns.append(c)
            try:
                r = greet(c, timeout=5)
            except (ConnectionError, TimeoutError):
                continue
            if r.code == 421:
                refused += 1
        assert refused >= 1
    finally:
        for c in conns:
            c.close()
    # It keeps working once descriptors are free again.
    resource.prlimit(s.pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert swaks(s.address, body="after emfile").rc == 0
    assert s.metric("sluice_connections_refused_total", {"reason": "fd_limit"}) >= 1


def test_slow_client_hits_command_timeout(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"command_timeout": "1s"})
    with RawSMTP(s.address, timeout=10) as c:
        assert greet(c).code == 220
        t0 = time.monotonic()
        c.send(b"EHLO slow")  # never finished
        r = c.read_reply(timeout=8)
        assert r.code == 421 and "4.4.2" in r.text, r
        assert 0.8 < time.monotonic() - t0 < 6
        assert c.expect_closed(5)
    rec = s.wait_sessions(1)[0]
    assert rec["end"] == "timeout"


def test_dribbling_client_cannot_extend_deadline(sink, sluiced_factory):
    """A byte every 300 ms does not keep a command alive past its deadline."""
    s = sluiced_factory([sink.address], conf={"command_timeout": "1s"})
    with RawSMTP(s.address, timeout=10) as c:
        assert greet(c).code == 220
        t0 = time.monotonic()
        closed = False
        for ch in b"EHLO dribble.example.test":
            try:
                c.send(bytes([ch]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - t0 > 6:
                break
        if not closed:
            r = c.read_reply(timeout=5)
            assert r.code == 421, r
        assert time.monotonic() - t0 < 8


def test_sighup_reload_keeps_sessions(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"max_connections": 1})
    live = raw_connect(s.address)
    assert greet(live).code == 220
    assert live.cmd("EHLO client.test").code == 250
    refused = raw_connect(s.address)
    assert greet(refused).code == 421
    refused.close()
    s.reload({"max_connections": 5})
    assert "reload failed" not in s.stderr()
    # New sessions get the new config ...
    fresh = raw_connect(s.address)
    assert greet(fresh).code == 220
    fresh.close()
    # ... and the old one carries on and delivers.
    assert send_message(live).code == 250
    assert live.cmd("QUIT").code == 221
    live.close()
    assert len(sink.wait_messages(1)) == 1
    # A broken file is refused and the running config stays.
    s.conf_path.write_text(s.conf_path.read_text() + "bogus_key = 1\n")
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: "reload failed" in s.stderr(), 10)
    assert "bogus_key" in s.stderr()
    assert swaks(s.address, body="still up").rc == 0
    s.write_conf()


def test_sigterm_drains_sessions(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"drain_timeout": "10s"})
    live = raw_connect(s.address)
    assert greet(live).code == 220
    assert live.cmd("EHLO client.test").code == 250
    os.kill(s.pid, signal.SIGTERM)
    # New connections are no longer accepted.
    def refused():
        try:
            socket.create_connection(s.address, timeout=1).close()
            return False
        except OSError:
            return True
    wait_for(refused, 5, what="listener closed")
    # The live session still delivers, then sluiced exits.
    assert send_message(live).code == 250
    assert live.cmd("QUIT").code == 221
    live.close()
    assert s.proc.popen.wait(10) == 0
    assert len(sink.wait_messages(1)) == 1


def test_drain_deadline_closes_stragglers(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"drain_timeout": "1s"})
    idle = raw_connect(s.address)
    assert greet(idle).code == 220
    t0 = time.monotonic()
    os.kill(s.pid, signal.SIGTERM)
    assert s.proc.popen.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert idle.expect_closed(5)
    idle.close()
