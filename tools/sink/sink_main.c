/*
 * sluice-sink's process: options, listeners, the epoll loop with its delay
 * and idle queues, session I/O, signals and stats.  The SMTP side lives in
 * sink_smtp.c, the maildir in sink_store.c.
 */
#include "sink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void sink_log(const struct sink *sk, const char *fmt, ...) {
  if (sk->cfg.quiet)
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("sluice-sink: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

void sink_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("sluice-sink: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

uint64_t sink_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t parse_u64(const char *opt, const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-')
    sink_die("%s: not a number: %s", opt, s);
  return (uint64_t)v;
}

/* ---------------------------------------------------------------- queues */

/* Every delay has the same length, so appending keeps the queue sorted. */
void sink_delay_push(struct sink_session *s, uint64_t deadline) {
  struct sink_queue *q = &s->sk->delayq;
  s->delay_deadline = deadline;
  s->d_next = NULL;
  s->d_prev = q->tail;
  if (q->tail)
    q->tail->d_next = s;
  else
    q->head = s;
  q->tail = s;
  s->in_delayq = true;
}

static void dq_remove(struct sink_session *s) {
  struct sink_queue *q = &s->sk->delayq;
  if (!s->in_delayq)
    return;
  if (s->d_prev)
    s->d_prev->d_next = s->d_next;
  else
    q->head = s->d_next;
  if (s->d_next)
    s->d_next->d_prev = s->d_prev;
  else
    q->tail = s->d_prev;
  s->d_prev = s->d_next = NULL;
  s->in_delayq = false;
}

static void iq_remove(struct sink_session *s) {
  struct sink_queue *q = &s->sk->idleq;
  if (s->i_prev)
    s->i_prev->i_next = s->i_next;
  else
    q->head = s->i_next;
  if (s->i_next)
    s->i_next->i_prev = s->i_prev;
  else
    q->tail = s->i_prev;
  s->i_prev = s->i_next = NULL;
}

static void iq_append(struct sink_session *s) {
  struct sink_queue *q = &s->sk->idleq;
  s->i_next = NULL;
  s->i_prev = q->tail;
  if (q->tail)
    q->tail->i_next = s;
  else
    q->head = s;
  q->tail = s;
}

/* Same idle timeout for all, so moving to the tail keeps the list sorted. */
static void idle_touch(struct sink_session *s, uint64_t now) {
  struct sink_queue *q = &s->sk->idleq;
  s->idle_deadline = now + s->sk->cfg.timeout_ms;
  if (q->tail != s) {
    iq_remove(s);
    iq_append(s);
  }
}

/* ---------------------------------------------------------------- I/O */

static void fmt_addr(char *buf, size_t size, const struct sockaddr *sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)sa;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    snprintf(buf, size, "%s:%u", host, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a =
        (const struct sockaddr_in6 *)(const void *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    snprintf(buf, size, "[%s]:%u", host, port);
  } else {
    snprintf(buf, size, "unknown");
  }
}

static void session_free(struct sink_session *s) {
  dq_remove(s);
  iq_remove(s);
  sink_store_discard(s);
  if (s->fd >= 0)
    close(s->fd); /* also removes it from the epoll set */
  s->sk->n_sessions--;
  free(s);
}

static void set_mask(struct sink_session *s) {
  uint32_t want = 0;
  if (s->mode != M_CLOSING && !s->eof &&
      (s->in_len < SINK_IN_SIZE || (s->in_off > 0)))
    want |= EPOLLIN;
  size_t sendable = s->waiting ? s->out_hold : s->out_len;
  if (s->out_off < sendable)
    want |= EPOLLOUT;
  if (want != s->ev_mask) {
    struct epoll_event ev = {.events = want, .data.ptr = s};
    epoll_ctl(s->sk->epfd, EPOLL_CTL_MOD, s->fd, &ev);
    s->ev_mask = want;
  }
}

/* Returns -1 when the peer is gone. */
static int session_flush(struct sink_session *s) {
  size_t sendable = s->waiting ? s->out_hold : s->out_len;
  while (s->out_off < sendable) {
    ssize_t w =
        send(s->fd, s->out + s->out_off, sendable - s->out_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      return -1;
    }
    s->out_off += (size_t)w;
  }
  if (s->out_off == s->out_len) {
    s->out_off = s->out_len = s->out_hold = 0;
  } else if (s->out_off > 0 && SINK_OUT_SIZE - s->out_len < SINK_OUT_RESERVE) {
    memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
    s->out_len -= s->out_off;
    s->out_hold = s->out_hold > s->out_off ? s->out_hold - s->out_off : 0;
    s->out_off = 0;
  }
  return 0;
}

/* Runs the session as far as it can go; may free it. */
static void session_step(struct sink_session *s) {
  for (int round = 0; round < 64; round++) {
    if (!s->waiting)
      sink_session_process(s);
    if (session_flush(s) < 0) {
      session_free(s);
      return;
    }
    if (!(s->out_full && s->out_off == s->out_len && !s->waiting))
      break;
  }
  if ((s->eof || s->mode == M_CLOSING) && !s->waiting &&
      s->out_off == s->out_len) {
    session_free(s);
    return;
  }
  set_mask(s);
}

static void session_read(struct sink_session *s) {
  bool any = false;
  for (int round = 0; round < 4; round++) {
    if (s->in_len == SINK_IN_SIZE && s->in_off > 0) {
      memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
      s->in_len -= s->in_off;
      s->in_off = 0;
    }
    if (s->in_len == SINK_IN_SIZE)
      break;
    ssize_t r = recv(s->fd, s->in + s->in_len, SINK_IN_SIZE - s->in_len, 0);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        s->eof = true;
      break;
    }
    if (r == 0) {
      s->eof = true;
      break;
    }
    any = true;
    s->in_len += (size_t)r;
    if (s->mode == M_STALL)
      s->in_off = s->in_len = 0;
    else
      break;
  }
  if (any)
    idle_touch(s, sink_now_ms());
}

static void set_listeners(struct sink *sk, bool on) {
  for (size_t i = 0; i < sk->n_listeners; i++) {
    struct epoll_event ev = {.events = on ? EPOLLIN : 0,
                             .data.ptr = &sk->listeners[i]};
    epoll_ctl(sk->epfd, EPOLL_CTL_MOD, sk->listeners[i].fd, &ev);
  }
  sk->listeners_paused = !on;
}

static void do_accept(struct sink *sk, struct sink_listener *l) {
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM) {
        sink_log(sk, "accept: %s; pausing", strerror(errno));
        set_listeners(sk, false);
        sk->accept_resume_at = sink_now_ms() + 100;
      }
      return;
    }
    sk->st.sessions++;
    if (sk->n_sessions >= sk->cfg.max_sessions) {
      static const char busy[] = "421 4.3.2 sluice-sink: too many sessions\r\n";
      ssize_t ignored = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL);
      (void)ignored;
      close(fd);
      continue;
    }
    struct sink_session *s = calloc(1, sizeof *s);
    if (!s) {
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->kind = OBJ_SESSION;
    s->fd = fd;
    s->sk = sk;
    s->serial = ++sk->session_serial;
    s->eml_fd = s->env_fd = -1;
    fmt_addr(s->peer, sizeof s->peer, (struct sockaddr *)&ss);
    sk->n_sessions++;
    iq_append(s);
    s->idle_deadline = sink_now_ms() + sk->cfg.timeout_ms;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
    s->ev_mask = EPOLLIN;
    if (epoll_ctl(sk->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      session_free(s);
      continue;
    }
    if (sk->cfg.proxy_protocol) {
      s->mode = M_PROXY;
    } else {
      s->mode = sk->cfg.stall ? M_STALL : M_CMD;
      sink_send_greeting(s);
    }
    session_step(s);
  }
}

