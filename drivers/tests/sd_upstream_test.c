/*
 * sd_upstream_test.c: balancing and failover choices of the upstream pool.
 */
#include <string.h>

#include "sd_config.h"
#include "sd_log.h"
#include "sd_upstream.h"
#include "sl_test.h"

static sd_config *cfg_of(const char *text) {
  char err[512];
  sd_config *c = NULL;
  if (sd_config_parse(text, strlen(text), "t.conf", &c, err, sizeof err) != 0) {
    fprintf(stderr, "%s\n", err);
    return NULL;
  }
  return c;
}

static void test_weighted_round_robin(void) {
  sd_config *c =
      cfg_of("listen = 127.0.0.1:1\nupstream = 127.0.0.1:10 weight=3\n"
             "upstream = 127.0.0.1:11\nupstream = 127.0.0.1:12 weight=2\n");
  CHECK(c != NULL);
  if (!c)
    return;
  sd_upstreams *u = sd_upstreams_new(c, NULL);
  int count[3] = {0, 0, 0};
  int last = -1, repeats = 0;
  for (int i = 0; i < 600; i++) {
    uint64_t tried = 0;
    sd_server *s = sd_upstream_pick(u, &tried, 0);
    CHECK(s != NULL);
    if (!s)
      break;
    CHECK(tried == (1ull << s->index));
    count[s->index]++;
    if ((int)s->index == last)
      repeats++;
    last = (int)s->index;
  }
  CHECK_INT(count[0], 300);
  CHECK_INT(count[1], 100);
  CHECK_INT(count[2], 200);
  /* Smooth WRR interleaves: the heavy server never runs 3 times in a row,
     so at most a third of consecutive picks repeat. */
  CHECK(repeats <= 200);
  sd_upstreams_free(u);
  sd_config_unref(c);
}

static void test_failover_never_repeats(void) {
  sd_config *c = cfg_of("listen = 127.0.0.1:1\nupstream = 127.0.0.1:10\n"
                        "upstream = 127.0.0.1:11\nupstream = 127.0.0.1:12\n");
  CHECK(c != NULL);
  if (!c)
    return;
  sd_upstreams *u = sd_upstreams_new(c, NULL);
  uint64_t tried = 0;
  sd_server *a = sd_upstream_pick(u, &tried, 0);
  sd_server *b = sd_upstream_pick(u, &tried, 0);
  sd_server *d = sd_upstream_pick(u, &tried, 0);
  CHECK(a && b && d);
  if (a && b && d) {
    CHECK(a != b && b != d && a != d);
  }
  CHECK(sd_upstream_pick(u, &tried, 0) == NULL); /* all tried */
  sd_upstreams_free(u);
  sd_config_unref(c);
}

static void test_passive_down_and_retry(void) {
  sd_config *c =
      cfg_of("listen = 127.0.0.1:1\nupstream = 127.0.0.1:10\n"
             "upstream = 127.0.0.1:11\nhealth_interval = 0\nhealth_fall = 2\n"
             "down_retry = 5s\n");
  CHECK(c != NULL);
  if (!c)
    return;
  sd_upstreams *u = sd_upstreams_new(c, NULL);
  sd_server *s0 = &u->s[0];
  sd_upstream_report(s0, 0, 1000);
  CHECK(s0->up); /* one failure is not enough with health_fall = 2 */
  sd_upstream_report(s0, 0, 2000);
  CHECK(!s0->up);
  for (int i = 0; i < 10; i++) {
    uint64_t tried = 0;
    sd_server *s = sd_upstream_pick(u, &tried, 3000);
    CHECK(s && s->index == 1); /* the down server is skipped */
  }
  /* ... unless it is the only one left untried */
  uint64_t tried = 1ull << 1;
  CHECK(sd_upstream_pick(u, &tried, 3000) == s0);
  /* after down_retry it is tried again, and one success brings it back */
  int saw0 = 0;
  for (int i = 0; i < 4; i++) {
    tried = 0;
    if (sd_upstream_pick(u, &tried, 2000 + 5 * SL_SEC + 1) == s0)
      saw0 = 1;
  }
  CHECK(saw0);
  sd_upstream_report(s0, 1, 2000 + 5 * SL_SEC + 2);
  CHECK(s0->up);
  sd_upstreams_free(u);
  sd_config_unref(c);
}

