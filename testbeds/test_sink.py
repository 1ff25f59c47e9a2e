"""sluice-sink's own protocol behaviour, byte for byte (it is the oracle the
proxy tests compare against, so its strictness is tested here)."""
import os
import signal
import socket
import struct
import time

import pytest

from lib.clients import RawSMTP, smtp_source, swaks
from lib.net import wait_for


def start_txn(c, rcpts=("b@example.test",)):
    assert c.read_reply().code == 220
    assert c.cmd("EHLO client.test").code == 250
    assert c.cmd("MAIL FROM:<a@example.test>").code == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>").code == 250


def test_ehlo_capabilities(sink_factory):
    s = sink_factory(name="sink.test")
    with RawSMTP(s.address) as c:
        g = c.read_reply()
        assert g.code == 220 and g.lines == ["sink.test ESMTP sluice-sink"]
        e = c.cmd("EHLO client.test")
        assert e.lines == ["sink.test", "PIPELINING", "SIZE 52428800", "8BITMIME",
                           "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "CHUNKING"]
        assert c.cmd("HELO client.test").lines == ["sink.test"]
        assert c.cmd("XCLIENT ADDR=192.0.2.1").code == 502
    x = sink_factory(xclient=True)
    with RawSMTP(x.address) as c:
        c.read_reply()
        assert c.cmd("EHLO client.test").lines[-2].startswith("XCLIENT ")


def test_pipelined_replies_in_order(sink):
    with RawSMTP(sink.address) as c:
        assert c.read_reply().code == 220
        c.send(b"MAIL FROM:<early@example.test>\r\nEHLO client.test\r\nNOOP\r\nBOGUS\r\n"
               b"RCPT TO:<x@example.test>\r\nMAIL FROM:<a@example.test>\r\n"
               b"MAIL FROM:<again@example.test>\r\nRCPT TO:<b@example.test>\r\n"
               b"RSET\r\nDATA\r\nVRFY x\r\nQUIT\r\n")
        codes = [c.read_reply().code for _ in range(12)]
        assert codes == [503, 250, 250, 500, 503, 250, 503, 250, 250, 503, 252, 221]
        assert c.expect_closed(2)
    assert sink.messages() == []


def unstuff(wire: bytes) -> bytes:
    """RFC 5321 4.5.2 on CRLF-delimited lines: drop one leading dot."""
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in wire.split(b"\r\n"))


def test_data_end_is_strict_crlf_dot_crlf(sink):
    # Every smuggling variant is content; only CRLF.CRLF ends the message, so
    # the "smuggled" MAIL/RCPT/DATA stays inside the one message.
    body = (b"Subject: smuggle\r\n\r\nA\n.\nB\r.\rC\n.\r\nMAIL FROM:<evil@example.test>\r\n"
            b"RCPT TO:<victim@example.test>\r\nDATA\r\nD\r\n.\nE\r.\r\nF\r\n\x00.\r\nG\r\n")
    with RawSMTP(sink.address) as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        c.send(body + b".\r\n")
        r = c.read_reply()
        assert r.code == 250
        assert c.cmd("QUIT").code == 221
    [m] = sink.wait_messages(1)
    assert m.data == unstuff(body)
    assert b"MAIL FROM:<evil@example.test>\r\n" in m.data
    time.sleep(0.1)
    assert len(sink.messages()) == 1


def test_dot_unstuffing_and_empty_message(sink):
    with RawSMTP(sink.address) as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        # Split across writes at awkward places: after CR, after the dot.
        for part in (b"..x\r", b"\n.", b".\r\n", b".y\r\n.", b"\r", b"z\r\n.\r\n"):
            c.send(part)
            time.sleep(0.02)
        assert c.read_reply().code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        assert c.cmd(".").code == 250
    a, b = sink.wait_messages(2)
    # "..x" -> ".x"; ".." -> "."; ".y" -> "y"; ".\rz" -> "\rz"
    assert a.data == b".x\r\n.\r\ny\r\n\rz\r\n"
    assert b.data == b""


def test_bdat(sink):
    with RawSMTP(sink.address) as c:
        start_txn(c)
        c.send(b"BDAT 7\r\nab\r\n.\r\nBDAT 3\r\n\n.\nBDAT 0 LAST\r\n")
        assert [c.read_reply().code for _ in range(3)] == [250, 250, 250]
        # Without a transaction the chunk is still consumed, then refused.
        c.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
        assert c.read_reply().code == 503
        assert c.read_reply().code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        c.send(b"BDAT 2\r\nhi")
        assert c.read_reply().code == 250
        assert c.cmd("DATA").code == 503
        c.send(b"BDAT 4 LAST\r\n\r\n.\r")
        assert c.read_reply().code == 250
        assert c.cmd("QUIT").code == 221
    a, b = sink.wait_messages(2)
    assert a.data == b"ab\r\n.\r\n\n.\n" and a.envelope.transfer == "BDAT"
    assert b.data == b"hi\r\n.\r"


