/*
 * sim, patience and bench: captured client sessions through the sluice
 * core in-process on a virtual clock (sp_sim.h), the Kaplan-Meier estimate
 * of client patience from captures (sp_km.h), and the replay speed.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_cli.h"
#include "sp_client.h"
#include "sp_km.h"
#include "sp_sim.h"
#include "sp_simopts.h"

static FILE *open_out(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f)
    fprintf(stderr, "sluice-replay: %s: cannot write\n", path);
  return f;
}

typedef struct simacc {
  sp_summary sum, csum[16];
  uint64_t rej[3], crej[16][3]; /* upstream, sluice, timeout */
  sp_result last;
} simacc;

typedef struct simctx {
  sp_simopts *o;
  sp_sim **sims;
  simacc *acc;
  FILE *fj, *fc;
  size_t done, total;
} simctx;

/* One session under model m and policy p: record and summaries. */
static int replay_one(simctx *X, const sp_script *s, int m, int p) {
  sp_simopts *o = X->o;
  double pat = sp_client_draw_patience(&o->pats[m], o->cfg.seed, s);
  sp_result res;
  if (sp_sim_run(X->sims[p], s, pat, &res)) {
    fprintf(stderr, "sluice-replay: out of memory\n");
    return SP_EXIT_INPUT;
  }
  res.patience_model = o->pats[m].name;
  sp_simopts_fill_sweep(o, p, &res);
  simacc *a = &X->acc[(size_t)m * (size_t)o->npols + (size_t)p];
  sp_summary_add(&a->sum, &res);
  int rk = !strcmp(res.reject_by, "sluice")    ? 1
           : !strcmp(res.reject_by, "timeout") ? 2
                                               : 0;
  if (res.outcome == SP_OUT_REJECTED)
    a->rej[rk]++;
  for (int k = 0; k < o->nclasses; k++)
    if (!strcmp(o->classes[k], s->cls)) {
      sp_summary_add(&a->csum[k], &res);
      if (res.outcome == SP_OUT_REJECTED)
        a->crej[k][rk]++;
    }
  a->last = res;
  a->last.source = a->last.client_ip = a->last.stage = a->last.note =
      ""; /* s may go */
  a->last.cls = "";
  if (X->fj)
    sp_result_write_jsonl(X->fj, &res);
  if (X->fc)
    sp_result_write_csv(X->fc, &res, o->nsweep_keys, o->sweep_keys);
  if (o->progress && ++X->done % 1000 == 0) {
    if (X->total)
      fprintf(stderr,
              "sluice-replay: %zu of %zu replays (policy %s, patience %s)\n",
              X->done, X->total, o->pols[p].label, o->pats[m].name);
    else
      fprintf(stderr, "sluice-replay: %zu replays\n", X->done);
  }
  return 0;
}

static int stream_one(void *ud, sp_script *s) {
  simctx *X = ud;
  sp_simopts_label(X->o, s);
  for (int m = 0; m < X->o->npats; m++)
    for (int p = 0; p < X->o->npols; p++)
      if (replay_one(X, s, m, p))
        return SP_ERR_NOMEM;
  return 0;
}

static void sim_usage(FILE *f) {
  fprintf(
      f, "usage: sluice-replay sim [OPTIONS] FILE...\n"
         "Replays each client session of FILEs (captures or transcripts) "
         "through the core\non a virtual clock.\n"
         "  --policy FILE        policy in sluiced.conf format (repeatable: "
         "one run each)\n"
         "  --set KEY=VALUE      override a policy key (repeatable)\n"
         "  --sweep KEY=V1,V2..  one policy per value (repeatable), e.g.\n"
         "                       --sweep greet_delay=0,2,6,10,21,45,100\n"
         "  --patience MODEL     none, fixed:S, exp:MEAN, uniform:A:B, ops90, "
         "ops90-late, "
         "vendor10,\n"
         "                       captured, empirical, km:FILE.csv "
         "(repeatable; default none)\n"
         "  --patience-clock read|reply   (default read)\n"
         "  --upstream capture|sink:LATENCY   (default capture)\n"
         "  --dnsbl-answers FILE lines \"IP ZONE A-record...\"\n"
         "  --seed N             patience draws and relay jitter (default 1)\n"
         "  --grid               combine the sweeps as a cartesian product\n"
         "  --jsonl FILE, --csv FILE   one record per session and policy\n"
         "                       (swept values as numeric columns)\n"
         "  --summary-csv FILE   one line per policy and patience model (and "
         "class)\n"
         "  --labels FILE        client classes: lines \"SOURCE SESSION|* "
         "CLASS\"\n"
         "  --progress           a line per file and per 1000 sessions on "
         "stderr\n"
         "  --keep-going         a damaged file does not stop the run (its "
         "sessions read\n"
         "                       before the damage stay; exit status 1)\n"
         "  --stream             replay each session as soon as it is read and "
         "free it\n"
         "                       (memory bounded by open sessions; records "
         "grouped by session)\n"
         "  -q                   no summary table\n");
}

