/*
 * sl_bench.c: figures for the core alone, on one core: DATA relay
 * throughput, pipelined commands per second, whole sessions per second,
 * and bytes of memory per relay.  Prints figures; asserts nothing (speed
 * goals live here, not in tests).  Usage: sl_bench [seconds-per-figure]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/sluice.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static sl_limits limits;
static sl_policy policy;
static sl_bufpool bufpool;
static sl_pool pool;
static uint64_t pool_mem[(8 * 16384 + 16 * 512) / 8];
static uint64_t relay_mem[256];
static sl_tstamp t = 1;

/* The driver's loop: until nothing moves, answer requests (connects
   succeed at once) and send all output. */
static void drain(sl_relay *r, size_t *up_bytes) {
  for (int moved = 1; moved;) {
    moved = 0;
    sl_request q;
    while (sl_relay_next_request(r, &q)) {
      moved = 1;
      if (q.type == SL_REQ_CONNECT_UPSTREAM) {
        sl_completion c;
        memset(&c, 0, sizeof(c));
        c.id = q.id;
        sl_relay_complete(r, &c, t);
      }
    }
    size_t n;
    const uint8_t *p;
    while ((p = sl_relay_client_out(r, &n, t)) && n) {
      sl_relay_client_out_ack(r, n, t);
      moved = 1;
    }
    while ((p = sl_relay_upstream_out(r, &n, t)) && n) {
      if (up_bytes)
        *up_bytes += n;
      sl_relay_upstream_out_ack(r, n, t);
      moved = 1;
    }
  }
}

static void feed(sl_relay *r, int up, const char *s, size_t n) {
  size_t off = 0;
  while (off < n) {
    long k =
        up ? sl_relay_feed_upstream(r, (const uint8_t *)s + off, n - off, t)
           : sl_relay_feed_client(r, (const uint8_t *)s + off, n - off, t);
    drain(r, NULL);
    if (k <= 0)
      break;
    off += (size_t)k;
  }
}
#define FEED(r, up, lit) feed(r, up, lit, sizeof(lit) - 1)

static sl_relay *open_session(void) {
  sl_conn_info info;
  memset(&info, 0, sizeof(info));
  sl_addr_parse(&info.client, "192.0.2.1", 9);
  sl_relay *r;
  if (sl_relay_init(&r, relay_mem, sizeof(relay_mem), &limits, &policy, &pool,
                    &info, 1, t)) {
    fprintf(stderr, "sl_relay_init failed\n");
    exit(1);
  }
  drain(r, NULL);
  /* pass-through without a probe: the client's EHLO is the upstream's only
     one (README "What it relays") */
  FEED(r, 1, "220 up ESMTP\r\n");
  FEED(r, 0, "EHLO client.example\r\n");
  FEED(r, 1, "250-up\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 8BITMIME\r\n");
  return r;
}

