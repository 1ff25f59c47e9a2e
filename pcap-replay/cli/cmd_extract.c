/*
 * extract and stats: both walk captures through the tracker; extract writes
 * each SMTP session as a transcript, stats prints a line per session.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sp_capture.h"
#include "sp_cli.h"
#include "sp_decode.h"
#include "sp_feed.h"
#include "sp_session.h"
#include "sp_transcript.h"

/* Transcripts are written in pieces of this size so that tens of thousands
 * of concurrent sessions need neither that many open files nor their whole
 * text in memory. */
#define FLUSH_AT (256u << 10)
#define MAX_WARNINGS 5

typedef struct options {
  sp_tracker_config cfg;
  const char *out_dir;
  int write;
  int quiet;
} options;

typedef struct sess_out {
  sp_buf buf;
  char *path;
  int opened;
} sess_out;

typedef struct line {
  uint64_t number;
  char *text;
} line;

typedef struct run {
  const options *o;
  const char *path;
  char stem[256];
  char errmsg[512];
  int failed;
  uint64_t frames, skipped[SP_DECODE_UNSUPPORTED + 1];
  uint64_t bytes[2], gaps, gap_bytes, tls;
  line *lines;
  size_t n_lines, cap_lines;
  unsigned warnings;
} run;

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* "dir/x.pcap" -> "x": the transcripts are named after the capture. */
static void make_stem(const char *path, char *out, size_t cap) {
  snprintf(out, cap, "%s", base_name(path));
  static const char *const exts[] = {".pcapng", ".pcap", ".cap"};
  size_t n = strlen(out);
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    size_t e = strlen(exts[i]);
    if (n > e && !strcmp(out + n - e, exts[i])) {
      out[n - e] = '\0';
      break;
    }
  }
}

static int flush_out(run *r, sess_out *so) {
  if (!so->buf.len)
    return 0;
  FILE *f = fopen(so->path, so->opened ? "ab" : "wb");
  if (!f) {
    snprintf(r->errmsg, sizeof r->errmsg, "%s: cannot write: %s", so->path,
             strerror(errno));
    return -1;
  }
  so->opened = 1;
  size_t w = fwrite(so->buf.data, 1, so->buf.len, f);
  int bad = w != so->buf.len;
  if (fclose(f) != 0)
    bad = 1;
  if (bad) {
    snprintf(r->errmsg, sizeof r->errmsg, "%s: write error: %s", so->path,
             strerror(errno));
    return -1;
  }
  so->buf.len = 0;
  return 0;
}

static int cb_begin(void *ud, sp_session *s) {
  run *r = ud;
  if (!r->o->write)
    return 0;
  sess_out *so = calloc(1, sizeof *so);
  if (!so)
    return -1;
  s->user = so;
  size_t plen = strlen(r->o->out_dir) + strlen(r->stem) + 48;
  so->path = malloc(plen);
  if (!so->path)
    return -1;
  snprintf(so->path, plen, "%s/%s.%" PRIu64 ".transcript", r->o->out_dir,
           r->stem, s->number);
  sp_transcript_header h;
  memset(&h, 0, sizeof h);
  snprintf(h.source, sizeof h.source, "%s", base_name(r->path));
  h.session = s->number;
  sp_endpoint_addr_str(&s->client, h.client_ip, sizeof h.client_ip);
  sp_endpoint_addr_str(&s->server, h.server_ip, sizeof h.server_ip);
  h.client_port = s->client.port;
  h.server_port = s->server.port;
  h.start_sec = s->start_us / 1000000;
  h.start_usec = (uint32_t)(s->start_us % 1000000);
  return sp_transcript_put_header(&so->buf, &h) ? -1 : 0;
}

static int cb_record(void *ud, sp_session *s, const sp_record *rec) {
  run *r = ud;
  sess_out *so = s->user;
  if (!so)
    return 0;
  if (sp_transcript_put_record(&so->buf, rec))
    return -1;
  return so->buf.len >= FLUSH_AT ? flush_out(r, so) : 0;
}

static void end_list(unsigned ends, char *out, size_t cap) {
  size_t n = 0;
  out[0] = '\0';
  for (int e = SP_END_CLIENT_FIN; e <= SP_END_TLS; e++)
    if (ends & (1u << e))
      n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "," : "",
                            sp_end_reason_str((sp_end_reason)e));
}

