/*
 * sd_worker.c: a worker process: listeners, signals, reload, drain.
 */
#include "sd_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sd_log.h"
#include "sd_privs.h"

/* ---- listeners ---------------------------------------------------------- */

static void pause_accepting(sd_worker *w) {
  /* No descriptor to answer with: level-triggered epoll would report the
     waiting clients again at once, so stop listening for 100 ms. */
  if (w->accept_paused)
    return;
  w->accept_paused = 1;
  for (size_t i = 0; i < w->nls; i++)
    sd_loop_del(w->loop, w->ls[i].fd);
  sd_timer_set(w->loop, &w->accept_pause, sd_loop_now(w->loop) + 100 * SL_MSEC);
}

static void resume_accepting(sd_timer *t) {
  sd_worker *w =
      (sd_worker *)(void *)((char *)t - offsetof(sd_worker, accept_pause));
  if (!w->accept_paused)
    return;
  w->accept_paused = 0;
  if (w->draining)
    return;
  for (size_t i = 0; i < w->nls; i++)
    sd_loop_add(w->loop, w->ls[i].fd, EPOLLIN, &w->ls[i].h);
}

static void accept_emfile(sd_worker *w, sd_listener *l) {
  /* Out of descriptors: give the spare back, accept the waiting client,
     tell it 421 and close, then take the spare again (so the client does
     not sit in the backlog until it times out). */
  if (w->spare_fd >= 0) {
    close(w->spare_fd);
    w->spare_fd = -1;
  }
  int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    sd_count(SD_C_REJECT_EMFILE, 1);
    if (!l->tls) {
      static const char msg[] =
          "421 4.7.0 Too many open connections, try again later\r\n";
      ssize_t n = send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)n;
    }
    close(fd);
  }
  w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || w->spare_fd < 0)
    pause_accepting(w);
}

static void listener_io(sd_handler *h, uint32_t ev) {
  sd_listener *l = (sd_listener *)(void *)h;
  sd_worker *w = l->w;
  (void)ev;
  if (l->fd < 0)
    return; /* closed earlier in this batch */
  /* A bounded batch per wake-up keeps one busy listener from starving the
     sessions; level-triggered epoll calls again for the rest. */
  for (int i = 0; i < 64 && !w->draining; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE)
        accept_emfile(w, l);
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        sd_log(SD_LOG_WARN, "accept on %s: %s", l->text, strerror(errno));
      return;
    }
    sd_conn_accept(&w->sessions, w->gen, (size_t)(l - w->ls), l->tls, l->proxy,
                   fd, (const struct sockaddr *)&ss, sl);
  }
}

static int open_listener(const sd_listen_cfg *lc, int *out, char *err,
                         size_t errlen) {
  /* Bound by the master as root before it dropped privileges (sd_privs.c). */
  if ((*out = sd_privs_take_listener(&lc->addr)) >= 0)
    return 0;
  int fd = socket(lc->addr.ss.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "listen %s: socket: %s", lc->text, strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* One socket per worker on the same port; the kernel spreads clients. */
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (lc->addr.ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)&lc->addr.ss, lc->addr.len) != 0 ||
      listen(fd, 1024) != 0) {
    snprintf(err, errlen, "listen %s: %s%s", lc->text, strerror(errno),
             sd_privs_bind_hint(errno));
    close(fd);
    return -1;
  }
  *out = fd;
  return 0;
}

