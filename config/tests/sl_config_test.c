/*
 * sl_config_test.c: the shared configuration grammar: every value type,
 * errors naming file:line: key, the nearest-key suggestion, repeated keys,
 * daemon-only keys, host names, the full and the "-n" dump.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sl_test.h"
#include "sluice/config.h"

static char err[1024];

/* Parses text on top of the defaults; NULL on error (err holds it). */
static sl_config *parse(const char *text) {
  sl_config *c = sl_config_new();
  CHECK(c != NULL);
  if (!c)
    return NULL;
  err[0] = '\0';
  if (sl_config_parse(c, text, strlen(text), "t.conf", err, sizeof err) != 0) {
    sl_config_unref(c);
    return NULL;
  }
  return c;
}

static void expect_error(const char *text, const char *want) {
  sl_config *c = parse(text);
  CHECK(c == NULL);
  if (c) {
    fprintf(stderr, "accepted: %s", text);
    sl_config_unref(c);
    return;
  }
  if (strstr(err, want) == NULL) {
    fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
    CHECK(0);
  }
}

static void test_table(void) {
  size_t n;
  const sl_config_key *k = sl_config_keys(&n);
  CHECK(n > 90);
  for (size_t i = 0; i < n; i++) {
    CHECK(k[i].doc != NULL && k[i].doc[0] != '\0');
    CHECK(sl_config_key_find(k[i].name) == &k[i]); /* names are unique */
    /* Repeatable keys are exactly the line types. */
    int line_type = k[i].type >= SL_CT_LISTEN;
    CHECK(line_type == !!(k[i].flags & SL_KEY_REPEAT));
  }
  /* The defaults in the table parse (sl_config_new applies them). */
  sl_config *c = sl_config_new();
  CHECK(c != NULL);
  if (!c)
    return;
  CHECK_INT(c->max_connections, 10000);
  CHECK(c->health_interval == 10 * SL_SEC);
  CHECK_INT(c->log_level, SL_LOGLEVEL_INFO);
  CHECK_INT(c->limits.command_line_max, 512); /* the core's default */
  CHECK_INT(c->ratelim.ipv6_prefix, 64);
  CHECK(c->hostname != NULL && c->policy.hostname == c->hostname);
  sl_config_unref(c);
  CHECK(sl_config_key_find("listen")->flags & SL_KEY_DAEMON);
  CHECK(sl_config_key_find("max_connections_total")->flags & SL_KEY_DAEMON);
  CHECK(!(sl_config_key_find("normal_greet_delay")->flags & SL_KEY_DAEMON));
  CHECK(!(sl_config_key_find("dnsbl")->flags & SL_KEY_DAEMON));
}

static void test_durations(void) {
  sl_duration d;
  CHECK(sl_parse_duration("30", &d) == 0 && d == 30 * SL_SEC);
  CHECK(sl_parse_duration("2.5s", &d) == 0 && d == 2500 * SL_MSEC);
  CHECK(sl_parse_duration("500ms", &d) == 0 && d == 500 * SL_MSEC);
  CHECK(sl_parse_duration("0.25ms", &d) == 0 && d == 250 * SL_USEC);
  CHECK(sl_parse_duration("1.5m", &d) == 0 && d == 90 * SL_SEC);
  CHECK(sl_parse_duration("2h", &d) == 0 && d == 7200 * SL_SEC);
  CHECK(sl_parse_duration("1d", &d) == 0 && d == 86400 * SL_SEC);
  CHECK(sl_parse_duration("7us", &d) == 0 && d == 7 * SL_USEC);
  CHECK(sl_parse_duration("7ns", &d) == 0 && d == 7);
  CHECK(sl_parse_duration("0", &d) == 0 && d == 0);
  CHECK(sl_parse_duration("-1s", &d) != 0);
  CHECK(sl_parse_duration(".5s", &d) != 0);
  CHECK(sl_parse_duration("1.s", &d) != 0);
  CHECK(sl_parse_duration("1x", &d) != 0);
  CHECK(sl_parse_duration("1 s", &d) != 0);
  CHECK(sl_parse_duration("", &d) != 0);
  CHECK(sl_parse_duration("99999999999999999999", &d) != 0);
  CHECK(sl_parse_duration("999999999999d", &d) != 0);
}

