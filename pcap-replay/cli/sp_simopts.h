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
  const char *jsonl, *csv, *summary_csv, *labels;
  int quiet;
  int progress;   /* --progress: a line per file and per 1000 sessions */
  int keep_going; /* --keep-going: a damaged file does not stop the run */
  int grid;       /* --grid: sweeps combine as a cartesian product */
  int stream;     /* --stream: sim replays each session as it is read */
  int failed_files;
  /* built */
  sp_policy *pols;
  int npols;
  /* per policy: the swept settings (numeric columns) */
  struct sp_polsweep {
    int n;
    char key[SP_SWEEP_MAX][64], text[SP_SWEEP_MAX][64];
    double num[SP_SWEEP_MAX];
  } * psw;
  const char *sweep_keys[SP_SWEEP_MAX]; /* distinct swept keys, in order */
  char sweep_key_buf[SP_SWEEP_MAX][64];
  int nsweep_keys;
  /* distinct classes of the loaded sessions (--labels), for summaries */
  char classes[16][24];
  int nclasses;
  /* --labels rules, read before any session so that --stream can label
     each one as it is read; sorted by (source, file line last, session),
     one rule per key (the last line wins) */
  struct sp_label_rule {
    char *source; /* the capture's file name as in the records */
    int any;      /* "SOURCE * CLASS": every session of the file */
    uint64_t session;
    int cls; /* index into classes */
    unsigned line;
  } * label_rules;
  size_t nlabel_rules;
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
/* Loads one input file into o->set (progress, --keep-going); an SP_EXIT_*
 * code, with *failed set when --keep-going let a damaged file pass. */
int sp_simopts_load(sp_simopts *o, const char *file, int i, int nfiles);
/* Sets s->cls from the --labels rules: its session's line, else its
 * file's "*" line, else "" (unknown). */
void sp_simopts_label(const sp_simopts *o, sp_script *s);
/* Copies policy p's swept settings into a result (for the records). */
void sp_simopts_fill_sweep(const sp_simopts *o, int p, sp_result *r);
/* "# ..." lines describing the client, patience and upstream model. */
void sp_simopts_describe(const sp_simopts *o, FILE *f, const char *prefix);

/* Long-option codes shared by the commands. */
enum {
  OPT_POLICY = 1000,
  OPT_SET,
  OPT_SWEEP,
  OPT_PATIENCE,
  OPT_CLOCK,
  OPT_UPSTREAM,
  OPT_DNSBL,
  OPT_SEED,
  OPT_JSONL,
  OPT_CSV,
  OPT_REPEAT,
  OPT_TIMESCALE,
  OPT_CONCURRENCY,
  OPT_TIMELIMIT,
  OPT_CONNECT,
  OPT_NETNS,
  OPT_ARRIVALS,
  OPT_SOURCE,
  OPT_PROGRESS,
  OPT_KEEP_GOING,
  OPT_GRID,
  OPT_SUMMARY_CSV,
  OPT_LABELS,
  OPT_STREAM
};

#define SP_SIMOPTS_LONG                                                        \
  {"policy", required_argument, 0, OPT_POLICY},                                \
      {"set", required_argument, 0, OPT_SET},                                  \
      {"sweep", required_argument, 0, OPT_SWEEP},                              \
      {"patience", required_argument, 0, OPT_PATIENCE},                        \
      {"patience-clock", required_argument, 0, OPT_CLOCK},                     \
      {"upstream", required_argument, 0, OPT_UPSTREAM},                        \
      {"dnsbl-answers", required_argument, 0, OPT_DNSBL},                      \
      {"seed", required_argument, 0, OPT_SEED},                                \
      {"jsonl", required_argument, 0, OPT_JSONL},                              \
      {"csv", required_argument, 0, OPT_CSV},                                  \
      {"summary-csv", required_argument, 0, OPT_SUMMARY_CSV},                  \
      {"progress", no_argument, 0, OPT_PROGRESS},                              \
      {"keep-going", no_argument, 0, OPT_KEEP_GOING},                          \
      {"grid", no_argument, 0, OPT_GRID},                                      \
      {"labels", required_argument, 0, OPT_LABELS}, {                          \
    "stream", no_argument, 0, OPT_STREAM                                       \
  }

#endif
