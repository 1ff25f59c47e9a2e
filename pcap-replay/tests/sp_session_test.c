/* SMTP session tracking: roles, recognition, TLS, ends, numbering. */
#include <stdlib.h>
#include <string.h>

#include "sl_test.h"
#include "sp_session.h"
#include "sp_transcript.h"

/* Every session's records, rendered as one text (the transcript writer's
 * own format minus the header, with a "#n client->server" line first). */
typedef struct out {
  sp_buf text;
  int sessions, finished;
  sp_session last;
} out;

static int cb_begin(void *ud, sp_session *s) {
  out *o = ud;
  char c[SP_ADDRSTRLEN], v[SP_ADDRSTRLEN];
  sp_endpoint_addr_str(&s->client, c, sizeof c);
  sp_endpoint_addr_str(&s->server, v, sizeof v);
  o->sessions++;
  return sp_buf_printf(&o->text, "#%llu %s:%u>%s:%u\n",
                       (unsigned long long)s->number, c, s->client.port, v,
                       s->server.port);
}

static int cb_record(void *ud, sp_session *s, const sp_record *r) {
  (void)s;
  return sp_transcript_put_record(&((out *)ud)->text, r);
}

static int cb_finish(void *ud, sp_session *s) {
  out *o = ud;
  o->finished++;
  o->last = *s;
  return 0;
}

static out o;
static sp_tracker *t;
static int64_t now;

static void setup_ports(const char *ports) {
  sp_buf_free(&o.text);
  memset(&o, 0, sizeof o);
  sp_tracker_config cfg;
  sp_tracker_config_default(&cfg);
  if (ports)
    CHECK_INT(sp_tracker_config_ports(&cfg, ports), 0);
  sp_tracker_callbacks cb = {cb_begin, cb_record, cb_finish};
  t = sp_tracker_new(&cfg, &cb, &o);
  now = 1000000;
}

static void setup(void) { setup_ports(NULL); }

static void teardown(void) {
  sp_tracker_free(t);
  sp_buf_free(&o.text);
}

static sp_endpoint ep(uint8_t last, uint16_t port) {
  sp_endpoint e;
  memset(&e, 0, sizeof e);
  e.family = 4;
  e.ip[0] = 10;
  e.ip[3] = last;
  e.port = port;
  return e;
}

/* A: 10.0.0.1:40000, B: 10.0.0.2:<port>.  dt_us advances the clock. */
static uint16_t bport = 25;
static int pkt(int from_a, uint32_t seq, uint8_t flags, const char *data,
               int64_t dt_us) {
  sp_tcp_segment s;
  memset(&s, 0, sizeof s);
  now += dt_us;
  s.ts_us = now;
  sp_endpoint a = ep(1, 40000), b = ep(2, bport);
  s.src = from_a ? a : b;
  s.dst = from_a ? b : a;
  s.seq = seq;
  s.flags = flags;
  s.payload = (const uint8_t *)data;
  s.caplen = s.wirelen = (uint32_t)strlen(data);
  return sp_tracker_packet(t, &s);
}

#define A 1
#define B 0

static void text_is(const char *want) {
  sp_buf_append(&o.text, "", 1);
  CHECK_STR((const char *)o.text.data, want);
  o.text.len--;
}

static void test_full_session(void) {
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 10);
  pkt(B, 501, SP_TCP_ACK, "220 hi\r\n", 10);
  pkt(A, 101, SP_TCP_ACK, "EHLO x\r\n", 10);
  pkt(B, 509, SP_TCP_ACK, "250 ok\r\n", 10);
  pkt(A, 109, SP_TCP_ACK, "QUIT\r\n", 10);
  pkt(B, 517, SP_TCP_ACK | SP_TCP_FIN, "221 bye\r\n", 10);
  CHECK_INT(o.finished, 0);
  pkt(A, 115, SP_TCP_ACK | SP_TCP_FIN, "", 10);
  CHECK_INT(o.finished, 1);
  text_is("#1 10.0.0.1:40000>10.0.0.2:25\n"
          "S 20 8\n220 hi\r\n\n"
          "C 30 8\nEHLO x\r\n\n"
          "S 40 8\n250 ok\r\n\n"
          "C 50 6\nQUIT\r\n\n"
          "S 60 9\n221 bye\r\n\n"
          "E 60 server-fin\n"
          "E 70 client-fin\n");
  CHECK_STR(o.last.first_command, "EHLO");
  CHECK_INT(o.last.packets[SP_SIDE_CLIENT], 4);
  CHECK_INT(o.last.packets[SP_SIDE_SERVER], 4);
  CHECK_INT(o.last.bytes[SP_SIDE_CLIENT], 14);
  CHECK_INT(o.last.ends, (1u << SP_END_CLIENT_FIN) | (1u << SP_END_SERVER_FIN));
  /* The trailing ACK is a late packet, not a new session. */
  pkt(B, 527, SP_TCP_ACK, "", 10);
  CHECK_INT(sp_tracker_finish(t), 0);
  CHECK_INT(o.sessions, 1);
  CHECK_INT(sp_tracker_get_counters(t)->late_packets, 1);
  teardown();
}