static void test_sizes_bools_ints(void) {
  uint64_t s;
  int b;
  CHECK(sl_parse_size("16k", &s) == 0 && s == 16384);
  CHECK(sl_parse_size("64K", &s) == 0 && s == 65536);
  CHECK(sl_parse_size("10M", &s) == 0 && s == 10u << 20);
  CHECK(sl_parse_size("2G", &s) == 0 && s == 2ull << 30);
  CHECK(sl_parse_size("512", &s) == 0 && s == 512);
  CHECK(sl_parse_size("k", &s) != 0);
  CHECK(sl_parse_size("1.5M", &s) != 0);
  CHECK(sl_parse_size("1T", &s) != 0);
  CHECK(sl_parse_size("99999999999999999G", &s) != 0);
  CHECK(sl_parse_bool("yes", &b) == 0 && b == 1);
  CHECK(sl_parse_bool("off", &b) == 0 && b == 0);
  CHECK(sl_parse_bool("maybe", &b) != 0);
  sl_config *c = parse("message_size_max = 10M\nbuffer_size = 64k\n"
                       "pipeline_max = 2\npregreet_score = -7\n"
                       "upstream_tls_verify = true\ngreet_teaser = off\n"
                       "lenient_bare_lf = on\nmode = screen\n"
                       "over_rate = tarpit\nnormal_greet_delay = 2.5s\n"
                       "suspect_data_rate = 1k\ntls_ciphers = HIGH:!aNULL\n"
                       "features = pipelining, size starttls\n"
                       "auth_mechanisms = PLAIN LOGIN\n");
  CHECK(c != NULL);
  if (!c) {
    fprintf(stderr, "%s\n", err);
    return;
  }
  CHECK(c->limits.message_size_max == 10u << 20);
  CHECK_INT(c->limits.buffer_size, 65536);
  CHECK_INT(c->limits.pipeline_max, 2);
  CHECK_INT(c->policy.pregreet_score, -7);
  CHECK_INT(c->upstream_tls_verify, 1);
  CHECK_INT(c->policy.greet_teaser, 0);
  CHECK(c->policy.lenient == SL_LENIENT_NORMALIZE_BARE_LF);
  CHECK_INT(c->policy.mode, SL_MODE_SCREEN_FIRST);
  CHECK_INT(c->ratelim.over_rate, SL_ADMIT_TARPIT);
  CHECK(c->policy.normal.greet_delay == 2500 * SL_MSEC);
  CHECK(c->policy.suspect.data_rate == 1024);
  CHECK_STR(c->tls_ciphers, "HIGH:!aNULL");
  CHECK(c->policy.features ==
        (SL_FEAT_PIPELINING | SL_FEAT_SIZE | SL_FEAT_STARTTLS));
  CHECK_STR(c->policy.auth_mechanisms, "PLAIN LOGIN");
  sl_config_unref(c);
}

static void test_lines(void) {
  sl_config *c = parse("listen = [::1]:2465 tls   # comment\n"
                       "listen = *:25 proxy\n"
                       "trusted_proxy = 10.0.0.0/8, 192.168.1.1\n"
                       "upstream = 127.0.0.1:10 weight=5\n"
                       "upstream = mx.example.org:25\n"
                       "sni = a.example /x/a.pem /x/a.key\n"
                       "dnsbl = zen.example.org 10 127.0.0.2 127.0.0.4\n"
                       "dnsbl = list.dnswl.example -5\n");
  CHECK(c != NULL);
  if (!c) {
    fprintf(stderr, "%s\n", err);
    return;
  }
  CHECK_INT(c->nlisten, 2);
  CHECK_INT(c->listen[0].tls, 1);
  CHECK_INT(c->listen[0].line, 1);
  CHECK_INT(c->listen[1].proxy, 1);
  CHECK_INT(c->listen[1].addr.ss.ss_family, AF_INET);
  CHECK_INT(c->ntrusted, 2);
  CHECK_INT(c->trusted[1].bits, 32);
  CHECK_INT(c->nupstream, 2);
  CHECK_INT(c->upstream[0].weight, 5);
  CHECK(c->upstream[0].addr.len > 0);
  /* a host name is left for the daemon to resolve */
  CHECK_INT(c->upstream[1].addr.len, 0);
  CHECK_INT(c->nsni, 1);
  CHECK_INT(c->policy.ndnsbl, 2);
  CHECK_STR(c->policy.dnsbl[0].zone, "zen.example.org");
  CHECK_INT(c->policy.dnsbl[0].ncodes, 2);
  CHECK(c->policy.dnsbl[0].codes[1] == 0x7f000004u);
  CHECK_INT(c->policy.dnsbl[1].weight, -5);
  sl_config_unref(c);
}

