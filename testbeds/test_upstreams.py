"""Each fixture against a real client: proves the test beds work and can fail."""
import re
import socket
import time
import uuid

import pytest

from conftest import DNSBL_ZONE, DNSWL_ZONE, TIMEOUT_ZONE
from lib.clients import RawSMTP, smtp_source, smtplib_send, swaks


def unique_message(tag=""):
    """A message with CRLF line ends, a line that needs dot-stuffing, 8-bit text
    and a unique id, so a test can find it and compare it byte for byte."""
    mid = uuid.uuid4().hex
    msg = (f"Subject: testbed {tag} {mid}\r\nFrom: <sender@example.test>\r\n"
           f"To: <rcpt@example.test>\r\nMessage-ID: <{mid}@example.test>\r\n\r\n"
           "first line\r\n.a line that starts with a dot\r\n..two dots\r\n"
           "caf\u00e9 au lait\r\nlast line\r\n").encode()
    return mid, msg


# ---------------------------------------------------------------- sluice-sink

def test_swaks_to_sink_is_byte_exact(sink):
    mid, msg = unique_message("sink")
    r = swaks(sink.address, data=msg, pipeline=True)
    assert r.rc == 0, r.transcript
    [m] = sink.wait_messages(1)
    assert m.data == msg
    assert m.envelope.mail_from == "<sender@example.test>"
    assert m.envelope.rcpts == ["<rcpt@example.test>"]
    assert m.envelope.helo == "EHLO client.test"
    assert m.envelope.transfer == "DATA"
    assert m.envelope.size == len(msg)
    # The wire carried the stuffed form; the store holds the unstuffed one.
    assert " -> ..a line that starts with a dot" in r.transcript


@pytest.mark.parametrize("sink", [{"reject_rcpt": ["nobody"]}], indirect=True)
def test_sink_reject_rcpt(sink):
    r = swaks(sink.address, to="nobody@example.test")
    assert r.rc == 24, r.transcript  # swaks: 24 = no recipients accepted
    assert any(l.startswith("550 5.1.1") for l in r.server_lines()), r.transcript
    # Others still pass, and only their message is stored.
    refused = smtplib_send(sink.address, "a@example.test", ["ok@example.test", "nobody@x.test"],
                           b"Subject: x\r\n\r\nbody\r\n")
    assert list(refused) == ["nobody@x.test"] and refused["nobody@x.test"][0] == 550
    [m] = sink.wait_messages(1)
    assert m.envelope.rcpts == ["<ok@example.test>"]


