/*
 * sd_daemon.h: what sluiced does as a system service besides serving: the
 * pidfile and the process titles ("sluiced: master", "sluiced: worker N")
 * that ps and top show.
 */
#ifndef SD_DAEMON_H
#define SD_DAEMON_H

#include <stddef.h>

/* Call first in main(): moves argv's strings and the environment to the
   heap (argv[i] then point at the copies), so their original, contiguous
   area can hold a title. */
void sd_proctitle_init(int argc, char **argv);
/* Sets the title: the argv area (ps, /proc/PID/cmdline) and, shortened to
   15 bytes, the thread name (top, /proc/PID/comm). */
void sd_proctitle_set(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Before binding: a pidfile naming a live sluiced refuses the start (-1 +
   err); one naming a dead process (or another program) is removed.  0
   when there is none (or path is NULL). */
int sd_pidfile_check(const char *path, char *err, size_t errlen);
/* After binding and dropping privileges: creates path (as the user sluiced
   now runs as), locks it and writes getpid().  The lock is held until exit,
   so two instances started together cannot both pass.  0 or -1 + err. */
int sd_pidfile_write(const char *path, char *err, size_t errlen);
/* At exit (master only): removes the file if it is still the one written. */
void sd_pidfile_remove(void);

#endif
