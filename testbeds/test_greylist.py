"""Greylisting and policy services at RCPT (README "Greylisting and policy
services"): sluiced's own greylisting through its state backend, keyed by
the client's /24, the normalised sender and the recipient; a Postfix
policy delegation client against Debian's postgrey and against scripted
servers for the failure cases.  Judged from the client's replies and what
the upstream received."""
import time

import pytest

from lib.net import LOCALHOST, free_port, wait_for
from lib.policy_server import answering
from lib.postgrey import Postgrey
from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401

DELAY = 2  # seconds; postgrey's 300 would make a slow test


def grey_conf(**extra):
    # SPF needs a resolver that knows the test domains: the SPF test gives
    # it unbound; the others key by the /24 alone
    conf = {"mode": "screen", "greet_teaser": "no", "greylist": "yes",
            "greylist_delay": f"{DELAY}s", "greylist_spf": "no"}
    conf.update(extra)
    return conf


def attempt(s, source_ip, sender, rcpt="r@example.test", tag="m"):
    """One session: EHLO, MAIL, RCPT and, if the RCPT passed, a message.
    Returns the RCPT reply."""
    with raw_connect(s.address, source_ip=source_ip) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        if r.code == 250:
            assert c.cmd("DATA").code == 354
            c.send(f"Subject: {tag}\r\n\r\nhello\r\n.\r\n".encode())
            assert c.read_reply().code == 250
        else:
            # nothing to deliver to: DATA is refused locally
            assert c.cmd("DATA").code == 503
        assert c.cmd("QUIT").code == 221
    return r


def subjects(sink, n):
    msgs = sink.wait_messages(n)
    return sorted(m.data.split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in msgs)


def test_greylisted_then_accepted_and_keyed_beyond_the_ip(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf=grey_conf())
    r = attempt(s, "127.0.0.71", "a@example.test")
    assert r.code == 450 and r.text.startswith("4.7.1 <r@example.test>: Recipient address "
                                               "rejected: Greylisted"), r
    # too early: still deferred, with the time left
    r = attempt(s, "127.0.0.71", "a@example.test")
    assert r.code == 450 and "Greylisted" in r.text, r
    time.sleep(DELAY + 0.5)
    assert attempt(s, "127.0.0.71", "a@example.test", tag="retry").code == 250
    # another address of the same /24 (a rotating pool) is not delayed again
    assert attempt(s, "127.0.0.72", "a@example.test", tag="pool").code == 250
    # BATV-tagged and +extension senders are the same sender
    assert attempt(s, "127.0.0.73", "prvs=0123456789=a+news@EXAMPLE.test",
                   tag="batv").code == 250
    # another sender is a new triplet
    assert attempt(s, "127.0.0.71", "other@example.test").code == 450
    assert subjects(sink, 3) == ["batv", "pool", "retry"]
    time.sleep(0.5)
    assert len(sink.messages()) == 3
    recs = s.wait_sessions(6)
    assert sum(1 for x in recs if "450 4.7.1" in (x.get("refusals") or "")) == 3


def test_auto_allowlisted_after_five_passes(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf=grey_conf(greylist_auto_allow=5))
    senders = [f"s{i}@example.test" for i in range(5)]
    for snd in senders:
        assert attempt(s, "127.0.1.1", snd).code == 450
    time.sleep(DELAY + 0.5)
    for i, snd in enumerate(senders):
        assert attempt(s, "127.0.1.1", snd, tag=f"pass{i}").code == 250
    # five passes: a new triplet of this client is accepted at once
    assert attempt(s, "127.0.1.9", "new@example.test", tag="allowed").code == 250
    # a client of another /24 is still greylisted
    assert attempt(s, "127.0.2.1", "new@example.test").code == 450
    assert len(subjects(sink, 6)) == 6


def test_dnswl_and_mynetworks_skip_greylisting(sink, sluiced_factory, dnsbl_server):
    s = sluiced_factory([sink.address], conf=grey_conf(
        dns_servers=f"{dnsbl_server.host}:{dnsbl_server.port}", dns_timeout="1s",
        dnsbl_timeout="3s", dnsbl="dnswl.test -20", allow_score=-10,
        mynetworks="127.0.0.9/32"))
    # 127.0.0.4 is in dnswl.test: allowlisted by score
    assert attempt(s, "127.0.0.4", "a@example.test", tag="dnswl").code == 250
    assert attempt(s, "127.0.0.9", "a@example.test", tag="mynet").code == 250
    assert attempt(s, "127.0.0.5", "a@example.test").code == 450
    assert subjects(sink, 2) == ["dnswl", "mynet"]


