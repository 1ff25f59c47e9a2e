/*
 * sd_tls.c: non-blocking TLS over a connected socket (OpenSSL 3).
 *
 * The socket is reached through a small BIO of our own rather than
 * BIO_s_socket: it sends with MSG_NOSIGNAL (no SIGPIPE on a reset peer),
 * records errno and end of stream for the error text, and makes it plain
 * that the TLS layer reads nothing but what OpenSSL's record layer asks for.
 */
#include "sd_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct sd_tls_sni_entry {
  char *hostname;
  SSL_CTX *ssl_ctx;
};

struct sd_tls_ctx {
  SSL_CTX *ssl_ctx;
  struct sd_tls_sni_entry *sni;
  size_t nsni;
  int is_server;
  /* Connections keep the context alive: the SNI callback reads the table
   * during their handshakes, which may outlive a reload's ctx_free(). */
  unsigned refs;
};

struct sd_tls_conn {
  SSL *ssl;
  sd_tls_ctx *ctx;
  int fd;
  int sys_errno;        /* errno of the last failed send/recv, 0 if none */
  unsigned char want;   /* SD_TLS_WANT_* */
  unsigned char done;   /* handshake completed */
  unsigned char failed; /* fatal error seen: no close_notify, no more I/O */
  unsigned char eof;    /* recv() returned 0 */
  unsigned char is_server;
  char err[112];
};

#define SD_TLS_SID_CTX "sluice"

/* ---- errors ------------------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t errlen,
                                                       const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* The reason of the most recent OpenSSL error, without the numeric noise of
 * ERR_error_string(). */
static const char *queue_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r;
  if (e == 0)
    return "unknown error";
  if (ERR_SYSTEM_ERROR(e))
    return strerror(ERR_GET_REASON(e));
  r = ERR_reason_error_string(e);
  return r ? r : "unknown error";
}

static void conn_fail(sd_tls_conn *c, const char *what, int sslerr) {
  c->failed = 1;
  c->want = 0;
  if (c->sys_errno != 0) {
    errf(c->err, sizeof c->err, "%s: %s", what, strerror(c->sys_errno));
  } else if (ERR_peek_last_error() == 0) {
    errf(c->err, sizeof c->err, "%s: %s", what,
         c->eof || sslerr == SSL_ERROR_ZERO_RETURN ? "connection closed by peer"
                                                   : "I/O error");
  } else {
    long vr = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_last_error();
    if (vr != X509_V_OK && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
      errf(c->err, sizeof c->err, "%s: certificate verify failed: %s", what,
           X509_verify_cert_error_string(vr));
    } else {
      errf(c->err, sizeof c->err, "%s: %s", what, queue_reason());
    }
  }
  ERR_clear_error();
}

/* ---- socket BIO -------------------------------------------------------- */

static int bio_write(BIO *b, const char *buf, int len) {
  sd_tls_conn *c = BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  n = send(c->fd, buf, (size_t)len, MSG_NOSIGNAL);
  if (n >= 0)
    return (int)n;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_write(b);
  } else {
    c->sys_errno = errno;
  }
  return -1;
}

