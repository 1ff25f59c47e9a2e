/*
 * sd_loop.c: epoll and the timer heap.
 */
#include "sd_loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct deferred {
  void (*fn)(void *);
  void *arg;
} deferred;

struct sd_loop {
  int epfd;
  deferred *dv;
  uint32_t ndv, capdv;
  uint64_t now;
  sd_heap heap;
  void (*before_sleep)(void *);
  void *before_sleep_arg;
};

/* ---- heap ---------------------------------------------------------------- */

static void heap_set(sd_heap *h, uint32_t i, sd_timer *t) {
  h->v[i] = t;
  t->slot = i;
}

static void sift_up(sd_heap *h, uint32_t i) {
  sd_timer *t = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (h->v[p]->when <= t->when)
      break;
    heap_set(h, i, h->v[p]);
    i = p;
  }
  heap_set(h, i, t);
}

static void sift_down(sd_heap *h, uint32_t i) {
  sd_timer *t = h->v[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->n)
      break;
    if (c + 1 < h->n && h->v[c + 1]->when < h->v[c]->when)
      c++;
    if (t->when <= h->v[c]->when)
      break;
    heap_set(h, i, h->v[c]);
    i = c;
  }
  heap_set(h, i, t);
}

int sd_heap_push(sd_heap *h, sd_timer *t) {
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    sd_timer **v = realloc(h->v, cap * sizeof *v);
    if (v == NULL)
      return -1;
    h->v = v;
    h->cap = cap;
  }
  h->v[h->n] = t;
  t->slot = h->n++;
  sift_up(h, t->slot);
  return 0;
}

void sd_heap_remove(sd_heap *h, sd_timer *t) {
  uint32_t i = t->slot;
  if (i == SD_TIMER_IDLE || i >= h->n || h->v[i] != t)
    return;
  t->slot = SD_TIMER_IDLE;
  h->n--;
  if (i == h->n)
    return;
  heap_set(h, i, h->v[h->n]);
  sd_heap_fix(h, h->v[i]);
}

void sd_heap_fix(sd_heap *h, sd_timer *t) {
  uint32_t i = t->slot;
  if (i > 0 && h->v[(i - 1) / 2]->when > t->when)
    sift_up(h, i);
  else
    sift_down(h, i);
}

sd_timer *sd_heap_min(const sd_heap *h) { return h->n ? h->v[0] : NULL; }

void sd_heap_free(sd_heap *h) {
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}

/* ---- loop ---------------------------------------------------------------- */

uint64_t sd_clock_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run_deferred(sd_loop *l) {
  /* fn may defer more; those run in this pass too (the count is re-read). */
  for (uint32_t i = 0; i < l->ndv; i++)
    l->dv[i].fn(l->dv[i].arg);
  l->ndv = 0;
}

int sd_loop_defer(sd_loop *l, void (*fn)(void *), void *arg) {
  if (l->ndv == l->capdv) {
    uint32_t cap = l->capdv ? l->capdv * 2 : 64;
    deferred *v = realloc(l->dv, cap * sizeof *v);
    if (v == NULL) {
      fn(arg);
      return -1;
    }
    l->dv = v;
    l->capdv = cap;
  }
  l->dv[l->ndv].fn = fn;
  l->dv[l->ndv].arg = arg;
  l->ndv++;
  return 0;
}

sd_loop *sd_loop_new(void) {
  sd_loop *l = calloc(1, sizeof *l);
  if (l == NULL)
    return NULL;
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) {
    free(l);
    return NULL;
  }
  l->now = sd_clock_ns();
  return l;
}

void sd_loop_free(sd_loop *l) {
  if (l == NULL)
    return;
  close(l->epfd);
  run_deferred(l);
  free(l->dv);
  sd_heap_free(&l->heap);
  free(l);
}

uint64_t sd_loop_now(const sd_loop *l) { return l->now; }

uint64_t sd_loop_update_now(sd_loop *l) {
  uint64_t t = sd_clock_ns();
  /* The core rejects time going backwards; CLOCK_MONOTONIC never does, but
     keep the invariant explicit. */
  if (t > l->now)
    l->now = t;
  return l->now;
}

int sd_loop_add(sd_loop *l, int fd, uint32_t events, sd_handler *h) {
  struct epoll_event ev = {.events = events, .data.ptr = h};
  return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
}

int sd_loop_mod(sd_loop *l, int fd, uint32_t events, sd_handler *h) {
  struct epoll_event ev = {.events = events, .data.ptr = h};
  return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev);
}

void sd_loop_del(sd_loop *l, int fd) {
  struct epoll_event ev = {0};
  epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, &ev);
}

void sd_timer_set(sd_loop *l, sd_timer *t, uint64_t when) {
  if (when == UINT64_MAX) {
    sd_timer_stop(l, t);
    return;
  }
  if (t->slot != SD_TIMER_IDLE) {
    if (t->when == when)
      return;
    t->when = when;
    sd_heap_fix(&l->heap, t);
    return;
  }
  t->when = when;
  if (sd_heap_push(&l->heap, t) != 0) {
    /* Out of memory for one more heap slot: fire "soon" by polling instead
       of losing the deadline.  Practically unreachable. */
    t->slot = SD_TIMER_IDLE;
  }
}

void sd_timer_stop(sd_loop *l, sd_timer *t) {
  if (t->slot != SD_TIMER_IDLE)
    sd_heap_remove(&l->heap, t);
  t->when = UINT64_MAX;
}

void sd_loop_set_before_sleep(sd_loop *l, void (*fn)(void *), void *arg) {
  l->before_sleep = fn;
  l->before_sleep_arg = arg;
}

uint32_t sd_loop_timers(const sd_loop *l) { return l->heap.n; }

int sd_loop_once(sd_loop *l, int max_wait_ms) {
  struct epoll_event evs[MAX_EVENTS];
  if (l->before_sleep)
    l->before_sleep(l->before_sleep_arg);
  int wait = max_wait_ms;
  sd_timer *first = sd_heap_min(&l->heap);
  if (first != NULL) {
    uint64_t now = sd_loop_update_now(l);
    uint64_t ms =
        first->when <= now ? 0 : (first->when - now + 999999u) / 1000000u;
    if (wait < 0 || ms < (uint64_t)wait)
      wait = (int)ms;
  }
  int n = epoll_wait(l->epfd, evs, MAX_EVENTS, wait);
  if (n < 0 && errno != EINTR)
    return -1;
  sd_loop_update_now(l);
  for (int i = 0; i < n; i++) {
    sd_handler *h = evs[i].data.ptr;
    h->cb(h, evs[i].events);
  }
  /* Run due timers.  A callback may re-arm its own timer for "now"; the
     bound keeps one iteration finite whatever callbacks do. */
  uint32_t budget = l->heap.n + 64;
  sd_timer *t;
  while (budget-- > 0 && (t = sd_heap_min(&l->heap)) != NULL &&
         t->when <= l->now) {
    sd_heap_remove(&l->heap, t);
    t->when = UINT64_MAX;
    t->cb(t);
  }
  run_deferred(l);
  return n < 0 ? 0 : n;
}
