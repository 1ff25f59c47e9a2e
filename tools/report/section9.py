"""Section 9 of REPORT.md: fuzzing as a result.

Reads what `tools/report/fuzz-over-time.sh report` left in REPORT.assets
(fuzz-over-time.tsv, fuzz-over-time.json, fuzz-over-time-crashes.txt), so
make-report.sh rewrites the section without running the fuzzer again.
"""
import csv
import json
import os
import statistics

# ChatAFL (Meng et al., "Large Language Model guided Protocol Fuzzing",
# NDSS 2024), Exim, 24 h: mean branches, states, state transitions.
CHATAFL_EXIM = {"ChatAFL": (3789, 19.5, 108), "AFLNet": (3648, 14.1, 62.7)}


def _rows(path):
    runs = {}
    with open(path) as f:
        for r in csv.DictReader(f, delimiter="\t"):
            runs.setdefault(r["run"], []).append(
                {k: float(v) for k, v in r.items() if k != "run"})
    return runs


def _at(rows, axis, t):
    """The sample at or before t on an axis; None if the run did not get that
    far on it."""
    known = [r for r in rows if r[axis] >= 0]  # t_cpu -1: not sampled
    if not known or known[-1][axis] < t - 1e-6:
        return None
    best = None
    for r in known:
        if r[axis] <= t + 1e-6:
            best = r
    return best


def _spread(vals, fmt="%g"):
    v = [x for x in vals if x is not None]
    if not v:
        return "not reached"
    if len(v) == 1:
        return (fmt % v[0]) + " (n=1)"
    return "%s [%s–%s] (n=%d)" % (fmt % statistics.median(v), fmt % min(v), fmt % max(v), len(v))


