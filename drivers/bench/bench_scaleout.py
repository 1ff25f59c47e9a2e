#!/usr/bin/python3
"""bench_scaleout.py: one sluiced against two behind HAProxy, and the cost
of a Redis lookup per connection, measured in one run on this machine.

Starts sluice-sink (--count-only) as the upstream, then:
  1. messages/s (Postfix's smtp-source, one message per session, so every
     message is a new connection: what a balancer and a per-connection
     lookup cost most) for
       a. one sluiced with --cores workers, clients straight to it;
       b. two sluiced with --cores/2 workers each behind HAProxy (TCP mode,
          send-proxy-v2, one thread), shm state: the same sluiced cores plus
          the balancer on the same machine;
       c. the same two sluiced without the balancer (the clients split over
          them), to tell the loopback balancer's cost from the split's;
       d. as b with state_backend = redis (one Redis for both);
  2. connections held after the greeting (screen mode, idle), a and b: how
     many were held and the bytes per connection of sluiced (Pss summed
     over its processes) and of HAProxy;
  3. the added latency of the Redis admission lookup: connect, greeting,
     EHLO, QUIT, sequentially, with state_backend = shm and = redis (median
     and p99 of --rtt-sessions sessions; the lookup is on this path because
     the greeting waits for the verdict).
Bounded: every socket operation has a timeout and the run a deadline.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy as bp  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
REDIS = "/usr/bin/redis-server"


def start(argv, workdir, name):
    err = open(workdir / f"{name}.stderr", "wb")
    return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def stop(p):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)


def sluiced(binary, work, name, sink_port, workers, extra, proxy=False):
    port = bp.free_port()
    lines = [f"listen = 127.0.0.1:{port}" + (" proxy" if proxy else ""),
             f"upstream = 127.0.0.1:{sink_port}", f"workers = {workers}",
             "drain_timeout = 2s", "log_level = warn", "health_interval = 0",
             "max_connections = 100000", "per_ip_concurrency = 0", "hostname = bench.test",
             "relay_domains = *", "trusted_proxy = 127.0.0.0/8"] + extra
    conf = work / f"{name}.conf"
    conf.write_text("\n".join(lines) + "\n")
    p = start([binary, "-c", conf], work, name)
    wait_ready(work / f"{name}.stderr", p, port)
    return p, port


def wait_ready(errfile, p, port, timeout=10):
    """The port answers (a direct connect; the bench's sessions outnumber it)."""
    bp.wait_port(port, p, timeout)


def haproxy(work, ports, maxconn):
    port = bp.free_port()
    cfg = work / "haproxy.cfg"
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p} send-proxy-v2 check inter 1s"
                        for i, p in enumerate(ports))
    cfg.write_text(f"""global
    nbthread 1
    maxconn {maxconn}
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    maxconn {maxconn}
frontend smtp
    bind 127.0.0.1:{port}
    default_backend sluiced
backend sluiced
    balance roundrobin
{servers}
""")
    p = start([HAPROXY, "-db", "-f", cfg], work, "haproxy")
    # ready: its port accepts (one connection: it reaches a sluiced as a
    # session of 127.0.0.1, negligible here)
    bp.wait_port(port, p)
    time.sleep(1.5)  # the first health checks
    return p, port


