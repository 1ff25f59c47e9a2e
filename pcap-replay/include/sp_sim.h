/*
 * sp_sim.h: replaying client sessions through the sluice core in-process,
 * on a virtual clock, and the per-session result records shared with the
 * live replay.
 *
 * The clock jumps to the earliest of: the client's next write (sp_script
 * anchoring), the client's patience running out, the modelled upstream's
 * next reply, the relay's next deadline.  Nothing sleeps.  The same input,
 * policy, patience model and seed give the same records byte for byte.
 *
 * Client: writes as captured (sp_script.h); reads everything the relay
 * sends at once; waiting for a reply, it closes (abort) when no byte has
 * arrived for its patience (--patience-clock read, the default) or when a
 * reply has been awaited that long since its request (reply).
 * Tie rule: a reply (or any byte) that reaches the client at the very
 * instant its patience runs out is received first; the client gives up only
 * when its patience is strictly shorter than the wait (P(give up) = F(W-),
 * the left limit of the patience CDF at the wait W).  The report evaluates
 * point-mass models at both F(W-) and F(W) so that no figure rests on this
 * ordering.  Patience is rounded to the nearest nanosecond.
 * Upstream: "capture" answers each command the relay sends with the
 * captured reply to the same kind of command, after the captured server
 * latency (a synthetic 250/354/221 when the capture has none); "sink"
 * accepts everything after a fixed latency.
 */
#ifndef SP_SIM_H
#define SP_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sluice/relay.h"
#include "sp_patience.h"
#include "sp_policy.h"
#include "sp_script.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_SWEEP_MAX 8

typedef enum sp_outcome {
  SP_OUT_DELIVERED,
  SP_OUT_REJECTED,
  SP_OUT_GAVE_UP,
  SP_OUT_NO_MAIL,
  SP_OUT_ERROR,
  SP_OUT_N
} sp_outcome;
const char *sp_outcome_name(sp_outcome o);

typedef struct sp_dnsbl_answer {
  char ip[SP_ADDRSTRLEN];
  char zone[SP_ZONE_NAME_MAX];
  uint32_t a[SL_DNSBL_ANSWERS_MAX];
  uint8_t n;
} sp_dnsbl_answer;

typedef struct sp_dnsbl_table {
  sp_dnsbl_answer *v;
  size_t n;
} sp_dnsbl_table;

/* Lines "IP ZONE A-record..." ('#' comments); 0 or -1 + err (FILE:LINE). */
int sp_dnsbl_load(sp_dnsbl_table *t, const char *path, char *err,
                  size_t errlen);
void sp_dnsbl_free(sp_dnsbl_table *t);

typedef struct sp_sim_config {
  int upstream_sink;     /* 0: capture replies, 1: accept-all sink */
  double sink_latency_s; /* per reply (and connect) with the sink */
  int clock_reply;       /* patience clock: 0 since last byte, 1 since
                            the request */
  uint64_t seed;
  const sp_dnsbl_table *dnsbl;
} sp_sim_config;

/* One session under one policy and patience model. */
typedef struct sp_result {
  const char *source;
  uint64_t session;
  const char *client_ip;
  const char *policy;
  const char *patience_model;
  double patience_s; /* INFINITY: never */
  sp_outcome outcome;
  const char *gave_up_at; /* unit name awaited, "" unless gave up */
  const char *stage;      /* furthest stage the client saw succeed */
  const char *note;       /* why error / how the script ended */
  double held_s;          /* client connection open (virtual or real) */
  double captured_s;      /* the capture's duration */
  double delay_s;         /* tarpit delay suffered (sim: relay's count) */
  double deliver_s;       /* time of the first 2xx to a message, -1 */
  uint64_t bytes_client, bytes_server; /* sent / received by the client */
  uint32_t messages;                   /* messages the client saw accepted */
  uint32_t replies;                    /* complete replies the client got */
  double upstream_s;                   /* upstream connection-seconds */
  uint32_t synth_replies;              /* upstream replies the capture lacked */
  uint64_t relay_bytes;                /* sl_relay_size */
  uint64_t peak_pool_bytes; /* most pool memory the relay held at once */
  int32_t score;
  int tarpitted;
  /* The longest wait for a reply the client sat through, under each of the
   * three clocks a real client may run (INFINITY: a reply it waited for never
   * came).  Measured whatever the patience; with patience "none" they are the
   * waits the policy imposes, and a client with patience p under a clock
   * gives up iff p < that clock's wait (tie rule in sp_sim.h), so the
   * analysis computes expected give-up exactly as mean F(W-).
   *   read:    since the last byte sent or received (a per-read timeout)
   *   reply:   since the awaited request was sent (a per-reply timeout;
   *            RFC 5321 4.5.3.2 timeouts are per command)
   *   session: since the connection opened (a whole-session deadline) */
  double w_read, w_reply, w_session;
  /* The same per awaited unit (sp_unit_kind), for per-command timeouts. */
  double w_read_by[SP_U_NKINDS], w_reply_by[SP_U_NKINDS];
  /* Who refused a "rejected" session: "upstream" (its reply reached the
   * client), "sluice" (the relay ended the session with its own refusal:
   * admission, DNSBL, pre-greeting, framing), "timeout" (the relay's 421
   * after a client timeout); "" otherwise. */
  const char *reject_by;
  const char *cls; /* client class (--labels), "" if unknown */
  /* The swept settings of the policy (--sweep/--grid), numeric where the
   * value is a number or a duration (seconds), for numeric columns. */
  int nsweep;
  const char *sweep_key[SP_SWEEP_MAX];
  const char *sweep_text[SP_SWEEP_MAX];
  double sweep_num[SP_SWEEP_MAX]; /* NAN: not numeric */
} sp_result;

typedef struct sp_sim sp_sim;

/* A reusable simulator for one policy.  NULL on allocation failure. */
sp_sim *sp_sim_new(const sp_policy *pol, const sp_sim_config *cfg);
void sp_sim_free(sp_sim *sim);

/* Replays one script.  patience: seconds (INFINITY: never).  Fills res
 * (strings point into the script, the policy or static storage). */
int sp_sim_run(sp_sim *sim, const sp_script *s, double patience,
               sp_result *res);

/* Records. */
void sp_result_write_jsonl(FILE *f, const sp_result *r);
/* keys: the swept keys, one trailing column "sweep_<key>" each. */
void sp_result_csv_header(FILE *f, int nkeys, const char *const *keys);
void sp_result_write_csv(FILE *f, const sp_result *r, int nkeys,
                         const char *const *keys);

/* Summary per (policy, patience model). */
typedef struct sp_summary {
  uint64_t n, by[SP_OUT_N];
  double held, upstream, delay_delivered, deliver_time;
  uint64_t delivered_n;
} sp_summary;
void sp_summary_add(sp_summary *s, const sp_result *r);
void sp_summary_print_header(FILE *f);
void sp_summary_print(FILE *f, const char *policy, const char *patience,
                      const sp_summary *s);
/* --summary-csv: header (one "sweep_<key>" column per swept key) and one
 * line; rej: rejections by upstream, sluice, timeout; r: a record of the
 * policy, for its swept settings. */
void sp_summary_csv_header(FILE *f, int nkeys, const char *const *keys);
void sp_summary_write_csv(FILE *f, const char *policy, const char *model,
                          const char *cls, const sp_summary *sum,
                          const uint64_t rej[3], const sp_result *r, int nkeys,
                          const char *const *keys);

#ifdef __cplusplus
}
#endif
#endif
