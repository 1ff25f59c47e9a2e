/* sp_simopts.c: options shared by sim, bench and live; see sp_simopts.h. */
#include "sp_simopts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cli.h"

int sp_simopts_option(sp_simopts *o, int c, const char *arg) {
  char *end;
  switch (c) {
  case OPT_POLICY:
    if (o->npolicy_files >= SP_MAX_POLICIES)
      goto many;
    o->policy_files[o->npolicy_files++] = arg;
    return 1;
  case OPT_SET:
    if (o->nsets >= SP_MAX_SETS)
      goto many;
    o->sets[o->nsets++] = arg;
    return 1;
  case OPT_SWEEP:
    if (o->nsweeps >= SP_MAX_SETS)
      goto many;
    o->sweeps[o->nsweeps++] = arg;
    return 1;
  case OPT_PATIENCE:
    if (o->nmodels >= SP_MAX_MODELS)
      goto many;
    o->models[o->nmodels++] = arg;
    return 1;
  case OPT_CLOCK:
    if (!strcmp(arg, "read"))
      o->cfg.clock_reply = 0;
    else if (!strcmp(arg, "reply"))
      o->cfg.clock_reply = 1;
    else {
      fprintf(stderr, "sluice-replay: --patience-clock: read or reply\n");
      return -1;
    }
    return 1;
  case OPT_UPSTREAM:
    if (!strcmp(arg, "capture")) {
      o->cfg.upstream_sink = 0;
      return 1;
    }
    if (!strncmp(arg, "sink:", 5)) {
      sl_duration d;
      if (sp_parse_duration(arg + 5, &d) == 0) {
        o->cfg.upstream_sink = 1;
        o->cfg.sink_latency_s = (double)d / 1e9;
        return 1;
      }
    }
    fprintf(stderr, "sluice-replay: --upstream: capture or sink:LATENCY "
                    "(e.g. sink:20ms)\n");
    return -1;
  case OPT_DNSBL:
    o->dnsbl_file = arg;
    return 1;
  case OPT_SEED:
    errno = 0;
    o->cfg.seed = strtoull(arg, &end, 10);
    if (errno || !*arg || *end) {
      fprintf(stderr, "sluice-replay: --seed: not a number\n");
      return -1;
    }
    return 1;
  case OPT_JSONL:
    o->jsonl = arg;
    return 1;
  case OPT_CSV:
    o->csv = arg;
    return 1;
  case OPT_SUMMARY_CSV:
    o->summary_csv = arg;
    return 1;
  case OPT_PROGRESS:
    o->progress = 1;
    return 1;
  case OPT_KEEP_GOING:
    o->keep_going = 1;
    return 1;
  case OPT_GRID:
    o->grid = 1;
    return 1;
  case OPT_LABELS:
    o->labels = arg;
    return 1;
  case OPT_STREAM:
    o->stream = 1;
    return 1;
  default:
    return 0;
  }
many:
  fprintf(stderr, "sluice-replay: too many of that option\n");
  return -1;
}

static int apply_kv(sp_policy *p, const char *kv, const char *where) {
  char key[128], err[512];
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key) {
    fprintf(stderr, "sluice-replay: %s: expected KEY=VALUE, got \"%s\"\n",
            where, kv);
    return -1;
  }
  memcpy(key, kv, (size_t)(eq - kv));
  key[eq - kv] = '\0';
  if (sp_policy_set(p, key, eq + 1, where, err, sizeof err)) {
    fprintf(stderr, "sluice-replay: %s\n", err);
    return -1;
  }
  return 0;
}

static void add_key(sp_simopts *o, const char *k) {
  for (int i = 0; i < o->nsweep_keys; i++)
    if (!strcmp(o->sweep_keys[i], k))
      return;
  if (o->nsweep_keys >= SP_SWEEP_MAX)
    return;
  snprintf(o->sweep_key_buf[o->nsweep_keys], 64, "%.63s", k);
  o->sweep_keys[o->nsweep_keys] = o->sweep_key_buf[o->nsweep_keys];
  o->nsweep_keys++;
}

