/*
 * sd_privs.c: bind as root, then drop to "user"/"group" (see sd_privs.h).
 */
#include "sd_privs.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One pre-bound socket: row = worker index. */
typedef struct prebound {
  uint32_t row;
  sd_sockaddr addr;
  int fd;
} prebound;

static prebound *pb;
static size_t npb;
static int dropped;
static char dropped_user[64];

static const char *str_or_empty(const char *s) { return s ? s : ""; }

int sd_privs_resolve(const sd_config *cfg, sd_privs *p, char *err,
                     size_t errlen) {
  memset(p, 0, sizeof *p);
  p->uid = (uid_t)-1;
  p->gid = (gid_t)-1;
  const char *name = cfg->path ? cfg->path : "config";
  if (cfg->user == NULL) {
    if (cfg->group != NULL) {
      snprintf(err, errlen, "%s: group: needs user (the drop switches both)",
               name);
      return -1;
    }
    return 0;
  }
  struct passwd *pw = getpwnam(cfg->user);
  if (pw == NULL) {
    snprintf(err, errlen, "%s: user: no such user \"%s\"", name, cfg->user);
    return -1;
  }
  /* Running as root is what no "user" line gives; naming root here is
     almost certainly a mistake that would leave workers as root. */
  if (pw->pw_uid == 0) {
    snprintf(err, errlen,
             "%s: user: \"%s\" is uid 0; name an unprivileged user (or leave "
             "user empty)",
             name, cfg->user);
    return -1;
  }
  p->uid = pw->pw_uid;
  p->gid = pw->pw_gid;
  snprintf(p->user, sizeof p->user, "%s", cfg->user);
  if (cfg->group != NULL) {
    struct group *gr = getgrnam(cfg->group);
    if (gr == NULL) {
      snprintf(err, errlen, "%s: group: no such group \"%s\"", name,
               cfg->group);
      return -1;
    }
    p->gid = gr->gr_gid;
  }
  if (p->gid == 0) {
    snprintf(err, errlen,
             "%s: group: gid 0 would keep root's group; name another group",
             name);
    return -1;
  }
  if (geteuid() == 0) {
    p->drop = 1;
  } else if (geteuid() != p->uid) {
    /* Started unprivileged as someone else (not by root): no way to switch. */
    snprintf(err, errlen,
             "%s: user: sluiced runs as uid %u, not root, and cannot switch to "
             "\"%s\"",
             name, (unsigned)geteuid(), cfg->user);
    return -1;
  }
  /* Already that user (e.g. systemd's User=): nothing to drop. */
  return 0;
}

static int bind_one(const sd_listen_cfg *lc, int *out, char *err,
                    size_t errlen) {
  /* The same socket options as the worker's own open_listener(). */
  int fd = socket(lc->addr.ss.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "listen %s: socket: %s", lc->text, strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (lc->addr.ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)&lc->addr.ss, lc->addr.len) != 0 ||
      listen(fd, 1024) != 0) {
    snprintf(err, errlen, "listen %s: %s", lc->text, strerror(errno));
    close(fd);
    return -1;
  }
  *out = fd;
  return 0;
}

int sd_privs_prebind(const sd_privs *p, const sd_config *cfg, uint32_t nworkers,
                     char *err, size_t errlen) {
  if (!p->drop)
    return 0;
  pb = calloc((size_t)nworkers * cfg->nlisten + 1, sizeof *pb);
  if (pb == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (uint32_t r = 0; r < nworkers; r++)
    for (size_t i = 0; i < cfg->nlisten; i++) {
      int fd;
      if (bind_one(&cfg->listen[i], &fd, err, errlen) != 0) {
        sd_privs_close_all();
        return -1;
      }
      pb[npb].row = r;
      pb[npb].addr = cfg->listen[i].addr;
      pb[npb].fd = fd;
      npb++;
    }
  return 0;
}

static int no_capabilities(void) {
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  if (syscall(SYS_capget, &h, d) == 0) {
    for (int i = 0; i < 2; i++)
      if (d[i].effective || d[i].permitted)
        return 0;
    return 1;
  }
  /* capget filtered (a seccomp policy): the kernel's own account. */
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return 0; /* cannot tell: fail closed */
  char line[256];
  int seen = 0, clear = 1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "CapPrm:", 7) != 0 && strncmp(line, "CapEff:", 7) != 0)
      continue;
    seen++;
    if (strtoull(line + 7, NULL, 16) != 0)
      clear = 0;
  }
  fclose(f);
  return seen == 2 && clear;
}

