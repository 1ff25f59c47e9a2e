"""Policy delegation at Postfix's stages (README "Policy delegation at
Postfix's stages"): with policy_stages, sluiced asks the policy service at
MAIL, RCPT and DATA with protocol_state and the attributes Postfix sends
there, and a refusal answers that command.  Against a small policy server
speaking the real protocol that records every request, and Debian's
postfix-policyd-spf-python (spawned per connection, as Postfix's spawn(8)
runs it) rejecting at MAIL; a real Postfix upstream, judged from its log
and queue."""
import os
import socket
import subprocess
import threading
import time

import pytest

import lib.dns as dns_lib
from lib.dns import UnboundServer
from lib.net import LOCALHOST
from lib.policy_server import deciding
from test_proxy_support import raw_connect, sluiced_factory  # noqa: F401

POLICYD_SPF = "/usr/bin/policyd-spf"


@pytest.fixture
def stage_policy():
    made = []

    def make(decide):
        p = deciding(decide)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def decide(req):
    state = req["protocol_state"]
    if state == "MAIL" and req["sender"].startswith("spammer@"):
        return "REJECT spam source"
    if state == "RCPT" and req["recipient"].startswith("blocked@"):
        return "DEFER_IF_PERMIT try later"
    if state == "DATA" and req["recipient_count"] == "2":
        return "550 5.7.1 one recipient per message here"
    return "DUNNO"


@pytest.mark.parametrize("mode", ["screen", "passthrough"])
def test_policy_at_mail_rcpt_and_data(postfix_upstream, sluiced_factory, stage_policy, mode):
    pf = postfix_upstream
    p = stage_policy(decide)
    s = sluiced_factory([pf.address], conf={
        "mode": mode, "greet_teaser": "no", "policy_service": p.address,
        "policy_stages": "mail rcpt data"})
    with raw_connect(s.address, source_ip="127.0.0.91") as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        r = c.cmd("MAIL FROM:<spammer@example.test>")
        assert r.code == 554 and r.text == (
            "5.7.1 <spammer@example.test>: Sender address rejected: spam source"), r
        # the refused MAIL opened no transaction
        assert c.cmd("RCPT TO:<user@example.test>").code == 503
        assert c.cmd("MAIL FROM:<ok@example.test> SIZE=321").code == 250
        r = c.cmd("RCPT TO:<blocked@example.test>")
        assert r.code == 450 and r.text == (
            "4.7.1 <blocked@example.test>: Recipient address rejected: try later"), r
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: one\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        # two recipients: the DATA check refuses, nothing is committed
        assert c.cmd("MAIL FROM:<ok@example.test>").code == 250
        assert c.cmd("RCPT TO:<u1@example.test>").code == 250
        assert c.cmd("RCPT TO:<u2@example.test>").code == 250
        r = c.cmd("DATA")
        assert r.code == 550 and r.text == (
            "5.7.1 <DATA>: Data command rejected: one recipient per message here"), r
        assert c.cmd("RSET").code == 250
        assert c.cmd("QUIT").code == 221
    held = pf.wait_held(1)
    time.sleep(0.5)
    assert len(pf.held()) == 1
    assert held[0].sender == "ok@example.test" and held[0].recipients == ["user@example.test"]
    log = pf.log()
    assert "spammer@example.test" not in log and "blocked@example.test" not in log, log
    assert p.states() == ["MAIL", "MAIL", "RCPT", "RCPT", "DATA", "MAIL", "RCPT", "RCPT",
                          "DATA"], p.requests
    mail, data1, data2 = p.requests[1], p.requests[4], p.requests[8]
    assert mail["sender"] == "ok@example.test" and mail["recipient"] == "" and \
        mail["size"] == "321" and mail["recipient_count"] == "0", mail
    assert data1["recipient_count"] == "1" and data1["size"] == "321", data1
    assert data2["recipient_count"] == "2" and data2["size"] == "0", data2
    for r in p.requests:
        assert r["request"] == "smtpd_access_policy" and r["client_address"] == "127.0.0.91"
        assert r["helo_name"] == "client.test" and r["protocol_name"] == "ESMTP"
    recs = s.wait_sessions(1)
    assert "554" in recs[-1]["refusals"] and "550" in recs[-1]["refusals"], recs[-1]


