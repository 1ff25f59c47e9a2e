/*
 * sd_tls_test.c: real OpenSSL handshakes between two sd_tls_conns over a
 * non-blocking socketpair, driven by a bounded poll() loop.
 *
 * A throwaway CA and leaf certificates are made with the openssl CLI in a
 * temporary directory at start.
 */
#include "sd_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sl_test.h"

static char dir[64];

static const char *path(const char *name) {
  static char bufs[8][256];
  static unsigned next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
  return b;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int contains(const char *s, const char *sub) {
  return s != NULL && strstr(s, sub) != NULL;
}

__attribute__((format(printf, 1, 2))) static int run(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return system(cmd);
}

static int write_file(const char *p, const char *text) {
  FILE *f = fopen(p, "w");
  if (f == NULL)
    return -1;
  fputs(text, f);
  return fclose(f);
}

/* CA, then leaves signed by it: mail.test (default cert, also IP
 * 127.0.0.1), other.test + *.wild.test (SNI), and a second, unrelated CA. */
static int make_certs(void) {
  static const char cnf[] =
      "[req]\ndistinguished_name = dn\nprompt = no\n"
      "[dn]\nCN = sluice test CA\n"
      "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
      "keyUsage = critical,keyCertSign,cRLSign\n"
      "subjectKeyIdentifier = hash\n"
      "[leaf]\nbasicConstraints = CA:FALSE\n"
      "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
      "[mail]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
      "subjectAltName = DNS:mail.test,IP:127.0.0.1\n"
      "[other]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
      "subjectAltName = DNS:other.test,DNS:*.wild.test\n";
  const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  if (write_file(path("x.cnf"), cnf) != 0)
    return -1;
  if (run("cd %s && openssl req -x509 -config x.cnf -extensions v3_ca %s "
          "-keyout ca.key -out ca.pem -days 2 >log 2>&1",
          dir, ec) != 0 ||
      run("cd %s && openssl req -x509 -config x.cnf -extensions v3_ca %s "
          "-subj /CN=stranger -keyout ca2.key -out ca2.pem -days 2 "
          ">>log 2>&1",
          dir, ec) != 0)
    return -1;
  static const char *const leaves[][2] = {{"mail", "/CN=mail.test"},
                                          {"other", "/CN=other.test"}};
  for (size_t i = 0; i < 2; i++) {
    if (run("cd %s && openssl req -new -config x.cnf %s -subj %s "
            "-keyout %s.key -out %s.csr >>log 2>&1 && "
            "openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
            "-CAcreateserial -days 2 -extfile x.cnf -extensions %s "
            "-out %s.pem >>log 2>&1",
            dir, ec, leaves[i][1], leaves[i][0], leaves[i][0], leaves[i][0],
            leaves[i][0], leaves[i][0]) != 0)
      return -1;
  }
  return write_file(path("garbage.pem"), "-----BEGIN CERTIFICATE-----\n"
                                         "bm90IGEgY2VydGlmaWNhdGU=\n"
                                         "-----END CERTIFICATE-----\n");
}

/* ---- helpers ----------------------------------------------------------- */

struct pair {
  int sfd, cfd;
  sd_tls_ctx *sctx, *cctx;
  sd_tls_conn *s, *c;
};

static sd_tls_ctx *server_ctx(const sd_tls_sni *sni, size_t nsni) {
  char err[256];
  sd_tls_ctx *ctx =
      sd_tls_server_ctx_new(path("mail.pem"), path("mail.key"), NULL, NULL, sni,
                            nsni, err, sizeof err);
  if (ctx == NULL)
    fprintf(stderr, "server ctx: %s\n", err);
  return ctx;
}

static sd_tls_ctx *client_ctx(int verify, const char *ca) {
  char err[256];
  sd_tls_ctx *ctx = sd_tls_client_ctx_new(verify, ca, NULL, err, sizeof err);
  if (ctx == NULL)
    fprintf(stderr, "client ctx: %s\n", err);
  return ctx;
}

/* Takes ownership of both contexts (freed in pair_close). */
static int pair_open(struct pair *p, sd_tls_ctx *sctx, sd_tls_ctx *cctx,
                     const char *name) {
  int sv[2];
  memset(p, 0, sizeof *p);
  p->sfd = p->cfd = -1;
  p->sctx = sctx;
  p->cctx = cctx;
  if (sctx == NULL || cctx == NULL)
    return -1;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
    return -1;
  p->sfd = sv[0];
  p->cfd = sv[1];
  p->s = sd_tls_conn_new(sctx, p->sfd, 1, NULL);
  p->c = sd_tls_conn_new(cctx, p->cfd, 0, name);
  return p->s != NULL && p->c != NULL ? 0 : -1;
}

static void pair_close(struct pair *p) {
  sd_tls_conn_free(p->s);
  sd_tls_conn_free(p->c);
  sd_tls_ctx_free(p->sctx);
  sd_tls_ctx_free(p->cctx);
  if (p->sfd >= 0)
    close(p->sfd);
  if (p->cfd >= 0)
    close(p->cfd);
}

static short events_for(int want) {
  return (short)((want & SD_TLS_WANT_READ ? POLLIN : 0) |
                 (want & SD_TLS_WANT_WRITE ? POLLOUT : 0));
}

/* Runs both handshakes until both ended, at most 5 s.  Once one side has
 * failed the other gets a few more rounds to read the alert. */
static void handshake(struct pair *p, int *rs, int *rc) {
  double deadline = now_s() + 5;
  int after_fail = 0;
  *rs = *rc = 0;
  for (int i = 0; i < 1000 && now_s() < deadline; i++) {
    struct pollfd pf[2];
    nfds_t n = 0;
    if (*rs == 0)
      *rs = sd_tls_handshake(p->s);
    if (*rc == 0)
      *rc = sd_tls_handshake(p->c);
    if (*rs != 0 && *rc != 0)
      return;
    if ((*rs < 0 || *rc < 0) && ++after_fail > 20)
      return;
    if (*rs == 0)
      pf[n++] = (struct pollfd){p->sfd, events_for(sd_tls_want(p->s)), 0};
    if (*rc == 0)
      pf[n++] = (struct pollfd){p->cfd, events_for(sd_tls_want(p->c)), 0};
    poll(pf, n, 100);
  }
}

static int handshake_ok(struct pair *p) {
  int rs, rc;
  handshake(p, &rs, &rc);
  if (rs != 1 || rc != 1)
    fprintf(stderr, "handshake: server %d (%s), client %d (%s)\n", rs,
            sd_tls_error(p->s), rc, sd_tls_error(p->c));
  return rs == 1 && rc == 1;
}

static unsigned char pattern(size_t i, unsigned seed) {
  return (unsigned char)((i * 31u + seed * 7u + (i >> 9)) & 0xff);
}

struct flow {
  sd_tls_conn *from, *to;
  unsigned seed;
  size_t sent, got, total;
  int wwant, rwant, bad;
};

/* One step of a one-way transfer: write until blocked, read until blocked. */
static void flow_step(struct flow *f, unsigned char *out) {
  unsigned char in[3000];
  while (f->sent < f->total) {
    size_t chunk = f->total - f->sent < 20000 ? f->total - f->sent : 20000;
    long n;
    for (size_t i = 0; i < chunk; i++)
      out[i] = pattern(f->sent + i, f->seed);
    n = sd_tls_write(f->from, out, chunk);
    if (n == -2) {
      f->wwant = sd_tls_want(f->from);
      break;
    }
    if (n <= 0) {
      f->bad = 1;
      return;
    }
    f->sent += (size_t)n;
    f->wwant = 0;
  }
  while (f->got < f->total) {
    long n = sd_tls_read(f->to, in, sizeof in);
    if (n == -2) {
      f->rwant = sd_tls_want(f->to);
      break;
    }
    if (n <= 0) {
      f->bad = 1;
      return;
    }
    for (long i = 0; i < n; i++)
      if (in[i] != pattern(f->got + (size_t)i, f->seed))
        f->bad = 1;
    f->got += (size_t)n;
  }
}

/* Moves total bytes each way at once, so both sides block on a full socket
 * buffer and retry partial writes with a rebuilt (moved) buffer. */
static int exchange(struct pair *p, size_t total) {
  struct flow up = {p->c, p->s, 1, 0, 0, total, 0, 0, 0};
  struct flow down = {p->s, p->c, 2, 0, 0, total, 0, 0, 0};
  static unsigned char out1[20000], out2[20000];
  double deadline = now_s() + 10;
  for (int i = 0; i < 100000 && now_s() < deadline; i++) {
    struct pollfd pf[2];
    flow_step(&up, out1);
    flow_step(&down, out2);
    if (up.bad || down.bad)
      break;
    if (up.got == total && down.got == total)
      return 1;
    /* Server fd: up's reader, down's writer; client fd the other way. */
    pf[0] =
        (struct pollfd){p->sfd,
                        (short)(events_for(up.got < total ? up.rwant : 0) |
                                events_for(down.sent < total ? down.wwant : 0)),
                        0};
    pf[1] =
        (struct pollfd){p->cfd,
                        (short)(events_for(down.got < total ? down.rwant : 0) |
                                events_for(up.sent < total ? up.wwant : 0)),
                        0};
    poll(pf, 2, 100);
  }
  fprintf(stderr, "exchange: up %zu/%zu/%d down %zu/%zu/%d (%s | %s)\n",
          up.sent, up.got, up.bad, down.sent, down.got, down.bad,
          sd_tls_error(p->s), sd_tls_error(p->c));
  return 0;
}

/* Reads from c until data, EOF or error, bounded; returns the last result. */
static long read_wait(sd_tls_conn *c, int fd, void *buf, size_t len) {
  long n = -2;
  double deadline = now_s() + 3;
  for (int i = 0; i < 300 && now_s() < deadline; i++) {
    struct pollfd pf = {fd, 0, 0};
    n = sd_tls_read(c, buf, len);
    if (n != -2)
      return n;
    pf.events = events_for(sd_tls_want(c));
    poll(&pf, 1, 100);
  }
  return n;
}

/* ---- tests ------------------------------------------------------------- */

static void test_handshake_and_data(void) {
  struct pair p;
  unsigned char buf[64];
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, path("ca.pem")),
                  "mail.test") == 0);
  CHECK_STR(sd_tls_version(p.c), "");
  CHECK(handshake_ok(&p));
  CHECK_STR(sd_tls_version(p.s), "TLSv1.3");
  CHECK_STR(sd_tls_version(p.c), "TLSv1.3");
  CHECK(sd_tls_cipher(p.c)[0] != '\0');
  CHECK_STR(sd_tls_cipher(p.s), sd_tls_cipher(p.c));
  CHECK_INT(sd_tls_peer_verified(p.c), 1);
  CHECK_INT(sd_tls_peer_verified(p.s), 0);
  CHECK(sd_tls_server_name(p.s) != NULL &&
        strcmp(sd_tls_server_name(p.s), "mail.test") == 0);
  CHECK_INT(sd_tls_handshake(p.s), 1); /* idempotent once done */
  CHECK(exchange(&p, 1u << 20));
  /* close_notify from the client reads as a clean EOF on the server. */
  sd_tls_conn_free(p.c);
  p.c = NULL;
  CHECK_INT(read_wait(p.s, p.sfd, buf, sizeof buf), 0);
  CHECK_STR(sd_tls_error(p.s), "");
  pair_close(&p);
}

