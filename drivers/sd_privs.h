/*
 * sd_privs.h: binding as root, then running as an unprivileged user.
 *
 * With "user" set and sluiced started as root, the master binds every
 * listener once per worker (SO_REUSEPORT, as the workers would), drops to
 * user/group, and only then forks the workers, which take their sockets from
 * it.  The master keeps its copies, so a worker it restarts gets the same
 * sockets back (a port below 1024 cannot be bound again after the drop).
 * Without a drop none of this is used: workers bind their own sockets.
 */
#ifndef SD_PRIVS_H
#define SD_PRIVS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sd_config.h"

typedef struct sd_privs {
  int drop; /* 1: started as root with "user": bind, then switch */
  uid_t uid;
  gid_t gid;
  char user[64];
} sd_privs;

/* Looks up user and group (also for --check-config).  Refuses uid or gid
   0, a group without a user, and a user other than the current one when
   not started as root.  0 or -1 + err. */
int sd_privs_resolve(const sd_config *cfg, sd_privs *p, char *err,
                     size_t errlen);

/* Binds every listener of cfg nworkers times (rows 0..nworkers-1), when
   p->drop.  0 or -1 + err ("listen ADDR: ..."). */
int sd_privs_prebind(const sd_privs *p, const sd_config *cfg, uint32_t nworkers,
                     char *err, size_t errlen);

/* setgroups (initgroups), setgid, setuid, then checks that neither uid 0
   nor any capability can be had back.  No-op without p->drop. 0 or -1. */
int sd_privs_drop(const sd_privs *p, char *err, size_t errlen);

/* 1 after a successful drop in this process (or its master). */
int sd_privs_dropped(void);

/* In a forked worker: keep row index, close the other rows' sockets. */
void sd_privs_select(uint32_t index);

/* A pre-bound listening socket for addr in this process's row, handed over
   (the table forgets it), or -1: the caller binds one itself. */
int sd_privs_take_listener(const sd_sockaddr *addr);

/* Text appended to a failed bind's message after the drop (EACCES on a
   privileged port), else "". */
const char *sd_privs_bind_hint(int err);

/* Master, reload: what the new config may not change after the drop (user,
   group, pid_file), and new listeners the unprivileged master cannot bind
   (tried with a bind that is closed at once).  0 or -1 + err. */
int sd_privs_check_reload(const sd_config *old, const sd_config *nw, char *err,
                          size_t errlen);

/* Master, after an accepted reload: closes its copies of listeners the new
   config no longer has, so that no socket is left listening unserved. */
void sd_privs_sync(const sd_config *cfg);

/* Master, at SIGTERM: closes every copy, so new clients are refused while
   the workers drain (as without pre-binding). */
void sd_privs_close_all(void);

#endif