def _mmss(s):
    return "—" if s is None or s < 0 else "%d:%02d" % (int(s) // 60, int(s) % 60)


def write(w, assets):
    tsv = os.path.join(assets, "fuzz-over-time.tsv")
    js = os.path.join(assets, "fuzz-over-time.json")
    w("## 9. Fuzzing as a result\n")
    if not (os.path.exists(tsv) and os.path.exists(js)):
        w("No fuzzing-over-time data in REPORT.assets: run `tools/report/fuzz-over-time.sh "
          "start OUT`, wait for the runs, then `tools/report/fuzz-over-time.sh report OUT`.\n")
        return
    runs = _rows(tsv)
    S = json.load(open(js))
    names = sorted(runs)
    first = runs[names[0]][0]
    bt = int(first["branches_total"])
    rt = int(first["relay_branches_total"])
    end_wall = min(r[-1]["t_wall"] for r in runs.values())
    cpu_end = [r[-1]["t_cpu"] if r[-1]["t_cpu"] >= 0 else None for r in runs.values()]
    unsampled = [(n, S["runs"][n]["cpu_sampled_until"]) for n in names
                 if runs[n][-1]["t_cpu"] < 0]
    execs = [S["runs"][n]["execs"] for n in names]
    w("**What ran.** libFuzzer on the relay target (`fuzz/fuzz_relay.c`: the whole relay "
      "driven through the test harness, the protocol oracle checking guarantees 1–10 after "
      "every step; clang, ASan + UBSan), %d independent runs (libFuzzer seeds %s), each "
      "starting from the **%d seeds only** (the %d hand-written seeds of "
      "`fuzz/tools/make-seeds.py` and the %d capture seeds listed in "
      "`fuzz/tools/capture-seeds.txt`), not from the committed corpus `fuzz/corpus/relay`, "
      "which already holds what earlier campaigns found: starting from it would measure "
      "nothing. One process per run (no `-fork`), `nice -n 19`, `-max_total_time=4500` "
      "(75 min of wall time), `-reduce_inputs=0` so that no unit found is ever replaced and "
      "deleted (a unit's file time is its discovery time), `FUZZ_RELAY_SKIP_OPEN_FINDINGS=1` "
      "(the open pool-starvation finding passes), core revision `%s`. libFuzzer stops at a "
      "crash; the run then starts it again from its own corpus for the time left (restarts "
      "below)." % (len(names), ", ".join(str(S["runs"][n]["seed"]) for n in names),
                   S["seeds"], S["seeds"] - S["capture_seeds"], S["capture_seeds"],
                   S["core_revision"][:12]))
    w("")
    w("**Two clocks.** The machine's 2 cores were shared by 8 engineers during the runs, so "
      "a run got far less than a core: by the end of its 75 wall minutes each had used %s CPU "
      "minutes (%s executions). Coverage is therefore given against wall time (what a "
      "reader with this machine would see) and against the CPU time the run had used "
      "(`/proc/PID/stat` sampled every 30 s, interpolated), which is the honest axis for "
      "comparing with published single-core figures." % (
          _spread([c / 60 if c is not None else None for c in cpu_end], "%.1f"),
          _spread(execs, "%d")))
    for n, u in unsampled:
        w(" The CPU sampler of %s stopped at %.0f wall minutes (%.1f CPU minutes): it read "
          "`/proc/PID/stat` of a libFuzzer process that had just exited after a crash, and "
          "the empty read ended it (fixed in `fuzz-run-one.sh` since); that run's CPU axis "
          "ends there, its wall-time figures are complete." % (
              n, u["t_wall"] / 60, u["t_cpu"] / 60))
    w("")
    w("**No 24 h arm.** The whole task, fuzzing included, had under two hours on shared "
      "cores; three 24 h runs would need three cores for a day. What was run is %d × 75 min "
      "wall; the comparison below is against 24 h figures and says so.\n" % len(names))
    w("**How coverage is measured.** A gcc `--coverage` build of `fuzz_relay_runner` at the "
      "same revision replays each run's units in discovery order (seeds first, at t = 0); at "
      "each sample time lcov counts the branches taken in `core/src` (all %d branches of the "
      "core files the relay target links; `sl_relay.c` alone: %d). The core is I/O-free and "
      "the harness drives all of it, so this denominator is the whole program under test." %
      (bt, rt))
    w("")

    cols = [("seeds (t = 0)", None, 0), ("10 min wall", "t_wall", 600),
            ("60 min wall", "t_wall", 3600), ("end (%.0f min wall)" % (end_wall / 60), "end", 0),
            ("10 min CPU", "t_cpu", 600), ("60 min CPU", "t_cpu", 3600)]
    w("| median [min–max] over runs | " + " | ".join(c[0] for c in cols) + " |")
    w("|---" * (len(cols) + 1) + "|")

    def line(label, f, fmt="%g"):
        cells = []
        for _, axis, t in cols:
            if axis is None:
                cells.append(fmt % f(first))
                continue
            at = [runs[n][-1] if axis == "end" else _at(runs[n], axis, t) for n in names]
            cells.append(_spread([f(x) if x is not None else None for x in at], fmt))
            if all(x is not None for x in at) and any(f(x) is None for x in at):
                cells[-1] += " (CPU not sampled for one run)"
        w("| %s | %s |" % (label, " | ".join(cells)))

    line("core branches hit (of %d)" % bt, lambda r: r["branches"], "%d")
    line("core branch coverage %", lambda r: 100.0 * r["branches"] / bt, "%.1f")
    line("`sl_relay.c` branches (of %d)" % rt, lambda r: r["relay_branches"], "%d")
    line("core lines hit (of %d)" % int(first["lines_total"]), lambda r: r["lines"], "%d")
    line("code states", lambda r: r["code_states"], "%d")
    line("code transitions", lambda r: r["code_transitions"], "%d")
    line("(stage, code) states", lambda r: r["stage_states"], "%d")
    line("(stage, code) transitions", lambda r: r["stage_transitions"], "%d")
    line("units found", lambda r: r["units"], "%d")
    line("wall minutes", lambda r: r["t_wall"] / 60, "%.1f")
    line("CPU minutes", lambda r: r["t_cpu"] / 60 if r["t_cpu"] >= 0 else None, "%.1f")
    w("")
    w("\"not reached\": no run had used that much CPU by its end.\n")
    w("![core branches and relay states over wall and CPU time](REPORT.assets/fuzz-over-time.png)\n")
    w("**Time to plateau** (per run; m:ss of wall / CPU time at the first sample reaching that "
      "share of the run's final branch count, and the last sample that still added a branch; "
      "samples at 0.5, 1, 2, 3, 5, 7.5, 10 min and every 5–10 min after, plus the CPU-time "
      "marks):\n")
    w("| run | 95 % of final | 99 % of final | last gain | final branches | gained in the last 15 wall min | processes (crash restarts) |")
    w("|---|---|---|---|---|---|---|")
    for n in names:
        R = S["runs"][n]
        p95, p99, lg = R["plateau"]["0.95"], R["plateau"]["0.99"], R["last_gain"]
        before = _at(runs[n], "t_wall", runs[n][-1]["t_wall"] - 900)
        late = runs[n][-1]["branches"] - before["branches"] if before else None
        w("| %s | %s / %s | %s / %s | %s / %s | %d | %s | %d (%d) |" % (
            n, _mmss(p95["t_wall"]), _mmss(p95["t_cpu"]), _mmss(p99["t_wall"]),
            _mmss(p99["t_cpu"]), _mmss(lg["t_wall"]), _mmss(lg["t_cpu"]),
            runs[n][-1]["branches"], "—" if late is None else "%d" % late,
            R["processes"], len(R["crash_exits"])))
    w("")
    lates = []
    for n in names:
        b = _at(runs[n], "t_wall", runs[n][-1]["t_wall"] - 900)
        if b:
            lates.append(runs[n][-1]["branches"] - b["branches"])
    if lates:
        w("No run had stopped gaining by its end: in their last 15 wall minutes the runs "
          "still added %s core branches, so the 95 %% and 99 %% times above are relative to a "
          "final count that was still rising; where the plateau lies is beyond what was "
          "run.\n" % _spread(lates, "%d"))
    U = S["union"]
    w("**States and transitions.** `fuzz/tools/relay-states.py` runs inputs through the relay "
      "harness with `FUZZ_RELAY_TRACE=2` (the harness prints what crossed the relay's "
      "boundary; nothing in the core or the harness changes) and reads the relay's replies "
      "to its client the way AFLNet and ChatAFL read a server: a *code state* is a reply "
      "code, a *code transition* a pair of consecutive codes in one session (from an initial "
      "state 0). A finer *(stage, code) state* pairs the code with what it answers (the "
      "command verb, `greeting`, `DATA-end` for a body after 354, `AUTH-cont` after 334, "
      "`none` for a reply with no client input left, e.g. a timeout's 421), matched to the "
      "client's commands in order (guarantee 1). The stage is read from the client stream, "
      "not from the relay's internals, so a reply to a line the relay dropped without a reply "
      "is attributed to the next line: an approximation, the code states are exact. Union of "
      "the runs: **%d code states, %d code transitions, %d (stage, code) states, %d "
      "transitions**. Codes reached: %s.\n" % (
          U["code_states"], U["code_transitions"], U["stage_states"], U["stage_transitions"],
          ", ".join(str(c) for c in U["codes"])))
    w("**Beside ChatAFL's Exim figures** (NDSS 2024, 24 h, averages as published; ours: median of "
      "%d runs at the end of 75 wall minutes, i.e. %s CPU minutes):\n" % (
          len(names), _spread([c / 60 if c is not None else None for c in cpu_end], "%.1f")))
    w("| | branches | states | transitions | time |")
    w("|---|---|---|---|---|")
    for k, (b, s_, t) in CHATAFL_EXIM.items():
        w(f"| {k} on Exim | {b:,} | {s_} | {t} | 24 h |".replace(",", " "))
    endr = [runs[n][-1] for n in names]
    w("| libFuzzer on the sluice relay (code states) | %s of %d | %s | %s | 75 min wall |" % (
        _spread([r["branches"] for r in endr], "%d"), bt,
        _spread([r["code_states"] for r in endr], "%d"),
        _spread([r["code_transitions"] for r in endr], "%d")))
    w("| the same, (stage, code) states | | %s | %s | |" % (
        _spread([r["stage_states"] for r in endr], "%d"),
        _spread([r["stage_transitions"] for r in endr], "%d")))
    w("")
    w("The denominators differ, so these are not scores on one scale: Exim's branches are of "
      "a whole MTA (configuration, DNS, spool, delivery, logging), ours of an I/O-free relay "
      "core of %d branches in all; ChatAFL's fuzzer plays a client against a real server, ours "
      "plays both the client and the upstream server (and the driver's TLS, DNS and timer "
      "answers), so many reply codes the relay sends are upstream codes relayed, which the "
      "fuzzer chose; a relay also answers some states with the upstream's verdict instead of "
      "its own. Their state counts come from AFLNet's state model of Exim's replies, ours from "
      "the relay's replies to its client under the same definition; and they ran 24 h on "
      "a dedicated core, ours ran 75 min on a share of one.\n" % bt)
    crashes = os.path.join(assets, "fuzz-over-time-crashes.txt")
    if os.path.exists(crashes):
        lines = [x.rstrip("\n") for x in open(crashes) if x.strip()]
        w("**Crashes** the runs found (`fuzz/tools/triage.sh` on the crash files, against the "
          "same revision; count, first file, known or NEW against today's "
          "`fuzz/findings/known-signatures.txt`, the oracle's message, grouped by its text, so "
          "one bug can show as several lines; every "
          "reproducer is in `REPORT.assets/fuzz-crashes/` as `run-N-FILE`, replayed by "
          "`build-fuzzplain/fuzz/fuzz_relay_runner FILE`). They are core bugs for the core's "
          "owners (fuzz/findings/); the runs went on past them (restarts above):\n")
        if lines:
            w("```")
            for x in lines:
                w(x)
            w("```\n")
        else:
            w("none.\n")
    now = os.path.join(assets, "fuzz-over-time-crashes-now.txt")
    if os.path.exists(now):
        lines = [x.rstrip("\n") for x in open(now) if x.strip()]
        head = [x for x in lines if x.startswith("#")]
        body = [x for x in lines if not x.startswith("#")]
        fixed = sum(int(x.split("\t")[0]) for x in body if "\tpasses-now\t" in x)
        total = sum(int(x.split("\t")[0]) for x in body)
        w("The same reproducers against a later core (%s; made by hand with the same "
          "`triage.sh` on a runner of that core): %d of %d pass now; what still fails:\n" % (
              head[0].lstrip("# ") if head else "later", fixed, total))
        w("```")
        for x in body:
            if "\tpasses-now\t" not in x:
                w(x)
        w("```\n")
