/* sp_script.c: client models from captured sessions; see sp_script.h. */
#include "sp_script.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_capture.h"
#include "sp_feed.h"
#include "sp_session.h"

static const char *const unit_names[SP_U_NKINDS] = {
    "greeting", "helo",    "starttls", "auth", "mail", "rcpt",
    "data",     "message", "bdat",     "quit", "rset", "other"};

const char *sp_unit_name(sp_unit_kind k) {
  return (unsigned)k < SP_U_NKINDS ? unit_names[k] : "other";
}

static int word_is(const uint8_t *p, size_t n, const char *w) {
  size_t wl = strlen(w);
  if (n < wl)
    return 0;
  for (size_t i = 0; i < wl; i++)
    if (toupper(p[i]) != w[i])
      return 0;
  return n == wl || p[wl] == ' ' || p[wl] == '\r' || p[wl] == '\n' ||
         p[wl] == '\t' || p[wl] == ':';
}

sp_unit_kind sp_unit_classify(const uint8_t *p, size_t n) {
  if (word_is(p, n, "EHLO") || word_is(p, n, "HELO") || word_is(p, n, "LHLO"))
    return SP_U_HELO;
  if (word_is(p, n, "STARTTLS"))
    return SP_U_STARTTLS;
  if (word_is(p, n, "AUTH"))
    return SP_U_AUTH;
  if (word_is(p, n, "MAIL"))
    return SP_U_MAIL;
  if (word_is(p, n, "RCPT"))
    return SP_U_RCPT;
  if (word_is(p, n, "DATA"))
    return SP_U_DATA;
  if (word_is(p, n, "BDAT"))
    return SP_U_BDAT;
  if (word_is(p, n, "QUIT"))
    return SP_U_QUIT;
  if (word_is(p, n, "RSET"))
    return SP_U_RSET;
  return SP_U_OTHER;
}

typedef struct trec {
  char type; /* C S E G */
  int64_t t;
  uint64_t off, len; /* C/S: stream offset and length */
  sp_end_reason end;
  sp_side gap_side;
} trec;

typedef struct reply {
  uint64_t off, end;
  uint16_t code;
  int64_t first_us, done_us;
} reply;

#define GROW(arr, n, cap)                                                      \
  do {                                                                         \
    if ((n) == (cap)) {                                                        \
      size_t nc_ = (cap) ? (cap)*2 : 16;                                       \
      void *p_ = realloc((arr), nc_ * sizeof *(arr));                          \
      if (!p_)                                                                 \
        goto nomem;                                                            \
      (arr) = p_;                                                              \
      (cap) = nc_;                                                             \
    }                                                                          \
  } while (0)

/* Time of the record holding stream byte `off` of a side (the first record
 * whose range ends past off). */
static int64_t time_at(const trec *r, size_t nr, char type, uint64_t off) {
  for (size_t i = 0; i < nr; i++)
    if (r[i].type == type && off < r[i].off + r[i].len)
      return r[i].t;
  return nr ? r[nr - 1].t : 0;
}