static void test_mid_stream_roles_by_content(void) {
  /* No SYN, server packet first, both ports in the set: content decides. */
  bport = 2525;
  setup_ports("25,2525,40000");
  pkt(B, 900, SP_TCP_ACK, "250 ok\r\n", 0);
  CHECK_INT(o.sessions, 1); /* a reply code: B is the server */
  pkt(A, 300, SP_TCP_ACK, "QUIT\r\n", 5);
  CHECK_INT(sp_tracker_finish(t), 0);
  text_is("#1 10.0.0.1:40000>10.0.0.2:2525\n"
          "S 0 8\n250 ok\r\n\n"
          "C 5 6\nQUIT\r\n\n"
          "E 5 capture-end\n");
  bport = 25;
  teardown();
}

static void test_content_on_other_port(void) {
  bport = 8025;
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 1);
  CHECK_INT(o.sessions, 0); /* not an SMTP port: wait for content */
  pkt(B, 501, SP_TCP_ACK, "220 smtp here\r\n", 1);
  CHECK_INT(o.sessions, 1);
  sp_tracker_finish(t);
  CHECK_INT(o.finished, 1);
  teardown();
  /* HTTP on port 8025: never a session. */
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 1);
  pkt(A, 101, SP_TCP_ACK, "GET / HTTP/1.0\r\n\r\n", 1);
  pkt(B, 501, SP_TCP_ACK, "HTTP/1.0 200 OK\r\n\r\n", 1);
  sp_tracker_finish(t);
  CHECK_INT(o.sessions, 0);
  bport = 25;
  teardown();
}

static void test_one_side_only(void) {
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(A, 101, SP_TCP_ACK, "EHLO x\r\n", 3);
  pkt(A, 109, SP_TCP_ACK, "MAIL FROM:<a@b>\r\n", 3);
  pkt(A, 126, SP_TCP_ACK | SP_TCP_FIN, "", 3);
  sp_tracker_finish(t);
  text_is("#1 10.0.0.1:40000>10.0.0.2:25\n"
          "C 3 8\nEHLO x\r\n\n"
          "C 6 17\nMAIL FROM:<a@b>\r\n\n"
          "E 9 client-fin\n"
          "E 9 capture-end\n");
  teardown();
}

static void test_starttls(void) {
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 1);
  pkt(B, 501, SP_TCP_ACK, "220 hi\r\n", 1);
  pkt(A, 101, SP_TCP_ACK, "STARTTLS\r\n", 1);
  pkt(B, 509, SP_TCP_ACK, "220 go\r\n", 1);
  pkt(A, 111, SP_TCP_ACK, "\x16\x03\x01 hello", 1);
  pkt(B, 517, SP_TCP_ACK, "\x16\x03\x03 server", 1);
  sp_tracker_finish(t);
  text_is("#1 10.0.0.1:40000>10.0.0.2:25\n"
          "S 2 8\n220 hi\r\n\n"
          "C 3 10\nSTARTTLS\r\n\n"
          "S 4 8\n220 go\r\n\n"
          "E 5 tls\n");
  CHECK_INT(o.last.tls, SP_TLS_STARTTLS);
  teardown();
  /* Refused STARTTLS, then a body line starting with 0x16 that is no TLS
   * record: plaintext continues. */
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(A, 101, SP_TCP_ACK, "starttls\r\nNOOP\r\n", 1);
  pkt(A, 117, SP_TCP_ACK, "\x16x\r\n", 1);
  sp_tracker_finish(t);
  CHECK(strstr((const char *)o.text.data, "E 2 capture-end") != NULL);
  CHECK_INT(o.last.tls, SP_TLS_NONE);
  CHECK_STR(o.last.first_command, "STARTTLS");
  teardown();
}

static void test_implicit_tls(void) {
  bport = 465;
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 1);
  pkt(A, 101, SP_TCP_ACK, "\x16\x03\x01\x02\x00", 1);
  CHECK_INT(o.finished, 1);
  text_is("#1 10.0.0.1:40000>10.0.0.2:465\nE 2 tls\n");
  CHECK_INT(o.last.tls, SP_TLS_IMPLICIT);
  bport = 25;
  teardown();
}

