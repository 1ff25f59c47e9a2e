"""A real rspamd 3.4 (private config, no network, no Redis) behind sluiced:
GTUBE is refused during the session, ham arrives with rspamd's headers
added (spool mode), a soft reject is a 4xx; judged by the client's result
and the receiving Postfix's queue."""
import pytest

from lib.filters import GTUBE, SOFT_REJECT_HEADER, SOFT_REJECT_MESSAGE
from test_filters_support import (QueueStep, assert_filter_counted, data_reply,  # noqa: F401
                                  filtered_sluiced, header_values, headers_and_body, message,
                                  reply_code, send, wait_session_verdict)


def test_rspamd_fixture_scores_like_rspamd(rspamd_server):
    """The fixture's rspamd, asked directly as an MTA would ask it: the three
    verdicts the sluice tests rely on, and milter.add_headers for ham."""
    env = {"From": "sender@example.test", "Rcpt": "rcpt@example.test", "IP": "127.0.0.1",
           "Helo": "client.test"}
    spam = rspamd_server.checkv2(message("gtube", body=GTUBE.decode()), env)
    assert spam["action"] == "reject" and "GTUBE" in spam["symbols"], spam
    soft = rspamd_server.checkv2(message("soft", headers=(SOFT_REJECT_HEADER,)), env)
    assert soft["action"] == "soft reject", soft
    assert soft["messages"]["smtp_message"] == SOFT_REJECT_MESSAGE, soft
    ham = rspamd_server.checkv2(message("ham"), env)
    assert ham["action"] == "no action", ham
    assert {"X-Spamd-Result", "X-Spam-Status"} <= set(ham["milter"]["add_headers"]), ham


def rspamd_sluiced(factory, rspamd, receiver, mode="stream"):
    return factory(receiver.address, [f"rspamd {rspamd.filter_address} name=rspamd"],
                   conf={"filter_mode": mode})


@pytest.mark.parametrize("mode", ["stream", "spool"])
def test_gtube_rejected_during_session(mode, rspamd_server, filter_postfix, filtered_sluiced):
    s = rspamd_sluiced(filtered_sluiced, rspamd_server, filter_postfix, mode)
    step = QueueStep(filter_postfix)
    r = send(s.address, message(f"gtube {mode}", body="spam follows\n" + GTUBE.decode()))
    what = f"{r.transcript}\n{s.stderr()[-3000:]}"
    assert r.rc == 26, what                         # swaks: end of data refused
    assert reply_code(r) // 100 == 5, what
    # The client gets rspamd's own reason, re-framed into one safe reply line.
    assert "Gtube pattern" in data_reply(r), what
    assert step.new() == [], "GTUBE reached the receiver's queue"
    wait_session_verdict(s, "rspamd", "reject")
    assert_filter_counted(s, "rspamd", "reject")


def test_ham_delivered_with_rspamd_headers_in_spool_mode(rspamd_server, filter_postfix,
                                                          filtered_sluiced):
    s = rspamd_sluiced(filtered_sluiced, rspamd_server, filter_postfix, "spool")
    step = QueueStep(filter_postfix)
    sent = message("ham for rspamd", body="just a friendly note\nwith two lines")
    r = send(s.address, sent)
    what = f"{r.transcript}\n{s.stderr()[-3000:]}"
    assert r.rc == 0 and reply_code(r) == 250, what
    new = step.new()
    assert len(new) == 1, new
    got = new[0].data
    # rspamd's milter.add_headers, applied by sluice before the upstream saw the message.
    status = header_values(got, "X-Spam-Status")
    assert len(status) == 1 and status[0].startswith("No, score="), got
    assert len(header_values(got, "X-Spamd-Result")) == 1, got
    assert header_values(got, "X-Spamd-Result")[0].startswith("default: False"), got
    # Nothing else changed: the sent header fields are all there and the body is intact.
    sent_fields, sent_body = headers_and_body(sent.replace(b"\r\n", b"\n"))
    got_fields, got_body = headers_and_body(got)
    assert got_body == sent_body
    assert set(sent_fields) <= set(got_fields), (sent_fields, got_fields)
    # Ham with header changes: "change" (README: relayed with the filter's changes).
    tok = wait_session_verdict(s, "rspamd", "change", "accept")
    assert_filter_counted(s, "rspamd", tok.rpartition(":")[2])


def test_soft_reject_is_a_tempfail(rspamd_server, filter_postfix, filtered_sluiced):
    s = rspamd_sluiced(filtered_sluiced, rspamd_server, filter_postfix)
    step = QueueStep(filter_postfix)
    r = send(s.address, message("soft reject", headers=(SOFT_REJECT_HEADER,)))
    what = f"{r.transcript}\n{s.stderr()[-3000:]}"
    assert r.rc == 26, what
    assert reply_code(r) // 100 == 4, what
    assert step.new() == [], "a soft-rejected message reached the receiver's queue"
    wait_session_verdict(s, "rspamd", "tempfail")
    assert_filter_counted(s, "rspamd", "tempfail")