def test_spf_pass_domain_keys_the_triplet(sink, sluiced_factory, dnsbl_factory):
    """unbound serves SPF records: a sender whose domain passes SPF is keyed
    by that domain, so its retry from another /24 of the same provider is
    not delayed; a domain whose SPF fails (or that has none) is keyed by
    the /24, and mx/include are followed to real answers."""
    u = dnsbl_factory()
    u.add_record("pool.test", "pool.test", "TXT",
                 '"v=spf1 include:_spf.pool.test mx -all"')
    u.add_record("pool.test", "_spf.pool.test", "TXT",
                 '"v=spf1 ip4:127.0.10.0/24 ip4:127.0.11.0/24 ~all"')
    u.add_record("pool.test", "pool.test", "MX", "10 mx.pool.test.")
    u.add_record("pool.test", "mx.pool.test", "A", "127.0.12.1")
    u.add_record("strict.test", "strict.test", "TXT", '"v=spf1 ip4:192.0.2.1 -all"')
    u.start()
    s = sluiced_factory([sink.address], conf=grey_conf(
        greylist_spf="yes", dns_servers=f"{u.host}:{u.port}", dns_timeout="1s"))
    assert attempt(s, "127.0.10.1", "a@pool.test").code == 450
    time.sleep(DELAY + 0.5)
    assert attempt(s, "127.0.10.1", "a@pool.test", tag="first").code == 250
    # another /24 of the pool (include) and its MX host: same SPF domain
    assert attempt(s, "127.0.11.1", "a@pool.test", tag="include").code == 250
    assert attempt(s, "127.0.12.1", "a@pool.test", tag="mx").code == 250
    # SPF fails for strict.test from here: keyed by the /24, and a new /24
    # is a new triplet
    assert attempt(s, "127.0.13.1", "a@strict.test").code == 450
    time.sleep(DELAY + 0.5)
    assert attempt(s, "127.0.13.1", "a@strict.test", tag="strict").code == 250
    assert attempt(s, "127.0.14.1", "a@strict.test").code == 450
    assert subjects(sink, 4) == ["first", "include", "mx", "strict"]


def test_asn_keys_the_triplet(sink, sluiced_factory, dnsbl_factory):
    """greylist_asn_zone: unbound answers origin-ASN TXT records in Team
    Cymru's format; two /24s of one AS are one client part, an address
    without an answer keeps its /24."""
    u = dnsbl_factory()
    for ip in ("127.0.20.1", "127.0.21.1"):
        u.list_ip("origin.test", ip, "127.0.0.2",
                  txt="64500 | 127.0.20.0/23 | ZZ | test | 2026-01-01")
    u.start()
    s = sluiced_factory([sink.address], conf=grey_conf(
        greylist_asn_zone="origin.test", dns_servers=f"{u.host}:{u.port}",
        dns_timeout="1s"))
    assert attempt(s, "127.0.20.1", "a@example.test").code == 450
    time.sleep(DELAY + 0.5)
    assert attempt(s, "127.0.20.1", "a@example.test", tag="as1").code == 250
    assert attempt(s, "127.0.21.1", "a@example.test", tag="as2").code == 250
    assert attempt(s, "127.0.22.1", "a@example.test").code == 450
    assert subjects(sink, 2) == ["as1", "as2"]


@pytest.fixture
def postgrey(tmp_path):
    p = Postgrey(tmp_path / "postgrey", delay=DELAY)
    yield p
    p.stop()


def test_postgrey_as_policy_service(sink, sluiced_factory, postgrey):
    s = sluiced_factory([sink.address], conf={
        "mode": "screen", "greet_teaser": "no", "policy_service": postgrey.address})
    r = attempt(s, "127.0.3.1", "a+x@example.test")
    # postgrey's DEFER_IF_PERMIT and text, in Postfix's words
    assert r.code == 450 and r.text.startswith(
        "4.7.1 <r@example.test>: Recipient address rejected: Greylisted, see "
        "http://postgrey.schweikert.ch/help/example.test.html"), r
    time.sleep(DELAY + 1.5)
    assert attempt(s, "127.0.3.1", "a+x@example.test", tag="after").code == 250
    assert subjects(sink, 1) == ["after"]
    log = postgrey.log()
    assert "action=greylist, reason=new" in log and "client_address=127.0.3.1" in log
    assert "action=pass, reason=triplet found" in log


