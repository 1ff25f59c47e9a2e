#include "sp_transcript.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const end_names[] = {"client-fin",  "client-rst",
                                        "server-fin",  "server-rst",
                                        "capture-end", "tls"};

const char *sp_end_reason_str(sp_end_reason r) {
  if ((unsigned)r >= sizeof end_names / sizeof end_names[0])
    return NULL;
  return end_names[r];
}

int sp_transcript_put_header(sp_buf *b, const sp_transcript_header *h) {
  char src[SP_SOURCE_MAX];
  size_t i;
  /* The header is line- and space-separated: a file name holding either
   * would make it ambiguous, so such bytes are replaced. */
  for (i = 0; h->source[i] && i < sizeof src - 1; i++) {
    unsigned char ch = (unsigned char)h->source[i];
    src[i] = (ch <= ' ' || ch == 0x7f) ? '_' : (char)ch;
  }
  src[i] = '\0';
  if (!i)
    snprintf(src, sizeof src, "-");
  return sp_buf_printf(b,
                       SP_TRANSCRIPT_MAGIC "\n"
                                           "source %s session %" PRIu64 "\n"
                                           "client %s %u\n"
                                           "server %s %u\n"
                                           "start %" PRId64 ".%06u\n"
                                           "\n",
                       src, h->session, h->client_ip, (unsigned)h->client_port,
                       h->server_ip, (unsigned)h->server_port, h->start_sec,
                       (unsigned)h->start_usec);
}

int sp_transcript_put_record(sp_buf *b, const sp_record *r) {
  int rc;
  switch (r->type) {
  case SP_REC_CLIENT:
  case SP_REC_SERVER:
    rc = sp_buf_printf(b, "%c %" PRIu64 " %" PRIu64 "\n", (char)r->type,
                       r->t_us, r->len);
    if (!rc)
      rc = sp_buf_reserve(b, (size_t)r->len + 1);
    if (!rc) {
      sp_buf_append(b, r->data, (size_t)r->len);
      sp_buf_append(b, "\n", 1);
    }
    return rc;
  case SP_REC_GAP:
    return sp_buf_printf(b, "G %" PRIu64 " %c %" PRIu64 "\n", r->t_us,
                         r->side == SP_SIDE_CLIENT ? 'C' : 'S', r->len);
  case SP_REC_END: {
    const char *name = sp_end_reason_str(r->end);
    if (!name)
      return SP_ERR_INVALID_ARGUMENT;
    return sp_buf_printf(b, "E %" PRIu64 " %s\n", r->t_us, name);
  }
  }
  return SP_ERR_INVALID_ARGUMENT;
}

/* ---- reader ---- */

