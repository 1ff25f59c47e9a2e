/*
 * live: argument handling and output of the live replay (the engine is
 * src/live/sp_live.c; the client model it shares with sim is
 * src/sim/sp_client.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cli.h"
#include "sp_live.h"
#include "sp_sim.h"
#include "sp_simopts.h"

int sp_cmd_live(int argc, char **argv) {
  static sp_simopts o;
  memset(&o, 0, sizeof o);
  o.cfg.seed = 1;
  static const struct option longopts[] = {
      SP_SIMOPTS_LONG,
      {"connect", required_argument, 0, OPT_CONNECT},
      {"time-scale", required_argument, 0, OPT_TIMESCALE},
      {"concurrency", required_argument, 0, OPT_CONCURRENCY},
      {"time-limit", required_argument, 0, OPT_TIMELIMIT},
      {"netns", no_argument, 0, OPT_NETNS},
      {"arrivals", required_argument, 0, OPT_ARRIVALS},
      {"source", required_argument, 0, OPT_SOURCE},
      {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *target = NULL;
  double scale = 1.0, limit = 60.0;
  long conc = 100;
  int netns = 0, asap = 0, fixed_src = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "hq", longopts, NULL)) != -1) {
    int r = sp_simopts_option(&o, c, optarg);
    if (r < 0)
      return SP_EXIT_USAGE;
    if (r)
      continue;
    char *end = NULL;
    switch (c) {
    case OPT_CONNECT:
      target = optarg;
      break;
    case OPT_TIMESCALE:
      scale = strtod(optarg, &end);
      if (*end || !(scale >= 1e-4 && scale <= 1e4)) {
        fprintf(stderr, "sluice-replay: --time-scale: 0.0001..10000\n");
        return SP_EXIT_USAGE;
      }
      break;
    case OPT_CONCURRENCY:
      conc = strtol(optarg, &end, 10);
      if (*end || conc < 1 || conc > SP_LIVE_MAX_CONC) {
        fprintf(stderr, "sluice-replay: --concurrency: 1..%d\n",
                SP_LIVE_MAX_CONC);
        return SP_EXIT_USAGE;
      }
      break;
    case OPT_TIMELIMIT:
      limit = strtod(optarg, &end);
      if (*end || !(limit > 0 && limit <= 86400)) {
        fprintf(stderr, "sluice-replay: --time-limit: seconds, 0..86400\n");
        return SP_EXIT_USAGE;
      }
      break;
    case OPT_NETNS:
      netns = 1;
      break;
    case OPT_ARRIVALS:
      if (strcmp(optarg, "captured") && strcmp(optarg, "asap")) {
        fprintf(stderr, "sluice-replay: --arrivals: captured or asap\n");
        return SP_EXIT_USAGE;
      }
      asap = !strcmp(optarg, "asap");
      break;
    case OPT_SOURCE:
      if (strcmp(optarg, "per-client") && strcmp(optarg, "fixed")) {
        fprintf(stderr, "sluice-replay: --source: per-client or fixed\n");
        return SP_EXIT_USAGE;
      }
      fixed_src = !strcmp(optarg, "fixed");
      break;
    case 'q':
      o.quiet = 1;
      break;
    case 'h':
    default: {
      FILE *f = c == 'h' ? stdout : stderr;
      fprintf(f,
              "usage: sluice-replay live --connect ADDR:PORT [--time-scale F] "
              "[--concurrency N]\n       [--time-limit S] [--patience MODEL] "
              "[--jsonl FILE] [--csv FILE] [--netns]\n"
              "       [--arrivals captured|asap] [--source per-client|fixed] "
              "FILE...\n"
              "Replays the client sessions over TCP against a server on "
              "loopback (or, with\n--netns, any address inside a test network "
              "namespace).  Defaults: scale 1,\nconcurrency 100, time limit 60 "
              "s (wall clock, for the whole run), arrivals at their\ncaptured "
              "times (scaled), each captured client from its own 127.1.x.y "
              "address.\n");
      return c == 'h' ? SP_EXIT_OK : SP_EXIT_USAGE;
    }
    }
  }
  struct sockaddr_storage ss;
  socklen_t sslen = 0;
  if (!target || sp_live_parse_target(target, &ss, &sslen)) {
    fprintf(
        stderr,
        "sluice-replay: live needs --connect IP:PORT (IPv6 as [::1]:PORT)\n");
    return SP_EXIT_USAGE;
  }
  if (!sp_live_target_allowed(&ss, netns)) {
    fprintf(stderr,
            "sluice-replay: refusing to connect to %s: live replay only "
            "targets loopback addresses (127.0.0.0/8, ::1), or other addresses "
            "with --netns when running inside a test network namespace\n",
            target);
    return SP_EXIT_USAGE;
  }
  if (optind >= argc) {
    fprintf(stderr, "sluice-replay: live: no input files\n");
    return SP_EXIT_USAGE;
  }
  if (o.stream) {
    fprintf(stderr, "sluice-replay: --stream is for sim only\n");
    return SP_EXIT_USAGE;
  }
  int rc = sp_simopts_build(&o, argc - optind, argv + optind);
  if (rc) {
    sp_simopts_free(&o);
    return rc;
  }
  size_t n = o.set.n;
  sp_result *res = calloc(n ? n : 1, sizeof *res);
  if (!res) {
    fprintf(stderr, "sluice-replay: out of memory\n");
    sp_simopts_free(&o);
    return SP_EXIT_INPUT;
  }
  static char label[160];
  snprintf(label, sizeof label, "live:%s", target);
  sp_live_config lc;
  memset(&lc, 0, sizeof lc);
  lc.target = ss;
  lc.target_len = sslen;
  lc.label = label;
  lc.scale = scale;
  lc.limit_s = limit;
  lc.concurrency = conc;
  lc.asap = asap;
  lc.fixed_source = fixed_src;
  lc.clock_reply = o.cfg.clock_reply;
  lc.seed = o.cfg.seed;
  lc.patience = &o.pats[0];
  const sp_patience *pm = lc.patience;
  sp_live_stats st;
  int status = SP_EXIT_OK;
  int lr = sp_live_run(&lc, &o.set, res, &st);
  if (lr) {
    if (lr == -2) {
      fprintf(stderr, "sluice-replay: out of memory\n");
      free(res);
      sp_simopts_free(&o);
      return SP_EXIT_INPUT;
    }
    status = SP_EXIT_INPUT;
  }
  FILE *fj = o.jsonl ? fopen(o.jsonl, "w") : NULL;
  FILE *fc = o.csv ? fopen(o.csv, "w") : NULL;
  if ((o.jsonl && !fj) || (o.csv && !fc)) {
    fprintf(stderr, "sluice-replay: cannot write the output files\n");
    status = SP_EXIT_INPUT;
  }
  if (fc) {
    fprintf(fc,
            "# live replay against %s, time scale %g (times in capture "
            "seconds); delay_s = wait beyond the captured reply time\n",
            target, scale);
    sp_simopts_describe(&o, fc, "# ");
    sp_result_csv_header(fc, 0, NULL);
  }
  sp_summary sum;
  memset(&sum, 0, sizeof sum);
  for (size_t i = 0; i < n; i++) {
    if (!res[i].source)
      continue; /* not started before the time limit */
    sp_summary_add(&sum, &res[i]);
    if (fj)
      sp_result_write_jsonl(fj, &res[i]);
    if (fc)
      sp_result_write_csv(fc, &res[i], 0, NULL);
  }
  if (fj && fclose(fj))
    status = SP_EXIT_INPUT;
  if (fc && fclose(fc))
    status = SP_EXIT_INPUT;
  if (!o.quiet) {
    printf("sluice-replay live: %zu sessions against %s, time scale %g, %.2f s "
           "wall, "
           "arrivals %s, %zu started late (concurrency), %zu not started (time "
           "limit), "
           "sources %s\n",
           n, target, scale, st.wall_s, asap ? "asap" : "captured", st.late,
           st.not_started,
           st.per_client_sources ? "127.1.0.0 + k per client" : "kernel's");
    sp_simopts_describe(&o, stdout, "# ");
    sp_summary_print_header(stdout);
    sp_summary_print(stdout, label, pm->name, &sum);
  }
  free(res);
  sp_simopts_free(&o);
  return status;
}
