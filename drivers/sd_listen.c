/*
 * sd_listen.c: exclusive listening ports (see sd_listen.h).
 */
#include "sd_listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int same_addr(const sd_sockaddr *a, const sd_sockaddr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* A socket of lc's family, IPv6 sockets IPv6-only (as the listeners). */
static int new_socket(const sd_listen_cfg *lc) {
  int fd = socket(lc->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0 && lc->addr.ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  return fd;
}

static int guard_one(const sd_listen_cfg *lc, int *out, char *err,
                     size_t errlen) {
  /* The probe: SO_REUSEADDR (connections of an earlier run in TIME_WAIT
     must not block a restart) but not SO_REUSEPORT, so any other socket
     bound to the port, listening or guarding, makes it fail. */
  int p = new_socket(lc), one = 1;
  if (p < 0) {
    snprintf(err, errlen, "listen %s: socket: %s", lc->text, strerror(errno));
    return -1;
  }
  setsockopt(p, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(p, (const struct sockaddr *)&lc->addr.ss, lc->addr.len) != 0) {
    int e = errno;
    close(p);
    if (e == EADDRINUSE)
      snprintf(err, errlen,
               "listen %s: the port is already in use by another program (a "
               "mail server, "
               "another sluiced?); sluiced does not share its ports",
               lc->text);
    else if (e == EADDRNOTAVAIL)
      snprintf(err, errlen,
               "listen %s: the address is not one of this machine's", lc->text);
    else
      snprintf(err, errlen, "listen %s: %s", lc->text, strerror(e));
    return -1;
  }
  close(p);
  /* The guard: SO_REUSEPORT only.  Without SO_REUSEADDR a probe like the
     one above conflicts with it even before the workers listen. */
  int g = new_socket(lc);
  if (g < 0 || setsockopt(g, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      bind(g, (const struct sockaddr *)&lc->addr.ss, lc->addr.len) != 0) {
    snprintf(err, errlen, "listen %s: %s", lc->text, strerror(errno));
    if (g >= 0)
      close(g);
    return -1;
  }
  *out = g;
  return 0;
}

int sd_guards_sync(sd_guards *gs, const sd_config *cfg, char *err,
                   size_t errlen) {
  sd_guard *ng = calloc(cfg->nlisten ? cfg->nlisten : 1, sizeof *ng);
  char *kept = calloc(gs->n + 1, 1);
  if (ng == NULL || kept == NULL) {
    free(ng);
    free(kept);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  size_t n = 0;
  for (size_t i = 0; i < cfg->nlisten; i++) {
    const sd_listen_cfg *lc = &cfg->listen[i];
    int fd = -1;
    for (size_t j = 0; j < n; j++)
      if (same_addr(&ng[j].addr, &lc->addr))
        fd = -2; /* listed twice */
    if (fd == -2)
      continue;
    for (size_t j = 0; j < gs->n; j++)
      if (!kept[j] && same_addr(&gs->g[j].addr, &lc->addr)) {
        fd = gs->g[j].fd;
        kept[j] = 1;
        break;
      }
    if (fd < 0 && guard_one(lc, &fd, err, errlen) != 0) {
      for (size_t k = 0; k < n; k++) {
        int old = 0;
        for (size_t j = 0; j < gs->n; j++)
          if (gs->g[j].fd == ng[k].fd)
            old = 1;
        if (!old)
          close(ng[k].fd);
      }
      free(ng);
      free(kept);
      return -1;
    }
    ng[n].addr = lc->addr;
    ng[n].fd = fd;
    n++;
  }
  for (size_t j = 0; j < gs->n; j++)
    if (!kept[j])
      close(gs->g[j].fd);
  free(gs->g);
  free(kept);
  gs->g = ng;
  gs->n = n;
  return 0;
}

void sd_guards_close(sd_guards *gs) {
  for (size_t j = 0; j < gs->n; j++)
    close(gs->g[j].fd);
  free(gs->g);
  gs->g = NULL;
  gs->n = 0;
}