static void test_least_connections(void) {
  sd_config *c = cfg_of(
      "listen = 127.0.0.1:1\nupstream = 127.0.0.1:10\n"
      "upstream = 127.0.0.1:11 weight=2\nupstream_balance = leastconn\n");
  CHECK(c != NULL);
  if (!c)
    return;
  sd_upstreams *u = sd_upstreams_new(c, NULL);
  /* Hold every pick: active counts should follow the 1:2 weights. */
  for (int i = 0; i < 30; i++) {
    uint64_t tried = 0;
    sd_server *s = sd_upstream_pick(u, &tried, 0);
    CHECK(s != NULL);
    if (s)
      sd_upstream_acquire(s);
  }
  CHECK_INT(u->s[0].active, 10);
  CHECK_INT(u->s[1].active, 20);
  /* Releasing on one side sends the next picks there. */
  for (int i = 0; i < 5; i++)
    sd_upstream_release(&u->s[1]);
  uint64_t tried = 0;
  CHECK(sd_upstream_pick(u, &tried, 0) == &u->s[1]);
  sd_upstreams_free(u);
  sd_config_unref(c);
}

/* The intersection screen-first offers from: healthy, checked servers only. */
static void test_pool_features(void) {
  sd_config *c = cfg_of("listen = 127.0.0.1:1\nupstream = 127.0.0.1:10\n"
                        "upstream = 127.0.0.1:11\nupstream = 127.0.0.1:12\n");
  CHECK(c != NULL);
  if (!c)
    return;
  sd_upstreams *u = sd_upstreams_new(c, NULL);
  uint32_t f = 0;
  uint64_t size = 0;
  CHECK_INT(sd_upstreams_features(u, &f, &size), 0); /* no active checks */
  u->checking = 1;
  CHECK_INT(sd_upstreams_features(u, &f, &size), 0); /* none checked yet */
  u->s[0].caps_known = u->s[1].caps_known = u->s[2].caps_known = 1;
  u->s[0].caps =
      SL_FEAT_PIPELINING | SL_FEAT_SIZE | SL_FEAT_CHUNKING | SL_FEAT_8BITMIME;
  u->s[0].caps_size = 20000000;
  u->s[1].caps = SL_FEAT_SIZE | SL_FEAT_8BITMIME | SL_FEAT_DSN;
  u->s[1].caps_size = 10000000;
  u->s[2].caps = SL_FEAT_SIZE;
  u->s[2].caps_size = 0; /* SIZE without a limit */
  CHECK_INT(sd_upstreams_features(u, &f, &size), 1);
  CHECK_INT(f, SL_FEAT_SIZE);
  CHECK_INT(size, 10000000);
  /* a server that is down does not narrow the offer */
  u->s[2].up = 0;
  CHECK_INT(sd_upstreams_features(u, &f, &size), 1);
  CHECK_INT(f, SL_FEAT_SIZE | SL_FEAT_8BITMIME);
  u->s[1].up = 0;
  CHECK_INT(sd_upstreams_features(u, &f, &size), 1);
  CHECK_INT(f, SL_FEAT_PIPELINING | SL_FEAT_SIZE | SL_FEAT_CHUNKING |
                   SL_FEAT_8BITMIME);
  CHECK_INT(size, 20000000);
  u->s[0].caps_known = 0; /* a healthy server whose offer is unknown */
  CHECK_INT(sd_upstreams_features(u, &f, &size), 0);
  u->s[0].up = 0; /* nothing healthy */
  u->s[0].caps_known = 1;
  CHECK_INT(sd_upstreams_features(u, &f, &size), 0);
  u->checking = 0;
  sd_upstreams_free(u);
  sd_config_unref(c);
}

int main(void) {
  sd_log_setup(NULL, SD_LOG_ERR, SD_LOGFMT);
  SL_RUN(test_weighted_round_robin);
  SL_RUN(test_failover_never_repeats);
  SL_RUN(test_passive_down_and_retry);
  SL_RUN(test_least_connections);
  SL_RUN(test_pool_features);
  return sl_test_summary();
}
