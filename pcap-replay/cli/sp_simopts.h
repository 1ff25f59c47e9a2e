/*
 * sp_simopts.h: what sim, bench and live share on the command line:
 * loading sessions, building the policy list (--policy, --set, --sweep),
 * the patience models and the description of the client model.
 */
#ifndef SP_SIMOPTS_H
#define SP_SIMOPTS_H

#include <stdio.h>

#include "sp_patience.h"
#include "sp_policy.h"
#include "sp_script.h"
#include "sp_sim.h"

#define SP_MAX_POLICIES 256
#define SP_MAX_MODELS 16
#define SP_MAX_SETS 64

typedef struct sp_simopts {
  const char *policy_files[SP_MAX_POLICIES];
  int npolicy_files;
  const char *sets[SP_MAX_SETS];
  int nsets;
  const char *sweeps[SP_MAX_SETS];
  int nsweeps;
  const char *models[SP_MAX_MODELS];
  int nmodels;
  sp_sim_config cfg;
  const char *dnsbl_file;
  const char *jsonl, *csv;
  int quiet;
  /* built */
  sp_policy *pols;
  int npols;
  sp_patience pats[SP_MAX_MODELS];
  int npats;
  sp_dnsbl_table dnsbl;
  sp_script_set set;
} sp_simopts;

/* Handles one shared option (getopt_long code c with optarg); returns 1 if
 * it was one, 0 if not, -1 on a bad value (message printed). */
int sp_simopts_option(sp_simopts *o, int c, const char *arg);
/* Loads files, builds policies and models.  Returns an SP_EXIT_* code. */
int sp_simopts_build(sp_simopts *o, int nfiles, char **files);
void sp_simopts_free(sp_simopts *o);
/* "# ..." lines describing the client, patience and upstream model. */
void sp_simopts_describe(const sp_simopts *o, FILE *f, const char *prefix);

/* Long-option codes shared by the commands. */
enum {
  OPT_POLICY = 1000, OPT_SET, OPT_SWEEP, OPT_PATIENCE, OPT_CLOCK, OPT_UPSTREAM,
  OPT_DNSBL, OPT_SEED, OPT_JSONL, OPT_CSV, OPT_REPEAT, OPT_TIMESCALE,
  OPT_CONCURRENCY, OPT_TIMELIMIT, OPT_CONNECT, OPT_NETNS, OPT_ARRIVALS,
  OPT_SOURCE
};

#define SP_SIMOPTS_LONG                                                       \
  {"policy", required_argument, 0, OPT_POLICY},                               \
  {"set", required_argument, 0, OPT_SET},                                     \
  {"sweep", required_argument, 0, OPT_SWEEP},                                 \
  {"patience", required_argument, 0, OPT_PATIENCE},                           \
  {"patience-clock", required_argument, 0, OPT_CLOCK},                        \
  {"upstream", required_argument, 0, OPT_UPSTREAM},                           \
  {"dnsbl-answers", required_argument, 0, OPT_DNSBL},                         \
  {"seed", required_argument, 0, OPT_SEED},                                   \
  {"jsonl", required_argument, 0, OPT_JSONL},                                 \
  {"csv", required_argument, 0, OPT_CSV}

#endif
