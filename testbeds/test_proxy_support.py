"""sluiced as a test fixture, shared by the test_proxy_*.py files.

Kept in a test_ module (no tests of its own) because fixtures of sluiced
belong to the driver's tests, not to conftest.py.  Import with
``from test_proxy_support import ...``.
"""
import json
import os
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from lib.net import LOCALHOST, free_port, wait_for, wait_port
from lib.paths import project_binary
from lib.proc import Proc, run


def sluiced_binary() -> Path:
    return project_binary("sluiced")


class Sluiced:
    """A running sluiced (one worker, JSON logs on stderr, metrics on).

    upstreams: (host, port) pairs or "host:port [weight=N]" strings.
    conf: extra "key = value" settings (dict; a list value repeats the key).
    """

    def __init__(self, workdir: Path, upstreams, conf=None, listen_opts="", tls_listen=False,
                 tls_certs=None, start=True, host=LOCALHOST):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port(host)
        self.tls_port = free_port(host) if tls_listen else None
        self.metrics_port = free_port(LOCALHOST)
        self.conf_path = self.workdir / "sluiced.conf"
        self.upstreams = upstreams
        self.listen_opts = listen_opts
        self.tls_certs = tls_certs
        self.conf = dict(conf or {})
        self.write_conf()
        self.proc = None
        if start:
            self.start()

    # ---------------------------------------------------------------- config
    def conf_text(self, conf=None):
        conf = self.conf if conf is None else conf
        h = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"listen = {h}:{self.port} {self.listen_opts}".rstrip()]
        if self.tls_port:
            lines.append(f"listen = {h}:{self.tls_port} tls")
        for u in self.upstreams:
            lines.append(f"upstream = {u[0]}:{u[1]}" if isinstance(u, tuple) else f"upstream = {u}")
        base = {"workers": 1, "log_format": "json", "log_level": "info",
                "metrics_listen": f"{LOCALHOST}:{self.metrics_port}", "health_interval": "0",
                "hostname": "sluice.test", "drain_timeout": "5s",
                # The test beds' upstreams stand for servers that do their own
                # relay control, so every domain passes; test_relay_control.py
                # replaces this with a list (sluiced's default refuses all).
                "relay_domains": "*"}
        if self.tls_certs is not None:
            base["tls_cert"] = str(self.tls_certs.chain)
            base["tls_key"] = str(self.tls_certs.server_key)
        base.update(conf)
        for k, v in base.items():
            for item in (v if isinstance(v, (list, tuple)) else [v]):
                lines.append(f"{k} = {item}")
        return "\n".join(lines) + "\n"

    def write_conf(self, conf=None):
        self.conf_path.write_text(self.conf_text(conf))

    # ---------------------------------------------------------------- process
    def start(self):
        self.proc = Proc([sluiced_binary(), "-c", self.conf_path], self.workdir / "logs", "sluiced")
        try:
            # Wait for the worker's "ready" line rather than probing the port:
            # a probe would be a session of its own in the logs and metrics.
            def ready():
                if self.proc.popen.poll() is not None:
                    raise RuntimeError(f"sluiced exited with {self.proc.popen.returncode}")
                return " ready: " in self.stderr()
            wait_for(ready, 10, what="sluiced ready")
        except Exception:
            self.proc.stop(signal.SIGKILL)
            raise AssertionError(f"sluiced did not start: {self.proc.stderr()}")
        return self

    @property
    def address(self):
        return (self.host, self.port)

    @property
    def tls_address(self):
        return (self.host, self.tls_port)

    @property
    def pid(self):
        return self.proc.pid

    def reload(self, conf=None):
        """Rewrites the config (if conf given) and sends SIGHUP; waits for the log."""
        if conf is not None:
            self.conf.update(conf)
            self.write_conf()
        n = self.stderr().count("configuration reloaded")
        os.kill(self.pid, signal.SIGHUP)
        wait_for(lambda: self.stderr().count("configuration reloaded") > n or
                 "reload failed" in self.stderr(), 10, what="sluiced reload")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc is None:
            return None
        rc = self.proc.stop(sig, timeout=timeout)
        return rc

    # ---------------------------------------------------------------- inspection
    def stderr(self) -> str:
        return self.proc.stderr() if self.proc else ""

    def records(self, msg=None):
        out = []
        for line in self.stderr().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if msg is None or rec.get("msg") == msg:
                out.append(rec)
        return out

    def sessions(self):
        return self.records("session")

    def wait_sessions(self, n, timeout=10.0):
        wait_for(lambda: len(self.sessions()) >= n, timeout, what=f"{n} session log lines")
        return self.sessions()

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{LOCALHOST}:{self.metrics_port}/metrics",
                                    timeout=5) as r:
            assert r.status == 200
            return r.read().decode()

    def metric(self, name, labels=None) -> float:
        text = self.metrics()
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
        m = re.search(r"^" + re.escape(name + lab) + r" (\S+)$", text, re.M)
        if not m:
            raise KeyError(f"{name}{lab} not in metrics")
        return float(m[1])


@pytest.fixture
def sluiced_factory(tmp_path):
    """sluiced_factory(upstreams, conf={...}, ...) -> a started Sluiced, stopped at teardown."""
    started = []
    n = [0]

    def make(upstreams, **kw):
        n[0] += 1
        s = Sluiced(tmp_path / f"sluiced{n[0]}", upstreams, **kw)
        started.append(s)
        return s

    yield make
    for s in reversed(started):
        rc = s.stop()
        # A crash (signal) or a sanitizer report must fail the test.
        assert rc in (0, None), f"sluiced exited with {rc}: {s.stderr()[-3000:]}"
        assert "ERROR: AddressSanitizer" not in s.stderr(), s.stderr()[-5000:]
        assert "runtime error:" not in s.stderr(), s.stderr()[-5000:]


def raw_connect(address, source_ip=None, timeout=10.0):
    """A RawSMTP-like client whose socket can be bound to another 127/8 source
    (the DNSBL and per-IP tests need distinct client addresses)."""
    from lib.clients import RawSMTP
    c = RawSMTP.__new__(RawSMTP)
    c.timeout = timeout
    c.buf = b""
    src = (source_ip, 0) if source_ip else None
    c.sock = socket.create_connection(tuple(address[:2]), timeout=timeout, source_address=src)
    return c


def send_message(c, mail_from="a@example.test", rcpts=("b@example.test",), body=b"Subject: t\r\n\r\nhello\r\n"):
    """EHLO (if not done), MAIL, RCPT..., DATA, body, '.'; returns the final reply."""
    r = c.cmd(f"MAIL FROM:<{mail_from}>")
    assert r.code == 250, r
    for rc in rcpts:
        r = c.cmd(f"RCPT TO:<{rc}>")
        assert r.code == 250, r
    r = c.cmd("DATA")
    assert r.code == 354, r
    c.send(body + b".\r\n")
    return c.read_reply()
