"""Processes with bounded lifetimes: every start has a matching stop."""
import os
import signal
import subprocess
import time
from pathlib import Path


class Proc:
    """A server process whose stdout/stderr go to files in log_dir."""

    def __init__(self, argv, log_dir: Path, name: str, env=None, stdout_pipe: bool = False):
        self.argv = [str(a) for a in argv]
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self._err = open(self.stderr_path, "wb")
        self._out = None if stdout_pipe else open(self.stdout_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._out,
            stderr=self._err,
            env=env,
            # Own process group: a stop can reach children the server forked.
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def read_line(self, timeout: float = 10.0) -> str:
        """One line from a piped stdout, bounded in time."""
        import select
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.popen.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no line on stdout within {timeout}s")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                c = os.read(fd, 1)
                if not c:
                    raise RuntimeError(f"{self.name} closed stdout ({self.stderr()})")
                buf += c
        return buf.decode()

    def stop(self, sig=signal.SIGTERM, timeout: float = 5.0) -> int:
        """Signals the process, waits, then kills its group if it lingers."""
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self._close_files()
        return self.popen.returncode

    def remaining_stdout(self, timeout: float = 5.0) -> str:
        """What a piped stdout still holds (call after the process ended)."""
        if self.popen.stdout is None:
            return self.stdout_path.read_text(errors="replace")
        import select
        out = b""
        deadline = time.monotonic() + timeout
        fd = self.popen.stdout.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            c = os.read(fd, 65536)
            if not c:
                break
            out += c
        return out.decode(errors="replace")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def _close_files(self):
        for f in (self._err, self._out):
            if f is not None and not f.closed:
                f.close()


def run(argv, timeout: float = 30.0, input=None, check: bool = False, env=None, cwd=None):
    """subprocess.run with a mandatory timeout and captured output."""
    return subprocess.run([str(a) for a in argv], input=input, capture_output=True,
                          timeout=timeout, check=check, env=env, cwd=cwd)
