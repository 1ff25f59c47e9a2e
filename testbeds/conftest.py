"""Fixtures that start real servers on fresh loopback ports (see README.md).

Every fixture stops what it started, also when the test fails; every phase
of every test runs under a time limit (ini option testbed_timeout, marker
@pytest.mark.deadline(seconds)), so a hung server fails one test instead of
hanging the run.
"""
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lib.aiosmtpd_upstream import AiosmtpdUpstream  # noqa: E402
from lib.dns import UnboundServer  # noqa: E402
from lib.pf_smtp_sink import PostfixSmtpSink  # noqa: E402
from lib.postfix import PostfixInstance  # noqa: E402
from lib.sink import Sink  # noqa: E402
from lib.tls import make_certs  # noqa: E402

# The content-filter fixtures (rspamd_server, clamd_server, milters,
# filter_postfix) are session-scoped: registered once here so that every
# test_filters_*.py file shares one instance of each.
pytest_plugins = ["lib.filters"]

# The default DNS data of the dnsbl_server fixture.
DNSBL_ZONE = "dnsbl.test"
DNSWL_ZONE = "dnswl.test"
TIMEOUT_ZONE = "timeout.test"
DNSBL_LISTED = {"127.0.0.2": "127.0.0.2", "127.0.0.3": "127.0.0.10"}
DNSWL_LISTED = {"127.0.0.4": "127.0.9.1"}


# ---------------------------------------------------------------- time limits

class TestbedTimeout(Exception):
    """A test phase ran past its time limit."""


def pytest_addoption(parser):
    parser.addini("testbed_timeout", "time limit in seconds for each of a test's setup, "
                  "call and teardown", default="60")


def pytest_configure(config):
    config.addinivalue_line("markers", "deadline(seconds): time limit for each phase of this test")


@contextlib.contextmanager
def _deadline(item, phase):
    marker = item.get_closest_marker("deadline")
    limit = float(marker.args[0]) if marker else float(item.config.getini("testbed_timeout"))

    def fire(signum, frame):
        raise TestbedTimeout(f"{item.nodeid}: {phase} exceeded {limit:g}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _deadline(item, "setup"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _deadline(item, "call"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _deadline(item, "teardown"):
        yield


# ---------------------------------------------------------------- helpers

def _param(request, default=None):
    """The dict given with @pytest.mark.parametrize(..., indirect=True), if any."""
    return dict(getattr(request, "param", None) or default or {})


def _require_root(what):
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (Postfix drops privileges to the postfix user)")


class _Started:
    """Collects servers started by a factory and stops them all at teardown."""

    def __init__(self):
        self.items = []

    def add(self, obj):
        self.items.append(obj)
        return obj

    def stop_all(self):
        errors = []
        for obj in reversed(self.items):
            try:
                obj.stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        if errors:
            raise errors[0]


# ---------------------------------------------------------------- sluice-sink

@pytest.fixture
def sink_factory(tmp_path):
    """sink_factory(**opts) -> Sink; options are sluice-sink's flags in
    snake_case (reject_rcpt=["bad"], delay_ms=100, stall=True, xclient=True,
    proxy_protocol=True, close_after_data_bytes=N, tempfail_data=True,
    garbage=True, count_only=True, timeout=SECS, size=N, host="::1")."""
    started = _Started()
    n = [0]

    def make(**opts):
        n[0] += 1
        return started.add(Sink(tmp_path / f"sink{n[0]}", **opts))

    yield make
    started.stop_all()
    # A sink that crashed or reported a sanitizer error fails the test that used it.
    for s in started.items:
        if s.stats["rc"] != 0:
            pytest.fail(f"sluice-sink exited with {s.stats['rc']}:\n{s.proc.stderr()[-4000:]}")


@pytest.fixture
def sink(request, sink_factory):
    """A running sluice-sink storing messages; parametrize indirectly with a
    dict of sink_factory options to inject faults."""
    return sink_factory(**_param(request))


# ---------------------------------------------------------------- aiosmtpd

@pytest.fixture
def aiosmtpd_factory(tmp_path):
    """aiosmtpd_factory(**opts) -> AiosmtpdUpstream (smtputf8, reject_rcpt,
    tempfail_data, proxy_protocol, tls_cert/tls_key, hostname)."""
    started = _Started()
    n = [0]

    def make(**opts):
        n[0] += 1
        return started.add(AiosmtpdUpstream(tmp_path / f"aiosmtpd{n[0]}", **opts))

    yield make
    started.stop_all()


@pytest.fixture
def aiosmtpd_upstream(request, aiosmtpd_factory):
    return aiosmtpd_factory(**_param(request))


# ---------------------------------------------------------------- Postfix

@pytest.fixture
def postfix_factory():
    """postfix_factory(main_cf={...}, tls=TLSCerts|None, hostname=...) -> PostfixInstance."""
    _require_root("postfix_upstream")
    started = _Started()

    def make(**opts):
        return started.add(PostfixInstance(**opts))

    yield make
    started.stop_all()


@pytest.fixture
def postfix_upstream(request, postfix_factory):
    """A real Postfix smtpd (XCLIENT allowed from 127.0.0.0/8, mail kept on HOLD)."""
    return postfix_factory(**_param(request))


@pytest.fixture
def postfix_tls_upstream(request, postfix_factory, tls_certs):
    """postfix_upstream that also offers STARTTLS with the tls_certs server cert."""
    return postfix_factory(tls=tls_certs, **_param(request))


@pytest.fixture
def postfix_smtp_sink(request, tmp_path):
    """Postfix's smtp-sink(1); parametrize with {"extra_args": [...], "dump": bool}."""
    s = PostfixSmtpSink(tmp_path / "smtp-sink", **_param(request))
    yield s
    s.stop()


# ---------------------------------------------------------------- DNS

@pytest.fixture
def dnsbl_factory(tmp_path):
    """dnsbl_factory() -> an UnboundServer not yet started: add zones and
    listings (list_ip, add_record, add_timeout_zone), then call .start()."""
    started = _Started()
    n = [0]

    def make():
        n[0] += 1
        return started.add(UnboundServer(tmp_path / f"unbound{n[0]}"))

    yield make
    started.stop_all()


@pytest.fixture
def dnsbl_server(request, dnsbl_factory):
    """unbound serving dnsbl.test (127.0.0.2 -> 127.0.0.2, 127.0.0.3 ->
    127.0.0.10), dnswl.test (127.0.0.4 -> 127.0.9.1) and timeout.test (never
    answers).  Parametrize with {"listings": [(zone, ip, answer), ...]} to add."""
    p = _param(request)
    u = dnsbl_factory()
    for ip, ans in DNSBL_LISTED.items():
        u.list_ip(DNSBL_ZONE, ip, ans, txt=f"listed {ip}")
    for ip, ans in DNSWL_LISTED.items():
        u.list_ip(DNSWL_ZONE, ip, ans)
    for zone, ip, ans in p.get("listings", ()):
        u.list_ip(zone, ip, ans)
    u.add_timeout_zone(TIMEOUT_ZONE)
    return u.start()


# ---------------------------------------------------------------- TLS

@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory):
    """A throwaway CA and a localhost/127.0.0.1/::1 server certificate (TLSCerts)."""
    import tempfile
    # Outside pytest's 0700 tmp tree: Postfix (user postfix) reads these.
    d = Path(tempfile.mkdtemp(prefix="sluice-tls-", dir="/tmp"))
    os.chmod(d, 0o755)
    certs = make_certs(d)
    yield certs
    import shutil
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- sluiced configuration

