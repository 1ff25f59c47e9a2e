#!/usr/bin/python3
"""fuzz_over_time.py OUT ASSETS: the fuzzing-over-time figures of REPORT.md section 9.

OUT is the directory `fuzz-over-time.sh start` filled (run-N/ with corpus/,
start, cpu.tsv, log; seeds/; core-revision) and in which
`fuzz-over-time.sh report` built OUT/cov (gcc --coverage fuzz_relay_runner of
the fuzzed core revision).  For every run, the units it discovered are
replayed through that runner in discovery order (a unit's mtime; the seeds
first, at t = 0), and at each sample time t the core's branch coverage
(lcov, every core/src file the relay target links) and the relay states and
transitions (fuzz/tools/relay-states.py) of the seeds plus the units found up
to t are recorded.  Times are wall time since the run started and the CPU
time the run had used by then (its cpu.tsv, sampled every 30 s and
interpolated): the cores are shared, so the CPU axis is the fair one.

Writes OUT/over-time.tsv (one row per run and sample) and, for REPORT.md
(tools/report/section9.py reads them), ASSETS/fuzz-over-time.tsv (the same),
ASSETS/fuzz-over-time.json (per run: executions, restarts after crashes,
plateau times, the states reached; their union) and ASSETS/fuzz-over-time.png.
"""
import bisect
import glob
import importlib.util
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
spec = importlib.util.spec_from_file_location(
    "relay_states", os.path.join(ROOT, "fuzz", "tools", "relay-states.py"))
relay_states = importlib.util.module_from_spec(spec)
spec.loader.exec_module(relay_states)

WALL_MIN = [0, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75]
CPU_MIN = [1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 75]
LCOV = ["lcov", "--quiet", "--rc", "lcov_branch_coverage=1"]


def cpu_curve(run):
    """(wall seconds, cpu seconds) samples, starting at (0, 0)."""
    pts = [(0.0, 0.0)]
    with open(os.path.join(run, "cpu.tsv")) as f:
        for line in f:
            p = line.split()
            if len(p) == 3:
                pts.append((float(p[1]), float(p[2])))
    return sorted(set(pts))


