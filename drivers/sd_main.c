/*
 * sd_main.c: sluiced's command line, and the master process that starts one
 * worker per core (each with its own SO_REUSEPORT listeners), forwards
 * signals to them and restarts a worker that dies.
 */
#include <errno.h>
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
#include "sd_log.h"
#include "sd_metrics.h"
#include "sd_worker.h"

#define SLUICED_VERSION "0.1.0"

static void usage(FILE *f) {
  fprintf(f,
"Usage: sluiced [-c FILE] [options]\n"
"\n"
"sluiced is an SMTP proxy: it accepts SMTP (plain with STARTTLS, or implicit\n"
"TLS), screens clients (pregreet, DNSBL/DNSWL scores, per-IP limits, tarpits)\n"
"and relays each session to one of its upstream servers, owning the SMTP\n"
"framing so that smuggling and STARTTLS injection never reach them.\n"
"\n"
"Options:\n"
"  -c, --config FILE   configuration file (default /etc/sluiced.conf)\n"
"  -t, --check-config  parse the configuration, check its files, load its\n"
"                      certificates, and exit: 0 if valid, 2 with\n"
"                      \"file:line: key: message\" if not\n"
"  --print-config      print the effective configuration (every key) and exit\n"
"  -n                  with --print-config (or alone): only the settings the\n"
"                      file changes from their defaults, like postconf -n\n"
"  --print-defaults    print every key with its default value and exit\n"
"  -w, --workers N     worker processes (overrides \"workers\"; 0 = one per core)\n"
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
"Logs: one line per session (logfmt or JSON: log_format) on stderr or\n"
"log_file.  Metrics: OpenMetrics text at http://<metrics_listen>/metrics.\n"
"Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a bad\n"
"configuration or command line.\n");
}

static volatile sig_atomic_t got_sig[65];
static void on_signal(int s) {
  if (s > 0 && s < 65) got_sig[s] = 1;
}

static int open_metrics(const sd_config *cfg) {
  if (cfg->metrics_listen == NULL) return -1;
  int fd = socket(cfg->metrics_addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)&cfg->metrics_addr.ss, cfg->metrics_addr.len) != 0 ||
      listen(fd, 64) != 0) {
    sd_log(SD_LOG_ERR, "metrics_listen %s: %s", cfg->metrics_listen, strerror(errno));
    close(fd);
    return -2;
  }
  return fd;
}

static pid_t spawn(const char *path, sd_config *cfg, uint32_t index, int metrics_fd) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  /* A worker must not outlive its master. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  sd_worker_counts_reloads = 0; /* the master counts each reload once */
  signal(SIGHUP, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  _exit(sd_worker_run(path, cfg, index, metrics_fd));
}