int sd_privs_drop(const sd_privs *p, char *err, size_t errlen) {
  if (!p->drop)
    return 0;
  /* Supplementary groups first (they need root), from /etc/group, so that
     e.g. membership of ssl-cert lets the user read private keys. */
  if (initgroups(p->user, p->gid) != 0) {
    snprintf(err, errlen, "user %s: initgroups: %s", p->user, strerror(errno));
    return -1;
  }
  if (setresgid(p->gid, p->gid, p->gid) != 0) {
    snprintf(err, errlen, "user %s: setresgid(%u): %s", p->user,
             (unsigned)p->gid, strerror(errno));
    return -1;
  }
  if (setresuid(p->uid, p->uid, p->uid) != 0) {
    snprintf(err, errlen, "user %s: setresuid(%u): %s", p->user,
             (unsigned)p->uid, strerror(errno));
    return -1;
  }
  /* Trust but verify: no saved root id, no way back, no capability left
     (ambient or kept ones would survive setresuid). */
  uid_t r, e, s;
  gid_t rg, eg, sg;
  if (getresuid(&r, &e, &s) != 0 || r != p->uid || e != p->uid || s != p->uid ||
      getresgid(&rg, &eg, &sg) != 0 || rg != p->gid || eg != p->gid ||
      sg != p->gid || setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 ||
      !no_capabilities()) {
    snprintf(err, errlen, "user %s: privileges could not be dropped for good",
             p->user);
    return -1;
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  dropped = 1;
  snprintf(dropped_user, sizeof dropped_user, "%s", p->user);
  return 0;
}

int sd_privs_dropped(void) { return dropped; }

void sd_privs_select(uint32_t index) {
  size_t k = 0;
  for (size_t i = 0; i < npb; i++) {
    if (pb[i].row != index) {
      close(pb[i].fd);
      continue;
    }
    pb[k++] = pb[i];
  }
  npb = k;
}

static int same_addr(const sd_sockaddr *a, const sd_sockaddr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int sd_privs_take_listener(const sd_sockaddr *addr) {
  for (size_t i = 0; i < npb; i++)
    if (same_addr(&pb[i].addr, addr)) {
      int fd = pb[i].fd;
      pb[i] = pb[--npb];
      return fd;
    }
  return -1;
}

const char *sd_privs_bind_hint(int err) {
  if (!dropped || err != EACCES)
    return "";
  return " (sluiced dropped privileges after start: a new port below 1024 "
         "needs a restart)";
}

static int str_changed(const char *a, const char *b) {
  return strcmp(str_or_empty(a), str_or_empty(b)) != 0;
}

static int prebound_has(const sd_sockaddr *a) {
  for (size_t i = 0; i < npb; i++)
    if (same_addr(&pb[i].addr, a))
      return 1;
  return 0;
}

int sd_privs_check_reload(const sd_config *old, const sd_config *nw, char *err,
                          size_t errlen) {
  const char *name = nw->path ? nw->path : "config";
  static const char *const keys[] = {"user", "group", "pid_file"};
  const char *const was[] = {old->user, old->group, old->pid_file};
  const char *const now[] = {nw->user, nw->group, nw->pid_file};
  for (int i = 0; i < 3; i++)
    if (str_changed(was[i], now[i])) {
      snprintf(err, errlen,
               "%s: %s: changed from \"%s\" to \"%s\"; that needs a restart",
               name, keys[i], str_or_empty(was[i]), str_or_empty(now[i]));
      return -1;
    }
  if (!dropped)
    return 0;
  for (size_t i = 0; i < nw->nlisten; i++) {
    const sd_listen_cfg *lc = &nw->listen[i];
    int known = prebound_has(&lc->addr);
    for (size_t j = 0; j < old->nlisten && !known; j++)
      known = same_addr(&old->listen[j].addr, &lc->addr);
    if (known)
      continue; /* the workers keep their socket for it */
    /* A new address: the workers will bind it as this user; try now, so the
       reload is refused as a whole with the reason. */
    int fd = socket(lc->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (lc->addr.ss.ss_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)&lc->addr.ss, lc->addr.len);
    int e = errno;
    close(fd);
    if (rc != 0) {
      snprintf(
          err, errlen, "%s:%d: listen: %s: %s as user %s%s", name, lc->line,
          lc->text, strerror(e), dropped_user,
          e == EACCES
              ? " (a port below 1024 is bound only at start, as root: restart "
                "sluiced to add it)"
              : "");
      return -1;
    }
  }
  return 0;
}

void sd_privs_sync(const sd_config *cfg) {
  size_t k = 0;
  for (size_t i = 0; i < npb; i++) {
    int keep = 0;
    for (size_t j = 0; j < cfg->nlisten && !keep; j++)
      keep = same_addr(&cfg->listen[j].addr, &pb[i].addr);
    if (!keep) {
      close(pb[i].fd);
      continue;
    }
    pb[k++] = pb[i];
  }
  npb = k;
}

void sd_privs_close_all(void) {
  for (size_t i = 0; i < npb; i++)
    close(pb[i].fd);
  npb = 0;
}