static void test_errors_name_file_line_key(void) {
  expect_error("mode = screen\n\nno equals sign\n", "t.conf:3: expected");
  expect_error("\n= 5\n", "t.conf:2: expected");
  expect_error("command_timeout = 5 parsecs\n",
               "t.conf:1: command_timeout: \"5 parsecs\" is not a duration");
  expect_error(
      "mode = sideways\n",
      "t.conf:1: mode: \"sideways\" is not one of: passthrough, screen");
  expect_error("x = 1\npipeline_max = 99\n", "t.conf:1: unknown key");
  expect_error("pipeline_max = 99\n",
               "t.conf:1: pipeline_max: 99 is out of range 2..32");
  expect_error("ipv4_prefix = 300\n",
               "t.conf:1: ipv4_prefix: 300 is out of range");
  expect_error("tarpit_score = lots\n",
               "t.conf:1: tarpit_score: \"lots\" is not an integer");
  expect_error("health_rise = \n", "t.conf:1: health_rise: empty value");
  expect_error("greet_teaser = maybe\n",
               "greet_teaser: \"maybe\" is not yes or no");
  expect_error("message_size_max = 5X\n",
               "message_size_max: \"5X\" is not a size");
  expect_error("text_line_max = 5G\n", "text_line_max: 5G is too large");
  expect_error(
      "over_rate = accept\n",
      "t.conf:1: over_rate: \"accept\" is not one of: tarpit, tempfail");
  expect_error("dnsbl = zen.example.org ten\n", "t.conf:1: dnsbl: weight");
  expect_error("dnsbl = zen.example.org 1 10.0.0.2\n",
               "t.conf:1: dnsbl: return code");
  expect_error("dnsbl = nozone 1\n", "dnsbl: \"nozone\" is not a DNS zone");
  expect_error("features = pipelining teleport\n",
               "t.conf:1: features: unknown feature \"teleport\"");
  expect_error("listen = 127.0.0.1:99999\n", "t.conf:1: listen");
  expect_error("listen = ::1:25\n", "t.conf:1: listen");
  expect_error("listen = 127.0.0.1:25 fast\n",
               "listen: unknown option \"fast\"");
  expect_error("upstream = bad host!:25\n", "t.conf:1: upstream");
  expect_error("upstream = 127.0.0.1:2 weight=0\n", "upstream: bad option");
  expect_error("trusted_proxy = 10.0.0.0/33\n", "t.conf:1: trusted_proxy");
  expect_error("sni = a.example /x/a.pem\n", "t.conf:1: sni: expected");
  expect_error(
      "metrics_listen = localhost:9025\n",
      "metrics_listen: \"localhost:9025\" is not a numeric ADDRESS:PORT");
  sl_config *c = sl_config_new();
  if (c) {
    CHECK(sl_config_parse(c, "mode = scr\0een\n", 15, "t.conf", err,
                          sizeof err) != 0);
    CHECK_STR(err, "t.conf:1: NUL byte in line");
    sl_config_unref(c);
  }
}

static void test_suggestions(void) {
  CHECK_INT(sl_config_edit_distance("kitten", "sitting"), 3);
  CHECK_INT(sl_config_edit_distance("", "abc"), 3);
  CHECK_INT(sl_config_edit_distance("same", "same"), 0);
  CHECK_STR(sl_config_suggest("normal_greet_dalay"), "normal_greet_delay");
  CHECK_STR(sl_config_suggest("max_conections_total"), "max_connections_total");
  CHECK_STR(sl_config_suggest("upstrem"), "upstream");
  CHECK_STR(sl_config_suggest("lisen"), "listen");
  CHECK(sl_config_suggest("completely_unrelated_words") == NULL);
  CHECK(sl_config_suggest("xyz") == NULL);
  expect_error("mode = screen\nnormal_greet_dalay = 6s\n",
               "t.conf:2: unknown key \"normal_greet_dalay\" (did you mean "
               "\"normal_greet_delay\"?)");
  expect_error("bogus_thing_entirely = 1\n",
               "t.conf:1: unknown key \"bogus_thing_entirely\"");
  /* no suggestion when nothing is close */
  sl_config *c = parse("bogus_thing_entirely = 1\n");
  CHECK(c == NULL && strstr(err, "did you mean") == NULL);
}

