#!/usr/bin/python3
"""relay-states.py: the relay states and transitions a set of fuzz_relay inputs reaches.

Usage: relay-states.py RUNNER FILE_OR_DIR...

RUNNER is a fuzz_relay_runner (fuzz/standalone_main.c around fuzz_relay.c,
any build).  Every input is run through the relay harness with
FUZZ_RELAY_TRACE=2, which makes the harness print, after each input, the
bytes that crossed the relay's boundary; nothing in the core or the harness
changes, this only reads what the harness already observes.  Inputs that end
in the skipped open finding (FUZZ_RELAY_SKIP_OPEN_FINDINGS=1, as in the
campaigns) print no trace and add nothing.

A state is what the relay says to its client, read the way a network
protocol fuzzer reads a server (AFLNet's and ChatAFL's state model: the
reply code of each response, the state sequence of a session starting from
an initial state 0):
  code states        the distinct reply codes sent to the client;
  code transitions   the distinct pairs of consecutive codes in a session,
                     the first one counted from the initial state 0;
  stage states       (stage, code) pairs, the stage being what the reply
                     answers: "greeting", the command verb (EHLO, MAIL, ...,
                     "other" for an unknown one), "DATA-end" for the end of a
                     body after a 354, "AUTH-cont" for a line after a 334,
                     "none" for a reply with no client input left to answer
                     (a timeout's or a failed upstream's 421);
  stage transitions  consecutive stage-state pairs, from ("start", 0).
Commands are matched to replies in order (the oracle's guarantee 1 holds for
every input that passes); BDAT chunks and DATA bodies are skipped as content.
The harness prints at most 8192 bytes of each stream: replies after the
first 8192 bytes of client output are not seen, and replies after the
printed client input is used up get the stage "none" only when the input was
complete, else none (they still count as code states).
"""
import os
import re
import subprocess
import sys

VERBS = {
    b"EHLO", b"HELO", b"LHLO", b"MAIL", b"RCPT", b"DATA", b"BDAT", b"RSET",
    b"NOOP", b"QUIT", b"VRFY", b"EXPN", b"HELP", b"STARTTLS", b"AUTH",
    b"XCLIENT", b"XFORWARD", b"ETRN", b"TURN", b"ATRN", b"SEND", b"SOML",
    b"SAML", b"BURL",
}
HEADER = re.compile(rb"^--- (client in|client out|upstream out|upstream in) \((\d+) bytes\)$")
ESC = re.compile(rb"\\n\n|\\r|\\x([0-9a-f]{2})")
PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def unescape(text):
    """The harness's dump() escaping, undone."""
    def one(m):
        s = m.group(0)
        if s == b"\\n\n":
            return b"\n"
        if s == b"\\r":
            return b"\r"
        return bytes([int(m.group(1), 16)])
    return ESC.sub(one, text)


def parse_traces(stream):
    """Yields (path, {section: (bytes, complete)}) for every traced input of a
    runner's stderr (SLUICE_FUZZ_VERBOSE=1 names each input first)."""
    path, secs, name, buf, total = None, {}, None, [], 0

    def close_section():
        if name is not None:
            raw = b"".join(buf)
            if raw.endswith(b"\n"):
                raw = raw[:-1]  # dump() ends every section with a newline
            data = unescape(raw)
            secs[name] = (data, len(data) >= total)

    for line in stream:
        if line.startswith(b"running ") and line.rstrip().endswith(b" bytes)"):
            close_section()
            if path is not None and secs:
                yield path, secs
            path = line[8:].rsplit(b" (", 1)[0].decode("utf-8", "replace")
            secs, name, buf = {}, None, []
            continue
        if line.startswith(b"--- requests"):
            close_section()
            name, buf = None, []
            continue
        m = HEADER.match(line.rstrip(b"\n"))
        if m:
            close_section()
            name, total, buf = m.group(1).decode(), int(m.group(2)), []
            continue
        if name is not None:
            buf.append(line)
    close_section()
    if path is not None and secs:
        yield path, secs


