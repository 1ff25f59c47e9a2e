/*
 * sd_gen.c: configuration generations (see sd_gen.h).
 */
#include "sd_gen.h"
#include "sd_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>

#include "sd_log.h"
#include "sluice/ratelim.h"

static void dns_sock(void *arg, int fd, int want_read, int want_write);

static void dns_fd_io(sd_handler *h, uint32_t ev) {
  sd_dns_fd *d = (sd_dns_fd *)(void *)h;
  sd_gen *g = d->g;
  /* Stopped watching it earlier in this batch. */
  if (d->fd < 0)
    return;
  /* Callbacks may end sessions that hold the last ref. */
  sd_gen_ref(g);
  sd_dns_process_fd(g->dns, d->fd, (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0,
                    (ev & EPOLLOUT) != 0);
  sd_gen_unref(g);
}

static void dns_sock(void *arg, int fd, int want_read, int want_write) {
  sd_gen *g = arg;
  sd_loop *loop = g->host->loop;
  uint32_t ev = (want_read ? EPOLLIN : 0u) | (want_write ? EPOLLOUT : 0u);
  sd_dns_fd *slot = NULL, *free_slot = NULL;
  for (int i = 0; i < SD_DNS_FDS_MAX; i++) {
    if (g->dnsfd[i].fd == fd)
      slot = &g->dnsfd[i];
    else if (g->dnsfd[i].fd < 0 && free_slot == NULL)
      free_slot = &g->dnsfd[i];
  }
  if (ev == 0) {
    if (slot) {
      sd_loop_del(loop, fd);
      slot->fd = -1;
    }
    return;
  }
  if (slot) {
    if (slot->events != ev)
      sd_loop_mod(loop, fd, ev, &slot->h);
    slot->events = ev;
    return;
  }
  if (free_slot == NULL) {
    sd_log(SD_LOG_ERR, "too many DNS sockets");
    return;
  }
  free_slot->fd = fd;
  free_slot->events = ev;
  sd_loop_add(loop, fd, ev, &free_slot->h);
}

static void dns_timer_cb(sd_timer *t) {
  sd_gen *g = (sd_gen *)(void *)((char *)t - offsetof(sd_gen, dns_timer));
  sd_gen_ref(g);
  sd_dns_process_timeouts(g->dns);
  sd_gen_unref(g);
}

sd_gen *sd_gen_new(sd_gen_host *host, sd_config *cfg, char *err,
                   size_t errlen) {
  sd_gen *g = calloc(1, sizeof *g);
  if (g == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  g->refs = 1;
  g->host = host;
  g->cfg = sd_config_ref(cfg);
  for (int i = 0; i < SD_DNS_FDS_MAX; i++) {
    g->dnsfd[i].fd = -1;
    g->dnsfd[i].g = g;
    g->dnsfd[i].h.cb = dns_fd_io;
  }
  sd_timer_init(&g->dns_timer, dns_timer_cb);
  {
    /* metric labels of this generation's content filters */
    const char *names[SD_MAX_FILTERS];
    size_t nf = cfg->nfilters < SD_MAX_FILTERS ? cfg->nfilters : SD_MAX_FILTERS;
    for (size_t i = 0; i < nf; i++)
      names[i] = cfg->filters[i].name;
    sd_metrics_filter_names(names, nf);
  }
  if (cfg->tls_cert) {
    sd_tls_sni sni[64];
    size_t nsni = cfg->nsni < 64 ? cfg->nsni : 64;
    for (size_t i = 0; i < nsni; i++) {
      sni[i].hostname = cfg->sni[i].hostname;
      sni[i].cert_file = cfg->sni[i].cert;
      sni[i].key_file = cfg->sni[i].key;
    }
    g->tls_server = sd_tls_server_ctx_new(
        cfg->tls_cert, cfg->tls_key, cfg->tls_ciphers, cfg->tls_ciphersuites,
        nsni ? sni : NULL, nsni, err, errlen);
    if (g->tls_server == NULL)
      goto bad;
  }
  g->tls_client =
      sd_tls_client_ctx_new(cfg->upstream_tls_verify, cfg->upstream_tls_ca,
                            cfg->upstream_tls_ciphers, err, errlen);
  if (g->tls_client == NULL)
    goto bad;
  if (cfg->policy.ndnsbl > 0 ||
      (cfg->greylist && (cfg->greylist_spf || cfg->greylist_asn_zone ||
                         cfg->greylist_asn6_zone)) ||
      (cfg->client_name_lookup &&
       (cfg->policy.identity == SL_IDENT_XCLIENT ||
        cfg->policy.identity == SL_IDENT_XFORWARD))) {
    g->dns = sd_dns_new(cfg->dns_servers, (int)(cfg->dns_timeout / SL_MSEC),
                        (int)cfg->dns_tries, err, errlen);
    if (g->dns == NULL)
      goto bad;
    sd_dns_set_sock_cb(g->dns, dns_sock, g);
  }
  g->ups = sd_upstreams_new(cfg, host ? host->loop : NULL);
  if (g->ups == NULL) {
    snprintf(err, errlen, "out of memory");
    goto bad;
  }
  for (size_t i = 0; i < cfg->nupstream && i < SD_MAX_SERVERS; i++)
    g->server_names[i] = cfg->upstream[i].text;
  sd_pool_init(&g->pool, cfg->limits.small_buffer_size, cfg->limits.buffer_size,
               (size_t)cfg->pool_memory, cfg->pool_keep_free);
  sd_pool_as_sl_pool(&g->pool, &g->slpool);
  if (host)
    sd_pool_set_budget(&g->pool, host->budget);
  if (sl_ratelim_size(&cfg->ratelim) == 0) {
    snprintf(
        err, errlen,
        "%s: the per-client limits table cannot be set up (ratelim_entries?)",
        cfg->path ? cfg->path : "config");
    goto bad;
  }
  if (host) {
    g->next = *host->gens;
    *host->gens = g;
  }
  return g;
bad:
  if (g->dns)
    sd_dns_free(g->dns);
  sd_upstreams_free(g->ups);
  sd_tls_ctx_free(g->tls_server);
  sd_tls_ctx_free(g->tls_client);
  sd_config_unref(g->cfg);
  free(g);
  return NULL;
}

sd_gen *sd_gen_ref(sd_gen *g) {
  g->refs++;
  return g;
}

static void gen_release(void *arg) { free(arg); }

void sd_gen_unref(sd_gen *g) {
  if (g == NULL || --g->refs > 0)
    return;
  sd_gen_host *host = g->host;
  if (host) {
    for (sd_gen **pp = host->gens; *pp; pp = &(*pp)->next)
      if (*pp == g) {
        *pp = g->next;
        break;
      }
    sd_timer_stop(host->loop, &g->dns_timer);
  }
  if (g->dns)
    sd_dns_free(g->dns); /* cancels: sessions are gone by now */
  sd_upstreams_free(g->ups);
  sd_tls_ctx_free(g->tls_server);
  sd_tls_ctx_free(g->tls_client);
  sd_pool_destroy(&g->pool);
  sd_config_unref(g->cfg);
  /* Its DNS fd handlers may have events pending in this batch. */
  for (int i = 0; i < SD_DNS_FDS_MAX; i++)
    g->dnsfd[i].fd = -1;
  if (host && !*host->stop)
    sd_loop_defer(host->loop, gen_release, g);
  else
    free(g);
}
