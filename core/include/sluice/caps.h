/*
 * sluice/caps.h: what an upstream's EHLO reply offers, for drivers that
 * learn it outside a relay (health checks), so that screen-first offers
 * clients only what the healthy pool can take (sl_conn_info.pool_features,
 * guarantee 8).
 */
#ifndef SLUICE_CAPS_H
#define SLUICE_CAPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads one complete EHLO reply, exactly as received (CRLFs included,
 * nothing after it), with the relay's own reply parser.  Sets *features to
 * the sl_feature bits (policy.h) it offers and *size to its SIZE value (0:
 * none given, or no SIZE).  Returns 0, or SL_ERR_INVALID_ARGUMENT when buf
 * does not hold exactly one well-formed 2xx reply.
 */
int sl_ehlo_features(const uint8_t *buf, size_t len, uint32_t *features,
                     uint64_t *size);

#ifdef __cplusplus
}
#endif
#endif
