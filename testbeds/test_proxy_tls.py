"""TLS on both legs: STARTTLS and implicit TLS toward clients (OpenSSL,
generated certificates), STARTTLS injection, TLS toward the upstream with
verification, and TLS failures."""
import socket
import ssl
import time

import pytest

from lib.clients import RawSMTP, smtplib_send, swaks
from test_proxy_support import send_message, sluiced_factory  # noqa: F401


def test_starttls_swaks_verified(sink, sluiced_factory, tls_certs):
    s = sluiced_factory([sink.address], tls_certs=tls_certs)
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert, body="over starttls")
    assert r.rc == 0, r.transcript + r.stderr
    assert len(sink.wait_messages(1)) == 1
    rec = s.wait_sessions(1)[0]
    assert rec["tls"].startswith("TLSv1.")
    assert s.metric("sluice_tls_client_handshakes_total", {"result": "ok"}) == 1


def test_starttls_smtplib(sink, sluiced_factory, tls_certs):
    s = sluiced_factory([sink.address], tls_certs=tls_certs)
    msg = b"Subject: tls\r\n\r\nsecret\r\n"
    assert smtplib_send(s.address, "a@example.test", ["b@example.test"], msg,
                        starttls_ca=tls_certs.ca_cert) == {}
    assert sink.wait_messages(1)[0].data == msg


def test_starttls_not_offered_without_cert(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert "STARTTLS" not in c.cmd("EHLO client.test").text


def test_implicit_tls_listener(sink, sluiced_factory, tls_certs):
    s = sluiced_factory([sink.address], tls_certs=tls_certs, tls_listen=True)
    r = swaks(s.tls_address, tls_on_connect=True, tls_verify_ca=tls_certs.ca_cert,
              body="implicit tls")
    assert r.rc == 0, r.transcript + r.stderr
    assert len(sink.wait_messages(1)) == 1
    # After TLS is up, STARTTLS is not offered again.
    ctx = ssl.create_default_context(cafile=str(tls_certs.ca_cert))
    raw = socket.create_connection(s.tls_address, timeout=10)
    c = RawSMTP.__new__(RawSMTP)
    c.timeout, c.buf = 10, b""
    c.sock = ctx.wrap_socket(raw, server_hostname="localhost")
    with c:
        assert c.read_reply().code == 220
        assert "STARTTLS" not in c.cmd("EHLO client.test").text


def test_plaintext_on_tls_port_is_dropped(sink, sluiced_factory, tls_certs):
    s = sluiced_factory([sink.address], tls_certs=tls_certs, tls_listen=True)
    with socket.create_connection(s.tls_address, timeout=10) as raw:
        raw.sendall(b"EHLO plaintext.test\r\n")
        raw.settimeout(10)
        got = b""
        try:
            while True:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionError, socket.timeout):
            pass
        assert not got.startswith(b"250")
    rec = s.wait_sessions(1)[0]
    assert rec["messages_accepted"] == 0
    assert s.metric("sluice_tls_client_handshakes_total", {"result": "failed"}) == 1
    # and the daemon is fine
    assert swaks(s.tls_address, tls_on_connect=True, body="x").rc == 0


def test_starttls_command_injection_is_discarded(sink, sluiced_factory, tls_certs):
    """CVE-2011-0411: a command pipelined after STARTTLS in the same segment
    must never be executed inside the TLS session."""
    s = sluiced_factory([sink.address], tls_certs=tls_certs)
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert "STARTTLS" in c.cmd("EHLO client.test").text
        c.send(b"STARTTLS\r\nVRFY injected\r\n")
        r = c.read_reply()
        assert r.code == 220, r
        assert c.buf == b""  # nothing answered in plaintext after the 220
        try:
            c.starttls(tls_certs.ca_cert)
        except (ssl.SSLError, ConnectionError, OSError):
            return  # refusing the session is also a correct answer
        # The first reply inside TLS answers our NOOP, not the injected VRFY.
        r = c.cmd("NOOP")
        assert r.code == 250, r
        assert c.cmd("EHLO client.test").code == 250
        assert send_message(c).code == 250
    rec = s.wait_sessions(1)[0]
    assert rec.get("starttls_injection_bytes", 0) == len(b"VRFY injected\r\n")


def test_upstream_starttls_verified(aiosmtpd_factory, sluiced_factory, tls_certs):
    up = aiosmtpd_factory(tls_cert=str(tls_certs.chain), tls_key=str(tls_certs.server_key))
    s = sluiced_factory([up.address], conf={
        "upstream_tls": "required", "upstream_tls_verify": "yes",
        "upstream_tls_ca": str(tls_certs.ca_cert), "upstream_tls_name": "localhost"})
    r = swaks(s.address, body="tls upstream")
    assert r.rc == 0, r.transcript
    m = up.wait_messages(1)[0]
    assert m.envelope["tls"] is True
    rec = s.wait_sessions(1)[0]
    assert rec.get("upstream_tls") == "yes"


def test_upstream_certificate_not_trusted(aiosmtpd_factory, sluiced_factory, tls_certs):
    up = aiosmtpd_factory(tls_cert=str(tls_certs.chain), tls_key=str(tls_certs.server_key))
    # Verification against the system store: our throwaway CA is not in it.
    s = sluiced_factory([up.address], conf={
        "upstream_tls": "required", "upstream_tls_verify": "yes",
        "upstream_tls_name": "localhost", "upstream_attempts": 1})
    with RawSMTP(s.address, timeout=15) as c:
        try:
            r = c.read_reply()
            if r.code == 220:
                r = c.cmd("EHLO client.test")
            assert 400 <= r.code < 500, r
        except ConnectionError:
            pass
    assert up.message_ids() == []
    assert s.metric("sluice_tls_upstream_handshakes_total", {"result": "failed"}) >= 1


def test_opportunistic_upstream_tls_without_verification(aiosmtpd_factory, sluiced_factory,
                                                          tls_certs):
    up = aiosmtpd_factory(tls_cert=str(tls_certs.chain), tls_key=str(tls_certs.server_key))
    s = sluiced_factory([up.address], conf={"upstream_tls": "opportunistic"})
    assert swaks(s.address, body="opportunistic").rc == 0
    assert up.wait_messages(1)[0].envelope["tls"] is True


def test_reload_picks_up_new_certificate_config(sink, sluiced_factory, tls_certs):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert "STARTTLS" not in c.cmd("EHLO client.test").text
    s.tls_certs = tls_certs
    s.reload({})
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert, body="after reload")
    assert r.rc == 0, r.transcript


def test_sni_selects_certificate(sink, sluiced_factory, tls_certs, tmp_path):
    import subprocess
    key, cert = tmp_path / "other.key", tmp_path / "other.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                        "/CN=other.test", "-addext", "subjectAltName=DNS:other.test",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    s = sluiced_factory([sink.address], tls_certs=tls_certs, tls_listen=True,
                        conf={"sni": f"other.test {cert} {key}"})

    def served_cert(name):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(s.tls_address, timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as t:
                return t.getpeercert(binary_form=True)

    other_der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    default_der = ssl.PEM_cert_to_DER_cert(tls_certs.server_cert.read_text())
    assert served_cert("other.test") == other_der
    assert served_cert("localhost") == default_der
