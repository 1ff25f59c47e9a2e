"""identity = xforward (issue 10) against a real Postfix: XFORWARD before
every upstream MAIL, so that Postfix, which forgets the attributes at each
transaction's end, logs and records the real client for each message of a
session; refused where sluice is not authorized."""
import re

import pytest

from test_proxy_support import raw_connect, send_message, sluiced_factory  # noqa: F401

XFWD_OK = {"main_cf": {"smtpd_authorized_xforward_hosts": "127.0.0.0/8",
                       # XCLIENT out of the way: only XFORWARD names the client
                       "smtpd_authorized_xclient_hosts": ""}}


@pytest.mark.parametrize("postfix_upstream", [XFWD_OK], indirect=True)
def test_two_messages_one_session(postfix_upstream, sluiced_factory):
    s = sluiced_factory([postfix_upstream.address], conf={"identity": "xforward"})
    with raw_connect(s.address, source_ip="127.0.0.31") as c:
        assert c.read_reply().code == 220
        ehlo = c.cmd("EHLO real-client.test")
        assert "XFORWARD" not in str(ehlo)  # sluice's, never the client's
        for n in (1, 2):
            assert send_message(c, rcpts=("user@example.test",),
                                body=f"Subject: {n}\r\n\r\nhello\r\n".encode()).code == 250
        c.cmd("QUIT")
    s.wait_sessions(1)
    # One smtpd "client=" line per message: Postfix logs the connection
    # (sluice) and, as orig_client=, the real client XFORWARD named; the
    # second transaction got its own XFORWARD.
    postfix_upstream.wait_idle()
    log = postfix_upstream.log_text()
    lines = re.findall(r"\b[0-9A-F]{6,}: client=\S+, orig_client=(\S+)", log)
    assert lines == ["unknown[127.0.0.31]", "unknown[127.0.0.31]"], log
    ids = postfix_upstream.message_ids()
    assert len(ids) == 2
    for qid in ids:
        env = postfix_upstream.postcat(qid, "-e")
        # the client's address and HELO in the queue file's log attributes
        assert "log_client_address=127.0.0.31" in env, env
        assert "log_helo_name=real-client.test" in env, env


def test_not_offered_sends_without_identity(postfix_upstream, sluiced_factory):
    # The default test bed Postfix does not authorize XFORWARD: it does not
    # offer it, and sluice sends mail as with identity = none.  (A server
    # that offers and then refuses is the transcript xforward-refused.)
    s = sluiced_factory([postfix_upstream.address], conf={"identity": "xforward"})
    with raw_connect(s.address, source_ip="127.0.0.32") as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO real-client.test")
        assert send_message(c, rcpts=("user@example.test",)).code == 250
        c.cmd("QUIT")
    s.wait_sessions(1)
    postfix_upstream.wait_idle()
    assert "XFORWARD" not in postfix_upstream.log_text()