/* A number, or a duration with a unit (ms, s, m, h) in seconds; NAN else. */
static double sweep_number(const char *v) {
  char *end;
  double x = strtod(v, &end);
  if (end == v)
    return NAN;
  if (!*end)
    return x;
  sl_duration d;
  if (sp_parse_duration(v, &d) == 0)
    return (double)d / 1e9;
  return NAN;
}

static int set_sweep(sp_simopts *o, int p, int n, const char *const *keys,
                     const char *const *vals) {
  struct sp_polsweep *q = &o->psw[p];
  memset(q, 0, sizeof *q);
  for (int i = 0; i < n && i < SP_SWEEP_MAX; i++) {
    snprintf(q->key[i], sizeof q->key[i], "%s", keys[i]);
    snprintf(q->text[i], sizeof q->text[i], "%s", vals[i]);
    q->num[i] = sweep_number(vals[i]);
    q->n++;
  }
  return 0;
}

void sp_simopts_fill_sweep(const sp_simopts *o, int p, sp_result *r) {
  r->nsweep = 0;
  if (!o->psw || p < 0 || p >= o->npols)
    return;
  const struct sp_polsweep *q = &o->psw[p];
  for (int i = 0; i < q->n; i++) {
    r->sweep_key[i] = q->key[i];
    r->sweep_text[i] = q->text[i];
    r->sweep_num[i] = q->num[i];
  }
  r->nsweep = q->n;
}

/* --labels FILE: lines "SOURCE SESSION CLASS" or "SOURCE * CLASS" ('#'
 * comments); SOURCE is the capture's file name as in the records.  A
 * session line wins over a file line, a later line over an earlier one for
 * the same key.  At most 16 distinct classes.  Read into a sorted table
 * before any session, so --stream labels each session as it is read. */
static int rule_cmp(const void *pa, const void *pb) {
  const struct sp_label_rule *a = pa, *b = pb;
  int c = strcmp(a->source, b->source);
  if (c)
    return c;
  if (a->any != b->any)
    return a->any - b->any;
  if (a->session != b->session)
    return a->session < b->session ? -1 : 1;
  return a->line < b->line ? -1 : a->line > b->line;
}

static int read_labels(sp_simopts *o) {
  FILE *f = fopen(o->labels, "r");
  if (!f) {
    fprintf(stderr, "sluice-replay: %s: cannot open\n", o->labels);
    return -1;
  }
  char line[1024];
  unsigned lineno = 0;
  size_t cap = 0;
  int rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    char *h = strchr(line, '#');
    if (h)
      *h = '\0';
    char src[512], sess[32], cls[64];
    int n = sscanf(line, "%511s %31s %63s", src, sess, cls);
    if (n <= 0)
      continue;
    char *end = NULL;
    unsigned long long num = strtoull(sess, &end, 10);
    int any = !strcmp(sess, "*");
    if (n != 3 || (!any && (*end || end == sess)) || strlen(cls) >= 24) {
      fprintf(stderr,
              "sluice-replay: %s:%u: expected \"SOURCE SESSION|* CLASS\" "
              "(class at most 23 bytes)\n",
              o->labels, lineno);
      rc = -1;
      break;
    }
    int k = 0;
    while (k < o->nclasses && strcmp(o->classes[k], cls))
      k++;
    if (k == o->nclasses) {
      if (o->nclasses >= 16) {
        fprintf(stderr, "sluice-replay: %s:%u: more than 16 classes\n",
                o->labels, lineno);
        rc = -1;
        break;
      }
      snprintf(o->classes[o->nclasses++], 24, "%.23s", cls);
    }
    if (o->nlabel_rules == cap) {
      size_t nc = cap ? cap * 2 : 64;
      struct sp_label_rule *v = realloc(o->label_rules, nc * sizeof *v);
      if (!v) {
        rc = -1;
        break;
      }
      o->label_rules = v;
      cap = nc;
    }
    struct sp_label_rule *r = &o->label_rules[o->nlabel_rules];
    if (!(r->source = strdup(src))) {
      rc = -1;
      break;
    }
    r->any = any;
    r->session = any ? 0 : num;
    r->cls = k;
    r->line = lineno;
    o->nlabel_rules++;
  }
  if (ferror(f) && !rc) {
    fprintf(stderr, "sluice-replay: %s: read error\n", o->labels);
    rc = -1;
  }
  fclose(f);
  if (rc)
    return rc;
  qsort(o->label_rules, o->nlabel_rules, sizeof *o->label_rules, rule_cmp);
  /* one rule per key: the last line of each run of equal keys */
  size_t w = 0;
  for (size_t i = 0; i < o->nlabel_rules; i++) {
    struct sp_label_rule *r = &o->label_rules[i];
    if (w && !strcmp(o->label_rules[w - 1].source, r->source) &&
        o->label_rules[w - 1].any == r->any &&
        o->label_rules[w - 1].session == r->session) {
      free(o->label_rules[w - 1].source);
      o->label_rules[w - 1] = *r;
    } else {
      o->label_rules[w++] = *r;
    }
  }
  o->nlabel_rules = w;
  return 0;
}

