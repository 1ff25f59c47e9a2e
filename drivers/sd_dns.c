/*
 * sd_dns.c: asynchronous A lookups with c-ares (1.18 API), for an event loop.
 */
#include "sd_dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <ares.h>

struct sd_dns {
  ares_channel ch;
  sd_dns_sock_cb sock_cb;
  void *sock_arg;
  size_t pending;
};

struct sd_dns_query {
  sd_dns *dns;
  sd_dns_cb cb;
  sd_dns_name_cb name_cb; /* PTR */
  sd_dns_aaaa_cb aaaa_cb; /* AAAA */
  sd_dns_strs_cb strs_cb; /* TXT, MX */
  int strs_type;
  void *arg;
  /* c-ares may complete a query from inside ares_query() (bad name, no
   * server it can send to).  The API promises never to call back from
   * sd_dns_query_a, so such an answer is caught here and turned into -1. */
  int submitting;
  int sync_done;
};

__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t errlen,
                                                       const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void on_sock_state(void *data, ares_socket_t fd, int readable,
                          int writable) {
  sd_dns *d = data;
  if (d->sock_cb != NULL)
    d->sock_cb(d->sock_arg, (int)fd, readable, writable);
}

static int status_of(int ares_status) {
  switch (ares_status) {
  case ARES_SUCCESS:
    return SD_DNS_OK;
  case ARES_ENOTFOUND: /* NXDOMAIN */
  case ARES_ENODATA:   /* the name exists, without A records */
    return SD_DNS_NOTFOUND;
  case ARES_ETIMEOUT:
    return SD_DNS_TIMEOUT;
  case ARES_ECANCELLED:
  case ARES_EDESTRUCTION:
    return SD_DNS_CANCELLED;
  default:
    return SD_DNS_ERROR;
  }
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                      int alen) {
  struct sd_dns_query *q = arg;
  struct ares_addrttl rr[SD_DNS_MAX_A];
  uint32_t a[SD_DNS_MAX_A];
  size_t n = 0;
  int st = status_of(status);
  sd_dns_cb cb;
  void *cb_arg;
  (void)timeouts;
  if (q->submitting) {
    q->sync_done = 1;
    return;
  }
  if (st == SD_DNS_OK) {
    int nrr = SD_DNS_MAX_A;
    int r = ares_parse_a_reply(abuf, alen, NULL, rr, &nrr);
    if (r == ARES_SUCCESS && nrr > 0) {
      for (n = 0; n < (size_t)nrr; n++)
        a[n] = ntohl(rr[n].ipaddr.s_addr);
    } else {
      /* An answer with only a CNAME chain and no A is NODATA too. */
      st = r == ARES_SUCCESS || r == ARES_ENODATA ? SD_DNS_NOTFOUND
                                                  : SD_DNS_ERROR;
    }
  }
  cb = q->cb;
  cb_arg = q->arg;
  q->dns->pending--;
  free(q);
  cb(cb_arg, st, a, n);
}

/* PTR: the first name.  AAAA: up to SD_DNS_MAX_A addresses. */
static void on_answer_other(void *arg, int status, int timeouts,
                            unsigned char *abuf, int alen) {
  struct sd_dns_query *q = arg;
  int st = status_of(status);
  (void)timeouts;
  if (q->submitting) {
    q->sync_done = 1;
    return;
  }
  char name[256] = "";
  struct ares_addr6ttl rr[SD_DNS_MAX_A];
  uint8_t a6[SD_DNS_MAX_A][16];
  size_t n = 0;
  if (st == SD_DNS_OK && q->name_cb) {
    struct hostent *h = NULL;
    int r = ares_parse_ptr_reply(abuf, alen, NULL, 0, AF_INET, &h);
    if (r == ARES_SUCCESS && h && h->h_name && strlen(h->h_name) < sizeof name)
      snprintf(name, sizeof name, "%s", h->h_name);
    else
      st = r == ARES_SUCCESS || r == ARES_ENODATA ? SD_DNS_NOTFOUND
                                                  : SD_DNS_ERROR;
    if (h)
      ares_free_hostent(h);
  } else if (st == SD_DNS_OK) {
    int nrr = SD_DNS_MAX_A;
    int r = ares_parse_aaaa_reply(abuf, alen, NULL, rr, &nrr);
    if (r == ARES_SUCCESS && nrr > 0)
      for (n = 0; n < (size_t)nrr; n++)
        memcpy(a6[n], &rr[n].ip6addr, 16);
    else
      st = r == ARES_SUCCESS || r == ARES_ENODATA ? SD_DNS_NOTFOUND
                                                  : SD_DNS_ERROR;
  }
  sd_dns_name_cb ncb = q->name_cb;
  sd_dns_aaaa_cb acb = q->aaaa_cb;
  void *cb_arg = q->arg;
  q->dns->pending--;
  free(q);
  if (ncb)
    ncb(cb_arg, st, st == SD_DNS_OK ? name : NULL);
  else
    acb(cb_arg, st, (const uint8_t(*)[16])a6, n);
}

