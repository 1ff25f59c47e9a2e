/*
 * sd_metrics.h: counters and histograms shared by every worker process (one
 * MAP_SHARED block created before fork, updated with atomic adds), and a
 * minimal HTTP/1.0 "GET /metrics" responder in OpenMetrics text format that
 * runs inside any worker's event loop.
 */
#ifndef SD_METRICS_H
#define SD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sd_loop.h"
#include "sluice/relay.h"

#define SD_MAX_WORKERS 256
#define SD_MAX_SERVERS 64
#define SD_HIST_BUCKETS 12
#define SD_MAX_FILTERS 16

enum sd_counter {
  SD_C_ACCEPTED,       /* connections accepted and given a relay */
  SD_C_REJECT_CAP,     /* 421 at the global connection cap */
  SD_C_REJECT_EMFILE,  /* 421 because accept() hit the fd limit */
  SD_C_REJECT_NOMEM,   /* 421 because no relay memory */
  SD_C_ADMIT_TARPIT,   /* per-IP limits: tarpitted from the start */
  SD_C_ADMIT_TEMPFAIL, /* per-IP limits: 421 greeting */
/* Sessions by sl_end_reason, SD_C_END_QUIT ...; SD_C_END_NONE counts those
   the driver ended itself (label "other"). */
#define SD_C_END_(name, value, text) SD_C_END_##name,
  SL_END_REASON_MAP(SD_C_END_)
#undef SD_C_END_
      SD_C_MSG_ACCEPTED,
  SD_C_MSG_REJECTED,
  SD_C_MSG_TEMPFAILED,
  SD_C_RCPT_ACCEPTED,
  SD_C_RCPT_RELAY_DENIED, /* refused by relay control */
  SD_C_CLIENT_IN,
  SD_C_CLIENT_OUT,
  SD_C_UP_IN,
  SD_C_UP_OUT,
  SD_C_PREGREET,
  SD_C_TARPITTED,
  SD_C_STARTTLS_INJECTION,
  SD_C_SMUGGLING,
  SD_C_DNS_LISTED,
  SD_C_DNS_NOTLISTED,
  SD_C_DNS_TIMEOUT,
  SD_C_DNS_ERROR,
  SD_C_TLS_CLIENT_OK,
  SD_C_TLS_CLIENT_FAIL,
  SD_C_TLS_UP_OK,
  SD_C_TLS_UP_FAIL,
/* Upstream failures by sl_upstream_failure, SD_C_UPFAIL_CONNECT ... */
#define SD_C_UPFAIL_(name, value, text) SD_C_UPFAIL_##name,
  SL_UPSTREAM_FAILURE_MAP(SD_C_UPFAIL_)
#undef SD_C_UPFAIL_
      SD_C_RELOADS,
  SD_C_RELOAD_FAILURES,
  /* shared state (sd_state.h): lookups answered by Redis, answered
     locally because Redis was over budget or down, and connection events */
  SD_C_STATE_SHARED,
  SD_C_STATE_TIMEOUT,
  SD_C_STATE_DOWN,
  SD_C_STATE_ERROR,
  SD_C_STATE_CONNECTS,
  SD_C_STATE_DISCONNECTS,
  SD_C_STATE_AUTH_FAILED, /* Redis refused AUTH (or wanted one not sent) */
  SD_C_STATE_TLS_FAILED,  /* TLS handshake to Redis failed */
  SD_C_SCREEN_PASS_OLD,   /* sessions that skipped screening (passed before) */
  SD_C_PROXY_PROBES, /* proxy listener: closed before any header (checks) */
  SD_C_COUNT
};

/* The counter of a session's end reason and of an upstream failure. */
static inline enum sd_counter sd_c_end(sl_end_reason e) {
  switch (e) {
#define SD_C_END_CASE_(name, value, text)                                      \
  case SL_END_##name:                                                          \
    return SD_C_END_##name;
    SL_END_REASON_MAP(SD_C_END_CASE_)
#undef SD_C_END_CASE_
  }
  return SD_C_END_NONE;
}
static inline enum sd_counter sd_c_upfail(sl_upstream_failure f) {
  switch (f) {
#define SD_C_UPFAIL_CASE_(name, value, text)                                   \
  case SL_UPFAIL_##name:                                                       \
    return SD_C_UPFAIL_##name;
    SL_UPSTREAM_FAILURE_MAP(SD_C_UPFAIL_CASE_)
#undef SD_C_UPFAIL_CASE_
  }
  return SD_C_UPFAIL_CONNECT;
}

enum sd_hist { SD_H_SESSION, SD_H_DELAY, SD_H_MSG_SIZE, SD_H_COUNT };

typedef struct sd_metrics {
  uint64_t c[SD_C_COUNT];
  uint64_t hist[SD_H_COUNT][SD_HIST_BUCKETS + 1]; /* last: +Inf */
  uint64_t hist_sum[SD_H_COUNT];                  /* in hist units */
  uint64_t hist_count[SD_H_COUNT];
  /* Per-worker gauges, summed when served. */
  uint64_t active[SD_MAX_WORKERS];
  uint64_t pool_bytes[SD_MAX_WORKERS];
  /* Per server of the current config (labels from the config). */
  uint64_t srv_connect_ok[SD_MAX_SERVERS], srv_connect_fail[SD_MAX_SERVERS];
  uint64_t srv_up[SD_MAX_SERVERS]; /* last state written by any worker */
  uint64_t start_unix;
  /* Content filters, by position in the current config (sd_filter.c):
     verdicts (accept change discard tempfail reject), failures (refused
     timeout garbage other) and the latency histogram (microseconds, the
     SD_H_SESSION bounds).  Names written by each generation. */
  char filter_name[SD_MAX_FILTERS][72];
  uint64_t nfilters;
  uint64_t flt_verdict[SD_MAX_FILTERS][5];
  uint64_t flt_fail[SD_MAX_FILTERS][4];
  uint64_t flt_hist[SD_MAX_FILTERS][SD_HIST_BUCKETS + 1];
  uint64_t flt_sum[SD_MAX_FILTERS];
} sd_metrics;

/* The shared block (call once before forking). */
sd_metrics *sd_metrics_init(void);
extern sd_metrics *sd_m;

static inline void sd_count(enum sd_counter c, uint64_t n) {
  if (sd_m)
    __atomic_fetch_add(&sd_m->c[c], n, __ATOMIC_RELAXED);
}
/* v in the histogram's unit: microseconds for times, bytes for sizes. */
void sd_observe(enum sd_hist h, uint64_t v);
void sd_gauge_set(uint64_t *slot, uint64_t v);
/* One filter's answer to one message: verdict (an sl_verdict, or -1 for a
   failure named by fail: "refused", "timeout", "garbage", ...) and its
   latency in microseconds. */
void sd_filter_observe(size_t filter, int verdict, const char *fail,
                       uint64_t us);
/* The labels of the filters of the config in force. */
void sd_metrics_filter_names(const char *const *names, size_t n);

/* Writes the OpenMetrics text into a malloc'ed buffer; names are the
   current upstream server names for labels. */
char *sd_metrics_render(size_t *len, const char *const *server_names,
                        size_t nservers);

/* The HTTP responder: a listening fd added to the loop; each request gets
   the text from render().  names_fn gives the labels at request time. */
typedef struct sd_metrics_http sd_metrics_http;
sd_metrics_http *sd_metrics_http_new(sd_loop *loop, int listen_fd,
                                     void (*names_fn)(void *arg,
                                                      const char *const **names,
                                                      size_t *n),
                                     void *arg);
void sd_metrics_http_free(sd_metrics_http *m);

#endif
