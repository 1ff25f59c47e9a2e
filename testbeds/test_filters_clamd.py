"""A real clamd (ClamAV, with a signature database the tests write: no
freshclam, no download) behind sluiced: EICAR is refused with the virus
name in the reply, a clean message arrives byte-exact; over clamd's unix
socket and over TCP."""
import pytest

from lib.filters import EICAR, EICAR_SIGNATURE
from lib.receiver import canonical
from test_filters_support import (QueueStep, assert_filter_counted, data_reply,  # noqa: F401
                                  filtered_sluiced, message, reply_code, send,
                                  settled_fds, wait_session_verdict)

# The first test to run also starts the session's daemons (Postfix, rspamd:
# 3-15 s each on a loaded machine) within its setup phase.
pytestmark = pytest.mark.deadline(120)

TRANSPORTS = ["unix", "inet"]


def clamd_sluiced(factory, clamd, receiver, transport, conf=None):
    addr = clamd.filter_address if transport == "unix" else clamd.tcp_filter_address
    return factory(receiver.address, [f"clamd {addr} name=clamav"], conf=conf)


def eicar_message(subject):
    """EICAR as a MIME attachment, as a mail client sends it."""
    return (b"From: sender@example.test\r\nTo: rcpt@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"
            b"--b1\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n"
            + EICAR + b"\r\n--b1--\r\n")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_eicar_rejected_with_virus_name(transport, clamd_server, filter_postfix,
                                        filtered_sluiced):
    s = clamd_sluiced(filtered_sluiced, clamd_server, filter_postfix, transport)
    base_fds = s.fd_count()
    step = QueueStep(filter_postfix)
    r = send(s.address, eicar_message(f"eicar over {transport}"))
    what = f"{r.transcript}\n{s.stderr()[-3000:]}\n{clamd_server.log()[-1500:]}"
    assert r.rc == 26, what
    assert reply_code(r) // 100 == 5, what
    assert EICAR_SIGNATURE in data_reply(r), what
    assert step.new() == [], "EICAR reached the receiver's queue"
    wait_session_verdict(s, "clamav", "reject")
    assert_filter_counted(s, "clamav", "reject")
    settled_fds(s, base_fds)  # clamd's socket and the closed upstream leg


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_clean_message_delivered_byte_exact(transport, clamd_server, filter_postfix,
                                            filtered_sluiced):
    s = clamd_sluiced(filtered_sluiced, clamd_server, filter_postfix, transport)
    step = QueueStep(filter_postfix)
    scans = clamd_server.clean_scans()
    # Long enough for several INSTREAM chunks; lines with dots and spaces kept.
    body = "\n".join(f"line {i:05d} of a clean message {'.' * (i % 7)} " for i in range(3000))
    sent = message(f"clean over {transport}", body=".leading dot\n" + body)
    r = send(s.address, sent)
    what = f"{r.transcript}\n{s.stderr()[-3000:]}"
    assert r.rc == 0 and reply_code(r) == 250, what
    new = step.new()
    assert len(new) == 1, new
    assert new[0].data == canonical(sent)
    # It was clamd that passed it: one more clean stream in clamd's own log.
    assert clamd_server.clean_scans() == scans + 1, clamd_server.log()[-2000:]
    wait_session_verdict(s, "clamav", "accept")
    assert_filter_counted(s, "clamav", "accept")


def test_rspamd_and_clamd_together_any_reject_wins(clamd_server, rspamd_server, filter_postfix,
                                                   filtered_sluiced):
    """Both filters see every message; EICAR (ham to rspamd) is refused by
    clamd's verdict, a clean message passes both; the session line names
    both filters' verdicts."""
    s = filtered_sluiced(filter_postfix.address,
                         [f"rspamd {rspamd_server.filter_address} name=rspamd",
                          f"clamd {clamd_server.filter_address} name=clamav"])
    step = QueueStep(filter_postfix)
    bad = send(s.address, eicar_message("eicar with two filters"))
    assert reply_code(bad) // 100 == 5 and EICAR_SIGNATURE in data_reply(bad), bad.transcript
    assert step.new() == []
    wait_session_verdict(s, "clamav", "reject")
    wait_session_verdict(s, "rspamd", "accept", "change")
    step = QueueStep(filter_postfix)
    good = send(s.address, message("clean with two filters"))
    assert reply_code(good) == 250, good.transcript + s.stderr()[-2000:]
    assert len(step.new()) == 1
    wait_session_verdict(s, "clamav", "accept")