static void test_repeated_keys(void) {
  expect_error("mode = screen\nhostname = a.example\nmode = passthrough\n",
               "t.conf:3: mode: already set at line 1");
  sl_config *c = parse("listen = 127.0.0.1:1\nlisten = 127.0.0.1:2\n"
                       "dnsbl = a.example 1\ndnsbl = b.example 2\n"
                       "upstream = 127.0.0.1:3\nupstream = 127.0.0.1:4\n");
  CHECK(c != NULL);
  if (!c)
    return;
  CHECK_INT(c->nlisten, 2);
  CHECK_INT(c->policy.ndnsbl, 2);
  /* sl_config_set is an override (--set): no repeat check */
  CHECK(sl_config_set(c, "mode", "screen", "--set", 0, err, sizeof err) == 0);
  CHECK(sl_config_set(c, "mode", "passthrough", "--set", 0, err, sizeof err) ==
        0);
  CHECK(sl_config_set(c, "mode", "other", "--set", 0, err, sizeof err) != 0);
  CHECK_STR(err, "--set: mode: \"other\" is not one of: passthrough, screen");
  CHECK(sl_config_set(c, "moed", "screen", "--set", 0, err, sizeof err) != 0);
  CHECK(strstr(err, "did you mean \"mode\"") != NULL);
  sl_config_unref(c);
}

static void test_hostname(void) {
  CHECK(sl_hostname_valid("mx.example.org"));
  CHECK(sl_hostname_valid("mail-1_a.example"));
  CHECK(sl_hostname_valid("localhost"));
  CHECK(!sl_hostname_valid("mx example"));
  CHECK(!sl_hostname_valid("mx..example"));
  CHECK(!sl_hostname_valid(".example"));
  CHECK(!sl_hostname_valid(""));
  CHECK(!sl_hostname_valid("a\r\nb"));
  char label[80];
  memset(label, 'a', 64);
  label[64] = '\0';
  CHECK(!sl_hostname_valid(label));
  expect_error("hostname = mx example\n",
               "t.conf:1: hostname: \"mx example\" is not a host name");
  sl_config *c = parse("hostname = mx.example.org\n");
  CHECK(c != NULL);
  if (c) {
    CHECK_STR(c->policy.hostname, "mx.example.org");
    sl_config_unref(c);
  }
}

static sl_config *finished(const char *text, unsigned flags) {
  sl_config *c = parse(text);
  if (c == NULL)
    return NULL;
  if (sl_config_finish(c, flags, err, sizeof err) != 0) {
    sl_config_unref(c);
    return NULL;
  }
  return c;
}

static void expect_finish_error(const char *text, unsigned flags,
                                const char *want) {
  sl_config *c = finished(text, flags);
  CHECK(c == NULL);
  if (c) {
    sl_config_unref(c);
    return;
  }
  if (strstr(err, want) == NULL) {
    fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
    CHECK(0);
  }
}

static void test_daemon_only_and_finish(void) {
  const char *lu = "listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\n";
  char buf[512];
  /* The replay's finish needs no listener; sluiced's does. */
  sl_config *c = finished("mode = screen\nworkers = 4\n", 0);
  CHECK(c != NULL);
  sl_config_unref(c);
  expect_finish_error("mode = screen\n", SL_CONFIG_DAEMON,
                      "no \"listen\" line");
  expect_finish_error("listen = 127.0.0.1:1\n", SL_CONFIG_DAEMON,
                      "no \"upstream\" line");
  snprintf(buf, sizeof buf, "%slisten = 127.0.0.1:3 tls\n", lu);
  expect_finish_error(buf, SL_CONFIG_DAEMON,
                      "t.conf:3: listen 127.0.0.1:3 tls needs tls_cert");
  snprintf(buf, sizeof buf, "%slisten = 127.0.0.1:3 proxy\n", lu);
  expect_finish_error(buf, SL_CONFIG_DAEMON,
                      "needs at least one trusted_proxy");
  snprintf(buf, sizeof buf, "%s\ntls_cert = /x.pem\n", lu);
  expect_finish_error(buf, SL_CONFIG_DAEMON,
                      "t.conf:4: tls_cert: tls_cert and tls_key go together");
  /* Limits and policy errors name the key and its line. */
  expect_finish_error("buffer_size = 8k\n", 0,
                      "t.conf:1: buffer_size: 8192 must be at least");
  expect_finish_error("small_buffer_size = 100\n", 0,
                      "t.conf:1: small_buffer_size: 100 is below 300");
  expect_finish_error(
      "normal_stutter_bytes = 1\n", 0,
      "t.conf:1: normal_stutter_bytes: needs normal_stutter_interval");
  /* STARTTLS follows the certificate unless features is set. */
  c = finished(lu, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK(!(c->policy.features & SL_FEAT_STARTTLS));
    sl_config_unref(c);
  }
  snprintf(buf, sizeof buf,
           "%stls_cert = /c\ntls_key = /k\nmetrics_listen = 127.0.0.1:9\n", lu);
  c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK(c->policy.features & SL_FEAT_STARTTLS);
    CHECK(c->metrics_addr.len > 0);
    sl_config_unref(c);
  }
}

