/*
 * sd_config_test.c: the daemon's side of the configuration: the shared
 * grammar (config/tests/sl_config_test.c tests it key by key) finished for
 * sluiced, upstream resolution, the start-up checks (a listener that is an
 * upstream, unreadable files, a missing log directory) and CIDR matching.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sd_config.h"
#include "sd_log.h"
#include "sl_test.h"

static char err[1024];

static sd_config *parse(const char *text) {
  sd_config *c = NULL;
  err[0] = '\0';
  if (sd_config_parse(text, strlen(text), "test.conf", &c, err, sizeof err) !=
      0)
    return NULL;
  return c;
}

static void test_minimal_and_defaults(void) {
  sd_config *c = parse("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n");
  CHECK(c != NULL);
  if (!c)
    return;
  CHECK_INT(c->nlisten, 1);
  CHECK_INT(c->nupstream, 1);
  CHECK_INT(c->listen[0].tls, 0);
  CHECK_INT(c->upstream[0].weight, 1);
  CHECK_INT(c->max_connections, 10000);
  CHECK_INT(c->limits.command_line_max, 512);
  CHECK_INT(c->limits.text_line_max, 1000);
  CHECK_INT(c->limits.recipients_max, 100);
  CHECK(c->limits.command_timeout == 300 * SL_SEC);
  CHECK_INT(c->policy.mode, SL_MODE_PASSTHROUGH);
  /* No certificate: STARTTLS is not offered. */
  CHECK((c->policy.features & SL_FEAT_STARTTLS) == 0);
  CHECK(c->policy.hostname != NULL);
  sd_config_unref(c);
}

static char cert_path[64];

static void test_values(void) {
  char text[4096];
  snprintf(text, sizeof text,
           "# comment\n"
           "listen = [::1]:2465 tls   # trailing comment\n"
           "listen = 0.0.0.0:25 proxy\n"
           "trusted_proxy = 10.0.0.0/8, 192.168.1.1\n"
           "tls_cert = %s\n"
           "tls_key = %s\n"
           "upstream = 127.0.0.1:10 weight=5\n"
           "upstream = [::1]:11\n"
           "upstream_balance = leastconn\n"
           "mode = screen\n"
           "command_timeout = 1500ms\n"
           "normal_greet_delay = 2s\n"
           "suspect_reply_delay = 1m\n"
           "suspect_data_rate = 1k\n"
           "message_size_max = 10M\n"
           "dnsbl = zen.example.org 10 127.0.0.2 127.0.0.4\n"
           "dnsbl = list.dnswl.example -5\n"
           "tarpit_score = 5\nreject_score = 10\nallow_score = -5\n"
           "identity = xclient\n"
           "features = pipelining, size 8bitmime starttls\n"
           "lenient_bare_lf = yes\n"
           "log_format = json\n"
           "metrics_listen = 127.0.0.1:9025\n"
           "hostname = mx.example.org\n",
           cert_path, cert_path);
  sd_config *c = parse(text);
  CHECK(c != NULL);
  if (!c) {
    fprintf(stderr, "%s\n", err);
    return;
  }
  CHECK_INT(c->nlisten, 2);
  CHECK_INT(c->listen[0].tls, 1);
  CHECK_INT(c->listen[1].proxy, 1);
  CHECK_INT(c->ntrusted, 2);
  CHECK_INT(c->trusted[0].bits, 8);
  CHECK_INT(c->trusted[1].bits, 32);
  CHECK_INT(c->upstream[0].weight, 5);
  CHECK_INT(c->balance, SD_BALANCE_LEASTCONN);
  CHECK_INT(c->policy.mode, SL_MODE_SCREEN_FIRST);
  CHECK(c->limits.command_timeout == 1500 * SL_MSEC);
  CHECK(c->policy.normal.greet_delay == 2 * SL_SEC);
  CHECK(c->policy.suspect.reply_delay == 60 * SL_SEC);
  CHECK(c->policy.suspect.data_rate == 1024);
  CHECK(c->limits.message_size_max == 10u * 1024 * 1024);
  CHECK_INT(c->policy.ndnsbl, 2);
  CHECK_STR(c->policy.dnsbl[0].zone, "zen.example.org");
  CHECK_INT(c->policy.dnsbl[0].weight, 10);
  CHECK_INT(c->policy.dnsbl[0].ncodes, 2);
  CHECK(c->policy.dnsbl[0].codes[1] == 0x7f000004u);
  CHECK_INT(c->policy.dnsbl[1].weight, -5);
  CHECK_INT(c->policy.identity, SL_IDENT_XCLIENT);
  CHECK(c->policy.features == (SL_FEAT_PIPELINING | SL_FEAT_SIZE |
                               SL_FEAT_8BITMIME | SL_FEAT_STARTTLS));
  CHECK(c->policy.lenient == SL_LENIENT_NORMALIZE_BARE_LF);
  CHECK_INT(c->log_format, SD_LOGJSON);
  CHECK_STR(c->policy.hostname, "mx.example.org");
  CHECK(c->metrics_addr.len > 0);
  sd_config_unref(c);
}

