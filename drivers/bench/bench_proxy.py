#!/usr/bin/python3
"""bench_proxy.py: sluiced against a direct connection, measured in one run.

Starts sluice-sink (--count-only) and sluiced in front of it, then measures:
  1. throughput (Postfix's smtp-source, a C client): messages/s direct and
     through sluiced, one message per session and many per session;
  2. per-message latency (a sequential Python client): p50/p99 direct and
     through sluiced;
  3. sluiced's CPU time per message (utime+stime from /proc/<pid>/stat);
  4. N idle connections held after the greeting and after EHLO, and N
     tarpitted ones (replies held by the tarpit), with sluiced's RSS per
     connection and a fresh client's round trip while they are held.
Prints ratios to direct, CPU us per message and bytes per connection.

Bounded: every socket operation has a timeout and the whole run a deadline
(--deadline, default 170 s); defaults finish in well under two minutes.
The per-process fd limit (20 000 here) bounds --idle: sluiced needs one fd
per held connection in screen mode.
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLK = os.sysconf("SC_CLK_TCK")


def find_binary(name, given):
    if given:
        return Path(given)
    for b in (os.environ.get("SLUICE_BUILD_DIR"), REPO / "build", REPO / "build-sluiced"):
        if b:
            for p in Path(b).rglob(name):
                if p.is_file() and os.access(p, os.X_OK):
                    return p
    sys.exit(f"bench_proxy: {name} not found; pass --{name.split('-')[-1]} PATH")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"bench_proxy: server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench_proxy: nothing listens on {port}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start_sluiced(binary, workdir, name, sink_port, extra):
    port = free_port()
    conf = workdir / f"{name}.conf"
    conf.write_text("\n".join([
        f"listen = 127.0.0.1:{port}", f"upstream = 127.0.0.1:{sink_port}", "workers = 1",
        "log_level = warn", "health_interval = 0", "max_connections = 100000",
        "per_ip_concurrency = 0", "hostname = bench.test"] + extra) + "\n")
    err = open(workdir / f"{name}.stderr", "wb")
    p = subprocess.Popen([str(binary), "-c", str(conf)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    wait_port(port, p)
    return p, port


def smtp_source(port, messages, sessions, size, reuse, timeout):
    tool = shutil.which("smtp-source", path="/usr/sbin:/usr/bin:" + os.environ.get("PATH", ""))
    if tool is None:
        return None
    argv = [tool, "-m", str(messages), "-s", str(sessions), "-l", str(size),
            "-f", "a@bench.test", "-t", "b@bench.test"] + (["-d"] if reuse else []) + \
        [f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, timeout=timeout)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"bench_proxy: smtp-source failed: {r.stderr.decode(errors='replace')}")
    return messages / dt


class Client:
    """A minimal blocking SMTP client with a timeout on every read."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def reply(self):
        while True:
            i = self.buf.find(b"\n")
            while i >= 0:
                line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                if len(line) >= 4 and line[3:4] == b" ":
                    return int(line[:3])
                i = self.buf.find(b"\n")
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def cmd(self, line):
        self.s.sendall(line)
        return self.reply()

    def close(self):
        self.s.close()


def latencies(port, n, body):
    c = Client(port)
    assert c.reply() == 220
    assert c.cmd(b"EHLO bench.test\r\n") == 250
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        # pipelined as a PIPELINING client would, then the body
        c.s.sendall(b"MAIL FROM:<a@bench.test>\r\nRCPT TO:<b@bench.test>\r\nDATA\r\n")
        assert c.reply() == 250 and c.reply() == 250 and c.reply() == 354
        assert c.cmd(body + b".\r\n") == 250
        out.append(time.perf_counter() - t0)
    c.cmd(b"QUIT\r\n")
    c.close()
    return out


def fresh_round_trip(port, tries=5):
    best = []
    for _ in range(tries):
        t0 = time.perf_counter()
        c = Client(port)
        assert c.reply() == 220
        assert c.cmd(b"EHLO fresh.test\r\n") == 250
        c.cmd(b"QUIT\r\n")
        c.close()
        best.append(time.perf_counter() - t0)
    return statistics.median(best)