/* ---------------------------------------------------------------- setup */

static int open_listener(const char *spec) {
  char host[256];
  const char *colon = strrchr(spec, ':');
  if (!colon)
    sink_die("--listen %s: expected ADDR:PORT", spec);
  size_t hl = (size_t)(colon - spec);
  if (hl >= sizeof host)
    sink_die("--listen %s: address too long", spec);
  memcpy(host, spec, hl);
  host[hl] = '\0';
  uint64_t port = parse_u64("--listen port", colon + 1);
  if (port > 65535)
    sink_die("--listen %s: bad port", spec);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
      sink_die("--listen %s: bad IPv6 address", spec);
    sl = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, hl ? host : "0.0.0.0", &a->sin_addr) != 1)
      sink_die("--listen %s: bad IPv4 address (IPv6 goes in brackets)", spec);
    sl = sizeof *a;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    sink_die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
    sink_die("bind %s: %s", spec, strerror(errno));
  if (listen(fd, SOMAXCONN) < 0)
    sink_die("listen %s: %s", spec, strerror(errno));
  return fd;
}

static unsigned bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
    return 0;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void print_stats(const struct sink *sk) {
  printf("stats sessions=%" PRIu64 " messages=%" PRIu64 " bytes=%" PRIu64
         " rejected=%" PRIu64 "\n",
         sk->st.sessions, sk->st.messages, sk->st.bytes, sk->st.rejected);
  fflush(stdout);
}

