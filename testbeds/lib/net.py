"""Loopback ports: allocation and readiness."""
import os
import socket
import time

LOCALHOST = "127.0.0.1"


# Under pytest-xdist several workers pick ports at once.  A port the kernel
# hands out (bind to 0) is free only until someone binds it, and another
# worker may be handed the same one in that window (Postfix then fails to
# start with "Address already in use").  So each xdist worker takes its
# ports from its own slice of 20000-32767, below the kernel's ephemeral range
# (32768-60999 here), which outgoing connections never use either.
_XDIST_BASE, _XDIST_TOP = 20000, 32768
_next_port = None


def _worker_slice():
    w = os.environ.get("PYTEST_XDIST_WORKER", "")
    n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not w.startswith("gw") or n < 1:
        return None
    size = (_XDIST_TOP - _XDIST_BASE) // n
    lo = _XDIST_BASE + int(w[2:]) * size
    return lo, lo + size


def _bind_ok(fam, kind, host, port) -> bool:
    try:
        with socket.socket(fam, kind) as s:
            s.bind((host, port))
        return True
    except OSError:
        return False


def free_port(host: str = LOCALHOST, udp_too: bool = False) -> int:
    """A port that is free right now on host (TCP, and UDP if udp_too).

    Outside xdist the kernel picks it; there is an unavoidable window before
    the server binds it, which is why servers that can report their own port
    (sluice-sink --print-port) are preferred where possible.  Under xdist the
    port comes from this worker's own slice (see above), in turn.
    """
    global _next_port
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    sl = _worker_slice()
    if sl is not None:
        lo, hi = sl
        if _next_port is None or not lo <= _next_port < hi:
            _next_port = lo
        for _ in range(hi - lo):
            port = _next_port
            _next_port = lo if _next_port + 1 >= hi else _next_port + 1
            if _bind_ok(fam, socket.SOCK_STREAM, host, port) and \
                    (not udp_too or _bind_ok(fam, socket.SOCK_DGRAM, host, port)):
                return port
        raise RuntimeError(f"no free port in {lo}-{hi - 1}")
    for _ in range(50):
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if not udp_too:
            return port
        if _bind_ok(fam, socket.SOCK_DGRAM, host, port):
            return port
    raise RuntimeError("no free port found")


def wait_port(host: str, port: int, timeout: float = 10.0, proc=None) -> None:
    """Waits until a TCP connect to host:port succeeds.

    If proc (a Popen) exits meanwhile, fails at once instead of waiting out
    the timeout.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s ({last})")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Polls predicate() until it returns a true value; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
