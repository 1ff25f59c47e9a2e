/*
 * sd_main.c: sluiced's command line, and the master process that starts one
 * worker per core (each with its own SO_REUSEPORT listeners), forwards
 * signals to them and restarts a worker that dies.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sd_config.h"
#include "sd_daemon.h"
#include "sd_listen.h"
#include "sd_log.h"
#include "sd_metrics.h"
#include "sd_privs.h"
#include "sd_state.h"
#include "sd_worker.h"

#define SLUICED_VERSION "0.1.0"

static void usage(FILE *f) {
  fprintf(
      f,
      "Usage: sluiced [-c FILE] [options]\n"
      "\n"
      "sluiced is an SMTP proxy: it accepts SMTP (plain with STARTTLS, or "
      "implicit\n"
      "TLS), screens clients (pregreet, DNSBL/DNSWL scores, per-IP limits, "
      "tarpits)\n"
      "and relays each session to one of its upstream servers, owning the "
      "SMTP\n"
      "framing so that smuggling and STARTTLS injection never reach them.\n"
      "\n"
      "Options:\n"
      "  -c, --config FILE   configuration file (default /etc/sluiced.conf)\n"
      "  -t, --check-config  parse the configuration, check its files, load "
      "its\n"
      "                      certificates, and exit: 0 if valid, 2 with\n"
      "                      \"file:line: key: message\" if not\n"
      "  --print-config      print the effective configuration (every key) and "
      "exit\n"
      "  -n                  with --print-config (or alone): only the settings "
      "the\n"
      "                      file changes from their defaults, like postconf "
      "-n\n"
      "  --print-defaults    print every key with its default value and exit\n"
      "  -w, --workers N     worker processes (overrides \"workers\"; 0 = one "
      "per core)\n"
      "  -h, --help          this text\n"
      "  -V, --version       the version\n"
      "\n"
      "Minimal configuration (everything else has a default):\n"
      "  listen   = 127.0.0.1:2525\n"
      "  upstream = 127.0.0.1:2526\n"
      "See sluiced.conf.example for every key, its default and what it does.\n"
      "\n"
      "Signals:\n"
      "  SIGHUP    reload the configuration; live sessions keep the old one\n"
      "  SIGTERM   stop accepting, let sessions finish (drain_timeout), exit\n"
      "  SIGINT    same as SIGTERM\n"
      "  SIGUSR1   reopen log_file (after rotation)\n"
      "\n"
      "Service: with \"user\" (and \"group\") sluiced binds as root, then "
      "drops to\n"
      "that user before forking workers; \"pid_file\" is written after the "
      "drop.\n"
      "\n"
      "Logs: one line per session (logfmt or JSON: log_format) on stderr or\n"
      "log_file.  Metrics: OpenMetrics text at "
      "http://<metrics_listen>/metrics.\n"
      "Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a bad\n"
      "configuration or command line.\n");
}

static volatile sig_atomic_t got_sig[65];
static void on_signal(int s) {
  if (s > 0 && s < 65)
    got_sig[s] = 1;
}

static int open_metrics(const sd_config *cfg) {
  if (cfg->metrics_listen == NULL)
    return -1;
  int fd = socket(cfg->metrics_addr.ss.ss_family,
                  SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)&cfg->metrics_addr.ss,
           cfg->metrics_addr.len) != 0 ||
      listen(fd, 64) != 0) {
    sd_log(SD_LOG_ERR, "metrics_listen %s: %s", cfg->metrics_listen,
           strerror(errno));
    close(fd);
    return -2;
  }
  return fd;
}

static pid_t spawn(const char *path, sd_config *cfg, uint32_t index,
                   int metrics_fd, sd_state *state) {
  pid_t pid = fork();
  if (pid != 0)
    return pid;
  /* A worker must not outlive its master. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  sd_privs_select(
      index); /* its own pre-bound sockets, if the master bound them */
  sd_proctitle_set("sluiced: worker %u", index);
  signal(SIGHUP, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  /* HUP, TERM, INT and USR1 stay blocked (as in the master) until the
     worker reads them from its signalfd: one sent while it is starting is
     taken then, instead of killing it. */
  sigset_t keep;
  sigemptyset(&keep);
  sigaddset(&keep, SIGHUP);
  sigaddset(&keep, SIGTERM);
  sigaddset(&keep, SIGINT);
  sigaddset(&keep, SIGUSR1);
  sigaddset(&keep, SIGUSR2);
  sigprocmask(SIG_SETMASK, &keep, NULL);
  _exit(sd_worker_run(path, cfg, index, metrics_fd, state, NULL));
}