@pytest.mark.parametrize("mode", ["screen", "passthrough"])
def test_policy_at_helo(postfix_upstream, sluiced_factory, stage_policy, mode):
    pf = postfix_upstream

    def by_helo(req):
        return "REJECT not you" if req["helo_name"] == "bad.test" else "DUNNO"

    p = stage_policy(by_helo)
    s = sluiced_factory([pf.address], conf={
        "mode": mode, "greet_teaser": "no", "policy_service": p.address,
        "policy_stages": "helo"})
    with raw_connect(s.address, source_ip="127.0.0.94") as c:
        assert c.read_reply().code == 220
        r = c.cmd("EHLO bad.test")
        assert r.code == 554 and r.text == "5.7.1 <bad.test>: Helo command rejected: not you", r
        assert c.cmd("MAIL FROM:<a@example.test>").code == 503  # no EHLO in force
        assert c.cmd("HELO good.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<user@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: helo\r\n\r\nhello\r\n.\r\n")
        assert c.read_reply().code == 250
        c.cmd("QUIT")
    held = pf.wait_held(1)
    assert "log_helo_name=good.test" in held[0].raw or mode == "passthrough", held[0].raw
    assert "bad.test" not in pf.log()
    assert [(r["protocol_state"], r["helo_name"], r["protocol_name"]) for r in p.requests] == \
        [("EHLO", "bad.test", "ESMTP"), ("HELO", "good.test", "SMTP")], p.requests
    assert all(r["sender"] == "" and r["recipient"] == "" for r in p.requests), p.requests


def test_default_stage_is_rcpt(sink, sluiced_factory, stage_policy):
    p = stage_policy(decide)
    s = sluiced_factory([sink.address], conf={
        "mode": "screen", "greet_teaser": "no", "policy_service": p.address})
    with raw_connect(s.address, source_ip="127.0.0.92") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<spammer@example.test>").code == 250  # not asked at MAIL
        assert c.cmd("RCPT TO:<u1@example.test>").code == 250
        assert c.cmd("RCPT TO:<u2@example.test>").code == 250
        assert c.cmd("DATA").code == 354  # nor at DATA
        c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
        assert c.read_reply().code == 250
        c.cmd("QUIT")
    assert p.states() == ["RCPT", "RCPT"], p.requests


class SpawnedPolicy:
    """A TCP listener that runs one policy daemon process per connection
    with the connection as its stdin and stdout, as Postfix's spawn(8)
    runs postfix-policyd-spf-python."""

    def __init__(self, argv):
        self.argv = argv
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.procs = []
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    @property
    def address(self):
        return f"inet:{LOCALHOST}:{self.sock.getsockname()[1]}"

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with c:
                self.procs.append(subprocess.Popen(self.argv, stdin=c.fileno(),
                                                   stdout=c.fileno(),
                                                   stderr=subprocess.DEVNULL))

    def stop(self):
        self.stopping = True
        self.t.join(5)
        for pr in self.procs:
            try:
                pr.wait(5)
            except subprocess.TimeoutExpired:
                pr.kill()
                pr.wait()
        self.sock.close()


class Port53Unbound(UnboundServer):
    """The test beds' unbound on port 53 of its own loopback address: a
    resolv.conf (which names no port) can point at it."""

    def start(self):
        orig = dns_lib.free_port
        dns_lib.free_port = lambda *a, **k: 53
        try:
            return super().start()
        finally:
            dns_lib.free_port = orig


@pytest.mark.skipif(not os.path.exists(POLICYD_SPF),
                    reason="Debian's postfix-policyd-spf-python is not installed")
