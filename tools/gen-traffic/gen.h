/*
 * gen.h: configuration, ground truth and the session simulator's interface.
 */
#ifndef GEN_GEN_H
#define GEN_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "pkt.h"
#include "rng.h"

enum dialect {
  D_MTA,
  D_MTA_HELO,
  D_BOT_PREGREET,
  D_BOT_PIPELINE,
  D_BOT_IMPATIENT,
  D_BOT_NOQUIT,
  D_BOT_HELO_FORMS,
  D_COUNT
};

extern const char *const dialect_names[D_COUNT];

enum dist_kind { DIST_FIXED, DIST_UNIFORM, DIST_EXP };

struct dist {
  enum dist_kind kind;
  double a, b; /* seconds: fixed a; uniform [a, b); exp mean a */
};

struct config {
  uint64_t sessions;
  double mix[D_COUNT]; /* normalised weights */
  uint64_t seed;
  int64_t start_us;
  double rate;
  struct addr server;
  uint16_t server_port;
  struct addr client_net;
  unsigned client_prefix;
  struct dist patience;     /* bot-impatient */
  struct dist bot_patience; /* every other bot */
  double mta_patience;      /* RFC 5321 4.5.3.2 command timeouts */
  double greet_delay, reply_delay;
  size_t message_size;
  double reject_rate;
  double giveup_rst;
  int linktype;
};

/* What happened in one session, as the capture's label. */
struct truth {
  enum dialect dialect;
  struct addr caddr;
  uint16_t cport;
  int64_t start_us, end_us;
  double rtt, patience;
  int gave_up;
  const char *stage; /* what the client was waiting for at the end */
  const char *end;   /* how it ended */
  unsigned rcpts, rcpts_rejected, messages;
  int pregreet, pipelined, helo_form;
};

typedef void (*emit_fn)(void *ctx, int64_t ts_us, const uint8_t *frame,
                        size_t len);

/* Simulates one session starting at truth->start_us between truth->caddr:
 * cport and the configured server; the dialect is truth->dialect.  Frames go
 * to emit (in any order: the caller sorts by time).  Returns 0, or -1 when
 * out of memory. */
int sim_session(const struct config *cfg, uint64_t index, struct truth *truth,
                emit_fn emit, void *ctx);

double dist_draw(const struct dist *d, struct rng *r);

#endif