/* Restart policy.  A worker that dies within QUICK_DEATH of its start is
   restarted after a delay that doubles with each such death in a row (1 s,
   2 s, 4 s ... up to 30 s); after MAX_QUICK_DEATHS of them the master
   gives up and stops with an error, so a worker that can never run (an
   address it cannot bind, a descriptor limit) does not loop forever. */
#define QUICK_DEATH_S 10
#define MAX_QUICK_DEATHS 5
#define BACKOFF_MAX_MS 30000

typedef struct worker_slot {
  pid_t pid;
  uint64_t started_ms, restart_at_ms; /* restart_at: 0 = none pending */
  uint32_t quick_deaths;
} worker_slot;

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void describe_status(int st, char *buf, size_t len) {
  if (WIFEXITED(st))
    snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    snprintf(buf, len, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
  else
    snprintf(buf, len, "status %d", st);
}

/* The master checks a new file once, as --check-config does (certificates,
   DNS setup), then the ports, then the shared state, and only then tells
   the workers: so a reload counts once, and a refused one is counted. */
static sd_config *master_reload(const char *path, sd_config *cfg,
                                sd_guards *guards, sd_state *state) {
  char err[1024];
  sd_config *nc = NULL;
  sd_gen *g = NULL;
  if (sd_config_load(path, &nc, err, sizeof err) != 0 ||
      (g = sd_gen_new(NULL, nc, err, sizeof err)) == NULL ||
      sd_privs_check_reload(cfg, nc, err, sizeof err) != 0 ||
      sd_guards_sync(guards, nc, err, sizeof err) != 0) {
    sd_gen_unref(g);
    sd_config_unref(nc);
    sd_count(SD_C_RELOAD_FAILURES, 1);
    sd_log(SD_LOG_ERR, "reload refused, keeping the running config: %s", err);
    return NULL;
  }
  sd_gen_unref(g);
  sd_privs_sync(nc); /* no pre-bound socket of a dropped listener stays open */
  /* The master's own lines follow the new log settings too. */
  if (sd_log_setup(nc->log_file, nc->log_level, nc->log_format) != 0)
    sd_log(SD_LOG_ERR, "log_file %s: %s", nc->log_file, strerror(errno));
  if (sd_state_configure(state, &nc->ratelim, err, sizeof err) != 0)
    sd_log(SD_LOG_WARN, "reload: %s", err);
  if (sd_config_state_differs(cfg, nc))
    sd_log(
        SD_LOG_WARN,
        "reload: state_backend, state_entries and redis* settings take effect "
        "at the next restart");
  sd_count(SD_C_RELOADS, 1);
  sd_log(SD_LOG_INFO, "reload: %s checked, telling the workers", path);
  sd_config_unref(cfg);
  return nc;
}

static void state_config(const sd_config *cfg, sd_state_config *sc) {
  *sc = (sd_state_config){
      .kv_entries = cfg->state_entries,
      .redis = cfg->redis,
      .redis_timeout = cfg->redis_timeout,
      .redis_prefix = cfg->redis_key_prefix ? cfg->redis_key_prefix : "",
      .lease_s = (uint32_t)(cfg->redis_lease / SL_SEC),
      .username = cfg->redis_username,
      .password = cfg->redis_password,
      .password_file = cfg->redis_password_file,
      .tls = cfg->redis_tls,
      .tls_ca = cfg->redis_tls_ca,
      .tls_cert = cfg->redis_tls_cert,
      .tls_key = cfg->redis_tls_key,
      .tls_name = cfg->redis_tls_name};
}

static int master(const char *path, sd_config *cfg, uint32_t nworkers,
                  int metrics_fd, sd_state *state, sd_guards *guards) {
  worker_slot *ws = calloc(nworkers, sizeof *ws);
  if (ws == NULL)
    return 1;
  sd_proctitle_set("sluiced: master");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGCHLD, &sa, NULL);
  /* Signals are taken only inside ppoll(), so none is lost between a check
     of got_sig and the wait. */
  sigset_t block, waitmask;
  sigemptyset(&block);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGUSR1);
  sigaddset(&block, SIGCHLD);
  sigprocmask(SIG_BLOCK, &block, &waitmask);
  sigdelset(&waitmask, SIGHUP);
  sigdelset(&waitmask, SIGTERM);
  sigdelset(&waitmask, SIGINT);
  sigdelset(&waitmask, SIGUSR1);
  sigdelset(&waitmask, SIGCHLD);
  for (uint32_t i = 0; i < nworkers; i++) {
    ws[i].pid = spawn(path, cfg, i, metrics_fd, state);
    ws[i].started_ms = mono_ms();
  }
  sd_log(SD_LOG_INFO, "sluiced %s master: %u workers", SLUICED_VERSION,
         nworkers);
  int stopping = 0, status = 0;
  for (;;) {
    uint64_t now = mono_ms(), next = 0;
    for (uint32_t i = 0; i < nworkers && !stopping; i++) {
      if (ws[i].restart_at_ms == 0)
        continue;
      if (ws[i].restart_at_ms <= now) {
        ws[i].restart_at_ms = 0;
        ws[i].pid = spawn(path, cfg, i, metrics_fd, state);
        ws[i].started_ms = now;
      } else if (next == 0 || ws[i].restart_at_ms < next) {
        next = ws[i].restart_at_ms;
      }
    }
    struct timespec ts = {0, 0};
    if (next) {
      ts.tv_sec = (time_t)((next - now) / 1000u);
      ts.tv_nsec = (long)((next - now) % 1000u) * 1000000L;
    }
    ppoll(NULL, 0, next ? &ts : NULL, &waitmask);
    if (got_sig[SIGHUP] || got_sig[SIGUSR1]) {
      int s = got_sig[SIGHUP] ? SIGHUP : SIGUSR1;
      got_sig[SIGHUP] = got_sig[SIGUSR1] = 0;
      if (s == SIGUSR1)
        sd_log_reopen();
      if (s == SIGHUP) {
        sd_config *nc = master_reload(path, cfg, guards, state);
        if (nc == NULL)
          continue;
        cfg = nc; /* new workers (restarts) start from it */
      }
      for (uint32_t i = 0; i < nworkers; i++)
        if (ws[i].pid > 0)
          kill(ws[i].pid, s);
    }
    if ((got_sig[SIGTERM] || got_sig[SIGINT]) && !stopping) {
      stopping = 1;
      sd_privs_close_all(); /* new clients are refused while workers drain */
      sd_privs_close_all(); /* new clients are refused while workers drain */
      for (uint32_t i = 0; i < nworkers; i++)
        if (ws[i].pid > 0)
          kill(ws[i].pid, SIGTERM);
    }
    got_sig[SIGTERM] = got_sig[SIGINT] = 0;
    if (got_sig[SIGCHLD]) {
      got_sig[SIGCHLD] = 0;
      int st;
      pid_t pid;
      while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (uint32_t i = 0; i < nworkers; i++) {
          if (ws[i].pid != pid)
            continue;
          ws[i].pid = 0;
          if (stopping)
            break;
          char how[96];
          describe_status(st, how, sizeof how);
          if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            /* Its live sessions were never released from the shared
               admission table: forget every live count and have the
               survivors count theirs again.  Until they have (a few ms),
               the counts are low, never stuck high. */
            sd_state_recount(state);
            for (uint32_t j = 0; j < nworkers; j++)
              if (ws[j].pid > 0)
                kill(ws[j].pid, SIGUSR2);
          }
          if (WIFEXITED(st) && WEXITSTATUS(st) == 2) {
            sd_log(SD_LOG_ERR, "worker %u cannot start (%s); stopping", i, how);
            status = 1;
            stopping = 1;
          } else if (mono_ms() - ws[i].started_ms < QUICK_DEATH_S * 1000u &&
                     ++ws[i].quick_deaths >= MAX_QUICK_DEATHS) {
            sd_log(SD_LOG_ERR,
                   "worker %u died %u times in a row within %d s of starting "
                   "(last: %s); "
                   "giving up and stopping",
                   i, ws[i].quick_deaths, QUICK_DEATH_S, how);
            status = 1;
            stopping = 1;
          } else {
            if (mono_ms() - ws[i].started_ms >= QUICK_DEATH_S * 1000u)
              ws[i].quick_deaths = 0;
            uint64_t delay =
                ws[i].quick_deaths ? 1000u << (ws[i].quick_deaths - 1) : 0;
            if (delay > BACKOFF_MAX_MS)
              delay = BACKOFF_MAX_MS;
            sd_log(SD_LOG_ERR,
                   "worker %u (pid %d) died (%s); restarting in %llu ms", i,
                   (int)pid, how, (unsigned long long)delay);
            ws[i].restart_at_ms = mono_ms() + (delay ? delay : 1);
          }
          if (stopping)
            for (uint32_t j = 0; j < nworkers; j++)
              if (ws[j].pid > 0)
                kill(ws[j].pid, SIGTERM);
          break;
        }
      }
    }
    if (stopping) {
      int alive = 0;
      for (uint32_t i = 0; i < nworkers; i++)
        if (ws[i].pid > 0)
          alive = 1;
      if (!alive)
        break;
    }
  }
  free(ws);
  sd_config_unref(cfg);
  sd_log(SD_LOG_INFO, "sluiced stopped");
  return status;
}

