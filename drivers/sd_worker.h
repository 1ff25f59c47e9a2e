/*
 * sd_worker.h: one worker process: its loop, listeners, the current
 * configuration generation and the sessions.
 *
 * A generation (sd_gen) is everything built from one parsed config: TLS
 * contexts, the DNS resolver, the upstream pool with its health checks, the
 * buffer pool and the per-client admission table.  Sessions hold a
 * reference to the generation they started with, because their relay points
 * into its policy and limits; SIGHUP builds a new generation for new
 * sessions and the old one is freed when its last session ends.
 */
#ifndef SD_WORKER_H
#define SD_WORKER_H

#include <stdint.h>

#include "sd_config.h"
#include "sd_dns.h"
#include "sd_loop.h"
#include "sd_metrics.h"
#include "sd_pool.h"
#include "sd_tls.h"
#include "sd_upstream.h"
#include "sluice/ratelim.h"
#include "sluice/relay.h"

typedef struct sd_worker sd_worker;
typedef struct sd_conn sd_conn;

#define SD_DNS_FDS_MAX 16

typedef struct sd_dns_fd {
  sd_handler h;
  struct sd_gen *g;
  int fd;
  uint32_t events;
} sd_dns_fd;

typedef struct sd_gen {
  int refs;
  sd_worker *w;
  struct sd_gen *next; /* the worker's list of live generations */
  sd_config *cfg;
  sd_tls_ctx *tls_server, *tls_client;
  sd_dns *dns;
  sd_dns_fd dnsfd[SD_DNS_FDS_MAX];
  sd_timer dns_timer;
  sd_upstreams *ups;
  sd_pool pool;
  sl_pool slpool;
  sl_ratelim *rl;
  void *rl_mem;
  const char *server_names[SD_MAX_SERVERS];
} sd_gen;

typedef struct sd_listener {
  sd_handler h;
  sd_worker *w;
  int fd;
  sd_sockaddr addr;
  int tls, proxy;
  char text[80];
} sd_listener;

typedef struct sd_linger sd_linger;

struct sd_worker {
  sd_loop *loop;
  uint32_t index;
  const char *config_path;
  sd_gen *gen;   /* current */
  sd_gen *gens;  /* every live generation, current included */
  sd_listener *ls;
  size_t nls;
  int spare_fd;  /* closed to accept-and-421 when accept() hits EMFILE */
  sd_timer accept_pause; /* listeners off for a moment when even that fails */
  int accept_paused;
  uint32_t nconns;
  sd_conn *conns; /* doubly linked */
  uint32_t nlinger;
  sd_linger *lingers;
  int sigfd;
  sd_handler sigh;
  int metrics_fd;
  sd_metrics_http *mh;
  int draining, stop;
  uint64_t drain_deadline;
  uint64_t seed;
};

/* Generations. */
sd_gen *sd_gen_new(sd_worker *w, sd_config *cfg, char *err, size_t errlen);
sd_gen *sd_gen_ref(sd_gen *g);
void sd_gen_unref(sd_gen *g);

/* Sessions (sd_conn.c). */
void sd_conn_accept(sd_worker *w, sd_listener *l, int fd, const struct sockaddr *peer,
                    socklen_t peerlen);
/* Ends a session at once (drain deadline passed); logs it. */
void sd_conn_abort(sd_conn *c, const char *why);
/* Writes a one-line reply and closes fd, for connections refused at accept. */
void sd_refuse(sd_worker *w, int fd, int tls, const char *why);
/* Lingering close: shut our side, read and drop what the peer still sends
   for a short while, then close, so a final reply is not destroyed by a
   RST (nginx's lingering_close). */
void sd_linger_close(sd_worker *w, int fd);
void sd_linger_free_all(sd_worker *w);

/* 1 (the default): this worker counts its SIGHUP reloads in
   sluice_config_reloads_total.  A master sets it to 0 in the workers it
   forks and counts each reload once itself. */
extern int sd_worker_counts_reloads;

/* The worker's main loop (sd_worker.c); returns the exit status. */
int sd_worker_run(const char *config_path, sd_config *cfg, uint32_t index, int metrics_fd);

#endif
