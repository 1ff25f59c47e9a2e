/*
 * sd_upstream.h: the pool of upstream servers of one configuration
 * generation: balancing (smooth weighted round-robin, nginx style, or
 * least-connections), per-attempt failover (a session never retries a
 * server it already tried), passive health (consecutive connect failures)
 * and active health checks (connect, banner, EHLO, QUIT on an interval, as a
 * small non-blocking SMTP client).
 */
#ifndef SD_UPSTREAM_H
#define SD_UPSTREAM_H

#include <stdint.h>

#include "sd_config.h"
#include "sd_loop.h"

typedef struct sd_upstreams sd_upstreams;

typedef struct sd_server {
  sd_upstreams *owner;
  const sd_upstream_cfg *cfg;
  uint32_t index;
  int64_t cur_weight; /* smooth WRR state */
  uint32_t active;    /* sessions using it now */
  int up;             /* 1 healthy, 0 down */
  uint32_t fails;     /* consecutive failures (passive or active) */
  uint32_t oks;       /* consecutive active successes while down */
  uint64_t down_since;
  uint64_t picks, connect_failures;
  /* active health check */
  sd_handler h;
  sd_timer timer;
  int fd;
  int hc_state;
  char hc_buf[1024];
  uint32_t hc_len;
  uint32_t hc_sent;
  uint32_t hc_rlen; /* bytes of the last complete reply in hc_buf */
  /* what its last health-check EHLO offered (guarantee 8) */
  int caps_known;
  uint32_t caps;      /* sl_feature bits */
  uint64_t caps_size; /* its SIZE, 0: none given */
} sd_server;

struct sd_upstreams {
  sd_server *s;
  uint32_t n;
  int balance;
  uint32_t rise, fall;
  uint64_t interval, timeout, down_retry;
  const char *hostname;
  int identity;     /* sl_identity: PROXY upstreams need a header first */
  int implicit_tls; /* TLS from the first byte: checks stop at connect */
  int starttls;     /* sessions STARTTLS upstream when it is offered */
  sd_loop *loop;    /* NULL: no active checks (unit tests) */
  int checking;     /* active checks are on (here or in another worker) */
  int checker;      /* this process runs them */
};

/* Builds the pool from c (which must outlive it).  loop may be NULL. */
sd_upstreams *sd_upstreams_new(const sd_config *c, sd_loop *loop);
void sd_upstreams_free(sd_upstreams *u);

/* Starts / stops active health checks (needs a loop and an interval).
   Checks run once per machine: in the worker where run_here is set
   (worker 0); the others read its verdicts, and their own passive marks,
   from the shared metrics block (sd_m->srv_up), so a server is up or
   down for every worker at once. */
void sd_upstreams_start_checks(sd_upstreams *u, int run_here);
void sd_upstreams_stop_checks(sd_upstreams *u);

/*
 * Chooses a server for a connection attempt, skipping those whose bit is set
 * in *tried (and sets the chosen one's bit).  Healthy servers first; when
 * none is left untried, a down server that is untried (its state may be
 * stale); NULL when every server was tried.
 */
sd_server *sd_upstream_pick(sd_upstreams *u, uint64_t *tried, uint64_t now);

void sd_upstream_acquire(sd_server *s); /* a session uses s */
void sd_upstream_release(sd_server *s);
/* Passive health: a connect (or TLS/greeting) outcome for s. */
void sd_upstream_report(sd_server *s, int ok, uint64_t now);

/*
 * What the healthy pool can take, for screen-first's EHLO reply
 * (sl_conn_info.pool_features/pool_size): the sl_feature bits every healthy
 * server offered at its last health check, and the lowest SIZE among them
 * (0: none).  Returns 1, or 0 when that is not known (no active checks, a
 * healthy server not checked yet or checked only to its TLS connect, no
 * healthy server): the relay then offers what the policy allows and
 * downgrades per session.
 */
int sd_upstreams_features(const sd_upstreams *u, uint32_t *features,
                          uint64_t *size);

#endif