def test_long_and_bare_lf_lines_refused(sink_factory):
    s = sink_factory(max_line=200)
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        c.send(b"NOOP " + b"x" * 5000 + b"\r\n")
        assert c.read_reply().code == 500
        assert c.cmd("NOOP").code == 250   # the session survives
        c.send(b"NOOP\n")
        assert c.read_reply().code == 500
        c.send(b"NO\x00OP\r\n")
        assert c.read_reply().code == 500
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"y" * 199 + b"\r\n.\r\n")   # 201 bytes with CRLF: one too many
        assert c.read_reply().code == 500
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"y" * 198 + b"\r\n.\r\n")
        assert c.read_reply().code == 250
    assert [len(m.data) for m in s.wait_messages(1)] == [200]


def test_size_limit(sink_factory):
    s = sink_factory(size=1000)
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test> SIZE=1001").code == 552
        assert c.cmd("MAIL FROM:<a@example.test> SIZE=10").code == 250
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(b"z" * 998 + b"\r\nzz\r\n.\r\n")
        assert c.read_reply().code == 552
    assert s.messages() == []


def test_large_message_streams_to_disk(sink):
    body = b"".join(b"%07d " % i + b"m" * 90 + b"\r\n" for i in range(60000))  # ~5.9 MB
    with RawSMTP(sink.address, timeout=30) as c:
        start_txn(c)
        assert c.cmd("DATA").code == 354
        c.send(body + b".\r\n")
        assert c.read_reply().code == 250
    [m] = sink.wait_messages(1)
    assert m.data == body


def test_xclient_recorded(sink_factory):
    s = sink_factory(xclient=True)
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO proxy.test").code == 250
        r = c.cmd("XCLIENT ADDR=192.0.2.7 NAME=client.example.test")
        assert r.code == 220
        assert c.cmd("MAIL FROM:<a@example.test>").code == 503  # EHLO again first
        assert c.cmd("EHLO client.example.test").code == 250
        assert c.cmd("MAIL FROM:<a@example.test>").code == 250
        assert c.cmd("XCLIENT ADDR=192.0.2.8").code == 503
        assert c.cmd("RCPT TO:<b@example.test>").code == 250
        assert c.cmd("DATA").code == 354
        assert c.cmd("x\r\n.").code == 250
    [m] = s.wait_messages(1)
    assert m.envelope.xclient == {"ADDR": "192.0.2.7", "NAME": "client.example.test"}
    assert m.envelope.helo == "EHLO client.example.test"


