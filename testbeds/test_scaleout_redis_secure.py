"""Scale-out across machines (issue 12): the shared Redis with AUTH
(requirepass, a Redis 6+ ACL user) and TLS (its tls-port, a test CA and
certificates made here by the openssl CLI), as README "Redis across
machines: AUTH and TLS" describes.  Two sluiced instances behind a real
HAProxy, one real redis-server, a real Postfix upstream; judged from the
clients' replies, Redis's own keys (read with an authenticated redis-cli),
sluiced's logs and metrics.
"""
import re
import subprocess
import time

import pytest

from lib.net import wait_for
from lib.postfix import PostfixInstance
from lib.scaleout import ScaleOut
from lib.tls import make_certs
from test_proxy_support import raw_connect, sluiced_binary, sluiced_factory  # noqa: F401

PASSWORD = "default user's secret"
ACL_PASSWORD = "sluice's own secret"
# The ACL of README "Redis across machines": the commands sluiced's scripts
# and pipeline run, on its key prefix only.
ACL = ["sluice", "on", ">" + ACL_PASSWORD, "resetchannels", "~sluice:*",
       "+evalsha", "+script|load", "+set", "+zrem", "+time", "+zadd", "+zcard",
       "+zremrangebyscore", "+zremrangebyrank", "+pexpire", "+expire", "+exists",
       "+get", "+hmget", "+hset", "+incr"]
CONF = {"per_ip_concurrency": 2, "over_concurrency": "tempfail"}


@pytest.fixture(scope="module")
def postfix():
    import os
    if os.geteuid() != 0:
        pytest.skip("Postfix needs root (it drops privileges to the postfix user)")
    p = PostfixInstance()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """The test CA (server and client certificates) and a second CA that
    signed neither."""
    d = tmp_path_factory.mktemp("redis-tls")
    return make_certs(d / "ok"), make_certs(d / "other")


def secret_file(tmp_path, text, name="redis.secret"):
    p = tmp_path / name
    p.write_text(text + "\n")
    p.chmod(0o600)
    return p


def bed_with(tmp_path, sluiced_factory, postfix, conf, redis_opts):  # noqa: F811
    c = dict(CONF)
    c.update(conf)
    return ScaleOut(tmp_path / "bed", sluiced_factory, postfix.address, n=2, conf=c,
                    redis_opts=redis_opts)


def ready_lines(s):
    return len(re.findall(r"redis inet:\S+ ready", s.stderr()))


def greet(ip, bed, n):
    """n sessions from ip through HAProxy (round robin over the instances):
    their greeting codes, and the slowest greeting's time."""
    clients, codes, slowest = [], [], 0.0
    for _ in range(n):
        t = time.monotonic()
        c = raw_connect(bed.address, source_ip=ip)
        codes.append(c.read_reply().code)
        slowest = max(slowest, time.monotonic() - t)
        clients.append(c)
    return clients, sorted(codes), slowest


def assert_shared(bed, ip):
    """per_ip_concurrency = 2 holds for the deployment: of four sessions
    spread over two instances, two are let in, and Redis counts them."""
    wait_for(lambda: all(ready_lines(s) >= 1 for s in bed.instances.values()), 10,
             what="every instance's Redis connection ready")
    clients, codes, _ = greet(ip, bed, 4)
    assert codes == [220, 220, 421, 421], codes
    assert bed.redis.cli("ZCARD", f"sluice:c:{ip}/32") == "2"
    assert bed.metric_sum("sluice_state_lookups_total", {"result": "shared"}) >= 4
    for c in clients:
        c.close()
    wait_for(lambda: bed.redis.cli("ZCARD", f"sluice:c:{ip}/32") == "0", 5,
             what="shared count released")