static int fail(sp_transcript_reader *r, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(sp_transcript_reader *r, size_t at, const char *fmt, ...) {
  char msg[150];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(r->err, sizeof r->err, "offset %zu (line %" PRIu64 "): %s", at,
           r->line, msg);
  return SP_ERR_MALFORMED;
}

/* The line at r->pos without its '\n'; 0 when no '\n' is left. */
static int next_line(sp_transcript_reader *r, const char **line, size_t *n) {
  if (r->pos >= r->len)
    return 0;
  const uint8_t *start = r->data + r->pos;
  const uint8_t *nl = memchr(start, '\n', r->len - r->pos);
  if (!nl)
    return 0;
  *line = (const char *)start;
  *n = (size_t)(nl - start);
  return 1;
}

static void consume_line(sp_transcript_reader *r, size_t n) {
  r->pos += n + 1;
  r->line++;
}

/* Parses a decimal number of at most 20 digits from s[0..n) at *i. */
static int parse_u64(const char *s, size_t n, size_t *i, uint64_t *out) {
  size_t start = *i;
  uint64_t v = 0;
  while (*i < n && s[*i] >= '0' && s[*i] <= '9') {
    uint64_t d = (uint64_t)(s[*i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
    (*i)++;
  }
  if (*i == start || *i - start > 20)
    return -1;
  *out = v;
  return 0;
}

static int expect_char(const char *s, size_t n, size_t *i, char ch) {
  if (*i >= n || s[*i] != ch)
    return -1;
  (*i)++;
  return 0;
}

/* Copies a space-free token into out (cap bytes incl. NUL). */
static int parse_token(const char *s, size_t n, size_t *i, char *out,
                       size_t cap) {
  size_t start = *i;
  while (*i < n && s[*i] != ' ' && (unsigned char)s[*i] > ' ')
    (*i)++;
  size_t len = *i - start;
  if (len == 0 || len >= cap)
    return -1;
  memcpy(out, s + start, len);
  out[len] = '\0';
  return 0;
}

static int parse_endpoint(const char *s, size_t n, size_t i, char *ip,
                          uint16_t *port) {
  uint64_t v;
  if (parse_token(s, n, &i, ip, SP_ADDRSTRLEN) || expect_char(s, n, &i, ' ') ||
      parse_u64(s, n, &i, &v) || v > 65535 || i != n)
    return -1;
  *port = (uint16_t)v;
  return 0;
}

int sp_transcript_reader_init(sp_transcript_reader *r, const uint8_t *data,
                              size_t len) {
  memset(r, 0, sizeof *r);
  r->data = data;
  r->len = len;
  r->line = 1;
  const char *l;
  size_t n;
  size_t magic_len = strlen(SP_TRANSCRIPT_MAGIC);
  if (!next_line(r, &l, &n) || n != magic_len ||
      memcmp(l, SP_TRANSCRIPT_MAGIC, n) != 0)
    return fail(r, 0, "not a transcript: first line must be \"%s\"",
                SP_TRANSCRIPT_MAGIC);
  consume_line(r, n);
  enum { HAVE_SOURCE = 1, HAVE_CLIENT = 2, HAVE_SERVER = 4, HAVE_START = 8 };
  unsigned have = 0;
  for (;;) {
    size_t at = r->pos;
    if (!next_line(r, &l, &n))
      return fail(r, at, "header not ended by a blank line");
    if (n == 0) {
      consume_line(r, n);
      break;
    }
    size_t i = 0;
    if (n > 1024)
      return fail(r, at, "header line longer than 1024 bytes");
    if (n > 7 && memcmp(l, "source ", 7) == 0) {
      /* The name is a token (writers replace spaces): "source N session K" */
      i = 7;
      uint64_t k;
      if (parse_token(l, n, &i, r->hdr.source, sizeof r->hdr.source) ||
          expect_char(l, n, &i, ' ') || n - i < 8 ||
          memcmp(l + i, "session ", 8) != 0)
        return fail(r, at, "bad source line (want \"source NAME session N\")");
      i += 8;
      if (parse_u64(l, n, &i, &k) || i != n)
        return fail(r, at, "bad session number");
      r->hdr.session = k;
      have |= HAVE_SOURCE;
    } else if (n > 7 && memcmp(l, "client ", 7) == 0) {
      if (parse_endpoint(l, n, 7, r->hdr.client_ip, &r->hdr.client_port))
        return fail(r, at, "bad client line (want \"client IP PORT\")");
      have |= HAVE_CLIENT;
    } else if (n > 7 && memcmp(l, "server ", 7) == 0) {
      if (parse_endpoint(l, n, 7, r->hdr.server_ip, &r->hdr.server_port))
        return fail(r, at, "bad server line (want \"server IP PORT\")");
      have |= HAVE_SERVER;
    } else if (n > 6 && memcmp(l, "start ", 6) == 0) {
      uint64_t sec, usec;
      size_t j;
      i = 6;
      if (parse_u64(l, n, &i, &sec) || sec > INT64_MAX ||
          expect_char(l, n, &i, '.'))
        return fail(r, at, "bad start line (want \"start SECONDS.MICROS\")");
      j = i;
      if (parse_u64(l, n, &i, &usec) || i - j != 6 || i != n)
        return fail(r, at, "bad start line (want 6 fraction digits)");
      r->hdr.start_sec = (int64_t)sec;
      r->hdr.start_usec = (uint32_t)usec;
      have |= HAVE_START;
    }
    consume_line(r, n);
  }
  if (have != (HAVE_SOURCE | HAVE_CLIENT | HAVE_SERVER | HAVE_START))
    return fail(
        r, r->pos, "header lacks %s%s%s%s", have & HAVE_SOURCE ? "" : "source ",
        have & HAVE_CLIENT ? "" : "client ",
        have & HAVE_SERVER ? "" : "server ", have & HAVE_START ? "" : "start");
  return 0;
}

int sp_transcript_next(sp_transcript_reader *r, sp_record *rec) {
  size_t at = r->pos;
  const char *l;
  size_t n;
  if (r->pos >= r->len) {
    if (!r->closed)
      return fail(r, at, "transcript ends without its final E record");
    return 0;
  }
  if (r->closed)
    return fail(r, at, "record after the final E record");
  if (!next_line(r, &l, &n))
    return fail(r, at, "record line not ended by a newline");
  if (n < 4 || l[1] != ' ')
    return fail(r, at, "bad record line");
  memset(rec, 0, sizeof *rec);
  size_t i = 2;
  if (parse_u64(l, n, &i, &rec->t_us) || expect_char(l, n, &i, ' '))
    return fail(r, at, "bad time in record");
  if (rec->t_us < r->last_t)
    return fail(r, at, "time goes backwards (%" PRIu64 " after %" PRIu64 ")",
                rec->t_us, r->last_t);
  switch (l[0]) {
  case 'C':
  case 'S': {
    rec->type = (sp_rec_type)l[0];
    if (parse_u64(l, n, &i, &rec->len) || i != n)
      return fail(r, at, "bad length in data record");
    consume_line(r, n);
    if (rec->len > r->len - r->pos || r->len - r->pos - rec->len < 1)
      return fail(r, at, "data record of %" PRIu64 " bytes runs past the end",
                  rec->len);
    rec->data = r->data + r->pos;
    if (r->data[r->pos + rec->len] != '\n')
      return fail(r, r->pos + (size_t)rec->len,
                  "data record not followed by a newline");
    for (size_t k = 0; k < rec->len; k++)
      if (rec->data[k] == '\n')
        r->line++;
    r->pos += (size_t)rec->len + 1;
    r->line++;
    break;
  }
  case 'G':
    rec->type = SP_REC_GAP;
    if (i + 1 >= n || (l[i] != 'C' && l[i] != 'S') || l[i + 1] != ' ')
      return fail(r, at, "bad side in gap record (want C or S)");
    rec->side = l[i] == 'C' ? SP_SIDE_CLIENT : SP_SIDE_SERVER;
    i += 2;
    if (parse_u64(l, n, &i, &rec->len) || i != n || rec->len == 0)
      return fail(r, at, "bad byte count in gap record");
    consume_line(r, n);
    break;
  case 'E': {
    rec->type = SP_REC_END;
    int found = 0;
    for (unsigned k = 0; k < sizeof end_names / sizeof end_names[0]; k++)
      if (n - i == strlen(end_names[k]) &&
          memcmp(l + i, end_names[k], n - i) == 0) {
        rec->end = (sp_end_reason)k;
        found = 1;
      }
    if (!found)
      return fail(r, at, "unknown end reason");
    switch (rec->end) {
    case SP_END_CLIENT_FIN:
    case SP_END_SERVER_FIN: {
      int side = rec->end == SP_END_CLIENT_FIN ? 0 : 1;
      if (r->ended[side])
        return fail(r, at, "second FIN for one side");
      r->ended[side] = 1;
      r->closed = r->ended[0] && r->ended[1];
      break;
    }
    default:
      r->closed = 1;
    }
    consume_line(r, n);
    break;
  }
  default:
    return fail(r, at, "unknown record type '%c'",
                (l[0] > ' ' && l[0] < 0x7f) ? l[0] : '?');
  }
  r->last_t = rec->t_us;
  return 1;
}

int sp_transcript_load(const char *path, size_t max_bytes, uint8_t **data,
                       size_t *len, char *err, size_t errlen) {
  *data = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return SP_ERR_IO;
  }
  sp_buf b = {0};
  int rc = 0;
  for (;;) {
    if ((rc = sp_buf_reserve(&b, 65536)) != 0) {
      snprintf(err, errlen, "%s: out of memory", path);
      break;
    }
    size_t got = fread(b.data + b.len, 1, b.cap - b.len, f);
    b.len += got;
    if (b.len > max_bytes) {
      snprintf(err, errlen, "%s: larger than %zu bytes", path, max_bytes);
      rc = SP_ERR_MALFORMED;
      break;
    }
    if (got == 0) {
      if (ferror(f)) {
        snprintf(err, errlen, "%s: read error at offset %zu", path, b.len);
        rc = SP_ERR_IO;
      }
      break;
    }
  }
  fclose(f);
  if (rc) {
    sp_buf_free(&b);
    return rc;
  }
  *data = b.data;
  *len = b.len;
  return 0;
}