static void expect_error(const char *text, const char *want) {
  sd_config *c = parse(text);
  CHECK(c == NULL);
  if (c) {
    sd_config_unref(c);
    return;
  }
  if (strstr(err, want) == NULL) {
    fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
    CHECK(0);
  }
}

static void test_errors_name_file_and_line(void) {
  const char *base = "listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\n";
  char buf[512];
  expect_error("listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\nbogus = 1\n",
               "test.conf:3: unknown key \"bogus\"");
  expect_error("listen = 127.0.0.1:1\n\nno equals sign\n",
               "test.conf:3: expected");
  expect_error("listen = 127.0.0.1:99999\n", "test.conf:1: listen");
  expect_error("listen = ::1:25\n", "test.conf:1: listen");
  snprintf(buf, sizeof buf, "%scommand_timeout = 5 parsecs\n", base);
  expect_error(buf, "test.conf:3: command_timeout");
  snprintf(buf, sizeof buf, "%smode = sideways\n", base);
  expect_error(
      buf,
      "test.conf:3: mode: \"sideways\" is not one of: passthrough, screen");
  snprintf(buf, sizeof buf, "%spipeline_max = 99\n", base);
  expect_error(buf, "test.conf:3: pipeline_max: 99 is out of range 2..32");
  snprintf(buf, sizeof buf, "%sdnsbl = zen.example.org ten\n", base);
  expect_error(buf, "test.conf:3: dnsbl: weight");
  snprintf(buf, sizeof buf, "%sdnsbl = zen.example.org 1 10.0.0.2\n", base);
  expect_error(buf, "test.conf:3: dnsbl: return code");
  snprintf(buf, sizeof buf, "%sfeatures = pipelining teleport\n", base);
  expect_error(buf, "test.conf:3: features: unknown feature \"teleport\"");
  snprintf(buf, sizeof buf, "%slisten = 127.0.0.1:3 tls\n", base);
  expect_error(buf, "test.conf:3: listen 127.0.0.1:3 tls needs tls_cert");
  snprintf(buf, sizeof buf, "%slisten = 127.0.0.1:3 proxy\n", base);
  expect_error(buf, "needs at least one trusted_proxy");
  expect_error("upstream = 127.0.0.1:2\n", "no \"listen\" line");
  expect_error("listen = 127.0.0.1:2\n", "no \"upstream\" line");
  snprintf(buf, sizeof buf, "%sover_rate = accept\n", base);
  expect_error(buf, "test.conf:3: over_rate");
}

static void test_daemon_checks(void) {
  /* A listener that is also an upstream loops into sluiced. */
  expect_error(
      "listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n"
      "upstream = 127.0.0.1:2525\n",
      "test.conf:3: upstream: 127.0.0.1:2525 is the listener of line 1");
  expect_error(
      "listen = 0.0.0.0:2525\nupstream = 127.0.0.1:2525\n",
      "test.conf:2: upstream: 127.0.0.1:2525 is the listener of line 1");
  expect_error("listen = [::]:2525\nupstream = [::1]:2525\n",
               "is the listener");
  /* Same address, another port: fine. */
  sd_config *c = parse("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526\n");
  CHECK(c != NULL);
  sd_config_unref(c);
  /* Host names are resolved here, not by the grammar. */
  c = parse("listen = 127.0.0.1:2525\nupstream = localhost:2526\n");
  CHECK(c != NULL);
  if (c) {
    CHECK(c->upstream[0].addr.len > 0);
    sd_config_unref(c);
  }
  expect_error(
      "listen = 127.0.0.1:2525\nupstream = no-such-host.invalid:25\n",
      "test.conf:2: upstream: cannot resolve \"no-such-host.invalid:25\"");
  expect_error(
      "listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\nlog_file = "
      "/no/such/dir/x.log\n",
      "test.conf:3: log_file: directory \"/no/such/dir\" does not exist");
  expect_error(
      "listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\ntls_cert = /no/cert.pem\n"
      "tls_key = /no/key.pem\n",
      "test.conf:3: tls_cert: cannot read \"/no/cert.pem\"");
  expect_error("listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\nmode = "
               "screen\nmode = screen\n",
               "test.conf:4: mode: already set at line 3");
  expect_error(
      "listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\nhostname = mx example\n",
      "test.conf:3: hostname: \"mx example\" is not a host name");
}

