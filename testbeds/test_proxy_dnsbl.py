"""DNSBL / DNSWL screening through the unbound fixture: clients connect from
different 127/8 source addresses, which the fixture lists or not."""
import time

import pytest

from lib.clients import RawSMTP
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401


def dns_conf(dnsbl_server, **extra):
    conf = {"dns_servers": f"{dnsbl_server.host}:{dnsbl_server.port}", "dns_timeout": "1s",
            "dnsbl_timeout": "3s"}
    conf.update(extra)
    return conf


@pytest.mark.parametrize("mode", ["screen", "passthrough"])
def test_listed_client_rejected_unlisted_delivers(sink, sluiced_factory, dnsbl_server, mode):
    s = sluiced_factory([sink.address], conf=dns_conf(
        dnsbl_server, mode=mode, dnsbl=["dnsbl.test 10", "dnswl.test -20"], reject_score=10,
        dnsbl_action="reject"))
    # 127.0.0.2 is listed in dnsbl.test: transactions are refused with 554.
    c = raw_connect(s.address, source_ip="127.0.0.2")
    with c:
        assert c.read_reply().code == 220
        # EHLO may be refused already; MAIL must be.
        assert c.cmd("EHLO bad.test").code in (250, 554)
        r = c.cmd("MAIL FROM:<spam@example.test>")
        assert r.code == 554 and "5.7.1" in r.text, r
        # RFC 5321 3.1: it may still QUIT politely.
        assert c.cmd("QUIT").code == 221
    # 127.0.0.1 is not listed: delivered.
    with raw_connect(s.address, source_ip="127.0.0.1") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO good.test")
        assert send_message(c).code == 250
    assert len(sink.wait_messages(1)) == 1
    recs = {r["client"]: r for r in s.wait_sessions(2)}
    assert recs["127.0.0.2"]["score"] >= 10
    assert recs["127.0.0.2"]["dnsbl_listed"] >= 1
    assert recs["127.0.0.1"]["score"] == 0
    assert s.metric("sluice_dnsbl_lookups_total", {"result": "answer"}) >= 1
    assert s.metric("sluice_dnsbl_lookups_total", {"result": "nxdomain"}) >= 2


def test_dnswl_outweighs_dnsbl(sink, sluiced_factory, dnsbl_factory):
    u = dnsbl_factory()
    u.list_ip("dnsbl.test", "127.0.0.6", "127.0.0.2")
    u.list_ip("dnswl.test", "127.0.0.6", "127.0.9.1")
    u.start()
    s = sluiced_factory([sink.address], conf=dns_conf(
        u, mode="screen", dnsbl=["dnsbl.test 10", "dnswl.test -20 127.0.9.1"], reject_score=10))
    with raw_connect(s.address, source_ip="127.0.0.6") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO both.test")
        assert send_message(c).code == 250
    assert s.wait_sessions(1)[0]["score"] == -10


def test_return_codes_select_listing(sink, sluiced_factory, dnsbl_server):
    # 127.0.0.3 answers 127.0.0.10: listed only if that code is configured.
    s = sluiced_factory([sink.address], conf=dns_conf(
        dnsbl_server, mode="screen", dnsbl=["dnsbl.test 10 127.0.0.2"], reject_score=10))
    with raw_connect(s.address, source_ip="127.0.0.3") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO c.test")
        assert send_message(c).code == 250
    assert s.wait_sessions(1)[0]["score"] == 0


def test_listed_client_is_tarpitted(sink, sluiced_factory, dnsbl_server):
    s = sluiced_factory([sink.address], conf=dns_conf(
        dnsbl_server, mode="screen", dnsbl=["dnsbl.test 5"], tarpit_score=5,
        suspect_reply_delay="400ms"))
    def timed_session(ip):
        with raw_connect(s.address, source_ip=ip, timeout=20) as c:
            assert c.read_reply().code == 220
            c.cmd("EHLO t.test")
            t0 = time.monotonic()
            c.cmd("NOOP")
            c.cmd("NOOP")
            c.cmd("NOOP")
            dt = time.monotonic() - t0
            assert send_message(c).code == 250
            return dt
    slow = timed_session("127.0.0.2")
    fast = timed_session("127.0.0.1")
    assert slow >= 1.1, slow
    assert fast < 0.5, fast
    recs = {r["client"]: r for r in s.wait_sessions(2)}
    assert recs["127.0.0.2"]["tarpitted"] == "yes"
    assert float(recs["127.0.0.2"]["delay_ms"]) >= 1100
    assert recs["127.0.0.1"]["tarpitted"] == "no"
    assert len(sink.wait_messages(2)) == 2  # tarpitted mail is still relayed


def test_drop_action_closes(sink, sluiced_factory, dnsbl_server):
    s = sluiced_factory([sink.address], conf=dns_conf(
        dnsbl_server, mode="screen", dnsbl=["dnsbl.test 10"], reject_score=10,
        dnsbl_action="drop"))
    with raw_connect(s.address, source_ip="127.0.0.2") as c:
        replies = []
        try:
            for _ in range(3):
                r = c.read_reply(timeout=8)
                replies.append(r.code)
                if r.code == 220:
                    c.send(b"EHLO x.test\r\n")
                if r.code == 521:
                    break
        except ConnectionError:
            pass
        assert 521 in replies, replies
        assert c.expect_closed(5)
    assert sink.message_ids() == []
