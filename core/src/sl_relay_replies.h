/*
 * sl_relay_replies.h: the relay's local reply table, rendered one entry at
 * a time, so tests can check every reply sluice writes itself (format,
 * enhanced status codes) without driving a session to each one.
 */
#ifndef SL_RELAY_REPLIES_H
#define SL_RELAY_REPLIES_H

#include <stddef.h>
#include <stdint.h>

/* Number of entries in the table (ids 0 .. count-1). */
unsigned sl_relay_reply_count(void);

/*
 * Writes local reply id as sent to the client, with host as the hostname
 * ("<code> <text>\r\n", or "<code> <enhanced> <host> <text>\r\n" for the
 * greetings and closings that name the host).  Returns the bytes written, or
 * 0 for an id with no fixed text (the rendered EHLO reply) or too small a
 * cap.
 */
size_t sl_relay_reply_render(unsigned id, const char *host, uint8_t *out,
                             size_t cap);

/* 1 if reply id carries an enhanced status code (RFC 2034): all but the
   greeting and the HELO/EHLO replies. */
int sl_relay_reply_enhanced(unsigned id);

#endif