static void test_check_files(void) {
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char path[512], text[2048];
  snprintf(path, sizeof path, "%s/sl_config_test_%d.pem", dir, (int)getpid());
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (!f)
    return;
  fputs("x\n", f);
  fclose(f);
  snprintf(text, sizeof text,
           "tls_cert = %s\ntls_key = %s\nlog_file = %s/x.log\n", path, path,
           dir);
  sl_config *c = parse(text);
  CHECK(c != NULL);
  if (c) {
    CHECK(sl_config_check_files(c, err, sizeof err) == 0);
    sl_config_unref(c);
  }
  snprintf(text, sizeof text, "tls_cert = %s\n\ntls_key = %s/missing.key\n",
           path, dir);
  c = parse(text);
  CHECK(c != NULL);
  if (c) {
    CHECK(sl_config_check_files(c, err, sizeof err) != 0);
    CHECK(strstr(err, "t.conf:3: tls_key: cannot read") != NULL);
    CHECK(strstr(err, "No such file") != NULL);
    sl_config_unref(c);
  }
  snprintf(text, sizeof text, "tls_cert = %s\n", dir); /* a directory */
  c = parse(text);
  if (c) {
    CHECK(sl_config_check_files(c, err, sizeof err) != 0);
    CHECK(strstr(err, "not a regular file") != NULL);
    sl_config_unref(c);
  }
  c = parse("log_file = /nonexistent-dir-sl/sluiced.log\n");
  if (c) {
    CHECK(sl_config_check_files(c, err, sizeof err) != 0);
    CHECK_STR(
        err,
        "t.conf:1: log_file: directory \"/nonexistent-dir-sl\" does not exist");
    sl_config_unref(c);
  }
  snprintf(text, sizeof text, "sni = a.example %s /nope.key\n", path);
  c = parse(text);
  if (c) {
    CHECK(sl_config_check_files(c, err, sizeof err) != 0);
    CHECK(strstr(err, "t.conf:1: sni: cannot read \"/nope.key\"") != NULL);
    sl_config_unref(c);
  }
  unlink(path);
}

static char *dump(const sl_config *c, unsigned flags, size_t *n) {
  char *d = NULL;
  FILE *f = open_memstream(&d, n);
  sl_config_dump(c, f, flags);
  fclose(f);
  return d;
}

static void test_dump(void) {
  const char *text =
      "listen = 127.0.0.1:2525\nupstream = 127.0.0.1:2526 weight=2\n"
      "dnsbl = bl.example 3 127.0.0.2\nnormal_reply_delay = 150ms\n"
      "suspect_greet_delay = 2.5s\ncommand_timeout = 300s\n"
      "features = size pipelining\nhostname = h.example\n"
      "workers = 0\nlog_format = json\n";
  sl_config *c = parse(text);
  CHECK(c != NULL);
  if (!c)
    return;
  size_t n1, n2;
  /* The full dump parses back to the same dump. */
  char *d1 = dump(c, 0, &n1);
  sl_config *c2 = parse(d1);
  CHECK(c2 != NULL);
  if (c2) {
    char *d2 = dump(c2, 0, &n2);
    CHECK_MEM(d1, n1, d2, n2);
    free(d2);
    sl_config_unref(c2);
  }
  CHECK(strstr(d1, "suspect_greet_delay = 2500ms\n") != NULL);
  CHECK(strstr(d1, "mode = passthrough\n") != NULL);
  free(d1);
  /* -n: only what the file set and is not the default (command_timeout
     and workers are set to their defaults, so they are left out). */
  d1 = dump(c, SL_DUMP_CHANGED, &n1);
  CHECK_STR(d1, "listen = 127.0.0.1:2525\n"
                "upstream = 127.0.0.1:2526 weight=2\n"
                "hostname = h.example\n"
                "features = pipelining size\n"
                "normal_reply_delay = 150ms\n"
                "suspect_greet_delay = 2500ms\n"
                "dnsbl = bl.example 3 127.0.0.2\n"
                "log_format = json\n");
  free(d1);
  sl_config_unref(c);
  /* A default config has nothing to show. */
  c = sl_config_new();
  d1 = dump(c, SL_DUMP_CHANGED, &n1);
  CHECK_INT(n1, 0);
  free(d1);
  sl_config_unref(c);
}

