"""sluiced as a system service: privilege drop after binding, pid file,
process titles, log reopen on SIGUSR1, and what a reload may not change
after the drop.  Real processes on loopback; sluiced is started as root and
drops to the system user "nobody" (group "nogroup"), which Debian always has.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from lib.clients import smtplib_send
from lib.net import LOCALHOST, free_port, wait_for
from lib.paths import project_binary

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="binding as root and dropping needs root")

NOBODY = 65534


def free_low_port():
    """A free loopback port below 1024: only root may bind it."""
    for p in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind((LOCALHOST, p))
                return p
            except OSError:
                continue
    raise RuntimeError("no free port below 1024")


@pytest.fixture
def svcdir():
    """A directory "nobody" can read (pytest's tmp tree is 0700), with run/
    and log/ it can write, as /run/sluice and /var/log/sluice would be."""
    d = Path(tempfile.mkdtemp(prefix="sluice-svc-", dir="/tmp"))
    os.chmod(d, 0o755)
    for sub in ("run", "log"):
        (d / sub).mkdir()
        os.chown(d / sub, NOBODY, NOBODY)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Service:
    """sluiced started as root with user = nobody, a pid file and a log file."""

    def __init__(self, d: Path, upstream, workers=2, extra=None, port=None):
        self.d = d
        self.port = port or free_low_port()
        self.conf = d / "sluiced.conf"
        self.pid_file = d / "run" / "sluiced.pid"
        self.log = d / "log" / "sluiced.log"
        self.settings = {
            "listen": f"{LOCALHOST}:{self.port}",
            "upstream": f"{upstream[0]}:{upstream[1]}",
            "workers": workers, "user": "nobody", "pid_file": self.pid_file,
            "log_file": self.log, "hostname": "sluice.test", "health_interval": "0",
            "drain_timeout": "3s", "relay_domains": "*",
        }
        self.settings.update(extra or {})
        self.write()
        self.proc = None

    def write(self, **changes):
        self.settings.update(changes)
        lines = []
        for k, v in self.settings.items():
            for item in (v if isinstance(v, list) else [v]):
                lines.append(f"{k} = {item}")
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o644)

    def start(self, expect_ready=True):
        self.err = self.d / f"stderr.{time.monotonic_ns()}"
        with open(self.err, "wb") as e:
            self.proc = subprocess.Popen([str(project_binary("sluiced")), "-c", str(self.conf)],
                                         stdin=subprocess.DEVNULL, stdout=e, stderr=e,
                                         start_new_session=True)
        if expect_ready:
            n = self.settings["workers"]
            wait_for(lambda: self.proc.poll() is not None or
                     self.log_text().count(" ready: ") >= n, 15, what="workers ready")
            assert self.proc.poll() is None, self.stderr() + self.log_text()
        return self

    def stderr(self):
        return self.err.read_text(errors="replace")

    def log_text(self, path=None):
        p = path or self.log
        return p.read_text(errors="replace") if p.exists() else ""

    def pids(self):
        """The master and its children."""
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [self.proc.pid] + [int(k) for k in kids]

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            raise


@pytest.fixture
def service(svcdir, sink):
    started = []

    def make(**kw):
        s = Service(svcdir, sink.address, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        if s.proc and s.proc.poll() is None:
            s.stop(signal.SIGKILL)
        # Sanitizer reports (an ASan build) go to stderr, workers' too.
        if s.proc:
            err = s.stderr()
            assert "ERROR: AddressSanitizer" not in err and "runtime error:" not in err, err[-4000:]


def status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def title(pid):
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.split(b"\0")[0].decode()


def test_master_binds_low_port_then_every_process_runs_as_nobody(service, sink):
    s = service(workers=2).start()
    pids = s.pids()
    assert len(pids) == 3
    for pid in pids:
        st = status(pid)
        assert st["Uid"] == [str(NOBODY)] * 4, (pid, st["Uid"])
        assert st["Gid"] == [str(NOBODY)] * 4, (pid, st["Gid"])
        assert "0" not in st["Groups"]
        # No capability survived the drop (so no way back to root).
        assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0
    assert "running as user nobody" in s.log_text()
    # The privileged port serves: a message reaches the sink.
    smtplib_send((LOCALHOST, s.port), "a@example.test", ["b@example.test"],
                 b"Subject: t\r\n\r\nthrough a dropped sluiced\r\n")
    assert b"through a dropped sluiced" in sink.wait_messages(1)[0].data
    assert s.stop() == 0


def test_restarted_worker_gets_the_privileged_socket_back(service, sink):
    s = service(workers=2).start()
    victim = s.pids()[1]
    os.kill(victim, signal.SIGKILL)
    # The master restarts it (as nobody, which could not bind port < 1024).
    wait_for(lambda: len(s.pids()) == 3 and victim not in s.pids(), 10, what="worker restart")
    wait_for(lambda: s.log_text().count(" ready: ") >= 3, 10, what="restarted worker ready")
    for i in range(6):  # SO_REUSEPORT spreads them over both workers
        smtplib_send((LOCALHOST, s.port), "a@example.test", ["b@example.test"],
                     f"Subject: {i}\r\n\r\nmsg {i}\r\n".encode())
    assert len(sink.wait_messages(6)) == 6
    assert "Permission denied" not in s.log_text()
    assert s.stop() == 0


def test_process_titles(service):
    s = service(workers=2).start()
    pids = s.pids()
    assert title(pids[0]) == "sluiced: master"
    assert sorted(title(p) for p in pids[1:]) == ["sluiced: worker 0", "sluiced: worker 1"]
    assert Path(f"/proc/{pids[0]}/comm").read_text().strip() == "sluiced: master"
    ps = subprocess.run(["ps", "-o", "args=", "-p", ",".join(map(str, pids))],
                        capture_output=True, text=True, timeout=10).stdout
    assert "sluiced: master" in ps and "sluiced: worker 1" in ps
    assert s.stop() == 0


def test_single_process_title(service):
    s = service(workers=1).start()
    assert title(s.proc.pid) == "sluiced: worker 0"
    assert status(s.proc.pid)["Uid"] == [str(NOBODY)] * 4
    assert s.stop() == 0


def test_pid_file_written_refuses_second_start_and_is_removed(service, svcdir, sink):
    s = service(workers=2).start()
    assert s.pid_file.read_text() == f"{s.proc.pid}\n"
    assert s.pid_file.stat().st_uid == NOBODY  # written after the drop
    # A second instance on another port: refused before it binds anything.
    other = Service(svcdir, sink.address, workers=1, port=free_low_port())
    other.start(expect_ready=False)
    assert other.proc.wait(10) == 2
    assert f"sluiced is already running as pid {s.proc.pid}" in other.stderr()
    assert s.pid_file.read_text() == f"{s.proc.pid}\n"
    assert s.stop() == 0
    assert not s.pid_file.exists()


def test_stale_pid_file_is_replaced(service):
    dead = subprocess.Popen(["true"])
    dead.wait()
    s = service(workers=1)
    s.pid_file.write_text(f"{dead.pid}\n")
    s.start()
    assert s.pid_file.read_text() == f"{s.proc.pid}\n"
    assert s.stop() == 0
    assert not s.pid_file.exists()


def test_pid_file_in_root_only_directory_is_a_clear_error(service, svcdir):
    s = service(workers=1, extra={"pid_file": svcdir / "sluiced.pid"})  # svcdir: root's, 0755
    s.start(expect_ready=False)
    assert s.proc.wait(10) == 2
    assert "pid_file" in s.stderr() and "writable by that user" in s.stderr()


def test_user_root_and_unknown_user_refused(sluiced_config):
    base = "listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
    _, r = sluiced_config(base + "user = root\n")
    assert r.returncode == 2 and "uid 0" in r.stderr
    _, r = sluiced_config(base + "user = no-such-user-here\n")
    assert r.returncode == 2 and 'no such user "no-such-user-here"' in r.stderr
    _, r = sluiced_config(base + "group = nogroup\n")
    assert r.returncode == 2 and "group: needs user" in r.stderr
    _, r = sluiced_config(base + "user = nobody\ngroup = root\n")
    assert r.returncode == 2 and "gid 0" in r.stderr
    _, r = sluiced_config(base + "user = nobody\ngroup = nogroup\n")
    assert r.returncode == 0, r.stderr


def test_reload_after_drop(service):
    s = service(workers=2).start()
    hup = lambda: os.kill(s.proc.pid, signal.SIGHUP)  # noqa: E731
    # A new port below 1024 cannot be bound any more: refused, with why.
    low = free_low_port()
    s.write(listen=[f"{LOCALHOST}:{s.port}", f"{LOCALHOST}:{low}"])
    hup()
    wait_for(lambda: "reload refused" in s.log_text(), 10, what="reload refused")
    assert f"{LOCALHOST}:{low}: Permission denied as user nobody" in s.log_text()
    assert "restart sluiced to add it" in s.log_text()
    # user cannot change without a restart.
    s.write(listen=f"{LOCALHOST}:{s.port}", user="daemon")
    hup()
    wait_for(lambda: "user: changed from" in s.log_text(), 10, what="user change refused")
    # A new unprivileged port is fine, and the old privileged one stays.
    high = free_port()
    s.write(listen=[f"{LOCALHOST}:{s.port}", f"{LOCALHOST}:{high}"], user="nobody")
    hup()
    wait_for(lambda: s.log_text().count("configuration reloaded") >= 2, 10, what="reload")
    for port in (s.port, high):
        with socket.create_connection((LOCALHOST, port), timeout=5) as c:
            assert c.recv(100).startswith(b"220")
    assert s.stop() == 0


def test_sigusr1_reopens_log_in_master_and_workers(service, sink):
    s = service(workers=2).start()
    rotated = s.log.with_name("sluiced.log.1")
    s.log.rename(rotated)
    os.kill(s.proc.pid, signal.SIGUSR1)
    wait_for(lambda: s.log.exists(), 5, what="new log file")
    assert s.log.stat().st_uid == NOBODY  # created by the dropped process
    smtplib_send((LOCALHOST, s.port), "a@example.test", ["b@example.test"],
                 b"Subject: r\r\n\r\nafter rotation\r\n")
    sink.wait_messages(1)
    wait_for(lambda: "msg=session" in s.log_text(), 5, what="session line in the new log")
    assert s.stop() == 0
    # The master's own last line went to the new file too.
    assert "sluiced stopped" in s.log_text()
    assert "sluiced stopped" not in s.log_text(rotated)
    assert "msg=session" not in s.log_text(rotated)
