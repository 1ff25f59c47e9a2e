/*
 * sd_log.c: logging.  Every line is written with a single write(2) so lines
 * from several worker processes sharing one file never interleave.
 */
#include "sd_log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static int log_level = SD_LOG_INFO;
static int log_format = SD_LOGFMT;
static char log_path[4096];
static int log_syslog; /* log_fd is a datagram socket to syslog */
static char syslog_path[108];

/* RFC 3164 over a local datagram socket, as syslog(3) does, but to any
   path (tests use their own socket) and from one buffer per line. */
static int syslog_connect(void) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s", syslog_path);
  if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int sd_log_setup(const char *file, int level, int format) {
  log_level = level;
  log_format = format;
  if (file == NULL || file[0] == '\0' || strcmp(file, "-") == 0) {
    log_path[0] = '\0';
    if (log_fd != 2)
      close(log_fd);
    log_fd = 2;
    log_syslog = 0;
    return 0;
  }
  if (strncmp(file, "syslog", 6) == 0 && (file[6] == '\0' || file[6] == ':')) {
    snprintf(syslog_path, sizeof syslog_path, "%s",
             file[6] ? file + 7 : "/dev/log");
    int fd = syslog_connect();
    if (fd < 0)
      return -1;
    if (log_fd != 2)
      close(log_fd);
    log_fd = fd;
    log_syslog = 1;
    log_path[0] = '\0';
    return 0;
  }
  int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return -1;
  if (log_fd != 2)
    close(log_fd);
  log_fd = fd;
  log_syslog = 0;
  snprintf(log_path, sizeof log_path, "%s", file);
  return 0;
}

int sd_log_level(void) { return log_level; }
int sd_log_format(void) { return log_format; }

void sd_log_reopen(void) {
  if (log_path[0] == '\0')
    return;
  int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return;
  dup2(fd, log_fd);
  close(fd);
}

static void put(sd_rec *r, const char *s, size_t n) {
  /* Keep room for the closing "}\n". */
  if (r->len + n + 3 > sizeof r->buf) {
    r->truncated = 1;
    return;
  }
  memcpy(r->buf + r->len, s, n);
  r->len += n;
}

static void put_quoted(sd_rec *r, const char *s) {
  put(r, "\"", 1);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    char esc[8];
    if (ch == '"' || ch == '\\') {
      esc[0] = '\\';
      esc[1] = (char)ch;
      put(r, esc, 2);
    } else if (ch < 0x20 || ch == 0x7f) {
      /* Peer-controlled text must never break a log line. */
      int n = snprintf(esc, sizeof esc, "\\u%04x", ch);
      put(r, esc, (size_t)n);
    } else {
      put(r, (const char *)s, 1);
    }
  }
  put(r, "\"", 1);
}

static int needs_quotes(const char *s) {
  if (*s == '\0')
    return 1;
  for (; *s; s++)
    if (*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' || *s == 0x7f)
      return 1;
  return 0;
}

static void key(sd_rec *r, const char *k) {
  if (r->format == SD_LOGJSON) {
    put(r, ",", 1);
    put_quoted(r, k);
    put(r, ":", 1);
  } else {
    put(r, " ", 1);
    put(r, k, strlen(k));
    put(r, "=", 1);
  }
}

void sd_rec_str(sd_rec *r, const char *k, const char *v) {
  if (v == NULL)
    v = "";
  key(r, k);
  if (r->format == SD_LOGJSON || needs_quotes(v))
    put_quoted(r, v);
  else
    put(r, v, strlen(v));
}

void sd_rec_u64(sd_rec *r, const char *k, uint64_t v) {
  char b[24];
  int n = snprintf(b, sizeof b, "%" PRIu64, v);
  key(r, k);
  put(r, b, (size_t)n);
}

void sd_rec_i64(sd_rec *r, const char *k, int64_t v) {
  char b[24];
  int n = snprintf(b, sizeof b, "%" PRId64, v);
  key(r, k);
  put(r, b, (size_t)n);
}

void sd_rec_ms(sd_rec *r, const char *k, uint64_t ns) {
  char b[32];
  int n = snprintf(b, sizeof b, "%" PRIu64 ".%03" PRIu64, ns / 1000000u,
                   (ns / 1000u) % 1000u);
  key(r, k);
  put(r, b, (size_t)n);
}

static int severity_of(const char *level) {
  /* syslog severities: err 3, warning 4, info 6, debug 7 */
  if (!strcmp(level, "error"))
    return 3;
  if (!strcmp(level, "warn"))
    return 4;
  if (!strcmp(level, "debug"))
    return 7;
  return 6;
}

void sd_rec_begin(sd_rec *r, const char *level, const char *msg) {
  struct timeval tv;
  struct tm tm;
  char ts[40];
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof ts - n, ".%03dZ", (int)(tv.tv_usec / 1000));
  r->len = 0;
  r->truncated = 0;
  r->format = log_format;
  r->severity = severity_of(level);
  if (r->format == SD_LOGJSON) {
    put(r, "{\"ts\":", 6);
    put_quoted(r, ts);
  } else {
    put(r, "ts=", 3);
    put(r, ts, strlen(ts));
  }
  sd_rec_str(r, "level", level);
  sd_rec_u64(r, "pid", (uint64_t)getpid());
  sd_rec_str(r, "msg", msg);
}

void sd_rec_emit(sd_rec *r) {
  if (r->format == SD_LOGJSON) {
    r->buf[r->len++] = '}';
  }
  if (log_syslog) {
    /* "<PRI>Mmm dd hh:mm:ss sluiced[pid]: line", facility mail (2).  The
       daemon adds the host; a restarted daemon gets one reconnect. */
    char hdr[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t h = (size_t)snprintf(hdr, sizeof hdr, "<%d>", 2 * 8 + r->severity);
    h += strftime(hdr + h, sizeof hdr - h, "%b %e %H:%M:%S ", &tm);
    h += (size_t)snprintf(hdr + h, sizeof hdr - h,
                          "sluiced[%d]: ", (int)getpid());
    char line[sizeof hdr + sizeof r->buf];
    memcpy(line, hdr, h);
    memcpy(line + h, r->buf, r->len);
    if (send(log_fd, line, h + r->len, MSG_NOSIGNAL) < 0) {
      int fd = syslog_connect();
      if (fd >= 0) {
        dup2(fd, log_fd);
        close(fd);
        ssize_t w = send(log_fd, line, h + r->len, MSG_NOSIGNAL);
        (void)w;
      }
    }
    return;
  }
  r->buf[r->len++] = '\n';
  /* One write per line: atomic for O_APPEND files and pipes (< PIPE_BUF
     is not guaranteed at 2 KiB, but one call keeps lines whole in practice). */
  ssize_t w = write(log_fd, r->buf, r->len);
  (void)w;
}

void sd_log(int level, const char *fmt, ...) {
  if (level > log_level)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sd_rec r;
  sd_rec_begin(&r, level_names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
  sd_rec_emit(&r);
}