def test_policyd_spf_rejects_at_mail(postfix_upstream, sluiced_factory, tmp_path):
    """postfix-policyd-spf-python at MAIL: unbound publishes strict.test's
    SPF record, which fails for this client, and the daemon's REJECT
    refuses the MAIL in its own words; a sender without SPF passes with its
    Received-SPF PREPEND (a proxy cannot carry it out: DUNNO) and the
    message reaches Postfix.  The daemon runs in a mount namespace whose
    /etc/resolv.conf names that unbound (the host's is not touched)."""
    u = Port53Unbound(tmp_path / "unbound", host="127.0.53.1")
    u.add_record("strict.test", "strict.test", "TXT", '"v=spf1 ip4:192.0.2.1 -all"')
    u.add_zone("example.test")
    u.start()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.53.1\n")
    conf = tmp_path / "policyd-spf.conf"
    conf.write_text("debugLevel = 0\nTestOnly = 1\nHELO_reject = No_Check\n"
                    "Mail_From_reject = Fail\nPermError_reject = False\n"
                    "TempError_Defer = False\nskip_addresses = 192.0.2.0/24\n")
    spf = SpawnedPolicy(["unshare", "-m", "--propagation", "private", "sh", "-c",
                         f"mount --bind {resolv} /etc/resolv.conf && exec {POLICYD_SPF} {conf}"])
    try:
        pf = postfix_upstream
        s = sluiced_factory([pf.address], conf={
            "mode": "screen", "greet_teaser": "no", "policy_service": spf.address,
            "policy_stages": "mail", "policy_timeout": "8s"})
        with raw_connect(s.address, source_ip="127.0.0.93") as c:
            assert c.read_reply().code == 220
            assert c.cmd("EHLO client.test").code == 250
            r = c.cmd("MAIL FROM:<a@strict.test>")
            assert r.code == 550 and r.text.startswith(
                "5.7.23 <a@strict.test>: Sender address rejected: Message rejected due to: "
                "SPF fail - not authorized"), r
            assert c.cmd("MAIL FROM:<b@example.test>").code == 250
            assert c.cmd("RCPT TO:<user@example.test>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(b"Subject: spf\r\n\r\nhello\r\n.\r\n")
            assert c.read_reply().code == 250
            c.cmd("QUIT")
        held = pf.wait_held(1)
        assert held[0].sender == "b@example.test"
        assert "strict.test" not in pf.log()
    finally:
        spf.stop()
        u.stop()


AUTH_USER = "sasl-alice@example.test"
AUTH_PASSWORD = "s3cret-pw"


def by_sasl_user(req):
    """Relays only for the authenticated account, as a submission policy
    keyed on sasl_username does."""
    if req["protocol_state"] == "RCPT" and req["sasl_username"] != AUTH_USER:
        return "REJECT authenticate first"
    return "DUNNO"


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_policy_learns_the_sasl_user(aiosmtpd_factory, sluiced_factory, stage_policy,
                                     tls_certs, mech):
    """After an AUTH the upstream accepted (relayed undecoded to aiosmtpd
    with one account), the MAIL and RCPT requests carry sasl_username and
    sasl_method as Postfix sends them; a refused AUTH, or none, sends them
    empty, and the policy keyed on them refuses that client's recipient."""
    from lib.clients import swaks
    up = aiosmtpd_factory(auth=(AUTH_USER, AUTH_PASSWORD))
    p = stage_policy(by_sasl_user)
    s = sluiced_factory([up.address], tls_certs=tls_certs, conf={
        "features": "all", "greet_teaser": "no", "policy_service": p.address,
        "policy_stages": "mail rcpt"})
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              auth=(mech, AUTH_USER, AUTH_PASSWORD), body="authenticated")
    assert r.rc == 0, r.transcript + r.stderr + s.stderr()[-3000:]
    m = up.wait_messages(1)[0]
    assert m.envelope["auth_login"] == AUTH_USER, m.envelope  # the upstream did the AUTH
    assert [(q["protocol_state"], q["sasl_username"], q["sasl_method"], q["sasl_sender"])
            for q in p.requests] == [("MAIL", AUTH_USER, mech, ""),
                                     ("RCPT", AUTH_USER, mech, "")], p.requests
    assert all(AUTH_PASSWORD not in str(q) for q in p.requests), p.requests
    # a refused AUTH: swaks gives up at the 535, nothing is asked
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              auth=(mech, AUTH_USER, "wrong"), body="refused")
    assert r.rc != 0 and "535" in r.transcript, r.transcript
    assert len(p.requests) == 2, p.requests
    # no AUTH: asked with no user, and refused by the policy at RCPT
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert, body="anonymous")
    assert r.rc != 0, r.transcript
    assert "554 5.7.1 <rcpt@example.test>: Recipient address rejected: authenticate first" \
        in r.transcript, r.transcript
    assert [(q["protocol_state"], q["sasl_username"], q["sasl_method"])
            for q in p.requests[2:]] == [("MAIL", "", ""), ("RCPT", "", "")], p.requests
    time.sleep(0.5)
    assert len(up.message_ids()) == 1


POLICYD_RATE_LIMIT = "/usr/bin/policyd-rate-limit"


@pytest.fixture
def rate_limit_policyd():
    """Debian's policyd-rate-limit on loopback, limiting by sasl_username
    only (limit_by_ip off) to 2 recipients a minute, with its sqlite
    database in a directory of its own; it drops to its own user."""
    import tempfile
    import shutil
    from lib.net import free_port, wait_port
    d = tempfile.mkdtemp(prefix="sluice-prl-")
    os.chmod(d, 0o755)
    port = free_port()
    conf = os.path.join(d, "policyd-rate-limit.yaml")
    with open(conf, "w") as f:
        f.write(f"""debug: True
user: "policyd-rate-limit"
group: "policyd-rate-limit"
pidfile: "{d}/run/policyd-rate-limit.pid"
sqlite_config:
    database: "{d}/db/db.sqlite3"
backend: 0
SOCKET: ["{LOCALHOST}", {port}]
limits:
    - [2, 60]
limits_by_id: {{}}
limit_by_sasl: True
limit_by_sender: False
limit_by_ip: False
limited_networks: []
success_action: "dunno"
fail_action: "defer_if_permit Rate limit reach, retry later"
db_error_action: "dunno"
report: False
delay_to_close: 300
""")
    log = open(os.path.join(d, "log"), "wb")
    p = subprocess.Popen([POLICYD_RATE_LIMIT, "-f", conf], stdout=log, stderr=log)
    try:
        wait_port(LOCALHOST, port, 15, proc=p)
        yield f"inet:{LOCALHOST}:{port}", lambda: open(os.path.join(d, "log"),
                                                       errors="replace").read()
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(not os.path.exists(POLICYD_RATE_LIMIT),
                    reason="Debian's policyd-rate-limit is not installed")