static int bio_read(BIO *b, char *buf, int len) {
  sd_tls_conn *c = BIO_get_data(b);
  ssize_t n;
  BIO_clear_retry_flags(b);
  n = recv(c->fd, buf, (size_t)len, 0);
  if (n > 0)
    return (int)n;
  if (n == 0) {
    c->eof = 1;
    return 0;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    BIO_set_retry_read(b);
  } else {
    c->sys_errno = errno;
  }
  return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  sd_tls_conn *c = BIO_get_data(b);
  (void)num;
  (void)ptr;
  switch (cmd) {
  case BIO_CTRL_FLUSH: /* nothing is buffered here */
    return 1;
  case BIO_CTRL_EOF:
    return c != NULL && c->eof;
  default:
    return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int bio_destroy(BIO *b) {
  (void)b;
  return 1;
}

static BIO_METHOD *bio_method;
static CRYPTO_ONCE bio_once = CRYPTO_ONCE_STATIC_INIT;

static void bio_method_init(void) {
  BIO_METHOD *m =
      BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice socket");
  if (m == NULL)
    return;
  if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
      !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
      !BIO_meth_set_destroy(m, bio_destroy)) {
    BIO_meth_free(m);
    return;
  }
  bio_method = m;
}

/* ---- contexts ---------------------------------------------------------- */

static SSL_CTX *ssl_ctx_new(int server, char *err, size_t errlen) {
  SSL_CTX *s = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (s == NULL) {
    errf(err, errlen, "SSL_CTX_new: %s", queue_reason());
    return NULL;
  }
  SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
  /* IGNORE_UNEXPECTED_EOF: a TCP EOF reads as end of stream; SMTP has its
   * own end (QUIT/221), so truncation cannot make the relay accept more. */
  SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_IGNORE_UNEXPECTED_EOF |
                             (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
  SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE |
                          SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
  /* Read-ahead would pull bytes beyond the current record into OpenSSL's
   * buffer; off, the record layer reads exactly the records it parses. */
  SSL_CTX_set_read_ahead(s, 0);
  if (server) {
    /* No server-side session store: its size would grow with the number of
     * clients.  Stateless tickets still allow resumption. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(s, (const unsigned char *)SD_TLS_SID_CTX,
                                   sizeof SD_TLS_SID_CTX - 1);
  }
  return s;
}

static int readable_file(const char *what, const char *path, char *err,
                         size_t errlen) {
  FILE *f;
  if (path == NULL || *path == '\0') {
    errf(err, errlen, "%s file not set", what);
    return 0;
  }
  f = fopen(path, "r");
  if (f == NULL) {
    errf(err, errlen, "%s file %s: %s", what, path, strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

static int load_pair(SSL_CTX *s, const char *cert, const char *key, char *err,
                     size_t errlen) {
  if (!readable_file("certificate", cert, err, errlen) ||
      !readable_file("private key", key, err, errlen))
    return 0;
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(s, cert) != 1) {
    errf(err, errlen, "certificate file %s: %s", cert, queue_reason());
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
        ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      errf(err, errlen, "private key file %s does not match certificate %s",
           key, cert);
    else
      errf(err, errlen, "private key file %s: %s", key, queue_reason());
    goto fail;
  }
  if (SSL_CTX_check_private_key(s) != 1) {
    errf(err, errlen, "private key file %s does not match certificate %s", key,
         cert);
    goto fail;
  }
  return 1;
fail:
  ERR_clear_error();
  return 0;
}

static int set_ciphers(SSL_CTX *s, const char *ciphers,
                       const char *ciphersuites, char *err, size_t errlen) {
  if (ciphers != NULL && *ciphers != '\0' &&
      SSL_CTX_set_cipher_list(s, ciphers) != 1) {
    errf(err, errlen, "cipher list \"%s\" selects no cipher", ciphers);
    ERR_clear_error();
    return 0;
  }
  if (ciphersuites != NULL && *ciphersuites != '\0' &&
      SSL_CTX_set_ciphersuites(s, ciphersuites) != 1) {
    errf(err, errlen, "TLS 1.3 ciphersuites \"%s\" are invalid", ciphersuites);
    ERR_clear_error();
    return 0;
  }
  return 1;
}

/* "*.example.org" matches "mx.example.org", not "example.org" nor
 * "a.b.example.org" (RFC 6125 style, one label). */
static int sni_match(const char *pattern, const char *name) {
  if (pattern[0] == '*' && pattern[1] == '.') {
    const char *dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
  }
  return strcasecmp(pattern, name) == 0;
}

static int sni_callback(SSL *ssl, int *alert, void *arg) {
  const sd_tls_ctx *ctx = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  size_t i;
  if (name == NULL)
    return SSL_TLSEXT_ERR_NOACK;
  for (i = 0; i < ctx->nsni; i++) {
    if (sni_match(ctx->sni[i].hostname, name)) {
      if (SSL_set_SSL_CTX(ssl, ctx->sni[i].ssl_ctx) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
      }
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_OK; /* the default certificate */
}

static void ctx_unref(sd_tls_ctx *ctx) {
  size_t i;
  if (ctx == NULL || --ctx->refs > 0)
    return;
  for (i = 0; i < ctx->nsni; i++) {
    SSL_CTX_free(ctx->sni[i].ssl_ctx);
    free(ctx->sni[i].hostname);
  }
  free(ctx->sni);
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx);
}

sd_tls_ctx *sd_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                  const char *ciphers, const char *ciphersuites,
                                  const sd_tls_sni *sni, size_t nsni, char *err,
                                  size_t errlen) {
  sd_tls_ctx *ctx = calloc(1, sizeof *ctx);
  size_t i;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (ctx == NULL) {
    errf(err, errlen, "out of memory");
    return NULL;
  }
  ctx->is_server = 1;
  ctx->refs = 1;
  ctx->ssl_ctx = ssl_ctx_new(1, err, errlen);
  if (ctx->ssl_ctx == NULL)
    goto fail;
  if (!load_pair(ctx->ssl_ctx, cert_file, key_file, err, errlen) ||
      !set_ciphers(ctx->ssl_ctx, ciphers, ciphersuites, err, errlen))
    goto fail;
  if (nsni > 0) {
    ctx->sni = calloc(nsni, sizeof *ctx->sni);
    if (ctx->sni == NULL) {
      errf(err, errlen, "out of memory");
      goto fail;
    }
    for (i = 0; i < nsni; i++) {
      struct sd_tls_sni_entry *e = &ctx->sni[i];
      if (sni[i].hostname == NULL || sni[i].hostname[0] == '\0') {
        errf(err, errlen, "SNI entry %zu has no hostname", i);
        goto fail;
      }
      e->hostname = strdup(sni[i].hostname);
      e->ssl_ctx = ssl_ctx_new(1, err, errlen);
      ctx->nsni = i + 1; /* so that fail: frees what exists */
      if (e->hostname == NULL || e->ssl_ctx == NULL) {
        if (e->ssl_ctx != NULL)
          errf(err, errlen, "out of memory");
        goto fail;
      }
      if (!load_pair(e->ssl_ctx, sni[i].cert_file, sni[i].key_file, err,
                     errlen) ||
          !set_ciphers(e->ssl_ctx, ciphers, ciphersuites, err, errlen))
        goto fail;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx->ssl_ctx, sni_callback);
    SSL_CTX_set_tlsext_servername_arg(ctx->ssl_ctx, ctx);
  }
  ERR_clear_error();
  return ctx;
fail:
  ERR_clear_error();
  ctx_unref(ctx);
  return NULL;
}

sd_tls_ctx *sd_tls_client_ctx_new(int verify, const char *ca_file,
                                  const char *ciphers, char *err,
                                  size_t errlen) {
  sd_tls_ctx *ctx = calloc(1, sizeof *ctx);
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (ctx == NULL) {
    errf(err, errlen, "out of memory");
    return NULL;
  }
  ctx->refs = 1;
  ctx->ssl_ctx = ssl_ctx_new(0, err, errlen);
  if (ctx->ssl_ctx == NULL)
    goto fail;
  if (!set_ciphers(ctx->ssl_ctx, ciphers, NULL, err, errlen))
    goto fail;
  SSL_CTX_set_verify(ctx->ssl_ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     NULL);
  if (ca_file != NULL && *ca_file != '\0') {
    if (!readable_file("CA", ca_file, err, errlen))
      goto fail;
    if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL) != 1) {
      errf(err, errlen, "CA file %s: %s", ca_file, queue_reason());
      goto fail;
    }
  } else if (verify && SSL_CTX_set_default_verify_paths(ctx->ssl_ctx) != 1) {
    errf(err, errlen, "system CA store: %s", queue_reason());
    goto fail;
  }
  /* Loading the system store can leave notes about absent directories. */
  ERR_clear_error();
  return ctx;
fail:
  ERR_clear_error();
  ctx_unref(ctx);
  return NULL;
}

int sd_tls_ctx_use_cert(sd_tls_ctx *ctx, const char *cert_file,
                        const char *key_file, char *err, size_t errlen) {
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  return load_pair(ctx->ssl_ctx, cert_file, key_file, err, errlen) ? 0 : -1;
}

int sd_tls_ctx_set_min_version(sd_tls_ctx *ctx, const char *version) {
  int v;
  size_t i;
  if (version == NULL)
    return -1;
  if (strcmp(version, "TLSv1.2") == 0)
    v = TLS1_2_VERSION;
  else if (strcmp(version, "TLSv1.3") == 0)
    v = TLS1_3_VERSION;
  else
    return -1;
  SSL_CTX_set_min_proto_version(ctx->ssl_ctx, v);
  for (i = 0; i < ctx->nsni; i++)
    SSL_CTX_set_min_proto_version(ctx->sni[i].ssl_ctx, v);
  return 0;
}

void sd_tls_ctx_free(sd_tls_ctx *ctx) { ctx_unref(ctx); }

/* ---- connections ------------------------------------------------------- */

static int is_ip_literal(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

sd_tls_conn *sd_tls_conn_new(sd_tls_ctx *ctx, int fd, int is_server,
                             const char *server_name) {
  sd_tls_conn *c;
  BIO *bio;
  if (ctx == NULL || fd < 0 || (is_server != 0) != (ctx->is_server != 0))
    return NULL;
  if (CRYPTO_THREAD_run_once(&bio_once, bio_method_init) != 1 ||
      bio_method == NULL)
    return NULL;
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->fd = fd;
  c->is_server = is_server != 0;
  c->ssl = SSL_new(ctx->ssl_ctx);
  bio = BIO_new(bio_method);
  if (c->ssl == NULL || bio == NULL) {
    BIO_free(bio);
    goto fail;
  }
  BIO_set_data(bio, c);
  SSL_set_bio(c->ssl, bio, bio);
  if (is_server) {
    SSL_set_accept_state(c->ssl);
  } else {
    SSL_set_connect_state(c->ssl);
    if (server_name != NULL && *server_name != '\0') {
      if (is_ip_literal(server_name)) {
        /* RFC 6066 3: literal addresses are not sent as SNI. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
                                          server_name) != 1)
          goto fail;
      } else {
        int sni_ok;
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        /* The OpenSSL macro casts the name to void *; it only copies it. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
        sni_ok = SSL_set_tlsext_host_name(c->ssl, server_name) == 1;
#pragma GCC diagnostic pop
        if (!sni_ok || SSL_set1_host(c->ssl, server_name) != 1)
          goto fail;
      }
    }
  }
  ctx->refs++;
  c->ctx = ctx;
  return c;
fail:
  ERR_clear_error();
  SSL_free(c->ssl);
  free(c);
  return NULL;
}

void sd_tls_conn_free(sd_tls_conn *c) {
  if (c == NULL)
    return;
  if (c->done && !c->failed) {
    /* One attempt: the alert is queued in the socket or dropped, never
     * waited for. */
    ERR_clear_error();
    (void)SSL_shutdown(c->ssl);
  }
  ERR_clear_error();
  SSL_free(c->ssl);
  ctx_unref(c->ctx);
  free(c);
}

/* Maps a failed SSL call to 0 (want I/O) or -1 (dead), filling err. */
static int after_failure(sd_tls_conn *c, int sslerr, const char *what) {
  switch (sslerr) {
  case SSL_ERROR_WANT_READ:
    c->want = SD_TLS_WANT_READ;
    ERR_clear_error();
    return 0;
  case SSL_ERROR_WANT_WRITE:
    c->want = SD_TLS_WANT_WRITE;
    ERR_clear_error();
    return 0;
  default:
    conn_fail(c, what, sslerr);
    return -1;
  }
}

static void begin_call(sd_tls_conn *c) {
  ERR_clear_error();
  c->want = 0;
  c->sys_errno = 0;
  c->err[0] = '\0';
}

int sd_tls_handshake(sd_tls_conn *c) {
  int r;
  if (c->failed)
    return -1;
  if (c->done)
    return 1;
  begin_call(c);
  r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    c->done = 1;
    return 1;
  }
  return after_failure(c, SSL_get_error(c->ssl, r), "TLS handshake");
}

long sd_tls_read(sd_tls_conn *c, void *buf, size_t len) {
  size_t n = 0;
  int e;
  if (c->failed)
    return -1;
  begin_call(c);
  if (len == 0) {
    errf(c->err, sizeof c->err, "TLS read: zero-length buffer");
    return -1;
  }
  if (len > INT_MAX)
    len = INT_MAX;
  if (SSL_read_ex(c->ssl, buf, len, &n) == 1) {
    c->done = 1; /* SSL_read finishes a handshake the caller skipped */
    return (long)n;
  }
  e = SSL_get_error(c->ssl, 0);
  if (e == SSL_ERROR_ZERO_RETURN && c->done) {
    ERR_clear_error();
    return 0;
  }
  return after_failure(c, e, c->done ? "TLS read" : "TLS handshake") == 0 ? -2
                                                                          : -1;
}

long sd_tls_write(sd_tls_conn *c, const void *buf, size_t len) {
  size_t n = 0;
  int e;
  if (c->failed)
    return -1;
  begin_call(c);
  if (len == 0)
    return 0;
  if (len > INT_MAX)
    len = INT_MAX;
  if (SSL_write_ex(c->ssl, buf, len, &n) == 1) {
    c->done = 1;
    return (long)n;
  }
  /* SSL_ERROR_ZERO_RETURN here only means a send failed after the peer
   * closed its side: conn_fail() reports the errno. */
  e = SSL_get_error(c->ssl, 0);
  return after_failure(c, e, "TLS write") == 0 ? -2 : -1;
}

int sd_tls_want(const sd_tls_conn *c) { return c->want; }

size_t sd_tls_pending(const sd_tls_conn *c) {
  int n = SSL_pending(c->ssl);
  return n > 0 ? (size_t)n : 0;
}

const char *sd_tls_error(const sd_tls_conn *c) { return c->err; }

const char *sd_tls_version(const sd_tls_conn *c) {
  return c->done ? SSL_get_version(c->ssl) : "";
}

const char *sd_tls_cipher(const sd_tls_conn *c) {
  const char *s = c->done ? SSL_get_cipher_name(c->ssl) : NULL;
  return s ? s : "";
}

int sd_tls_peer_verified(const sd_tls_conn *c) {
  if (c->is_server || !c->done)
    return 0;
  return SSL_get0_peer_certificate(c->ssl) != NULL &&
         SSL_get_verify_result(c->ssl) == X509_V_OK;
}

const char *sd_tls_server_name(const sd_tls_conn *c) {
  if (!c->is_server)
    return NULL;
  return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}