int sp_cmd_sim(int argc, char **argv) {
  static sp_simopts o;
  memset(&o, 0, sizeof o);
  o.cfg.seed = 1;
  static const struct option longopts[] = {
      SP_SIMOPTS_LONG, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
    int r = sp_simopts_option(&o, c, optarg);
    if (r < 0)
      return SP_EXIT_USAGE;
    if (r)
      continue;
    if (c == 'h') {
      sim_usage(stdout);
      return SP_EXIT_OK;
    }
    if (c == 'q') {
      o.quiet = 1;
      continue;
    }
    sim_usage(stderr);
    return SP_EXIT_USAGE;
  }
  if (optind >= argc) {
    sim_usage(stderr);
    return SP_EXIT_USAGE;
  }
  int rc = sp_simopts_build(&o, argc - optind, argv + optind);
  if (rc) {
    sp_simopts_free(&o);
    return rc;
  }
  FILE *fj = NULL, *fc = NULL;
  if ((o.jsonl && !(fj = open_out(o.jsonl))) ||
      (o.csv && !(fc = open_out(o.csv)))) {
    sp_simopts_free(&o);
    return SP_EXIT_INPUT;
  }
  if (fc) {
    sp_simopts_describe(&o, fc, "# ");
    sp_result_csv_header(fc, o.nsweep_keys, o.sweep_keys);
  }
  if (fj) {
    fputs("{\"model\":\"", fj);
    /* the description as one JSON string, lines joined with "; " */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m) {
      sp_simopts_describe(&o, m, "");
      fclose(m);
      for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (ch == '\n')
          fputs(i + 1 < len ? "; " : "", fj);
        else if (ch == '"' || ch == '\\')
          fprintf(fj, "\\%c", ch);
        else
          fputc(ch, fj);
      }
      free(buf);
    }
    fprintf(fj, "\",\"sessions\":%zu,\"policies\":%d,\"patience_models\":%d}\n",
            o.set.n, o.npols, o.npats);
  }
  if (!o.quiet) {
    printf("sluice-replay sim: %zu sessions, %d policies, %d patience models\n",
           o.set.n, o.npols, o.npats);
    sp_simopts_describe(&o, stdout, "# ");
    sp_summary_print_header(stdout);
  }
  FILE *fs = NULL;
  if (o.summary_csv) {
    fs = open_out(o.summary_csv);
    if (!fs) {
      if (fj)
        fclose(fj);
      if (fc)
        fclose(fc);
      sp_simopts_free(&o);
      return SP_EXIT_INPUT;
    }
    sp_simopts_describe(&o, fs, "# ");
    sp_summary_csv_header(fs, o.nsweep_keys, o.sweep_keys);
  }
  int status = SP_EXIT_OK;
  /* Accumulators per (model, policy) and one simulator per policy. */
  size_t ncell = (size_t)o.npats * (size_t)o.npols;
  simacc *acc = calloc(ncell ? ncell : 1, sizeof *acc);
  sp_sim **sims = calloc((size_t)o.npols, sizeof *sims);
  for (int p = 0; sims && p < o.npols; p++)
    if (!(sims[p] = sp_sim_new(&o.pols[p], &o.cfg)))
      status = SP_EXIT_INPUT;
  if (!acc || !sims || status) {
    fprintf(stderr, "sluice-replay: out of memory\n");
    status = SP_EXIT_INPUT;
  }
  simctx X = {&o, sims, acc, fj, fc, 0, 0};
  if (!status && o.stream) {
    /* --stream: every session through every policy and model as soon as
     * it is read, then freed (records grouped by session). */
    o.set.on_script = stream_one;
    o.set.ud = &X;
    for (int i = optind; i < argc && !status; i++)
      status = sp_simopts_load(&o, argv[i], i - optind + 1 - 1, argc - optind);
  } else if (!status) {
    X.total = o.set.n * ncell;
    for (int m = 0; m < o.npats && !status; m++)
      for (int p = 0; p < o.npols && !status; p++)
        for (size_t i = 0; i < o.set.n && !status; i++)
          status = replay_one(&X, &o.set.v[i], m, p);
  }
  for (int m = 0; m < o.npats && !status; m++)
    for (int p = 0; p < o.npols; p++) {
      simacc *a = &acc[(size_t)m * (size_t)o.npols + (size_t)p];
      if (fs) {
        sp_simopts_fill_sweep(&o, p, &a->last);
        for (int k = -1; k < o.nclasses; k++)
          sp_summary_write_csv(
              fs, o.pols[p].label, o.pats[m].name, k < 0 ? "all" : o.classes[k],
              k < 0 ? &a->sum : &a->csum[k], k < 0 ? a->rej : a->crej[k],
              &a->last, o.nsweep_keys, o.sweep_keys);
      }
      if (!o.quiet)
        sp_summary_print(stdout, o.pols[p].label, o.pats[m].name, &a->sum);
    }
  for (int p = 0; sims && p < o.npols; p++)
    sp_sim_free(sims[p]);
  free(sims);
  free(acc);
  if (fj && fclose(fj))
    status = SP_EXIT_INPUT;
  if (fc && fclose(fc))
    status = SP_EXIT_INPUT;
  if (fs && fclose(fs))
    status = SP_EXIT_INPUT;
  if (!status && o.failed_files) {
    fprintf(stderr,
            "sluice-replay: %d damaged file(s); the results hold the "
            "sessions read before the damage\n",
            o.failed_files);
    status = SP_EXIT_INPUT;
  }
  sp_simopts_free(&o);
  return status;
}