static int cb_finish(void *ud, sp_session *s) {
  run *r = ud;
  int rc = 0;
  sess_out *so = s->user;
  if (so) {
    rc = flush_out(r, so);
    sp_buf_free(&so->buf);
    free(so->path);
    free(so);
    s->user = NULL;
  }
  r->bytes[0] += s->bytes[0];
  r->bytes[1] += s->bytes[1];
  r->gaps += s->gaps[0] + s->gaps[1];
  r->gap_bytes += s->gap_bytes[0] + s->gap_bytes[1];
  r->tls += s->tls != SP_TLS_NONE;
  if (r->o->write)
    return rc;
  char cip[SP_ADDRSTRLEN], sip[SP_ADDRSTRLEN], ends[96];
  sp_endpoint_addr_str(&s->client, cip, sizeof cip);
  sp_endpoint_addr_str(&s->server, sip, sizeof sip);
  end_list(s->ends, ends, sizeof ends);
  char text[512];
  snprintf(text, sizeof text,
           "%s session %" PRIu64 " client %s %u server %s %u packets %" PRIu64
           "/%" PRIu64 " bytes %" PRIu64 "/%" PRIu64 " gaps %" PRIu64
           " first %s end %s%s%s",
           base_name(r->path), s->number, cip, (unsigned)s->client.port, sip,
           (unsigned)s->server.port, s->packets[0], s->packets[1], s->bytes[0],
           s->bytes[1], s->gaps[0] + s->gaps[1],
           s->first_command[0] ? s->first_command : "-", ends,
           s->tls == SP_TLS_IMPLICIT   ? " tls-mode implicit"
           : s->tls == SP_TLS_STARTTLS ? " tls-mode starttls"
                                       : "",
           s->tunneled ? " tunnel http-connect" : "");
  if (r->n_lines == r->cap_lines) {
    size_t cap = r->cap_lines ? r->cap_lines * 2 : 16;
    line *p = realloc(r->lines, cap * sizeof *p);
    if (!p)
      return -1;
    r->lines = p;
    r->cap_lines = cap;
  }
  r->lines[r->n_lines].number = s->number;
  r->lines[r->n_lines].text = strdup(text);
  if (!r->lines[r->n_lines].text)
    return -1;
  r->n_lines++;
  return rc;
}

static int cmp_line(const void *a, const void *b) {
  const line *x = a, *y = b;
  return x->number < y->number ? -1 : x->number > y->number;
}

static void print_summary(run *r, const sp_tracker_counters *k) {
  char anom[1024];
  size_t n = 0;
  anom[0] = '\0';
#define ANOM(cond, ...)                                                        \
  if ((cond) && n < sizeof anom)                                               \
  n += (size_t)snprintf(anom + n, sizeof anom - n, __VA_ARGS__)
  ANOM(r->skipped[SP_DECODE_FRAGMENT], " fragments=%" PRIu64,
       r->skipped[SP_DECODE_FRAGMENT]);
  ANOM(r->skipped[SP_DECODE_TRUNCATED], " truncated-headers=%" PRIu64,
       r->skipped[SP_DECODE_TRUNCATED]);
  ANOM(r->skipped[SP_DECODE_MALFORMED], " malformed-headers=%" PRIu64,
       r->skipped[SP_DECODE_MALFORMED]);
  ANOM(k->reasm.ooo_segments, " out-of-order=%" PRIu64, k->reasm.ooo_segments);
  ANOM(k->reasm.retrans_bytes, " retransmitted-bytes=%" PRIu64,
       k->reasm.retrans_bytes);
  ANOM(k->reasm.conflict_bytes, " conflicting-bytes=%" PRIu64,
       k->reasm.conflict_bytes);
  ANOM(k->reasm.overflow_gaps, " buffer-overflow-gaps=%" PRIu64,
       k->reasm.overflow_gaps);
  ANOM(k->reasm.trunc_bytes, " snaplen-cut-bytes=%" PRIu64,
       k->reasm.trunc_bytes);
  ANOM(k->reasm.after_end_bytes, " bytes-after-end=%" PRIu64,
       k->reasm.after_end_bytes);
  ANOM(k->late_packets, " late-packets=%" PRIu64, k->late_packets);
#undef ANOM
  printf("%s: %" PRIu64 " sessions, %" PRIu64 " packets, client bytes %" PRIu64
         ", server bytes %" PRIu64 ", gaps %" PRIu64 " (%" PRIu64
         " bytes), tls %" PRIu64 ", anomalies:%s\n",
         base_name(r->path), k->sessions, r->frames, r->bytes[0], r->bytes[1],
         r->gaps, r->gap_bytes, r->tls, n ? anom : " none");
}

