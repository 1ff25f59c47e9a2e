/*
 * sd_metrics.c: OpenMetrics text and the tiny HTTP responder.
 */
#include "sd_metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

sd_metrics *sd_m;

sd_metrics *sd_metrics_init(void) {
  void *p = mmap(NULL, sizeof(sd_metrics), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  memset(p, 0, sizeof(sd_metrics));
  sd_m = p;
  sd_m->start_unix = (uint64_t)time(NULL);
  return sd_m;
}

/* Bucket bounds in each histogram's unit. */
static const uint64_t bounds[SD_H_COUNT][SD_HIST_BUCKETS] = {
    /* session seconds, in us */
    {10000, 50000, 100000, 500000, 1000000, 5000000, 10000000, 30000000,
     60000000, 120000000, 300000000, 600000000},
    /* tarpit delay per session, in us */
    {1000, 10000, 100000, 500000, 1000000, 2000000, 5000000, 10000000, 30000000,
     60000000, 120000000, 300000000},
    /* message size, bytes */
    {1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 10485760, 26214400,
     52428800, 104857600, 1073741824}};
static const int hist_is_time[SD_H_COUNT] = {1, 1, 0};
/* filter latency, in us */
static const uint64_t flt_bounds[SD_HIST_BUCKETS] = {
    1000,   5000,   10000,   25000,   50000,   100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000};

void sd_filter_observe(size_t filter, int verdict, const char *fail,
                       uint64_t us) {
  if (sd_m == NULL || filter >= SD_MAX_FILTERS)
    return;
  if (verdict >= 0 && verdict < 5) {
    __atomic_fetch_add(&sd_m->flt_verdict[filter][verdict], 1,
                       __ATOMIC_RELAXED);
  } else {
    int k = !fail                      ? 3
            : !strcmp(fail, "refused") ? 0
            : !strcmp(fail, "timeout") ? 1
            : !strcmp(fail, "garbage") ? 2
                                       : 3;
    __atomic_fetch_add(&sd_m->flt_fail[filter][k], 1, __ATOMIC_RELAXED);
  }
  int b = 0;
  while (b < SD_HIST_BUCKETS && us > flt_bounds[b])
    b++;
  __atomic_fetch_add(&sd_m->flt_hist[filter][b], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&sd_m->flt_sum[filter], us, __ATOMIC_RELAXED);
}

void sd_metrics_filter_names(const char *const *names, size_t n) {
  if (sd_m == NULL)
    return;
  if (n > SD_MAX_FILTERS)
    n = SD_MAX_FILTERS;
  for (size_t i = 0; i < n; i++)
    snprintf(sd_m->filter_name[i], sizeof sd_m->filter_name[i], "%s", names[i]);
  __atomic_store_n(&sd_m->nfilters, (uint64_t)n, __ATOMIC_RELAXED);
}
static const char *const hist_names[SD_H_COUNT] = {
    "sluice_session_duration_seconds", "sluice_session_tarpit_delay_seconds",
    "sluice_message_size_bytes"};
static const char *const hist_help[SD_H_COUNT] = {
    "Session duration from accept to close.",
    "Time replies were held by the tarpit per session.",
    "Size of messages relayed upstream."};

void sd_observe(enum sd_hist h, uint64_t v) {
  if (sd_m == NULL)
    return;
  int b = 0;
  while (b < SD_HIST_BUCKETS && v > bounds[h][b])
    b++;
  __atomic_fetch_add(&sd_m->hist[h][b], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&sd_m->hist_sum[h], v, __ATOMIC_RELAXED);
  __atomic_fetch_add(&sd_m->hist_count[h], 1, __ATOMIC_RELAXED);
}

void sd_gauge_set(uint64_t *slot, uint64_t v) {
  __atomic_store_n(slot, v, __ATOMIC_RELAXED);
}

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void
sb_printf(sbuf *b, const char *fmt, ...) {
  for (int tries = 0; tries < 2 && !b->oom; tries++) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
      return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = (b->cap + (size_t)n) * 2;
    char *np = realloc(b->p, cap);
    if (np == NULL) {
      b->oom = 1;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
}

static uint64_t ld(const uint64_t *p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void render_filters(sbuf *b);

static void counter(sbuf *b, const char *name, const char *help,
                    const char *label, const enum sd_counter *cs,
                    const char *const *vals, size_t n) {
  sb_printf(b, "# TYPE %s counter\n# HELP %s %s\n", name, name, help);
  for (size_t i = 0; i < n; i++) {
    if (label)
      sb_printf(b, "%s_total{%s=\"%s\"} %" PRIu64 "\n", name, label, vals[i],
                ld(&sd_m->c[cs[i]]));
    else
      sb_printf(b, "%s_total %" PRIu64 "\n", name, ld(&sd_m->c[cs[i]]));
  }
}

static void fmt_bound(char *out, size_t len, enum sd_hist h, uint64_t v) {
  if (hist_is_time[h])
    snprintf(out, len, "%" PRIu64 ".%06" PRIu64, v / 1000000u, v % 1000000u);
  else
    snprintf(out, len, "%" PRIu64 ".0", v);
}

char *sd_metrics_render(size_t *len, const char *const *server_names,
                        size_t nservers) {
  sbuf b = {malloc(16384), 0, 16384, 0};
  if (b.p == NULL)
    return NULL;
#define C1(name, help, c)                                                      \
  do {                                                                         \
    enum sd_counter cs_[] = {c};                                               \
    counter(&b, name, help, NULL, cs_, NULL, 1);                               \
  } while (0)
  C1("sluice_connections_accepted", "Client connections given a relay.",
     SD_C_ACCEPTED);
  {
    enum sd_counter cs[] = {SD_C_REJECT_CAP, SD_C_REJECT_EMFILE,
                            SD_C_REJECT_NOMEM};
    const char *v[] = {"global_cap", "fd_limit", "no_memory"};
    counter(&b, "sluice_connections_refused",
            "Connections answered 421 and closed at accept.", "reason", cs, v,
            3);
  }
  {
    enum sd_counter cs[] = {SD_C_ADMIT_TARPIT, SD_C_ADMIT_TEMPFAIL};
    const char *v[] = {sl_admission_name(SL_ADMIT_TARPIT),
                       sl_admission_name(SL_ADMIT_TEMPFAIL)};
    counter(&b, "sluice_admission_limited",
            "Per-client limits applied at accept.", "verdict", cs, v, 2);
  }
  {
    /* the core's end reasons by name; "none" is the driver's own end */
#define CS_(name, value, text) SD_C_END_##name,
#define V_(name, value, text) value == SL_END_NONE ? "other" : text,
    enum sd_counter cs[] = {SL_END_REASON_MAP(CS_)};
    const char *v[] = {SL_END_REASON_MAP(V_)};
#undef CS_
#undef V_
    counter(&b, "sluice_sessions", "Sessions ended, by reason.", "end", cs, v,
            sizeof cs / sizeof cs[0]);
  }
  {
    enum sd_counter cs[] = {SD_C_MSG_ACCEPTED, SD_C_MSG_REJECTED,
                            SD_C_MSG_TEMPFAILED};
    const char *v[] = {"accepted", "rejected", "tempfailed"};
    counter(&b, "sluice_messages", "Messages by the upstream's verdict.",
            "result", cs, v, 3);
  }
  C1("sluice_recipients_accepted", "Recipients accepted.", SD_C_RCPT_ACCEPTED);
  {
    enum sd_counter cs[] = {SD_C_STATE_SHARED, SD_C_STATE_TIMEOUT,
                            SD_C_STATE_DOWN, SD_C_STATE_ERROR};
    const char *v[] = {"shared", "timeout", "down", "error"};
    counter(
        &b, "sluice_state_lookups",
        "Shared-state lookups: answered by Redis, or the local verdict used.",
        "result", cs, v, 4);
  }
  {
    enum sd_counter cs[] = {SD_C_STATE_CONNECTS, SD_C_STATE_DISCONNECTS,
                            SD_C_STATE_AUTH_FAILED, SD_C_STATE_TLS_FAILED};
    const char *v[] = {"connected", "lost", "auth_failed", "tls_failed"};
    counter(&b, "sluice_state_connections",
            "Redis connections made, lost, refused at AUTH, failed at TLS.",
            "event", cs, v, 4);
  }
  C1("sluice_screen_pass_old",
     "Sessions that skipped screening: passed it before.",
     SD_C_SCREEN_PASS_OLD);
  C1("sluice_proxy_probes",
     "Proxy-listener connections closed before a PROXY header.",
     SD_C_PROXY_PROBES);
  C1("sluice_recipients_relay_denied", "Recipients refused by relay control.",
     SD_C_RCPT_RELAY_DENIED);
  {
    enum sd_counter cs[] = {SD_C_CLIENT_IN, SD_C_CLIENT_OUT, SD_C_UP_IN,
                            SD_C_UP_OUT};
    const char *v[] = {"client_in", "client_out", "upstream_in",
                       "upstream_out"};
    counter(&b, "sluice_bytes", "Bytes moved (plaintext).", "direction", cs, v,
            4);
  }
  {
    enum sd_counter cs[] = {SD_C_PREGREET, SD_C_TARPITTED,
                            SD_C_STARTTLS_INJECTION, SD_C_SMUGGLING};
    /* the events' names, but "tarpitted": a session counts once however
       it got the suspect profile */
    const char *v[] = {sl_event_name(SL_EV_PREGREET), "tarpitted",
                       sl_event_name(SL_EV_STARTTLS_INJECTION),
                       sl_event_name(SL_EV_SMUGGLING)};
    counter(&b, "sluice_screening", "Screening verdicts, per session.",
            "verdict", cs, v, 4);
  }
  {
    enum sd_counter cs[] = {SD_C_DNS_LISTED, SD_C_DNS_NOTLISTED,
                            SD_C_DNS_TIMEOUT, SD_C_DNS_ERROR};
    const char *v[] = {"answer", "nxdomain", "timeout", "error"};
    counter(&b, "sluice_dnsbl_lookups", "DNSBL/DNSWL lookups by outcome.",
            "result", cs, v, 4);
  }
  {
    enum sd_counter cs[] = {SD_C_TLS_CLIENT_OK, SD_C_TLS_CLIENT_FAIL};
    const char *v[] = {"ok", "failed"};
    counter(&b, "sluice_tls_client_handshakes",
            "TLS handshakes on the client leg.", "result", cs, v, 2);
  }
  {
    enum sd_counter cs[] = {SD_C_TLS_UP_OK, SD_C_TLS_UP_FAIL};
    const char *v[] = {"ok", "failed"};
    counter(&b, "sluice_tls_upstream_handshakes",
            "TLS handshakes toward upstreams.", "result", cs, v, 2);
  }
  {
#define CS_(name, value, text) SD_C_UPFAIL_##name,
#define V_(name, value, text) text,
    enum sd_counter cs[] = {SL_UPSTREAM_FAILURE_MAP(CS_)};
    const char *v[] = {SL_UPSTREAM_FAILURE_MAP(V_)};
#undef CS_
#undef V_
    counter(&b, "sluice_upstream_failures",
            "Upstream failures seen by sessions.", "kind", cs, v,
            sizeof cs / sizeof cs[0]);
  }
  {
    enum sd_counter cs[] = {SD_C_RELOADS, SD_C_RELOAD_FAILURES};
    const char *v[] = {"ok", "failed"};
    counter(&b, "sluice_config_reloads", "SIGHUP reloads.", "result", cs, v, 2);
  }
  uint64_t active = 0, pool = 0;
  for (int i = 0; i < SD_MAX_WORKERS; i++) {
    active += ld(&sd_m->active[i]);
    pool += ld(&sd_m->pool_bytes[i]);
  }
  sb_printf(&b,
            "# TYPE sluice_connections_active gauge\n# HELP "
            "sluice_connections_active "
            "Sessions open now.\nsluice_connections_active %" PRIu64 "\n",
            active);
  sb_printf(&b,
            "# TYPE sluice_pool_bytes gauge\n# HELP sluice_pool_bytes "
            "Buffer-pool memory "
            "allocated.\nsluice_pool_bytes %" PRIu64 "\n",
            pool);
  sb_printf(&b, "# TYPE sluice_upstream_connects counter\n# HELP "
                "sluice_upstream_connects "
                "Upstream connection attempts by server and result.\n");
  for (size_t i = 0; i < nservers && i < SD_MAX_SERVERS; i++) {
    sb_printf(
        &b,
        "sluice_upstream_connects_total{server=\"%s\",result=\"ok\"} %" PRIu64
        "\n",
        server_names[i], ld(&sd_m->srv_connect_ok[i]));
    sb_printf(&b,
              "sluice_upstream_connects_total{server=\"%s\",result=\"failed\"} "
              "%" PRIu64 "\n",
              server_names[i], ld(&sd_m->srv_connect_fail[i]));
  }
  sb_printf(&b, "# TYPE sluice_upstream_up gauge\n# HELP sluice_upstream_up 1 "
                "if the server "
                "is considered healthy.\n");
  for (size_t i = 0; i < nservers && i < SD_MAX_SERVERS; i++)
    sb_printf(&b, "sluice_upstream_up{server=\"%s\"} %" PRIu64 "\n",
              server_names[i], ld(&sd_m->srv_up[i]));
  for (int h = 0; h < SD_H_COUNT; h++) {
    sb_printf(&b, "# TYPE %s histogram\n# HELP %s %s\n", hist_names[h],
              hist_names[h], hist_help[h]);
    uint64_t cum = 0;
    char bound[40];
    for (int i = 0; i < SD_HIST_BUCKETS; i++) {
      cum += ld(&sd_m->hist[h][i]);
      fmt_bound(bound, sizeof bound, (enum sd_hist)h, bounds[h][i]);
      sb_printf(&b, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", hist_names[h], bound,
                cum);
    }
    cum += ld(&sd_m->hist[h][SD_HIST_BUCKETS]);
    sb_printf(&b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", hist_names[h], cum);
    uint64_t sum = ld(&sd_m->hist_sum[h]);
    if (hist_is_time[h])
      sb_printf(&b, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", hist_names[h],
                sum / 1000000u, sum % 1000000u);
    else
      sb_printf(&b, "%s_sum %" PRIu64 "\n", hist_names[h], sum);
    sb_printf(&b, "%s_count %" PRIu64 "\n", hist_names[h], cum);
  }
  render_filters(&b);
  sb_printf(&b, "# EOF\n");
  if (b.oom) {
    free(b.p);
    return NULL;
  }
  *len = b.len;
  return b.p;
}

static void render_filters(sbuf *b) {
  size_t n = (size_t)ld(&sd_m->nfilters);
  if (n == 0)
    return;
  static const char *const verdicts[] = {"accept", "change", "discard",
                                         "tempfail", "reject"};
  static const char *const fails[] = {"refused", "timeout", "garbage", "other"};
  sb_printf(
      b, "# TYPE sluice_filter_verdicts counter\n# HELP sluice_filter_verdicts "
         "Content filter answers, by filter and verdict.\n");
  for (size_t i = 0; i < n; i++)
    for (int v = 0; v < 5; v++)
      sb_printf(
          b,
          "sluice_filter_verdicts_total{filter=\"%s\",verdict=\"%s\"} %" PRIu64
          "\n",
          sd_m->filter_name[i], verdicts[v], ld(&sd_m->flt_verdict[i][v]));
  sb_printf(
      b, "# TYPE sluice_filter_failures counter\n# HELP sluice_filter_failures "
         "Content filters that failed (counted as filter_default_action).\n");
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < 4; k++)
      sb_printf(
          b,
          "sluice_filter_failures_total{filter=\"%s\",reason=\"%s\"} %" PRIu64
          "\n",
          sd_m->filter_name[i], fails[k], ld(&sd_m->flt_fail[i][k]));
  sb_printf(
      b, "# TYPE sluice_filter_seconds histogram\n# HELP sluice_filter_seconds "
         "Time from the end of a message to each filter's answer.\n");
  for (size_t i = 0; i < n; i++) {
    uint64_t cum = 0;
    for (int k = 0; k < SD_HIST_BUCKETS; k++) {
      cum += ld(&sd_m->flt_hist[i][k]);
      sb_printf(b,
                "sluice_filter_seconds_bucket{filter=\"%s\",le=\"%" PRIu64
                ".%06" PRIu64 "\"} %" PRIu64 "\n",
                sd_m->filter_name[i], flt_bounds[k] / 1000000u,
                flt_bounds[k] % 1000000u, cum);
    }
    cum += ld(&sd_m->flt_hist[i][SD_HIST_BUCKETS]);
    sb_printf(b,
              "sluice_filter_seconds_bucket{filter=\"%s\",le=\"+Inf\"} %" PRIu64
              "\n",
              sd_m->filter_name[i], cum);
    uint64_t sum = ld(&sd_m->flt_sum[i]);
    sb_printf(b,
              "sluice_filter_seconds_sum{filter=\"%s\"} %" PRIu64 ".%06" PRIu64
              "\n",
              sd_m->filter_name[i], sum / 1000000u, sum % 1000000u);
    sb_printf(b, "sluice_filter_seconds_count{filter=\"%s\"} %" PRIu64 "\n",
              sd_m->filter_name[i], cum);
  }
}

/* ---- HTTP/1.0 responder -------------------------------------------------- */

#define HTTP_MAX_CLIENTS 16
#define HTTP_TIMEOUT (5 * 1000000000ull)

typedef struct http_client {
  sd_handler h;
  sd_timer timer;
  struct sd_metrics_http *m;
  int fd;
  char req[2048];
  size_t reqlen;
  char *resp;
  size_t resplen, sent;
} http_client;

struct sd_metrics_http {
  sd_handler h;
  sd_timer pause; /* re-arms the listener after EMFILE */
  sd_loop *loop;
  int fd;
  void (*names_fn)(void *, const char *const **, size_t *);
  void *arg;
  http_client *clients[HTTP_MAX_CLIENTS];
};

static void client_close(http_client *c) {
  sd_loop_del(c->m->loop, c->fd);
  close(c->fd);
  sd_timer_stop(c->m->loop, &c->timer);
  for (int i = 0; i < HTTP_MAX_CLIENTS; i++)
    if (c->m->clients[i] == c)
      c->m->clients[i] = NULL;
  free(c->resp);
  free(c);
}

static void client_timeout(sd_timer *t) {
  client_close(
      (http_client *)(void *)((char *)t - offsetof(http_client, timer)));
}

static void respond(http_client *c, const char *status, const char *ctype,
                    const char *body, size_t blen) {
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n\r\n",
                    status, ctype, blen);
  c->resp = malloc((size_t)hn + blen);
  if (c->resp == NULL) {
    client_close(c);
    return;
  }
  memcpy(c->resp, head, (size_t)hn);
  memcpy(c->resp + hn, body, blen);
  c->resplen = (size_t)hn + blen;
  c->sent = 0;
  sd_loop_mod(c->m->loop, c->fd, EPOLLOUT, &c->h);
}

static void client_io(sd_handler *h, uint32_t ev) {
  http_client *c = (http_client *)(void *)h;
  (void)ev;
  if (c->resp != NULL) {
    while (c->sent < c->resplen) {
      ssize_t n =
          send(c->fd, c->resp + c->sent, c->resplen - c->sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN)
        return;
      if (n <= 0)
        break;
      c->sent += (size_t)n;
    }
    client_close(c);
    return;
  }
  ssize_t n = recv(c->fd, c->req + c->reqlen, sizeof c->req - 1 - c->reqlen, 0);
  if (n < 0 && errno == EAGAIN)
    return;
  if (n <= 0) {
    client_close(c);
    return;
  }
  c->reqlen += (size_t)n;
  c->req[c->reqlen] = '\0';
  if (strstr(c->req, "\r\n\r\n") == NULL && strstr(c->req, "\n\n") == NULL) {
    if (c->reqlen == sizeof c->req - 1)
      respond(c, "431 Too Large", "text/plain", "too large\n", 10);
    return;
  }
  if (strncmp(c->req, "GET /metrics ", 13) == 0 ||
      strncmp(c->req, "GET /metrics\r", 13) == 0) {
    const char *const *names = NULL;
    size_t nn = 0;
    if (c->m->names_fn)
      c->m->names_fn(c->m->arg, &names, &nn);
    size_t len;
    char *body = sd_metrics_render(&len, names, nn);
    if (body == NULL) {
      respond(c, "500 Internal Server Error", "text/plain", "out of memory\n",
              14);
      return;
    }
    respond(c, "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8", body,
            len);
    free(body);
  } else if (strncmp(c->req, "GET ", 4) == 0) {
    respond(c, "404 Not Found", "text/plain", "try /metrics\n", 13);
  } else {
    respond(c, "405 Method Not Allowed", "text/plain", "GET only\n", 9);
  }
}

static void listener_io(sd_handler *h, uint32_t ev) {
  sd_metrics_http *m = (sd_metrics_http *)(void *)h;
  (void)ev;
  for (int k = 0; k < 8; k++) {
    int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        /* Level-triggered epoll would report the waiting scraper again at
           once: stop listening for a second instead of spinning. */
        sd_loop_del(m->loop, m->fd);
        sd_timer_set(m->loop, &m->pause, sd_loop_now(m->loop) + 1000000000ull);
      }
      return;
    }
    int slot = -1;
    for (int i = 0; i < HTTP_MAX_CLIENTS; i++)
      if (m->clients[i] == NULL)
        slot = i;
    http_client *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
    if (c == NULL) {
      /* Scrapers are few; more than 16 at once is abuse of a local port. */
      close(fd);
      continue;
    }
    c->h.cb = client_io;
    c->m = m;
    c->fd = fd;
    sd_timer_init(&c->timer, client_timeout);
    m->clients[slot] = c;
    sd_loop_add(m->loop, fd, EPOLLIN, &c->h);
    sd_timer_set(m->loop, &c->timer, sd_loop_now(m->loop) + HTTP_TIMEOUT);
  }
}

static void listener_resume(sd_timer *t) {
  sd_metrics_http *m =
      (sd_metrics_http *)(void *)((char *)t - offsetof(sd_metrics_http, pause));
  sd_loop_add(m->loop, m->fd, EPOLLIN, &m->h);
}

sd_metrics_http *
sd_metrics_http_new(sd_loop *loop, int listen_fd,
                    void (*names_fn)(void *, const char *const **, size_t *),
                    void *arg) {
  sd_metrics_http *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  m->h.cb = listener_io;
  m->loop = loop;
  m->fd = listen_fd;
  m->names_fn = names_fn;
  m->arg = arg;
  sd_timer_init(&m->pause, listener_resume);
  if (sd_loop_add(loop, listen_fd, EPOLLIN, &m->h) != 0) {
    free(m);
    return NULL;
  }
  return m;
}

void sd_metrics_http_free(sd_metrics_http *m) {
  if (m == NULL)
    return;
  for (int i = 0; i < HTTP_MAX_CLIENTS; i++)
    if (m->clients[i])
      client_close(m->clients[i]);
  sd_timer_stop(m->loop, &m->pause);
  sd_loop_del(m->loop, m->fd);
  free(m);
}
