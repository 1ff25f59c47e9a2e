"""Loopback ports: allocation and readiness."""
import socket
import time

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST, udp_too: bool = False) -> int:
    """A port that is free right now on host (TCP, and UDP if udp_too).

    The kernel picks it; there is an unavoidable window before the server
    binds it, which is why servers that can report their own port
    (sluice-sink --print-port) are preferred where possible.
    """
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if not udp_too:
            return port
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue
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
