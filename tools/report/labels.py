#!/usr/bin/python3
"""Writes a `sluice-replay sim --labels` file (SOURCE SESSION|* CLASS) from
the kinds SOURCES.md gives the shared captures (bot: SPAMBOT, abuse/attack
tool; legit: ordinary real traffic, bulk/automated sender; test: generated
or hand-made test traffic) and from the generator's sidecars (FILE.json:
mta* dialects legit, bot-* bot), the same classes REPORT.md uses.
usage: labels.py [--sources SOURCES.md] [CAPTURE.pcap...] > labels.txt"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import kinds_from_sources, real_class  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources")
    ap.add_argument("captures", nargs="*")
    a = ap.parse_args()
    print("# made by tools/report/labels.py")
    if a.sources:
        for name, kind in sorted(kinds_from_sources(a.sources).items()):
            print(f"{name} * {real_class(kind)}")
    for c in a.captures:
        side = c + ".json"
        if not os.path.exists(side):
            continue
        for i, s in enumerate(json.load(open(side))["sessions"]):
            cls = "legit" if s["dialect"].startswith("mta") else "bot"
            print(f"{os.path.basename(c)} {i + 1} {cls}")


if __name__ == "__main__":
    main()
