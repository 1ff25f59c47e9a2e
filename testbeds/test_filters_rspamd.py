"""A real rspamd 3.4 (private config, no network, no Redis) behind sluiced:
GTUBE is refused during the session, ham arrives with rspamd's headers
added (spool mode), a soft reject is a 4xx; judged by the client's result
and the receiving Postfix's queue."""
import pytest

from lib.filters import GTUBE, SOFT_REJECT_HEADER, SOFT_REJECT_MESSAGE
from test_filters_support import (QueueStep, assert_filter_counted, data_reply,  # noqa: F401
                                  filtered_sluiced, header_values, headers_and_body, message,
                                  reply_code, send, settled_fds, wait_session_verdict)

# The first test to run also starts the session's daemons (Postfix, rspamd:
# 3-15 s each on a loaded machine) within its setup phase.
pytestmark = pytest.mark.deadline(120)


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
    base_fds = s.fd_count()
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
    settled_fds(s, base_fds)


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



@pytest.mark.parametrize("mode", ["stream", "spool"])
def test_rspamd_names_the_message_by_the_session_id(mode, rspamd_server, filter_postfix,
                                                    filtered_sluiced):
    """The Queue-Id header carries the id of sluiced's session line: rspamd's
    own log line for the scan (its "qid: <...>") names that session, so an
    operator goes from a rspamd verdict to the session that carried it."""
    import re
    from lib.net import wait_for
    s = rspamd_sluiced(filtered_sluiced, rspamd_server, filter_postfix, mode)
    subject = f"queue id {mode}"
    r = send(s.address, message(subject))
    what = f"{r.transcript}\n{s.stderr()[-3000:]}"
    assert r.rc == 0 and reply_code(r) == 250, what
    wait_session_verdict(s, "rspamd")
    sids = [rec["session"] for rec in s.sessions() if "rspamd:" in str(rec.get("filters", ""))]
    assert len(sids) == 1 and re.fullmatch(r"[0-9a-f]{16}", sids[0]), (sids, s.sessions())

    def scan_line():
        for line in rspamd_server.log().splitlines():
            if "rspamd_task_write_log" in line and f"qid: <{sids[0]}>" in line:
                return line
        return None
    line = wait_for(scan_line, 10, what=f"qid {sids[0]} in rspamd's log: "
                                         f"{rspamd_server.log()[-3000:]}")
    # The same scan: the envelope sluice sent is in that line too.
    assert "sender@example.test" in line and "rcpt@example.test" in line, line
    # No AUTH in this session, so no User header (test_filters_auth_user.py).
    assert "user:" not in line, line


RSPAMD_MILTER_CASES = {
    "gtube": (GTUBE.decode(), ()),
    "ham": ("a friendly note for rspamd's milter", ()),
    "soft-reject": ("deferred by the prefilter", (SOFT_REJECT_HEADER,)),
}


@pytest.mark.parametrize("case", list(RSPAMD_MILTER_CASES))
def test_rspamd_milter_same_verdict_as_postfix(case, rspamd_server, filter_postfix,
                                               filtered_sluiced):
    """rspamd's own milter (its proxy worker; not libmilter: it answers
    OPTNEG with every action, SMFIF_CHGBODY included, whatever the MTA
    offered, and every no-reply flag) behind Postfix and behind sluiced:
    the same deciding code and text, the same number of queued messages,
    the same header fields added (but X-Rspamd-Queue-Id, which rspamd adds
    only when the MTA gives it a queue id, as Postfix does and sluice,
    having none before the upstream's, does not)."""
    from lib.postfix import service
    from test_filters_support import raw_send, transaction_code
    body, headers = RSPAMD_MILTER_CASES[case]
    msg = message(f"rspamd milter {case}", body=body, headers=headers)
    direct_step = QueueStep(filter_postfix)
    direct = raw_send(service(filter_postfix, "milter-rspamd").address, msg)
    direct_new = direct_step.new()
    s = filtered_sluiced(filter_postfix.address,
                         [f"milter {rspamd_server.milter_address} name=rspamd-milter"])
    via_step = QueueStep(filter_postfix)
    via = raw_send(s.address, msg)
    via_new = via_step.new()
    what = (f"\n--- direct:\n{direct.transcript}\n--- via sluiced:\n{via.transcript}\n"
            f"--- sluiced log:\n{s.stderr()[-3000:]}")
    expected = {"gtube": 5, "ham": 2, "soft-reject": 4}[case]
    assert transaction_code(direct) // 100 == expected, what
    assert transaction_code(via) == transaction_code(direct), what
    if expected != 2:
        # rspamd's own reason on both paths (not a default action's text).
        assert data_reply(via)[4:] == data_reply(direct)[4:], what
    assert len(direct_new) == len(via_new) == (1 if expected == 2 else 0), what
    if via_new:
        def names(data):
            return sorted({f.split(b":", 1)[0].lower() for f in headers_and_body(data)[0]}
                          - {b"x-rspamd-queue-id"})
        assert names(via_new[0].data) == names(direct_new[0].data), \
            (direct_new[0].data, via_new[0].data)
        assert headers_and_body(via_new[0].data)[1] == headers_and_body(direct_new[0].data)[1]
        status = header_values(via_new[0].data, "X-Spam-Status")
        assert len(status) == 1 and status[0].startswith("No, score="), via_new[0].data