def replies(out):
    """Reply codes in the relay's client output, in order (complete replies
    only: a reply cut by the trace limit is left out)."""
    codes, first = [], None
    for line in out.split(b"\r\n")[:-1]:  # the last piece has no CRLF yet
        if first is None:
            first = line[:3]
        if line[3:4] != b"-":
            codes.append(int(first) if first.isdigit() else -1)
            first = None
    return codes


class ClientStream:
    """The client's input read as commands, one unit per reply."""

    def __init__(self, data, complete):
        self.d, self.i, self.complete = data, 0, complete
        if data.startswith(b"PROXY "):
            self.line()
        elif data.startswith(PROXY_V2) and len(data) >= 16:
            self.i = 16 + int.from_bytes(data[14:16], "big")

    def line(self):
        j = self.d.find(b"\n", self.i)
        j = len(self.d) if j < 0 else j + 1
        s = self.d[self.i:j]
        self.i = j
        return s

    def body(self):
        d, i = self.d, self.i
        if d.startswith(b".\r\n", i) or d.startswith(b".\n", i):
            self.i = i + (3 if d[i + 1:i + 2] == b"\r" else 2)
            return
        ends = [k for k in (d.find(b"\n.\r\n", i), d.find(b"\n.\n", i)) if k >= 0]
        if not ends:
            self.i = len(d)
            return
        k = min(ends)
        self.i = k + (4 if d[k + 2:k + 3] == b"\r" else 3)

    def next_stage(self, prev_code):
        """The stage of the next reply, or None if it cannot be told."""
        if self.i >= len(self.d):
            return "none" if self.complete else None
        if prev_code == 354:
            self.body()
            return "DATA-end"
        if prev_code == 334:
            self.line()
            return "AUTH-cont"
        s = self.line()
        verb = s.split(b" ", 1)[0].rstrip(b"\r\n").upper()
        if verb == b"BDAT":
            parts = s.split()
            if len(parts) > 1 and parts[1].isdigit():
                self.i = min(len(self.d), self.i + int(parts[1]))
        return verb.decode() if verb in VERBS else "other"


def session_states(secs):
    """(code states, code transitions, stage states, stage transitions) of one
    traced input."""
    out, _ = secs.get("client out", (b"", True))
    cin, cin_complete = secs.get("client in", (b"", True))
    codes = replies(out)
    cs, ct, ss, st = set(), set(), set(), set()
    prev_code, prev_state = 0, ("start", 0)
    stream = ClientStream(cin, cin_complete)
    for n, code in enumerate(codes):
        cs.add(code)
        ct.add((prev_code, code))
        stage = "greeting" if n == 0 else (
            stream.next_stage(prev_code) if prev_state is not None else None)
        state = (stage, code) if stage is not None else None
        if state is not None:
            ss.add(state)
            if prev_state is not None:
                st.add((prev_state, state))
        prev_code, prev_state = code, state
    return cs, ct, ss, st


def run(runner, paths, env=None):
    """Runs the inputs and yields (path, states tuple) per traced input."""
    e = dict(os.environ if env is None else env)
    e.update(FUZZ_RELAY_TRACE="2", SLUICE_FUZZ_VERBOSE="1")
    e.setdefault("FUZZ_RELAY_SKIP_OPEN_FINDINGS", "1")
    p = subprocess.Popen([runner] + list(paths), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=e)
    for path, secs in parse_traces(p.stderr):
        yield path, session_states(secs)
    p.wait()
    if p.returncode != 0:
        raise RuntimeError("%s exited %d" % (runner, p.returncode))


def fmt_state(s):
    return "%s/%d" % s if isinstance(s, tuple) else str(s)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cs, ct, ss, st = set(), set(), set(), set()
    n = 0
    for _, (a, b, c, d) in run(sys.argv[1], sys.argv[2:]):
        n += 1
        cs |= a
        ct |= b
        ss |= c
        st |= d
    print("inputs traced: %d" % n)
    print("code states: %d  code transitions: %d" % (len(cs), len(ct)))
    print("stage states: %d  stage transitions: %d" % (len(ss), len(st)))
    print("codes: " + " ".join(str(c) for c in sorted(cs)))
    print("stage states: " + " ".join(fmt_state(s) for s in sorted(ss, key=str)))


if __name__ == "__main__":
    main()