static void test_pending(void) {
  struct pair p;
  char buf[128];
  static const char msg[] = "250-PIPELINING\r\n250-SIZE 10240000\r\n"
                            "250-8BITMIME\r\n250 SMTPUTF8\r\n";
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, NULL), NULL) == 0);
  CHECK(handshake_ok(&p));
  CHECK_INT(sd_tls_write(p.s, msg, sizeof msg - 1), sizeof msg - 1);
  CHECK_INT(read_wait(p.c, p.cfd, buf, 10), 10);
  CHECK_INT(sd_tls_pending(p.c), sizeof msg - 1 - 10);
  /* The rest comes from OpenSSL's buffer, without touching the socket. */
  CHECK_INT(sd_tls_read(p.c, buf + 10, sizeof buf - 10), sizeof msg - 1 - 10);
  CHECK_MEM(buf, sizeof msg - 1, msg, sizeof msg - 1);
  CHECK_INT(sd_tls_pending(p.c), 0);
  CHECK_INT(sd_tls_read(p.c, buf, sizeof buf), -2);
  CHECK_INT(sd_tls_want(p.c), SD_TLS_WANT_READ);
  CHECK_INT(sd_tls_write(p.c, "", 0), 0);
  pair_close(&p);
}

static void test_verify_failures(void) {
  struct pair p;
  int rs, rc;
  /* The certificate is for mail.test. */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, path("ca.pem")),
                  "wrong.test") == 0);
  handshake(&p, &rs, &rc);
  CHECK_INT(rc, -1);
  CHECK_INT(rs, -1); /* the client's alert reaches the server */
  CHECK(contains(sd_tls_error(p.c), "hostname mismatch"));
  CHECK(sd_tls_error(p.s)[0] != '\0');
  CHECK_INT(sd_tls_peer_verified(p.c), 0);
  pair_close(&p);
  /* No CA given: the system store does not know our throwaway CA. */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, NULL), "mail.test") ==
        0);
  handshake(&p, &rs, &rc);
  CHECK_INT(rc, -1);
  CHECK(contains(sd_tls_error(p.c), "certificate verify failed"));
  pair_close(&p);
  /* Another CA. */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, path("ca2.pem")),
                  "mail.test") == 0);
  handshake(&p, &rs, &rc);
  CHECK_INT(rc, -1);
  CHECK(contains(sd_tls_error(p.c), "local issuer"));
  pair_close(&p);
  /* Opportunistic: the same wrong name passes, but is reported unverified. */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, path("ca.pem")),
                  "wrong.test") == 0);
  CHECK(handshake_ok(&p));
  CHECK_INT(sd_tls_peer_verified(p.c), 0);
  pair_close(&p);
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, path("ca.pem")),
                  "mail.test") == 0);
  CHECK(handshake_ok(&p));
  CHECK_INT(sd_tls_peer_verified(p.c), 1);
  pair_close(&p);
}

