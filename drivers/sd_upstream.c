/*
 * sd_upstream.c: balancing and health.
 */
#include "sd_upstream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sd_log.h"
#include "sd_metrics.h"
#include "sluice/caps.h"
#include "sluice/proxy.h"

enum { HC_IDLE, HC_CONNECT, HC_BANNER, HC_EHLO, HC_QUIT };

static void hc_io(sd_handler *h, uint32_t ev);
static void hc_timer(sd_timer *t);

sd_upstreams *sd_upstreams_new(const sd_config *c, sd_loop *loop) {
  sd_upstreams *u = calloc(1, sizeof *u);
  if (u == NULL)
    return NULL;
  u->n = (uint32_t)c->nupstream;
  u->s = calloc(u->n ? u->n : 1, sizeof *u->s);
  if (u->s == NULL) {
    free(u);
    return NULL;
  }
  u->balance = c->balance;
  u->rise = c->health_rise;
  u->fall = c->health_fall;
  u->interval = c->health_interval;
  u->timeout = c->health_timeout;
  u->down_retry = c->down_retry;
  u->hostname = c->policy.hostname;
  u->identity = (int)c->policy.identity;
  u->implicit_tls = c->policy.upstream_tls == SL_UPTLS_IMPLICIT;
  u->starttls = c->policy.upstream_tls == SL_UPTLS_OPPORTUNISTIC ||
                c->policy.upstream_tls == SL_UPTLS_REQUIRED;
  u->loop = loop;
  for (uint32_t i = 0; i < u->n; i++) {
    sd_server *s = &u->s[i];
    s->owner = u;
    s->cfg = &c->upstream[i];
    s->index = i;
    s->up = 1;
    s->fd = -1;
    s->h.cb = hc_io;
    sd_timer_init(&s->timer, hc_timer);
  }
  return u;
}

static void hc_close(sd_server *s) {
  if (s->fd >= 0) {
    if (s->owner->loop)
      sd_loop_del(s->owner->loop, s->fd);
    close(s->fd);
    s->fd = -1;
  }
  s->hc_state = HC_IDLE;
}

void sd_upstreams_stop_checks(sd_upstreams *u) {
  if (u == NULL)
    return;
  for (uint32_t i = 0; i < u->n; i++) {
    hc_close(&u->s[i]);
    if (u->loop)
      sd_timer_stop(u->loop, &u->s[i].timer);
  }
  u->checking = 0;
}

void sd_upstreams_free(sd_upstreams *u) {
  if (u == NULL)
    return;
  sd_upstreams_stop_checks(u);
  free(u->s);
  free(u);
}

void sd_upstreams_start_checks(sd_upstreams *u, int run_here) {
  if (u->loop == NULL || u->interval == 0 || u->checking)
    return;
  u->checking = 1;
  u->checker = run_here;
  if (!run_here)
    return;
  /* The verdicts of this generation's servers start from "up". */
  for (uint32_t i = 0; i < u->n && sd_m; i++)
    if (i < SD_MAX_SERVERS)
      __atomic_store_n(&sd_m->srv_up[i], 1, __ATOMIC_RELAXED);
  uint64_t now = sd_loop_now(u->loop);
  /* Spread the first checks so N servers are not probed in one burst. */
  for (uint32_t i = 0; i < u->n; i++)
    sd_timer_set(u->loop, &u->s[i].timer,
                 now + (u->interval / (u->n + 1)) * i / 4 + SL_MSEC);
}

/* With active checks, the shared verdict is the server's state. */
static void sync_shared(sd_server *s) {
  if (s->owner->checking && sd_m && s->index < SD_MAX_SERVERS) {
    int up = __atomic_load_n(&sd_m->srv_up[s->index], __ATOMIC_RELAXED) != 0;
    if (up && !s->up)
      s->fails = 0;
    s->up = up;
  }
}

static int usable(sd_upstreams *u, sd_server *s, uint64_t now) {
  if (s->up)
    return 1;
  /* Without active checks a down server comes back on trial after
     down_retry; with checks, only a check brings it back. */
  return !u->checking && u->down_retry && now >= s->down_since + u->down_retry;
}