@pytest.mark.deadline(40)
def test_requirepass_shares_state(tmp_path, sluiced_factory, postfix):  # noqa: F811
    """requirepass, the password in redis_password_file: state is shared;
    --print-config does not show a password given inline."""
    bed = bed_with(tmp_path, sluiced_factory, postfix,
                   {"redis_password_file": secret_file(tmp_path, PASSWORD)},
                   {"extra": ["--requirepass", PASSWORD], "password": PASSWORD})
    try:
        assert_shared(bed, "127.0.2.1")
        # without AUTH Redis refuses everything: the data really is protected
        r = subprocess.run(["redis-cli", "-p", str(bed.redis.port), "ZCARD", "x"],
                           capture_output=True, timeout=10)
        assert b"NOAUTH" in r.stdout + r.stderr
        assert bed.metric_sum("sluice_state_connections_total", {"event": "auth_failed"}) == 0
    finally:
        bed.stop()


@pytest.mark.deadline(40)
def test_acl_user_shares_state(tmp_path, sluiced_factory, postfix):  # noqa: F811
    """A Redis 6+ ACL user limited to sluiced's commands and key prefix
    (AUTH user pass): state is shared, greylisting included, and no
    command of the scripts is refused (NOPERM)."""
    bed = bed_with(tmp_path, sluiced_factory, postfix,
                   {"redis_username": "sluice",
                    "redis_password_file": secret_file(tmp_path, ACL_PASSWORD),
                    "mode": "screen", "greet_teaser": "no", "greylist": "yes",
                    "greylist_delay": "1s", "greylist_spf": "no"},
                   # the test reads Redis as the default user (SCAN is not
                   # sluiced's, so not in the ACL)
                   {"extra": ["--requirepass", PASSWORD, "--user", *ACL],
                    "password": PASSWORD})
    try:
        assert_shared(bed, "127.0.2.2")
        # greylisting's script runs under the ACL too: RCPT gets 450 (new
        # triplet), and the triplet is in Redis
        c = raw_connect(bed.address, source_ip="127.0.2.3")
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<s@example.test>").code == 250
        r = c.cmd("RCPT TO:<r@example.test>")
        assert r.code == 450, r
        c.close()
        assert bed.redis.keys("sluice:gt:*")
        assert bed.metric_sum("sluice_state_lookups_total", {"result": "error"}) == 0
        assert not any("NOPERM" in s.stderr() for s in bed.instances.values())
    finally:
        bed.stop()


@pytest.mark.deadline(40)
def test_wrong_password_local_verdicts(tmp_path, sluiced_factory, postfix):  # noqa: F811
    """A wrong password: every instance logs a clear error naming the keys to
    check, counts it, and gives local verdicts at once (the limit is then
    per instance: all four sessions of one client get in), the loop never
    waits; nothing reaches Redis."""
    bed = bed_with(tmp_path, sluiced_factory, postfix,
                   {"redis_password": "not the password"},
                   {"extra": ["--requirepass", PASSWORD], "password": PASSWORD})
    try:
        wait_for(lambda: bed.metric_sum("sluice_state_connections_total",
                                        {"event": "auth_failed"}) >= 2, 10,
                 what="refused AUTH counted on both instances")
        for s in bed.instances.values():
            line = [ln for ln in s.stderr().splitlines() if "AUTH as user default refused" in ln]
            assert line and '"level":"error"' in line[0].replace(" ", ""), s.stderr()[-2000:]
            assert "WRONGPASS" in line[0] and "redis_password" in line[0]
            assert ready_lines(s) == 0
        clients, codes, slowest = greet("127.0.2.4", bed, 4)
        assert codes == [220, 220, 220, 220], codes
        assert slowest < 1.0, slowest
        assert bed.metric_sum("sluice_state_lookups_total", {"result": "down"}) >= 4
        for c in clients:
            c.close()
        assert bed.redis.keys("sluice:*") == []
    finally:
        bed.stop()