/* A frame not fed to the tracker: the first few that are not simply
 * other traffic are warned about. */
static void warn_skip(void *ud, const sp_frame *f, sp_decode_status st) {
  run *r = ud;
  if (st != SP_DECODE_OTHER && !r->o->quiet && r->warnings++ < MAX_WARNINGS)
    fprintf(stderr,
            "sluice-replay: %s: packet %" PRIu64 " at offset %" PRIu64
            ": %s, skipped\n",
            r->path, f->number, f->offset, sp_decode_status_str(st));
}

/* Returns an exit status for this file. */
static int process_file(const options *o, const char *path) {
  run r;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.path = path;
  make_stem(path, r.stem, sizeof r.stem);
  char err[512];
  sp_capture *cap;
  int rc = sp_capture_open(&cap, path, err, sizeof err);
  if (rc) {
    fprintf(stderr, "sluice-replay: %s\n", err);
    return rc == SP_ERR_IO ? SP_EXIT_USAGE : SP_EXIT_INPUT;
  }
  sp_tracker_callbacks cb = {cb_begin, cb_record, cb_finish};
  sp_tracker *t = sp_tracker_new(&o->cfg, &cb, &r);
  if (!t) {
    sp_capture_close(cap);
    fprintf(stderr, "sluice-replay: %s: out of memory\n", path);
    return SP_EXIT_INPUT;
  }
  int status = SP_EXIT_OK, read_error;
  uint64_t packet;
  sp_feed_stats fs;
  memset(&fs, 0, sizeof fs);
  rc = sp_capture_feed(cap, t, &fs, warn_skip, &r, err, sizeof err, &read_error,
                       &packet);
  r.frames = fs.frames;
  memcpy(r.skipped, fs.skipped, sizeof r.skipped);
  if (rc && read_error) {
    /* Keep what the readable part held: a capture cut short is common,
     * but it is still reported and fails the run. */
    fprintf(stderr, "sluice-replay: %s\n", err);
    status = SP_EXIT_INPUT;
  } else if (rc) {
    fprintf(stderr, "sluice-replay: %s: packet %" PRIu64 ": %s%s%s\n", path,
            packet, sp_strerror(rc), r.errmsg[0] ? ": " : "", r.errmsg);
    status = SP_EXIT_INPUT;
  }
  /* Sessions still open get their final records either way. */
  int frc = sp_tracker_finish(t);
  if (frc && status == SP_EXIT_OK) {
    fprintf(stderr, "sluice-replay: %s: %s%s%s\n", path, sp_strerror(frc),
            r.errmsg[0] ? ": " : "", r.errmsg);
    status = SP_EXIT_INPUT;
  }
  if (!o->write) {
    if (r.n_lines)
      qsort(r.lines, r.n_lines, sizeof *r.lines, cmp_line);
    for (size_t i = 0; i < r.n_lines; i++)
      printf("%s\n", r.lines[i].text);
  }
  for (size_t i = 0; i < r.n_lines; i++)
    free(r.lines[i].text);
  free(r.lines);
  if (!o->quiet)
    print_summary(&r, sp_tracker_get_counters(t));
  sp_tracker_free(t);
  sp_capture_close(cap);
  return status;
}

