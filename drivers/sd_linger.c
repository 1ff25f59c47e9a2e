/*
 * sd_linger.c: lingering close (see sd_linger.h).
 */
#include "sd_linger.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/limits.h"

#define LINGER_MAX 1024
#define LINGER_TIME (2 * SL_SEC)

struct sd_linger {
  sd_handler h;
  sd_timer timer;
  sd_lingers *ls;
  sd_linger *prev, *next;
  int fd;
  uint32_t drained;
};

static void linger_end(sd_linger *l) {
  sd_lingers *ls = l->ls;
  sd_loop_del(ls->loop, l->fd);
  close(l->fd);
  sd_timer_stop(ls->loop, &l->timer);
  if (l->prev)
    l->prev->next = l->next;
  else
    ls->head = l->next;
  if (l->next)
    l->next->prev = l->prev;
  ls->n--;
  free(l);
}

static void linger_io(sd_handler *h, uint32_t ev) {
  sd_linger *l = (sd_linger *)(void *)h;
  char buf[4096];
  (void)ev;
  for (int i = 0; i < 4; i++) {
    ssize_t n = recv(l->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (n <= 0 || (l->drained += (uint32_t)n) > 65536) {
      linger_end(l);
      return;
    }
  }
}

static void linger_timeout(sd_timer *t) {
  linger_end((sd_linger *)(void *)((char *)t - offsetof(sd_linger, timer)));
}

void sd_linger_close(sd_lingers *ls, int fd) {
  shutdown(fd, SHUT_WR);
  sd_linger *l = ls->n < LINGER_MAX && !*ls->stop ? calloc(1, sizeof *l) : NULL;
  if (l == NULL) {
    close(fd);
    return;
  }
  l->h.cb = linger_io;
  l->ls = ls;
  l->fd = fd;
  sd_timer_init(&l->timer, linger_timeout);
  if (sd_loop_add(ls->loop, fd, EPOLLIN, &l->h) != 0) {
    close(fd);
    free(l);
    return;
  }
  l->next = ls->head;
  if (l->next)
    l->next->prev = l;
  ls->head = l;
  ls->n++;
  sd_timer_set(ls->loop, &l->timer, sd_loop_now(ls->loop) + LINGER_TIME);
}

void sd_linger_free_all(sd_lingers *ls) {
  while (ls->head)
    linger_end(ls->head);
}