static void test_ip_literal(void) {
  struct pair p;
  int rs, rc;
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, path("ca.pem")),
                  "127.0.0.1") == 0);
  CHECK(handshake_ok(&p));
  CHECK(sd_tls_server_name(p.s) == NULL); /* not sent as SNI */
  CHECK_INT(sd_tls_peer_verified(p.c), 1);
  pair_close(&p);
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, path("ca.pem")),
                  "127.0.0.2") == 0);
  handshake(&p, &rs, &rc);
  CHECK_INT(rc, -1);
  CHECK(contains(sd_tls_error(p.c), "IP address mismatch"));
  pair_close(&p);
}

static void sni_case(const sd_tls_sni *sni, size_t nsni, const char *name,
                     int expect_ok, int line) {
  struct pair p;
  int rs, rc;
  sd_tls_ctx *sctx = server_ctx(sni, nsni);
  CHECK(pair_open(&p, sctx, client_ctx(1, path("ca.pem")), name) == 0);
  /* The context may go (a reload) while its connections handshake. */
  p.sctx = NULL;
  sd_tls_ctx_free(sctx);
  handshake(&p, &rs, &rc);
  if ((rc == 1) != expect_ok)
    fprintf(stderr, "line %d: SNI %s: client %d (%s)\n", line, name, rc,
            sd_tls_error(p.c));
  CHECK_INT(rc == 1, expect_ok);
  if (expect_ok) {
    CHECK_INT(rs, 1);
    CHECK(sd_tls_server_name(p.s) != NULL &&
          strcasecmp(sd_tls_server_name(p.s), name) == 0);
  }
  pair_close(&p);
}