int sp_script_from_transcript(sp_script *s, const uint8_t *data, size_t len,
                              char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  sp_transcript_reader rd;
  if (sp_transcript_reader_init(&rd, data, len)) {
    snprintf(err, errlen, "%s", rd.err);
    return SP_ERR_MALFORMED;
  }
  snprintf(s->source, sizeof s->source, "%s", rd.hdr.source);
  s->session = rd.hdr.session;
  snprintf(s->client_ip, sizeof s->client_ip, "%s", rd.hdr.client_ip);
  snprintf(s->server_ip, sizeof s->server_ip, "%s", rd.hdr.server_ip);
  s->client_port = rd.hdr.client_port;
  s->server_port = rd.hdr.server_port;
  s->start_us = rd.hdr.start_sec * 1000000 + (int64_t)rd.hdr.start_usec;

  trec *r = NULL;
  size_t nr = 0, capr = 0;
  reply *rp = NULL;
  size_t nrp = 0, caprp = 0;
  size_t capu = 0;
  sp_buf cb = {0}, sb = {0};
  int client_done = 0, server_end = 0;
  s->end = SP_SEND_CAPTURE;
  int64_t end_t = -1;
  sp_record x;
  int rc;
  while ((rc = sp_transcript_next(&rd, &x)) == 1) {
    trec e;
    memset(&e, 0, sizeof e);
    e.type = (char)x.type;
    e.t = (int64_t)x.t_us;
    s->duration_us = e.t;
    if (x.type == SP_REC_CLIENT) {
      if (client_done || !x.len)
        continue;
      e.off = cb.len;
      e.len = x.len;
      if (sp_buf_append(&cb, x.data, x.len))
        goto nomem;
    } else if (x.type == SP_REC_SERVER) {
      if (!x.len)
        continue;
      e.off = sb.len;
      e.len = x.len;
      if (sp_buf_append(&sb, x.data, x.len))
        goto nomem;
    } else if (x.type == SP_REC_GAP) {
      if (x.side == SP_SIDE_CLIENT && !client_done) {
        client_done = 1;
        s->end = SP_SEND_GAP;
        end_t = e.t;
      }
      continue;
    } else {
      e.end = x.end;
      if (x.end == SP_END_SERVER_FIN || x.end == SP_END_SERVER_RST)
        server_end = 1;
      if (!client_done) {
        if (x.end == SP_END_CLIENT_FIN || x.end == SP_END_CLIENT_RST ||
            x.end == SP_END_TLS || x.end == SP_END_CAPTURE) {
          client_done = 1;
          s->end = x.end == SP_END_CLIENT_FIN   ? SP_SEND_FIN
                   : x.end == SP_END_CLIENT_RST ? SP_SEND_RST
                   : x.end == SP_END_TLS        ? SP_SEND_TLS
                                                : SP_SEND_CAPTURE;
          end_t = e.t;
        } else if (x.end == SP_END_SERVER_FIN || x.end == SP_END_SERVER_RST) {
          s->end = SP_SEND_SERVER;
        }
      }
    }
    GROW(r, nr, capr);
    r[nr++] = e;
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s", rd.err);
    free(r);
    sp_buf_free(&cb);
    sp_buf_free(&sb);
    return SP_ERR_MALFORMED;
  }
  if (end_t < 0)
    end_t = s->duration_us;
  s->cdata = cb.data;
  s->clen = cb.len;
  s->sdata = sb.data;
  s->slen = sb.len;
  /* The capture holds the server's side if it sent bytes or closed. */
  s->server_seen = sb.len > 0 || server_end;

  /* Server replies: a final line is "ddd" then SP or the line end. */
  for (uint64_t i = 0, start = 0, rstart = 0; i < s->slen; i++) {
    if (s->sdata[i] != '\n')
      continue;
    const uint8_t *l = s->sdata + start;
    uint64_t ll = i + 1 - start;
    int digits = ll >= 3 && isdigit(l[0]) && isdigit(l[1]) && isdigit(l[2]);
    int final =
        digits && (ll == 3 || l[3] == ' ' || l[3] == '\r' || l[3] == '\n');
    if (final) {
      GROW(rp, nrp, caprp);
      reply *y = &rp[nrp++];
      y->off = rstart;
      y->end = i + 1;
      y->code =
          (uint16_t)((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0'));
      y->first_us = time_at(r, nr, 'S', rstart);
      y->done_us = time_at(r, nr, 'S', i);
      rstart = i + 1;
    }
    start = i + 1;
  }
  s->replies = (uint32_t)nrp;
  s->greet_us = -1;
  if (nrp) {
    s->greet_off = rp[0].off;
    s->greet_len = rp[0].end - rp[0].off;
    s->greet_us = rp[0].first_us;
    s->greet_code = rp[0].code;
  }

  /* Client units. */
  for (uint64_t i = 0; i < s->clen;) {
    const uint8_t *nl = memchr(s->cdata + i, '\n', s->clen - i);
    if (!nl)
      break;
    uint64_t le = (uint64_t)(nl - s->cdata) + 1;
    sp_unit_kind k = sp_unit_classify(s->cdata + i, le - i);
    uint64_t end = le;
    if (k == SP_U_BDAT) {
      char num[32];
      size_t j = 0;
      const uint8_t *p = s->cdata + i + 4;
      while (p < nl && *p == ' ')
        p++;
      while (p < nl && j < sizeof num - 1 && isdigit(*p))
        num[j++] = (char)*p++;
      num[j] = '\0';
      uint64_t n = j ? strtoull(num, NULL, 10) : 0;
      end = le + n > s->clen ? s->clen : le + n;
    }
    GROW(s->u, s->nu, capu);
    sp_unit *u = &s->u[s->nu++];
    memset(u, 0, sizeof *u);
    u->end = end;
    u->kind = (uint8_t)k;
    u->sent_us = time_at(r, nr, 'C', end - 1);
    u->reply_us = -1;
    if (s->nu < nrp) {
      reply *y = &rp[s->nu];
      u->reply_off = y->off;
      u->reply_len = y->end - y->off;
      u->reply_us = y->first_us;
      u->reply_code = y->code;
    }
    i = end;
    if (k == SP_U_DATA && (u->reply_code == 354 || u->reply_code == 0)) {
      /* The body, up to and including CRLF.CRLF (or LF.LF-ish ends are
       * not ends: only the strict terminator, as the relay reads it). */
      uint64_t j = i;
      int found = 0;
      if (j + 3 <= s->clen && !memcmp(s->cdata + j, ".\r\n", 3)) {
        j += 3;
        found = 1;
      }
      while (!found && j + 5 <= s->clen) {
        const uint8_t *q = memchr(s->cdata + j, '\r', s->clen - j);
        if (!q || (uint64_t)(q - s->cdata) + 5 > s->clen)
          break;
        j = (uint64_t)(q - s->cdata);
        if (!memcmp(q, "\r\n.\r\n", 5)) {
          j += 5;
          found = 1;
        } else
          j++;
      }
      if (!found)
        break; /* body cut off: no unit, the bytes are still written */
      GROW(s->u, s->nu, capu);
      sp_unit *m = &s->u[s->nu++];
      memset(m, 0, sizeof *m);
      m->end = j;
      m->kind = SP_U_MESSAGE;
      m->sent_us = time_at(r, nr, 'C', j - 1);
      m->reply_us = -1;
      if (s->nu < nrp) {
        reply *y = &rp[s->nu];
        m->reply_off = y->off;
        m->reply_len = y->end - y->off;
        m->reply_us = y->first_us;
        m->reply_code = y->code;
      }
      i = j;
    }
  }

  /* Writes and the end, anchored to the replies seen before them; the
   * patience observation on the way. */
  size_t capw = 0;
  uint64_t s_seen = 0, c_seen = 0;
  uint32_t done = 0;
  int64_t last_t = 0;
  double maxwait = 0;
  int waiting = 0, ended = 0;
  for (size_t i = 0; i < nr && !ended; i++) {
    trec *e = &r[i];
    while (done < nrp && rp[done].end <= s_seen)
      done++;
    size_t sent_units = 0;
    while (sent_units < s->nu && s->u[sent_units].end <= c_seen)
      sent_units++;
    waiting = done < 1 + sent_units &&
              !(done >= 1 && s->u[done - 1].kind == SP_U_QUIT);
    if (e->type == 'C') {
      GROW(s->w, s->nw, capw);
      sp_cwrite *w = &s->w[s->nw++];
      w->off = e->off;
      w->len = e->len;
      w->after_replies = done;
      w->think_us = e->t - (done ? rp[done - 1].done_us : 0);
      if (w->think_us < 0)
        w->think_us = 0;
      c_seen = e->off + e->len;
      last_t = e->t;
    } else if (e->type == 'S') {
      if (waiting && (double)(e->t - last_t) / 1e6 > maxwait)
        maxwait = (double)(e->t - last_t) / 1e6;
      s_seen = e->off + e->len;
      last_t = e->t;
    } else if (e->type == 'E' && e->t == end_t &&
               (e->end == SP_END_CLIENT_FIN || e->end == SP_END_CLIENT_RST ||
                e->end == SP_END_TLS || e->end == SP_END_CAPTURE)) {
      double w = (double)(e->t - last_t) / 1e6;
      if (waiting &&
          (e->end == SP_END_CLIENT_FIN || e->end == SP_END_CLIENT_RST)) {
        s->gave_up = 1;
        s->wait_s = w;
        s->gave_up_waiting =
            done ? (sp_unit_kind)s->u[done - 1].kind : SP_U_GREETING;
      } else if (waiting && w > maxwait) {
        maxwait = w;
      }
      ended = 1;
    }
  }
  if (!s->gave_up)
    s->wait_s = maxwait;
  s->end_after = done;
  while (s->end_after < nrp && rp[s->end_after].end <= s_seen)
    s->end_after++;
  s->end_think_us = end_t - (s->end_after ? rp[s->end_after - 1].done_us : 0);
  if (s->end_think_us < 0)
    s->end_think_us = 0;
  free(r);
  free(rp);
  return 0;
nomem:
  free(r);
  free(rp);
  sp_buf_free(&cb);
  sp_buf_free(&sb);
  free(s->u);
  free(s->w);
  memset(s, 0, sizeof *s);
  snprintf(err, errlen, "out of memory");
  return SP_ERR_NOMEM;
}

void sp_script_free(sp_script *s) {
  free(s->cdata);
  free(s->sdata);
  free(s->w);
  free(s->u);
  memset(s, 0, sizeof *s);
}

void sp_script_set_free(sp_script_set *set) {
  for (size_t i = 0; i < set->n; i++)
    sp_script_free(&set->v[i]);
  free(set->v);
  memset(set, 0, sizeof *set);
}

static int set_add(sp_script_set *set, const uint8_t *data, size_t len,
                   char *err, size_t errlen) {
  if (set->on_script) {
    sp_script one;
    int rc = sp_script_from_transcript(&one, data, len, err, errlen);
    if (rc)
      return rc;
    rc = set->on_script(set->ud, &one);
    sp_script_free(&one);
    if (rc) {
      snprintf(err, errlen, "%s", sp_strerror(rc));
      return rc;
    }
    set->streamed++;
    return 0;
  }
  if (set->n == set->cap) {
    size_t nc = set->cap ? set->cap * 2 : 64;
    sp_script *p = realloc(set->v, nc * sizeof *p);
    if (!p) {
      snprintf(err, errlen, "out of memory");
      return SP_ERR_NOMEM;
    }
    set->v = p;
    set->cap = nc;
  }
  int rc = sp_script_from_transcript(&set->v[set->n], data, len, err, errlen);
  if (!rc)
    set->n++;
  return rc;
}

/* ---- captures, in-process ---------------------------------------------- */

typedef struct pc_run {
  sp_script_set *set;
  const char *name;
  size_t first; /* first script of this capture in set */
  char err[256];
} pc_run;

static int pc_begin(void *ud, sp_session *s) {
  pc_run *r = ud;
  sp_buf *b = calloc(1, sizeof *b);
  if (!b)
    return -1;
  s->user = b;
  sp_transcript_header h;
  memset(&h, 0, sizeof h);
  snprintf(h.source, sizeof h.source, "%s", r->name);
  h.session = s->number;
  sp_endpoint_addr_str(&s->client, h.client_ip, sizeof h.client_ip);
  sp_endpoint_addr_str(&s->server, h.server_ip, sizeof h.server_ip);
  h.client_port = s->client.port;
  h.server_port = s->server.port;
  h.start_sec = s->start_us / 1000000;
  h.start_usec = (uint32_t)(s->start_us % 1000000);
  return sp_transcript_put_header(b, &h) ? -1 : 0;
}

static int pc_record(void *ud, sp_session *s, const sp_record *rec) {
  (void)ud;
  sp_buf *b = s->user;
  return b && sp_transcript_put_record(b, rec) ? -1 : 0;
}

static int pc_finish(void *ud, sp_session *s) {
  pc_run *r = ud;
  sp_buf *b = s->user;
  if (!b)
    return 0;
  int rc = set_add(r->set, b->data, b->len, r->err, sizeof r->err);
  sp_buf_free(b);
  free(b);
  s->user = NULL;
  return rc ? -1 : 0;
}

static int cmp_session(const void *a, const void *b) {
  const sp_script *x = a, *y = b;
  return x->session < y->session ? -1 : x->session > y->session;
}

int sp_script_load_file(sp_script_set *set, const char *path, char *err,
                        size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open", path);
    return SP_ERR_IO;
  }
  char magic[32] = {0};
  size_t got = fread(magic, 1, sizeof SP_TRANSCRIPT_MAGIC, f);
  fclose(f);
  if (got == sizeof SP_TRANSCRIPT_MAGIC &&
      !memcmp(magic, SP_TRANSCRIPT_MAGIC "\n", sizeof SP_TRANSCRIPT_MAGIC)) {
    uint8_t *data;
    size_t len;
    char e2[256];
    int rc =
        sp_transcript_load(path, (size_t)1 << 30, &data, &len, e2, sizeof e2);
    if (rc) {
      snprintf(err, errlen, "%s: %s", path, e2);
      return rc;
    }
    rc = set_add(set, data, len, e2, sizeof e2);
    free(data);
    if (rc)
      snprintf(err, errlen, "%s: %s", path, e2);
    return rc;
  }
  sp_capture *cap;
  char e2[512];
  int rc = sp_capture_open(&cap, path, e2, sizeof e2);
  if (rc) {
    snprintf(err, errlen, "%s", e2);
    return rc;
  }
  sp_tracker_config cfg;
  sp_tracker_config_default(&cfg);
  pc_run run;
  memset(&run, 0, sizeof run);
  run.set = set;
  const char *b = strrchr(path, '/');
  run.name = b ? b + 1 : path;
  run.first = set->n;
  sp_tracker_callbacks cb = {pc_begin, pc_record, pc_finish};
  sp_tracker *t = sp_tracker_new(&cfg, &cb, &run);
  if (!t) {
    sp_capture_close(cap);
    snprintf(err, errlen, "%s: out of memory", path);
    return SP_ERR_NOMEM;
  }
  int status = 0, read_error;
  uint64_t packet;
  rc = sp_capture_feed(cap, t, NULL, NULL, NULL, e2, sizeof e2, &read_error,
                       &packet);
  if (rc && read_error)
    snprintf(err, errlen, "%s", e2);
  else if (rc)
    snprintf(err, errlen, "%s: %s%s%s", path, sp_strerror(rc),
             run.err[0] ? ": " : "", run.err);
  status = rc;
  rc = sp_tracker_finish(t);
  if (rc && !status) {
    snprintf(err, errlen, "%s: %s%s%s", path, sp_strerror(rc),
             run.err[0] ? ": " : "", run.err);
    status = rc;
  }
  sp_tracker_free(t);
  sp_capture_close(cap);
  if (set->n - run.first > 1)
    qsort(set->v + run.first, set->n - run.first, sizeof *set->v, cmp_session);
  return status;
}
