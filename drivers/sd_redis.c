/*
 * sd_redis.c: the Redis state backend (see sd_state.h).
 *
 * Every answer starts from the shm part (this machine's own table, the
 * "local verdict"), then asks Redis, where the counts of every instance
 * meet:
 * - admission: one Lua script per new session trims expired leases from
 *   the prefix's sorted set (scored by expiry, server clock), counts the
 *   live ones and the recent attempts, judges them as sl_ratelim does, adds
 *   the session's lease unless the verdict is tempfail, and tells whether
 *   the client passed screening before.  Atomic server-side, one round
 *   trip.  Live sessions renew their leases every third of redis_lease;
 *   an instance that dies stops renewing and its counts expire.
 * - the screening pass cache: SET key 1 EX ttl, read by the admission
 *   script;
 * - greylisting: one script mirroring sd_state_grey_decide().
 *
 * One connection per worker process, pipelined: commands queue in a fixed
 * output buffer and are written once per loop iteration; replies come back
 * in order and are matched with a fixed ring of pending requests.  RESP2 is
 * spoken by the core's pure codec (sluice/resp.h).  A request not answered
 * within redis_timeout gets the local verdict at once (its late reply is
 * read and dropped); a connection that fails, or whose oldest reply is
 * overdue by REDIS_STALL, is closed and made again with backoff.  Nothing
 * blocks the loop: connect, read and write are non-blocking.
 *
 * Across machines (README "Redis across machines: AUTH and TLS"): with
 * redis_tls the socket is wrapped by sd_tls (the OpenSSL code the
 * listeners and the upstream leg use), its handshake driven by the loop
 * like the connect; the server's certificate is always verified (a Redis
 * reachable by others that is not checked gives away the limits and the
 * password).  With a password, AUTH is the first command of every
 * connection, pipelined ahead of the SCRIPT LOADs: one round trip.  A
 * refused AUTH is an error of its own (logged as one, counted), and the
 * connection is closed and re-made with backoff like a lost one, so the
 * sessions meanwhile get local verdicts.  The password is read at start,
 * before privileges are dropped, and kept for the reconnections.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd_config.h"
#include "sd_log.h"
#include "sd_loop.h"
#include "sd_metrics.h"
#include "sd_state.h"
#include "sd_tls.h"
#include "sluice/errors.h"
#include "sluice/resp.h"

#define RING 4096            /* pending replies per connection */
#define OUT_CAP (256 * 1024) /* queued command bytes */
#define IN_CAP (SL_RESP_BULK_MAX + 4 * SL_RESP_LINE_MAX)
#define BACKOFF_MIN (100 * SL_MSEC)
#define BACKOFF_MAX (5 * SL_SEC)
#define REDIS_STALL (2 * SL_SEC) /* the oldest reply this late: reconnect */
#define KEY_MAX (SD_STATE_KEY_MAX + 128)
#define SECRET_MAX 1024              /* AUTH password bytes */
#define AUTH_LOG_EVERY (60 * SL_SEC) /* a refused AUTH repeats with backoff */

/* The scripts, loaded at each connect (SCRIPT LOAD), run by EVALSHA. */
static const char admit_lua[] =
    "local t=redis.call('TIME') "
    "local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000) "
    "local cmax,rmax,win=tonumber(ARGV[3]),tonumber(ARGV[4]),tonumber(ARGV[5]) "
    "redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf',now) "
    "local live=redis.call('ZCARD',KEYS[1]) "
    "local v=0 "
    "if cmax>0 and live>=cmax then v=math.max(v,tonumber(ARGV[6])) end "
    "local rate=0 "
    "if rmax>0 then "
    " redis.call('ZREMRANGEBYSCORE',KEYS[2],'-inf',now-win) "
    " rate=redis.call('ZCARD',KEYS[2]) "
    " if rate>=rmax then v=math.max(v,tonumber(ARGV[7])) end "
    " redis.call('ZADD',KEYS[2],now,ARGV[1]) "
    /* the attempts kept are bounded: only whether rmax is reached matters */
    " redis.call('ZREMRANGEBYRANK',KEYS[2],0,-(rmax+2)) "
    " redis.call('PEXPIRE',KEYS[2],win) "
    "end "
    "if v~=2 then "
    " redis.call('ZADD',KEYS[1],now+tonumber(ARGV[2]),ARGV[1]) "
    " redis.call('PEXPIRE',KEYS[1],ARGV[2]) "
    "end "
    "return {v,live,rate,redis.call('EXISTS',KEYS[3])}";

static const char renew_lua[] =
    "local t=redis.call('TIME') "
    "local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000) "
    "redis.call('ZADD',KEYS[1],now+tonumber(ARGV[2]),ARGV[1]) "
    "redis.call('PEXPIRE',KEYS[1],ARGV[2]) "
    "return 1";

static const char grey_lua[] =
    "local now=tonumber(redis.call('TIME')[1]) "
    "local delay,retry,maxage,auto=tonumber(ARGV[1]),tonumber(ARGV[2]),"
    "tonumber(ARGV[3]),tonumber(ARGV[4]) "
    "local passes=tonumber(redis.call('GET',KEYS[1]) or '0') "
    "if auto>0 and passes>=auto then "
    " redis.call('EXPIRE',KEYS[1],maxage) return {3,0,passes} end "
    "local e=redis.call('HMGET',KEYS[2],'first','passed') "
    "if not e[1] then "
    " redis.call('HSET',KEYS[2],'first',now,'passed',0) "
    " redis.call('EXPIRE',KEYS[2],delay+retry) return {0,delay,passes} end "
    "if e[2]=='1' then redis.call('EXPIRE',KEYS[2],maxage) return {2,0,passes} "
    "end "
    "local age=now-tonumber(e[1]) "
    "if age<delay then return {1,delay-age,passes} end "
    "redis.call('HSET',KEYS[2],'passed',1) "
    "redis.call('EXPIRE',KEYS[2],maxage) "
    "passes=redis.call('INCR',KEYS[1]) "
    "redis.call('EXPIRE',KEYS[1],maxage) "
    "return {2,0,passes}";

