"""AUTH relayed to the upstream (submission behind sluiced): swaks over
STARTTLS with AUTH PLAIN and LOGIN against aiosmtpd with one account."""
import time

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


def test_auth_lost_with_its_upstream_ends_the_session(aiosmtpd_factory, sluiced_factory,
                                                      tls_certs):
    """The upstream that accepted the client's AUTH dies; the pool's other
    upstream (a server that trusts sluiced and does no AUTH, as a Postfix
    with sluiced in mynetworks) is up.  sluiced never has the password, so
    it cannot authenticate a new leg: it must not go on as authenticated
    there (relay control skipped, the mail server seeing an anonymous
    client it trusts).  Judged from the client (its MAIL gets 421, then
    the connection is closed: it retries on a new session, where it must
    authenticate again) and from the second server, which receives
    nothing; a fresh session without AUTH is under relay control again."""
    import smtplib
    import ssl
    a = aiosmtpd_factory(auth=("user", "s3cret"))
    b = aiosmtpd_factory()
    s = sluiced_factory([f"{a.address[0]}:{a.address[1]} weight=1000",
                         f"{b.address[0]}:{b.address[1]} weight=1"],
                        tls_certs=tls_certs,
                        conf={"features": "all", "relay_domains": "example.test"})
    ctx = ssl.create_default_context(cafile=tls_certs.ca_cert)
    c = smtplib.SMTP(s.address[0], s.address[1], timeout=20)
    try:
        c.starttls(context=ctx)
        c.login("user", "s3cret")
        a.stop()
        time.sleep(0.5)
        code, text = c.docmd("MAIL", "FROM:<user@example.test>")
        assert code == 421 and b"authenticate again" in text, (code, text)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            c.docmd("RCPT", "TO:<someone@elsewhere.test>")
    finally:
        c.close()
    time.sleep(0.5)
    assert b.message_ids() == []
    # a fresh session without AUTH is under sluiced's relay control again
    with RawSMTP(s.address) as r:
        assert r.read_reply().code == 220
        assert r.cmd("EHLO client.test").code == 250
        assert r.cmd("MAIL FROM:<x@example.test>").code == 250
        assert r.cmd("RCPT TO:<someone@elsewhere.test>").code == 554
    assert b.message_ids() == []
