/* sp_result.c: the per-session records (JSON Lines, CSV) and the summary
 * table shared by sim and live; see sp_sim.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sp_sim.h"

/* ---- records ------------------------------------------------------------ */

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

static void fmt_pat(char *b, size_t n, double p) {
  if (isinf(p))
    snprintf(b, n, "inf");
  else
    snprintf(b, n, "%.3f", p);
}

/* Waits: seconds, or the string "inf" (JSON has no infinity). */
static void json_wait(FILE *f, const char *key, double v) {
  if (isinf(v))
    fprintf(f, ",\"%s\":\"inf\"", key);
  else
    fprintf(f, ",\"%s\":%.6f", key, v);
}

static void json_wait_by(FILE *f, const char *key, const double *v) {
  fprintf(f, ",\"%s\":{", key);
  int first = 1;
  for (int k = 0; k < SP_U_NKINDS; k++) {
    if (!(v[k] > 0))
      continue;
    fprintf(f, "%s\"%s\":", first ? "" : ",", sp_unit_name((sp_unit_kind)k));
    if (isinf(v[k]))
      fputs("\"inf\"", f);
    else
      fprintf(f, "%.6f", v[k]);
    first = 0;
  }
  fputc('}', f);
}

void sp_result_write_jsonl(FILE *f, const sp_result *r) {
  char pat[32];
  fmt_pat(pat, sizeof pat, r->patience_s);
  fputs("{\"source\":", f);
  json_str(f, r->source);
  fprintf(f, ",\"session\":%llu,\"client\":", (unsigned long long)r->session);
  json_str(f, r->client_ip);
  fputs(",\"policy\":", f);
  json_str(f, r->policy);
  fputs(",\"patience_model\":", f);
  json_str(f, r->patience_model ? r->patience_model : "");
  fprintf(f,
          ",\"patience_s\":%s%s%s,\"outcome\":\"%s\",\"gave_up_at\":\"%s\","
          "\"stage\":\"%s\",\"note\":",
          isinf(r->patience_s) ? "\"" : "", pat,
          isinf(r->patience_s) ? "\"" : "", sp_outcome_name(r->outcome),
          r->gave_up_at, r->stage);
  json_str(f, r->note ? r->note : "");
  fprintf(f,
          ",\"held_s\":%.6f,\"captured_s\":%.6f,\"delay_s\":%.6f,"
          "\"deliver_s\":%.6f,\"bytes_client\":%llu,\"bytes_server\":%llu,"
          "\"messages\":%u,\"replies\":%u,\"upstream_s\":%.6f,"
          "\"synth_replies\":%u,\"relay_bytes\":%llu,\"peak_pool_bytes\":%llu,"
          "\"score\":%d,\"tarpitted\":%d",
          r->held_s, r->captured_s, r->delay_s, r->deliver_s,
          (unsigned long long)r->bytes_client,
          (unsigned long long)r->bytes_server, r->messages, r->replies,
          r->upstream_s, r->synth_replies, (unsigned long long)r->relay_bytes,
          (unsigned long long)r->peak_pool_bytes, r->score, r->tarpitted);
  json_wait(f, "w_read", r->w_read);
  json_wait(f, "w_reply", r->w_reply);
  json_wait(f, "w_session", r->w_session);
  json_wait_by(f, "w_read_by", r->w_read_by);
  json_wait_by(f, "w_reply_by", r->w_reply_by);
  fputs(",\"reject_by\":", f);
  json_str(f, r->reject_by ? r->reject_by : "");
  fputs(",\"class\":", f);
  json_str(f, r->cls ? r->cls : "");
  fputs(",\"sweep\":{", f);
  for (int i = 0; i < r->nsweep; i++) {
    if (i)
      fputc(',', f);
    json_str(f, r->sweep_key[i]);
    fputc(':', f);
    if (isnan(r->sweep_num[i]))
      json_str(f, r->sweep_text[i]);
    else
      fprintf(f, "%.9g", r->sweep_num[i]);
  }
  fputs("}}\n", f);
}

void sp_result_csv_header(FILE *f, int nkeys, const char *const *keys) {
  fputs("source,session,client,policy,patience_model,patience_s,outcome,"
        "gave_up_at,stage,note,held_s,captured_s,delay_s,deliver_s,"
        "bytes_client,bytes_server,messages,replies,upstream_s,synth_replies,"
        "relay_bytes,peak_pool_bytes,score,tarpitted,w_read,w_reply,w_session,"
        "reject_by,class",
        f);
  for (int i = 0; i < nkeys; i++)
    fprintf(f, ",sweep_%s", keys[i]);
  fputc('\n', f);
}