static void usage(FILE *f) {
  fputs(
      "usage: sluice-sink [options]\n"
      "  --listen ADDR:PORT          listen here (repeatable; [v6]:port; "
      "default 127.0.0.1:2525)\n"
      "  --print-port                print each listener's port on stdout, one "
      "per line\n"
      "  --maildir DIR               store messages as DIR/<n>.eml and "
      "envelopes as DIR/<n>.env\n"
      "  --count-only                store nothing, count only\n"
      "  --reject-rcpt SUBSTRING     550 5.1.1 for recipients containing it "
      "(repeatable)\n"
      "  --tempfail-data             451 at end of data\n"
      "  --delay-ms N                wait N ms before each reply\n"
      "  --close-after-data-bytes N  drop the connection after N bytes of "
      "message data\n"
      "  --garbage                   answer EHLO with a malformed reply\n"
      "  --stall                     greet, then never answer\n"
      "  --xclient                   offer and accept XCLIENT\n"
      "  --proxy-protocol            expect a PROXY v1/v2 header first\n"
      "  --name NAME                 host name in greeting and EHLO (default: "
      "hostname)\n"
      "  --size N                    SIZE limit in bytes (default 52428800)\n"
      "  --max-line N                line limit including CRLF (default 1000)\n"
      "  --timeout SECS              idle timeout (default 300)\n"
      "  --max-sessions N            concurrent sessions (default 20000)\n"
      "  --pid-file FILE             write the pid here\n"
      "  --stats                     print counters on SIGTERM/SIGINT/SIGUSR1\n"
      "  --quiet                     no log lines on stderr\n",
      f);
}