static sd_server *pick_among(sd_upstreams *u, uint64_t tried, uint64_t now,
                             int healthy) {
  sd_server *best = NULL;
  int64_t total = 0;
  for (uint32_t i = 0; i < u->n; i++) {
    sd_server *s = &u->s[i];
    if (tried & (1ull << i))
      continue;
    if (healthy && !usable(u, s, now))
      continue;
    if (u->balance == SD_BALANCE_LEASTCONN) {
      /* Least active/weight, compared by cross-multiplication; ties go to
         the round-robin state so equal servers alternate. */
      if (best == NULL ||
          (uint64_t)s->active * best->cfg->weight <
              (uint64_t)best->active * s->cfg->weight ||
          ((uint64_t)s->active * best->cfg->weight ==
               (uint64_t)best->active * s->cfg->weight &&
           s->cur_weight > best->cur_weight))
        best = s;
    } else {
      s->cur_weight += s->cfg->weight;
      total += s->cfg->weight;
      if (best == NULL || s->cur_weight > best->cur_weight)
        best = s;
    }
  }
  if (best == NULL)
    return NULL;
  if (u->balance == SD_BALANCE_LEASTCONN) {
    /* Rotate tie-breaking state. */
    for (uint32_t i = 0; i < u->n; i++)
      u->s[i].cur_weight++;
    best->cur_weight -= (int64_t)u->n + 1;
  } else {
    best->cur_weight -= total;
  }
  return best;
}

sd_server *sd_upstream_pick(sd_upstreams *u, uint64_t *tried, uint64_t now) {
  for (uint32_t i = 0; i < u->n; i++)
    sync_shared(&u->s[i]);
  sd_server *s = pick_among(u, *tried, now, 1);
  if (s == NULL)
    s = pick_among(u, *tried, now, 0);
  if (s == NULL)
    return NULL;
  *tried |= 1ull << s->index;
  s->picks++;
  return s;
}

void sd_upstream_acquire(sd_server *s) { s->active++; }

void sd_upstream_release(sd_server *s) {
  if (s->active)
    s->active--;
}

static void publish(const sd_server *s) {
  if (sd_m != NULL && s->index < SD_MAX_SERVERS)
    __atomic_store_n(&sd_m->srv_up[s->index], (uint64_t)s->up,
                     __ATOMIC_RELAXED);
}

static void mark(sd_server *s, int ok, uint64_t now, const char *why) {
  sd_upstreams *u = s->owner;
  sync_shared(s);
  int was_up = s->up;
  if (ok) {
    s->fails = 0;
    if (!s->up) {
      /* With checks, only the checker's passes bring a server back. */
      if (u->checking && !u->checker) {
      } else if (++s->oks >= u->rise || !u->checking) {
        s->up = 1;
        s->oks = 0;
        sd_log(SD_LOG_WARN, "upstream %s is up (%s)", s->cfg->text, why);
      }
    }
  } else {
    s->oks = 0;
    s->fails++;
    if (s->up && s->fails >= u->fall) {
      s->up = 0;
      s->down_since = now;
      sd_log(SD_LOG_WARN, "upstream %s is down (%s, %u failures)", s->cfg->text,
             why, s->fails);
    } else if (!s->up) {
      s->down_since = now;
    }
  }
  if (was_up != s->up)
    publish(s);
}

void sd_upstream_report(sd_server *s, int ok, uint64_t now) {
  if (!ok)
    s->connect_failures++;
  mark(s, ok, now, ok ? "session connected" : "session connect failed");
}

/* ---- active health check: connect, 220, EHLO, 250, QUIT ------------------ */

/* The EHLO reply just read says what sessions to s may send it. */
static void learn_caps(sd_server *s) {
  uint32_t f = 0;
  uint64_t size = 0;
  if (sl_ehlo_features((const uint8_t *)s->hc_buf, s->hc_rlen, &f, &size) !=
      0) {
    s->caps_known = 0;
    return;
  }
  /* Sessions that go on with STARTTLS see the EHLO reply given inside TLS,
     which the check (plain SMTP) cannot read; servers commonly add AUTH
     there.  AUTH is assumed and checked again by the relay at connect. */
  if (s->owner->starttls && (f & SL_FEAT_STARTTLS))
    f |= SL_FEAT_AUTH;
  if (!s->caps_known || s->caps != f || s->caps_size != size)
    sd_log(SD_LOG_DEBUG, "upstream %s offers features 0x%x, size %llu",
           s->cfg->text, f, (unsigned long long)size);
  s->caps_known = 1;
  s->caps = f;
  s->caps_size = size;
}

int sd_upstreams_features(const sd_upstreams *u, uint32_t *features,
                          uint64_t *size) {
  uint32_t f = SL_FEAT_ALL;
  uint64_t z = 0;
  int healthy = 0;
  if (u == NULL || !u->checking)
    return 0;
  for (uint32_t i = 0; i < u->n; i++) {
    const sd_server *s = &u->s[i];
    if (!s->up)
      continue;
    if (!s->caps_known)
      return 0;
    healthy = 1;
    f &= s->caps;
    if (s->caps_size && (z == 0 || s->caps_size < z))
      z = s->caps_size;
  }
  if (!healthy)
    return 0;
  *features = f;
  *size = z;
  return 1;
}

static void hc_done(sd_server *s, int ok, const char *why) {
  sd_upstreams *u = s->owner;
  hc_close(s);
  mark(s, ok, sd_loop_now(u->loop), why);
  if (!ok)
    sd_log(SD_LOG_DEBUG, "health check of %s failed: %s", s->cfg->text, why);
  sd_timer_set(u->loop, &s->timer, sd_loop_now(u->loop) + u->interval);
}