static int same_addr(const sd_sockaddr *a, const sd_sockaddr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Makes the listeners match cfg: keeps sockets whose address is unchanged
   (so no queued client is dropped on reload), opens new ones, closes the
   rest.  On failure nothing changes. */
static int sync_listeners(sd_worker *w, const sd_config *cfg, char *err,
                          size_t errlen) {
  sd_listener *nl = calloc(cfg->nlisten, sizeof *nl);
  if (nl == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int *reused = calloc(w->nls + 1, sizeof *reused);
  if (reused == NULL) {
    free(nl);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (size_t i = 0; i < cfg->nlisten; i++) {
    const sd_listen_cfg *lc = &cfg->listen[i];
    nl[i].fd = -1;
    for (size_t j = 0; j < w->nls; j++)
      if (!reused[j] && same_addr(&w->ls[j].addr, &lc->addr)) {
        nl[i].fd = w->ls[j].fd;
        reused[j] = 1;
        break;
      }
    if (nl[i].fd < 0 && open_listener(lc, &nl[i].fd, err, errlen) != 0) {
      for (size_t k = 0; k < i; k++) {
        int was_reused = 0;
        for (size_t j = 0; j < w->nls; j++)
          if (w->ls[j].fd == nl[k].fd)
            was_reused = 1;
        if (!was_reused)
          close(nl[k].fd);
      }
      free(nl);
      free(reused);
      return -1;
    }
    nl[i].h.cb = listener_io;
    nl[i].w = w;
    nl[i].addr = lc->addr;
    nl[i].tls = lc->tls;
    nl[i].proxy = lc->proxy;
    snprintf(nl[i].text, sizeof nl[i].text, "%s", lc->text);
  }
  for (size_t j = 0; j < w->nls; j++) {
    sd_loop_del(w->loop, w->ls[j].fd);
    if (!reused[j])
      close(w->ls[j].fd);
    w->ls[j].fd = -1;
  }
  if (w->ls)
    sd_loop_defer(w->loop, free, w->ls);
  free(reused);
  w->ls = nl;
  w->nls = cfg->nlisten;
  if (!w->accept_paused)
    for (size_t i = 0; i < w->nls; i++)
      sd_loop_add(w->loop, w->ls[i].fd, EPOLLIN, &w->ls[i].h);
  return 0;
}

static void close_listeners(sd_worker *w) {
  for (size_t i = 0; i < w->nls; i++) {
    sd_loop_del(w->loop, w->ls[i].fd);
    close(w->ls[i].fd);
    w->ls[i].fd = -1;
  }
  /* A listener event may be pending in this batch. */
  if (w->ls)
    sd_loop_defer(w->loop, free, w->ls);
  w->ls = NULL;
  w->nls = 0;
}

/* ---- signals, reload, drain --------------------------------------------- */

static void apply_logging(const sd_config *cfg) {
  if (sd_log_setup(cfg->log_file, cfg->log_level, cfg->log_format) != 0)
    sd_log(SD_LOG_ERR, "log_file %s: %s", cfg->log_file, strerror(errno));
}

/* A reload counts once per machine: with a master, the master counts it
   (it checked the file before signalling the workers); a lone worker
   counts its own. */
static void reload_failed(sd_worker *w, const char *err) {
  if (w->guards)
    sd_count(SD_C_RELOAD_FAILURES, 1);
  sd_log(SD_LOG_ERR, "reload failed, keeping the running config: %s", err);
}

static void reload(sd_worker *w) {
  char err[1024];
  sd_config *cfg = NULL;
  if (sd_config_load(w->config_path, &cfg, err, sizeof err) != 0) {
    reload_failed(w, err);
    return;
  }
  sd_gen *g = NULL;
  /* user, group, pid_file need a restart (the master checks this too). */
  if (sd_privs_check_reload(w->gen->cfg, cfg, err, sizeof err) != 0 ||
      (g = sd_gen_new(&w->sessions.gen_host, cfg, err, sizeof err)) == NULL) {
    sd_config_unref(cfg);
    reload_failed(w, err);
    return;
  }
  if ((w->guards && sd_guards_sync(w->guards, cfg, err, sizeof err) != 0) ||
      sync_listeners(w, cfg, err, sizeof err) != 0) {
    sd_gen_unref(g);
    sd_config_unref(cfg);
    reload_failed(w, err);
    return;
  }
  sd_config_unref(cfg); /* the generation holds it */
  apply_logging(g->cfg);
  w->budget.cap = (size_t)g->cfg->pool_memory;
  if (w->guards) {
    char note[512];
    if (sd_state_configure(w->sessions.state, &g->cfg->ratelim, note,
                           sizeof note) != 0)
      sd_log(SD_LOG_WARN, "reload: %s", note);
    if (sd_config_state_differs(w->gen->cfg, g->cfg))
      sd_log(SD_LOG_WARN,
             "reload: state_backend, state_entries and redis* settings take "
             "effect at the next restart");
  }
  sd_gen *old = w->gen;
  sd_upstreams_stop_checks(old->ups);
  w->gen = g;
  /* Checks run in worker 0 only; it also resets the shared verdicts. */
  if (w->index == 0 && !g->ups->interval)
    for (size_t i = 0; i < g->cfg->nupstream && i < SD_MAX_SERVERS; i++)
      sd_gauge_set(&sd_m->srv_up[i], 1);
  sd_upstreams_start_checks(g->ups, w->index == 0);
  sd_gen_unref(old); /* lives on while its sessions do */
  if (w->guards)
    sd_count(SD_C_RELOADS, 1);
  sd_log(SD_LOG_INFO, "configuration reloaded from %s (%u sessions continue)",
         w->config_path, w->sessions.n);
}

static void start_drain(sd_worker *w) {
  if (w->draining)
    return;
  w->draining = 1;
  close_listeners(w);
  w->drain_deadline = sd_loop_now(w->loop) + w->gen->cfg->drain_timeout;
  sd_log(SD_LOG_INFO, "draining %u sessions (up to %llu ms)", w->sessions.n,
         (unsigned long long)(w->gen->cfg->drain_timeout / SL_MSEC));
}

/* Shared live counts are leases (sd_state.h): each session renews its own
   every third of redis_lease, so an instance that dies leaks none for
   longer than the lease. */
static void renew_leases(sd_timer *t) {
  sd_worker *w =
      (sd_worker *)(void *)((char *)t - offsetof(sd_worker, lease_renew));
  sd_conn_hold_all(&w->sessions);
  sd_timer_set(w->loop, t, sd_loop_now(w->loop) + w->lease_every);
}

static void signal_io(sd_handler *h, uint32_t ev) {
  sd_worker *w = (sd_worker *)(void *)((char *)h - offsetof(sd_worker, sigh));
  (void)ev;
  struct signalfd_siginfo si;
  while (read(w->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    switch (si.ssi_signo) {
    case SIGHUP:
      reload(w);
      break;
    case SIGUSR1:
      sd_log_reopen();
      break;
    case SIGUSR2:
      sd_conn_hold_all(&w->sessions);
      break;
    case SIGTERM:
    case SIGINT:
      start_drain(w);
      break;
    default:
      break;
    }
  }
}

static void metrics_names(void *arg, const char *const **names, size_t *n) {
  sd_worker *w = arg;
  *names = w->gen->server_names;
  *n = w->gen->cfg->nupstream < SD_MAX_SERVERS ? w->gen->cfg->nupstream
                                               : SD_MAX_SERVERS;
}

static void before_sleep(void *arg) {
  sd_worker *w = arg;
  /* DNS retransmit/timeout deadlines of every generation with queries. */
  for (sd_gen *g = w->gens; g; g = g->next) {
    if (g->dns == NULL || sd_dns_pending(g->dns) == 0) {
      if (g->dns)
        sd_timer_stop(w->loop, &g->dns_timer);
      continue;
    }
    int ms = sd_dns_next_timeout_ms(g->dns, 1000);
    if (ms < 0)
      ms = 1000;
    sd_timer_set(w->loop, &g->dns_timer,
                 sd_loop_now(w->loop) + (uint64_t)ms * SL_MSEC);
  }
  sd_gauge_set(&sd_m->pool_bytes[w->index], w->budget.allocated);
}

int sd_worker_run(const char *config_path, sd_config *cfg, uint32_t index,
                  int metrics_fd, sd_state *state, sd_guards *guards) {
  sd_worker w;
  memset(&w, 0, sizeof w);
  w.guards = guards;
  w.budget.cap = (size_t)cfg->pool_memory;
  w.index = index % SD_MAX_WORKERS;
  w.config_path = config_path;
  w.metrics_fd = metrics_fd;
  w.sigfd = -1;
  sd_timer_init(&w.accept_pause, resume_accepting);
  if (getrandom(&w.sessions.seed, sizeof w.sessions.seed, 0) !=
      (ssize_t)sizeof w.sessions.seed)
    w.sessions.seed = (uint64_t)(unsigned)getpid() * 0x2545f4914f6cdd1dull;
  apply_logging(cfg);
  w.loop = sd_loop_new();
  if (w.loop == NULL) {
    sd_log(SD_LOG_ERR, "epoll: %s", strerror(errno));
    return 1;
  }
  sd_loop_set_before_sleep(w.loop, before_sleep, &w);
  /* What generations and sessions use of this worker (sd_gen.h, sd_conn.h). */
  w.sessions.gen_host.loop = w.loop;
  w.sessions.gen_host.gens = &w.gens;
  w.sessions.gen_host.budget = &w.budget;
  w.sessions.gen_host.stop = &w.stop;
  w.sessions.loop = w.loop;
  w.sessions.index = w.index;
  w.sessions.state = state;
  sd_timer_init(&w.lease_renew, renew_leases);
  if (sd_state_attach(state, w.loop, w.index, w.sessions.seed) != 0) {
    sd_log(SD_LOG_ERR, "the shared state cannot be used by worker %u", w.index);
    sd_loop_free(w.loop);
    return 1;
  }
  if (cfg->state_backend == 1 && cfg->redis_lease) {
    w.lease_every = cfg->redis_lease / 3;
    sd_timer_set(w.loop, &w.lease_renew, sd_loop_now(w.loop) + w.lease_every);
  }
  w.sessions.lingers.loop = w.loop;
  w.sessions.lingers.stop = &w.stop;
  char err[1024];
  w.gen = sd_gen_new(&w.sessions.gen_host, cfg, err, sizeof err);
  if (w.gen == NULL) {
    sd_log(SD_LOG_ERR, "%s", err);
    sd_loop_free(w.loop);
    return 2;
  }
  if (sync_listeners(&w, cfg, err, sizeof err) != 0) {
    sd_log(SD_LOG_ERR, "%s", err);
    sd_gen_unref(w.gen);
    sd_loop_free(w.loop);
    return 1;
  }
  w.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, NULL);
  w.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  w.sigh.cb = signal_io;
  sd_loop_add(w.loop, w.sigfd, EPOLLIN, &w.sigh);
  if (metrics_fd >= 0)
    w.mh = sd_metrics_http_new(w.loop, metrics_fd, metrics_names, &w);
  if (w.index == 0 && !w.gen->ups->interval)
    for (size_t i = 0; i < cfg->nupstream && i < SD_MAX_SERVERS; i++)
      sd_gauge_set(&sd_m->srv_up[i], 1);
  sd_upstreams_start_checks(w.gen->ups, w.index == 0);
  sd_log(SD_LOG_INFO, "worker %u ready: %zu listeners, %zu upstreams", w.index,
         w.nls, cfg->nupstream);

  int status = 0;
  for (;;) {
    if (sd_loop_once(w.loop, w.draining ? 100 : -1) < 0) {
      sd_log(SD_LOG_ERR, "epoll_wait: %s", strerror(errno));
      status = 1;
      break;
    }
    if (w.draining) {
      if (w.sessions.n == 0)
        break;
      if (sd_loop_now(w.loop) >= w.drain_deadline) {
        sd_log(SD_LOG_WARN, "drain deadline passed: closing %u sessions",
               w.sessions.n);
        while (w.sessions.head)
          sd_conn_abort(w.sessions.head, "shutdown");
        break;
      }
    }
  }
  w.stop = 1;
  sd_timer_stop(w.loop, &w.accept_pause);
  sd_metrics_http_free(w.mh);
  close_listeners(&w);
  sd_linger_free_all(&w.sessions.lingers);
  sd_conn_pending_free_all(&w.sessions);
  sd_timer_stop(w.loop, &w.lease_renew);
  sd_state_attach(state, NULL, w.index, 0); /* detach before the loop goes */
  sd_upstreams_stop_checks(w.gen->ups);
  sd_gen_unref(w.gen);
  if (w.spare_fd >= 0)
    close(w.spare_fd);
  if (w.sigfd >= 0)
    close(w.sigfd);
  sd_loop_free(w.loop);
  sd_log(SD_LOG_INFO, "worker %u stopped", w.index);
  return status;
}