static void test_relay_control(void) {
  /* Default: nothing listed, every untrusted recipient refused, a warning. */
  sl_config *c = parse("");
  CHECK(c != NULL);
  if (!c)
    return;
  CHECK_INT(c->policy.rcpt.ndomains, 0);
  CHECK(sl_config_relay_warning(c) != NULL);
  CHECK_INT(sl_rcpt_check(&c->policy.rcpt, (const uint8_t *)"u@a.test", 8, 0),
            SL_RCPT_UNCONFIGURED);
  sl_config_unref(c);

  char path[] = "/tmp/sl_config_test_relay_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0)
    return;
  const char *list =
      "# relay domains\nc.test  # inline comment\n\n.d.test, e.test\n";
  CHECK_INT(write(fd, list, strlen(list)), (long long)strlen(list));
  close(fd);
  char text[512];
  snprintf(text, sizeof text,
           "relay_domains = a.test, .b.test\n"
           "relay_domains = file:%s\n"
           "relay_allow = percent_hack, bang_path\n"
           "mynetworks = 10.0.0.0/8 2001:db8::/32\n",
           path);
  c = parse(text);
  unlink(path);
  CHECK(c != NULL);
  if (!c) {
    fprintf(stderr, "%s\n", err);
    return;
  }
  CHECK(sl_config_relay_warning(c) == NULL);
  CHECK_INT(c->policy.rcpt.ndomains, 5);
  CHECK_STR(c->policy.rcpt.domains[3], ".d.test");
  CHECK_INT(c->policy.rcpt.flags,
            SL_RCPT_ALLOW_PERCENT_HACK | SL_RCPT_ALLOW_BANG_PATH);
  CHECK_INT(c->policy.rcpt.nmynetworks, 2);
  CHECK_INT(
      sl_rcpt_check(&c->policy.rcpt, (const uint8_t *)"u@x.d.test", 10, 0),
      SL_RCPT_OK);
  CHECK_INT(sl_rcpt_check(&c->policy.rcpt, (const uint8_t *)"u@f.test", 8, 0),
            SL_RCPT_DENIED);
  sl_addr a;
  memset(&a, 0, sizeof a);
  a.family = SL_AF_INET;
  a.bytes[0] = 10;
  a.bytes[3] = 9;
  CHECK(sl_rcpt_client_trusted(&c->policy.rcpt, &a));
  /* the dump reads back to the same lists */
  char *dump = NULL;
  size_t dlen = 0;
  FILE *f = open_memstream(&dump, &dlen);
  sl_config_dump(c, f, 0);
  fclose(f);
  CHECK(strstr(dump, "relay_domains = .d.test\n") != NULL);
  CHECK(strstr(dump, "relay_allow = percent_hack bang_path\n") != NULL);
  CHECK(strstr(dump, "mynetworks = 2001:db8::/32\n") != NULL);
  free(dump);
  sl_config_unref(c);

  c = parse("relay_domains = *\n");
  CHECK(c != NULL);
  if (c) {
    CHECK(c->policy.rcpt.flags & SL_RCPT_ANY_DOMAIN);
    CHECK(sl_config_relay_warning(c) != NULL); /* identity none */
    sl_config_unref(c);
  }
  c = parse("relay_domains = *\nidentity = xclient\n");
  CHECK(c != NULL);
  if (c) {
    CHECK(sl_config_relay_warning(c) == NULL);
    sl_config_unref(c);
  }
  expect_error("relay_domains = u@a.test\n", "t.conf:1: relay_domains");
  expect_error("relay_domains = b\xc0\xbc"
               "cher.test\n",
               "relay_domains");
  expect_error("relay_allow = everything\n", "relay_allow");
  expect_error("relay_allow = none\nrelay_allow = bang_path\n", "relay_allow");
  expect_error("relay_domains = file:/nonexistent/relay\n", "/nonexistent");
  expect_error("mynetworks = 10.0.0.0/33\n", "mynetworks");
}