static void test_sni(void) {
  /* path() recycles its buffers; these must outlive many calls. */
  char cert[256], key[256];
  snprintf(cert, sizeof cert, "%s", path("other.pem"));
  snprintf(key, sizeof key, "%s", path("other.key"));
  const sd_tls_sni sni[2] = {{"other.test", cert, key},
                             {"*.wild.test", cert, key}};
  sni_case(sni, 2, "other.test", 1, __LINE__);
  sni_case(sni, 2, "OTHER.test", 1, __LINE__);
  sni_case(sni, 2, "mail.test", 1, __LINE__);    /* default cert */
  sni_case(sni, 2, "mx.wild.test", 1, __LINE__); /* wildcard entry */
  /* One label only: falls back to the default cert, which does not match. */
  sni_case(sni, 2, "a.b.wild.test", 0, __LINE__);
  sni_case(sni, 2, "wild.test", 0, __LINE__);
  /* Without the table the default cert is served, and fails verification. */
  sni_case(NULL, 0, "other.test", 0, __LINE__);
}

static void test_garbage_client_hello(void) {
  static const char *const junk[] = {
      "EHLO spambot\r\nMAIL FROM:<a@b.example>\r\n",
      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
      "\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff\xff\xff\xff",
      "\x16\x03\x01\xff\xff garbage garbage garbage",
  };
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
    struct pair p;
    int r = 0;
    double deadline;
    CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, NULL), NULL) == 0);
    CHECK(write(p.cfd, junk[i], strlen(junk[i])) == (ssize_t)strlen(junk[i]));
    /* The 4th case announces more bytes than arrive; EOF ends it. */
    shutdown(p.cfd, SHUT_WR);
    deadline = now_s() + 3;
    for (int k = 0; k < 100 && r == 0 && now_s() < deadline; k++) {
      struct pollfd pf = {p.sfd, POLLIN, 0};
      r = sd_tls_handshake(p.s);
      if (r == 0)
        poll(&pf, 1, 100);
    }
    CHECK_INT(r, -1);
    CHECK(sd_tls_error(p.s)[0] != '\0');
    CHECK_STR(sd_tls_version(p.s), "");
    CHECK_INT(sd_tls_read(p.s, (char[8]){0}, 8), -1); /* stays dead */
    pair_close(&p);
  }
}

