#!/usr/bin/python3
"""bench_filters.py: what content filters cost sluiced, measured in one run.

Starts sluice-sink (--count-only), the filters (an accept-all python3-milter,
clamd with a one-signature database, rspamd with Debian's configuration,
all from testbeds/lib/filters.py) and one sluiced per configuration in
front of the sink:
  none            no filter (the baseline)
  milter/stream   the accept-all milter, filter_mode = stream
  milter/spool    the same milter, filter_mode = spool (the message is
                  held, then sent upstream after the verdict)
  clamd/stream    clamd INSTREAM over its unix socket
  rspamd/stream   rspamd /checkv2 (a full scan)
  rspamd/spool    rspamd with its header changes applied
For each: messages/s with smtp-source (parallel sessions, one message per
session), sluiced's own CPU time per message during that run (utime +
stime: what sluice itself spends, whatever the filter's speed), and the
sequential per-message latency (p50, p99) of a client that pipelines
MAIL/RCPT/DATA; printed with the ratio to the baseline and the latency
each adds.  The accept-all milter shows sluice's own overhead
(the filter does nothing); the others add the filter's own work.

Bounded: every socket operation has a timeout and the whole run a deadline
(--deadline).  Needs root for clamd and rspamd's users (as the test beds).
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "testbeds"))

from bench_proxy import (Client, cpu_seconds, find_binary, free_port, latencies,  # noqa: E402
                         smtp_source, start_sluiced, wait_port)


def stop(p):
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=5)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)


def eod_latencies(port, n, body):
    """Seconds from the final dot to the reply, for n messages of one session.
    The body is written first (sendall returns once all but the socket
    buffers' worth is read by sluiced), then the clock starts at the dot."""
    c = Client(port, timeout=120)
    assert c.reply() == 220
    assert c.cmd(b"EHLO bench.test\r\n") == 250
    out = []
    for _ in range(n):
        c.s.sendall(b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
        assert c.reply() == 250 and c.reply() == 250 and c.reply() == 354
        c.s.sendall(body)
        t0 = time.perf_counter()
        assert c.cmd(b".\r\n") == 250
        out.append(time.perf_counter() - t0)
    c.cmd(b"QUIT\r\n")
    c.close()
    return out


def eod_run(a, configs, want, sluiced, work, sink_port, procs, end):
    sizes = [int(x) for x in a.eod.split(",")]
    rows = []
    for size in sizes:
        body = b"Subject: bench\r\nFrom: a@bench.test\r\nTo: b@bench.test\r\n\r\n" + \
            (b"x" * 76 + b"\r\n") * max(1, size // 78)
        for name, extra in configs:
            if not want(name) and name != "none":
                continue
            if time.monotonic() > end - 30:
                print(f"bench_filters: deadline near, {name} at {size} and later skipped")
                break
            p, port = start_sluiced(sluiced, work, name.replace("/", "-"), sink_port,
                                    extra + ["relay_domains = *", "filter_timeout = 60s",
                                             "message_size_max = 52428800"])
            procs.append(p)
            eod_latencies(port, 1, body)  # warm-up
            lat = sorted(eod_latencies(port, a.latency_n, body))
            stop(p)
            procs.remove(p)
            rows.append((size, name, statistics.median(lat), lat[-1]))
    print(f"\nlatency after the final dot, {a.latency_n} sequential messages per row")
    print(f"{'size':>10} {'config':<15} {'p50 ms':>9} {'max ms':>9} {'added p50 ms':>13}")
    base = {}
    for size, name, p50, mx in rows:
        if name == "none":
            base[size] = p50
        added = (p50 - base[size]) * 1e3 if size in base else float("nan")
        print(f"{size:>10} {name:<15} {p50 * 1e3:9.2f} {mx * 1e3:9.2f} {added:13.2f}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluiced")
    ap.add_argument("--sink", help="sluice-sink binary")
    ap.add_argument("--messages", type=int, default=400, help="throughput messages per config")
    ap.add_argument("--sessions", type=int, default=8, help="parallel smtp-source sessions")
    ap.add_argument("--size", type=int, default=4000, help="message size in bytes")
    ap.add_argument("--latency-n", type=int, default=60, help="sequential messages per config")
    ap.add_argument("--only", help="comma-separated configs to run (default: all)")
    ap.add_argument("--deadline", type=float, default=400, help="seconds for the whole run")
    ap.add_argument("--eod", help="comma-separated message sizes in bytes (e.g. 1000000,10000000): "
                    "only measure, per config, the time from the final dot to the reply "
                    "(what the filters add after the end of data), --latency-n messages each")
    a = ap.parse_args()
    end = time.monotonic() + a.deadline
    sluiced = find_binary("sluiced", a.sluiced)
    sink_bin = find_binary("sluice-sink", a.sink)
    from lib import filters as F  # the test beds' filter fixtures

    work = Path(tempfile.mkdtemp(prefix="bench-filters-"))
    procs, servers = [], []
    rows = []
    try:
        sink_port = free_port()
        sink = subprocess.Popen([str(sink_bin), "--listen", f"127.0.0.1:{sink_port}",
                                 "--count-only", "--max-sessions", "20000"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(sink)
        wait_port(sink_port, sink)
        only = set(a.only.split(",")) if a.only else None
        want = lambda n: only is None or n in only  # noqa: E731
        milter = clamd = rspamd = None
        if want("milter/stream") or want("milter/spool"):
            milter = F.MilterServer("accept")
            servers.append(milter)
        if want("clamd/stream"):
            clamd = F.ClamdServer(stream_max="64M")
            servers.append(clamd)
        if want("rspamd/stream") or want("rspamd/spool"):
            rspamd = F.RspamdServer()
            servers.append(rspamd)
        configs = [("none", [])]
        if milter:
            configs += [("milter/stream", [f"filter = milter {milter.filter_address} name=milter",
                                           "filter_mode = stream"]),
                        ("milter/spool", [f"filter = milter {milter.filter_address} name=milter",
                                          "filter_mode = spool"])]
        if clamd:
            configs.append(("clamd/stream", [f"filter = clamd {clamd.filter_address} name=clamd",
                                             "filter_mode = stream"]))
        if rspamd:
            configs += [("rspamd/stream", [f"filter = rspamd {rspamd.filter_address} name=rspamd",
                                           "filter_mode = stream"]),
                        ("rspamd/spool", [f"filter = rspamd {rspamd.filter_address} name=rspamd",
                                          "filter_mode = spool"])]
        body = b"Subject: bench\r\nFrom: a@bench.test\r\nTo: b@bench.test\r\n\r\n" + \
            (b"x" * 76 + b"\r\n") * max(1, a.size // 78)
        if a.eod:
            return eod_run(a, configs, want, sluiced, work, sink_port, procs, end)
        for name, extra in configs:
            if not want(name):
                continue
            if time.monotonic() > end - 30:
                print(f"bench_filters: deadline near, {name} and later configs skipped")
                break
            p, port = start_sluiced(sluiced, work, name.replace("/", "-"), sink_port,
                                    extra + ["relay_domains = *", "filter_timeout = 20s"])
            procs.append(p)
            lat = latencies(port, 5, body)  # warm-up (connections, rspamd's caches)
            cpu0 = cpu_seconds(p.pid)
            mps = smtp_source(port, a.messages, a.sessions, a.size, False,
                              timeout=max(10, end - time.monotonic()))
            cpu_us = (cpu_seconds(p.pid) - cpu0) * 1e6 / a.messages
            lat = latencies(port, a.latency_n, body)
            stop(p)
            procs.remove(p)
            lat.sort()
            rows.append((name, mps, statistics.median(lat), lat[int(len(lat) * 0.99) - 1],
                         cpu_us))
        base = rows[0]
        print(f"\ncontent filters, {a.size}-byte messages; throughput: smtp-source "
              f"-m {a.messages} -s {a.sessions}; latency: {a.latency_n} sequential messages")
        print(f"{'config':<15} {'msgs/s':>9} {'vs none':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'added p50 ms':>13} {'sluiced cpu us/msg':>19}")
        for name, mps, p50, p99, cpu in rows:
            ratio = (mps / base[1]) if (mps and base[1]) else float("nan")
            print(f"{name:<15} {mps or float('nan'):9.0f} {ratio:8.2f} {p50 * 1e3:8.2f} "
                  f"{p99 * 1e3:8.2f} {(p50 - base[2]) * 1e3:13.2f} {cpu:19.0f}")
        return 0
    finally:
        for p in procs:
            stop(p)
        for s in servers:
            s.stop()


if __name__ == "__main__":
    sys.exit(main())