enum { S_ADMIT, S_RENEW, S_GREY, S_NSCRIPTS };
static const char *const scripts[S_NSCRIPTS] = {admit_lua, renew_lua, grey_lua};

enum rq_kind {
  RQ_FIRE, /* nobody waits (release, renew, pass) */
  RQ_AUTH, /* AUTH at connect, ahead of the loads */
  RQ_LOAD, /* SCRIPT LOAD at connect; arg: script index */
  RQ_ADMIT,
  RQ_GREY
};

typedef struct rq {
  uint8_t kind;
  uint8_t waiting; /* a caller's callback is still due */
  uint8_t arg;
  uint32_t id;
  uint64_t deadline;
  union {
    sd_admit_cb admit;
    sd_grey_cb grey;
  } cb; /* by kind */
  void *ctx;
  /* RQ_ADMIT: the local verdict, given on timeout and combined with the
     shared one; the session's address and lease to undo what the other
     side counted when the final verdict is tempfail */
  sd_admit_result local;
  sl_addr addr;
  uint64_t lease;
  sd_state_ticket ticket;
} rq;

/* C_HANDSHAKE: TLS only.  C_LOADING: AUTH and SCRIPT LOAD sent, their
   replies not all in yet; callers get local verdicts until C_READY. */
enum conn_state { C_IDLE, C_CONNECTING, C_HANDSHAKE, C_LOADING, C_READY };

typedef struct redis_state {
  sd_state base;
  sd_state_shm *shm;
  sl_ratelim_config rl;
  char *target, *prefix;
  uint64_t budget;
  uint32_t lease_ms;
  char *username, *password; /* AUTH; password NULL: no AUTH */
  sd_tls_ctx *tls_ctx;       /* NULL: plain TCP or unix socket */
  char *tls_name;            /* the name the certificate must carry */
  /* per worker process (after attach) */
  sd_loop *loop;
  uint32_t worker;
  uint64_t seq, nonce;
  int fd;
  sd_tls_conn *tls;
  uint8_t tls_read_wants_out; /* a TLS read stopped to write first */
  enum conn_state cs;
  sd_handler h;
  sd_timer deadline, retry;
  uint64_t backoff;
  uint32_t ev; /* registered epoll mask */
  uint8_t flush_queued;
  uint8_t stopping; /* detached: no reconnect, no warning */
  uint8_t *out;
  size_t outlen;
  uint8_t *in;
  size_t inlen;
  rq *ring;
  uint32_t head, n, next_id;
  char sha[S_NSCRIPTS][41];
  uint64_t last_warn;
  uint64_t last_auth_log, last_tls_log;
} redis_state;

static void rd_disconnect(redis_state *s, const char *why);
static void rd_connect(redis_state *s);

static int worse(int a, int b) { return a > b ? a : b; }

/* ---- keys ---------------------------------------------------------------- */