def redis(work):
    port = bp.free_port()
    p = start([REDIS, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--daemonize", "no", "--dir", work, "--loglevel", "warning"], work, "redis")
    bp.wait_port(port, p)
    return p, port


def rate(ports, messages, sessions, size, timeout):
    """messages/s with smtp-source, the messages split over ports in parallel."""
    import shutil
    tool = shutil.which("smtp-source", path="/usr/sbin:/usr/bin")
    if tool is None:
        sys.exit("bench_scaleout: smtp-source (postfix) not installed")
    ps = []
    t0 = time.monotonic()
    for i, port in enumerate(ports):
        m = messages // len(ports)
        s = max(1, sessions // len(ports))
        ps.append(subprocess.Popen([tool, "-m", str(m), "-s", str(s), "-l", str(size),
                                    "-f", "a@bench.test", "-t", "b@bench.test",
                                    f"127.0.0.1:{port}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in ps:
        _, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            sys.exit(f"bench_scaleout: smtp-source failed: {err.decode(errors='replace')}")
    return (messages // len(ports)) * len(ports) / (time.monotonic() - t0)


def session_rtts(port, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        c = bp.Client(port)
        assert c.reply() == 220
        assert c.cmd(b"EHLO rtt.test\r\n") == 250
        c.cmd(b"QUIT\r\n")
        c.close()
        out.append(time.perf_counter() - t0)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.99) - 1]


def pss(pids):
    return sum(bp.pss_bytes(p) for p in pids)


def hold(port, n, per_holder, until):
    k = max(1, -(-n // per_holder))
    srcs = [f"127.0.{10 + i // 250}.{1 + i % 250}" for i in range(k)]
    hs = bp.start_holders(port, bp.split(n, k), srcs, False, False, until)
    held, failed = bp.wait_holders(hs, until)
    return hs, held, failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluiced")
    ap.add_argument("--sink", help="sluice-sink binary")
    ap.add_argument("--cores", type=int, default=2, help="sluiced workers in total")
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--sessions", type=int, default=16, help="parallel smtp-source sessions")
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--hold", type=int, default=4000, help="connections held in part 2")
    ap.add_argument("--per-holder", type=int, default=4000)
    ap.add_argument("--rtt-sessions", type=int, default=300)
    ap.add_argument("--deadline", type=float, default=240)
    a = ap.parse_args()
    end = time.monotonic() + a.deadline
    binary = bp.find_binary("sluiced", a.sluiced)
    sink_bin = bp.find_binary("sluice-sink", a.sink)
    work = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    procs = []
    ok = False
    try:
        sink_port = bp.free_port()
        sink = start([sink_bin, "--listen", f"127.0.0.1:{sink_port}", "--count-only"], work,
                     "sink")
        procs.append(sink)
        bp.wait_port(sink_port, sink)
        print(f"bench_scaleout: sluiced {binary}, {os.cpu_count()} cores\n")
        half = max(1, a.cores // 2)
        print(f"== messages/s, one message per connection ({a.messages} messages, "
              f"{a.sessions} parallel sessions, {a.size} bytes; smtp-source) ==")
        one, p1 = sluiced(binary, work, "one", sink_port, a.cores, ["mode = passthrough"])
        procs.append(one)
        r_one = rate([p1], a.messages, a.sessions, a.size, max(10, end - time.monotonic()))
        print(f"  a. one sluiced, {a.cores} workers:                 {r_one:8.0f} msg/s")
        stop(one)
        two = [sluiced(binary, work, f"two{i}", sink_port, half, ["mode = passthrough"],
                       proxy=True) for i in range(2)]
        procs += [p for p, _ in two]
        hp, hport = haproxy(work, [port for _, port in two], 9000)
        procs.append(hp)
        r_two = rate([hport], a.messages, a.sessions, a.size, max(10, end - time.monotonic()))
        print(f"  b. two sluiced x {half} workers behind HAProxy:     {r_two:8.0f} msg/s"
              f"  ({r_two / r_one:.2f} x a)")
        stop(hp)
        for p, _ in two:
            stop(p)
        two = [sluiced(binary, work, f"split{i}", sink_port, half, ["mode = passthrough"])
               for i in range(2)]
        procs += [p for p, _ in two]
        r_split = rate([port for _, port in two], a.messages, a.sessions, a.size,
                       max(10, end - time.monotonic()))
        print(f"  c. the same two, clients split, no balancer:    {r_split:8.0f} msg/s"
              f"  ({r_split / r_one:.2f} x a)")
        print(f"     with the loopback balancer: b / c = {r_two / r_split:.2f} (HAProxy's CPU "
              f"shares the {os.cpu_count()} cores; b {r_two:.0f} - c {r_split:.0f} = "
              f"{r_two - r_split:+.0f} msg/s)")
        for p, _ in two:
            stop(p)
        rp, rport = redis(work)
        procs.append(rp)
        rconf = ["mode = passthrough", "state_backend = redis",
                 f"redis = inet:127.0.0.1:{rport}"]
        two = [sluiced(binary, work, f"redis{i}", sink_port, half, rconf, proxy=True)
               for i in range(2)]
        procs += [p for p, _ in two]
        hp, hport = haproxy(work, [port for _, port in two], 9000)
        procs.append(hp)
        r_redis = rate([hport], a.messages, a.sessions, a.size, max(10, end - time.monotonic()))
        print(f"  d. as b, state_backend = redis:                 {r_redis:8.0f} msg/s"
              f"  ({r_redis / r_two:.2f} x b)")
        stop(hp)
        for p, _ in two:
            stop(p)

        print(f"\n== connections held after the greeting (screen mode, idle; {a.hold}) ==")
        screen = ["mode = screen", "command_timeout = 300s"]
        one, p1 = sluiced(binary, work, "hold1", sink_port, a.cores, screen)
        procs.append(one)
        base = pss(bp.process_tree(one.pid))
        hs, held, failed = hold(p1, a.hold, a.per_holder, min(end, time.monotonic() + 60))
        used = pss(bp.process_tree(one.pid)) - base
        print(f"  a. one sluiced:          held {held:6d} (failed {failed}), "
              f"sluiced {used / max(1, held):7.0f} B/conn")
        bp.release_holders(hs)
        stop(one)
        two = [sluiced(binary, work, f"hold2{i}", sink_port, half, screen, proxy=True)
               for i in range(2)]
        procs += [p for p, _ in two]
        hp, hport = haproxy(work, [port for _, port in two], 9000)
        procs.append(hp)
        pids = [q for p, _ in two for q in bp.process_tree(p.pid)]
        base, hbase = pss(pids), bp.pss_bytes(hp.pid)
        hs, held, failed = hold(hport, a.hold, a.per_holder, min(end, time.monotonic() + 60))
        used, hused = pss(pids) - base, bp.pss_bytes(hp.pid) - hbase
        print(f"  b. two behind HAProxy:   held {held:6d} (failed {failed}), "
              f"sluiced {used / max(1, held):7.0f} B/conn, HAProxy {hused / max(1, held):7.0f}"
              f" B/conn")
        bp.release_holders(hs)
        stop(hp)
        for p, _ in two:
            stop(p)

        print(f"\n== a new connection's round trip (connect, 220, EHLO, 250, QUIT; "
              f"{a.rtt_sessions} sequential) ==")
        res = {}
        for backend in ("shm", "redis"):
            extra = ["mode = screen", f"state_backend = {backend}"]
            if backend == "redis":
                extra.append(f"redis = inet:127.0.0.1:{rport}")
            p, port = sluiced(binary, work, f"rtt-{backend}", sink_port, 1, extra)
            procs.append(p)
            time.sleep(0.3)  # the worker's Redis connection is made
            res[backend] = session_rtts(port, a.rtt_sessions)
            print(f"  state_backend = {backend:5s}: median {res[backend][0] * 1e6:7.0f} us, "
                  f"p99 {res[backend][1] * 1e6:7.0f} us")
            stop(p)
        print(f"  the Redis admission lookup adds {(res['redis'][0] - res['shm'][0]) * 1e6:.0f} us"
              f" (median) per connection")
        ok = True
    finally:
        for p in reversed(procs):
            stop(p)
        if ok:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"bench_scaleout: logs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
