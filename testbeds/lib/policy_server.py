"""A Postfix policy delegation server on loopback, scripted by the test
(SMTPD_POLICY_README's protocol: name=value lines up to an empty line, one
answer per connection): the stages and failure cases that Debian's policy
daemons (postgrey, policyd-spf, policyd-rate-limit) do not produce on
demand.  The real daemons have their own test beds."""
import socket
import threading

from lib.net import LOCALHOST


def parse(raw: str) -> dict:
    """A request's attributes."""
    return dict(line.split("=", 1) for line in raw.strip().split("\n") if "=" in line)


class PolicyServer:
    """Reads one request per connection and answers respond(request), a
    dict of its attributes: the bytes to send (the connection is closed
    after them), or None to hold the connection open and never answer.
    requests: the parsed requests, raw: the same as received."""

    def __init__(self, respond):
        self.respond = respond
        self.requests = []
        self.raw = []
        self.held = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    @property
    def address(self):
        return f"inet:{LOCALHOST}:{self.sock.getsockname()[1]}"

    def serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(5)
            buf = b""
            try:
                while b"\n\n" not in buf:
                    d = c.recv(4096)
                    if not d:
                        break
                    buf += d
            except OSError:
                pass
            raw = buf.decode(errors="replace")
            self.raw.append(raw)
            self.requests.append(parse(raw))
            answer = self.respond(self.requests[-1])
            if answer is None:
                self.held.append(c)  # never answers
                continue
            try:
                c.sendall(answer)
            except OSError:
                pass
            c.close()

    def states(self):
        return [r["protocol_state"] for r in self.requests]

    def stop(self):
        self.stopping = True
        self.t.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


def deciding(decide):
    """A PolicyServer answering action=decide(request)."""
    return PolicyServer(lambda req: f"action={decide(req)}\n\n".encode())


def answering(answer):
    """A PolicyServer with one fixed answer (bytes), or none (None)."""
    return PolicyServer(lambda req: answer)