sd_dns *sd_dns_new(const char *servers, int timeout_ms, int tries, char *err,
                   size_t errlen) {
  struct ares_options o;
  sd_dns *d;
  int r;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (timeout_ms <= 0 || tries < 1) {
    errf(err, errlen, "DNS timeout must be > 0 ms and tries >= 1");
    return NULL;
  }
  if (servers != NULL && servers[0] == '\0') {
    errf(err, errlen, "DNS server list is empty");
    return NULL;
  }
  r = ares_library_init(ARES_LIB_INIT_ALL);
  if (r != ARES_SUCCESS) {
    errf(err, errlen, "c-ares init: %s", ares_strerror(r));
    return NULL;
  }
  d = calloc(1, sizeof *d);
  if (d == NULL) {
    errf(err, errlen, "out of memory");
    ares_library_cleanup();
    return NULL;
  }
  memset(&o, 0, sizeof o);
  o.sock_state_cb = on_sock_state;
  o.sock_state_cb_data = d;
  o.timeout = timeout_ms;
  o.tries = tries;
  /* ares_query never searches, but a resolv.conf "options" line must not
   * turn lookups of DNSBL names into anything else either. */
  o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  o.ndots = 0;
  r = ares_init_options(&d->ch, &o,
                        ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                            ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_NDOTS);
  if (r != ARES_SUCCESS) {
    errf(err, errlen, "c-ares init: %s", ares_strerror(r));
    free(d);
    ares_library_cleanup();
    return NULL;
  }
  if (servers != NULL) {
    r = ares_set_servers_ports_csv(d->ch, servers);
    if (r != ARES_SUCCESS) {
      errf(err, errlen, "DNS server list \"%s\": %s", servers,
           ares_strerror(r));
      sd_dns_free(d);
      return NULL;
    }
  }
  return d;
}

void sd_dns_free(sd_dns *d) {
  if (d == NULL)
    return;
  ares_destroy(d->ch); /* runs the callbacks with ARES_EDESTRUCTION */
  free(d);
  ares_library_cleanup();
}

int sd_dns_query_a(sd_dns *d, const char *name, sd_dns_cb cb, void *arg) {
  struct sd_dns_query *q;
  if (name == NULL || name[0] == '\0' || cb == NULL)
    return -1;
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return -1;
  q->dns = d;
  q->cb = cb;
  q->arg = arg;
  q->submitting = 1;
  ares_query(d->ch, name, ns_c_in, ns_t_a, on_answer, q);
  q->submitting = 0;
  if (q->sync_done) { /* c-ares is done with q */
    free(q);
    return -1;
  }
  d->pending++;
  return 0;
}

static int query_other(sd_dns *d, const char *name, int type,
                       sd_dns_name_cb ncb, sd_dns_aaaa_cb acb, void *arg) {
  struct sd_dns_query *q;
  if (name == NULL || name[0] == '\0' || (ncb == NULL && acb == NULL))
    return -1;
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return -1;
  q->dns = d;
  q->name_cb = ncb;
  q->aaaa_cb = acb;
  q->arg = arg;
  q->submitting = 1;
  ares_query(d->ch, name, ns_c_in, type, on_answer_other, q);
  q->submitting = 0;
  if (q->sync_done) {
    free(q);
    return -1;
  }
  d->pending++;
  return 0;
}

/* TXT: each record's strings joined (RFC 7208 3.3), records longer than
   SD_DNS_TXT_MAX cut.  MX: the exchange names. */