int main(int argc, char **argv) {
  sd_proctitle_init(argc, argv); /* argv[i] now point at copies */
  const char *path = "/etc/sluiced.conf";
  int check = 0, print_cfg = 0, print_defaults = 0, changed_only = 0;
  long workers_override = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc)
      path = argv[++i];
    else if (!strncmp(a, "--config=", 9))
      path = a + 9;
    else if (!strcmp(a, "-t") || !strcmp(a, "--check-config"))
      check = 1;
    else if (!strcmp(a, "--print-config"))
      print_cfg = 1;
    else if (!strcmp(a, "-n") || !strcmp(a, "--non-default"))
      print_cfg = changed_only = 1;
    else if (!strcmp(a, "--print-defaults"))
      print_defaults = 1;
    else if ((!strcmp(a, "-w") || !strcmp(a, "--workers")) && i + 1 < argc) {
      char *end;
      workers_override = strtol(argv[++i], &end, 10);
      if (*end || workers_override < 0 || workers_override > SD_MAX_WORKERS) {
        fprintf(stderr, "sluiced: --workers takes 0..%d\n", SD_MAX_WORKERS);
        return 2;
      }
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
      printf("sluiced %s\n", SLUICED_VERSION);
      return 0;
    } else {
      fprintf(stderr, "sluiced: unknown argument \"%s\" (try --help)\n", a);
      return 2;
    }
  }
  if (print_defaults) {
    sd_config *d = sd_config_defaults();
    if (d == NULL)
      return 1;
    sd_config_dump(d, stdout);
    sd_config_unref(d);
    return 0;
  }
  char err[1024];
  sd_config *cfg = NULL;
  if (sd_config_load(path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "sluiced: %s\n", err);
    return 2;
  }
  if (check) {
    /* Loading the certificates and the DNS setup is part of "valid". */
    sd_gen *g = sd_gen_new(NULL, cfg, err, sizeof err);
    if (g == NULL) {
      fprintf(stderr, "sluiced: %s\n", err);
      sd_config_unref(cfg);
      return 2;
    }
    sd_gen_unref(g);
    sd_state_config sc;
    state_config(cfg, &sc);
    if (cfg->state_backend == 1 &&
        sd_state_redis_check(&sc, err, sizeof err) != 0) {
      fprintf(stderr, "sluiced: %s\n", err);
      sd_config_unref(cfg);
      return 2;
    }
    sd_privs pv;
    if (sd_privs_resolve(cfg, &pv, err, sizeof err) != 0) {
      fprintf(stderr, "sluiced: %s\n", err);
      sd_config_unref(cfg);
      return 2;
    }
    const char *rw = sl_config_relay_warning(cfg);
    if (rw)
      fprintf(stderr, "sluiced: %s: warning: %s\n", path, rw);
    printf("%s: configuration OK\n", path);
    sd_config_unref(cfg);
    return 0;
  }
  if (print_cfg) {
    sl_config_dump(cfg, stdout, changed_only ? SL_DUMP_CHANGED : 0);
    sd_config_unref(cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);
  if (sd_metrics_init() == NULL) {
    fprintf(stderr, "sluiced: cannot map the metrics block\n");
    return 1;
  }
  uint32_t nworkers =
      workers_override >= 0 ? (uint32_t)workers_override : cfg->workers;
  if (nworkers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    nworkers = n > 0 ? (uint32_t)n : 1;
  }
  if (nworkers > SD_MAX_WORKERS)
    nworkers = SD_MAX_WORKERS;
  /* Service start (sd_privs.c, sd_daemon.c): refuse a live pidfile before
     binding anything, claim the ports and bind what needs root, drop, then
     open the log and write the pidfile as the user every later reopen runs
     as. */
  sd_privs pv;
  sd_guards guards = {NULL, 0};
  sd_state *state = NULL;
  int rc = 2, metrics_fd = -1;
  if (sd_pidfile_check(cfg->pid_file, err, sizeof err) != 0 ||
      sd_privs_resolve(cfg, &pv, err, sizeof err) != 0)
    goto fail;
  /* The ports first: refusing to share one is a configuration error. */
  if (sd_guards_sync(&guards, cfg, err, sizeof err) != 0)
    goto fail;
  rc = 1;
  /* One state for the machine (and with Redis beyond it), made before the
     workers fork; Redis connections are made per worker after it. */
  sd_state_config sc;
  state_config(cfg, &sc);
  state = cfg->state_backend == 1
              ? sd_state_redis_new(&cfg->ratelim, &sc, err, sizeof err)
              : sd_state_shm_new(&cfg->ratelim, &sc, err, sizeof err);
  if (state == NULL)
    goto fail;
  if (sd_privs_prebind(&pv, cfg, nworkers, err, sizeof err) != 0)
    goto fail;
  metrics_fd = open_metrics(cfg);
  if (metrics_fd == -2) {
    metrics_fd = -1;
    snprintf(err, sizeof err, "metrics_listen %s: cannot listen",
             cfg->metrics_listen);
    goto fail;
  }
  if (sd_privs_drop(&pv, err, sizeof err) != 0)
    goto fail;
  rc = 2;
  /* SIGHUP re-reads the file as this user: fail now, not at the reload. */
  if (pv.drop && access(path, R_OK) != 0) {
    snprintf(err, sizeof err,
             "%s: not readable by user %s (%s): reloads would fail", path,
             pv.user, strerror(errno));
    goto fail;
  }
  if (sd_log_setup(cfg->log_file, cfg->log_level, cfg->log_format) != 0) {
    snprintf(err, sizeof err, "log_file %s: %s", cfg->log_file,
             strerror(errno));
    goto fail;
  }
  if (sd_pidfile_write(cfg->pid_file, err, sizeof err) != 0)
    goto fail;
  const char *relay_warning = sl_config_relay_warning(cfg);
  if (relay_warning)
    sd_log(SD_LOG_WARN, "%s", relay_warning);
  if (pv.drop)
    sd_log(SD_LOG_INFO, "running as user %s (uid %u, gid %u)", pv.user,
           (unsigned)pv.uid, (unsigned)pv.gid);
  if (nworkers == 1) {
    /* One worker: no master process, so the pid a supervisor sees is the
       one that holds the connections. */
    sd_proctitle_set("sluiced: worker 0");
    rc = sd_worker_run(path, cfg, 0, metrics_fd, state, &guards);
    sd_config_unref(cfg);
  } else {
    rc = master(path, cfg, nworkers, metrics_fd, state, &guards);
  }
  if (metrics_fd >= 0)
    close(metrics_fd);
  sd_guards_close(&guards);
  sd_state_free(state);
  sd_pidfile_remove();
  return rc;
fail:
  fprintf(stderr, "sluiced: %s\n", err);
  sd_privs_close_all();
  sd_guards_close(&guards);
  if (state)
    sd_state_free(state);
  if (metrics_fd >= 0)
    close(metrics_fd);
  sd_config_unref(cfg);
  return rc;
}