def hold(port, n, ehlo, expect_ehlo_reply, deadline):
    """Opens n connections, reads each greeting, optionally sends EHLO (and
    reads its reply when it is not held by a tarpit)."""
    socks = []
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        c = Client(port, timeout=10)
        socks.append(c)
    for c in socks:
        assert c.reply() == 220
    if ehlo:
        for c in socks:
            c.s.sendall(b"EHLO held.test\r\n")
        if expect_ehlo_reply:
            for c in socks:
                assert c.reply() == 250
    return socks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluiced")
    ap.add_argument("--sink", help="sluice-sink binary")
    ap.add_argument("--messages", type=int, default=3000, help="throughput messages per run")
    ap.add_argument("--sessions", type=int, default=8, help="parallel smtp-source sessions")
    ap.add_argument("--size", type=int, default=2000, help="message size in bytes")
    ap.add_argument("--latency-messages", type=int, default=300)
    ap.add_argument("--idle", type=int, default=1000, help="N idle and N tarpitted connections")
    ap.add_argument("--deadline", type=float, default=170)
    a = ap.parse_args()
    if a.idle > 9000:
        sys.exit("bench_proxy: --idle above 9000 would pass the 20 000 fd limit of one process")
    deadline = time.monotonic() + a.deadline
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 2 * a.idle + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    sluiced = find_binary("sluiced", a.sluiced)
    sink_bin = find_binary("sluice-sink", a.sink)
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    procs = []
    try:
        sink = subprocess.Popen([str(sink_bin), "--listen", "127.0.0.1:0", "--print-port",
                                 "--count-only", "--max-sessions", "20000"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(sink)
        sink_port = int(sink.stdout.readline())
        wait_port(sink_port, sink)
        px, px_port = start_sluiced(sluiced, work, "passthrough", sink_port, [])
        procs.append(px)
        body = b"Subject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * max(1, a.size // 78)

        print(f"bench_proxy: sluiced {sluiced}\n  sink {sink_bin}\n")
        print("== throughput (smtp-source, C client) ==")
        rows = []
        for label, reuse in (("many messages per session", True), ("one message per session", False)):
            n = a.messages if reuse else max(200, a.messages // 3)
            d = smtp_source(sink_port, n, a.sessions, a.size, reuse, 120)
            if d is None:
                print("  smtp-source not installed: skipped")
                break
            cpu0 = cpu_seconds(px.pid)
            p = smtp_source(px_port, n, a.sessions, a.size, reuse, 120)
            cpu = cpu_seconds(px.pid) - cpu0
            rows.append((label, d, p, cpu / n * 1e6))
            print(f"  {label:28s} direct {d:9.0f} msg/s  via sluiced {p:9.0f} msg/s"
                  f"  ratio {p / d:5.2f}  sluiced CPU {cpu / n * 1e6:7.1f} us/msg")

        print("\n== per-message latency (sequential, pipelined MAIL/RCPT/DATA) ==")
        ld = latencies(sink_port, a.latency_messages, body)
        lp = latencies(px_port, a.latency_messages, body)
        def pct(v, q):
            v = sorted(v)
            return v[min(len(v) - 1, int(q * len(v)))] * 1e3
        print(f"  direct       p50 {pct(ld, .5):7.3f} ms  p99 {pct(ld, .99):7.3f} ms")
        print(f"  via sluiced  p50 {pct(lp, .5):7.3f} ms  p99 {pct(lp, .99):7.3f} ms"
              f"  ratio p50 {pct(lp, .5) / pct(ld, .5):5.2f}")

        print(f"\n== {a.idle} held connections (screen mode: no upstream connection) ==")
        sc, sc_port = start_sluiced(sluiced, work, "screen", sink_port, ["mode = screen"])
        procs.append(sc)
        tp, tp_port = start_sluiced(sluiced, work, "tarpit", sink_port, [
            "mode = screen", "normal_reply_delay = 120s", "greet_teaser = no"])
        procs.append(tp)
        base_rtt = fresh_round_trip(sc_port)
        for name, proc, port, ehlo, expect in (
                ("idle after greeting", sc, sc_port, False, True),
                ("idle after EHLO", sc, sc_port, True, True),
                ("tarpitted after greeting", tp, tp_port, False, True),
                ("tarpitted in EHLO (reply held)", tp, tp_port, True, False)):
            r0 = rss_bytes(proc.pid)
            held = hold(port, a.idle, ehlo, expect, deadline)
            time.sleep(0.2)
            r1 = rss_bytes(proc.pid)
            rtt = fresh_round_trip(sc_port)
            print(f"  {name:32s} {len(held):6d} conns  RSS +{(r1 - r0) / 1024:8.0f} KiB"
                  f"  = {(r1 - r0) / max(1, len(held)):7.0f} B/conn"
                  f"  fresh client RTT {rtt * 1e3:6.2f} ms (idle: {base_rtt * 1e3:.2f} ms)")
            for c in held:
                c.close()
            time.sleep(0.3)
            if time.monotonic() > deadline:
                print("  deadline reached: stopping early")
                break
        print(f"\n  sluiced RSS now: screen {rss_bytes(sc.pid) / 1024:.0f} KiB, "
              f"tarpit {rss_bytes(tp.pid) / 1024:.0f} KiB, passthrough {rss_bytes(px.pid) / 1024:.0f} KiB")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