static void on_answer_strs(void *arg, int status, int timeouts,
                           unsigned char *abuf, int alen) {
  struct sd_dns_query *q = arg;
  int st = status_of(status);
  (void)timeouts;
  if (q->submitting) {
    q->sync_done = 1;
    return;
  }
  static char buf[SD_DNS_MAX_A][SD_DNS_TXT_MAX];
  const char *strs[SD_DNS_MAX_A];
  size_t n = 0;
  if (st == SD_DNS_OK && q->strs_type == ns_t_txt) {
    struct ares_txt_ext *txt = NULL;
    int r = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (r == ARES_SUCCESS) {
      size_t len = 0;
      for (struct ares_txt_ext *t = txt; t; t = t->next) {
        if (t->record_start || n == 0) {
          if (n == SD_DNS_MAX_A)
            break;
          strs[n] = buf[n];
          buf[n][0] = 0;
          n++;
          len = 0;
        }
        size_t k = t->length < SD_DNS_TXT_MAX - 1 - len
                       ? t->length
                       : SD_DNS_TXT_MAX - 1 - len;
        memcpy(buf[n - 1] + len, t->txt, k);
        len += k;
        buf[n - 1][len] = 0;
      }
      ares_free_data(txt);
    } else {
      st = r == ARES_ENODATA ? SD_DNS_NOTFOUND : SD_DNS_ERROR;
    }
  } else if (st == SD_DNS_OK) {
    struct ares_mx_reply *mx = NULL;
    int r = ares_parse_mx_reply(abuf, alen, &mx);
    if (r == ARES_SUCCESS) {
      for (struct ares_mx_reply *m = mx; m && n < SD_DNS_MAX_A; m = m->next) {
        snprintf(buf[n], SD_DNS_TXT_MAX, "%s", m->host);
        strs[n] = buf[n];
        n++;
      }
      ares_free_data(mx);
    } else {
      st = r == ARES_ENODATA ? SD_DNS_NOTFOUND : SD_DNS_ERROR;
    }
  }
  if (st == SD_DNS_OK && n == 0)
    st = SD_DNS_NOTFOUND;
  sd_dns_strs_cb cb = q->strs_cb;
  void *cb_arg = q->arg;
  q->dns->pending--;
  free(q);
  cb(cb_arg, st, strs, st == SD_DNS_OK ? n : 0);
}

int sd_dns_query_strs(sd_dns *d, const char *name, int mx, sd_dns_strs_cb cb,
                      void *arg) {
  struct sd_dns_query *q;
  if (name == NULL || name[0] == '\0' || cb == NULL)
    return -1;
  q = calloc(1, sizeof *q);
  if (q == NULL)
    return -1;
  q->dns = d;
  q->strs_cb = cb;
  q->strs_type = mx ? ns_t_mx : ns_t_txt;
  q->arg = arg;
  q->submitting = 1;
  ares_query(d->ch, name, ns_c_in, q->strs_type, on_answer_strs, q);
  q->submitting = 0;
  if (q->sync_done) {
    free(q);
    return -1;
  }
  d->pending++;
  return 0;
}

int sd_dns_query_ptr(sd_dns *d, const char *name, sd_dns_name_cb cb,
                     void *arg) {
  return query_other(d, name, ns_t_ptr, cb, NULL, arg);
}

int sd_dns_query_aaaa(sd_dns *d, const char *name, sd_dns_aaaa_cb cb,
                      void *arg) {
  return query_other(d, name, ns_t_aaaa, NULL, cb, arg);
}

void sd_dns_set_sock_cb(sd_dns *d, sd_dns_sock_cb cb, void *arg) {
  d->sock_cb = cb;
  d->sock_arg = arg;
}

void sd_dns_process_fd(sd_dns *d, int fd, int readable, int writable) {
  ares_process_fd(d->ch, readable ? (ares_socket_t)fd : ARES_SOCKET_BAD,
                  writable ? (ares_socket_t)fd : ARES_SOCKET_BAD);
}

int sd_dns_next_timeout_ms(sd_dns *d, int max_ms) {
  struct timeval maxtv, tv, *t;
  long long ms;
  if (max_ms >= 0) {
    maxtv.tv_sec = max_ms / 1000;
    maxtv.tv_usec = (max_ms % 1000) * 1000;
    t = ares_timeout(d->ch, &maxtv, &tv);
  } else {
    t = ares_timeout(d->ch, NULL, &tv);
  }
  if (t == NULL)
    return -1;
  /* Round up: waking a fraction of a ms early would find nothing expired
   * and spin. */
  ms = (long long)t->tv_sec * 1000 + (t->tv_usec + 999) / 1000;
  if (ms < 0)
    ms = 0;
  if (max_ms >= 0 && ms > max_ms)
    ms = max_ms;
  if (ms > 0x7fffffff)
    ms = 0x7fffffff;
  return (int)ms;
}

void sd_dns_process_timeouts(sd_dns *d) {
  ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

size_t sd_dns_pending(const sd_dns *d) { return d->pending; }
