/*
 * sp_session.h: from TCP segments to SMTP sessions.
 *
 * The tracker keeps a table of connections (4-tuple, both directions),
 * reassembles each direction with sp_reasm, decides which connections are
 * SMTP and which side is the client, and hands each SMTP session to the
 * caller as a sequence of transcript records (sp_transcript.h) through
 * callbacks.  Everything is a function of the segments fed in: the same
 * capture gives the same sessions, numbers and records.
 *
 * SMTP recognition: the server port is in the configured set, or the
 * content says so (one side's first bytes are a "220" greeting, or the other
 * starts with HELO/EHLO).  Roles, strongest evidence first: a SYN (its
 * sender is the client); the first bytes (a reply code means server, an
 * SMTP command or a TLS ClientHello means client); the port set; else the
 * sender of the first packet seen.  Until both are known the connection's
 * events are held (at most max_pending bytes, then the best guess is taken).
 * Connections to open proxies are followed: while a connection is undecided,
 * an HTTP "CONNECT" request and the proxy's "HTTP/1.x" reply are stripped up
 * to their blank line, and what follows is judged and transcribed.
 * A connection of which the capture holds neither a SYN nor any payload
 * (stray ACKs, resets) is never a session.
 *
 * TLS: a side whose very first byte is a TLS handshake record (0x16), or a
 * line starting with 0x16 after the client sent STARTTLS, ends the
 * transcript with E tls.  Sessions are numbered from 1 in the order they are
 * recognised as SMTP (port-matched connections with a SYN: the order of
 * their first packet).
 */
#ifndef SP_SESSION_H
#define SP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "sp_decode.h"
#include "sp_reasm.h"
#include "sp_transcript.h"
#include "sp_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SP_MAX_PORTS 64

typedef struct sp_tracker_config {
  uint16_t ports[SP_MAX_PORTS]; /* SMTP server ports */
  size_t n_ports;
  size_t max_ooo;          /* out-of-order bytes buffered per direction */
  size_t max_pending;      /* bytes held per connection before deciding */
  int64_t idle_timeout_us; /* a session idle this long (capture time) ends
                              with E capture-end; 0 = never */
} sp_tracker_config;

/* Ports 25, 465, 587, 2525; 1 MiB out-of-order; 64 KiB pending; 1 hour. */
void sp_tracker_config_default(sp_tracker_config *cfg);

/* Parses "25,587,2525" into cfg->ports.  SP_ERR_INVALID_ARGUMENT on a bad
 * list (empty item, not a number, 0, > 65535, more than SP_MAX_PORTS). */
int sp_tracker_config_ports(sp_tracker_config *cfg, const char *list);

typedef enum sp_tls_kind {
  SP_TLS_NONE,
  SP_TLS_IMPLICIT,
  SP_TLS_STARTTLS
} sp_tls_kind;

/* What a callback may read about a session.  Counters are up to date at
 * each callback. */
typedef struct sp_session {
  uint64_t number;
  sp_endpoint client, server;
  int64_t start_us;    /* absolute time of the connection's first packet */
  uint64_t packets[2]; /* by sp_side */
  uint64_t bytes[2];   /* payload delivered in records */
  uint64_t gaps[2], gap_bytes[2];
  char first_command[17]; /* first word of the client's first line */
  unsigned ends;          /* bit (1 << sp_end_reason) per E record */
  sp_tls_kind tls;
  int tunneled; /* an HTTP CONNECT proxy preamble was stripped */
  void *user;   /* for the callbacks */
} sp_session;

typedef struct sp_tracker_callbacks {
  /* The session is recognised and its roles known; records follow. */
  int (*begin)(void *ud, sp_session *s);
  /* One record, in order; the last one of a session is an E record. */
  int (*record)(void *ud, sp_session *s, const sp_record *rec);
  /* The session is over (after its final E record); s is freed after. */
  int (*finish)(void *ud, sp_session *s);
} sp_tracker_callbacks;

typedef struct sp_tracker_counters {
  uint64_t segments;        /* TCP segments fed */
  uint64_t connections;     /* 4-tuples seen (incl. reuse after close) */
  uint64_t sessions;        /* SMTP sessions recognised */
  uint64_t late_packets;    /* for connections already finished */
  uint64_t tls_packets;     /* of sessions after their E tls record */
  uint64_t undecided_bytes; /* held bytes dropped with non-SMTP connections */
  sp_reasm_stats reasm;     /* summed over SMTP sessions' directions */
} sp_tracker_counters;

typedef struct sp_tracker sp_tracker;

/* NULL on allocation failure.  cb members may be NULL. */
sp_tracker *sp_tracker_new(const sp_tracker_config *cfg,
                           const sp_tracker_callbacks *cb, void *ud);

/*
 * Feeds one segment (seg->ts_us set).  Returns 0, SP_ERR_NOMEM, or
 * SP_ERR_CALLBACK when a callback returned nonzero (the tracker can still be
 * finished and freed).
 */
int sp_tracker_packet(sp_tracker *t, const sp_tcp_segment *seg);

/* End of capture: every open session gets its remaining records and a final
 * E record, and is finished.  Same returns as sp_tracker_packet. */
int sp_tracker_finish(sp_tracker *t);

const sp_tracker_counters *sp_tracker_get_counters(const sp_tracker *t);

void sp_tracker_free(sp_tracker *t);

#ifdef __cplusplus
}
#endif
#endif
