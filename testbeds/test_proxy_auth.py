"""AUTH relayed to the upstream (submission behind sluiced): swaks over
STARTTLS with AUTH PLAIN and LOGIN against aiosmtpd with one account."""
import pytest

from lib.clients import RawSMTP, swaks
from test_proxy_support import sluiced_factory  # noqa: F401


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_auth_over_starttls(aiosmtpd_factory, sluiced_factory, tls_certs, mech):
    up = aiosmtpd_factory(auth=("user", "s3cret"))
    s = sluiced_factory([up.address], tls_certs=tls_certs, conf={"features": "all"})
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              auth=(mech, "user", "s3cret"), body="authenticated")
    assert r.rc == 0, r.transcript + r.stderr
    m = up.wait_messages(1)[0]
    assert m.envelope["auth_login"] == "user"


def test_auth_wrong_password_gets_upstream_535(aiosmtpd_factory, sluiced_factory, tls_certs):
    up = aiosmtpd_factory(auth=("user", "s3cret"))
    s = sluiced_factory([up.address], tls_certs=tls_certs, conf={"features": "all"})
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              auth=("PLAIN", "user", "wrong"), body="x")
    assert r.rc != 0
    assert "535 5.7.8" in r.transcript, r.transcript
    assert up.message_ids() == []


def test_auth_not_offered_in_plaintext(aiosmtpd_factory, sluiced_factory, tls_certs):
    up = aiosmtpd_factory(auth=("user", "s3cret"))
    s = sluiced_factory([up.address], tls_certs=tls_certs, conf={"features": "all"})
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        ehlo = c.cmd("EHLO client.test").text
        assert "STARTTLS" in ehlo
        assert "AUTH" not in ehlo