def proxy_v2(src, sport, dst, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return sig + bytes([0x21, 0x11]) + struct.pack(">H", len(addrs)) + addrs


@pytest.mark.parametrize("header,expect", [
    (b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\r\n", "v1 TCP4 192.0.2.10:40000 127.0.0.1:25"),
    (b"PROXY TCP6 2001:db8::1 ::1 40001 25\r\n", "v1 TCP6 [2001:db8::1]:40001 [::1]:25"),
    (proxy_v2("198.51.100.3", 5555, "127.0.0.1", 25), "v2 TCP4 198.51.100.3:5555 127.0.0.1:25"),
])
def test_proxy_protocol_recorded(sink_factory, header, expect):
    s = sink_factory(proxy_protocol=True)
    with RawSMTP(s.address) as c:
        # Nothing is said before the header: the greeting waits for it.
        with pytest.raises(TimeoutError):
            c.read_reply(timeout=0.3)
        c.send(header[:5])
        time.sleep(0.05)
        c.send(header[5:])
        start_txn(c)
        assert c.cmd("DATA").code == 354
        assert c.cmd("x\r\n.").code == 250
    [m] = s.wait_messages(1)
    assert m.envelope.proxy == expect


def test_proxy_protocol_garbage_closes(sink_factory):
    s = sink_factory(proxy_protocol=True)
    with RawSMTP(s.address) as c:
        c.send(b"EHLO client.test\r\n")
        assert c.expect_closed(3)
        assert c.buf == b""


def test_idle_timeout(sink_factory):
    s = sink_factory(timeout=1)
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        t0 = time.monotonic()
        assert c.read_reply(timeout=5).code == 421
        assert 0.8 <= time.monotonic() - t0 < 4
        assert c.expect_closed(2)


def test_ipv6_listener(sink_factory):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 not configured")
    s = sink_factory(host="::1")
    r = swaks(("::1", s.port))
    assert r.rc == 0, r.transcript + r.stderr
    [m] = s.wait_messages(1)
    assert m.envelope.peer.startswith("[::1]:")


def test_many_concurrent_sessions(sink_factory):
    s = sink_factory(count_only=True)
    conns = []
    try:
        for _ in range(300):
            c = RawSMTP(s.address)
            conns.append(c)
        for c in conns:
            assert c.read_reply().code == 220
        for c in conns:
            c.send(b"EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        for c in conns:
            assert [c.read_reply().code for _ in range(4)] == [250, 250, 250, 354]
        for c in conns:
            c.send(b"Subject: concurrent\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        for c in conns:
            assert c.read_reply().code == 250
            assert c.read_reply().code == 221
    finally:
        for c in conns:
            c.close()
    assert s.stop()["messages"] == 300


def test_pid_file_and_clean_exit(sink_factory, tmp_path):
    pid_file = tmp_path / "sink.pid"
    s = sink_factory(pid_file=pid_file)
    assert int(pid_file.read_text()) == s.proc.pid
    assert swaks(s.address).rc == 0
    os.kill(s.proc.pid, signal.SIGUSR1)  # counters without stopping
    wait_for(lambda: s.proc.popen.poll() is None and True, 2)
    stats = s.stop()
    assert stats["rc"] == 0 and stats["messages"] == 1
    assert stats["stdout"].count("stats ") == 2
    assert not pid_file.exists()


def test_max_sessions(sink_factory):
    s = sink_factory(max_sessions=2)
    # The readiness probe's session must be gone before counting.
    time.sleep(0.3)
    with RawSMTP(s.address) as a, RawSMTP(s.address) as b:
        assert a.read_reply().code == 220 and b.read_reply().code == 220
        with RawSMTP(s.address) as c:
            assert c.read_reply().code == 421
    wait_for(lambda: swaks(s.address).rc == 0, 5)


def test_smtp_source_many_parallel_sessions(sink_factory):
    s = sink_factory(count_only=True)
    r = smtp_source(s.address, messages=1000, sessions=50, msglen=500, reuse=False)
    assert r.returncode == 0, r.stderr
    stats = s.stop()
    assert stats["messages"] == 1000 and stats["sessions"] >= 1000


def test_several_listeners(tmp_path):
    from lib.paths import project_binary
    from lib.proc import Proc
    p = Proc([project_binary("sluice-sink"), "--listen", "127.0.0.1:0", "--listen",
              "127.0.0.2:0", "--print-port", "--count-only", "--stats"],
             tmp_path, "sink", stdout_pipe=True)
    try:
        ports = [int(p.read_line()), int(p.read_line())]
        for host, port in zip(("127.0.0.1", "127.0.0.2"), ports):
            assert swaks((host, port)).rc == 0
        # Each address is bound on its own: the other's port is not served there.
        if ports[0] != ports[1]:
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.2", ports[0]), timeout=2).close()
    finally:
        rc = p.stop()
    assert rc == 0
    assert "messages=2 " in p.remaining_stdout()


def test_backpressure_keeps_every_reply(sink):
    # The client writes far more pipelined commands than the sink's buffers and
    # the socket buffers hold, and reads only later: the sink must stop reading
    # rather than drop or reorder replies.
    import threading
    n = 30000
    with RawSMTP(sink.address, timeout=20) as c:
        assert c.read_reply().code == 220
        blob = b"".join(b"NOOP %d\r\n" % i for i in range(n)) + b"QUIT\r\n"
        t = threading.Thread(target=c.sock.sendall, args=(blob,), daemon=True)
        t.start()
        time.sleep(0.5)
        codes = [c.read_reply().code for _ in range(n + 1)]
        t.join(10)
        assert codes == [250] * n + [221]
        assert c.expect_closed(5)


def test_delay_with_many_sessions(sink_factory):
    s = sink_factory(delay_ms=100, count_only=True)
    t0 = time.monotonic()
    r = smtp_source(s.address, messages=200, sessions=100, reuse=False)
    assert r.returncode == 0, r.stderr
    # Each session waits ~8 delayed replies; 100 in parallel must overlap.
    assert time.monotonic() - t0 < 8
    assert s.stop()["messages"] == 200


def test_smtputf8_envelope_recorded(sink):
    with RawSMTP(sink.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        c.send("MAIL FROM:<jö@example.test> SMTPUTF8 BODY=8BITMIME\r\n".encode())
        assert c.read_reply().code == 250
        c.send("RCPT TO:<ü@例え.test> NOTIFY=NEVER\r\n".encode())
        assert c.read_reply().code == 250
        assert c.cmd("DATA").code == 354
        c.send("Subject: é\r\n\r\n日本\r\n.\r\n".encode())
        assert c.read_reply().code == 250
    [m] = sink.wait_messages(1)
    assert m.envelope.mail_from == "<jö@example.test>"
    assert m.envelope.mail_params == "SMTPUTF8 BODY=8BITMIME"
    assert m.envelope.rcpts == ["<ü@例え.test>"] and m.envelope.rcpt_params == ["NOTIFY=NEVER"]
    assert m.data == "Subject: é\r\n\r\n日本\r\n".encode()