/* SECURITY.md 1.2: nothing is read from the socket before the handshake, and
 * plaintext still there when it starts is never returned as TLS data. */
static void test_starttls_no_read_ahead(void) {
  struct pair p;
  char buf[64];
  int rs, rc = 0;
  static const char injected[] = "RCPT TO:<victim@example.org>\r\n";
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, NULL), NULL) == 0);
  CHECK(write(p.cfd, injected, sizeof injected - 1) == sizeof injected - 1);
  sd_tls_conn_free(p.s);
  p.s = sd_tls_conn_new(p.sctx, p.sfd, 1, NULL);
  CHECK(p.s != NULL);
  CHECK_INT(recv(p.sfd, buf, sizeof buf, MSG_PEEK), sizeof injected - 1);
  /* A never-started conn writes nothing when freed. */
  sd_tls_conn_free(p.s);
  errno = 0;
  CHECK_INT(recv(p.cfd, buf, sizeof buf, 0), -1);
  CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
  p.s = sd_tls_conn_new(p.sctx, p.sfd, 1, NULL);
  handshake(&p, &rs, &rc);
  CHECK_INT(rs, -1);
  CHECK(contains(sd_tls_error(p.s), "wrong version number"));
  pair_close(&p);
  /* Reading one record takes exactly that record off the socket: bytes
   * behind it stay in the kernel (no read-ahead into OpenSSL). */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, NULL), NULL) == 0);
  CHECK(handshake_ok(&p));
  CHECK_INT(sd_tls_write(p.c, "NOOP\r\n", 6), 6);
  CHECK(write(p.cfd, "PLAIN", 5) == 5);
  CHECK_INT(read_wait(p.s, p.sfd, buf, sizeof buf), 6);
  CHECK_INT(sd_tls_pending(p.s), 0);
  CHECK_INT(recv(p.sfd, buf, sizeof buf, MSG_PEEK), 5);
  CHECK_MEM(buf, 5, "PLAIN", 5);
  pair_close(&p);
}

/* The STARTTLS order of events on one socket: plaintext command and reply,
 * then the handshake and TLS data on the same fd. */
static void test_starttls_flow(void) {
  struct pair p;
  char buf[64];
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(1, path("ca.pem")),
                  "mail.test") == 0);
  CHECK(write(p.cfd, "STARTTLS\r\n", 10) == 10);
  CHECK_INT(recv(p.sfd, buf, sizeof buf, 0), 10);
  CHECK(write(p.sfd, "220 2.0.0 Ready\r\n", 17) == 17);
  CHECK_INT(recv(p.cfd, buf, sizeof buf, 0), 17);
  CHECK(handshake_ok(&p));
  CHECK_INT(sd_tls_write(p.c, "EHLO client.test\r\n", 18), 18);
  CHECK_INT(read_wait(p.s, p.sfd, buf, sizeof buf), 18);
  CHECK_MEM(buf, 18, "EHLO client.test\r\n", 18);
  CHECK_INT(sd_tls_write(p.s, "250 mail.test\r\n", 15), 15);
  CHECK_INT(read_wait(p.c, p.cfd, buf, sizeof buf), 15);
  CHECK_MEM(buf, 15, "250 mail.test\r\n", 15);
  pair_close(&p);
}

