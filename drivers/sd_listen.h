/*
 * sd_listen.h: the listening ports belong to this instance alone.
 *
 * Workers listen with SO_REUSEPORT (one socket each, the kernel spreads
 * clients).  On its own that option lets sluiced start on a port another
 * SO_REUSEPORT program already holds (Postfix's master sets it on some
 * systems; another sluiced always does): clients would then be split
 * between them, some reaching the mail server unscreened.  So before a
 * port is first used, a probe socket without SO_REUSEPORT binds it: that
 * fails if any other socket is bound there.  Then a guard socket (bound
 * with SO_REUSEPORT only, never listening, so it receives no clients) holds
 * the port for this instance: workers can join it, and the probe of any
 * other program, a second sluiced included, fails.  The guards are kept by
 * the process that lives across reloads (the master, or the single
 * worker), so a reload's new generation reuses them.
 */
#ifndef SD_LISTEN_H
#define SD_LISTEN_H

#include <stddef.h>

#include "sd_config.h"

typedef struct sd_guard {
  sd_sockaddr addr;
  int fd;
} sd_guard;

typedef struct sd_guards {
  sd_guard *g;
  size_t n;
} sd_guards;

/* Makes the guard set match cfg's listeners: keeps guards of addresses it
   still lists, probes and guards new ones, and closes the rest.  On a
   refusal nothing changes and err says which address and why (exit 2 at
   start, "reload failed" at SIGHUP). */
int sd_guards_sync(sd_guards *gs, const sd_config *cfg, char *err,
                   size_t errlen);
void sd_guards_close(sd_guards *gs);

#endif
