"""Large messages: a DATA body of many megabytes, sent in one burst as
fast as the kernel takes it, is relayed whole and byte-exact (a stall here
once held a 5 MB body at 3.5 MB until the data timeout)."""
import pytest

from lib.clients import RawSMTP
from test_proxy_support import send_message, sluiced_factory  # noqa: F401


@pytest.mark.deadline(120)
@pytest.mark.parametrize("mb", [5, 12])
def test_large_message_one_burst(sink, sluiced_factory, mb):
    s = sluiced_factory([sink.address])
    line = b"0123456789" * 7 + b"\r\n"
    body = b"Subject: large\r\n\r\n" + line * (mb * 1024 * 1024 // len(line))
    with RawSMTP(s.address) as c:
        assert c.read_reply().code == 220
        assert c.cmd("EHLO client.test").code == 250
        r = send_message(c, body=body)
        assert r.code == 250, r
    msgs = sink.wait_messages(1, timeout=30)
    assert len(msgs) == 1
    assert msgs[0].data == body