def interp(pts, x, xi=0, yi=1):
    xs = [p[xi] for p in pts]
    k = bisect.bisect_left(xs, x)
    if k == 0:
        return pts[0][yi]
    if k >= len(pts):
        return None  # past the last sample
    (x0, y0), (x1, y1) = (pts[k - 1][xi], pts[k - 1][yi]), (pts[k][xi], pts[k][yi])
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def coverage(cov, src):
    """(branches hit, branches, lines hit, lines, relay branches hit, relay
    branches) of core/src in the gcov data under cov."""
    info = os.path.join(cov, "snap.info")
    subprocess.run(LCOV + ["--capture", "--directory", cov, "--output-file", info],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    core = os.path.join(os.path.realpath(src), "core", "src") + os.sep
    bh = bt = lh = lt = rh = rt = 0
    take = False
    relay = False
    with open(info) as f:
        for line in f:
            if line.startswith("SF:"):
                path = line[3:].strip()
                take = path.startswith(core)
                relay = path.endswith("/sl_relay.c")
            elif not take:
                continue
            elif line.startswith("BRDA:"):
                hit = line.rstrip().rsplit(",", 1)[1] not in ("-", "0")
                bt += 1
                bh += hit
                if relay:
                    rt += 1
                    rh += hit
            elif line.startswith("DA:"):
                lt += 1
                lh += line.rstrip().split(",")[1] != "0"
    return bh, bt, lh, lt, rh, rt


def replay(runner, files, sets, failed):
    """Runs files through the coverage runner, adding their states to sets.
    gcov writes its counters at exit, which an abort skips: a batch whose
    runner fails is run again file by file."""
    for i in range(0, len(files), 500):
        batch = files[i:i + 500]
        got = []
        try:
            for _, st in relay_states.run(runner, batch):
                got.append(st)
        except RuntimeError:
            got = []
            for f in batch:
                try:
                    for _, st in relay_states.run(runner, [f]):
                        got.append(st)
                except RuntimeError:
                    failed.append(f)
        for st in got:
            for s, new in zip(sets, st):
                s |= new


def analyse_run(run, seeds, runner, cov, src):
    start = float(open(os.path.join(run, "start")).read())
    cpu = cpu_curve(run)
    units = sorted((os.stat(p).st_mtime - start, p)
                   for p in glob.glob(os.path.join(run, "corpus", "*")))
    end_wall = max(cpu[-1][0], units[-1][0] if units else 0)
    times = {w * 60.0 for w in WALL_MIN if w * 60.0 <= end_wall}
    for c in CPU_MIN:
        w = interp(cpu, c * 60.0, 1, 0)
        if w is not None and c * 60.0 <= cpu[-1][1]:
            times.add(w)
    times.add(end_wall)
    subprocess.run(LCOV + ["--zerocounters", "--directory", cov], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sets = (set(), set(), set(), set())
    failed = []
    rows = []
    done = 0
    replay(runner, sorted(glob.glob(os.path.join(seeds, "*"))), sets, failed)
    for t in sorted(times):
        batch = []
        while done < len(units) and units[done][0] <= t:
            batch.append(units[done][1])
            done += 1
        replay(runner, batch, sets, failed)
        bh, bt, lh, lt, rh, rt = coverage(cov, src)
        # past the last CPU sample the CPU time is unknown (-1), not the last
        # value: a sampler that stopped must not flatten the CPU axis
        c = interp(cpu, t)
        if c is None and t <= cpu[-1][0] + 31:
            c = cpu[-1][1]  # within one sampling period of the last sample
        rows.append(dict(t_wall=t, t_cpu=c if c is not None else -1,
                         units=done, branches=bh, branches_total=bt,
                         lines=lh, lines_total=lt, relay_branches=rh,
                         relay_branches_total=rt,
                         code_states=len(sets[0]), code_transitions=len(sets[1]),
                         stage_states=len(sets[2]),
                         stage_transitions=len(sets[3])))
        print("%s t=%5.0fs cpu=%5.0fs units=%5d branches=%d/%d states %d/%d %d/%d"
              % (os.path.basename(run), t, rows[-1]["t_cpu"], done, bh, bt,
                 len(sets[0]), len(sets[1]), len(sets[2]), len(sets[3])),
              file=sys.stderr)
    return rows, sets, failed


def plateau(rows, key, frac):
    final = rows[-1]["branches"]
    for r in rows:
        if r["branches"] >= frac * final:
            return r[key] if r[key] >= 0 else None
    return None


def main():
    out, assets = sys.argv[1], sys.argv[2]
    src = os.path.realpath(os.path.join(out, "src"))
    cov = os.path.realpath(os.path.join(out, "cov"))
    runner = os.path.join(cov, "fuzz", "fuzz_relay_runner")
    seeds = os.path.join(out, "seeds")
    runs = sorted(glob.glob(os.path.join(out, "run-*")))
    allrows, allsets = {}, {}
    cpu_curves = {os.path.basename(r): cpu_curve(r) for r in runs}
    failed = {}
    for run in runs:
        rows, sets, fail = analyse_run(run, seeds, runner, cov, src)
        allrows[os.path.basename(run)] = rows
        allsets[os.path.basename(run)] = sets
        failed[os.path.basename(run)] = fail
    cols = ["t_wall", "t_cpu", "units", "branches", "branches_total", "lines",
            "lines_total", "relay_branches", "relay_branches_total",
            "code_states", "code_transitions", "stage_states",
            "stage_transitions"]
    with open(os.path.join(out, "over-time.tsv"), "w") as f:
        f.write("run\t" + "\t".join(cols) + "\n")
        for name, rows in allrows.items():
            for r in rows:
                f.write(name + "\t" + "\t".join("%g" % r[c] for c in cols) + "\n")

    # Everything REPORT.md's section 9 quotes (tools/report/section9.py),
    # so make-report.sh can rewrite the report without the runs.
    import json
    summary = {"core_revision": open(os.path.join(out, "core-revision")).read().split()[0],
               "seeds": len(glob.glob(os.path.join(seeds, "*"))),
               "capture_seeds": sum(
                   1 for line in open(os.path.join(ROOT, "fuzz", "tools", "capture-seeds.txt"))
                   if line.strip() and not line.startswith("#")
                   and os.path.exists(os.path.join(seeds, line.split()[0]))),
               "runs": {}}
    for name, rows in allrows.items():
        run = os.path.join(out, name)
        execs = 0
        with open(os.path.join(run, "log"), errors="replace") as f:
            for line in f:
                if line.startswith("stat::number_of_executed_units:"):
                    execs += int(line.split()[1])
        restarts = []
        if os.path.exists(os.path.join(run, "restarts")):
            restarts = [l.split() for l in open(os.path.join(run, "restarts"))]
        start = float(open(os.path.join(run, "start")).read())
        last = rows[0]
        for x, y in zip(rows, rows[1:]):
            if y["branches"] > x["branches"]:
                last = y
        summary["runs"][name] = {
            "seed": int(name.split("-")[1]),
            "execs": execs,
            "processes": len(restarts),
            "crash_exits": [{"t_wall": float(r[0]) - start, "exit": int(r[-1])}
                            for r in restarts if r[-1] != "0"],
            "replay_failures": [os.path.basename(f) for f in failed[name]],
            "plateau": {str(frac): {"t_wall": plateau(rows, "t_wall", frac),
                                    "t_cpu": plateau(rows, "t_cpu", frac)}
                        for frac in (0.95, 0.99)},
            "last_gain": {"t_wall": last["t_wall"],
                          "t_cpu": last["t_cpu"] if last["t_cpu"] >= 0 else None},
            "cpu_sampled_until": {"t_wall": cpu_curves[name][-1][0],
                                  "t_cpu": cpu_curves[name][-1][1]},
            "states": {
                "codes": sorted(allsets[name][0]),
                "stage_states": sorted(relay_states.fmt_state(x) for x in allsets[name][2]),
            },
        }
    union = [set(), set(), set(), set()]
    for sets in allsets.values():
        for u, x in zip(union, sets):
            u |= x
    summary["union"] = {"code_states": len(union[0]), "code_transitions": len(union[1]),
                        "stage_states": len(union[2]), "stage_transitions": len(union[3]),
                        "codes": sorted(union[0]),
                        "stage_states_list": sorted(relay_states.fmt_state(x) for x in union[2])}
    os.makedirs(assets, exist_ok=True)
    with open(os.path.join(assets, "fuzz-over-time.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(assets, "fuzz-over-time.tsv"), "w") as f:
        f.write(open(os.path.join(out, "over-time.tsv")).read())
    first = next(iter(allrows.values()))[0]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (name, rows) in enumerate(allrows.items()):
        c = "C%d" % i
        axes[0].plot([r["t_wall"] / 60 for r in rows], [r["branches"] for r in rows],
                     marker=".", color=c, label=name)
        known = [r for r in rows if r["t_cpu"] >= 0]  # CPU time sampled
        axes[1].plot([r["t_cpu"] / 60 for r in known], [r["branches"] for r in known],
                     marker=".", color=c, label=name)
        axes[2].plot([r["t_cpu"] / 60 for r in known], [r["stage_states"] for r in known],
                     marker=".", color=c, label=name + " (stage, code) states")
        axes[2].plot([r["t_cpu"] / 60 for r in known], [r["code_states"] for r in known],
                     linestyle="--", color=c, label=name + " code states")
    total = first["branches_total"]
    axes[0].set(xlabel="wall minutes (2 cores shared by 8 engineers)",
                ylabel="core/src branches hit (of %d)" % total,
                title="relay target: core branches vs wall time")
    axes[1].set(xlabel="CPU minutes used by the run",
                ylabel="core/src branches hit (of %d)" % total,
                title="core branches vs CPU time")
    axes[2].set(xlabel="CPU minutes used by the run", ylabel="distinct states",
                title="relay states reached")
    for a in axes:
        a.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=6)
    fig.suptitle("libFuzzer relay target: %d runs from the %d seeds only, core %s"
                 % (len(allrows), summary["seeds"], summary["core_revision"][:12]))
    fig.tight_layout()
    os.makedirs(assets, exist_ok=True)
    fig.savefig(os.path.join(assets, "fuzz-over-time.png"), dpi=90)


if __name__ == "__main__":
    main()
