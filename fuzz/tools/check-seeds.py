#!/usr/bin/python3
"""check-seeds.py RUNNER [FUZZ_DIR]: the relay seeds still reach the states
they were written for.

A seed is written against the relay's behaviour of its day.  When that
changes (the one-EHLO rule of pass-through, a preamble reply no longer
awaited), a seed that feeds the upstream's replies in the old order makes
the relay fail the leg on an unsolicited reply before it sent the upstream
a single byte, and every input the fuzzers derive from it starts there:
the seed still passes the oracle, so nothing else notices.  This check
fails when a hand seed (make-seeds.py, regenerated here) or a capture seed
(fuzz/tools/capture-seeds.txt) connects the upstream and never writes to
it, and when a hand seed is missing from fuzz/corpus/relay (the generator
changed, the corpus was not regenerated).  Seeds that by design never
write upstream (a refused client, a capture without a server side) are
listed with the reason in fuzz/tools/silent-seeds.txt.

RUNNER is fuzz_relay_runner; FUZZ_RELAY_TRACE=2 makes it print what crossed
the boundary for every input.  FUZZ_DIR (default: this script's fuzz/) may
be another tree's, with that tree's runner, to check its seeds (the list of
seeds silent by design is always this script's).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def silent_upstream(runner, path):
    """The session connected an upstream and sent it nothing."""
    env = dict(os.environ, FUZZ_RELAY_TRACE="2")
    out = subprocess.run([runner, path], env=env, capture_output=True, text=True,
                         errors="replace", timeout=60).stderr
    # "type 1 id": SL_REQ_CONNECT_UPSTREAM as the trace printed requests
    # before they had names (for checking an older tree's seeds)
    return (re.search(r"connect_upstream|type 1 id", out) is not None
            and re.search(r"--- upstream out \(0 bytes\)", out) is not None)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runner = sys.argv[1]
    fuzz = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(HERE)
    corpus = os.path.join(fuzz, "corpus", "relay")
    silent = set()
    for ln in open(os.path.join(HERE, "silent-seeds.txt")):
        if ln.strip() and not ln.startswith("#"):
            silent.add(ln.split()[0])
    bad = []
    tmp = tempfile.mkdtemp(prefix="sluice-seeds-")
    try:
        os.makedirs(os.path.join(tmp, "findings"))
        held = os.path.join(fuzz, "findings", "held-seeds.txt")
        if os.path.exists(held):
            shutil.copy(held, os.path.join(tmp, "findings"))
        subprocess.run([sys.executable, os.path.join(fuzz, "tools", "make-seeds.py"), tmp],
                       check=True)
        hand = sorted(os.listdir(os.path.join(tmp, "corpus", "relay")))
        for name in hand:
            if not os.path.exists(os.path.join(corpus, name)):
                bad.append(f"hand seed {name} is not in fuzz/corpus/relay (run make-seeds.py)")
            elif name not in silent and silent_upstream(runner, os.path.join(corpus, name)):
                bad.append(f"hand seed {name} never reaches the upstream")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    captures = 0
    for ln in open(os.path.join(fuzz, "tools", "capture-seeds.txt")):
        if ln.startswith("#") or not ln.strip():
            continue
        name, source = ln.split(" ", 1)
        captures += 1
        path = os.path.join(corpus, name)
        if not os.path.exists(path):
            bad.append(f"capture seed {name} ({source.strip()}) is missing")
        elif name not in silent and silent_upstream(runner, path):
            bad.append(f"capture seed {name} ({source.strip()}) never reaches the upstream")
    for b in bad:
        print(b)
    print(f"{len(hand)} hand seeds, {captures} capture seeds, {len(bad)} stale")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