static void test_eof(void) {
  struct pair p;
  char buf[64];
  int rs, rc;
  /* TCP EOF without close_notify after the handshake: clean end. */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, NULL), NULL) == 0);
  CHECK(handshake_ok(&p));
  CHECK_INT(sd_tls_write(p.c, "QUIT\r\n", 6), 6);
  CHECK(shutdown(p.cfd, SHUT_WR) == 0);
  CHECK_INT(read_wait(p.s, p.sfd, buf, sizeof buf), 6);
  CHECK_MEM(buf, 6, "QUIT\r\n", 6);
  CHECK_INT(read_wait(p.s, p.sfd, buf, sizeof buf), 0);
  /* The peer is gone: writing fails with an error, not SIGPIPE. */
  sd_tls_conn_free(p.c);
  p.c = NULL;
  close(p.cfd);
  p.cfd = -1;
  CHECK_INT(sd_tls_write(p.s, "221 bye\r\n", 9), -1);
  CHECK(contains(sd_tls_error(p.s), "Broken pipe"));
  pair_close(&p);
  /* EOF in the middle of the handshake is a failure. */
  CHECK(pair_open(&p, server_ctx(NULL, 0), client_ctx(0, NULL), NULL) == 0);
  CHECK_INT(sd_tls_handshake(p.c), 0); /* ClientHello sent */
  CHECK(shutdown(p.cfd, SHUT_WR) == 0);
  handshake(&p, &rs, &rc);
  CHECK_INT(rs, -1);
  CHECK(sd_tls_error(p.s)[0] != '\0');
  pair_close(&p);
}

static void test_min_version(void) {
  struct pair p;
  sd_tls_ctx *s = server_ctx(NULL, 0);
  CHECK(s != NULL);
  CHECK_INT(sd_tls_ctx_set_min_version(s, "SSLv3"), -1);
  CHECK_INT(sd_tls_ctx_set_min_version(s, "TLSv1.3"), 0);
  CHECK(pair_open(&p, s, client_ctx(0, NULL), NULL) == 0);
  CHECK(handshake_ok(&p));
  CHECK_STR(sd_tls_version(p.c), "TLSv1.3");
  pair_close(&p);
}

static void test_ctx_errors(void) {
  char err[256];
  char nope[256], key[256];
  sd_tls_sni bad_sni = {"other.test", nope, key};
  sd_tls_ctx *ctx;
  snprintf(nope, sizeof nope, "%s", path("nope.pem"));
  snprintf(key, sizeof key, "%s", path("other.key"));
  ctx = sd_tls_server_ctx_new(path("missing.pem"), path("mail.key"), NULL, NULL,
                              NULL, 0, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "missing.pem"));
  CHECK(contains(err, "No such file"));
  ctx = sd_tls_server_ctx_new(path("mail.pem"), path("other.key"), NULL, NULL,
                              NULL, 0, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "does not match"));
  ctx = sd_tls_server_ctx_new(path("garbage.pem"), path("mail.key"), NULL, NULL,
                              NULL, 0, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "garbage.pem"));
  ctx = sd_tls_server_ctx_new(path("mail.pem"), path("mail.key"), "NOPE", NULL,
                              NULL, 0, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "NOPE"));
  ctx = sd_tls_server_ctx_new(path("mail.pem"), path("mail.key"), NULL,
                              "TLS_NOPE", NULL, 0, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "TLS_NOPE"));
  ctx = sd_tls_server_ctx_new(path("mail.pem"), path("mail.key"), NULL, NULL,
                              &bad_sni, 1, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "nope.pem"));
  ctx = sd_tls_client_ctx_new(1, path("missing-ca.pem"), NULL, err, sizeof err);
  CHECK(ctx == NULL);
  CHECK(contains(err, "missing-ca.pem"));
  ctx =
      sd_tls_server_ctx_new(path("mail.pem"), path("mail.key"), "ECDHE+AESGCM",
                            "TLS_AES_256_GCM_SHA384", NULL, 0, err, sizeof err);
  CHECK(ctx != NULL);
  CHECK_STR(err, "");
  /* A server context does not make client conns, and vice versa. */
  CHECK(sd_tls_conn_new(ctx, 0, 0, NULL) == NULL);
  sd_tls_ctx_free(ctx);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/sd_tls_test.XXXXXX");
  if (mkdtemp(dir) == NULL || make_certs() != 0) {
    fprintf(stderr, "cannot make test certificates in %s (see %s/log)\n", dir,
            dir);
    return 1;
  }
  SL_RUN(test_handshake_and_data);
  SL_RUN(test_pending);
  SL_RUN(test_verify_failures);
  SL_RUN(test_ip_literal);
  SL_RUN(test_sni);
  SL_RUN(test_garbage_client_hello);
  SL_RUN(test_starttls_no_read_ahead);
  SL_RUN(test_starttls_flow);
  SL_RUN(test_eof);
  SL_RUN(test_min_version);
  SL_RUN(test_ctx_errors);
  run("rm -rf %s", dir);
  return sl_test_summary();
}