static void parse_args(struct sink_config *cfg, int argc, char **argv) {
  enum {
    O_LISTEN = 256,
    O_MAILDIR,
    O_COUNT,
    O_REJECT,
    O_TEMPFAIL,
    O_DELAY,
    O_CLOSE_AFTER,
    O_GARBAGE,
    O_STALL,
    O_XCLIENT,
    O_PROXY,
    O_PIDFILE,
    O_STATS,
    O_QUIET,
    O_PRINT_PORT,
    O_NAME,
    O_SIZE,
    O_MAXLINE,
    O_TIMEOUT,
    O_MAXSESS,
    O_VERSION
  };
  static const struct option opts[] = {
      {"listen", required_argument, NULL, O_LISTEN},
      {"maildir", required_argument, NULL, O_MAILDIR},
      {"count-only", no_argument, NULL, O_COUNT},
      {"reject-rcpt", required_argument, NULL, O_REJECT},
      {"tempfail-data", no_argument, NULL, O_TEMPFAIL},
      {"delay-ms", required_argument, NULL, O_DELAY},
      {"close-after-data-bytes", required_argument, NULL, O_CLOSE_AFTER},
      {"garbage", no_argument, NULL, O_GARBAGE},
      {"stall", no_argument, NULL, O_STALL},
      {"xclient", no_argument, NULL, O_XCLIENT},
      {"proxy-protocol", no_argument, NULL, O_PROXY},
      {"pid-file", required_argument, NULL, O_PIDFILE},
      {"stats", no_argument, NULL, O_STATS},
      {"quiet", no_argument, NULL, O_QUIET},
      {"print-port", no_argument, NULL, O_PRINT_PORT},
      {"name", required_argument, NULL, O_NAME},
      {"size", required_argument, NULL, O_SIZE},
      {"max-line", required_argument, NULL, O_MAXLINE},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"max-sessions", required_argument, NULL, O_MAXSESS},
      {"version", no_argument, NULL, O_VERSION},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  cfg->size_limit = 52428800;
  cfg->max_line = 1000;
  cfg->timeout_ms = 300000;
  cfg->max_sessions = 20000;
  if (gethostname(cfg->name, sizeof cfg->name - 1) < 0 || !cfg->name[0])
    snprintf(cfg->name, sizeof cfg->name, "localhost");
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case O_LISTEN:
      if (cfg->n_listen == SINK_MAX_LISTEN)
        sink_die("too many --listen");
      cfg->listen[cfg->n_listen++] = optarg;
      break;
    case O_MAILDIR:
      cfg->maildir = optarg;
      break;
    case O_COUNT:
      cfg->count_only = true;
      break;
    case O_REJECT:
      if (cfg->n_reject == SINK_MAX_REJECT)
        sink_die("too many --reject-rcpt");
      cfg->reject_rcpt[cfg->n_reject++] = optarg;
      break;
    case O_TEMPFAIL:
      cfg->tempfail_data = true;
      break;
    case O_DELAY:
      cfg->delay_ms = parse_u64("--delay-ms", optarg);
      break;
    case O_CLOSE_AFTER:
      cfg->close_after = parse_u64("--close-after-data-bytes", optarg);
      if (!cfg->close_after)
        sink_die("--close-after-data-bytes must be at least 1");
      break;
    case O_GARBAGE:
      cfg->garbage = true;
      break;
    case O_STALL:
      cfg->stall = true;
      break;
    case O_XCLIENT:
      cfg->xclient = true;
      break;
    case O_PROXY:
      cfg->proxy_protocol = true;
      break;
    case O_PIDFILE:
      cfg->pid_file = optarg;
      break;
    case O_STATS:
      cfg->stats = true;
      break;
    case O_QUIET:
      cfg->quiet = true;
      break;
    case O_PRINT_PORT:
      cfg->print_port = true;
      break;
    case O_NAME:
      if (strlen(optarg) >= 200 || strpbrk(optarg, " \r\n"))
        sink_die("--name: bad host name");
      snprintf(cfg->name, sizeof cfg->name, "%s", optarg);
      break;
    case O_SIZE:
      cfg->size_limit = parse_u64("--size", optarg);
      if (!cfg->size_limit)
        sink_die("--size must be at least 1");
      break;
    case O_MAXLINE: {
      uint64_t v = parse_u64("--max-line", optarg);
      if (v < 64 || v > SINK_IN_SIZE - 1)
        sink_die("--max-line must be between 64 and %d", SINK_IN_SIZE - 1);
      cfg->max_line = (size_t)v;
      break;
    }
    case O_TIMEOUT:
      cfg->timeout_ms = parse_u64("--timeout", optarg) * 1000u;
      break;
    case O_MAXSESS:
      cfg->max_sessions = (size_t)parse_u64("--max-sessions", optarg);
      break;
    case O_VERSION:
      puts("sluice-sink " SINK_VERSION);
      exit(0);
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      exit(2);
    }
  }
  if (optind < argc)
    sink_die("unexpected argument: %s (see --help)", argv[optind]);
  if (!cfg->n_listen)
    cfg->listen[cfg->n_listen++] = "127.0.0.1:2525";
  if (!cfg->timeout_ms)
    cfg->timeout_ms = 1000;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* Runs until SIGTERM or SIGINT; SIGUSR1 prints the stats. */