static void test_filters(void) {
  const char *lu = "listen = 127.0.0.1:1\nupstream = 127.0.0.1:2\n";
  char buf[1024];
  sl_config *c = sl_config_new();
  CHECK(c != NULL);
  if (c) {
    /* Defaults: no filter, 30s, tempfail (Postfix's milter_default_action),
       auto mode, 1 MiB in memory, discard rejected, nothing skipped. */
    CHECK_INT(c->nfilters, 0);
    CHECK(c->filter_timeout == 30 * SL_SEC);
    CHECK_INT(c->filter_default_action, SL_FILTER_ACT_TEMPFAIL);
    CHECK_INT(c->filter_mode, SL_FILTER_MODE_AUTO);
    CHECK(c->filter_spool_memory == 1048576);
    CHECK(c->filter_spool_memory_total == 67108864);
    CHECK_INT(c->filter_discard_action, SL_FILTER_DISCARD_REJECT);
    CHECK_INT(c->filter_skip, 0);
    sl_config_unref(c);
  }
  snprintf(buf, sizeof buf,
           "%slisten = 127.0.0.1:3 nofilter\n"
           "filter = rspamd inet:127.0.0.1:11333 name=spam timeout=5s\n"
           "filter = clamd unix:/run/clamav/clamd.ctl\n"
           "filter = milter inet:[::1]:8891\n"
           "filter = milter inet:milter.example:8892\n"
           "filter_skip = authenticated, dnswl\n",
           lu);
  c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->nfilters, 4);
    CHECK_INT(c->listen[1].nofilter, 1);
    CHECK_INT(c->listen[0].nofilter, 0);
    CHECK_INT(c->filters[0].kind, SL_FILTER_RSPAMD);
    CHECK_STR(c->filters[0].name, "spam");
    CHECK(c->filters[0].timeout == 5 * SL_SEC);
    CHECK(c->filters[0].addr.len > 0);
    CHECK_INT(c->filters[0].port, 11333);
    CHECK_INT(c->filters[1].kind, SL_FILTER_CLAMD);
    CHECK_STR(c->filters[1].name, "clamd-2");
    CHECK_STR(c->filters[1].path, "/run/clamav/clamd.ctl");
    CHECK_INT(c->filters[1].line, 5);
    CHECK_INT(c->filters[2].addr.ss.ss_family, AF_INET6);
    CHECK_INT(c->filters[3].addr.len, 0); /* a name: sluiced resolves it */
    CHECK_STR(c->filters[3].host, "milter.example");
    CHECK_INT(c->filter_skip,
              SL_FILTER_SKIP_AUTHENTICATED | SL_FILTER_SKIP_DNSWL);
    CHECK_INT(c->filter_mode_spool, 1); /* auto with rspamd and milters */
    /* The dump parses back to the same filters. */
    char *dump = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&dump, &dlen);
    sl_config_dump(c, f, 0);
    fclose(f);
    CHECK(strstr(dump, "filter = rspamd inet:127.0.0.1:11333 name=spam "
                       "timeout=5s\n") != NULL);
    CHECK(strstr(dump, "listen = 127.0.0.1:3 nofilter\n") != NULL);
    CHECK(strstr(dump, "filter_skip = authenticated dnswl\n") != NULL);
    sl_config *back = parse(dump);
    CHECK(back != NULL);
    if (back) {
      CHECK_INT(back->nfilters, 4);
      CHECK_STR(back->filters[1].name, "clamd-2");
      sl_config_unref(back);
    }
    free(dump);
    sl_config_unref(c);
  }
  /* clamd alone never changes a message: auto streams. */
  snprintf(buf, sizeof buf, "%sfilter = clamd inet:127.0.0.1:3310\n", lu);
  c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->filter_mode_spool, 0);
    sl_config_unref(c);
  }
  expect_error("filter = spamassassin inet:127.0.0.1:783\n",
               "t.conf:1: filter: \"spamassassin\" is not rspamd, clamd or "
               "milter");
  expect_error("filter = clamd 127.0.0.1:3310\n",
               "filter: \"127.0.0.1:3310\" is not inet:HOST:PORT or "
               "unix:PATH");
  expect_error("filter = clamd unix:clamd.sock\n",
               "unix: needs an absolute path");
  expect_error("filter = clamd inet:127.0.0.1:0\n", "is not inet:HOST:PORT");
  expect_error("filter = milter inet:127.0.0.1:1 speed=3\n",
               "filter: unknown option \"speed=3\"");
  expect_error("filter = milter inet:127.0.0.1:1 timeout=0\n",
               "is not a duration above 0");
  expect_error("filter = milter inet:127.0.0.1:1 name=a\n"
               "filter = clamd inet:127.0.0.1:2 name=a\n",
               "t.conf:2: filter: name \"a\" is already used at line 1");
  expect_error("filter = milter inet:127.0.0.1:1 name=a/b\n", "name \"a/b\"");
  expect_error("filter_skip = everyone\n",
               "filter_skip: \"everyone\" is not none, authenticated");
  expect_error("filter_mode = lazy\n",
               "filter_mode: \"lazy\" is not one of: auto, stream, spool");
  expect_error("filter_default_action = discard\n",
               "\"discard\" is not one of: tempfail, accept, reject");
  /* The filter timeout stays below the upstream's end-of-data timeout. */
  snprintf(buf, sizeof buf,
           "%sfilter = clamd inet:127.0.0.1:3310\nfilter_timeout = 10m\n", lu);
  expect_finish_error(buf, SL_CONFIG_DAEMON,
                      "t.conf:4: filter_timeout: 600s is not between 0 and "
                      "upstream_data_term_timeout (600s)");
  snprintf(buf, sizeof buf,
           "%sfilter = clamd inet:127.0.0.1:3310 timeout=2m\n"
           "upstream_data_term_timeout = 1m\nfilter_timeout=10s\n",
           lu);
  expect_finish_error(buf, SL_CONFIG_DAEMON,
                      "t.conf:3: filter: clamd-1: timeout=120s is not below "
                      "upstream_data_term_timeout (60s)");
  snprintf(buf, sizeof buf,
           "%sfilter = clamd inet:127.0.0.1:3310\nfilter_discard_action = "
           "tag\n",
           lu);
  expect_finish_error(buf, SL_CONFIG_DAEMON,
                      "filter_discard_action: tag adds a header, which needs "
                      "filter_mode spool");
}

