/*
 * sd_tls.h: non-blocking TLS over a connected socket, for the epoll driver.
 *
 * One sd_tls_ctx per configuration (server side: certificates and SNI
 * table; client side: the upstream's verification policy), one sd_tls_conn
 * per TLS session.  The module never blocks, never closes the fd, and keeps
 * no plaintext of its own: what the peer sent is handed to the caller by
 * sd_tls_read() and nothing else.
 *
 * STARTTLS safety (SECURITY.md 1.2, CVE-2011-0411).
 *   - sd_tls_conn_new() does not touch the socket.  The TLS layer reads its
 *     first byte inside sd_tls_handshake(), and it reads TLS records only:
 *     OpenSSL's read-ahead stays off, so it never pulls bytes past the record
 *     it is parsing.
 *   - Plaintext the driver already read before the handshake (bytes pipelined
 *     after "STARTTLS\r\n", or after the upstream's "220" to it) is not the
 *     TLS layer's business: the driver MUST discard (and may log) it before
 *     calling sd_tls_conn_new().  It is never fed to the relay afterwards.
 *   - Plaintext still in the kernel's socket buffer when the handshake starts
 *     is parsed as a TLS record and makes the handshake fail; it can never
 *     come out of sd_tls_read() as if it had been encrypted.
 *
 * Memory.  Buffers are released while a connection is idle
 * (SSL_MODE_RELEASE_BUFFERS), so tens of thousands of quiet sessions cost the
 * SSL object and little more.  Renegotiation and compression are off.
 *
 * Writes.  Partial writes are enabled: sd_tls_write() may take fewer bytes
 * than offered.  After -2 (would block) the caller MUST call it again with at
 * least the same bytes; the buffer may have moved.
 *
 * SIGPIPE.  The module sends with MSG_NOSIGNAL: a peer reset is an error
 * return, not a signal.
 *
 * Not thread-safe per object; distinct objects may be used from distinct
 * threads.  Every error string is copied into the object, so the OpenSSL
 * error queue is left empty after each call.
 */
#ifndef SD_TLS_H
#define SD_TLS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_tls_ctx sd_tls_ctx;
typedef struct sd_tls_conn sd_tls_conn;

/* One SNI entry: a client asking for hostname gets this certificate.
 * hostname is matched case-insensitively; "*.example.org" matches exactly
 * one label under example.org. */
typedef struct sd_tls_sni {
  const char *hostname, *cert_file, *key_file;
} sd_tls_sni;

/* Server context.  cert_file holds the chain (leaf first) in PEM, key_file
 * its private key.  ciphers (TLS <= 1.2, OpenSSL cipher list syntax) and
 * ciphersuites (TLS 1.3) are optional (NULL = OpenSSL's defaults).  The
 * minimum version is TLS 1.2 (see sd_tls_ctx_set_min_version()).  sni may be
 * NULL when nsni is 0; names that match no entry get the default cert.
 * Returns NULL and writes a one-line message naming the file or setting at
 * fault into err (errlen > 0) on failure: unreadable file, bad PEM, key that
 * does not match its certificate, cipher string that selects nothing. */
sd_tls_ctx *sd_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                  const char *ciphers, const char *ciphersuites,
                                  const sd_tls_sni *sni, size_t nsni, char *err,
                                  size_t errlen);

/* Client context for the upstream leg.  verify 0: opportunistic, any
 * certificate is accepted (sd_tls_peer_verified() still reports whether it
 * would have passed when a CA is loaded).  verify 1: the handshake fails
 * unless the chain verifies against ca_file (PEM bundle; NULL = the system's
 * default store) and matches the server_name given to sd_tls_conn_new().
 * ciphers is optional as above.  Minimum version TLS 1.2. */
sd_tls_ctx *sd_tls_client_ctx_new(int verify, const char *ca_file,
                                  const char *ciphers, char *err,
                                  size_t errlen);