/* The counted prefix of a, as sl_ratelim groups addresses. */
static void prefix_text(const redis_state *s, const sl_addr *a, char *out,
                        size_t len) {
  sl_addr m = *a;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (m.family == SL_AF_INET6 && memcmp(m.bytes, mapped, 12) == 0) {
    memmove(m.bytes, m.bytes + 12, 4);
    memset(m.bytes + 4, 0, 12);
    m.family = SL_AF_INET;
  }
  unsigned bits =
      m.family == SL_AF_INET ? s->rl.ipv4_prefix : s->rl.ipv6_prefix;
  unsigned total = m.family == SL_AF_INET ? 32 : 128;
  for (unsigned i = bits; i < total; i++)
    m.bytes[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
  char t[SL_ADDR_STRLEN];
  if (sl_addr_format(&m, t, sizeof t) < 0)
    snprintf(t, sizeof t, "unknown");
  snprintf(out, len, "%s/%u", t, bits);
}

static size_t key(const redis_state *s, char *out, const char *kind,
                  const char *rest) {
  int n = snprintf(out, KEY_MAX, "%s%s:%s", s->prefix, kind, rest);
  return n < 0 ? 0 : (size_t)n >= KEY_MAX ? KEY_MAX - 1 : (size_t)n;
}

/* ---- output and the pending ring ------------------------------------------
 */

/* The epoll mask the connection needs now. */
static void update_events(redis_state *s) {
  uint32_t want = EPOLLIN;
  if (s->cs == C_HANDSHAKE)
    want |= sd_tls_want(s->tls) == SD_TLS_WANT_WRITE ? EPOLLOUT : 0;
  else if (s->outlen || s->tls_read_wants_out)
    want |= EPOLLOUT;
  if (want != s->ev && sd_loop_mod(s->loop, s->fd, want, &s->h) == 0)
    s->ev = want;
}

/* Bytes out and in, over TLS or not: > 0 done, 0 closed (in only), -1
   failed (*why says how), -2 would block. */
static long io_send(redis_state *s, const void *p, size_t len,
                    const char **why) {
  if (s->tls) {
    long w = sd_tls_write(s->tls, p, len);
    if (w == -1)
      *why = sd_tls_error(s->tls);
    return w;
  }
  for (;;) {
    ssize_t w = send(s->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return -2;
    if (w <= 0) {
      *why = w == 0 ? "short write" : strerror(errno);
      return -1;
    }
    return (long)w;
  }
}

static long io_recv(redis_state *s, void *p, size_t len, const char **why) {
  if (s->tls) {
    long n = sd_tls_read(s->tls, p, len);
    s->tls_read_wants_out = n == -2 && sd_tls_want(s->tls) == SD_TLS_WANT_WRITE;
    if (n == -1)
      *why = sd_tls_error(s->tls);
    return n;
  }
  for (;;) {
    ssize_t n = recv(s->fd, p, len, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return -2;
    if (n < 0) {
      *why = strerror(errno);
      return -1;
    }
    return (long)n;
  }
}

static void tls_failed(redis_state *s, const char *why);

/* The connection failed while reading or writing.  Over TLS before the
   first answers: TLS 1.3 servers refuse a client (no or a wrong client
   certificate) after the handshake, so the first read is where that shows:
   the same TLS error as a refused handshake. */
static void lost(redis_state *s, const char *why) {
  if (s->tls && s->cs == C_LOADING)
    tls_failed(s, why);
  else
    rd_disconnect(s, why);
}

static void flush(void *arg) {
  redis_state *s = arg;
  s->flush_queued = 0;
  if (s->fd < 0 || s->cs == C_CONNECTING || s->cs == C_HANDSHAKE)
    return;
  while (s->outlen) {
    const char *why = "write failed";
    long w = io_send(s, s->out, s->outlen, &why);
    if (w == -2)
      break;
    if (w <= 0) {
      lost(s, why);
      return;
    }
    memmove(s->out, s->out + w, s->outlen - (size_t)w);
    s->outlen -= (size_t)w;
  }
  update_events(s);
}

static void arm_deadline(redis_state *s) {
  for (uint32_t i = 0; i < s->n; i++) {
    rq *q = &s->ring[(s->head + i) % RING];
    if (q->waiting) {
      sd_timer_set(s->loop, &s->deadline, q->deadline);
      return;
    }
  }
  /* nobody waits: still watch for a stalled connection */
  if (s->n)
    sd_timer_set(s->loop, &s->deadline,
                 s->ring[s->head].deadline + REDIS_STALL);
  else
    sd_timer_stop(s->loop, &s->deadline);
}

/* Queues one command and its ring entry; NULL when the connection cannot
   take it now (down, ring or buffer full). */
static rq *send_cmd(redis_state *s, const sl_resp_arg *args, size_t nargs,
                    uint8_t kind) {
  if (s->cs != C_READY &&
      !((kind == RQ_LOAD || kind == RQ_AUTH) && s->cs == C_LOADING))
    return NULL;
  if (s->n == RING)
    return NULL;
  long n = sl_resp_encode(s->out + s->outlen, OUT_CAP - s->outlen, args, nargs);
  if (n < 0)
    return NULL;
  s->outlen += (size_t)n;
  rq *q = &s->ring[(s->head + s->n) % RING];
  s->n++;
  memset(q, 0, sizeof *q);
  q->kind = kind;
  q->id = ++s->next_id ? s->next_id : ++s->next_id;
  q->deadline = sd_loop_now(s->loop) + s->budget;
  if (!s->flush_queued) {
    s->flush_queued = 1;
    if (sd_loop_defer(s->loop, flush, s) != 0)
      s->flush_queued = 0;
  }
  if (s->n == 1)
    arm_deadline(s);
  return q;
}

static void warn(redis_state *s, const char *what) {
  uint64_t now = sd_loop_now(s->loop);
  if (s->last_warn && now - s->last_warn < 10 * SL_SEC)
    return;
  s->last_warn = now;
  sd_log(SD_LOG_WARN,
         "worker %u: redis %s: %s; local verdicts until it answers", s->worker,
         s->target, what);
}

/* ---- answers ---------------------------------------------------------------
 */

static void undo_shared(redis_state *s, const sl_addr *a, uint64_t lease);

static void admit_finish(redis_state *s, rq *q, const sl_resp_reply *r) {
  sd_admit_result res = q->local;
  if (r && r->top.type == SL_RESP_ARRAY && r->nelem >= 4 &&
      r->elem[0].type == SL_RESP_INT && r->elem[3].type == SL_RESP_INT) {
    int shared = (int)r->elem[0].i;
    if (shared < 0 || shared > 2)
      shared = 2;
    res.admission = (sl_admission)worse((int)q->local.admission, shared);
    res.passed_before = q->local.passed_before || r->elem[3].i == 1;
    res.shared = 1;
    sd_count(SD_C_STATE_SHARED, 1);
    /* Counted in Redis (its verdict was not tempfail) but refused here:
       no release will come, so give the lease back now. */
    if (shared != 2 && res.admission == SL_ADMIT_TEMPFAIL)
      undo_shared(s, &q->addr, q->lease);
  } else {
    sd_count(SD_C_STATE_ERROR, 1);
  }
  /* Counted locally but refused by the shared counts: likewise. */
  if (q->local.admission != SL_ADMIT_TEMPFAIL &&
      res.admission == SL_ADMIT_TEMPFAIL)
    sd_state_shm_release(s->shm, &q->addr, &q->ticket);
  q->waiting = 0;
  q->cb.admit(q->ctx, &res);
}

static void grey_finish(redis_state *s, rq *q, const sl_resp_reply *r) {
  (void)s;
  sd_grey_result res = {SD_GREY_UNKNOWN, 0, 0, 0};
  if (r && r->top.type == SL_RESP_ARRAY && r->nelem >= 3 &&
      r->elem[0].type == SL_RESP_INT && r->elem[0].i >= 0 &&
      r->elem[0].i <= 3) {
    res.verdict = (sd_grey_verdict)r->elem[0].i;
    res.wait_s = r->elem[1].type == SL_RESP_INT ? (uint32_t)r->elem[1].i : 0;
    res.passes = r->elem[2].type == SL_RESP_INT ? (uint32_t)r->elem[2].i : 0;
    res.shared = 1;
    sd_count(SD_C_STATE_SHARED, 1);
  } else {
    sd_count(SD_C_STATE_ERROR, 1);
  }
  q->waiting = 0;
  q->cb.grey(q->ctx, &res);
}

/* A caller's answer without Redis: the local verdict. */
static void give_local(redis_state *s, rq *q, enum sd_counter why) {
  if (!q->waiting)
    return;
  sd_count(why, 1);
  if (q->kind == RQ_ADMIT) {
    q->waiting = 0;
    /* Redis may still count the session when the script runs late; a
       session refused here never releases, so undo it behind the script. */
    if (q->local.admission == SL_ADMIT_TEMPFAIL)
      undo_shared(s, &q->addr, q->lease);
    q->cb.admit(q->ctx, &q->local);
  } else if (q->kind == RQ_GREY) {
    q->waiting = 0;
    sd_grey_result res = {SD_GREY_UNKNOWN, 0, 0, 0};
    q->cb.grey(q->ctx, &res);
  }
}

/* The server's words, printable and bounded, for a log line. */
static void server_text(const sl_resp_val *v, char *out, size_t len) {
  size_t n = 0;
  for (uint32_t i = 0; i < v->len && n + 1 < len; i++) {
    uint8_t c = v->s[i];
    out[n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  out[n] = 0;
}

/* AUTH refused, or a command refused for want of one: an operator's error
   (a password out of step with redis.conf), so logged as an error, not
   as a passing network warning; then handled like a lost connection. */
static void auth_failed(redis_state *s, const sl_resp_val *v) {
  char said[200];
  server_text(v, said, sizeof said);
  sd_count(SD_C_STATE_AUTH_FAILED, 1);
  uint64_t now = sd_loop_now(s->loop);
  if (!s->last_auth_log || now - s->last_auth_log >= AUTH_LOG_EVERY) {
    s->last_auth_log = now;
    if (s->password)
      sd_log(SD_LOG_ERR,
             "worker %u: redis %s: AUTH as user %s refused: \"%s\"; check "
             "redis_username and redis_password(_file) against redis.conf; "
             "local verdicts until it is accepted",
             s->worker, s->target, s->username ? s->username : "default", said);
    else
      sd_log(SD_LOG_ERR,
             "worker %u: redis %s wants AUTH: \"%s\"; set redis_password_file "
             "(and redis_username for an ACL user); local verdicts until then",
             s->worker, s->target, said);
  }
  /* the error line says it all: no second warning for the close */
  s->last_warn = now;
  rd_disconnect(s, "AUTH refused");
}

static void on_reply(redis_state *s, const sl_resp_reply *r) {
  rq q = s->ring[s->head]; /* a copy: callbacks may queue more */
  s->head = (s->head + 1) % RING;
  s->n--;
  if (q.kind == RQ_AUTH ||
      (q.kind == RQ_LOAD && r->top.type == SL_RESP_ERROR && r->top.len >= 6 &&
       memcmp(r->top.s, "NOAUTH", 6) == 0)) {
    if (r->top.type == SL_RESP_ERROR)
      auth_failed(s, &r->top);
    return;
  }
  if (r->top.type == SL_RESP_ERROR) {
    /* e.g. NOPERM from an ACL that lacks a command the scripts run */
    char said[200], what[230];
    server_text(&r->top, said, sizeof said);
    snprintf(what, sizeof what, "error reply \"%s\"", said);
    sd_count(SD_C_STATE_ERROR, 1);
    warn(s, what);
  }
  switch (q.kind) {
  case RQ_LOAD:
    if (r->top.type == SL_RESP_BULK && r->top.len == 40 && q.arg < S_NSCRIPTS) {
      memcpy(s->sha[q.arg], r->top.s, 40);
      s->sha[q.arg][40] = 0;
      if (q.arg == S_NSCRIPTS - 1) {
        s->cs = C_READY;
        s->backoff = 0;
        s->last_warn = 0;
        sd_count(SD_C_STATE_CONNECTS, 1);
        sd_log(SD_LOG_INFO, "worker %u: redis %s ready", s->worker, s->target);
      }
    } else {
      rd_disconnect(s, "SCRIPT LOAD refused");
    }
    break;
  case RQ_ADMIT:
    if (q.waiting)
      admit_finish(s, &q, r->top.type == SL_RESP_ERROR ? NULL : r);
    break;
  case RQ_GREY:
    if (q.waiting)
      grey_finish(s, &q, r->top.type == SL_RESP_ERROR ? NULL : r);
    break;
  default:
    break;
  }
}

static void read_replies(redis_state *s) {
  for (;;) {
    const char *why = "read failed";
    long n = io_recv(s, s->in + s->inlen, IN_CAP - s->inlen, &why);
    if (n == -2)
      break;
    if (n == 0) {
      rd_disconnect(s, "closed by the server");
      return;
    }
    if (n < 0) {
      lost(s, why);
      return;
    }
    s->inlen += (size_t)n;
    size_t off = 0;
    while (off < s->inlen && s->fd >= 0) {
      sl_resp_reply r;
      long used = sl_resp_parse(s->in + off, s->inlen - off, &r);
      if (used == SL_ERR_INCOMPLETE)
        break;
      if (used < 0 || s->n == 0) {
        rd_disconnect(s, used < 0 ? "malformed reply" : "unsolicited reply");
        return;
      }
      off += (size_t)used;
      on_reply(s, &r);
    }
    if (s->fd < 0)
      return;
    memmove(s->in, s->in + off, s->inlen - off);
    s->inlen -= off;
    if (s->inlen == IN_CAP) {
      rd_disconnect(s, "reply too large");
      return;
    }
  }
  arm_deadline(s);
}

/* ---- the connection
 * ---------------------------------------------------------- */

/* The connection is up (and TLS done): AUTH, then the scripts, in one
   write. */
static void load_scripts(redis_state *s) {
  s->cs = C_LOADING;
  if (s->password) {
    sl_resp_arg a[3] = {{"AUTH", 4}};
    size_t na = 1;
    if (s->username)
      a[na++] = (sl_resp_arg){s->username, strlen(s->username)};
    a[na++] = (sl_resp_arg){s->password, strlen(s->password)};
    if (send_cmd(s, a, na, RQ_AUTH) == NULL) {
      rd_disconnect(s, "cannot queue AUTH");
      return;
    }
  }
  for (int i = 0; i < S_NSCRIPTS; i++) {
    sl_resp_arg a[] = {
        {"SCRIPT", 6}, {"LOAD", 4}, {scripts[i], strlen(scripts[i])}};
    rq *q = send_cmd(s, a, 3, RQ_LOAD);
    if (q == NULL) {
      rd_disconnect(s, "cannot queue SCRIPT LOAD");
      return;
    }
    q->arg = (uint8_t)i;
  }
  flush(s);
}

/* The certificate or the server's TLS settings: an operator's error,
   logged as one (with OpenSSL's reason), counted, and retried with backoff
   like a lost connection. */
static void tls_failed(redis_state *s, const char *why_) {
  char why[300]; /* why_ is the TLS object's, freed by the disconnect */
  snprintf(why, sizeof why, "%s", why_);
  sd_count(SD_C_STATE_TLS_FAILED, 1);
  uint64_t now = sd_loop_now(s->loop);
  if (!s->last_tls_log || now - s->last_tls_log >= AUTH_LOG_EVERY) {
    s->last_tls_log = now;
    sd_log(SD_LOG_ERR,
           "worker %u: redis %s: %s (expected name %s; check redis_tls_ca, "
           "redis_tls_name, redis_tls_cert/_key and Redis's tls-* "
           "settings); local verdicts until it succeeds",
           s->worker, s->target, why, s->tls_name);
  }
  s->last_warn = now;
  rd_disconnect(s, why);
}

static void handshake(redis_state *s) {
  int r = sd_tls_handshake(s->tls);
  if (r == 1)
    load_scripts(s);
  else if (r == 0)
    update_events(s);
  else
    tls_failed(s, sd_tls_error(s->tls));
}

/* TCP is up: TLS first when configured, then AUTH and the scripts. */
static void connected(redis_state *s) {
  if (s->tls_ctx == NULL) {
    load_scripts(s);
    return;
  }
  s->tls = sd_tls_conn_new(s->tls_ctx, s->fd, 0, s->tls_name);
  if (s->tls == NULL) {
    rd_disconnect(s, "cannot set up TLS");
    return;
  }
  s->cs = C_HANDSHAKE;
  handshake(s);
}

static void rd_io(sd_handler *h, uint32_t ev) {
  redis_state *s =
      (redis_state *)(void *)((char *)h - offsetof(redis_state, h));
  if (s->fd < 0)
    return;
  if (s->cs == C_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
      err = errno;
    if (err) {
      rd_disconnect(s, strerror(err));
      return;
    }
    connected(s);
    return;
  }
  if (s->cs == C_HANDSHAKE) {
    handshake(s);
    return;
  }
  /* TLS: a read may wait for the socket to take a write and the other way
     round, so both directions are tried on any event */
  if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) ||
      (s->tls && s->tls_read_wants_out))
    read_replies(s);
  if (s->fd >= 0 && ((ev & EPOLLOUT) || (s->tls && s->outlen)))
    flush(s);
}

static void rd_deadline(sd_timer *t) {
  redis_state *s =
      (redis_state *)(void *)((char *)t - offsetof(redis_state, deadline));
  uint64_t now = sd_loop_now(s->loop);
  /* a server that takes the SYN but never answers TLS (or a black hole)
     is given up like a stalled reply */
  if (s->cs == C_CONNECTING || s->cs == C_HANDSHAKE) {
    rd_disconnect(s, s->cs == C_CONNECTING ? "connect timed out"
                                           : "TLS handshake timed out");
    return;
  }
  if (s->n && now >= s->ring[s->head].deadline + REDIS_STALL) {
    rd_disconnect(s, "no reply for 2s");
    return;
  }
  for (uint32_t i = 0; i < s->n; i++) {
    rq *q = &s->ring[(s->head + i) % RING];
    if (q->waiting && q->deadline <= now)
      give_local(s, q, SD_C_STATE_TIMEOUT);
    if (s->fd < 0)
      return;
  }
  warn(s, "lookup over budget");
  arm_deadline(s);
}

static void rd_retry(sd_timer *t) {
  redis_state *s =
      (redis_state *)(void *)((char *)t - offsetof(redis_state, retry));
  rd_connect(s);
}

static void rd_disconnect(redis_state *s, const char *why_) {
  char why[300]; /* why_ may be the TLS object's, freed below */
  snprintf(why, sizeof why, "%s", why_);
  if (s->fd >= 0) {
    if (s->ev)
      sd_loop_del(s->loop, s->fd);
    sd_tls_conn_free(s->tls);
    s->tls = NULL;
    s->tls_read_wants_out = 0;
    close(s->fd);
    s->fd = -1;
    if (s->cs == C_READY)
      sd_count(SD_C_STATE_DISCONNECTS, 1);
  }
  if (!s->stopping)
    warn(s, why);
  s->cs = C_IDLE;
  s->ev = 0;
  s->outlen = 0;
  s->inlen = 0;
  /* Every pending caller gets its local verdict now, oldest first. */
  while (s->n) {
    rq q = s->ring[s->head];
    s->head = (s->head + 1) % RING;
    s->n--;
    if (q.waiting)
      give_local(s, &q, SD_C_STATE_DOWN);
  }
  sd_timer_stop(s->loop, &s->deadline);
  if (s->stopping)
    return;
  s->backoff = s->backoff ? s->backoff * 2 : BACKOFF_MIN;
  if (s->backoff > BACKOFF_MAX)
    s->backoff = BACKOFF_MAX;
  sd_timer_set(s->loop, &s->retry, sd_loop_now(s->loop) + s->backoff);
}

static void rd_connect(redis_state *s) {
  struct sockaddr_storage ss;
  socklen_t sl = 0;
  memset(&ss, 0, sizeof ss);
  if (strncmp(s->target, "unix:", 5) == 0) {
    struct sockaddr_un *u = (struct sockaddr_un *)&ss;
    u->sun_family = AF_UNIX;
    snprintf(u->sun_path, sizeof u->sun_path, "%s", s->target + 5);
    sl = sizeof *u;
  } else {
    sd_sockaddr a;
    if (sd_parse_hostport(s->target + 5, &a, 1) != 0) {
      rd_disconnect(s, "bad address");
      return;
    }
    memcpy(&ss, &a.ss, a.len);
    sl = a.len;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rd_disconnect(s, strerror(errno));
    return;
  }
  if (ss.ss_family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  s->fd = fd;
  int rc = connect(fd, (struct sockaddr *)&ss, sl);
  if (rc != 0 && errno != EINPROGRESS) {
    rd_disconnect(s, strerror(errno));
    return;
  }
  if (sd_loop_add(s->loop, fd, EPOLLIN | EPOLLOUT, &s->h) != 0) {
    rd_disconnect(s, "epoll");
    return;
  }
  s->ev = EPOLLIN | EPOLLOUT;
  s->cs = C_CONNECTING;
  sd_timer_set(s->loop, &s->deadline, sd_loop_now(s->loop) + REDIS_STALL);
  if (rc == 0)
    connected(s);
}

/* ---- operations -------------------------------------------------------------
 */

static void member(redis_state *s, uint64_t lease, char *out, size_t len) {
  snprintf(out, len, "%016" PRIx64 ".%u.%" PRIx64, s->nonce, s->worker, lease);
}

static void undo_shared(redis_state *s, const sl_addr *a, uint64_t lease) {
  if (!lease || a->family == SL_AF_UNSPEC)
    return;
  char p[64], k[KEY_MAX], m[64];
  prefix_text(s, a, p, sizeof p);
  size_t kl = key(s, k, "c", p);
  member(s, lease, m, sizeof m);
  sl_resp_arg args[] = {{"ZREM", 4}, {k, kl}, {m, strlen(m)}};
  send_cmd(s, args, 3, RQ_FIRE);
}

static int rd_admit(sd_state *st, const sl_addr *a, uint64_t now,
                    sd_state_ticket *t, sd_admit_cb cb, void *ctx,
                    sd_admit_result *res, sd_state_req *req) {
  redis_state *s = (redis_state *)st;
  *req = 0;
  sd_state_shm_admit(s->shm, a, now, t, res);
  if (cb == NULL || s->loop == NULL || a->family == SL_AF_UNSPEC)
    return SD_STATE_DONE;
  if (s->cs != C_READY) {
    sd_count(SD_C_STATE_DOWN, 1);
    return SD_STATE_DONE;
  }
  /* the limits of the last reload, whichever process applied it */
  sd_state_shm_limits(s->shm, &s->rl);
  char p[64], addr[SL_ADDR_STRLEN], kc[KEY_MAX], kr[KEY_MAX], kp[KEY_MAX],
      m[64];
  char lease[24], cmax[16], rmax[16], win[24], oc[4], orr[4];
  prefix_text(s, a, p, sizeof p);
  sl_addr_format(a, addr, sizeof addr);
  size_t lc = key(s, kc, "c", p), lr = key(s, kr, "r", p),
         lp = key(s, kp, "p", addr);
  uint64_t id = ++s->seq;
  member(s, id, m, sizeof m);
  snprintf(lease, sizeof lease, "%u", s->lease_ms);
  snprintf(cmax, sizeof cmax, "%u", s->rl.concurrency_max);
  snprintf(rmax, sizeof rmax, "%u", s->rl.rate_max);
  snprintf(win, sizeof win, "%" PRIu64,
           (uint64_t)(s->rl.rate_window / SL_MSEC) + 1);
  snprintf(oc, sizeof oc, "%d", (int)s->rl.over_concurrency);
  snprintf(orr, sizeof orr, "%d", (int)s->rl.over_rate);
  sl_resp_arg args[] = {{"EVALSHA", 7},
                        {s->sha[S_ADMIT], 40},
                        {"3", 1},
                        {kc, lc},
                        {kr, lr},
                        {kp, lp},
                        {m, strlen(m)},
                        {lease, strlen(lease)},
                        {cmax, strlen(cmax)},
                        {rmax, strlen(rmax)},
                        {win, strlen(win)},
                        {oc, strlen(oc)},
                        {orr, strlen(orr)}};
  rq *q = send_cmd(s, args, sizeof args / sizeof args[0], RQ_ADMIT);
  if (q == NULL) {
    sd_count(SD_C_STATE_DOWN, 1);
    return SD_STATE_DONE;
  }
  t->lease = id;
  q->waiting = 1;
  q->cb.admit = cb;
  q->ctx = ctx;
  q->local = *res;
  q->addr = *a;
  q->lease = id;
  q->ticket = *t;
  *req = q->id;
  return SD_STATE_PENDING;
}

static void rd_release(sd_state *st, const sl_addr *a,
                       const sd_state_ticket *t) {
  redis_state *s = (redis_state *)st;
  sd_state_shm_release(s->shm, a, t);
  if (s->loop && s->cs == C_READY)
    undo_shared(s, a, t->lease);
}

static void rd_hold(sd_state *st, const sl_addr *a, uint64_t now,
                    sd_state_ticket *t) {
  redis_state *s = (redis_state *)st;
  sd_state_shm_hold(s->shm, a, now, t);
  if (!s->loop || s->cs != C_READY || !t->lease || a->family == SL_AF_UNSPEC)
    return;
  char p[64], k[KEY_MAX], m[64], lease[24];
  prefix_text(s, a, p, sizeof p);
  size_t kl = key(s, k, "c", p);
  member(s, t->lease, m, sizeof m);
  snprintf(lease, sizeof lease, "%u", s->lease_ms);
  sl_resp_arg args[] = {{"EVALSHA", 7}, {s->sha[S_RENEW], 40},
                        {"1", 1},       {k, kl},
                        {m, strlen(m)}, {lease, strlen(lease)}};
  send_cmd(s, args, 6, RQ_FIRE);
}

static void rd_screen_pass(sd_state *st, const sl_addr *a, uint32_t ttl_s) {
  redis_state *s = (redis_state *)st;
  sd_state_shm_screen_pass(s->shm, a, ttl_s);
  if (!s->loop || s->cs != C_READY || a->family == SL_AF_UNSPEC)
    return;
  char addr[SL_ADDR_STRLEN], k[KEY_MAX], ttl[16];
  sl_addr_format(a, addr, sizeof addr);
  size_t kl = key(s, k, "p", addr);
  snprintf(ttl, sizeof ttl, "%u", ttl_s);
  sl_resp_arg args[] = {
      {"SET", 3}, {k, kl}, {"1", 1}, {"EX", 2}, {ttl, strlen(ttl)}};
  send_cmd(s, args, 5, RQ_FIRE);
}

static int rd_grey_check(sd_state *st, const char *client_key,
                         const char *triplet_key, const sd_grey_params *p,
                         sd_grey_cb cb, void *ctx, sd_grey_result *res,
                         sd_state_req *req) {
  redis_state *s = (redis_state *)st;
  *req = 0;
  if (cb == NULL || s->loop == NULL || s->cs != C_READY) {
    if (cb && s->loop)
      sd_count(SD_C_STATE_DOWN, 1);
    /* Redis is the greylist of record: a local decision would accept a
       retry through another instance as new, so say "unknown" instead and
       let the caller's fallback decide; the shm table is for shm. */
    res->verdict = SD_GREY_UNKNOWN;
    res->wait_s = 0;
    res->passes = 0;
    res->shared = 0;
    return SD_STATE_DONE;
  }
  char kc[KEY_MAX], kt[KEY_MAX], a1[16], a2[16], a3[16], a4[16];
  size_t lc = key(s, kc, "gc", client_key), lt = key(s, kt, "gt", triplet_key);
  snprintf(a1, sizeof a1, "%u", p->delay_s);
  snprintf(a2, sizeof a2, "%u", p->retry_window_s);
  snprintf(a3, sizeof a3, "%u", p->max_age_s);
  snprintf(a4, sizeof a4, "%u", p->auto_allow);
  sl_resp_arg args[] = {
      {"EVALSHA", 7},  {s->sha[S_GREY], 40}, {"2", 1},         {kc, lc},
      {kt, lt},        {a1, strlen(a1)},     {a2, strlen(a2)}, {a3, strlen(a3)},
      {a4, strlen(a4)}};
  rq *q = send_cmd(s, args, 9, RQ_GREY);
  if (q == NULL) {
    sd_count(SD_C_STATE_DOWN, 1);
    res->verdict = SD_GREY_UNKNOWN;
    res->wait_s = res->passes = 0;
    res->shared = 0;
    return SD_STATE_DONE;
  }
  q->waiting = 1;
  q->cb.grey = cb;
  q->ctx = ctx;
  *req = q->id;
  return SD_STATE_PENDING;
}

static void rd_cancel(sd_state *st, sd_state_req req) {
  redis_state *s = (redis_state *)st;
  for (uint32_t i = 0; i < s->n; i++) {
    rq *q = &s->ring[(s->head + i) % RING];
    if (q->id == req && q->waiting) {
      q->waiting = 0;
      /* the session is gone: what the script counts must go too */
      if (q->kind == RQ_ADMIT) {
        if (q->local.admission != SL_ADMIT_TEMPFAIL)
          sd_state_shm_release(s->shm, &q->addr, &q->ticket);
        undo_shared(s, &q->addr, q->lease);
      }
      return;
    }
  }
}

static uint32_t rd_live(sd_state *st, const sl_addr *a) {
  return sd_state_shm_live(((redis_state *)st)->shm, a);
}

static int rd_configure(sd_state *st, const sl_ratelim_config *c, char *msg,
                        size_t msglen) {
  redis_state *s = (redis_state *)st;
  int rc = sd_state_shm_configure(s->shm, c, msg, msglen);
  if (rc >= 0)
    s->rl = *c;
  return rc;
}

static void rd_recount(sd_state *st) {
  sd_state_shm_recount(((redis_state *)st)->shm);
}

static int rd_attach(sd_state *st, sd_loop *loop, uint32_t worker,
                     uint64_t seed) {
  redis_state *s = (redis_state *)st;
  if (loop == NULL) {
    if (s->loop) {
      s->stopping = 1;
      rd_disconnect(s, "worker stopping");
      sd_timer_stop(s->loop, &s->retry);
      s->loop = NULL;
    }
    return 0;
  }
  if (s->ring == NULL) {
    s->ring = calloc(RING, sizeof *s->ring);
    s->out = malloc(OUT_CAP);
    s->in = malloc(IN_CAP);
    if (!s->ring || !s->out || !s->in)
      return -1;
  }
  s->loop = loop;
  s->worker = worker;
  s->nonce = seed ^ ((uint64_t)getpid() << 32);
  sd_timer_init(&s->deadline, rd_deadline);
  sd_timer_init(&s->retry, rd_retry);
  s->h.cb = rd_io;
  rd_connect(s);
  return 0;
}

/* Everything but the shm part. */
static void rd_free_parts(redis_state *s) {
  sd_tls_conn_free(s->tls);
  if (s->fd >= 0)
    close(s->fd);
  sd_tls_ctx_free(s->tls_ctx);
  if (s->password)
    explicit_bzero(s->password, strlen(s->password));
  free(s->password);
  free(s->username);
  free(s->tls_name);
  free(s->ring);
  free(s->out);
  free(s->in);
  free(s->target);
  free(s->prefix);
  free(s);
}

static void rd_free(sd_state *st) {
  redis_state *s = (redis_state *)st;
  sd_state_shm_free(s->shm);
  rd_free_parts(s);
}

static const sd_state_ops redis_ops = {
    "redis", rd_admit,       rd_release,    rd_live,   rd_configure, rd_recount,
    rd_hold, rd_screen_pass, rd_grey_check, rd_cancel, rd_attach,    rd_free};

/* The AUTH password: given, or the file's first line (its line end is not
   part of it).  *out NULL when there is none; -1 with err on failure. */
static int read_secret(const sd_state_config *sc, char **out, char *err,
                       size_t errlen) {
  *out = NULL;
  if (sc->password) {
    if (strlen(sc->password) > SECRET_MAX) {
      snprintf(err, errlen, "redis_password: longer than %d bytes", SECRET_MAX);
      return -1;
    }
    *out = strdup(sc->password);
    if (*out == NULL)
      snprintf(err, errlen, "out of memory");
    return *out ? 0 : -1;
  }
  if (sc->password_file == NULL)
    return 0;
  const char *f = sc->password_file;
  int fd = open(f, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, errlen, "redis_password_file %s: %s", f, strerror(errno));
    return -1;
  }
  char buf[SECRET_MAX + 3];
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
    if (n == sizeof buf - 1)
      break;
  }
  close(fd);
  buf[n] = 0;
  if (n && buf[n - 1] == '\n')
    buf[--n] = 0;
  if (n && buf[n - 1] == '\r')
    buf[--n] = 0;
  const char *why = NULL;
  if (n == 0)
    why = "empty";
  else if (n > SECRET_MAX)
    why = "longer than 1024 bytes";
  else if (memchr(buf, '\n', n) || memchr(buf, '\r', n) || strlen(buf) != n)
    why = "not one line of text (a password is the file's only line)";
  if (why == NULL && (*out = strdup(buf)) == NULL)
    why = "out of memory";
  explicit_bzero(buf, sizeof buf);
  if (why) {
    snprintf(err, errlen, "redis_password_file %s: %s", f, why);
    return -1;
  }
  return 0;
}

/* The host part of "inet:HOST:PORT" ("[v6]:PORT" too): the name Redis's
   certificate must carry when redis_tls_name is not set. */
static char *target_host(const char *target) {
  const char *h = target + 5, *end;
  if (*h == '[') {
    h++;
    end = strchr(h, ']');
  } else {
    end = strrchr(h, ':');
  }
  if (end == NULL)
    end = h + strlen(h);
  return strndup(h, (size_t)(end - h));
}

/* The client context: verification always on, the CA and client
   certificate loaded now (before privileges are dropped). */
static sd_tls_ctx *make_tls(const sd_state_config *sc, char *err,
                            size_t errlen) {
  char why[512];
  sd_tls_ctx *ctx = sd_tls_client_ctx_new(1, sc->tls_ca, NULL, why, sizeof why);
  if (ctx == NULL) {
    snprintf(err, errlen, "redis_tls_ca: %s", why);
    return NULL;
  }
  if (sc->tls_cert && sd_tls_ctx_use_cert(ctx, sc->tls_cert, sc->tls_key, why,
                                          sizeof why) != 0) {
    snprintf(err, errlen, "redis_tls_cert: %s", why);
    sd_tls_ctx_free(ctx);
    return NULL;
  }
  return ctx;
}

int sd_state_redis_check(const sd_state_config *sc, char *err, size_t errlen) {
  char *pw = NULL;
  if (read_secret(sc, &pw, err, errlen) != 0)
    return -1;
  if (pw) {
    explicit_bzero(pw, strlen(pw));
    free(pw);
  }
  if (sc->tls) {
    sd_tls_ctx *ctx = make_tls(sc, err, errlen);
    if (ctx == NULL)
      return -1;
    sd_tls_ctx_free(ctx);
  }
  return 0;
}

sd_state *sd_state_redis_new(const sl_ratelim_config *c,
                             const sd_state_config *sc, char *err,
                             size_t errlen) {
  if (sc == NULL || sc->redis == NULL ||
      (strncmp(sc->redis, "inet:", 5) != 0 &&
       strncmp(sc->redis, "unix:", 5) != 0)) {
    snprintf(err, errlen,
             "state_backend = redis needs redis = inet:HOST:PORT or unix:PATH");
    return NULL;
  }
  redis_state *s = calloc(1, sizeof *s);
  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->fd = -1;
  if (read_secret(sc, &s->password, err, errlen) != 0 ||
      (sc->tls && (s->tls_ctx = make_tls(sc, err, errlen)) == NULL)) {
    rd_free_parts(s);
    return NULL;
  }
  if (s->password && s->password[0] == 0) {
    free(s->password);
    s->password = NULL;
  }
  s->username = sc->username ? strdup(sc->username) : NULL;
  if (sc->tls)
    s->tls_name = sc->tls_name ? strdup(sc->tls_name) : target_host(sc->redis);
  if ((sc->username && !s->username) || (sc->tls && !s->tls_name)) {
    snprintf(err, errlen, "out of memory");
    rd_free_parts(s);
    return NULL;
  }
  s->shm = sd_state_shm_create(c, sc, err, errlen);
  s->target = strdup(sc->redis);
  s->prefix = strdup(sc->redis_prefix ? sc->redis_prefix : "");
  if (s->shm == NULL || !s->target || !s->prefix) {
    if (s->shm)
      sd_state_shm_free(s->shm);
    else if (!err[0])
      snprintf(err, errlen, "out of memory");
    rd_free_parts(s);
    return NULL;
  }
  s->rl = *c;
  s->budget = sc->redis_timeout ? sc->redis_timeout : 50 * SL_MSEC;
  s->lease_ms = (sc->lease_s ? sc->lease_s : 60) * 1000u;
  s->base.ops = &redis_ops;
  return &s->base;
}