@pytest.fixture
def scripted():
    made = []

    def make(answer):
        p = answering(answer)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def test_policy_request_and_reject_text_sanitised(sink, sluiced_factory, scripted):
    p = scripted(b"action=550 5.7.1 no\x07 way <script>\r\nfoo=bar\r\n\r\n")
    s = sluiced_factory([sink.address], conf={"mode": "screen", "greet_teaser": "no",
                                              "policy_service": p.address})
    r = attempt(s, "127.0.4.1", "a@example.test")
    assert r.code == 550 and r.text == (
        "5.7.1 <r@example.test>: Recipient address rejected: no? way <script>"), r
    req = p.requests[0]
    assert req["request"] == "smtpd_access_policy"
    assert req["protocol_state"] == "RCPT" and req["protocol_name"] == "ESMTP"
    assert req["client_address"] == "127.0.4.1" and req["helo_name"] == "client.test"
    assert req["sender"] == "a@example.test" and req["recipient"] == "r@example.test"
    time.sleep(0.3)
    assert sink.messages() == []


@pytest.mark.parametrize("answer,default,code", [
    (None, None, 451),                 # never answers: policy_timeout, Postfix's default
    (b"action=FROBNICATE\n\n", None, 451),  # not an action
    (None, "DUNNO", 250),              # the operator's default lets it pass
])
def test_policy_failure_default_action(sink, sluiced_factory, scripted, answer, default, code):
    p = scripted(answer)
    conf = {"mode": "screen", "greet_teaser": "no", "policy_service": p.address,
            "policy_timeout": "1s"}
    if default:
        conf["policy_default_action"] = default
    s = sluiced_factory([sink.address], conf=conf)
    t = time.monotonic()
    r = attempt(s, "127.0.5.1", "a@example.test", tag="dflt")
    assert r.code == code, r
    if code == 451:
        assert r.text.startswith("4.3.5 "), r
    if answer is None:
        assert 0.9 < time.monotonic() - t < 5


def test_policy_service_down(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={
        "mode": "screen", "greet_teaser": "no",
        "policy_service": f"inet:{LOCALHOST}:{free_port()}"})
    r = attempt(s, "127.0.5.2", "a@example.test")
    assert r.code == 451 and r.text.startswith("4.3.5 "), r


def test_policy_ok_skips_greylisting(sink, sluiced_factory, scripted):
    p = scripted(b"action=OK\n\n")
    s = sluiced_factory([sink.address], conf=grey_conf(policy_service=p.address))
    assert attempt(s, "127.0.6.1", "a@example.test", tag="ok").code == 250
    assert subjects(sink, 1) == ["ok"]


@pytest.mark.deadline(60)
def test_greylisted_triplet_retried_through_another_instance(tmp_path, sluiced_factory):
    """Three sluiced behind HAProxy sharing Redis (lib/scaleout.py) and a
    real Postfix: a triplet greylisted on one instance and retried after the
    delay is accepted by whichever instance HAProxy picks, and Postfix
    queues it."""
    import os

    from lib.postfix import PostfixInstance
    from lib.scaleout import ScaleOut
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root (it drops privileges to the postfix user)")
    postfix = PostfixInstance()
    bed = None
    try:
        bed = ScaleOut(tmp_path / "bed", sluiced_factory, postfix.address, n=3,
                       conf=grey_conf())

        class Via:
            address = bed.address
        r = attempt(Via, "127.0.7.1", "a@example.test")
        assert r.code == 450 and "Greylisted" in r.text, r
        wait_for(lambda: bed.sessions("127.0.7.1"), 5, what="first session logged")
        first = bed.sessions("127.0.7.1")[0][0]
        # the triplet is in Redis, under the deployment's prefix
        assert any("127.0.7.0/24" in k for k in bed.redis.keys("sluice:*"))
        time.sleep(DELAY + 0.5)
        for i in range(3):  # round robin: at least one lands elsewhere
            r = attempt(Via, "127.0.7.1", "a@example.test", tag=f"grey{i}")
            assert r.code == 250, r
        wait_for(lambda: len(bed.sessions("127.0.7.1")) == 4, 5, what="sessions logged")
        assert {n for n, _ in bed.sessions("127.0.7.1")} - {first}
        # Postfix queued the three retries
        wait_for(lambda: len(postfix.queue()) >= 3, 10, what="three messages queued")
        time.sleep(0.3)
        assert len(postfix.queue()) == 3
    finally:
        if bed is not None:
            bed.stop()
        postfix.stop()
