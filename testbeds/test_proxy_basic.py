"""sluiced end to end with real clients: every message that got 250 arrives
upstream exactly once and byte-exact; upstream rejections reach the client
with the upstream's reply; logs, metrics and the config checker."""
import re
import subprocess

import pytest

from lib.clients import RawSMTP, smtp_source, smtplib_send, swaks
from lib.net import wait_for
from test_proxy_support import send_message, sluiced_binary, sluiced_factory  # noqa: F401


def body_of(i, size=300):
    text = f"Subject: message {i}\r\nMessage-Id: <m{i}@client.test>\r\n\r\n"
    line = f"line of message {i} ".ljust(70, "x") + "\r\n"
    while len(text) < size:
        text += line
    return text.encode()


def test_swaks_plain_message_arrives_once(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    r = swaks(s.address, to="rcpt@example.test", body="hello through sluiced")
    assert r.rc == 0, r.transcript + r.stderr
    msgs = sink.wait_messages(1)
    assert len(msgs) == 1
    assert b"hello through sluiced" in msgs[0].data
    assert msgs[0].envelope.rcpts == ["<rcpt@example.test>"]
    # The 250 the client saw for the message is the upstream's.
    assert any(l.startswith("250") for l in r.replies("250"))


def test_smtplib_many_messages_one_session_byte_exact(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    bodies = [body_of(i, 200 + 700 * i) for i in range(8)]
    # Dot-stuffing and lines starting with dots must survive the round trip.
    bodies.append(b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nx\r\n")
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        for b in bodies:
            stuffed = re.sub(rb"(?m)^\.", b"..", b)
            r = send_message(c, body=stuffed)
            assert r.code == 250, r
        assert c.cmd("QUIT").code == 221
    msgs = sink.wait_messages(len(bodies))
    assert [m.data for m in msgs] == bodies


def test_smtplib_client(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    msg = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: smtplib\r\n\r\nbody\r\n"
    refused = smtplib_send(s.address, "a@example.test", ["b@example.test", "c@example.test"], msg)
    assert refused == {}
    m = sink.wait_messages(1)[0]
    assert m.data == msg
    assert m.envelope.rcpts == ["<b@example.test>", "<c@example.test>"]


def test_pipelining_swaks(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    r = swaks(s.address, pipeline=True, body="pipelined")
    assert r.rc == 0, r.transcript + r.stderr
    assert len(sink.wait_messages(1)) == 1


def test_pipelined_burst_gets_replies_in_order(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert "PIPELINING" in c.cmd("EHLO client.test").text
        c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\n"
               b"RCPT TO:<c@example.test>\r\nDATA\r\n")
        codes = [c.read_reply().code for _ in range(4)]
        assert codes == [250, 250, 250, 354]
        c.send(b"Subject: p\r\n\r\npipelined body\r\n.\r\nQUIT\r\n")
        assert c.read_reply().code == 250
        assert c.read_reply().code == 221
    assert sink.wait_messages(1)[0].data == b"Subject: p\r\n\r\npipelined body\r\n"


@pytest.mark.parametrize("sink", [{"reject_rcpt": ["nobody"]}], indirect=True)
def test_upstream_rcpt_rejection_reaches_client(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        r = c.cmd("RCPT TO:<nobody@example.test>")
        assert r.code == 550
        assert "5.1.1" in r.text
        assert c.cmd("RCPT TO:<ok@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
        assert c.read_reply().code == 250
    m = sink.wait_messages(1)[0]
    assert m.envelope.rcpts == ["<ok@example.test>"]


@pytest.mark.parametrize("sink", [{"tempfail_data": True}], indirect=True)
def test_upstream_data_tempfail_reaches_client(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        r = send_message(c)
        assert r.code == 451
        assert "tempfail" in r.text
    assert sink.message_ids() == []
    rec = s.wait_sessions(1)[0]
    assert rec["messages_tempfailed"] == 1
    assert rec["messages"].startswith("451:")


def test_smtp_source_volume(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    r = smtp_source(s.address, messages=300, sessions=10, msglen=2000, reuse=True)
    assert r.returncode == 0, r.stderr
    msgs = sink.wait_messages(300, timeout=30)
    assert len(msgs) == 300
    # No duplicates: each message has a unique Message-Id from smtp-source's counter.
    sessions = s.wait_sessions(10)
    assert sum(x["messages_accepted"] for x in sessions) == 300
    # one session per message too (no connection reuse)
    r = smtp_source(s.address, messages=40, sessions=8, msglen=100, reuse=False)
    assert r.returncode == 0, r.stderr
    assert len(sink.wait_messages(340, timeout=30)) == 340


def test_session_log_and_metrics(sink, sluiced_factory):
    s = sluiced_factory([sink.address])
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        c.cmd("EHLO client.test")
        assert send_message(c, body=b"Subject: a\r\n\r\n12345\r\n").code == 250
        assert c.cmd("QUIT").code == 221
    rec = s.wait_sessions(1)[0]
    assert rec["client"] == "127.0.0.1"
    assert rec["upstream"] == f"{sink.address[0]}:{sink.address[1]}"
    assert rec["end"] == "quit"
    assert rec["stage"] == "delivered"
    assert rec["messages_accepted"] == 1
    assert rec["messages"].startswith("250:")
    assert rec["client_bytes_in"] > 0 and rec["upstream_bytes_out"] > 0
    assert float(rec["duration_ms"]) >= 0
    text = s.metrics()
    assert text.rstrip().endswith("# EOF")
    assert s.metric("sluice_messages_total", {"result": "accepted"}) == 1
    assert s.metric("sluice_sessions_total", {"end": "quit"}) == 1
    assert s.metric("sluice_connections_accepted_total") == 1
    assert s.metric("sluice_connections_active") == 0
    assert s.metric("sluice_session_duration_seconds_count") == 1


def test_logfmt_format(sink, sluiced_factory):
    s = sluiced_factory([sink.address], conf={"log_format": "logfmt"})
    r = swaks(s.address, body="x")
    assert r.rc == 0
    line = wait_for(lambda: [l for l in s.stderr().splitlines() if 'msg=session' in l], 10)[0]
    assert "client=127.0.0.1" in line and "messages_accepted=1" in line and "end=quit" in line


def test_check_config(tmp_path):
    good = tmp_path / "good.conf"
    good.write_text("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n")
    r = subprocess.run([sluiced_binary(), "--check-config", "-c", good], capture_output=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n\ncommand_timeout = soon\n")
    r = subprocess.run([sluiced_binary(), "--check-config", "-c", bad], capture_output=True,
                       timeout=20)
    assert r.returncode == 2
    assert f"{bad}:4: command_timeout" in r.stderr.decode()
    cert = tmp_path / "tls.conf"
    cert.write_text("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
                    f"tls_cert = {tmp_path}/missing.pem\ntls_key = {tmp_path}/missing.key\n")
    r = subprocess.run([sluiced_binary(), "-t", "-c", cert], capture_output=True, timeout=20)
    assert r.returncode == 2
    assert "missing.pem" in r.stderr.decode()
    r = subprocess.run([sluiced_binary(), "--help"], capture_output=True, timeout=20)
    assert r.returncode == 0 and b"SIGHUP" in r.stdout and b"--check-config" in r.stdout


def test_example_config_documents_every_key():
    """Every key sluiced knows appears in sluiced.conf.example with its default."""
    from lib.paths import REPO
    example = (REPO / "drivers" / "sluiced.conf.example").read_text()
    r = subprocess.run([sluiced_binary(), "--print-defaults"], capture_output=True, timeout=20)
    assert r.returncode == 0
    missing = []
    for line in r.stdout.decode().splitlines():
        key, _, val = line.partition(" = ")
        if key == "hostname":  # the machine's name, documented as such
            continue
        pat = re.compile(r"^#?" + re.escape(key) + r"\s*=\s*" + re.escape(val) + r"\s*$", re.M)
        if not pat.search(example):
            missing.append(line)
    assert not missing, "undocumented or wrong defaults in the example: " + "; ".join(missing)
