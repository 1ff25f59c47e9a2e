"""Filters that fail: down (connection refused), slow (past filter_timeout)
or answering garbage.  The client gets filter_default_action, nothing is
lost (a tempfail is a 4xx the client retries; an accept is delivered),
nothing is delivered twice (counted in the receiver's queue), and sluiced
holds no descriptor more after the session than before it."""
import pytest

from lib.filters import BrokenFilter, dead_filter_address
from test_filters_support import (QueueStep, assert_filter_counted,  # noqa: F401
                                  data_reply, filtered_sluiced, message, reply_code, raw_send,
                                  settled_fds, transaction_code, wait_session_verdict)

# The first test to run also starts the session's daemons (Postfix, rspamd:
# 3-15 s each on a loaded machine) within its setup phase.
pytestmark = pytest.mark.deadline(120)

KINDS = ["milter", "rspamd", "clamd"]
BEHAVIOURS = ["down", "slow", "garbage"]
# filter_default_action -> (reply class to the client, messages the receiver gets)
DEFAULTS = {"tempfail": (4, 0), "reject": (5, 0), "accept": (2, 1)}
# The wait for a silent filter in these tests (CI time: six of them).
SLOW_TIMEOUT = "1s"


@pytest.fixture
def broken_filter():
    started = []

    def make(behaviour):
        if behaviour == "down":
            return None
        f = BrokenFilter({"slow": "silent", "garbage": "garbage"}[behaviour])
        started.append(f)
        return f

    yield make
    for f in started:
        f.stop()


def run_case(kind, behaviour, default, filter_postfix, filtered_sluiced, broken_filter):
    bf = broken_filter(behaviour)
    addr = bf.filter_address if bf else dead_filter_address()
    s = filtered_sluiced(filter_postfix.address, [f"{kind} {addr} name=broken-{kind}"],
                         conf={"filter_default_action": default, "filter_mode": "stream",
                               "filter_timeout": SLOW_TIMEOUT})
    base_fds = s.fd_count()
    step = QueueStep(filter_postfix)
    r = raw_send(s.address, message(f"{kind} {behaviour} {default}"))
    what = f"{r.transcript}\n{s.stderr()[-3000:]}"
    cls, delivered = DEFAULTS[default]
    assert transaction_code(r) // 100 == cls, what
    if kind == "milter" and default != "accept":
        # A milter is asked from MAIL on, as Postfix asks it: one that fails
        # there refuses the recipient, and the message never starts.
        assert reply_code(r) == 0, what
    else:
        assert reply_code(r) // 100 == cls, what
    assert len(step.new()) == delivered, what
    if bf is not None:
        assert bf.connections >= 1, "sluiced never asked the filter"
    # The session and every filter connection are gone: no descriptor kept.
    settled_fds(s, base_fds)
    if bf is not None:
        from lib.net import wait_for
        wait_for(lambda: bf.open_connections() == 0, 5, what="filter connections closed")
    # Logged and counted as a failure of that filter.
    wait_session_verdict(s, f"broken-{kind}")
    assert_filter_counted(s, f"broken-{kind}", failure=True)
    return s, r


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("kind", KINDS)
def test_failing_filter_gives_default_tempfail(kind, behaviour, filter_postfix, filtered_sluiced,
                                               broken_filter):
    run_case(kind, behaviour, "tempfail", filter_postfix, filtered_sluiced, broken_filter)


@pytest.mark.parametrize("default", ["accept", "reject"])
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_failing_milter_gives_configured_default(behaviour, default, filter_postfix,
                                                 filtered_sluiced, broken_filter):
    run_case("milter", behaviour, default, filter_postfix, filtered_sluiced, broken_filter)


def test_slow_filter_bounded_by_filter_timeout(filter_postfix, filtered_sluiced, broken_filter):
    """The client waits about filter_timeout, not the upstream's timeouts."""
    import time
    t0 = time.monotonic()
    run_case("milter", "slow", "tempfail", filter_postfix, filtered_sluiced, broken_filter)
    limit = float(SLOW_TIMEOUT.rstrip("s"))
    assert time.monotonic() - t0 < limit + 8


def test_hung_milter_many_sessions_no_leak(milters, filter_postfix, filtered_sluiced):
    """Ten sessions against the hung scripted milter: each times out to the
    default, the receiver gets nothing, the descriptors come back."""
    from concurrent.futures import ThreadPoolExecutor
    s = filtered_sluiced(filter_postfix.address, [f"milter {milters['hang'].filter_address}"],
                         conf={"filter_timeout": "1s"})
    base_fds = s.fd_count()
    step = QueueStep(filter_postfix)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda i: raw_send(s.address, message(f"hung {i}")), range(10)))
    for r in results:
        assert reply_code(r) // 100 == 4, r.transcript
    assert step.new() == []
    settled_fds(s, base_fds)


def test_check_config_refuses_filter_timeout_above_data_timeout(tmp_path):
    """The filter's wait must end before the upstream gives up on the data."""
    import subprocess
    from test_filters_support import require_filter_support
    from test_proxy_support import sluiced_binary
    require_filter_support()
    conf = tmp_path / "sluiced.conf"
    base = ("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:25\nrelay_domains = *\n"
            "filter = milter inet:127.0.0.1:9\nupstream_data_term_timeout = 60s\n")
    conf.write_text(base + "filter_timeout = 120s\n")
    bad = subprocess.run([str(sluiced_binary()), "--check-config", "-c", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0, bad.stdout + bad.stderr
    assert "filter_timeout" in bad.stdout + bad.stderr
    conf.write_text(base + "filter_timeout = 30s\n")
    good = subprocess.run([str(sluiced_binary()), "--check-config", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    assert good.returncode == 0, good.stdout + good.stderr