/* ---- patience ----------------------------------------------------------- */

int sp_cmd_patience(int argc, char **argv) {
  static const struct option longopts[] = {{"csv", required_argument, 0, 'c'},
                                           {"obs", required_argument, 0, 'o'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  const char *csv = NULL, *obsf = NULL;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    if (c == 'c')
      csv = optarg;
    else if (c == 'o')
      obsf = optarg;
    else {
      FILE *f = c == 'h' ? stdout : stderr;
      fprintf(f,
              "usage: sluice-replay patience [--csv KM.csv] [--obs OBS.csv] "
              "FILE...\nKaplan-Meier survival of the time clients waited for a "
              "reply before giving up\n(censored: sessions that did not give "
              "up waited at least their longest wait).\n");
      return c == 'h' ? SP_EXIT_OK : SP_EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "usage: sluice-replay patience [--csv KM.csv] FILE...\n");
    return SP_EXIT_USAGE;
  }
  sp_script_set set = {0};
  char err[768];
  for (int i = optind; i < argc; i++) {
    int rc = sp_script_load_file(&set, argv[i], err, sizeof err);
    if (rc) {
      fprintf(stderr, "sluice-replay: %s\n", err);
      sp_script_set_free(&set);
      return rc == SP_ERR_IO ? SP_EXIT_USAGE : SP_EXIT_INPUT;
    }
  }
  sp_km_obs *obs = calloc(set.n ? set.n : 1, sizeof *obs);
  sp_km_row *rows = calloc(set.n ? set.n : 1, sizeof *rows);
  if (!obs || !rows) {
    free(obs);
    free(rows);
    sp_script_set_free(&set);
    return SP_EXIT_INPUT;
  }
  FILE *fo = obsf ? open_out(obsf) : NULL;
  if (fo)
    fprintf(fo, "source,session,client,wait_s,event,waiting_for\n");
  size_t n = 0, events = 0, skipped = 0;
  for (size_t i = 0; i < set.n; i++) {
    const sp_script *s = &set.v[i];
    if (!s->server_seen) {
      skipped++;
      continue;
    }
    obs[n].t = s->wait_s;
    obs[n].event = s->gave_up;
    events += (size_t)s->gave_up;
    n++;
    if (fo)
      fprintf(fo, "%s,%llu,%s,%.6f,%d,%s\n", s->source,
              (unsigned long long)s->session, s->client_ip, s->wait_s,
              s->gave_up, s->gave_up ? sp_unit_name(s->gave_up_waiting) : "");
  }
  size_t nr = sp_km_estimate(obs, n, 1.96, rows);
  printf("sluice-replay patience: %zu sessions (%zu without server side "
         "skipped), %zu gave up while waiting (events), %zu censored\n",
         n, skipped, events, n - events);
  printf("time waiting for a reply before giving up: Kaplan-Meier, Greenwood "
         "95%% CI (plain, clipped)\n");
  printf("%10s %8s %7s %9s %9s %8s %8s %8s\n", "time_s", "at_risk", "events",
         "censored", "survival", "se", "lower95", "upper95");
  for (size_t i = 0; i < nr; i++)
    printf("%10.3f %8u %7u %9u %9.4f %8.4f %8.4f %8.4f\n", rows[i].t,
           rows[i].at_risk, rows[i].events, rows[i].censored, rows[i].s,
           rows[i].se, rows[i].lo, rows[i].hi);
  if (!nr)
    printf("(no events: every observation is censored; S(t) = 1 up to the "
           "longest wait, %.3f s)\n",
           n ? obs[n - 1].t : 0.0);
  int status = SP_EXIT_OK;
  if (csv) {
    FILE *f = open_out(csv);
    if (!f)
      status = SP_EXIT_INPUT;
    else {
      sp_km_write_csv(f, rows, nr);
      if (fclose(f))
        status = SP_EXIT_INPUT;
    }
  }
  if (fo && fclose(fo))
    status = SP_EXIT_INPUT;
  free(obs);
  free(rows);
  sp_script_set_free(&set);
  return status;
}

/* ---- bench -------------------------------------------------------------- */

int sp_cmd_bench(int argc, char **argv) {
  static sp_simopts o;
  memset(&o, 0, sizeof o);
  o.cfg.seed = 1;
  static const struct option longopts[] = {
      SP_SIMOPTS_LONG,
      {"repeat", required_argument, 0, OPT_REPEAT},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  long repeat = 0;
  double min_secs = 1.0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    int r = sp_simopts_option(&o, c, optarg);
    if (r < 0)
      return SP_EXIT_USAGE;
    if (r)
      continue;
    if (c == OPT_REPEAT) {
      repeat = strtol(optarg, NULL, 10);
      if (repeat < 1 || repeat > 100000000) {
        fprintf(stderr, "sluice-replay: --repeat: 1..100000000\n");
        return SP_EXIT_USAGE;
      }
      continue;
    }
    FILE *f = c == 'h' ? stdout : stderr;
    fprintf(f,
            "usage: sluice-replay bench [--repeat N] [sim policy options] "
            "FILE...\nReplays the sessions N times (default: as many times as "
            "fit in ~1 s) through the\ncore on one core and prints "
            "sessions/s.\n");
    return c == 'h' ? SP_EXIT_OK : SP_EXIT_USAGE;
  }
  if (optind >= argc) {
    fprintf(stderr, "usage: sluice-replay bench [--repeat N] FILE...\n");
    return SP_EXIT_USAGE;
  }
  if (o.stream) {
    fprintf(stderr, "sluice-replay: --stream is for sim only\n");
    return SP_EXIT_USAGE;
  }
  int rc = sp_simopts_build(&o, argc - optind, argv + optind);
  if (rc || !o.set.n) {
    if (!rc)
      fprintf(stderr, "sluice-replay: no sessions\n");
    sp_simopts_free(&o);
    return rc ? rc : SP_EXIT_INPUT;
  }
  sp_sim *sim = sp_sim_new(&o.pols[0], &o.cfg);
  if (!sim) {
    sp_simopts_free(&o);
    return SP_EXIT_INPUT;
  }
  double *pat = calloc(o.set.n, sizeof *pat);
  for (size_t i = 0; pat && i < o.set.n; i++)
    pat[i] = sp_client_draw_patience(&o.pats[0], o.cfg.seed, &o.set.v[i]);
  struct timespec a, b;
  uint64_t done = 0, delivered = 0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
  double el = 0;
  for (long r = 0; pat && (repeat ? r < repeat : el < min_secs); r++) {
    for (size_t i = 0; i < o.set.n; i++) {
      sp_result res;
      sp_sim_run(sim, &o.set.v[i], pat[i], &res);
      delivered += res.outcome == SP_OUT_DELIVERED;
      done++;
    }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    el = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  }
  printf("bench: %zu sessions x %llu = %llu replays (%llu delivered) in %.3f s "
         "CPU: %.0f sessions/s on one core (policy %s, patience %s)\n",
         o.set.n, (unsigned long long)(o.set.n ? done / o.set.n : 0),
         (unsigned long long)done, (unsigned long long)delivered, el,
         el > 0 ? (double)done / el : 0.0, o.pols[0].label, o.pats[0].name);
  free(pat);
  sp_sim_free(sim);
  sp_simopts_free(&o);
  return SP_EXIT_OK;
}