def test_policyd_rate_limit_by_sasl_user(aiosmtpd_factory, sluiced_factory, tls_certs,
                                         rate_limit_policyd):
    """The real policyd-rate-limit at RCPT counts the authenticated user's
    recipients and defers the third within its minute; clients without AUTH
    carry no sasl_username and are not limited (it limits by user only)."""
    from lib.clients import swaks
    address, log = rate_limit_policyd
    up = aiosmtpd_factory(auth=(AUTH_USER, AUTH_PASSWORD))
    s = sluiced_factory([up.address], tls_certs=tls_certs, conf={
        "features": "all", "greet_teaser": "no", "policy_service": address,
        "policy_stages": "rcpt"})
    for i, mech in enumerate(["PLAIN", "LOGIN", "PLAIN"]):
        r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
                  auth=(mech, AUTH_USER, AUTH_PASSWORD), body=f"authed {i}")
        if i < 2:
            assert r.rc == 0, r.transcript + r.stderr + log()[-3000:]
        else:
            assert r.rc != 0, r.transcript
            assert "450 4.7.1 <rcpt@example.test>: Recipient address rejected: " \
                "Rate limit reach, retry later" in r.transcript, r.transcript + log()[-3000:]
    for i in range(3):
        r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert, body=f"anon {i}")
        assert r.rc == 0, r.transcript + log()[-3000:]
    up.wait_messages(5)
    time.sleep(0.5)
    assert len(up.message_ids()) == 5
    assert f"sasl_username={AUTH_USER}" in log() and f"insert id {AUTH_USER}" in log(), log()
    assert AUTH_PASSWORD not in log()


@pytest.mark.skipif(not os.path.exists(POLICYD_RATE_LIMIT),
                    reason="Debian's policyd-rate-limit is not installed")
def test_second_auth_keeps_the_rate_limited_user(aiosmtpd_factory, sluiced_factory,
                                                 tls_certs, rate_limit_policyd):
    """An authenticated client cannot shed policyd-rate-limit's per-user
    count by sending a second AUTH in its session: aiosmtpd refuses it with
    503 (RFC 4954 4), the first user stays the session's sasl_username, and
    the third recipient of the minute is deferred as for any session of
    that user.  (sluiced once forgot the user at the second AUTH, and the
    rest of the session went through as anonymous, unlimited.)"""
    import base64
    import smtplib
    import ssl
    address, log = rate_limit_policyd
    up = aiosmtpd_factory(auth=(AUTH_USER, AUTH_PASSWORD))
    s = sluiced_factory([up.address], tls_certs=tls_certs, conf={
        "features": "all", "greet_teaser": "no", "policy_service": address,
        "policy_stages": "rcpt"})
    ctx = ssl.create_default_context(cafile=tls_certs.ca_cert)
    with smtplib.SMTP(s.address[0], s.address[1], timeout=20) as c:
        c.starttls(context=ctx)
        c.login(AUTH_USER, AUTH_PASSWORD)
        other = base64.b64encode(b"\0mallory@example.test\0pw").decode()
        code, text = c.docmd("AUTH", "PLAIN " + other)
        assert code == 503, (code, text)
        for i in range(2):
            assert c.sendmail("sender@example.test", ["rcpt@example.test"],
                              f"Subject: {i}\r\n\r\nbody {i}\r\n") == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.sendmail("sender@example.test", ["rcpt@example.test"],
                       "Subject: 2\r\n\r\nbody 2\r\n")
        code, text = e.value.recipients["rcpt@example.test"]
        assert code == 450 and b"Rate limit reach" in text, (code, text, log()[-3000:])
    up.wait_messages(2)
    time.sleep(0.5)
    assert len(up.message_ids()) == 2
    assert f"sasl_username={AUTH_USER}" in log() and "mallory" not in log(), log()
