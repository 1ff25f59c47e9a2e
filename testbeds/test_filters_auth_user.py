"""The AUTH user reaches the filters (issue 11): a client authenticates
through sluiced (AUTH PLAIN or LOGIN over STARTTLS, relayed undecoded to
aiosmtpd, the test beds' upstream with an account), and the real rspamd
scanning its message names that user: rspamd's own log line for the scan
says "user: NAME", whether sluiced asked it over HTTP (the User header) or
through rspamd's milter ({auth_authen} with MAIL, as Postfix sends it).  A
failed AUTH names no one."""
import re

import pytest

from lib.clients import swaks
from lib.filters import rspamd_server, _rspamd_spawned  # noqa: F401
from lib.net import wait_for
from test_filters_support import filtered_sluiced, message, wait_session_verdict  # noqa: F401

pytestmark = pytest.mark.deadline(120)

USER = "sasl-alice@example.test"
PASSWORD = "s3cret-pw"


def scan_line(rspamd, subject: str):
    """rspamd's log line for the scan of the message with this subject
    (message() makes its Message-ID from it), or None."""
    mid = re.sub(r"[^a-z0-9]+", "-", subject.lower())
    for line in rspamd.log().splitlines():
        if "rspamd_task_write_log" in line and f"id: <{mid}@client.test>" in line:
            return line
    return None


def authed_sluiced(factory, rspamd, upstream, tls_certs, how):
    filt = (f"rspamd {rspamd.filter_address} name=rspamd" if how == "http"
            else f"milter {rspamd.milter_address} name=rspamd-milter")
    return factory(upstream.address, [filt], conf={"features": "all"}, tls_certs=tls_certs)


@pytest.mark.parametrize("how", ["http", "milter"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_rspamd_names_the_auth_user(mech, how, rspamd_server, aiosmtpd_factory,
                                    filtered_sluiced, tls_certs):
    up = aiosmtpd_factory(auth=(USER, PASSWORD))
    s = authed_sluiced(filtered_sluiced, rspamd_server, up, tls_certs, how)
    subject = f"auth user {mech} {how}"
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              auth=(mech, USER, PASSWORD), data=message(subject))
    what = f"{r.transcript}\n{r.stderr}\n--- sluiced:\n{s.stderr()[-3000:]}"
    assert r.rc == 0, what
    m = up.wait_messages(1)[0]
    assert m.envelope["auth_login"] == USER, m.envelope   # the upstream did the AUTH
    wait_session_verdict(s, "rspamd" if how == "http" else "rspamd-milter")
    line = wait_for(lambda: scan_line(rspamd_server, subject), 10,
                    what=f"the scan of {subject!r} in rspamd's log: "
                         f"{rspamd_server.log()[-3000:]}")
    assert f"user: {USER}" in line, line
    assert PASSWORD not in rspamd_server.log()


def test_failed_auth_names_no_user(rspamd_server, aiosmtpd_factory, filtered_sluiced, tls_certs):
    """A refused AUTH leaves the session unauthenticated: the message it
    then sends (the upstream takes it from anyone) is scanned with no User."""
    up = aiosmtpd_factory(auth=(USER, PASSWORD))
    s = authed_sluiced(filtered_sluiced, rspamd_server, up, tls_certs, "http")
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert,
              auth=("PLAIN", USER, "wrong"), data=message("auth refused"))
    assert r.rc != 0 and "535" in r.transcript, r.transcript
    subject = "after a refused auth"
    r = swaks(s.address, tls=True, tls_verify_ca=tls_certs.ca_cert, data=message(subject))
    if r.rc != 0:
        pytest.skip(f"the upstream needs AUTH for a message: {r.transcript[-500:]}")
    line = wait_for(lambda: scan_line(rspamd_server, subject), 10,
                    what=f"the scan in rspamd's log: {rspamd_server.log()[-3000:]}")
    assert "user:" not in line, line
