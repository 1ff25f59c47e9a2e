/*
 * sd_loop.h: one worker's event loop: epoll for descriptors and a binary
 * min-heap of timers keyed by absolute monotonic nanoseconds (libuv's
 * heap-inl.h idea: each timer knows its slot, so re-arming is O(log n)).
 * The monotonic clock is read here and nowhere else in sluice.
 */
#ifndef SD_LOOP_H
#define SD_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sd_loop sd_loop;

/* Embedded in every object registered with epoll; data.ptr points at it. */
typedef struct sd_handler {
  void (*cb)(struct sd_handler *h, uint32_t events);
} sd_handler;

#define SD_TIMER_IDLE UINT32_MAX

/* Embedded in every object that needs a deadline. */
typedef struct sd_timer {
  uint64_t when; /* absolute, ns of CLOCK_MONOTONIC */
  uint32_t slot; /* index in the heap, SD_TIMER_IDLE when not armed */
  void (*cb)(struct sd_timer *t);
} sd_timer;

/* The heap on its own, for unit tests and for the loop. */
typedef struct sd_heap {
  sd_timer **v;
  uint32_t n, cap;
} sd_heap;

int sd_heap_push(sd_heap *h, sd_timer *t); /* 0 or -1 (ENOMEM) */
void sd_heap_remove(sd_heap *h, sd_timer *t);
void sd_heap_fix(sd_heap *h, sd_timer *t); /* after t->when changed */
sd_timer *sd_heap_min(const sd_heap *h);
void sd_heap_free(sd_heap *h);

sd_loop *sd_loop_new(void);
void sd_loop_free(sd_loop *l);

/* The loop's cached "now" (updated once per iteration), and a fresh read. */
uint64_t sd_loop_now(const sd_loop *l);
uint64_t sd_loop_update_now(sd_loop *l);
uint64_t sd_clock_ns(void);

/* epoll registration; events are EPOLLIN/EPOLLOUT bits.  0 or -1. */
int sd_loop_add(sd_loop *l, int fd, uint32_t events, sd_handler *h);
int sd_loop_mod(sd_loop *l, int fd, uint32_t events, sd_handler *h);
void sd_loop_del(sd_loop *l, int fd);

/* Arms (or re-arms) t at absolute time when; UINT64_MAX disarms it. */
void sd_timer_set(sd_loop *l, sd_timer *t, uint64_t when);
void sd_timer_stop(sd_loop *l, sd_timer *t);
static inline void sd_timer_init(sd_timer *t, void (*cb)(sd_timer *)) {
  t->when = UINT64_MAX;
  t->slot = SD_TIMER_IDLE;
  t->cb = cb;
}

/* Called once per iteration before sleeping (redis's beforesleep). */
void sd_loop_set_before_sleep(sd_loop *l, void (*fn)(void *), void *arg);

/* One iteration: waits at most max_wait_ms (and until the first timer),
   dispatches I/O, then runs every due timer.  Returns events handled or -1
   on an epoll error other than EINTR. */
int sd_loop_once(sd_loop *l, int max_wait_ms);

uint32_t sd_loop_timers(const sd_loop *l);

/* Runs fn(arg) after the current batch of events and timers.  Objects that
   own several descriptors are freed this way: epoll may have returned an
   event for one of their other descriptors in the same batch, and that
   event's handler pointer must stay valid (the handler checks a "dead" flag
   and returns).  0 or -1 (ENOMEM: fn runs at once). */
int sd_loop_defer(sd_loop *l, void (*fn)(void *), void *arg);

#endif