/* policy_stages: where policy_service is asked; rcpt by default, and the
   relay's checks follow (greylisting keeps RCPT checks on). */
static void test_policy_stages(void) {
  char buf[512];
  const char *lu = "listen = 127.0.0.1:2\nupstream = 127.0.0.1:1\n";
  snprintf(buf, sizeof buf, "%spolicy_service = inet:127.0.0.1:10023\n", lu);
  sl_config *c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->policy_stages, SL_POLICY_AT_RCPT);
    CHECK_INT(c->policy.rcpt_check, 1);
    CHECK_INT(c->policy.check_stages, 0);
    sl_config_unref(c);
  }
  snprintf(buf, sizeof buf,
           "%spolicy_service = inet:127.0.0.1:10023\n"
           "policy_stages = mail, data\n",
           lu);
  c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->policy.rcpt_check, 0);
    CHECK_INT(c->policy.check_stages, SL_CHECK_MAIL | SL_CHECK_DATA);
    char *dump = NULL;
    size_t dlen = 0;
    FILE *f = open_memstream(&dump, &dlen);
    sl_config_dump(c, f, 0);
    fclose(f);
    CHECK(strstr(dump, "policy_stages = mail data\n") != NULL);
    free(dump);
    sl_config_unref(c);
  }
  /* greylisting asks at RCPT whatever the policy service's stages */
  snprintf(buf, sizeof buf,
           "%spolicy_service = inet:127.0.0.1:10023\ngreylist = yes\n"
           "policy_stages = mail\n",
           lu);
  c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->policy.rcpt_check, 1);
    CHECK_INT(c->policy.check_stages, SL_CHECK_MAIL);
    sl_config_unref(c);
  }
  /* stages without a policy service ask nothing */
  snprintf(buf, sizeof buf, "%spolicy_stages = mail data\n", lu);
  c = finished(buf, SL_CONFIG_DAEMON);
  CHECK(c != NULL);
  if (c) {
    CHECK_INT(c->policy.rcpt_check, 0);
    CHECK_INT(c->policy.check_stages, 0);
    sl_config_unref(c);
  }
  expect_error("policy_stages = connect\n",
               "policy_stages: \"connect\" is not a stage sluice asks at: "
               "helo, mail, rcpt or data");
  expect_error("policy_stages = ,\n", "name at least one stage");
}

int main(void) {
  SL_RUN(test_table);
  SL_RUN(test_durations);
  SL_RUN(test_sizes_bools_ints);
  SL_RUN(test_lines);
  SL_RUN(test_errors_name_file_line_key);
  SL_RUN(test_suggestions);
  SL_RUN(test_repeated_keys);
  SL_RUN(test_hostname);
  SL_RUN(test_daemon_only_and_finish);
  SL_RUN(test_check_files);
  SL_RUN(test_dump);
  SL_RUN(test_relay_control);
  SL_RUN(test_filters);
  SL_RUN(test_policy_stages);
  return sl_test_summary();
}