static void csv_str(FILE *f, const char *s) {
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

void sp_result_write_csv(FILE *f, const sp_result *r, int nkeys,
                         const char *const *keys) {
  char pat[32];
  fmt_pat(pat, sizeof pat, r->patience_s);
  csv_str(f, r->source);
  fprintf(f, ",%llu,", (unsigned long long)r->session);
  csv_str(f, r->client_ip);
  fputc(',', f);
  csv_str(f, r->policy);
  fputc(',', f);
  csv_str(f, r->patience_model ? r->patience_model : "");
  fprintf(f, ",%s,%s,%s,%s,", pat, sp_outcome_name(r->outcome), r->gave_up_at,
          r->stage);
  csv_str(f, r->note ? r->note : "");
  fprintf(f, ",%.6f,%.6f,%.6f,%.6f,%llu,%llu,%u,%u,%.6f,%u,%llu,%llu,%d,%d",
          r->held_s, r->captured_s, r->delay_s, r->deliver_s,
          (unsigned long long)r->bytes_client,
          (unsigned long long)r->bytes_server, r->messages, r->replies,
          r->upstream_s, r->synth_replies, (unsigned long long)r->relay_bytes,
          (unsigned long long)r->peak_pool_bytes, r->score, r->tarpitted);
  fprintf(f, ",%.6f,%.6f,%.6f,%s,", r->w_read, r->w_reply, r->w_session,
          r->reject_by ? r->reject_by : "");
  csv_str(f, r->cls ? r->cls : "");
  /* one numeric (or text) column per swept key; empty if not swept here */
  for (int k = 0; k < nkeys; k++) {
    fputc(',', f);
    for (int i = 0; i < r->nsweep; i++)
      if (!strcmp(r->sweep_key[i], keys[k])) {
        if (isnan(r->sweep_num[i]))
          csv_str(f, r->sweep_text[i]);
        else
          fprintf(f, "%.9g", r->sweep_num[i]);
        break;
      }
  }
  fputc('\n', f);
}

void sp_summary_add(sp_summary *s, const sp_result *r) {
  s->n++;
  s->by[r->outcome]++;
  s->held += r->held_s;
  s->upstream += r->upstream_s;
  if (r->outcome == SP_OUT_DELIVERED) {
    s->delivered_n++;
    s->delay_delivered += r->delay_s;
    s->deliver_time += r->deliver_s;
  }
}

void sp_summary_print_header(FILE *f) {
  fprintf(f, "%-28s %-12s %6s %9s %9s %9s %9s %6s %10s %10s %9s\n", "policy",
          "patience", "n", "delivered", "rejected", "gave-up", "no-mail",
          "error", "sock-s", "upstream-s", "delay/dlv");
}

void sp_summary_print(FILE *f, const char *policy, const char *patience,
                      const sp_summary *s) {
  double n = s->n ? (double)s->n : 1;
  fprintf(f,
          "%-28.28s %-12.12s %6llu %4llu %3.0f%% %4llu %3.0f%% %4llu %3.0f%% "
          "%4llu %3.0f%% %6llu %10.1f %10.1f %9.2f\n",
          policy, patience, (unsigned long long)s->n,
          (unsigned long long)s->by[SP_OUT_DELIVERED],
          100.0 * (double)s->by[SP_OUT_DELIVERED] / n,
          (unsigned long long)s->by[SP_OUT_REJECTED],
          100.0 * (double)s->by[SP_OUT_REJECTED] / n,
          (unsigned long long)s->by[SP_OUT_GAVE_UP],
          100.0 * (double)s->by[SP_OUT_GAVE_UP] / n,
          (unsigned long long)s->by[SP_OUT_NO_MAIL],
          100.0 * (double)s->by[SP_OUT_NO_MAIL] / n,
          (unsigned long long)s->by[SP_OUT_ERROR], s->held, s->upstream,
          s->delivered_n ? s->delay_delivered / (double)s->delivered_n : 0.0);
}

/* --summary-csv: one line per policy, patience model and class, with the
 * policy's swept settings (taken from r, a record of that policy). */
void sp_summary_csv_header(FILE *f, int nkeys, const char *const *keys) {
  fputs("policy,patience_model,class,n,delivered,rejected,rejected_upstream,"
        "rejected_sluice,rejected_timeout,gave_up,completed_without_mail,"
        "error,held_s,upstream_s",
        f);
  for (int k = 0; k < nkeys; k++)
    fprintf(f, ",sweep_%s", keys[k]);
  fputc('\n', f);
}

void sp_summary_write_csv(FILE *f, const char *policy, const char *model,
                          const char *cls, const sp_summary *sum,
                          const uint64_t rej[3], const sp_result *r, int nkeys,
                          const char *const *keys) {
  fputs(policy, f);
  fprintf(f, ",%s,%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.6f,%.6f",
          model, cls, (unsigned long long)sum->n,
          (unsigned long long)sum->by[SP_OUT_DELIVERED],
          (unsigned long long)sum->by[SP_OUT_REJECTED],
          (unsigned long long)rej[0], (unsigned long long)rej[1],
          (unsigned long long)rej[2],
          (unsigned long long)sum->by[SP_OUT_GAVE_UP],
          (unsigned long long)sum->by[SP_OUT_NO_MAIL],
          (unsigned long long)sum->by[SP_OUT_ERROR], sum->held, sum->upstream);
  for (int k = 0; k < nkeys; k++) {
    fputc(',', f);
    for (int j = 0; j < r->nsweep; j++)
      if (!strcmp(r->sweep_key[j], keys[k])) {
        if (isnan(r->sweep_num[j]))
          fputs(r->sweep_text[j], f);
        else
          fprintf(f, "%.9g", r->sweep_num[j]);
      }
  }
  fputc('\n', f);
}