static void event_loop(struct sink *sk, int sfd) {
  bool running = true;
  struct epoll_event events[256];
  while (running) {
    int timeout = -1;
    uint64_t now = sink_now_ms();
    uint64_t next = UINT64_MAX;
    if (sk->delayq.head && sk->delayq.head->delay_deadline < next)
      next = sk->delayq.head->delay_deadline;
    if (sk->idleq.head && sk->idleq.head->idle_deadline < next)
      next = sk->idleq.head->idle_deadline;
    if (sk->listeners_paused && sk->accept_resume_at < next)
      next = sk->accept_resume_at;
    if (next != UINT64_MAX)
      timeout =
          next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
    int n = epoll_wait(sk->epfd, events, 256, timeout);
    if (n < 0 && errno != EINTR)
      sink_die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      enum sink_obj_kind kind = *(enum sink_obj_kind *)events[i].data.ptr;
      if (kind == OBJ_LISTENER) {
        do_accept(sk, events[i].data.ptr);
      } else if (kind == OBJ_SIGNAL) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
          if (si.ssi_signo == SIGUSR1) {
            if (sk->cfg.stats)
              print_stats(sk);
          } else {
            running = false;
          }
        }
      } else {
        struct sink_session *s = events[i].data.ptr;
        /* A reset peer can receive nothing more; keeping the session
         * would only spin on EPOLLHUP while a delayed reply waits. */
        if (events[i].events & (EPOLLHUP | EPOLLERR)) {
          session_free(s);
          continue;
        }
        if (events[i].events & EPOLLIN)
          session_read(s);
        session_step(s);
      }
    }
    now = sink_now_ms();
    while (sk->delayq.head && sk->delayq.head->delay_deadline <= now) {
      struct sink_session *s = sk->delayq.head;
      dq_remove(s);
      s->waiting = false;
      s->out_hold = s->out_len;
      session_step(s);
    }
    while (sk->idleq.head && sk->idleq.head->idle_deadline <= now) {
      struct sink_session *s = sk->idleq.head;
      static const char bye[] = "421 4.4.2 sluice-sink: timeout exceeded\r\n";
      ssize_t ignored = send(s->fd, bye, sizeof bye - 1, MSG_NOSIGNAL);
      (void)ignored;
      session_free(s);
    }
    if (sk->listeners_paused && now >= sk->accept_resume_at)
      set_listeners(sk, true);
  }
}

int main(int argc, char **argv) {
  struct sink sink = {.epfd = -1};
  struct sink *sk = &sink;
  parse_args(&sk->cfg, argc, argv);
  if (sk->cfg.maildir && !sk->cfg.count_only)
    sink_store_scan(sk);
  raise_nofile();

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGUSR1);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0)
    sink_die("signalfd: %s", strerror(errno));

  sk->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (sk->epfd < 0)
    sink_die("epoll_create1: %s", strerror(errno));
  struct sink_listener sig_obj = {OBJ_SIGNAL, -1};
  sig_obj.fd = sfd;
  struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sig_obj};
  epoll_ctl(sk->epfd, EPOLL_CTL_ADD, sfd, &sev);

  for (size_t i = 0; i < sk->cfg.n_listen; i++) {
    sk->listeners[i].kind = OBJ_LISTENER;
    sk->listeners[i].fd = open_listener(sk->cfg.listen[i]);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sk->listeners[i]};
    epoll_ctl(sk->epfd, EPOLL_CTL_ADD, sk->listeners[i].fd, &ev);
    sk->n_listeners++;
    sink_log(sk, "listening on %s (port %u)", sk->cfg.listen[i],
             bound_port(sk->listeners[i].fd));
  }
  /* The pid file exists before the ports are announced, so whoever waits
   * for the port can rely on it. */
  if (sk->cfg.pid_file) {
    FILE *f = fopen(sk->cfg.pid_file, "w");
    if (!f)
      sink_die("--pid-file %s: %s", sk->cfg.pid_file, strerror(errno));
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
  }
  for (size_t i = 0; sk->cfg.print_port && i < sk->n_listeners; i++)
    printf("%u\n", bound_port(sk->listeners[i].fd));
  fflush(stdout);

  event_loop(sk, sfd);

  while (sk->idleq.head)
    session_free(sk->idleq.head);
  for (size_t i = 0; i < sk->n_listeners; i++)
    close(sk->listeners[i].fd);
  if (sk->cfg.pid_file)
    unlink(sk->cfg.pid_file);
  if (sk->cfg.stats)
    print_stats(sk);
  sink_log(sk, "exiting");
  return 0;
}
