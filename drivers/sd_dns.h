/*
 * sd_dns.h: asynchronous A lookups (DNSBL / DNSWL questions) with c-ares,
 * driven by the driver's event loop.
 *
 * The module owns no thread and no loop.  It tells the loop which sockets to
 * watch through the sock callback, the loop hands readiness back with
 * sd_dns_process_fd(), sleeps at most sd_dns_next_timeout_ms() and then calls
 * sd_dns_process_timeouts().  Answers come back through per-query callbacks,
 * only from those two calls (and from sd_dns_free(), as cancellations).
 *
 * Queries are plain A lookups of the exact name given (ares_query): no search
 * domains, no /etc/hosts, no HOSTALIASES, so "2.0.0.127.zen.example" cannot
 * be answered by anything but the configured servers.
 *
 * Time budget.  timeout_ms is one try; c-ares doubles it each time it has
 * gone once through every server.  With one server the worst case is
 * timeout_ms * (2^tries - 1), e.g. 500 ms and 2 tries: 1.5 s.
 *
 * Not thread-safe; one sd_dns per event loop.
 */
#ifndef SD_DNS_H
#define SD_DNS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sd_dns sd_dns;

/* servers: NULL = the nameservers of /etc/resolv.conf, else a c-ares server
 * list such as "127.0.0.1:5353" or "[::1]:53,127.0.0.1".  timeout_ms > 0 per
 * try, tries >= 1.  Returns NULL with a message in err on failure (bad
 * arguments, unparsable server list, c-ares initialisation). */
sd_dns *sd_dns_new(const char *servers, int timeout_ms, int tries, char *err,
                   size_t errlen);

/* Cancels pending queries: their callbacks run from inside this call with
 * SD_DNS_CANCELLED (and MUST NOT start queries); the sock callback is told to
 * stop watching every socket, which is then closed.  MUST NOT be called from
 * a query callback.  NULL is a no-op. */
void sd_dns_free(sd_dns *);

enum {
  SD_DNS_OK = 0,       /* at least one A record */
  SD_DNS_NOTFOUND = 1, /* NXDOMAIN, or the name has no A record */
  SD_DNS_TIMEOUT = 2,  /* no answer within the time budget */
  SD_DNS_ERROR = 3,    /* SERVFAIL, REFUSED, malformed answer, I/O error */
  SD_DNS_CANCELLED = 4 /* sd_dns_free() */
};

/* The most A records passed to a callback; further records are dropped
 * (DNSBL answers carry a handful). */
#define SD_DNS_MAX_A 32

/* a: the A records in host byte order (0x7f000002 for 127.0.0.2), n of them
 * (0 unless status is SD_DNS_OK), valid only during the call. */
typedef void (*sd_dns_cb)(void *arg, int status, const uint32_t *a, size_t n);

/* Starts an A lookup of name (no trailing dot needed).  The callback runs
 * exactly once, later, from sd_dns_process_fd() / sd_dns_process_timeouts()
 * / sd_dns_free(), never from inside sd_dns_query_a.  Returns 0, or -1 when
 * the query could not start (empty or invalid name, no usable server, out of
 * memory): the callback will then never run.  Callbacks may start queries. */
int sd_dns_query_a(sd_dns *, const char *name, sd_dns_cb cb, void *arg);

/* The client's name (reverse lookup confirmed by a forward lookup, in the
 * driver): a PTR lookup of name (e.g. "7.2.0.192.in-addr.arpa") gives the
 * first name of the answer (valid during the call; NULL unless OK), and an
 * AAAA lookup gives n addresses of 16 bytes.  Same rules as sd_dns_query_a. */
typedef void (*sd_dns_name_cb)(void *arg, int status, const char *name);
typedef void (*sd_dns_aaaa_cb)(void *arg, int status, const uint8_t (*a)[16],
                               size_t n);
int sd_dns_query_ptr(sd_dns *, const char *name, sd_dns_name_cb cb, void *arg);
int sd_dns_query_aaaa(sd_dns *, const char *name, sd_dns_aaaa_cb cb, void *arg);

/* SPF's questions: TXT records of name (each record's strings joined, at
 * most SD_DNS_TXT_MAX - 1 bytes) or, with mx, its MX exchange names; n
 * strings valid during the call (0 unless OK).  Same rules as
 * sd_dns_query_a. */
#define SD_DNS_TXT_MAX 1024
typedef void (*sd_dns_strs_cb)(void *arg, int status, const char *const *s,
                               size_t n);
int sd_dns_query_strs(sd_dns *, const char *name, int mx, sd_dns_strs_cb cb,
                      void *arg);

/* Which sockets the loop watches: (fd, want_read, want_write); both 0 means
 * stop watching (the fd is closed right after).  Call before the first query;
 * the callback must not call back into the module. */
typedef void (*sd_dns_sock_cb)(void *arg, int fd, int want_read,
                               int want_write);
void sd_dns_set_sock_cb(sd_dns *, sd_dns_sock_cb cb, void *arg);

/* From the loop when fd is ready.  Pass an error or hang-up (EPOLLERR,
 * EPOLLHUP) as readable: the read reports it.  Also handles expired
 * timeouts. */
void sd_dns_process_fd(sd_dns *, int fd, int readable, int writable);

/* How long the loop may sleep before sd_dns_process_timeouts() is due,
 * rounded up to whole ms and at most max_ms; -1 if no query is pending and
 * max_ms < 0 (sleep without a DNS deadline). */
int sd_dns_next_timeout_ms(sd_dns *, int max_ms);

/* When the time from sd_dns_next_timeout_ms() has passed: expires queries
 * (SD_DNS_TIMEOUT) or retries them. */
void sd_dns_process_timeouts(sd_dns *);

/* Queries started whose callback has not run yet. */
size_t sd_dns_pending(const sd_dns *);

#ifdef __cplusplus
}
#endif

#endif
