"""Upstreams (issue 10): riding out an upstream restart (upstream_wait),
measured under load, and health checks run once per machine."""
import random
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from lib.net import LOCALHOST, free_port, wait_for
from lib.paths import project_binary
from test_proxy_support import sluiced_factory  # noqa: F401


class FlappingSink:
    """sluice-sink on a fixed port, killed (SIGKILL) and restarted at random
    moments; records the intervals during which the port refused."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.tmp = tmp_path
        self.proc = None
        self.down = []  # (t_down, t_up)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [str(project_binary("sluice-sink")), "--listen", f"{LOCALHOST}:{self.port}",
             "--count-only", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.accepting, 10, interval=0.005, what="sink up")

    def accepting(self):
        try:
            socket.create_connection((LOCALHOST, self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def flap(self, until, rng):
        while time.monotonic() < until - 1.5:
            time.sleep(rng.uniform(0.3, 0.9))
            t0 = time.monotonic()
            self.proc.kill()
            self.proc.wait()
            time.sleep(rng.uniform(0.2, 0.7))  # the restart takes this long
            self.start()
            self.down.append((t0, time.monotonic()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def client_loop(address, until, results):
    # Sessions start on a fixed 50 ms pace (when the last one is over), so
    # they sample time evenly: a refused session being quicker than a
    # delivered one does not inflate the refused share.
    t = time.monotonic()
    while time.monotonic() < until:
        t = max(t + 0.05, time.monotonic())
        time.sleep(max(0.0, t - time.monotonic()))
        try:
            c = smtplib.SMTP(*address, timeout=15)
        except (smtplib.SMTPException, OSError):
            # No 220: the client was turned away at the start.
            results.append((t, "refused"))
            continue
        try:
            c.sendmail("a@example.test", ["b@example.test"], b"Subject: t\r\n\r\nx\r\n")
            c.quit()
            results.append((t, "delivered"))
        except (smtplib.SMTPException, OSError):
            # The upstream was killed under this session: 451, nothing to
            # ride out (the transaction was already on that server).
            results.append((t, "lost"))
        finally:
            c.close()


def measure(sluiced, sink, seconds=8.0, clients=4, seed=1):
    rng = random.Random(seed)
    until = time.monotonic() + seconds
    results = []
    threads = [threading.Thread(target=client_loop, args=(sluiced.address, until, results))
               for _ in range(clients)]
    for t in threads:
        t.start()
    sink.flap(until, rng)
    for t in threads:
        t.join(30)
    down = sum(b - a for a, b in sink.down)
    refused = sum(1 for _, r in results if r == "refused")
    lost = sum(1 for _, r in results if r == "lost")
    return {"sessions": len(results), "refused": refused, "lost": lost,
            "refused_share": refused / max(1, len(results)),
            "down_share": down / seconds, "outages": len(sink.down)}


@pytest.mark.parametrize("wait", ["0", "3s"])
def test_upstream_restarts_under_load(sluiced_factory, tmp_path, wait):
    sink = FlappingSink(tmp_path)
    try:
        s = sluiced_factory([(LOCALHOST, sink.port)],
                            conf={"upstream_wait": wait, "mode": "passthrough"})
        m = measure(s, sink)
    finally:
        sink.stop()
    print(f"\nupstream_wait={wait}: {m['sessions']} sessions, {m['outages']} outages, "
          f"upstream down {100 * m['down_share']:.0f}% of the time, "
          f"clients refused {100 * m['refused_share']:.1f}%, "
          f"lost mid-session {m['lost']}")
    assert m["outages"] >= 3 and m["sessions"] >= 20, m
    if wait == "0":
        # Without the wait every session that starts during an outage is
        # refused (the attempts are immediate): the share follows downtime.
        assert m["refused"] > 0, m
    else:
        # Outages of at most 0.7 s (+ the sink's start) fit in 3 s: nobody
        # is refused, they only wait.
        assert m["refused"] == 0, m
        assert any(r.get("upstream_retries") for r in s.sessions()), "retries are logged"