@pytest.mark.parametrize("sink", [{"close_after_data_bytes": 100}], indirect=True)
def test_sink_close_after_data_bytes_drops_connection(sink):
    with RawSMTP(sink.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n" * 20)
        assert c.expect_closed(timeout=5)
        assert c.buf == b""  # no reply to the message at all
    # A message under the limit still goes through.
    assert swaks(sink.address, data=b"Subject: s\r\n\r\nsmall\r\n").rc == 0
    assert len(sink.wait_messages(1)) == 1
    time.sleep(0.2)
    assert len(sink.messages()) == 1


@pytest.mark.parametrize("sink", [{"stall": True}], indirect=True)
def test_sink_stall_never_answers(sink):
    with RawSMTP(sink.address, timeout=2) as c:
        assert c.read_reply().code == 220
        c.send("EHLO client.test\r\n")
        with pytest.raises(TimeoutError):
            c.read_reply(timeout=1.5)
    r = swaks(sink.address, timeout=1)
    assert r.rc != 0 and "Timeout" in r.transcript


@pytest.mark.parametrize("sink", [{"tempfail_data": True}], indirect=True)
def test_sink_tempfail_data(sink):
    r = swaks(sink.address)
    assert r.rc == 26, r.transcript  # swaks: 26 = end of data rejected
    assert r.replies("451 4.3.0"), r.transcript
    assert sink.messages() == []


@pytest.mark.parametrize("sink", [{"garbage": True}], indirect=True)
def test_sink_garbage_ehlo_reply_is_malformed(sink):
    with RawSMTP(sink.address) as c:
        assert c.read_reply().code == 220
        with pytest.raises(ValueError, match="malformed reply"):
            c.cmd("EHLO client.test")


@pytest.mark.parametrize("sink", [{"delay_ms": 300}], indirect=True)
def test_sink_delay_ms(sink):
    with RawSMTP(sink.address) as c:
        t0 = time.monotonic()
        assert c.read_reply().code == 220
        c.send("NOOP\r\nNOOP\r\n")
        assert c.read_reply().code == 250
        assert c.read_reply().code == 250
        assert time.monotonic() - t0 >= 0.85  # three replies, each delayed


def test_smtp_source_volume_into_sink(sink_factory):
    s = sink_factory(count_only=True)
    r = smtp_source(s.address, messages=300, sessions=6, msglen=2000)
    assert r.returncode == 0, r.stderr
    stats = s.stop()
    assert stats["messages"] == 300, stats


def test_smtp_source_into_storing_sink(sink):
    r = smtp_source(sink.address, messages=20, sessions=2, recipients=3)
    assert r.returncode == 0, r.stderr
    msgs = sink.wait_messages(20)
    assert len(msgs) == 20
    assert all(len(m.envelope.rcpts) == 3 for m in msgs)


# ---------------------------------------------------------------- aiosmtpd

def test_swaks_to_aiosmtpd(aiosmtpd_upstream):
    mid, msg = unique_message("aiosmtpd")
    r = swaks(aiosmtpd_upstream.address, data=msg)
    assert r.rc == 0, r.transcript
    [m] = aiosmtpd_upstream.wait_messages(1)
    assert m.data == msg
    assert m.envelope["mail_from"] == "sender@example.test"
    assert m.envelope["rcpt_tos"] == ["rcpt@example.test"]
    assert m.envelope["helo"] == "client.test"


@pytest.mark.parametrize("aiosmtpd_upstream", [{"auth": ("alice", "s3cret")}], indirect=True)
def test_swaks_auth_to_aiosmtpd(aiosmtpd_upstream):
    r = swaks(aiosmtpd_upstream.address, auth=("PLAIN", "alice", "wrong"))
    assert r.rc == 28 and r.replies("535"), r.transcript  # swaks: 28 = AUTH failed
    r = swaks(aiosmtpd_upstream.address, auth=("LOGIN", "alice", "s3cret"), pipeline=True)
    assert r.rc == 0, r.transcript
    [m] = aiosmtpd_upstream.wait_messages(1)
    assert m.envelope["auth_login"] == "alice"


@pytest.mark.parametrize("aiosmtpd_upstream", [{"reject_rcpt": ["nobody"]}], indirect=True)
def test_aiosmtpd_reject_rcpt(aiosmtpd_upstream):
    r = swaks(aiosmtpd_upstream.address, to="nobody@example.test")
    assert r.rc == 24 and r.replies("550"), r.transcript


# ---------------------------------------------------------------- Postfix

def test_swaks_to_postfix_lands_on_hold(postfix_upstream):
    mid, msg = unique_message("postfix")
    r = swaks(postfix_upstream.address, data=msg, pipeline=True)
    assert r.rc == 0, r.transcript
    [held] = postfix_upstream.wait_held(1)
    assert held.sender == "sender@example.test"
    assert held.recipients == ["rcpt@example.test"]
    assert f"Message-ID: <{mid}@example.test>" in held.text
    assert "\n.a line that starts with a dot\n" in held.text
    assert "client_address=127.0.0.1" in held.raw
    assert "Recipient address triggers HOLD action" in postfix_upstream.log()


def test_postfix_xclient_changes_logged_client(postfix_upstream):
    with RawSMTP(postfix_upstream.address) as c:
        assert c.read_reply().code == 220
        ehlo = c.cmd("EHLO proxy.test")
        assert any(l.startswith("XCLIENT") for l in ehlo.lines)
        assert c.cmd("XCLIENT ADDR=192.0.2.45 NAME=spoofed.example.test").code == 220
        assert c.cmd("EHLO original-client.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        assert c.cmd("Subject: xclient\r\n\r\nhi\r\n.").code == 250
        c.cmd("QUIT")
    m = postfix_upstream.wait_log(r"(\w+): client=(\S+)\[(\S+)\]")
    assert (m[2], m[3]) == ("spoofed.example.test", "192.0.2.45"), postfix_upstream.log()
    [held] = postfix_upstream.wait_held(1)
    assert "client_address=192.0.2.45" in held.raw
    assert "helo_name=original-client.test" in held.raw


def test_postfix_without_xclient_logs_loopback(postfix_upstream):
    # The control for the XCLIENT test: the same dialogue without XCLIENT.
    assert swaks(postfix_upstream.address).rc == 0
    m = postfix_upstream.wait_log(r"(\w+): client=(\S+)\[(\S+)\]")
    assert m[3] == "127.0.0.1"


def test_two_postfix_instances_in_parallel(postfix_factory):
    a = postfix_factory(hostname="a.postfix.test")
    b = postfix_factory(hostname="b.postfix.test")
    assert a.port != b.port and a.queue_dir != b.queue_dir
    assert swaks(a.address, to="for-a@example.test").rc == 0
    assert swaks(b.address, to="for-b@example.test").rc == 0
    assert [h.recipients for h in a.wait_held(1)] == [["for-a@example.test"]]
    assert [h.recipients for h in b.wait_held(1)] == [["for-b@example.test"]]
    assert "b.postfix.test" not in a.log() and "a.postfix.test" not in b.log()


def test_postfix_starttls_with_generated_certs(postfix_tls_upstream, tls_certs):
    pf = postfix_tls_upstream
    r = swaks(pf.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              extra=["--tls-sni", "localhost"])
    assert r.rc == 0, r.transcript
    assert "TLS started" in r.transcript
    [held] = pf.wait_held(1)
    assert re.search(r"\(using TLSv1\.[23]", held.text), held.text
    pf.wait_log(r"TLS connection established from localhost\[127\.0\.0\.1\]")
    # A client that trusts another CA must fail verification.
    with RawSMTP(pf.address) as c:
        c.read_reply()
        c.cmd("EHLO client.test")
        assert c.cmd("STARTTLS").code == 220
        import ssl
        with pytest.raises(ssl.SSLCertVerificationError):
            c.starttls(ca_file=tls_certs.client_cert)


def test_postfix_smtp_sink(postfix_smtp_sink):
    mid, msg = unique_message("smtp-sink")
    r = swaks(postfix_smtp_sink.address, data=msg)
    assert r.rc == 0, r.transcript
    [dump] = postfix_smtp_sink.wait_dumps(1)
    assert mid.encode() in dump and b"caf\xc3\xa9 au lait" in dump


# ---------------------------------------------------------------- DNS

def test_dig_against_dnsbl_server(dnsbl_server):
    r = dnsbl_server.dig(f"2.0.0.127.{DNSBL_ZONE}")
    assert r.returncode == 0
    assert re.search(rb"status: NOERROR", r.stdout)
    assert re.search(rb"IN\s+A\s+127\.0\.0\.2\b", r.stdout), r.stdout
    r = dnsbl_server.dig(f"9.0.0.127.{DNSBL_ZONE}")
    assert b"status: NXDOMAIN" in r.stdout
    r = dnsbl_server.dig(f"2.0.0.127.{DNSBL_ZONE}", "TXT")
    assert b'"listed 127.0.0.2"' in r.stdout
    assert dnsbl_server.query(f"4.0.0.127.{DNSWL_ZONE}") == (0, ["127.0.9.1"])
    assert dnsbl_server.query(f"2.0.0.127.{DNSWL_ZONE}") == (3, [])


@pytest.mark.parametrize("dnsbl_server", [{"listings": [("extra.test", "192.0.2.9", "127.0.0.4")]}],
                         indirect=True)
def test_dnsbl_server_extra_listing(dnsbl_server):
    assert dnsbl_server.query("9.2.0.192.extra.test") == (0, ["127.0.0.4"])


def test_dnsbl_timeout_zone_never_answers(dnsbl_server):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        dnsbl_server.query(f"2.0.0.127.{TIMEOUT_ZONE}", timeout=1.5)
    assert time.monotonic() - t0 >= 1.4
    r = dnsbl_server.dig(f"2.0.0.127.{TIMEOUT_ZONE}", timeout=1)
    assert r.returncode == 9, r.stdout  # dig: no reply from server
    # The server itself is still answering other zones meanwhile.
    assert dnsbl_server.query(f"2.0.0.127.{DNSBL_ZONE}")[1] == ["127.0.0.2"]


# ---------------------------------------------------------------- TLS material

def test_tls_certs_verify_with_openssl(tls_certs):
    from lib.proc import run
    r = run(["openssl", "verify", "-CAfile", tls_certs.ca_cert, tls_certs.server_cert])
    assert r.returncode == 0, r.stderr
    r = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", tls_certs.server_cert])
    assert b"DNS:localhost" in r.stdout and b"IP Address:127.0.0.1" in r.stdout
    r = run(["openssl", "verify", "-CAfile", tls_certs.server_cert, tls_certs.client_cert])
    assert r.returncode != 0


@pytest.mark.parametrize("postfix_upstream", [{"main_cf": {"smtpd_upstream_proxy_protocol": "haproxy"}}],
                         indirect=True)
def test_postfix_proxy_protocol_changes_logged_client(postfix_upstream):
    # The readiness probe connected without a header; that session is just dropped.
    with RawSMTP(postfix_upstream.address) as c:
        c.send(b"PROXY TCP4 198.51.100.77 127.0.0.1 40000 25\r\n")
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        assert c.cmd("Subject: proxy\r\n\r\nhi\r\n.").code == 250
    m = postfix_upstream.wait_log(r"(\w+): client=(\S+)\[(\S+)\]")
    assert m[3] == "198.51.100.77", postfix_upstream.log()
