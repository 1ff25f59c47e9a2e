#!/usr/bin/python3
"""Turns the outputs of tools/report/make-report.sh into REPORT.md and PNGs.

Every number in the report comes from the files in --data, which the script
writes with sluice-replay; nothing here is typed in by hand except the
published figures quoted for comparison (ops90, vendor10, RFC 5321
timeouts, spamd), which live in estimators.py."""
import argparse
import collections
import csv
import json
import os
import re
import statistics

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import estimators as E  # noqa: E402

GREET = [0, 2, 6, 10, 21, 45, 90, 100]
REPLY = [0, 2, 6, 10, 21, 45, 100]
CLOCKS = ["read", "reply", "session"]
MIN_EVENT = 0.005  # closes faster than this are censored (estimators.km)


# ---- inputs ---------------------------------------------------------------

def load(path):
    recs, model = [], None
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if "outcome" not in o:
                model = o
            else:
                recs.append(o)
    return model, recs


def kinds_from_sources(path):
    kinds, cur = {}, None
    if not os.path.exists(path):
        return kinds
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^### (\S+)", line)
        if m:
            cur = m.group(1)
        m = re.match(r"^- Kind: (.*)$", line)
        if m and cur:
            kinds[cur] = m.group(1).strip()
    return kinds


def real_class(kind):
    if kind in ("SPAMBOT", "abuse/attack tool"):
        return "bot"
    if kind in ("ordinary real traffic", "bulk/automated sender"):
        return "legit"
    return "test"


