/*
 * The maildir: each transaction writes .tmp.<session>.{eml,env}; an accepted
 * message is renamed to <n>.env, then <n>.eml.
 */
#include "sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void tmp_path(const struct sink *sk, char *buf, size_t size,
                     uint64_t serial, const char *ext) {
  snprintf(buf, size, "%s/.tmp.%" PRIu64 ".%s", sk->cfg.maildir, serial, ext);
}

void sink_store_discard(struct sink_session *s) {
  char path[PATH_MAX];
  if (s->eml_fd >= 0) {
    close(s->eml_fd);
    s->eml_fd = -1;
    tmp_path(s->sk, path, sizeof path, s->serial, "eml");
    unlink(path);
  }
  if (s->env_fd >= 0) {
    close(s->env_fd);
    s->env_fd = -1;
    tmp_path(s->sk, path, sizeof path, s->serial, "env");
    unlink(path);
  }
}

static bool storing(const struct sink *sk) {
  return sk->cfg.maildir && !sk->cfg.count_only;
}

static void env_line(struct sink_session *s, const char *key, const char *val) {
  if (s->env_fd >= 0)
    dprintf(s->env_fd, "%s: %s\n", key, val);
}

void sink_store_env_printf(struct sink_session *s, const char *fmt, ...) {
  if (s->env_fd < 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vdprintf(s->env_fd, fmt, ap);
  va_end(ap);
}

bool sink_store_open(struct sink_session *s) {
  struct sink *sk = s->sk;
  if (!storing(sk))
    return true;
  char path[PATH_MAX];
  tmp_path(sk, path, sizeof path, s->serial, "eml");
  s->eml_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  tmp_path(sk, path, sizeof path, s->serial, "env");
  s->env_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (s->eml_fd < 0 || s->env_fd < 0) {
    sink_log(sk, "cannot create files in %s: %s", sk->cfg.maildir,
             strerror(errno));
    sink_store_discard(s);
    return false;
  }
  env_line(s, "peer", s->peer);
  if (s->proxy[0])
    env_line(s, "proxy", s->proxy);
  if (s->xclient[0])
    env_line(s, "xclient", s->xclient);
  if (s->helo[0])
    env_line(s, "helo", s->helo);
  return true;
}

void sink_store_content(struct sink_session *s, const char *buf, size_t n) {
  struct sink *sk = s->sk;
  if (!n)
    return;
  s->msg_bytes += n;
  if (sk->cfg.size_limit && s->msg_bytes > sk->cfg.size_limit)
    s->too_big = true;
  if (s->eml_fd < 0 || s->too_big)
    return;
  while (n) {
    ssize_t w = write(s->eml_fd, buf, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      sink_log(sk, "write failed: %s", strerror(errno));
      s->too_big = true; /* reported as a storage failure below */
      return;
    }
    buf += w;
    n -= (size_t)w;
  }
}

int sink_store_commit(struct sink_session *s, uint64_t id) {
  struct sink *sk = s->sk;
  if (s->eml_fd < 0 || s->env_fd < 0)
    return 0;
  char from[PATH_MAX], to[PATH_MAX];
  dprintf(s->env_fd, "transfer: %s\nsize: %" PRIu64 "\n",
          s->bdat_used ? "BDAT" : "DATA", s->msg_bytes);
  close(s->env_fd);
  close(s->eml_fd);
  s->env_fd = s->eml_fd = -1;
  /* .env first: the .eml appearing is the signal that both are
   * complete. */
  tmp_path(sk, from, sizeof from, s->serial, "env");
  snprintf(to, sizeof to, "%s/%" PRIu64 ".env", sk->cfg.maildir, id);
  int r1 = rename(from, to);
  tmp_path(sk, from, sizeof from, s->serial, "eml");
  snprintf(to, sizeof to, "%s/%" PRIu64 ".eml", sk->cfg.maildir, id);
  int r2 = rename(from, to);
  if (r1 || r2) {
    sink_log(sk, "rename failed: %s", strerror(errno));
    return -1;
  }
  return 0;
}

void sink_store_scan(struct sink *sk) {
  const char *dir = sk->cfg.maildir;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    sink_die("--maildir %s: %s", dir, strerror(errno));
  DIR *d = opendir(dir);
  if (!d)
    sink_die("--maildir %s: %s", dir, strerror(errno));
  /* Continue numbering after what is there so nothing is overwritten. */
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    unsigned long long v = strtoull(e->d_name, &end, 10);
    if (end != e->d_name && strcmp(end, ".eml") == 0 && v > sk->msg_seq)
      sk->msg_seq = v;
  }
  closedir(d);
}
