/*
 * sd_linger.h: lingering close.
 *
 * Shut our side, read and drop what the peer still sends for a short
 * while, then close, so a final reply is not destroyed by a RST (nginx's
 * lingering_close).
 */
#ifndef SD_LINGER_H
#define SD_LINGER_H

#include <stdint.h>

#include "sd_loop.h"

typedef struct sd_linger sd_linger;

/* One owner's lingering sockets (a worker's).  loop and stop are set by
   the owner; the rest is this module's. */
typedef struct sd_lingers {
  sd_loop *loop;
  const int *stop; /* non-zero once the owner's loop has ended: close now */
  sd_linger *head;
  uint32_t n;
} sd_lingers;

/* Takes fd: lingers on it, or closes it at once when too many linger or
   the loop has ended. */
void sd_linger_close(sd_lingers *ls, int fd);
/* Closes every lingering socket (the owner is stopping). */
void sd_linger_free_all(sd_lingers *ls);

#endif