static void help(int write, FILE *f) {
  if (write)
    fprintf(
        f,
        "usage: sluice-replay extract [OPTIONS] FILE...\n"
        "\n"
        "Writes each SMTP session of each capture (pcap or pcapng) as\n"
        "OUT/<capture name without .pcap/.pcapng/.cap>.<n>.transcript,\n"
        "n counting from 1 per capture (format: pcap-replay/TRANSCRIPT.md),\n"
        "and prints one summary line per capture.\n");
  else
    fprintf(f,
            "usage: sluice-replay stats [OPTIONS] FILE...\n"
            "\n"
            "Prints one line per SMTP session (client, server, packets and\n"
            "bytes client/server, gaps, first client command, how it ended),\n"
            "then the capture's summary line.  Writes no files.\n");
  fprintf(f,
          "\n"
          "Options:\n"
          "  --ports LIST    SMTP server ports, comma-separated\n"
          "                  (default 25,465,587,2525); sessions on other\n"
          "                  ports are found by content (\"220\" greeting,\n"
          "                  HELO/EHLO)\n"
          "%s"
          "  --max-ooo BYTES out-of-order bytes buffered per direction before\n"
          "                  a hole is given up as a gap (default 1048576)\n"
          "  --idle SECONDS  end a session idle this long in capture time\n"
          "                  (E capture-end); 0 = never (default 3600)\n"
          "  -q, --quiet     no summary line, no per-packet warnings\n"
          "  -h, --help      this text\n"
          "\n"
          "Exit status: 0 success; 1 malformed, truncated or unsupported\n"
          "capture, or a write error (message names file, packet, offset);\n"
          "2 usage error or input file missing.\n",
          write ? "  --out DIR       directory for transcripts (default .;\n"
                  "                  created if missing)\n"
                : "");
}

/* mkdir -p: researchers point --out at fresh nested directories. */
static int make_dirs(const char *dir) {
  char buf[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0')
      continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return -1;
    buf[i] = saved;
  }
  struct stat st;
  if (stat(dir, &st) != 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

static int parse_size(const char *s, uint64_t max, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v > max)
    return -1;
  *out = v;
  return 0;
}

static int run_command(int argc, char **argv, int write) {
  options o;
  memset(&o, 0, sizeof o);
  sp_tracker_config_default(&o.cfg);
  o.out_dir = ".";
  o.write = write;
  static const struct option longopts[] = {
      {"ports", required_argument, NULL, 'p'},
      {"out", required_argument, NULL, 'o'},
      {"max-ooo", required_argument, NULL, 'm'},
      {"idle", required_argument, NULL, 'i'},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *cmd = write ? "extract" : "stats";
  optind = 1;
  int ch;
  uint64_t v;
  while ((ch = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
    switch (ch) {
    case 'p':
      if (sp_tracker_config_ports(&o.cfg, optarg)) {
        fprintf(stderr,
                "sluice-replay %s: bad --ports '%s' (want e.g. 25,587)\n", cmd,
                optarg);
        return SP_EXIT_USAGE;
      }
      break;
    case 'o':
      if (!write)
        goto bad;
      o.out_dir = optarg;
      break;
    case 'm':
      if (parse_size(optarg, (uint64_t)1 << 40, &v)) {
        fprintf(stderr, "sluice-replay %s: bad --max-ooo '%s'\n", cmd, optarg);
        return SP_EXIT_USAGE;
      }
      o.cfg.max_ooo = (size_t)v;
      break;
    case 'i':
      if (parse_size(optarg, (uint64_t)1 << 32, &v)) {
        fprintf(stderr, "sluice-replay %s: bad --idle '%s'\n", cmd, optarg);
        return SP_EXIT_USAGE;
      }
      o.cfg.idle_timeout_us = (int64_t)v * 1000000;
      break;
    case 'q':
      o.quiet = 1;
      break;
    case 'h':
      help(write, stdout);
      return SP_EXIT_OK;
    default:
    bad:
      help(write, stderr);
      return SP_EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "sluice-replay %s: no capture file given\n\n", cmd);
    help(write, stderr);
    return SP_EXIT_USAGE;
  }
  if (write && make_dirs(o.out_dir) != 0) {
    fprintf(stderr, "sluice-replay %s: cannot create %s: %s\n", cmd, o.out_dir,
            strerror(errno));
    return SP_EXIT_USAGE;
  }
  int status = SP_EXIT_OK;
  for (int i = optind; i < argc; i++) {
    int s = process_file(&o, argv[i]);
    if (s > status)
      status = s;
  }
  fflush(stdout);
  return status;
}

int sp_cmd_extract(int argc, char **argv) { return run_command(argc, argv, 1); }

int sp_cmd_stats(int argc, char **argv) { return run_command(argc, argv, 0); }
