/*
 * sluice/utf8.h: strict UTF-8 validation (RFC 3629).
 *
 * SMTPUTF8 (RFC 6531) lets UTF-8 into the envelope; what passes must be
 * UTF-8 as RFC 3629 section 4 defines it, because an upstream or a later
 * hop that decodes leniently would otherwise see another address than the
 * one sluice judged (an overlong "/" or "@", a surrogate half).
 */
#ifndef SLUICE_UTF8_H
#define SLUICE_UTF8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Returns the offset of the first byte of p[0..n) that does not start or
 * continue a well-formed UTF-8 sequence, or n if all of it is well-formed.
 * Refused: overlong forms (C0, C1, E0 80..9F, F0 80..8F), surrogates
 * (ED A0..BF: U+D800..U+DFFF), code points above U+10FFFF (F4 90..BF,
 * F5..FF), stray continuation bytes (80..BF) and a sequence cut short by
 * the end of the input.  The offset is that of the sequence's lead byte.
 * ASCII (including control bytes) is well-formed; callers judge controls.
 */
size_t sl_utf8_check(const uint8_t *p, size_t n);

/* Nonzero if p[0..n) has no byte >= 0x80. */
int sl_utf8_is_ascii(const uint8_t *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