static void test_duration_and_size(void) {
  sl_duration d;
  uint64_t s;
  CHECK(sd_parse_duration("30", &d) == 0 && d == 30 * SL_SEC);
  CHECK(sd_parse_duration("250ms", &d) == 0 && d == 250 * SL_MSEC);
  CHECK(sd_parse_duration("2h", &d) == 0 && d == 7200 * SL_SEC);
  CHECK(sd_parse_duration("2.5s", &d) == 0 && d == 2500 * SL_MSEC);
  CHECK(sd_parse_duration("-1s", &d) != 0);
  CHECK(sd_parse_duration("1x", &d) != 0);
  CHECK(sd_parse_duration("99999999999999999999", &d) != 0);
  CHECK(sd_parse_size("16k", &s) == 0 && s == 16384);
  CHECK(sd_parse_size("2G", &s) == 0 && s == 2ull << 30);
  CHECK(sd_parse_size("k", &s) != 0);
}

static void test_cidr(void) {
  sd_cidr c;
  sd_sockaddr a;
  CHECK(sd_cidr_parse("10.1.0.0/16", &c) == 0);
  CHECK(sd_parse_hostport("10.1.200.3:25", &a, 1) == 0);
  CHECK(sd_cidr_match(&c, (struct sockaddr *)&a.ss));
  CHECK(sd_parse_hostport("10.2.0.1:25", &a, 1) == 0);
  CHECK(!sd_cidr_match(&c, (struct sockaddr *)&a.ss));
  /* IPv4-mapped IPv6 peers match IPv4 ranges. */
  CHECK(sd_parse_hostport("[::ffff:10.1.2.3]:25", &a, 1) == 0);
  CHECK(sd_cidr_match(&c, (struct sockaddr *)&a.ss));
  CHECK(sd_cidr_parse("2001:db8::/33", &c) == 0);
  CHECK(sd_parse_hostport("[2001:db8:7fff::1]:25", &a, 1) == 0);
  CHECK(sd_cidr_match(&c, (struct sockaddr *)&a.ss));
  CHECK(sd_parse_hostport("[2001:db8:8000::1]:25", &a, 1) == 0);
  CHECK(!sd_cidr_match(&c, (struct sockaddr *)&a.ss));
  CHECK(sd_cidr_parse("10.0.0.0/33", &c) != 0);
  CHECK(sd_cidr_parse("nonsense", &c) != 0);
}

static void test_dump_round_trip(void) {
  /* What --print-config writes parses back to the same dump. */
  sd_config *c =
      parse("listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526 weight=2\n"
            "dnsbl = bl.example 3 127.0.0.2\nnormal_reply_delay = 150ms\n"
            "features = size pipelining\nhostname = h.example\n");
  CHECK(c != NULL);
  if (!c)
    return;
  char *d1 = NULL, *d2 = NULL;
  size_t n1 = 0, n2 = 0;
  FILE *f = open_memstream(&d1, &n1);
  sd_config_dump(c, f);
  fclose(f);
  sd_config *c2 = NULL;
  CHECK(sd_config_parse(d1, n1, "dump", &c2, err, sizeof err) == 0);
  if (c2) {
    f = open_memstream(&d2, &n2);
    sd_config_dump(c2, f);
    fclose(f);
    CHECK_MEM(d1, n1, d2, n2);
    sd_config_unref(c2);
  } else {
    fprintf(stderr, "%s\n", err);
  }
  free(d1);
  free(d2);
  sd_config_unref(c);
}

int main(void) {
  sd_log_setup(NULL, SD_LOG_ERR, SD_LOGFMT);
  snprintf(cert_path, sizeof cert_path, "/tmp/sd_config_test_XXXXXX");
  int fd = mkstemp(cert_path);
  if (fd >= 0)
    close(fd);
  SL_RUN(test_minimal_and_defaults);
  SL_RUN(test_values);
  SL_RUN(test_daemon_checks);
  SL_RUN(test_errors_name_file_and_line);
  SL_RUN(test_duration_and_size);
  SL_RUN(test_cidr);
  SL_RUN(test_dump_round_trip);
  unlink(cert_path);
  return sl_test_summary();
}