def read_obs(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def policy_value(r):
    return float(r["policy"].split("=")[-1])


def key(r):
    return (r["source"], r["session"])


# ---- give-up cells ----------------------------------------------------------

def band_of(r, model, clock, km_rows=None):
    w = E.wait(r["w_" + clock])
    if model == "ops90":
        return E.ops_band(w)
    if model == "vendor10":
        return E.vendor_band(w)
    if model == "km":
        return E.km_band(km_rows, w)
    if model == "rfc5321":
        return E.rfc5321_band(r["w_%s_by" % ("reply" if clock == "session" else clock)])
    raise ValueError(model)


def cell(recs, model, clock, km_rows=None):
    """Exact expected give-up share with its band and a file-level bootstrap
    CI: (lo, hi, ci_lo, ci_hi, n, files)."""
    if not recs:
        return None
    b = [band_of(r, model, clock, km_rows) for r in recs]
    g = [r["source"] for r in recs] if FILE_GROUPS else [key(r) for r in recs]
    lo, ci_lo, _ = E.boot_mean(g, [x[0] for x in b])
    hi, _, ci_hi = E.boot_mean(g, [x[1] for x in b])
    return lo, hi, ci_lo, ci_hi, len(recs), len({r["source"] for r in recs})


def fmt(c):
    if c is None:
        return "-"
    lo, hi, cl, ch = (100 * x for x in c[:4])
    v = f"{lo:.1f} %" if abs(hi - lo) < 0.05 else f"{lo:.1f}–{hi:.1f} %"
    return f"{v} [{cl:.0f}, {ch:.0f}]"


FILE_GROUPS = True


OPS_DEV = max(abs(E.ops_cdf(rd, t) - p) * 100 for rd in ("upper", "lower")
              for t, p in E.ops_points(rd)[1:])


def main():
    global FILE_GROUPS
    ap = argparse.ArgumentParser()
    for o in ("data", "assets", "sources", "generated", "relay", "out", "seeds"):
        ap.add_argument("--" + o)
    a = ap.parse_args()
    D, A = a.data, a.assets
    seeds = a.seeds.split()
    kinds = kinds_from_sources(a.sources)
    out = []
    w = out.append

    S = {}
    for tag in ("real", "synth"):
        s = {}
        for exp in ("greet", "reply", "shape", "mode"):
            s[exp] = load(os.path.join(D, f"{tag}-{exp}.jsonl"))
        s["cost"] = [r for sd in seeds for r in load(os.path.join(D, f"{tag}-cost-{sd}.jsonl"))[1]]
        s["costmode"] = [r for sd in seeds
                         for r in load(os.path.join(D, f"{tag}-costmode-{sd}.jsonl"))[1]]
        s["obs"] = read_obs(os.path.join(D, f"{tag}-obs.csv"))
        s["bench"] = open(os.path.join(D, f"{tag}-bench.txt")).read().strip()
        S[tag] = s
    tarpit_obs = read_obs(os.path.join(D, "synth-tarpit-obs.csv"))

    # Classes: SOURCES.md kinds (real), the generator's sidecar (synthetic).
    side = json.load(open(os.path.join(a.generated, "mixed-1000.pcap.json")))["sessions"]
    def cls_real(r):
        return real_class(kinds.get(r["source"], ""))

    def cls_synth(r):
        d = side[r["session"] - 1]
        assert d["client"] == r["client"], "sidecar out of step with the capture"
        return "legit" if d["dialect"].startswith("mta") else "bot"
    CLS = {"real": cls_real, "synth": cls_synth}

    def obs_pairs(obs):
        return [(float(o["wait_s"]), o["event"] == "1") for o in obs if float(o["wait_s"]) < 86400]
    km_real = E.km(obs_pairs(S["real"]["obs"]), MIN_EVENT)
    km_tarpit = E.km(obs_pairs(tarpit_obs), MIN_EVENT)
    KM = {"real": km_real, "synth": km_tarpit}
    KMNAME = {"real": "KM of the captures", "synth": "KM of the SYNTHETIC tarpit corpora"}

    base_real = [r for r in S["real"]["greet"][1] if policy_value(r) == 0]
    files = sorted({r["source"] for r in base_real})
    ccount = collections.Counter(cls_real(r) for r in base_real)
    fcount = collections.Counter(real_class(kinds.get(f, "")) for f in files)

    # ================================================================ text
    w("# sluice tarpit replay report\n")
    w("Generated by `tools/report/make-report.sh` (do not edit by hand). Every figure comes from "
      "`sluice-replay` runs that the script makes; the raw records are in the build directory's "
      "`report-data/` (JSON Lines, one record per session and policy). Percentages are "
      "*expected* shares computed exactly from the waits (below), with 95 % bootstrap intervals "
      "in brackets that resample **whole capture files** (real captures; the synthetic corpus is "
      "one file of independently generated sessions, so its sessions are resampled). "
      "`a–b %` is a band: the two tie orderings and, for data that only bound the patience "
      "distribution, the lowest and highest distribution they allow; the interval then runs from "
      "the lower end's lower bound to the upper end's upper bound. Every row states n (sessions) "
      "and the number of files.\n")

    w("## 1. Method\n")
    w("Replay model, as `sluice-replay` prints it:\n")
    w(S["real"]["greet"][0]["model"].replace("; ", "\n- ").join(["- ", "\n"]))
    w("**Exact expected give-up instead of one random draw.** Every session is replayed under "
      "every policy with infinite patience, and the record keeps the longest wait for a reply the "
      "client sat through (`w_read`, `w_reply`, `w_session`, and per command). Until it gives up "
      "a client behaves the same whatever its patience, so a client with patience T gives up iff "
      "T < W. The expected share that gives up is the mean over sessions of F(W−), with F the "
      "patience distribution: no draw, no seed. Test `replay_sim` checks the equivalence on hand-"
      "made sessions for 10 patience values × 4 policies × 2 clocks.\n")
    w("**Tie rule.** A reply that reaches the client at the very instant its patience runs out is "
      "received (the core's deadlines and the upstream are handled before the client's patience "
      "at the same instant), so the replay gives up iff T < W. The other ordering gives up iff "
      "T ≤ W, i.e. F(W). Both are shown: for the point masses of `vendor10` this is the "
      "evaluation at W − ε and W + ε, so no figure rests on the event order. (The old report's "
      "\"10 s greeting delay gives the same as 0 s under vendor10\" was exactly this tie.)\n")
    w("**Which clock runs out.** A real client has up to three: a per-read timeout (restarted by "
      "every byte: `read`), a per-reply timeout since the command was sent (`reply`; RFC 5321 "
      "§4.5.3.2's timeouts are per command), and a whole-session deadline (`session`, since the "
      "connection opened). The wait under each is recorded; results are given under each, and "
      "read ≤ reply ≤ session makes them bounds. A stutter restarts the read clock with every "
      "byte, so it can only act through the reply and session clocks; a DATA throttle slows the "
      "client's own writes, which no reply clock sees, so it can only act through the session "
      "clock.\n")
    w("**Patience models.**\n")
    w("- `ops90`: the operator's published closes under a 90 s greeting delay. The table is "
      "conditional on closing within 90 s (8 %, 37 %, 63 %, 87 %, 98 % of the closers at the "
      "labels 10, 20, 25, 30, 60 s) and 4.9 % of the hosts were still waiting at 90 s: that is "
      "censoring at 90 s, not \"never gives up\", so the unconditional CDF is 0.951 × the table "
      "up to 90 s and anything between 0.951 and 1 after. The bins are 5 s wide and the labels "
      "may be upper edges (closed *by* 10 s) or lower edges (closed in [10, 15) s). The table "
      "is fitted as interval-censored data (each bin an interval, the 4.9 % an interval (90 s, "
      "∞)) by maximum likelihood, with a two-component log-normal mixture (a single log-normal "
      "misses the published points by up to 14 points), once per reading; the band is the two "
      f"fits. Largest distance of a fit from its published points: {OPS_DEV:.1f} points. The "
      "fully nonparametric alternative (any CDF through the bin edges) is in the test suite "
      "(`estimators.ops_bounds`) but leaves every wait inside a bin undetermined. The source "
      "counts *hosts*; the replay counts *sessions*.\n"
      "- `vendor10`: \"90 % of spammers go away after 10 seconds\", per-family timeouts near "
      "21 s and 100 s, read as point masses 90 % at 10 s, 5 % at 21 s, 5 % at 100 s.\n"
      "- `rfc5321` (legitimate MTAs): each reply is waited out up to the RFC 5321 §4.5.3.2 "
      "timeout of its command (greeting, MAIL, RCPT and others 5 min; DATA initiation 2 min; "
      "end of data 10 min); a client that times out retries later, so its cost is a delay, and "
      "a loss only if every retry meets the same wait.\n"
      f"- `km`: the Kaplan–Meier estimate of the waits observed in the captures (section 2.1), "
      f"with closes faster than {MIN_EVENT * 1000:.0f} ms counted as censored and nothing "
      "assumed past the last observation (there the band is [F(last), 1]).\n")
    w("**Client classes.** Each session gets its class from its capture's kind in SOURCES.md "
      "(real: `bot` = SPAMBOT or abuse/attack tool, `legit` = ordinary real traffic or bulk "
      "sender, `test` = generated or hand-made test traffic) or from the generator's sidecar "
      "(synthetic: `mta*` dialects are `legit`, `bot-*` are `bot`). Bots are evaluated under "
      "`ops90` and `vendor10`, legitimate senders under `rfc5321`.\n")
    w("Policies are files in sluiced's configuration format (`tools/report/policies/`): "
      "pass-through with AUTH relayed and bare-LF DATA lines normalised, so that the sweeps "
      "measure delays rather than framing rejections; sweeps set `greet_delay` (hold the "
      "greeting) or `reply_delay` (hold every other reply).\n")

    # ------------------------------------------------------------ KM
    w("## 2. Real captures (primary evidence)\n")
    w(f"{len(files)} capture files from `../shared/pcaps`, {len(base_real)} SMTP sessions. Classes: "
      + ", ".join(f"{k} {ccount[k]} sessions in {fcount[k]} files" for k in ("bot", "legit", "test"))
      + ".\n")
    obs = S["real"]["obs"]
    ev = [o for o in obs if o["event"] == "1"]
    ev_kept = [o for o in ev if float(o["wait_s"]) >= MIN_EVENT]
    w("### 2.1 Client patience from the captures (Kaplan–Meier)\n")
    fast = [o for o in ev if float(o["wait_s"]) < MIN_EVENT]
    para = (f"`sluice-replay patience`: {len(obs)} sessions with the server side captured; the client "
      f"closed while waiting for a reply in {len(ev)} of them, all within "
      f"{max(float(o['wait_s']) for o in ev) * 1000 if ev else 0:.1f} ms "
      "(" + ", ".join(f"{o['source']} #{o['session']} {float(o['wait_s']) * 1000:.1f} ms waiting "
                      f"for {o['waiting_for']}" for o in ev) + "). "
      f"A close that fast follows the client's own last write: it is a scripted tool or a capture "
      f"cut short, not a client that ran out of patience, so a close within "
      f"{MIN_EVENT * 1000:.0f} ms counts as censored ({len(fast)} of them)")
    if not ev_kept:
        w(para + f"; no events remain. The real captures therefore contain **no observed "
          "impatience**: every session is censored at its longest wait, and the estimate is S = 1 "
          f"up to the longest observed wait ({km_real[-1][0]:.2f} s) and unknown after it.\n")
    else:
        kept = ", ".join(f"{o['source']} #{o['session']} {float(o['wait_s']) * 1000:.1f} ms"
                         for o in ev_kept)
        s_last = km_real[-1][4]
        if max(float(o["wait_s"]) for o in ev_kept) < 10 * MIN_EVENT:
            w(para + f"; {len(ev_kept)} kept as event(s) ({kept}), just over the rule's threshold "
              "and no more a sign of impatience than the others. The real captures therefore "
              "contain **no observed impatience worth the name**: the estimate only falls to "
              f"S = {s_last:.3f} by the longest observed wait ({km_real[-1][0]:.2f} s) and is "
              "unknown after it.\n")
        else:
            w(para + f"; {len(ev_kept)} event(s) remain ({kept}): the estimate falls to "
              f"S = {s_last:.3f} by the longest observed wait ({km_real[-1][0]:.2f} s) and is "
              "unknown after it.\n")
    at = [0.001, 0.01, 0.1, 1, 5, 10]
    w("Number at risk (sessions whose longest wait was at least t):\n")
    w("| t (s) | " + " | ".join(f"{t:g}" for t in at) + " |")
    w("|---|" + "---|" * len(at))
    for name, o in (("real captures", obs_pairs(obs)), ("SYNTHETIC tarpit corpora", obs_pairs(tarpit_obs))):
        w(f"| {name} (n={len(o)}) | " + " | ".join(str(sum(1 for x in o if x[0] >= t)) for t in at) + " |")
    w("")
    ev_t = sum(r[2] for r in km_tarpit)
    w(f"The SYNTHETIC tarpit corpora (`tarpit-greet-2/10/30`, `tarpit-reply-5-ipv6`: generated "
      f"servers that really delayed) have {ev_t} events among {len(tarpit_obs)} sessions; their "
      "curve shows what the estimator does with data that contain impatience, and it reproduces "
      "the generator's own patience (the `bot-impatient` dialect, exponential with mean 10 s), "
      "not any real bot's.\n")
    w("| time (s) | at risk | events | censored | S(t) | 95 % CI (log-log) |\n|---|---|---|---|---|---|")
    for r in [r for r in km_tarpit if r[2]][:12]:
        w(f"| {r[0]:.3f} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.4f} | [{r[5]:.4f}, {r[6]:.4f}] |")
    w(f"\n(first 12 event times of {sum(1 for r in km_tarpit if r[2])}; the whole table is in "
      "`report-data/synth-tarpit-obs.csv` through `estimators.km`.)\n")

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.6))
    for axx, rows, title, color, n in (
            (ax[0], km_real, f"Real captures (n={len(obs_pairs(obs))}, {len(ev_kept)} events after the {MIN_EVENT * 1000:.0f} ms rule)", "C0", len(obs_pairs(obs))),
            (ax[1], km_tarpit, f"SYNTHETIC tarpit corpora (n={len(tarpit_obs)}, {ev_t} events)", "C4", len(tarpit_obs))):
        xs, ys, lo, hi = [0.0], [1.0], [1.0], [1.0]
        for r in rows:
            xs.append(r[0]); ys.append(r[4]); lo.append(r[5]); hi.append(r[6])
        axx.step(xs, ys, where="post", color=color, label="Kaplan–Meier S(t)")
        axx.fill_between(xs, lo, hi, step="post", alpha=0.25, color=color, label="95 % CI (log-log)")
        cx = [r[0] for r in rows if r[3]]
        cy = [r[4] for r in rows if r[3]]
        axx.plot(cx, cy, "|", color="k", ms=8, label="censored")
        tt = [x / 2 for x in range(0, 241)]
        bl = [1 - E.ops_band(t)[1] for t in tt]
        bh = [1 - E.ops_band(t)[0] for t in tt]
        axx.fill_between(tt, bl, bh, color="C3", alpha=0.25, label="ops90 fit, both bin readings")
        for rd, mk in (("upper", "o"), ("lower", "x")):
            pp = E.ops_points(rd)[1:]
            axx.plot([t for t, _ in pp], [1 - p for _, p in pp], mk, color="C3", ms=5,
                     label=f"ops90 published points ({rd} edges)")
        vt = [0, 10, 10, 21, 21, 100, 100, 120]
        axx.step(vt, [1, 1, .1, .1, .05, .05, 0, 0], where="post", ls=":", color="C2", label="vendor10 (as read)")
        axx.axvline(rows[-1][0], color=color, ls="--", lw=0.8)
        axx.set_xlim(0, 120); axx.set_ylim(-0.02, 1.05)
        axx.set_xlabel("time waiting for a reply (s)"); axx.set_ylabel("still waiting S(t)")
        axx.set_title(title, fontsize=9)
        ticks = [0, 5, 10, 20, 30, 60, 120]
        src = obs_pairs(obs) if rows is km_real else obs_pairs(tarpit_obs)
        risk = [sum(1 for x in src if x[0] >= t) for t in ticks]
        axx.text(0, -0.2, "at risk: " + "  ".join(f"{t}s:{k}" for t, k in zip(ticks, risk)),
                 transform=axx.transAxes, fontsize=7)
        axx.legend(fontsize=7, loc="upper right")
    fig.tight_layout(); fig.savefig(os.path.join(A, "km.png"), dpi=110); plt.close(fig)
    w("![Kaplan–Meier survival of client patience](REPORT.assets/km.png)\n")
    w("The dashed vertical line is the last observation; the curves stop there. The shaded red "
      "band is every survival curve the published ops90 table allows.\n")

    # ------------------------------------------------------------ give-up tables
    def giveup_tables(tag, label, classes):
        for exp, what, delays in (("greet", "greeting delay", GREET), ("reply", "per-reply delay", REPLY)):
            recs = S[tag][exp][1]
            by = collections.defaultdict(list)
            for r in recs:
                by[(policy_value(r), CLS[tag](r))].append(r)
                by[(policy_value(r), "all")].append(r)
            w(f"**{label}: expected share that gives up, by {what}** (read clock; exact, band "
              f"and 95 % bootstrap CI over {'capture files' if FILE_GROUPS else 'sessions'} in "
              "brackets)\n")
            w("| class | model | n (files) | " + " | ".join(f"{d} s" for d in delays) + " |")
            w("|---|---|---|" + "---|" * len(delays))
            for c in classes:
                models = ["rfc5321"] if c == "legit" else ["ops90", "vendor10"]
                if c == "all":
                    models = ["ops90", "vendor10", "km"]
                for m in models:
                    cells = [cell(by[(float(d), c)], m, "read", KM[tag]) for d in delays]
                    n = cells[0][4] if cells[0] else 0
                    nf = cells[0][5] if cells[0] else 0
                    mname = KMNAME[tag] if m == "km" else m
                    w(f"| {c} | {mname} | {n} ({nf}) | " + " | ".join(fmt(x) for x in cells) + " |")
            w("")

    def clock_table(tag, label, cls):
        rows = []
        for exp, pol in (("greet", "greet_delay=10"), ("greet", "greet_delay=21"),
                         ("reply", "reply_delay=6"), ("shape", "spamd-stutter.conf"),
                         ("shape", "throttle-1k.conf"), ("shape", "base.conf")):
            rs = [r for r in S[tag][exp][1] if r["policy"].endswith(pol) and CLS[tag](r) == cls]
            rows.append((pol, rs))
        w(f"**{label}: the three clocks as bounds** ({cls} sessions; expected share that gives up "
          "under each clock; read ≤ reply ≤ session)\n")
        w("| policy | model | n (files) | read | reply | session |")
        w("|---|---|---|---|---|---|")
        for pol, rs in rows:
            for m in ("ops90", "vendor10"):
                cs = [cell(rs, m, ck) for ck in CLOCKS]
                w(f"| {pol} | {m} | {len(rs)} ({len({r['source'] for r in rs})}) | "
                  + " | ".join(fmt(x) for x in cs) + " |")
        w("")

    def tradeoff(tag, label, fname):
        w(f"**{label}: the defender's trade-off** — bots that leave against what legitimate "
          "senders pay (read clock for bots; per-command RFC 5321 timeouts on the reply clock for "
          "MTAs, the stricter of the two; extra time to delivery from the replay with no give-ups)\n")
        w("| policy | bots gone, ops90 | bots gone, vendor10 | n bots (files) | MTAs timing out (RFC 5321) | "
          "legit extra time to delivery, median / max (s) | n legit (files) |")
        w("|---|---|---|---|---|---|---|")
        pts = collections.defaultdict(list)
        for exp, delays, name in (("greet", GREET, "greet_delay"), ("reply", REPLY, "reply_delay")):
            recs = S[tag][exp][1]
            base = {key(r): r for r in recs if policy_value(r) == 0}
            for d in delays:
                if exp == "reply" and d == 0:
                    continue
                rs = [r for r in recs if policy_value(r) == d]
                bots = [r for r in rs if CLS[tag](r) == "bot"]
                leg = [r for r in rs if CLS[tag](r) == "legit"]
                co, cv = cell(bots, "ops90", "read"), cell(bots, "vendor10", "read")
                cr = cell(leg, "rfc5321", "reply")
                extra = [r["deliver_s"] - base[key(r)]["deliver_s"] for r in leg
                         if r["deliver_s"] >= 0 and base[key(r)]["deliver_s"] >= 0]
                ex = f"{statistics.median(extra):.1f} / {max(extra):.1f}" if extra else "-"
                w(f"| {name}={d} | {fmt(co)} | {fmt(cv)} | {len(bots)} ({len({r['source'] for r in bots})}) | "
                  f"{fmt(cr)} | {ex} | {len(leg)} ({len({r['source'] for r in leg})}) |")
                pts[exp].append((d, co, cv, cr, statistics.median(extra) if extra else float("nan"),
                                 len(bots), len(leg)))
        w("")
        fig, ax = plt.subplots(1, 2, figsize=(12, 4.4))
        for i, (exp, xl) in enumerate((("greet", "greeting delay (s)"), ("reply", "per-reply delay (s)"))):
            p = pts[exp]
            xs = [x[0] for x in p]
            for j, (name, col) in enumerate((("bots gone, ops90 band", "C3"), ("bots gone, vendor10 band", "C2"))):
                c = [x[1 + j] for x in p]
                ax[i].fill_between(xs, [100 * x[0] for x in c], [100 * x[1] for x in c], color=col, alpha=0.5, label=name)
                ax[i].fill_between(xs, [100 * x[2] for x in c], [100 * x[3] for x in c], color=col, alpha=0.12)
            c = [x[3] for x in p]
            ax[i].plot(xs, [100 * x[1] for x in c], "s-", color="C0", label="MTAs timing out (RFC 5321)")
            ax[i].set_xlabel(xl); ax[i].set_ylabel("% of class"); ax[i].set_ylim(-2, 102)
            a2 = ax[i].twinx()
            a2.plot(xs, [x[4] for x in p], "o--", color="C1", label="legit median extra time to delivery (s)")
            a2.set_ylabel("seconds")
            h1, l1 = ax[i].get_legend_handles_labels(); h2, l2 = a2.get_legend_handles_labels()
            ax[i].legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
            ax[i].set_title(f"{label}: n bots={p[0][5]}, n legit={p[0][6]} (light: 95 % CI)", fontsize=9)
        fig.tight_layout(); fig.savefig(os.path.join(A, fname), dpi=110); plt.close(fig)
        w(f"![trade-off, {label}](REPORT.assets/{fname})\n")

    def cost_table(tag, label):
        w(f"**{label}: cost of defence per 1 connection/s of arrivals** (Little's law: concurrent "
          "sockets = arrival rate × mean time held; memory = sockets × (relay state + mean peak "
          "buffer-pool bytes measured in the replay); held times under the patience models are "
          f"means over {len(seeds)} seeded draws, `none` is the upper bound where nobody leaves; the "
          "`ops90` draws keep the 4.9 % censored at 90 s connected, so their time held is an upper "
          "bound too)\n")
        w("| policy | n | sockets, none | sockets, ops90 / ops90-late / vendor10 | memory, none (KiB) | "
          "upstream conn-s per connection, none / ops90 |")
        w("|---|---|---|---|---|---|")
        none = collections.defaultdict(list)
        for r in S[tag]["greet"][1]:
            none[policy_value(r)].append(r)
        dr = collections.defaultdict(list)
        for r in S[tag]["cost"]:
            dr[(policy_value(r), r["patience_model"])].append(r)
        for d in GREET:
            rs = none[float(d)]
            held = statistics.mean(r["held_s"] for r in rs)
            mem = held * statistics.mean(r["relay_bytes"] + r["peak_pool_bytes"] for r in rs) / 1024
            dm = " / ".join(f"{statistics.mean(r['held_s'] for r in dr[(float(d), m)]):.1f}"
                            for m in ("ops90", "ops90-late", "vendor10"))
            up_o = statistics.mean(r["upstream_s"] for r in dr[(float(d), "ops90")])
            w(f"| greet_delay={d} | {len(rs)} | {held:.1f} | {dm} | {mem:.0f} | "
              f"{statistics.mean(r['upstream_s'] for r in rs):.2f} / {up_o:.2f} |")
        w("")
        g = collections.defaultdict(list)
        for r in S[tag]["mode"][1]:
            g[(r["policy"].split("=")[-1], "none")].append(r)
        for r in S[tag]["costmode"]:
            g[(r["policy"].split("=")[-1], r["patience_model"])].append(r)
        w(f"**{label}: upstream connection-seconds per connection, screen-first against "
          "pass-through** (greeting delay 6 s; screen-first opens the upstream only after MAIL)\n")
        w("| patience | n | pass-through | screen-first | saved per connection | saved per 1 connection/s (upstream sockets) |")
        w("|---|---|---|---|---|---|")
        for m in ("none", "ops90", "vendor10"):
            p = g[("passthrough", m)]
            s_ = g[("screen", m)]
            if not p or not s_:
                continue
            up, us = statistics.mean(r["upstream_s"] for r in p), statistics.mean(r["upstream_s"] for r in s_)
            w(f"| {m} | {len(p) // (1 if m == 'none' else len(seeds))} | {up:.2f} | {us:.2f} | {up - us:.2f} | {up - us:.2f} |")
        w("")

    w("### 2.2 Expected abandonment by delay\n")
    w("Give-ups at 0 s come from the captured servers' own latencies, which the upstream model "
      "reproduces (poc_tools' server sent its greeting 10 s after the SYN: a `vendor10` client "
      "leaves there only if its 10 s expiry beats a reply due at the same instant — the band "
      "shows both).\n")
    FILE_GROUPS = True
    giveup_tables("real", "Real captures", ["bot", "legit", "all"])
    w("### 2.3 Which clock runs out\n")
    clock_table("real", "Real captures", "bot")
    clock_table("real", "Real captures", "test")
    w("### 2.4 Bots against legitimate senders\n")
    tradeoff("real", "Real captures", "tradeoff-real.png")
    w("### 2.5 Cost of defence\n")
    cost_table("real", "Real captures")
    shape = S["real"]["shape"][1]
    nth = sum(1 for r in shape if "throttle" in r["policy"])
    nst = sum(1 for r in shape if "throttle" in r["policy"] and r["note"] == "client:script-end")
    w(f"Throttle check: {nst} of {nth} throttled replays stalled at stage data.\n")

    # ------------------------------------------------------------ synthetic
    w("## 3. SYNTHETIC corpus (pcap-replay/generated, made by tools/gen-traffic)\n")
    w("**Everything in this section is synthetic traffic.** `mixed-1000.pcap`: 1000 sessions, "
      "normal server, seven dialects; the sidecar gives each session's dialect (classes: "
      + ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(
          cls_synth(r) for r in S["synth"]["greet"][1] if policy_value(r) == 0).items()))
      + "). Its bootstrap resamples sessions (one file). The `km` row uses the KM of the "
      "synthetic tarpit corpora, i.e. the generator's own patience.\n")
    sc = json.load(open(os.path.join(a.generated, "tarpit-greet-10.pcap.json")))
    gu = sc["summary"]["by_dialect"]
    w("Ground truth: in `tarpit-greet-10.pcap` the generator's sidecar counts " +
      ", ".join(f"{k} {v['gave_up']}/{v['sessions']}" for k, v in gu.items() if v["sessions"]) +
      " gave up.\n")
    FILE_GROUPS = False
    giveup_tables("synth", "SYNTHETIC mixed-1000", ["bot", "legit", "all"])
    clock_table("synth", "SYNTHETIC mixed-1000", "bot")
    tradeoff("synth", "SYNTHETIC mixed-1000", "tradeoff-synth.png")
    cost_table("synth", "SYNTHETIC mixed-1000")
    FILE_GROUPS = True

    # ------------------------------------------------------------ rest
    import simlive
    simlive.write(D, w)
    SECTION4(S, CLS, w, A, a)
    w("## 6. Replay speed\n")
    w("`sluice-replay bench` (one core, CPU time; virtual clock, core in-process):\n")
    w("- real captures: `" + S["real"]["bench"] + "`")
    w("- SYNTHETIC mixed-1000: `" + S["synth"]["bench"] + "`\n")
    w("## 7. Limits of this evidence\n")
    w(f"- The real captures are a test set gathered from public repositories: {ccount['bot']} bot "
      f"sessions in {fcount['bot']} files, none under a tarpit and none with an observed "
      "impatient close. Every bot figure is the published patience models applied to the waits "
      "these sessions would meet; the captures cannot estimate how long bots wait.\n"
      "- With so few files the file-level bootstrap intervals are wide; they are the honest "
      "width, since sessions of one file share a client and a server.\n"
      "- The upstream is modelled from the capture (the captured reply to the same kind of "
      "command, with its captured latency); where the relay sends something the capture never "
      "answered a synthetic reply is used and counted (`synth_replies`).\n"
      "- Timestamps of several test captures are meaningless (SOURCES.md); waits over a day are "
      "excluded from the Kaplan–Meier input.\n")
    w("- The fuzzing figures (section 9) are three 75-minute runs on shared cores, not the "
      "24 h arms of the published comparison; their states are read from the relay's replies "
      "by `fuzz/tools/relay-states.py`, whose stage labels are an approximation (section 9).\n")
    w("## 8. Reproduce\n")
    w("```\ntools/report/make-report.sh [BUILD_DIR]\n```\n")
    w("It builds `sluice-replay`, runs the commands at the top of the script (a few minutes) and "
      "rewrites this file and `REPORT.assets/*.png`. The estimators are tested by "
      "`ctest -R replay_estimators`, the wait records and the tie rule by `ctest -R replay_sim`.\n")
    w("Section 9's figures come from committed data in `REPORT.assets/fuzz-over-time.*`, made "
      "by two commands (the first takes 75 minutes of wall time; the second a few minutes):\n")
    w("```\ntools/report/fuzz-over-time.sh start build-fuzz/over-time    # 3 runs, detached\n"
      "tools/report/fuzz-over-time.sh report build-fuzz/over-time   # after they end\n```\n")
    w("`start` builds the libFuzzer relay target, freezes it and the core revision, writes the "
      "seed-only corpus and launches the runs (`tools/report/fuzz-run-one.sh`); `report` "
      "builds a gcc coverage runner of that revision, replays every run's units in discovery "
      "order, counts core branches (lcov) and relay states (`fuzz/tools/relay-states.py`) at "
      "each sample, writes `REPORT.assets/fuzz-over-time.{tsv,json,png}` and triages the "
      "crashes into `REPORT.assets/fuzz-over-time-crashes.txt`; `make-report.sh` then writes "
      "the section from them (`tools/report/section9.py`).\n")
    import section9
    section9.write(w, A)
    open(a.out, "w").write("\n".join(out) + "\n")


def SECTION4(S, CLS, w, A, a):
    """Comparison with the published figures (filled in by section4.py when
    present)."""
    try:
        import section4
    except ImportError:
        return
    section4.write(S, CLS, w, A, a)


if __name__ == "__main__":
    main()
