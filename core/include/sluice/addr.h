/*
 * sluice/addr.h: network addresses as plain data.
 *
 * The core never includes socket headers, so addresses travel as this small
 * struct; drivers convert from and to struct sockaddr.  Bytes are in network
 * order; the port is in host order.
 */
#ifndef SLUICE_ADDR_H
#define SLUICE_ADDR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sl_family {
  SL_AF_UNSPEC = 0, /* unknown, e.g. PROXY "UNKNOWN" or a UNIX socket */
  SL_AF_INET = 4,
  SL_AF_INET6 = 6
} sl_family;

typedef struct sl_addr {
  uint8_t family; /* sl_family */
  uint8_t pad_;
  uint16_t port;     /* host order */
  uint8_t bytes[16]; /* IPv4 uses the first 4 */
} sl_addr;

/* Longest text sl_addr_format() writes, with its NUL. */
#define SL_ADDR_STRLEN 46

/*
 * Writes the address without port: dotted quad for IPv4, RFC 5952 text for
 * IPv6 (lower case, longest zero run compressed, the first on ties, a lone
 * zero group never; IPv4-mapped as "::ffff:a.b.c.d"), "unknown" for
 * SL_AF_UNSPEC.  At most 39 characters are ever written.
 * Returns the length written (without NUL), or SL_ERR_NOBUF if len is too
 * small (out is then an empty string if len > 0), or SL_ERR_INVALID_ARGUMENT
 * for a NULL pointer or an unknown family.
 */
int sl_addr_format(const sl_addr *a, char *out, size_t len);

/*
 * Parses an IPv4 dotted quad (no leading zeros, each part <= 255) or IPv6 text
 * (with "::" and an optional trailing dotted quad) of exactly len bytes.
 * Returns 0, or SL_ERR_MALFORMED (also for zone ids, brackets, blanks and
 * NULs); *a is written only on success.  The port is set to 0.
 */
int sl_addr_parse(sl_addr *a, const char *text, size_t len);

/* Nonzero if both have the same family and bytes (ports are ignored; IPv4
   compares its 4 bytes only; two SL_AF_UNSPEC addresses are equal). */
int sl_addr_equal_ip(const sl_addr *a, const sl_addr *b);

/*
 * Writes the DNSBL query name of a under zone into out:
 * "4.3.2.1.zone" for 1.2.3.4, 32 reversed nibbles then zone for IPv6.
 * Returns the length (without NUL) or SL_ERR_NOBUF (out is then "" if
 * len > 0) / SL_ERR_INVALID_ARGUMENT (NULL, empty zone, SL_AF_UNSPEC, or a
 * name longer than the 253 characters DNS allows).
 */
int sl_addr_dnsbl_name(const sl_addr *a, const char *zone, char *out,
                       size_t len);

#ifdef __cplusplus
}
#endif
#endif