static void hc_timer(sd_timer *t) {
  sd_server *s = (sd_server *)(void *)((char *)t - offsetof(sd_server, timer));
  sd_upstreams *u = s->owner;
  if (s->hc_state != HC_IDLE) {
    hc_done(s, 0, "timeout");
    return;
  }
  int fd = socket(s->cfg->addr.ss.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    hc_done(s, 0, "socket");
    return;
  }
  s->fd = fd;
  s->hc_len = 0;
  if (connect(fd, (const struct sockaddr *)&s->cfg->addr.ss,
              s->cfg->addr.len) != 0 &&
      errno != EINPROGRESS) {
    hc_done(s, 0, "connect refused");
    return;
  }
  s->hc_state = HC_CONNECT;
  sd_loop_add(u->loop, fd, EPOLLOUT, &s->h);
  sd_timer_set(u->loop, &s->timer, sd_loop_now(u->loop) + u->timeout);
}

/* Returns the code of a complete (possibly multi-line) reply in hc_buf, 0
   if incomplete, -1 if malformed. */
static int hc_reply(sd_server *s) {
  uint32_t start = 0;
  for (uint32_t i = 0; i < s->hc_len; i++) {
    if (s->hc_buf[i] != '\n')
      continue;
    uint32_t ll = i + 1 - start;
    const char *l = s->hc_buf + start;
    if (ll < 4 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
        l[2] < '0' || l[2] > '9')
      return -1;
    if (l[3] == ' ' || l[3] == '\r') {
      int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
      s->hc_rlen = i + 1;
      s->hc_len = 0;
      return code;
    }
    if (l[3] != '-')
      return -1;
    start = i + 1;
  }
  if (s->hc_len == sizeof s->hc_buf)
    return -1;
  return 0;
}

static void hc_send(sd_server *s, const char *cmd) {
  size_t n = strlen(cmd);
  /* A few bytes into an empty socket buffer: a short write means the peer
     is broken, which the timeout then reports. */
  ssize_t w = send(s->fd, cmd, n, MSG_NOSIGNAL);
  (void)w;
}

static void hc_io(sd_handler *h, uint32_t ev) {
  sd_server *s = (sd_server *)(void *)((char *)h - offsetof(sd_server, h));
  sd_upstreams *u = s->owner;
  if (s->hc_state == HC_CONNECT) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
      hc_done(s, 0, "connect failed");
      return;
    }
    if (u->implicit_tls) {
      /* The check's SMTP client speaks no TLS: for implicit-TLS upstreams
         a completed TCP connect is the test. */
      hc_done(s, 1, "connect");
      return;
    }
    if (u->identity == SL_IDENT_PROXY_V1 || u->identity == SL_IDENT_PROXY_V2) {
      /* An upstream that expects PROXY from us expects it from the check
         too: say "no client" (v1 UNKNOWN, v2 LOCAL). */
      sl_addr none;
      uint8_t hdr[64];
      memset(&none, 0, sizeof none);
      long n = u->identity == SL_IDENT_PROXY_V1
                   ? sl_proxy_write_v1(hdr, sizeof hdr, &none, &none)
                   : sl_proxy_write_v2(hdr, sizeof hdr, &none, &none);
      if (n > 0) {
        ssize_t w = send(s->fd, hdr, (size_t)n, MSG_NOSIGNAL);
        (void)w;
      }
    }
    s->hc_state = HC_BANNER;
    sd_loop_mod(u->loop, s->fd, EPOLLIN, &s->h);
    return;
  }
  ssize_t n =
      recv(s->fd, s->hc_buf + s->hc_len, sizeof s->hc_buf - s->hc_len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    hc_done(s, s->hc_state == HC_QUIT, "connection closed");
    return;
  }
  s->hc_len += (uint32_t)n;
  int code = hc_reply(s);
  if (code == 0)
    return;
  if (code < 0) {
    hc_done(s, 0, "malformed reply");
    return;
  }
  char cmd[300];
  switch (s->hc_state) {
  case HC_BANNER:
    if (code != 220) {
      hc_done(s, 0, "banner not 220");
      return;
    }
    snprintf(cmd, sizeof cmd, "EHLO %s\r\n", u->hostname);
    hc_send(s, cmd);
    s->hc_state = HC_EHLO;
    break;
  case HC_EHLO:
    if (code != 250) {
      hc_done(s, 0, "EHLO not 250");
      return;
    }
    learn_caps(s);
    hc_send(s, "QUIT\r\n");
    s->hc_state = HC_QUIT;
    break;
  case HC_QUIT:
    hc_done(s, 1, "check passed");
    break;
  default:
    break;
  }
}
