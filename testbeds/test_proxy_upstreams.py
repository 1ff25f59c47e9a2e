"""The upstream pool: weighted balancing, active health checks, passive
marking, and several worker processes."""
import os
import signal
import time

import pytest

from lib.clients import RawSMTP, smtp_source, swaks
from lib.net import LOCALHOST, free_port, wait_for
from test_proxy_support import send_message, sluiced_factory  # noqa: F401


def one_message(address, i=0):
    with RawSMTP(address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO c.test")
        assert send_message(c, body=f"Subject: {i}\r\n\r\nx\r\n".encode()).code == 250
        c.cmd("QUIT")


def test_weighted_round_robin(sink_factory, sluiced_factory):
    a, b = sink_factory(), sink_factory()
    s = sluiced_factory([f"{a.host}:{a.port} weight=1", f"{b.host}:{b.port} weight=3"])
    for i in range(8):
        one_message(s.address, i)
    assert len(a.wait_messages(2)) == 2
    assert len(b.wait_messages(6)) == 6


def test_least_connections(sink_factory, sluiced_factory):
    a, b = sink_factory(), sink_factory()
    s = sluiced_factory([a.address, b.address], conf={"upstream_balance": "leastconn"})
    held = RawSMTP(s.address)  # occupies one server
    assert held.read_reply().code == 220
    first = s.metric("sluice_upstream_connects_total",
                     {"server": f"{a.host}:{a.port}", "result": "ok"})
    # The next three sessions, one at a time, all go to the idle server.
    for i in range(3):
        one_message(s.address, i)
    busy, idle = (a, b) if first == 1 else (b, a)
    assert len(idle.wait_messages(3)) == 3
    assert busy.message_ids() == []
    held.close()


def test_active_health_check_takes_dead_server_out(sink_factory, sluiced_factory):
    a, b = sink_factory(), sink_factory()
    name_a = f"{a.host}:{a.port}"
    s = sluiced_factory([a.address, b.address], conf={
        "health_interval": "200ms", "health_timeout": "1s", "health_fall": 1,
        "health_rise": 1})
    wait_for(lambda: s.metric("sluice_upstream_up", {"server": name_a}) == 1, 5)
    a.stop()
    wait_for(lambda: s.metric("sluice_upstream_up", {"server": name_a}) == 0, 5,
             what="health check to mark the server down")
    # No session pays for the dead server: every one connects first time.
    for i in range(6):
        one_message(s.address, i)
    assert len(b.wait_messages(6)) == 6
    assert all(r["upstream_attempts"] == 1 for r in s.wait_sessions(6))
    assert s.metric("sluice_upstream_connects_total", {"server": name_a, "result": "failed"}) == 0


def test_passive_marking_without_checks(sink_factory, sluiced_factory):
    b = sink_factory()
    dead = (LOCALHOST, free_port())
    name_dead = f"{dead[0]}:{dead[1]}"
    s = sluiced_factory([dead, b.address], conf={"health_fall": 1, "down_retry": "60s"})
    for i in range(5):
        one_message(s.address, i)
    assert len(b.wait_messages(5)) == 5
    # Only the first session tried the dead server; then it was marked down.
    assert s.metric("sluice_upstream_connects_total",
                    {"server": name_dead, "result": "failed"}) == 1
    assert s.metric("sluice_upstream_up", {"server": name_dead}) == 0


def test_multiple_workers(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"workers": 2})
    wait_for(lambda: s.stderr().count(" ready: ") >= 2, 10, what="two workers")
    r = smtp_source(s.address, messages=100, sessions=10, msglen=500, reuse=False)
    assert r.returncode == 0, r.stderr
    assert len(sink.wait_messages(100, timeout=30)) == 100
    pids = {rec["pid"] for rec in s.sessions()}
    assert len(pids) >= 1
    # Metrics are shared by the workers.
    wait_for(lambda: s.metric("sluice_messages_total", {"result": "accepted"}) == 100, 10)
    os.kill(s.pid, signal.SIGHUP)
    wait_for(lambda: s.stderr().count("configuration reloaded") >= 2, 10, what="both reload")
    assert swaks(s.address, body="after reload").rc == 0


@pytest.mark.parametrize("sink", [{"proxy_protocol": True}], indirect=True)
def test_health_check_speaks_proxy_to_proxy_upstreams(sink, sluiced_factory):
    name = f"{sink.host}:{sink.port}"
    s = sluiced_factory([sink.address], conf={
        "identity": "proxy2", "health_interval": "100ms", "health_timeout": "300ms",
        "health_fall": 1, "health_rise": 1})
    # Several check rounds (each bounded by the 300 ms timeout) pass without
    # marking the server down.
    time.sleep(1.5)
    assert s.metric("sluice_upstream_up", {"server": name}) == 1
    assert "is down" not in s.stderr()
    assert swaks(s.address, body="x").rc == 0