@pytest.mark.deadline(40)
def test_tls_shares_state(tmp_path, sluiced_factory, postfix, certs):  # noqa: F811
    """Redis on its tls-port only, client certificates required, and AUTH:
    state is shared over TLS (the name checked is 127.0.0.1, the host of
    redis =, against the certificate's IP address)."""
    ok, _ = certs
    bed = bed_with(tmp_path, sluiced_factory, postfix,
                   {"redis_tls": "yes", "redis_tls_ca": ok.ca_cert,
                    "redis_tls_cert": ok.client_cert, "redis_tls_key": ok.client_key,
                    "redis_password_file": secret_file(tmp_path, PASSWORD)},
                   {"tls": ok, "extra": ["--requirepass", PASSWORD], "password": PASSWORD})
    try:
        assert_shared(bed, "127.0.2.5")
        # the port really is TLS only: a plaintext client gets nothing
        r = subprocess.run(["redis-cli", "-p", str(bed.redis.port), "PING"],
                           capture_output=True, timeout=10)
        assert b"PONG" not in r.stdout
        assert bed.metric_sum("sluice_state_connections_total", {"event": "tls_failed"}) == 0
    finally:
        bed.stop()


@pytest.mark.deadline(40)
def test_tls_wrong_ca_refused(tmp_path, sluiced_factory, postfix, certs):  # noqa: F811
    """A CA that did not sign Redis's certificate: the handshake is refused,
    with an error line saying why and which keys to check, counted; the
    sessions go on with local verdicts at once."""
    ok, other = certs
    bed = bed_with(tmp_path, sluiced_factory, postfix,
                   {"redis_tls": "yes", "redis_tls_ca": other.ca_cert,
                    "redis_tls_cert": ok.client_cert, "redis_tls_key": ok.client_key},
                   {"tls": ok})
    try:
        wait_for(lambda: bed.metric_sum("sluice_state_connections_total",
                                        {"event": "tls_failed"}) >= 2, 10,
                 what="refused handshakes counted on both instances")
        for s in bed.instances.values():
            line = [ln for ln in s.stderr().splitlines() if "certificate verify failed" in ln]
            assert line, s.stderr()[-2000:]
            assert "redis_tls_ca" in line[0] and '"level":"error"' in line[0].replace(" ", "")
            assert ready_lines(s) == 0
        clients, codes, slowest = greet("127.0.2.6", bed, 4)
        assert codes == [220, 220, 220, 220], codes
        assert slowest < 1.0, slowest
        for c in clients:
            c.close()
    finally:
        bed.stop()


def check_config(tmp_path, conf):
    p = tmp_path / "check.conf"
    p.write_text("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
                 "relay_domains = *\nstate_backend = redis\n"
                 "redis = inet:127.0.0.1:6379\n" +
                 "".join(f"{k} = {v}\n" for k, v in conf.items()))
    return subprocess.run([str(sluiced_binary()), "--check-config", "-c", str(p)],
                          capture_output=True, timeout=10)


@pytest.mark.deadline(20)
def test_check_config(tmp_path, certs):
    """--check-config reads the password file and loads the TLS files;
    --print-config never shows the password."""
    ok, _ = certs
    good = {"redis_password_file": secret_file(tmp_path, PASSWORD), "redis_tls": "yes",
            "redis_tls_ca": ok.ca_cert, "redis_tls_cert": ok.client_cert,
            "redis_tls_key": ok.client_key}
    r = check_config(tmp_path, good)
    assert r.returncode == 0, r.stderr
    cases = [
        ({"redis_password_file": tmp_path / "missing"}, "missing"),
        ({"redis_password_file": secret_file(tmp_path, "", "empty.secret")}, "empty"),
        (dict(good, redis_tls_key=ok.ca_key), "does not match"),
        ({"redis_username": "sluice"}, "needs redis_password"),
        ({"redis_tls_ca": ok.ca_cert}, "without redis_tls = yes"),
        ({"redis_password": "x", "redis_password_file": tmp_path / "x"}, "not both"),
    ]
    for conf, want in cases:
        r = check_config(tmp_path, conf)
        assert r.returncode == 2 and want in r.stderr.decode(), (conf, r.stderr)
    p = tmp_path / "print.conf"
    p.write_text("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
                 "redis_password = hunter2\n")
    r = subprocess.run([str(sluiced_binary()), "--print-config", "-c", str(p)],
                       capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert b"hunter2" not in r.stdout and b"# redis_password is set" in r.stdout