static void test_rst(void) {
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 1);
  pkt(B, 501, SP_TCP_ACK, "220 hi\r\n", 1);
  pkt(A, 105, SP_TCP_ACK, "lo x\r\n", 1); /* "EHLO" lost */
  pkt(B, 509, SP_TCP_RST, "", 1);
  CHECK_INT(o.finished, 1);
  text_is("#1 10.0.0.1:40000>10.0.0.2:25\n"
          "S 2 8\n220 hi\r\n\n"
          "G 4 C 4\n"
          "C 4 6\nlo x\r\n\n"
          "E 4 server-rst\n");
  CHECK_STR(o.last.first_command, ""); /* the partial line is no command */
  teardown();
}

static void test_port_reuse_and_strays(void) {
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(A, 101, SP_TCP_RST, "", 1);
  pkt(A, 7000, SP_TCP_SYN, "", 1); /* new ISN: a new connection */
  pkt(A, 7001, SP_TCP_ACK, "HELO y\r\n", 1);
  /* A stray ACK of an unseen connection is no session. */
  sp_tcp_segment s;
  memset(&s, 0, sizeof s);
  s.src = ep(9, 1234);
  s.dst = ep(2, 25);
  s.flags = SP_TCP_ACK;
  s.ts_us = now;
  sp_tracker_packet(t, &s);
  sp_tracker_finish(t);
  CHECK_INT(o.sessions, 2);
  text_is("#1 10.0.0.1:40000>10.0.0.2:25\n"
          "E 1 client-rst\n"
          "#2 10.0.0.1:40000>10.0.0.2:25\n"
          "C 1 8\nHELO y\r\n\n"
          "E 1 capture-end\n");
  teardown();
}

static void test_http_connect_tunnel(void) {
  bport = 8080;
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(B, 500, SP_TCP_SYN | SP_TCP_ACK, "", 1);
  pkt(A, 101, SP_TCP_ACK, "CONNECT mx:25 HTTP/1.0\r\n", 1);
  pkt(A, 125, SP_TCP_ACK, "\r\n", 1);
  pkt(B, 501, SP_TCP_ACK, "HTTP/1.0 200 OK\r\n\r\n220 mx\r\n", 1);
  pkt(A, 127, SP_TCP_ACK, "HELO z\r\n", 1);
  sp_tracker_finish(t);
  text_is("#1 10.0.0.1:40000>10.0.0.2:8080\n"
          "S 4 8\n220 mx\r\n\n"
          "C 5 8\nHELO z\r\n\n"
          "E 5 capture-end\n");
  CHECK_INT(o.last.tunneled, 1);
  bport = 25;
  teardown();
}

static void test_clock_backwards_and_numbering(void) {
  setup();
  pkt(A, 100, SP_TCP_SYN, "", 0);
  pkt(A, 101, SP_TCP_ACK, "EHLO a\r\n", 50);
  pkt(A, 109, SP_TCP_ACK, "NOOP\r\n", -30); /* clock stepped back */
  sp_tracker_finish(t);
  CHECK(strstr((const char *)o.text.data, "C 50 6\nNOOP") != NULL);
  teardown();
}

static void test_ports_parsing(void) {
  sp_tracker_config cfg;
  sp_tracker_config_default(&cfg);
  CHECK_INT(cfg.n_ports, 4);
  CHECK_INT(sp_tracker_config_ports(&cfg, "25"), 0);
  CHECK_INT(cfg.n_ports, 1);
  CHECK_INT(sp_tracker_config_ports(&cfg, "25,587,65535"), 0);
  CHECK_INT(cfg.ports[2], 65535);
  CHECK(sp_tracker_config_ports(&cfg, "") != 0);
  CHECK(sp_tracker_config_ports(&cfg, "25,") != 0);
  CHECK(sp_tracker_config_ports(&cfg, "0") != 0);
  CHECK(sp_tracker_config_ports(&cfg, "65536") != 0);
  CHECK(sp_tracker_config_ports(&cfg, "25 ,587") != 0);
  CHECK_INT(cfg.n_ports, 3); /* unchanged by failures */
}

int main(void) {
  SL_RUN(test_full_session);
  SL_RUN(test_mid_stream_roles_by_content);
  SL_RUN(test_content_on_other_port);
  SL_RUN(test_one_side_only);
  SL_RUN(test_starttls);
  SL_RUN(test_implicit_tls);
  SL_RUN(test_rst);
  SL_RUN(test_port_reuse_and_strays);
  SL_RUN(test_http_connect_tunnel);
  SL_RUN(test_clock_backwards_and_numbering);
  SL_RUN(test_ports_parsing);
  return sl_test_summary();
}
