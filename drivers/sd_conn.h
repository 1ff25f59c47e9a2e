/*
 * sd_conn.h: the sessions of one worker (sd_conn.c).
 *
 * What sessions use of their worker comes in an sd_conns, which the worker
 * embeds and fills once; sessions know nothing of the worker itself.  A
 * session holds a reference to the generation it started with, made with
 * &conns->gen_host as its host, so a session finds its sd_conns from its
 * generation and pays no pointer of its own for it.
 */
#ifndef SD_CONN_H
#define SD_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sd_gen.h"
#include "sd_linger.h"
#include "sd_loop.h"
#include "sd_pool.h"
#include "sd_state.h"

typedef struct sd_conn sd_conn;
typedef struct sd_pend sd_pend; /* a connection waiting for its admission */

typedef struct sd_conns {
  /* Set by the worker before the first session. */
  sd_gen_host gen_host; /* the host of every generation sessions use */
  sd_loop *loop;
  uint32_t index;     /* the worker's, for its metrics slots */
  uint64_t seed;      /* the worker's random seed (session ids, relay seeds) */
  sd_state *state;    /* per-machine state (admission table), may be NULL */
  sd_lingers lingers; /* closed sockets still being drained */
  /* This module's. */
  sd_conn *head; /* doubly linked */
  uint32_t n;
  sd_pend *pend_head; /* doubly linked; not in n (no relay yet) */
} sd_conns;

/* Takes fd, accepted on listener number `listener` of g's config (tls:
   implicit TLS; proxy: a PROXY header may come first), and starts a
   session on g, or refuses it. */
void sd_conn_accept(sd_conns *s, sd_gen *g, size_t listener, int tls, int proxy,
                    int fd, const struct sockaddr *peer, socklen_t peerlen);
/* Counts every admitted session in the shared table again (SIGUSR2 from
   the master, after another worker died holding counts). */
void sd_conn_hold_all(sd_conns *s);
/* Closes every connection still waiting for its admission (shutdown). */
void sd_conn_pending_free_all(sd_conns *s);
/* Ends a session at once (drain deadline passed); logs it. */
void sd_conn_abort(sd_conn *c, const char *why);
/* Writes a one-line reply (naming g's hostname; g may be NULL) and closes
   fd, for connections refused at accept. */
void sd_refuse(sd_conns *s, const sd_gen *g, int fd, int tls, const char *why);

#endif
