"""The client's name at the upstream (issue 10): a forward-confirmed
reverse lookup through c-ares (real unbound), sent as XCLIENT NAME= to a
real Postfix, which logs it and applies reject_unknown_client_hostname."""
import pytest

from lib.net import LOCALHOST
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401

REV = "0.0.127.in-addr.arpa"
CASES = {
    # client address: (what the DNS says, the NAME= Postfix must get)
    "127.0.0.21": "good.example.test",   # PTR and A agree
    "127.0.0.22": "[UNAVAILABLE]",       # PTR to a name whose A is elsewhere
    "127.0.0.23": "[UNAVAILABLE]",       # no PTR
    "127.0.0.24": "[TEMPUNAVAIL]",       # the reverse zone never answers
}


@pytest.fixture
def names_dns(dnsbl_factory):
    u = dnsbl_factory()
    u.add_record(REV, f"21.{REV}", "PTR", "good.example.test.")
    u.add_record(REV, f"22.{REV}", "PTR", "forged.example.test.")
    u.add_record("example.test", "good.example.test", "A", "127.0.0.21")
    u.add_record("example.test", "forged.example.test", "A", "192.0.2.1")
    u.add_timeout_zone(f"24.{REV}")
    return u.start()


def dns_conf(dns):
    return {"identity": "xclient", "client_name_lookup": "yes",
            "dns_servers": f"{dns.address[0]}:{dns.address[1]}", "dns_timeout": "300ms",
            "dns_tries": "1"}


def test_name_reaches_postfix(names_dns, postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address], conf=dns_conf(names_dns))
    for ip in CASES:
        with raw_connect(s.address, source_ip=ip) as c:
            assert c.read_reply().code == 220
            c.cmd("EHLO real-client.test")
            assert send_message(c, rcpts=("user@example.test",)).code == 250
            c.cmd("QUIT")
    recs = {r["client"]: r for r in s.wait_sessions(len(CASES))}
    for ip, name in CASES.items():
        assert recs[ip]["client_name"] == name, recs[ip]
    # Postfix logs the verified name, and "unknown" for the others.
    postfix_upstream.wait_log(r"client=good\.example\.test\[127\.0\.0\.21\]")
    postfix_upstream.wait_log(r"client=unknown\[127\.0\.0\.22\]")


@pytest.mark.parametrize("postfix_upstream", [
    {"main_cf": {"smtpd_client_restrictions": "reject_unknown_client_hostname",
                 # a permanent "no name" is 550; a DNS failure stays 450
                 "unknown_client_reject_code": "550"}}],
    indirect=True)
def test_reject_unknown_client_hostname_works_through_sluice(names_dns, postfix_upstream,
                                                             sluiced_factory):
    # Without the lookup every client was "unknown" and refused; now only
    # the ones Postfix itself would refuse are, and a DNS failure is 450.
    s = sluiced_factory([postfix_upstream.address], conf=dns_conf(names_dns))
    want = {"127.0.0.21": 250, "127.0.0.22": 550, "127.0.0.24": 450}
    for ip, code in want.items():
        with raw_connect(s.address, source_ip=ip) as c:
            assert c.read_reply().code == 220
            c.cmd("EHLO real-client.test")
            r = c.cmd("MAIL FROM:<a@example.test>")
            if r.code == 250:
                r = c.cmd("RCPT TO:<user@example.test>")
            assert r.code == code, (ip, r)
            c.cmd("QUIT")


def test_lookup_off_keeps_unavailable(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address], conf={"identity": "xclient"})
    with raw_connect(s.address, source_ip="127.0.0.21") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO real-client.test")
        assert send_message(c, rcpts=("user@example.test",)).code == 250
        c.cmd("QUIT")
    assert "client_name" not in s.wait_sessions(1)[0]
    postfix_upstream.wait_log(r"client=unknown\[127\.0\.0\.21\]")
