"""Client identity: PROXY headers accepted only from trusted balancers, and
the real client forwarded to upstreams by XCLIENT or PROXY."""
import socket

import pytest

from lib.clients import RawSMTP, swaks
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401


def proxy_v2(src, sport, dst, dport):
    import ipaddress
    import struct
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addr = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed + \
        struct.pack(">HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack(">H", len(addr)) + addr


@pytest.mark.parametrize("version", [1, 2])
def test_proxy_header_from_trusted_balancer(sink, sluiced_factory, version):
    s = sluiced_factory([sink.address], listen_opts="proxy",
                        conf={"trusted_proxy": "127.0.0.1/32"})
    with raw_connect(s.address, source_ip="127.0.0.1") as c:
        if version == 1:
            c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
        else:
            c.send(proxy_v2("192.0.2.7", 40000, "127.0.0.1", 25))
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert send_message(c).code == 250
    rec = s.wait_sessions(1)[0]
    assert rec["client"] == "192.0.2.7"
    assert rec["client_port"] == 40000


def test_proxy_header_from_untrusted_source_is_bad_smtp(sink, sluiced_factory):
    s = sluiced_factory([sink.address], listen_opts="proxy",
                        conf={"trusted_proxy": "127.0.0.1/32"})
    with raw_connect(s.address, source_ip="127.0.0.5") as c:
        assert c.read_reply().code == 220  # no header expected: SMTP at once
        r = c.cmd("PROXY TCP4 192.0.2.7 127.0.0.1 40000 25")
        assert r.code >= 500, r
    rec = s.wait_sessions(1)[0]
    assert rec["client"] == "127.0.0.5"


def test_malformed_proxy_header_from_trusted_source_is_dropped(sink, sluiced_factory):
    s = sluiced_factory([sink.address], listen_opts="proxy",
                        conf={"trusted_proxy": "127.0.0.1/32"})
    with raw_connect(s.address) as c:
        c.send(b"PROXY TCP4 999.0.2.7 127.0.0.1 40000 25\r\nEHLO x\r\n")
        assert c.expect_closed(8)
        assert not c.buf.startswith(b"250")
    assert sink.message_ids() == []


def test_proxy_header_deadline(sink, sluiced_factory):
    s = sluiced_factory([sink.address], listen_opts="proxy",
                        conf={"trusted_proxy": "127.0.0.1/32", "proxy_header_timeout": "1s"})
    with raw_connect(s.address) as c:
        c.send(b"PROXY TCP4 192.0.2")  # and then nothing
        assert c.expect_closed(6)


@pytest.mark.parametrize("sink", [{"xclient": True}], indirect=True)
def test_xclient_to_sink(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"identity": "xclient"})
    with raw_connect(s.address, source_ip="127.0.0.7") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO real-client.test")
        assert send_message(c).code == 250
    m = sink.wait_messages(1)[0]
    assert m.envelope.xclient.get("ADDR") == "127.0.0.7"


@pytest.mark.parametrize("sink", [{"proxy_protocol": True}], indirect=True)
@pytest.mark.parametrize("ident", ["proxy1", "proxy2"])
def test_proxy_protocol_to_upstream(sink, sluiced_factory, ident):
    s = sluiced_factory([sink.address], conf={"identity": ident})
    with raw_connect(s.address, source_ip="127.0.0.8") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO c.test")
        assert send_message(c).code == 250
    m = sink.wait_messages(1)[0]
    assert "127.0.0.8" in m.envelope.proxy
    assert m.envelope.proxy.startswith("v1" if ident == "proxy1" else "v2")


def test_xclient_shows_real_client_in_postfix_log(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address], conf={"identity": "xclient"})
    with raw_connect(s.address, source_ip="127.0.0.9") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO real-client.test")
        assert send_message(c, rcpts=("user@example.test",)).code == 250
        c.cmd("QUIT")
    held = postfix_upstream.wait_held(1)
    assert len(held) == 1
    # Postfix logs the client XCLIENT named, not sluiced's own address.
    postfix_upstream.wait_log(r"client=\S*\[127\.0\.0\.9\]")
