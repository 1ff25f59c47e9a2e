/*
 * sd_gen.h: a configuration generation.
 *
 * A generation (sd_gen) is everything built from one parsed config: TLS
 * contexts, the DNS resolver, the upstream pool with its health checks, the
 * buffer pool and the per-client admission table.  Sessions hold a
 * reference to the generation they started with, because their relay points
 * into its policy and limits; SIGHUP builds a new generation for new
 * sessions and the old one is freed when its last session ends.
 *
 * A generation knows nothing of workers or sessions: what it needs of the
 * process that owns it comes in an sd_gen_host.
 */
#ifndef SD_GEN_H
#define SD_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "sd_config.h"
#include "sd_dns.h"
#include "sd_loop.h"
#include "sd_metrics.h"
#include "sd_pool.h"
#include "sd_tls.h"
#include "sd_upstream.h"
#include "sluice/relay.h"

typedef struct sd_gen sd_gen;

/* What generations use of their owner (a worker).  The owner keeps it,
   and everything it points to, alive as long as any generation it made. */
typedef struct sd_gen_host {
  sd_loop *loop;
  sd_gen **gens;          /* the owner's list of live generations */
  sd_pool_budget *budget; /* pool_memory across the owner's generations */
  const int *stop;        /* non-zero once the owner's loop has ended */
} sd_gen_host;

#define SD_DNS_FDS_MAX 16

typedef struct sd_dns_fd {
  sd_handler h;
  sd_gen *g;
  int fd;
  uint32_t events;
} sd_dns_fd;

struct sd_gen {
  int refs;
  sd_gen_host *host; /* NULL: no loop (--check-config) */
  sd_gen *next;      /* the host's list of live generations */
  sd_config *cfg;
  sd_tls_ctx *tls_server, *tls_client;
  sd_dns *dns;
  sd_dns_fd dnsfd[SD_DNS_FDS_MAX];
  sd_timer dns_timer;
  sd_upstreams *ups;
  sd_pool pool;
  sl_pool slpool;
  const char *server_names[SD_MAX_SERVERS];
};

/* Builds a generation from cfg (referenced) with one reference; host may
   be NULL (checking a config: nothing is registered in a loop).  Returns
   NULL with a message in err on failure. */
sd_gen *sd_gen_new(sd_gen_host *host, sd_config *cfg, char *err, size_t errlen);
sd_gen *sd_gen_ref(sd_gen *g);
/* Drops a reference; the last one frees the generation (deferred to the
   end of the loop iteration while the host's loop runs). */
void sd_gen_unref(sd_gen *g);

#endif