/* A client context's own certificate, for servers that ask for one (Redis's
 * tls-auth-clients): cert_file holds the chain (leaf first), key_file its
 * key, both PEM.  Returns 0, or -1 with a message naming the file at fault
 * in err (unreadable, bad PEM, key not matching the certificate). */
int sd_tls_ctx_use_cert(sd_tls_ctx *, const char *cert_file,
                        const char *key_file, char *err, size_t errlen);

/* Sets the lowest protocol version, "TLSv1.2" or "TLSv1.3", for connections
 * created afterwards (for a server context, SNI entries included).
 * Returns 0, or -1 for an unknown name. */
int sd_tls_ctx_set_min_version(sd_tls_ctx *, const char *version);

/* Frees the context.  Connections hold their own reference, so a context
 * may be freed (for instance on reload) while its connections live on. */
void sd_tls_ctx_free(sd_tls_ctx *);

/* Wraps fd, a connected non-blocking stream socket, without reading or
 * writing it.  For a client conn, server_name (may be NULL) is sent as SNI
 * and, with verify 1, checked against the certificate; an IP literal is
 * checked against the certificate's IP addresses and not sent as SNI.  With
 * verify 1 and server_name NULL only the chain is checked.  Returns NULL on
 * allocation failure. */
sd_tls_conn *sd_tls_conn_new(sd_tls_ctx *ctx, int fd, int is_server,
                             const char *server_name);

/* Sends close_notify if the session is established and healthy, once and
 * without blocking (dropped if the socket is full), then frees.  Does not
 * close fd.  NULL is a no-op. */
void sd_tls_conn_free(sd_tls_conn *);

enum { SD_TLS_WANT_READ = 1, SD_TLS_WANT_WRITE = 2 };

/* Drives the handshake: 1 = done (also on later calls), 0 = in progress, wait
 * for sd_tls_want() and call again, -1 = failed: sd_tls_error() says why, the
 * connection is dead (free it; an alert may already have been sent). */
int sd_tls_handshake(sd_tls_conn *);

/* Plaintext in.  > 0 bytes read, 0 = clean end of stream (close_notify or
 * TCP EOF: SMTP ends with QUIT/221, so a missing close_notify loses nothing
 * the relay would accept), -1 = error (sd_tls_error()), -2 = would block
 * (sd_tls_want() says on what; a read can need to write, e.g. a key
 * update).  A read returns at most one record's plaintext, and OpenSSL may
 * hold the rest: in edge-triggered loops call until -2, or check
 * sd_tls_pending(). */
long sd_tls_read(sd_tls_conn *, void *buf, size_t len);

/* Plaintext out.  > 0 bytes taken (maybe fewer than len), -1 = error, -2 =
 * would block (retry with the same bytes, see above).  len 0 returns 0. */
long sd_tls_write(sd_tls_conn *, const void *buf, size_t len);

/* SD_TLS_WANT_* after a 0 / -2 result, 0 otherwise. */
int sd_tls_want(const sd_tls_conn *);

/* Decrypted bytes OpenSSL holds that sd_tls_read() returns without I/O. */
size_t sd_tls_pending(const sd_tls_conn *);

/* Last error text, "" if none.  Valid until the next call on the conn. */
const char *sd_tls_error(const sd_tls_conn *);

/* Negotiated protocol ("TLSv1.3") and cipher name, "" before the handshake
 * is done. */
const char *sd_tls_version(const sd_tls_conn *);
const char *sd_tls_cipher(const sd_tls_conn *);

/* 1 if the peer presented a certificate that verified against the loaded CA
 * store (and name, when one was given), else 0.  Always 0 on server conns:
 * clients are not asked for certificates. */
int sd_tls_peer_verified(const sd_tls_conn *);

/* Server conns: the SNI name the client asked for, NULL if none. */
const char *sd_tls_server_name(const sd_tls_conn *);

#ifdef __cplusplus
}
#endif

#endif