static int master(const char *path, sd_config *cfg, uint32_t nworkers, int metrics_fd) {
  pid_t *pids = calloc(nworkers, sizeof *pids);
  time_t *started = calloc(nworkers, sizeof *started);
  if (pids == NULL || started == NULL) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGCHLD, &sa, NULL);
  for (uint32_t i = 0; i < nworkers; i++) {
    pids[i] = spawn(path, cfg, i, metrics_fd);
    started[i] = time(NULL);
  }
  sd_log(SD_LOG_INFO, "sluiced %s master: %u workers", SLUICED_VERSION, nworkers);
  int stopping = 0, status = 0;
  for (;;) {
    pause();
    if (got_sig[SIGHUP] || got_sig[SIGUSR1]) {
      int s = got_sig[SIGHUP] ? SIGHUP : SIGUSR1;
      got_sig[SIGHUP] = got_sig[SIGUSR1] = 0;
      if (s == SIGHUP) {
        /* Check here once, as --check-config does (the file, its
           certificates, the resolver), so a bad file gives one clear
           message and one count; each worker still loads it itself. */
        char err[1024];
        sd_config *nc = NULL;
        sd_gen *g = NULL;
        if (sd_config_load(path, &nc, err, sizeof err) != 0 ||
            (g = sd_gen_new(NULL, nc, err, sizeof err)) == NULL) {
          sd_config_unref(nc);
          sd_count(SD_C_RELOAD_FAILURES, 1);
          sd_log(SD_LOG_ERR, "reload refused: %s", err);
          continue;
        }
        sd_gen_unref(g);
        sd_config_unref(cfg);
        cfg = nc; /* new workers (restarts) start from it */
        /* The master's own lines follow the new log settings too. */
        if (sd_log_setup(cfg->log_file, cfg->log_level, cfg->log_format) != 0)
          sd_log(SD_LOG_ERR, "log_file %s: %s", cfg->log_file, strerror(errno));
        sd_count(SD_C_RELOADS, 1);
      }
      for (uint32_t i = 0; i < nworkers; i++)
        if (pids[i] > 0) kill(pids[i], s);
    }
    if ((got_sig[SIGTERM] || got_sig[SIGINT]) && !stopping) {
      stopping = 1;
      for (uint32_t i = 0; i < nworkers; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    }
    got_sig[SIGTERM] = got_sig[SIGINT] = 0;
    if (got_sig[SIGCHLD]) {
      got_sig[SIGCHLD] = 0;
      int st;
      pid_t pid;
      while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (uint32_t i = 0; i < nworkers; i++) {
          if (pids[i] != pid) continue;
          pids[i] = 0;
          if (stopping) break;
          if (WIFEXITED(st) && WEXITSTATUS(st) == 2) {
            sd_log(SD_LOG_ERR, "worker %u cannot start; stopping", i);
            status = 1;
            stopping = 1;
            for (uint32_t j = 0; j < nworkers; j++)
              if (pids[j] > 0) kill(pids[j], SIGTERM);
            break;
          }
          sd_log(SD_LOG_ERR, "worker %u (pid %d) died (status %d); restarting", i, (int)pid, st);
          /* Crash loops are throttled to one restart per second. */
          if (time(NULL) - started[i] < 1) sleep(1);
          pids[i] = spawn(path, cfg, i, metrics_fd);
          started[i] = time(NULL);
        }
      }
    }
    if (stopping) {
      int alive = 0;
      for (uint32_t i = 0; i < nworkers; i++)
        if (pids[i] > 0) alive = 1;
      if (!alive) break;
    }
  }
  free(pids);
  free(started);
  sd_config_unref(cfg);
  sd_log(SD_LOG_INFO, "sluiced stopped");
  return status;
}

int main(int argc, char **argv) {
  const char *path = "/etc/sluiced.conf";
  int check = 0, print_cfg = 0, print_defaults = 0, changed_only = 0;
  long workers_override = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) path = argv[++i];
    else if (!strncmp(a, "--config=", 9)) path = a + 9;
    else if (!strcmp(a, "-t") || !strcmp(a, "--check-config")) check = 1;
    else if (!strcmp(a, "--print-config")) print_cfg = 1;
    else if (!strcmp(a, "-n") || !strcmp(a, "--non-default")) print_cfg = changed_only = 1;
    else if (!strcmp(a, "--print-defaults")) print_defaults = 1;
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
    if (d == NULL) return 1;
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
    const char *rw = sl_config_relay_warning(cfg);
    if (rw) fprintf(stderr, "sluiced: %s: warning: %s\n", path, rw);
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
  if (sd_log_setup(cfg->log_file, cfg->log_level, cfg->log_format) != 0) {
    fprintf(stderr, "sluiced: log_file %s: %s\n", cfg->log_file, strerror(errno));
    return 2;
  }
  const char *relay_warning = sl_config_relay_warning(cfg);
  if (relay_warning) sd_log(SD_LOG_WARN, "%s", relay_warning);
  uint32_t nworkers = workers_override >= 0 ? (uint32_t)workers_override : cfg->workers;
  if (nworkers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    nworkers = n > 0 ? (uint32_t)n : 1;
  }
  if (nworkers > SD_MAX_WORKERS) nworkers = SD_MAX_WORKERS;
  int metrics_fd = open_metrics(cfg);
  if (metrics_fd == -2) return 1;
  int rc;
  if (nworkers == 1) {
    /* One worker: no master process, so the pid a supervisor sees is the
       one that holds the connections. */
    rc = sd_worker_run(path, cfg, 0, metrics_fd);
    sd_config_unref(cfg);
  } else {
    rc = master(path, cfg, nworkers, metrics_fd);
  }
  if (metrics_fd >= 0) close(metrics_fd);
  return rc;
}
