#!/usr/bin/python3
"""bench_proxy.py: sluiced against a direct connection, measured in one run.

Starts sluice-sink (--count-only) and sluiced in front of it, then measures:
  1. throughput (Postfix's smtp-source, a C client): messages/s direct and
     through sluiced, one message per session and many per session;
  2. per-message latency (a sequential Python client): p50/p99 direct and
     through sluiced;
  3. sluiced's CPU time per message (utime+stime from /proc/<pid>/stat);
  4. N connections held in screen mode after the greeting and after EHLO,
     idle and tarpitted, each phase against a fresh sluiced: bytes per
     connection from Pss summed over sluiced's master and workers, and a
     fresh client's round trip while they are held.
Prints ratios to direct, CPU us per message, added latency per transaction
and bytes per connection, each with its goal.

Bounded: every socket operation has a timeout, every holder a deadline, and
the whole run one too (--deadline, default 170 s).  The per-process fd limit
(20 000 here) bounds one process, so the held connections are spread over
several client processes (--per-holder), each bound to its own loopback
source address, and over several sluiced workers (--workers; screen mode
needs one fd per held client).
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


def start_sluiced(binary, workdir, name, sink_port, extra, workers=1):
    port = free_port()
    conf = workdir / f"{name}.conf"
    conf.write_text("\n".join([
        f"listen = 127.0.0.1:{port}", f"upstream = 127.0.0.1:{sink_port}",
        f"workers = {workers}", "drain_timeout = 2s",
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
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
    """Connect, greeting, EHLO, QUIT: (median, max) seconds over tries."""
    out = []
    for _ in range(tries):
        t0 = time.perf_counter()
        c = Client(port)
        assert c.reply() == 220
        assert c.cmd(b"EHLO fresh.test\r\n") == 250
        c.cmd(b"QUIT\r\n")
        c.close()
        out.append(time.perf_counter() - t0)
    return statistics.median(out), max(out)


def process_tree(pid):
    """pid and its children (sluiced's master and workers)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return pids


def pss_bytes(pid):
    """Pss summed over sluiced's processes (smaps_rollup; RSS if absent)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            total += rss_bytes(p)
    return total


IP_BIND_ADDRESS_NO_PORT = 24
HOLDER_INFLIGHT = 256  # connections being set up at once per holder


def holder(port, n, src, ehlo, expect_reply, wfd, rfd, until):
    """Child process: opens n non-blocking connections from source address
    src, reads each greeting, optionally sends EHLO (and reads its reply),
    reports "held failed" on wfd, holds them until rfd is readable or closed
    (or until the monotonic time `until`), then closes them and exits."""
    import select
    ep = select.epoll()
    conns = {}
    opened = done = failed = inflight = 0
    try:
        while done + failed < n and time.monotonic() < until:
            while opened < n and inflight < HOLDER_INFLIGHT:
                s = socket.socket()
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((src, 0))
                err = s.connect_ex(("127.0.0.1", port))
                opened += 1
                if err not in (0, 115):  # EINPROGRESS
                    s.close()
                    failed += 1
                    continue
                conns[s.fileno()] = [s, b"", 0]
                ep.register(s.fileno(), select.EPOLLIN)
                inflight += 1
            for fd, ev in ep.poll(0.5):
                st = conns[fd]
                try:
                    data = st[0].recv(4096)
                except OSError:
                    data = b""
                if not data:
                    ep.unregister(fd)
                    st[0].close()
                    del conns[fd]
                    inflight -= 1
                    failed += 1
                    continue
                st[1] += data
                final = b"220 " if st[2] == 0 else b"250 "
                if not any(l.startswith(final) for l in st[1].split(b"\r\n")):
                    continue
                st[1] = b""
                if st[2] == 0 and ehlo:
                    st[0].send(b"EHLO held.test\r\n")
                    if expect_reply:
                        st[2] = 1
                        continue
                ep.unregister(fd)  # held: nothing more is read
                inflight -= 1
                done += 1
        os.write(wfd, f"{done} {failed}\n".encode())
        select.select([rfd], [], [], max(0.0, until - time.monotonic()))
    finally:
        for st in conns.values():
            st[0].close()
        os._exit(0)


def start_holders(port, counts, srcs, ehlo, expect_reply, until):
    """Forks one holder per count; returns [(pid, report_fd, release_fd)]."""
    out = []
    for n, src in zip(counts, srcs):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r1)
            os.close(w2)
            try:
                holder(port, n, src, ehlo, expect_reply, w1, r2, until)
            finally:
                os._exit(1)
        os.close(w1)
        os.close(r2)
        out.append((pid, r1, w2))
    return out


def wait_holders(hs, until):
    """Waits for every holder's report; returns (held, failed)."""
    import select
    held = failed = 0
    for _, r, _ in hs:
        rem = max(0.1, until - time.monotonic())
        if not select.select([r], [], [], rem)[0]:
            continue
        line = os.read(r, 100).split()
        if len(line) == 2:
            held += int(line[0])
            failed += int(line[1])
    return held, failed


def release_holders(hs):
    for pid, r, w in hs:
        os.close(w)
        os.close(r)
    for pid, _, _ in hs:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def split(n, k):
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def hold_phase(sluiced, work, sink_port, name, extra, n, workers, per_holder,
               phase_no, ehlo, expect_reply, hold_deadline):
    """A fresh sluiced; n connections held in two halves by several holder
    processes, each from its own loopback source address.  Returns a dict
    of the measurements."""
    proc, port = start_sluiced(sluiced, work, name, sink_port, ["mode = screen"] + extra,
                               workers)
    try:
        # wait_port's probe must be gone before the fresh client (one session
        # per source address in the tarpit phases)
        time.sleep(0.3)
        for _ in range(3):
            fresh_round_trip(port, tries=3)  # warm every code path once
        time.sleep(0.3)
        pss0 = pss_bytes(proc.pid)
        nh = max(2, -(-n // per_holder))
        nh += nh % 2
        counts = split(n, nh)
        srcs = [f"127.{10 + phase_no}.{i // 200}.{2 + i % 200}" for i in range(nh)]
        until = hold_deadline
        first = start_holders(port, counts[:nh // 2], srcs[:nh // 2], ehlo, expect_reply, until)
        t0 = time.monotonic()
        h1, f1 = wait_holders(first, until)
        time.sleep(0.5)
        pss1 = pss_bytes(proc.pid)
        second = start_holders(port, counts[nh // 2:], srcs[nh // 2:], ehlo, expect_reply,
                               until)
        h2, f2 = wait_holders(second, until)
        setup = time.monotonic() - t0
        time.sleep(0.5)
        pss2 = pss_bytes(proc.pid)
        rtt, rtt_max = fresh_round_trip(port, tries=11)
        release_holders(first + second)
        held = h1 + h2
        return dict(held=held, failed=f1 + f2, holders=nh, setup=setup,
                    per_conn=(pss2 - pss0) / max(1, held),
                    marginal=(pss2 - pss1) / max(1, h2), pss0=pss0, pss2=pss2,
                    rtt=rtt, rtt_max=rtt_max, procs=len(process_tree(proc.pid)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluiced")
    ap.add_argument("--sink", help="sluice-sink binary")
    ap.add_argument("--messages", type=int, default=3000, help="throughput messages per run")
    ap.add_argument("--sessions", type=int, default=8, help="parallel smtp-source sessions")
    ap.add_argument("--size", type=int, default=2000, help="message size in bytes")
    ap.add_argument("--latency-messages", type=int, default=300)
    ap.add_argument("--idle", type=int, default=2000,
                    help="connections held in each held phase (idle and tarpitted)")
    ap.add_argument("--workers", type=int, default=0,
                    help="sluiced workers for the held phases (0: enough that each stays "
                         "well under its 20 000 descriptors)")
    ap.add_argument("--per-holder", type=int, default=15000,
                    help="connections per client process (each under its fd limit)")
    ap.add_argument("--phases", default="greeting,ehlo,tarpit-greeting,tarpit-ehlo",
                    help="held phases to run, comma-separated")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--deadline", type=float, default=170)
    a = ap.parse_args()
    deadline = time.monotonic() + a.deadline
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if a.per_holder > hard - 200:
        sys.exit(f"bench_proxy: --per-holder must stay under the fd limit ({hard})")
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # screen mode: one descriptor per held client in sluiced; keep a worker
    # at most at 3/4 of its limit so SO_REUSEPORT's uneven spread still fits
    workers = a.workers or max(1, -(-a.idle * 4 // (3 * (hard - 200))))
    if -(-a.idle // workers) > hard - 200:
        sys.exit(f"bench_proxy: {a.idle} connections over {workers} workers pass the "
                 f"{hard} fd limit of a worker: raise --workers")

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
        print(f"bench_proxy: sluiced {sluiced}\n  sink {sink_bin}\n  {os.cpu_count()} cores\n")
        if not a.skip_throughput:
            px, px_port = start_sluiced(sluiced, work, "passthrough", sink_port, [])
            procs.append(px)
            body = b"Subject: bench\r\n\r\n" + (b"x" * 76 + b"\r\n") * max(1, a.size // 78)
            print("== throughput (smtp-source, C client) ==")
            for label, reuse in (("many messages per session", True),
                                 ("one message per session", False)):
                n = a.messages if reuse else max(200, a.messages // 3)
                d = smtp_source(sink_port, n, a.sessions, a.size, reuse, 120)
                if d is None:
                    print("  smtp-source not installed: skipped")
                    break
                cpu0 = cpu_seconds(px.pid)
                p = smtp_source(px_port, n, a.sessions, a.size, reuse, 120)
                cpu = cpu_seconds(px.pid) - cpu0
                print(f"  {label:28s} direct {d:9.0f} msg/s  via sluiced {p:9.0f} msg/s"
                      f"  ratio {p / d:5.2f}  sluiced CPU {cpu / n * 1e6:7.1f} us/msg"
                      f"  (goal <= 100)")

            print("\n== per-message latency (sequential, pipelined MAIL/RCPT/DATA, "
                  "TCP_NODELAY on every leg) ==")
            ld = latencies(sink_port, a.latency_messages, body)
            lp = latencies(px_port, a.latency_messages, body)

            def pct(v, q):
                v = sorted(v)
                return v[min(len(v) - 1, int(q * len(v)))] * 1e3
            print(f"  direct       p50 {pct(ld, .5):7.3f} ms  p99 {pct(ld, .99):7.3f} ms")
            print(f"  via sluiced  p50 {pct(lp, .5):7.3f} ms  p99 {pct(lp, .99):7.3f} ms"
                  f"  ratio p50 {pct(lp, .5) / pct(ld, .5):5.2f}")
            print(f"  added per transaction: p50 {(pct(lp, .5) - pct(ld, .5)) * 1e3:6.1f} us"
                  f"  (goal <= 15 us)")
            px.send_signal(signal.SIGTERM)
            px.wait(30)

        # Held clients are suspects: past one session per source address they
        # get the suspect profile, whose replies wait 120 s; the fresh client
        # (127.0.0.1) is served normally.
        TARPIT = ["per_ip_concurrency = 1", "over_concurrency = tarpit",
                  "suspect_reply_delay = 120s", "greet_teaser = no"]
        phases = {
            "greeting": ("idle after greeting", [], False, True, 768),
            "ehlo": ("idle after EHLO", [], True, True, 1536),
            "tarpit-greeting": ("tarpitted after greeting",
                                TARPIT,
                                False, True, 768),
            "tarpit-ehlo": ("tarpitted in EHLO (reply held)",
                            TARPIT,
                            True, False, 1536),
        }
        print(f"\n== {a.idle} held connections per phase, screen mode, a fresh sluiced "
              f"per phase ({workers} worker{'s' if workers > 1 else ''}) ==")
        print("  bytes/conn: growth of Pss summed over sluiced's processes from before the "
              "clients to all held, / held;\n  marginal: the growth over the second half "
              "only (no fixed costs); fresh RTT: connect, greeting, EHLO, QUIT, median/max "
              "of 11")
        for k, key in enumerate(a.phases.split(",")):
            label, extra, ehlo, expect, goal = phases[key]
            left = deadline - time.monotonic()
            if left < 10:
                print("  deadline reached: stopping early")
                break
            r = hold_phase(sluiced, work, sink_port, key, extra, a.idle, workers,
                           a.per_holder, k, ehlo, expect,
                           time.monotonic() + min(100.0, left - 5))
            print(f"  {label:31s} held {r['held']:6d}/{a.idle} ({r['failed']} failed, "
                  f"{r['holders']} clients, {r['setup']:.1f} s)  "
                  f"{r['per_conn']:6.0f} B/conn, marginal {r['marginal']:6.0f} B/conn "
                  f"(goal <= {goal})  fresh RTT {r['rtt'] * 1e3:5.2f}/{r['rtt_max'] * 1e3:5.2f} ms "
                  f"(goal <= 5)  [Pss {r['pss0'] / 2**20:.1f} -> {r['pss2'] / 2**20:.1f} MiB, "
                  f"{r['procs']} procs]", flush=True)
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
