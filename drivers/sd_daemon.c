/*
 * sd_daemon.c: pidfile and process titles (see sd_daemon.h).
 */
#include "sd_daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* ---- process titles ------------------------------------------------------ */

static char *title_area; /* argv[0] .. the end of the last contiguous string */
static size_t title_len;

void sd_proctitle_init(int argc, char **argv) {
  if (argc < 1 || argv[0] == NULL)
    return;
  /* The area the kernel shows as /proc/PID/cmdline: argv's strings and,
     when contiguous with them, the environment's (as nginx and Postfix). */
  char *start = argv[0];
  char *end = argv[0] + strlen(argv[0]) + 1;
  for (int i = 1; i < argc; i++)
    if (argv[i] == end)
      end = argv[i] + strlen(argv[i]) + 1;
  size_t nenv = 0;
  while (environ[nenv])
    nenv++;
  for (size_t i = 0; i < nenv; i++)
    if (environ[i] == end)
      end = environ[i] + strlen(environ[i]) + 1;
  /* Copies first: every title overwrites the original strings. */
  char **env = calloc(nenv + 1, sizeof *env);
  if (env == NULL)
    return;
  for (size_t i = 0; i < nenv; i++)
    if ((env[i] = strdup(environ[i])) == NULL)
      return;
  for (int i = 0; i < argc; i++)
    if ((argv[i] = strdup(argv[i])) == NULL)
      return;
  environ = env;
  title_area = start;
  title_len = (size_t)(end - start);
}

void sd_proctitle_set(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  /* comm holds 15 bytes: "sluiced: worker 12" becomes "sluiced: w12". */
  char comm[16];
  const char *src = buf;
  char shortened[sizeof buf];
  if (strncmp(buf, "sluiced: worker ", 16) == 0) {
    memcpy(shortened, "sluiced: w", 10);
    memcpy(shortened + 10, buf + 16, strlen(buf + 16) + 1);
    src = shortened;
  }
  size_t cn = strlen(src) < sizeof comm - 1 ? strlen(src) : sizeof comm - 1;
  memcpy(comm, src, cn);
  comm[cn] = '\0';
  prctl(PR_SET_NAME, comm, 0, 0, 0);
  if (title_area == NULL || title_len < 2)
    return;
  /* NULs after the title: the kernel then ends cmdline at the title. */
  memset(title_area, 0, title_len);
  size_t n = strlen(buf);
  if (n > title_len - 1)
    n = title_len - 1;
  memcpy(title_area, buf, n);
}

/* ---- pidfile ---------------------------------------------------------- */

static int pid_fd = -1;
static char pid_path[4096];

/* 1 if pid is a running sluiced: alive, and its name (as sluiced sets it,
   or as exec gave it) says sluiced.  An unreadable name counts as ours. */
static int live_sluiced(pid_t pid) {
  if (pid <= 0 || pid == getpid())
    return 0;
  if (kill(pid, 0) != 0 && errno != EPERM)
    return 0;
  char p[64], comm[32] = "";
  snprintf(p, sizeof p, "/proc/%d/comm", (int)pid);
  FILE *f = fopen(p, "r");
  if (f == NULL)
    return 1;
  int ok = fgets(comm, sizeof comm, f) != NULL;
  fclose(f);
  return !ok || strncmp(comm, "sluiced", 7) == 0;
}

int sd_pidfile_check(const char *path, char *err, size_t errlen) {
  if (path == NULL)
    return 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    if (errno == ENOENT)
      return 0;
    snprintf(err, errlen, "pid_file %s: %s", path, strerror(errno));
    return -1;
  }
  long pid = 0;
  int n = fscanf(f, "%ld", &pid);
  fclose(f);
  if (n == 1 && live_sluiced((pid_t)pid)) {
    snprintf(err, errlen, "pid_file %s: sluiced is already running as pid %ld",
             path, pid);
    return -1;
  }
  /* Stale (a crash, a kill -9, a reboot without tmpfs): replace it.  A
     root without CAP_DAC_OVERRIDE (the systemd unit) cannot unlink in the
     user's directory; then sd_pidfile_write, run as that user, who wrote
     the stale file, overwrites it in place. */
  if (unlink(path) != 0 && errno != ENOENT && errno != EACCES &&
      errno != EPERM) {
    snprintf(err, errlen, "pid_file %s: stale, and cannot be removed: %s", path,
             strerror(errno));
    return -1;
  }
  return 0;
}

int sd_pidfile_write(const char *path, char *err, size_t errlen) {
  if (path == NULL)
    return 0;
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen,
             "pid_file %s: %s (it is written as uid %u, after the drop: its "
             "directory must be writable by that user)",
             path, strerror(e), (unsigned)geteuid());
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    snprintf(
        err, errlen,
        "pid_file %s: locked by another sluiced that started at the same time",
        path);
    close(fd);
    return -1;
  }
  char b[32];
  int n = snprintf(b, sizeof b, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, b, (size_t)n, 0) != n) {
    snprintf(err, errlen, "pid_file %s: write: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  pid_fd = fd;
  snprintf(pid_path, sizeof pid_path, "%s", path);
  return 0;
}

void sd_pidfile_remove(void) {
  if (pid_fd < 0)
    return;
  /* Only the file this process wrote: another instance may own the name. */
  struct stat a, b;
  if (fstat(pid_fd, &a) == 0 && stat(pid_path, &b) == 0 &&
      a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    unlink(pid_path);
  close(pid_fd);
  pid_fd = -1;
}