static const struct sp_label_rule *
find_rule(const sp_simopts *o, const char *source, int any, uint64_t session) {
  if (any)
    session = 0;
  size_t lo = 0, hi = o->nlabel_rules;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const struct sp_label_rule *r = &o->label_rules[mid];
    int c = strcmp(source, r->source);
    if (!c && any != r->any)
      c = any - r->any;
    if (!c && session != r->session)
      c = session < r->session ? -1 : 1;
    if (!c)
      return r;
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

void sp_simopts_label(const sp_simopts *o, sp_script *s) {
  const struct sp_label_rule *r = find_rule(o, s->source, 0, s->session);
  if (!r)
    r = find_rule(o, s->source, 1, 0);
  snprintf(s->cls, sizeof s->cls, "%s", r ? o->classes[r->cls] : "");
}

static int add_pol(sp_simopts *o, const sp_policy *p) {
  sp_policy *v = realloc(o->pols, (size_t)(o->npols + 1) * sizeof *v);
  if (!v)
    return -1;
  o->pols = v;
  struct sp_polsweep *w = realloc(o->psw, (size_t)(o->npols + 1) * sizeof *w);
  if (!w)
    return -1;
  o->psw = w;
  memset(&o->psw[o->npols], 0, sizeof *w);
  o->pols[o->npols] = *p;
  sp_policy_fixup(&o->pols[o->npols]);
  char err[512];
  if (sp_policy_finish(&o->pols[o->npols], err, sizeof err)) {
    fprintf(stderr, "sluice-replay: %s\n", err);
    return -1;
  }
  o->npols++;
  return 0;
}

int sp_simopts_build(sp_simopts *o, int nfiles, char **files) {
  char err[768];
  /* Base policies: each file, or the default. */
  int nbase = o->npolicy_files ? o->npolicy_files : 1;
  for (int b = 0; b < nbase; b++) {
    sp_policy base;
    sp_policy_init(&base);
    if (o->npolicy_files &&
        sp_policy_load(&base, o->policy_files[b], err, sizeof err)) {
      fprintf(stderr, "sluice-replay: %s\n", err);
      return SP_EXIT_USAGE;
    }
    for (int i = 0; i < o->nsets; i++)
      if (apply_kv(&base, o->sets[i], "--set"))
        return SP_EXIT_USAGE;
    if (!o->nsweeps) {
      if (add_pol(o, &base))
        return SP_EXIT_USAGE;
      continue;
    }
    /* Each sweep's key and values. */
    struct {
      char key[64];
      char vals[64][64];
      int n;
    } sw[SP_SWEEP_MAX];
    int nsw = 0;
    for (int s = 0; s < o->nsweeps; s++) {
      const char *eq = strchr(o->sweeps[s], '=');
      if (!eq || eq == o->sweeps[s] || !eq[1] || eq - o->sweeps[s] >= 64) {
        fprintf(stderr, "sluice-replay: --sweep: expected KEY=V1,V2,...\n");
        return SP_EXIT_USAGE;
      }
      if (nsw >= SP_SWEEP_MAX) {
        fprintf(stderr, "sluice-replay: at most %d --sweep\n", SP_SWEEP_MAX);
        return SP_EXIT_USAGE;
      }
      snprintf(sw[nsw].key, sizeof sw[nsw].key, "%.*s",
               (int)(eq - o->sweeps[s]), o->sweeps[s]);
      sw[nsw].n = 0;
      char list[1024];
      snprintf(list, sizeof list, "%s", eq + 1);
      char *save = NULL;
      for (char *v = strtok_r(list, ",", &save); v;
           v = strtok_r(NULL, ",", &save)) {
        if (sw[nsw].n >= 64 || strlen(v) >= 64) {
          fprintf(stderr,
                  "sluice-replay: --sweep: at most 64 values of 63 bytes\n");
          return SP_EXIT_USAGE;
        }
        snprintf(sw[nsw].vals[sw[nsw].n++], 64, "%.63s", v);
      }
      add_key(o, sw[nsw].key);
      nsw++;
    }
    /* --grid: every combination; else one policy per value of each sweep. */
    long total = 1;
    if (o->grid)
      for (int s = 0; s < nsw; s++)
        total *= sw[s].n;
    else {
      total = 0;
      for (int s = 0; s < nsw; s++)
        total += sw[s].n;
    }
    for (long c = 0; c < total; c++) {
      if (o->npols >= SP_MAX_POLICIES) {
        fprintf(stderr, "sluice-replay: at most %d policies\n",
                SP_MAX_POLICIES);
        return SP_EXIT_USAGE;
      }
      const char *keys[SP_SWEEP_MAX], *vals[SP_SWEEP_MAX];
      int nkv = 0;
      if (o->grid) {
        long r = c;
        for (int s = nsw - 1; s >= 0; s--) {
          keys[s] = sw[s].key;
          vals[s] = sw[s].vals[r % sw[s].n];
          r /= sw[s].n;
        }
        nkv = nsw;
      } else {
        long r = c;
        int s = 0;
        while (r >= sw[s].n)
          r -= sw[s++].n;
        keys[0] = sw[s].key;
        vals[0] = sw[s].vals[r];
        nkv = 1;
      }
      sp_policy p = base;
      sp_policy_fixup(&p);
      char lab[sizeof p.label] = "";
      size_t ll = 0;
      for (int k = 0; k < nkv; k++) {
        char kv[160];
        snprintf(kv, sizeof kv, "%s=%s", keys[k], vals[k]);
        if (apply_kv(&p, kv, o->grid ? "--grid" : "--sweep"))
          return SP_EXIT_USAGE;
        ll += (size_t)snprintf(lab + ll, ll < sizeof lab ? sizeof lab - ll : 0,
                               "%s%s", k ? "," : "", kv);
        if (ll >= sizeof lab)
          ll = sizeof lab - 1;
      }
      if (o->npolicy_files)
        snprintf(p.label, sizeof p.label, "%.50s:%.70s", base.label, lab);
      else
        snprintf(p.label, sizeof p.label, "%.120s", lab);
      if (add_pol(o, &p) || set_sweep(o, o->npols - 1, nkv, keys, vals))
        return SP_EXIT_USAGE;
    }
  }
  if (o->dnsbl_file) {
    if (sp_dnsbl_load(&o->dnsbl, o->dnsbl_file, err, sizeof err)) {
      fprintf(stderr, "sluice-replay: %s\n", err);
      return SP_EXIT_USAGE;
    }
    o->cfg.dnsbl = &o->dnsbl;
  }
  if (o->labels && read_labels(o))
    return SP_EXIT_USAGE;
  for (int i = 0; i < nfiles && !o->stream; i++) {
    int rc = sp_simopts_load(o, files[i], i, nfiles);
    if (rc)
      return rc;
  }
  if (!o->nmodels)
    o->models[o->nmodels++] = "none";
  for (int i = 0; i < o->nmodels; i++) {
    if (sp_patience_parse(&o->pats[i], o->models[i], err, sizeof err)) {
      fprintf(stderr, "sluice-replay: %s\n", err);
      return SP_EXIT_USAGE;
    }
    o->npats++;
    if (o->pats[i].kind == SP_PAT_EMPIRICAL && o->stream) {
      fprintf(stderr,
              "sluice-replay: the empirical model needs every session "
              "first: not with --stream (write it with \"patience --csv\" and "
              "use km:FILE)\n");
      return SP_EXIT_USAGE;
    }
    if (o->pats[i].kind == SP_PAT_EMPIRICAL) {
      size_t n = o->set.n;
      sp_km_obs *obs = calloc(n ? n : 1, sizeof *obs);
      sp_km_row *rows = calloc(n ? n : 1, sizeof *rows);
      size_t k = 0;
      for (size_t j = 0; obs && rows && j < n; j++)
        if (o->set.v[j].server_seen) {
          obs[k].t = o->set.v[j].wait_s;
          obs[k++].event = o->set.v[j].gave_up;
        }
      size_t nr = obs && rows ? sp_km_estimate(obs, k, 1.96, rows) : 0;
      int bad = !obs || !rows || sp_patience_set_km(&o->pats[i], rows, nr);
      free(obs);
      free(rows);
      if (bad) {
        fprintf(stderr, "sluice-replay: out of memory\n");
        return SP_EXIT_INPUT;
      }
    }
  }
  return SP_EXIT_OK;
}

int sp_simopts_load(sp_simopts *o, const char *file, int i, int nfiles) {
  char err[768];
  size_t before = o->set.n + o->set.streamed;
  int rc = sp_script_load_file(&o->set, file, err, sizeof err);
  if (rc) {
    fprintf(stderr, "sluice-replay: %s\n", err);
    /* --keep-going: the sessions read before the damage stay, the other
     * files are still read, and the exit status reports the failure. */
    if (!o->keep_going || rc == SP_ERR_NOMEM)
      return rc == SP_ERR_IO ? SP_EXIT_USAGE : SP_EXIT_INPUT;
    o->failed_files++;
  }
  size_t now = o->set.n + o->set.streamed;
  /* --stream labels each session in its callback, before the replay */
  for (size_t k = before; k < o->set.n; k++)
    sp_simopts_label(o, &o->set.v[k]);
  if (o->progress)
    fprintf(stderr, "sluice-replay: [%d/%d] %s: %zu sessions%s (%zu in all)\n",
            i + 1, nfiles, file, now - before, rc ? ", damaged" : "", now);
  return SP_EXIT_OK;
}

void sp_simopts_free(sp_simopts *o) {
  free(o->pols);
  free(o->psw);
  for (int i = 0; i < o->npats; i++)
    sp_patience_free(&o->pats[i]);
  sp_dnsbl_free(&o->dnsbl);
  sp_script_set_free(&o->set);
  for (size_t i = 0; i < o->nlabel_rules; i++)
    free(o->label_rules[i].source);
  free(o->label_rules);
}

void sp_simopts_describe(const sp_simopts *o, FILE *f, const char *prefix) {
  fprintf(f,
          "%sclient model: each write at its captured think time after the "
          "reply it followed (pipelining and segment boundaries as captured); "
          "commands and reactions to 4xx/5xx as captured; the end (FIN/RST) "
          "anchored the same way\n",
          prefix);
  fprintf(f,
          "%spatience clock: %s; a client never waits for the reply to "
          "QUIT; one patience value per session, seed %llu\n",
          prefix,
          o->cfg.clock_reply ? "since the awaited request was sent (reply)"
                             : "since the last byte sent or received (read)",
          (unsigned long long)o->cfg.seed);
  for (int i = 0; i < o->npats; i++) {
    char d[400];
    sp_patience_describe(&o->pats[i], d, sizeof d);
    fprintf(f, "%spatience model %s = %s\n", prefix, o->pats[i].name, d);
  }
  if (o->cfg.upstream_sink)
    fprintf(f, "%supstream: accept-all sink, %.3f s per reply and connect\n",
            prefix, o->cfg.sink_latency_s);
  else
    fprintf(f,
            "%supstream: captured replies with captured latencies "
            "(synthetic 250/354/221 where the capture has none)\n",
            prefix);
  fprintf(f, "%sdnsbl answers: %s\n", prefix,
          o->dnsbl_file ? o->dnsbl_file : "none (not listed)");
}