@pytest.fixture
def sluiced_config(tmp_path):
    """sluiced_config(text, *args, name="sluiced.conf") -> (path, CompletedProcess):
    writes text to a fresh file under tmp_path and runs sluiced ARGS -c FILE
    (ARGS default to --check-config), capturing text output."""
    import subprocess
    from lib.paths import project_binary

    def run(text, *args, name="sluiced.conf"):
        path = tmp_path / name
        path.write_text(text)
        cmd = [str(project_binary("sluiced")), *(args or ("--check-config",)), "-c", str(path)]
        return path, subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return run


# ---------------------------------------------------------------- Exim, OpenSMTPD (receiver matrix)

def _require_receivers(what):
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (it drops to its own users; OpenSMTPD needs a mount namespace)")


@pytest.fixture
def receiver_factory():
    """receiver_factory(name) -> a started receiver of lib.receiver.RECEIVER_NAMES
    ("exim", "opensmtpd", "postfix", "postfix-no-chunking", ...): messages(),
    log_text(), mail_commands(), wait_idle()."""
    from lib.receiver import make_receiver
    _require_receivers("receiver_factory")
    started = _Started()

    def make(name):
        return started.add(make_receiver(name))

    yield make
    started.stop_all()


@pytest.fixture
def exim_factory():
    """exim_factory(extra="exim.conf lines") -> lib.exim.EximInstance."""
    from lib.exim import EximInstance
    _require_receivers("exim_upstream")
    started = _Started()

    def make(**opts):
        return started.add(EximInstance(**opts))

    yield make
    started.stop_all()


@pytest.fixture
def exim_upstream(request, exim_factory):
    """A private Exim 4.96 (unpacked exim4-daemon-light), messages kept in its spool."""
    return exim_factory(**_param(request))


@pytest.fixture
def opensmtpd_factory():
    """opensmtpd_factory() -> lib.opensmtpd.OpenSMTPDInstance."""
    from lib.opensmtpd import OpenSMTPDInstance
    _require_receivers("opensmtpd_upstream")
    started = _Started()

    def make(**opts):
        return started.add(OpenSMTPDInstance(**opts))

    yield make
    started.stop_all()


@pytest.fixture
def opensmtpd_upstream(request, opensmtpd_factory):
    """A private OpenSMTPD 6.8 (unpacked opensmtpd) in its own mount namespace."""
    return opensmtpd_factory(**_param(request))