/* DATA: a body of 78-byte lines, read zero-copy into the relay. */
static void bench_data(double secs) {
  sl_relay *r = open_session();
  FEED(r, 0,
       "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
  FEED(r, 1, "250 ok\r\n250 ok\r\n354 go\r\n");
  static char body[16384];
  size_t blen = 0;
  while (blen + 80 <= sizeof(body)) {
    memset(body + blen, 'x', 78);
    if (blen % 800 == 0) /* every tenth line is dot-stuffed */
      memcpy(body + blen, "..", 2);
    memcpy(body + blen + 78, "\r\n", 2);
    blen += 80;
  }
  size_t in = 0, out = 0;
  int refused = 0;
  double t0 = now_s(), t1;
  do {
    for (int k = 0; k < 256; k++) {
      size_t off = 0;
      while (off < blen) {
        size_t cap;
        uint8_t *p = sl_relay_client_in_buf(r, &cap, t);
        if (!p) {
          drain(r, &out);
          if (++refused > 1000) {
            /* a bench must end: a relay that stopped reading (a refused
               or closed session) is an error, not a loop */
            fprintf(stderr, "the relay stopped reading the body (want 0x%x)\n",
                    sl_relay_want(r));
            exit(1);
          }
          continue;
        }
        refused = 0;
        size_t n = blen - off < cap ? blen - off : cap;
        memcpy(p, body + off, n); /* stands for recv() into the buffer */
        sl_relay_client_in_ack(r, n, t);
        off += n;
        in += n;
        drain(r, &out);
      }
    }
    t1 = now_s();
  } while (t1 - t0 < secs);
  if (out < in) {
    fprintf(stderr, "the body was not relayed\n");
    exit(1);
  }
  printf("data_relay_MBps %.0f  (%.1f GB/s; %zu MB in, %zu MB out, 78-byte "
         "lines)\n",
         (double)in / (t1 - t0) / 1e6, (double)in / (t1 - t0) / 1e9, in >> 20,
         out >> 20);
  sl_relay_free(r);
}

/* Pipelined RCPT commands, each relayed and its reply re-framed. */
static void bench_commands(double secs) {
  sl_relay *r = open_session();
  FEED(r, 0, "MAIL FROM:<a@example.org>\r\n");
  FEED(r, 1, "250 ok\r\n");
  static const char group[] =
      "RCPT TO:<r1@example.net>\r\nRCPT TO:<r2@example.net>\r\n"
      "RCPT TO:<r3@example.net>\r\nRCPT TO:<r4@example.net>\r\nRSET\r\n"
      "MAIL FROM:<a@example.org>\r\n";
  static const char replies[] =
      "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
      "250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n";
  size_t cmds = 0;
  double t0 = now_s(), t1;
  do {
    for (int k = 0; k < 2000; k++) {
      FEED(r, 0, group);
      FEED(r, 1, replies);
      cmds += 6;
    }
    t1 = now_s();
  } while (t1 - t0 < secs);
  if (sl_relay_stats(r)->commands < cmds) {
    fprintf(stderr,
            "commands were not all processed: %u of %zu, errors %u, end %u\n",
            sl_relay_stats(r)->commands, cmds, sl_relay_stats(r)->errors,
            sl_relay_stats(r)->end_reason);
    exit(1);
  }
  printf("pipelined_commands_per_s %.0f  (each relayed upstream and its "
         "reply re-framed)\n",
         (double)cmds / (t1 - t0));
  sl_relay_free(r);
}

/* Whole sessions: greeting, EHLO, one message, QUIT. */
static void bench_sessions(double secs) {
  size_t n = 0;
  double t0 = now_s(), t1;
  do {
    for (int k = 0; k < 1000; k++) {
      sl_relay *r = open_session();
      FEED(r, 0,
           "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
      FEED(r, 1, "250 ok\r\n250 ok\r\n354 go\r\n");
      FEED(r, 0, "Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n");
      FEED(r, 1, "250 queued\r\n");
      if (!(sl_relay_want(r) & SL_CLOSED)) {
        fprintf(stderr, "session did not close\n");
        exit(1);
      }
      sl_relay_free(r);
      n++;
    }
    t1 = now_s();
  } while (t1 - t0 < secs);
  printf("sessions_per_s %.0f\n", (double)n / (t1 - t0));
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  sl_limits_default(&limits);
  /* Long benchmark sessions would otherwise meet the per-session limits
     (RSET counts as a junk command; 50 MB messages). */
  limits.message_size_max = 0;
  limits.junk_commands_max = 0;
  sl_policy_default(&policy);
  static const char *const relay_domains[] = {"example.net"};
  policy.rcpt.domains = relay_domains; /* the recipients below */
  policy.rcpt.ndomains = 1;
  sl_bufpool_init(&bufpool, pool_mem, sizeof(pool_mem), 512, 16, 16384, 8);
  sl_bufpool_as_pool(&bufpool, &pool);
  printf("relay_state_bytes %zu\n", sl_relay_size(&limits));
  printf("relay_bound_bytes %zu  (state + every buffer it can borrow)\n",
         sl_relay_memory_bound(&limits));
  printf("held_after_greeting_bytes %zu  (state only: no buffer is lent)\n",
         sl_relay_size(&limits));
  printf("held_after_ehlo_bytes %zu  (state + one %u-byte buffer keeping the "
         "EHLO for replay)\n",
         sl_relay_size(&limits) + limits.small_buffer_size,
         limits.small_buffer_size);
  bench_data(secs);
  bench_commands(secs);
  bench_sessions(secs);
  return 0;
}
