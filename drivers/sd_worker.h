/*
 * sd_worker.h: one worker process: its loop, listeners, the current
 * configuration generation (sd_gen.h) and the sessions (sd_conn.h).
 */
#ifndef SD_WORKER_H
#define SD_WORKER_H

#include <stdint.h>

#include "sd_config.h"
#include "sd_conn.h"
#include "sd_gen.h"
#include "sd_listen.h"
#include "sd_loop.h"
#include "sd_metrics.h"
#include "sd_pool.h"
#include "sd_state.h"

typedef struct sd_worker sd_worker;

typedef struct sd_listener {
  sd_handler h;
  sd_worker *w;
  int fd;
  sd_sockaddr addr;
  int tls, proxy;
  char text[80];
} sd_listener;

struct sd_worker {
  sd_loop *loop;
  uint32_t index;
  const char *config_path;
  sd_gen *gen;  /* current */
  sd_gen *gens; /* every live generation, current included */
  sd_listener *ls;
  size_t nls;
  int spare_fd; /* closed to accept-and-421 when accept() hits EMFILE */
  sd_timer accept_pause; /* listeners off for a moment when even that fails */
  sd_timer lease_renew;  /* state_backend = redis: sessions renew leases */
  uint64_t lease_every;  /* ns; from the start's redis_lease (the state's) */
  int accept_paused;
  sd_conns sessions; /* the sessions, their lingering closes, and what they
                        and their generations use of this worker */
  int sigfd;
  sd_handler sigh;
  int metrics_fd;
  sd_metrics_http *mh;
  int draining, stop;
  uint64_t drain_deadline;
  sd_guards *guards;     /* no master: this process holds the port guards,
                            reconfigures state and counts reloads itself */
  sd_pool_budget budget; /* pool_memory across this worker's generations */
};

/* The worker's main loop (sd_worker.c); returns the exit status. */
/* state: the shared per-machine state (may be NULL).  guards: non-NULL
   when there is no master process: the worker then keeps the port guards
   in step at reloads, reconfigures state and counts reloads itself. */
int sd_worker_run(const char *config_path, sd_config *cfg, uint32_t index,
                  int metrics_fd, sd_state *state, sd_guards *guards);

#endif
