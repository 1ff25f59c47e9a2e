/*
 * sl_rspamd.c: rspamd's /checkv2 request head, an HTTP/1.1 response reader
 * and the JSON reply reader (sluice/rspamd.h).
 */
#include "sluice/rspamd.h"

#include <string.h>

#include "sl_reply.h"

/* ---- request ----------------------------------------------------------- */

typedef struct out_buf {
  uint8_t *p;
  size_t cap;
  size_t len;
  int err;
} out_buf;

static void put(out_buf *o, const void *b, size_t n) {
  if (o->err)
    return;
  if (n > o->cap - o->len) {
    o->err = SL_ERR_NOBUF;
    return;
  }
  memcpy(o->p + o->len, b, n);
  o->len += n;
}

static void put_str(out_buf *o, const char *s) { put(o, s, strlen(s)); }

static int blank(uint8_t c) { return c == ' ' || c == '\t'; }

/* Trimmed bounds of v; returns 0 if v is too long once trimmed. */
static int trimmed(sl_bytes v, size_t *from, size_t *to) {
  size_t a = 0, b = v.len;
  while (a < b && blank(v.p[a]))
    a++;
  while (b > a && blank(v.p[b - 1]))
    b--;
  *from = a;
  *to = b;
  return b - a <= SL_RSPAMD_VALUE_MAX;
}

static int value_ok(sl_bytes v) {
  size_t a, b;
  return (v.p || !v.len) && trimmed(v, &a, &b);
}

static void put_header(out_buf *o, const char *name, sl_bytes v,
                       const char *if_empty) {
  size_t a = 0, b = 0;
  if (v.len)
    trimmed(v, &a, &b);
  if (a == b && !if_empty)
    return;
  put_str(o, name);
  put(o, ": ", 2);
  if (a == b) {
    put_str(o, if_empty);
  } else {
    for (size_t i = a; i < b && !o->err; i++) {
      uint8_t c = v.p[i];
      if (c < 0x20 || c == 0x7f)
        c = '?';
      put(o, &c, 1);
    }
  }
  put(o, "\r\n", 2);
}

long sl_rspamd_request_head(uint8_t *out, size_t cap,
                            const sl_rspamd_request *rq) {
  if (!out || !rq || (!rq->rcpts && rq->nrcpts > 0) ||
      rq->nrcpts > SL_RSPAMD_RCPT_MAX)
    return SL_ERR_INVALID_ARGUMENT;
  const sl_bytes *fields[] = {&rq->ip,   &rq->helo,     &rq->hostname,
                              &rq->from, &rq->queue_id, &rq->user,
                              &rq->host, &rq->flags};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    if (!value_ok(*fields[i]))
      return SL_ERR_INVALID_ARGUMENT;
  for (size_t i = 0; i < rq->nrcpts; i++) {
    size_t a = 0, b = 0;
    if (!value_ok(rq->rcpts[i]))
      return SL_ERR_INVALID_ARGUMENT;
    trimmed(rq->rcpts[i], &a, &b);
    if (a == b)
      return SL_ERR_INVALID_ARGUMENT; /* one Rcpt header per recipient */
  }
  out_buf o = {out, cap, 0, 0};
  put_str(&o, "POST /checkv2 HTTP/1.1\r\n");
  put_header(&o, "Host", rq->host, "localhost");
  if (rq->chunked) {
    put_str(&o, "Transfer-Encoding: chunked\r\n");
  } else {
    put_str(&o, "Content-Length: ");
    uint8_t num[20];
    put(&o, num, sl_put_decimal(num, rq->content_length));
    put(&o, "\r\n", 2);
  }
  put_header(&o, "IP", rq->ip, NULL);
  put_header(&o, "Helo", rq->helo, NULL);
  put_header(&o, "Hostname", rq->hostname, NULL);
  put_header(&o, "From", rq->from, "<>");
  for (size_t i = 0; i < rq->nrcpts; i++)
    put_header(&o, "Rcpt", rq->rcpts[i], NULL);
  put_header(&o, "Queue-Id", rq->queue_id, NULL);
  put_header(&o, "User", rq->user, NULL);
  put_header(&o, "Flags", rq->flags, NULL);
  put(&o, "\r\n", 2);
  return o.err ? o.err : (long)o.len;
}

size_t sl_rspamd_put_chunk_header(uint8_t *out, uint64_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t len = 0;
  int shift = 60;
  while (shift > 0 && !((n >> shift) & 0xf))
    shift -= 4;
  for (; shift >= 0; shift -= 4)
    out[len++] = (uint8_t)hex[(n >> shift) & 0xf];
  out[len++] = '\r';
  out[len++] = '\n';
  return len;
}

/* ---- HTTP/1.1 response reader ------------------------------------------ */

enum {
  ST_STATUS = 0,
  ST_HEADER,
  ST_BODY_LENGTH,
  ST_BODY_EOF,
  ST_CHUNK_SIZE,
  ST_CHUNK_DATA,
  ST_CHUNK_END, /* the CRLF after a chunk's data */
  ST_TRAILER,
  ST_DONE,
  ST_ERROR
};

enum {
  HF_LENGTH = 1u << 0,
  HF_CHUNKED = 1u << 1,
  HF_INTERIM = 1u << 2 /* reading the head of a 100 Continue */
};

void sl_http_reader_init(sl_http_reader *h, uint8_t *body, size_t body_cap) {
  memset(h, 0, offsetof(sl_http_reader, line));
  h->body = body;
  h->body_cap = body ? body_cap : 0;
}

static int fail(sl_http_reader *h, int err) {
  h->state = ST_ERROR;
  h->pad_[0] = (uint8_t)-err;
  return err;
}

static uint8_t lower(uint8_t c) {
  return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

static int ieq(const uint8_t *a, size_t n, const char *b) {
  size_t l = strlen(b);
  if (n != l)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != (uint8_t)b[i])
      return 0;
  return 1;
}

static int tchar(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c && memchr("!#$%&'*+-.^_`|~", c, 15));
}

static int status_line(sl_http_reader *h, const uint8_t *l, size_t n) {
  if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || (l[7] != '0' && l[7] != '1') ||
      l[8] != ' ')
    return SL_ERR_MALFORMED;
  unsigned code = 0;
  for (int i = 9; i < 12; i++) {
    if (l[i] < '0' || l[i] > '9')
      return SL_ERR_MALFORMED;
    code = code * 10 + (unsigned)(l[i] - '0');
  }
  if (code < 100 || code > 599 || (n > 12 && l[12] != ' '))
    return SL_ERR_MALFORMED;
  if (code >= 100 && code < 200 && code != 100)
    return SL_ERR_MALFORMED;
  h->status = (uint16_t)code;
  if (code == 100)
    h->flags |= HF_INTERIM;
  h->state = ST_HEADER;
  return SL_OK;
}

static int header_line(sl_http_reader *h, const uint8_t *l, size_t n) {
  size_t c = 0;
  while (c < n && tchar(l[c]))
    c++;
  if (c == 0 || c == n || l[c] != ':')
    return SL_ERR_MALFORMED; /* also obs-fold: a line starting blank */
  const uint8_t *v = l + c + 1;
  size_t vl = n - c - 1;
  while (vl && blank(*v))
    v++, vl--;
  while (vl && blank(v[vl - 1]))
    vl--;
  for (size_t i = 0; i < vl; i++)
    if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
      return SL_ERR_MALFORMED;
  if (h->flags & HF_INTERIM)
    return SL_OK;
  if (ieq(l, c, "content-length")) {
    if (vl == 0 || vl > 15)
      return SL_ERR_MALFORMED;
    uint64_t x = 0;
    for (size_t i = 0; i < vl; i++) {
      if (v[i] < '0' || v[i] > '9')
        return SL_ERR_MALFORMED;
      x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if ((h->flags & HF_LENGTH) && x != h->remaining)
      return SL_ERR_MALFORMED;
    h->flags |= HF_LENGTH;
    h->remaining = x;
  } else if (ieq(l, c, "transfer-encoding")) {
    if (!ieq(v, vl, "chunked") || (h->flags & HF_CHUNKED))
      return SL_ERR_MALFORMED;
    h->flags |= HF_CHUNKED;
  } else if (ieq(l, c, "content-encoding")) {
    if (!ieq(v, vl, "identity"))
      return SL_ERR_MALFORMED;
  }
  return SL_OK;
}

static int end_of_head(sl_http_reader *h) {
  if (h->flags & HF_INTERIM) {
    h->flags &= (uint8_t)~HF_INTERIM;
    h->state = ST_STATUS;
    return SL_OK;
  }
  if ((h->flags & HF_CHUNKED) && (h->flags & HF_LENGTH))
    return SL_ERR_MALFORMED;
  if (h->status == 204 || h->status == 304)
    h->state = ST_DONE;
  else if (h->flags & HF_CHUNKED)
    h->state = ST_CHUNK_SIZE;
  else if (h->flags & HF_LENGTH)
    h->state = h->remaining ? ST_BODY_LENGTH : ST_DONE;
  else
    h->state = ST_BODY_EOF;
  return SL_OK;
}

static int hexval(uint8_t c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static int chunk_size_line(sl_http_reader *h, const uint8_t *l, size_t n) {
  size_t i = 0;
  uint64_t x = 0;
  while (i < n && hexval(l[i]) >= 0) {
    if (x >> 40)
      return SL_ERR_MALFORMED;
    x = x * 16 + (uint64_t)hexval(l[i]);
    i++;
  }
  if (i == 0)
    return SL_ERR_MALFORMED;
  while (i < n && blank(l[i]))
    i++;
  if (i < n && l[i] != ';')
    return SL_ERR_MALFORMED;
  h->remaining = x;
  h->state = x ? ST_CHUNK_DATA : ST_TRAILER;
  return SL_OK;
}

/* One complete line (CR LF or LF stripped) for the line states. */
static int line(sl_http_reader *h, const uint8_t *l, size_t n) {
  switch (h->state) {
  case ST_STATUS:
    return status_line(h, l, n);
  case ST_HEADER:
    return n == 0 ? end_of_head(h) : header_line(h, l, n);
  case ST_CHUNK_SIZE:
    return chunk_size_line(h, l, n);
  case ST_CHUNK_END:
    if (n != 0)
      return SL_ERR_MALFORMED;
    h->state = ST_CHUNK_SIZE;
    return SL_OK;
  case ST_TRAILER:
    if (n == 0)
      h->state = ST_DONE;
    return SL_OK;
  }
  return SL_ERR_INTERNAL;
}

static int body(sl_http_reader *h, const uint8_t *b, size_t n) {
  if (n > h->body_cap - h->body_len)
    return SL_ERR_NOBUF;
  if (n)
    memcpy(h->body + h->body_len, b, n);
  h->body_len += n;
  return SL_OK;
}

int sl_http_reader_feed(sl_http_reader *h, const uint8_t *buf, size_t len,
                        size_t *consumed) {
  if (!h || !consumed || (!buf && len > 0))
    return SL_ERR_INVALID_ARGUMENT;
  *consumed = 0;
  size_t i = 0;
  int rc = SL_OK;
  while (i < len && h->state != ST_DONE && h->state != ST_ERROR) {
    switch (h->state) {
    case ST_BODY_LENGTH:
    case ST_CHUNK_DATA:
    case ST_BODY_EOF: {
      size_t n = len - i;
      if (h->state != ST_BODY_EOF && n > h->remaining)
        n = (size_t)h->remaining;
      if ((rc = body(h, buf + i, n)) < 0)
        return fail(h, rc);
      i += n;
      if (h->state != ST_BODY_EOF) {
        h->remaining -= n;
        if (h->remaining == 0)
          h->state = h->state == ST_CHUNK_DATA ? ST_CHUNK_END : ST_DONE;
      }
      break;
    }
    default: {
      uint8_t c = buf[i++];
      int head = h->state == ST_STATUS || h->state == ST_HEADER;
      if (head && ++h->head_len > SL_HTTP_HEAD_MAX)
        return fail(h, SL_ERR_MALFORMED);
      if (c != '\n') {
        /* the LF is never stored: with it the line is at most the limit */
        if (h->line_len >= SL_HTTP_LINE_MAX - 1)
          return fail(h, SL_ERR_MALFORMED);
        h->line[h->line_len++] = c;
        break;
      }
      size_t n = h->line_len;
      if (n && h->line[n - 1] == '\r')
        n--;
      h->line_len = 0;
      for (size_t k = 0; k < n; k++)
        if (h->line[k] == '\r' || h->line[k] == 0)
          return fail(h, SL_ERR_MALFORMED);
      if ((rc = line(h, h->line, n)) < 0)
        return fail(h, rc);
      break;
    }
    }
  }
  *consumed = i;
  if (h->state == ST_ERROR)
    return -(int)h->pad_[0];
  return h->state == ST_DONE ? SL_OK : SL_ERR_INCOMPLETE;
}

int sl_http_reader_eof(sl_http_reader *h) {
  if (!h)
    return SL_ERR_INVALID_ARGUMENT;
  if (h->state == ST_ERROR)
    return -(int)h->pad_[0];
  if (h->state == ST_BODY_EOF)
    h->state = ST_DONE;
  if (h->state != ST_DONE)
    return fail(h, SL_ERR_MALFORMED);
  return SL_OK;
}

unsigned sl_http_reader_status(const sl_http_reader *h) {
  return h && h->state == ST_DONE ? h->status : 0;
}

const uint8_t *sl_http_reader_body(const sl_http_reader *h, size_t *len) {
  if (!h || h->state != ST_DONE) {
    if (len)
      *len = 0;
    return NULL;
  }
  if (len)
    *len = h->body_len;
  return h->body;
}

/* ---- JSON reply -------------------------------------------------------- */

typedef struct json {
  const uint8_t *b;
  size_t n;
  size_t i;
  uint8_t *scratch;
  size_t cap;
  size_t used;
} json;

#define SCORE_CLAMP_MILLI 1000000000000000LL /* 10^12 * 1000 */

static void ws(json *j) {
  while (j->i < j->n && (j->b[j->i] == ' ' || j->b[j->i] == '\t' ||
                         j->b[j->i] == '\n' || j->b[j->i] == '\r'))
    j->i++;
}

static int peek(json *j) {
  ws(j);
  return j->i < j->n ? j->b[j->i] : -1;
}

static int expect(json *j, uint8_t c) {
  if (peek(j) != c)
    return SL_ERR_MALFORMED;
  j->i++;
  return SL_OK;
}

static int hex4(json *j, unsigned *u) {
  if (j->n - j->i < 4)
    return SL_ERR_MALFORMED;
  unsigned x = 0;
  for (int k = 0; k < 4; k++) {
    int h = hexval(j->b[j->i++]);
    if (h < 0)
      return SL_ERR_MALFORMED;
    x = x * 16 + (unsigned)h;
  }
  *u = x;
  return SL_OK;
}

static size_t utf8_put(uint8_t *o, unsigned u) {
  if (u < 0x80) {
    o[0] = (uint8_t)u;
    return 1;
  }
  if (u < 0x800) {
    o[0] = (uint8_t)(0xc0 | (u >> 6));
    o[1] = (uint8_t)(0x80 | (u & 0x3f));
    return 2;
  }
  if (u < 0x10000) {
    o[0] = (uint8_t)(0xe0 | (u >> 12));
    o[1] = (uint8_t)(0x80 | ((u >> 6) & 0x3f));
    o[2] = (uint8_t)(0x80 | (u & 0x3f));
    return 3;
  }
  o[0] = (uint8_t)(0xf0 | (u >> 18));
  o[1] = (uint8_t)(0x80 | ((u >> 12) & 0x3f));
  o[2] = (uint8_t)(0x80 | ((u >> 6) & 0x3f));
  o[3] = (uint8_t)(0x80 | (u & 0x3f));
  return 4;
}

/*
 * Reads a string at j->i (after blanks).  With keep, it is unescaped into
 * the scratch buffer and *out points there; without, it is only checked
 * and *out points at the raw bytes between the quotes (raw_escaped is set
 * if they contain a backslash).
 */
static int string(json *j, int keep, sl_bytes *out, int *raw_escaped) {
  if (expect(j, '"') < 0)
    return SL_ERR_MALFORMED;
  size_t start = j->i, o = j->used;
  int escaped = 0;
  for (;;) {
    if (j->i >= j->n)
      return SL_ERR_MALFORMED;
    uint8_t c = j->b[j->i++];
    if (c == '"')
      break;
    if (c < 0x20)
      return SL_ERR_MALFORMED;
    uint8_t tmp[4];
    size_t tl = 1;
    tmp[0] = c;
    if (c == '\\') {
      escaped = 1;
      if (j->i >= j->n)
        return SL_ERR_MALFORMED;
      c = j->b[j->i++];
      switch (c) {
      case '"':
      case '\\':
      case '/':
        tmp[0] = c;
        break;
      case 'b':
        tmp[0] = '\b';
        break;
      case 'f':
        tmp[0] = '\f';
        break;
      case 'n':
        tmp[0] = '\n';
        break;
      case 'r':
        tmp[0] = '\r';
        break;
      case 't':
        tmp[0] = '\t';
        break;
      case 'u': {
        unsigned u;
        if (hex4(j, &u) < 0)
          return SL_ERR_MALFORMED;
        if (u >= 0xd800 && u < 0xdc00) {
          unsigned lo;
          size_t save = j->i;
          if (j->n - j->i >= 6 && j->b[j->i] == '\\' && j->b[j->i + 1] == 'u') {
            j->i += 2;
            if (hex4(j, &lo) < 0)
              return SL_ERR_MALFORMED;
            if (lo >= 0xdc00 && lo < 0xe000) {
              u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            } else {
              j->i = save; /* not a pair: the next escape stands alone */
              u = 0xfffd;
            }
          } else {
            u = 0xfffd;
          }
        } else if (u >= 0xdc00 && u < 0xe000) {
          u = 0xfffd;
        }
        if (u == 0)
          return SL_ERR_MALFORMED;
        tl = utf8_put(tmp, u);
        break;
      }
      default:
        return SL_ERR_MALFORMED;
      }
    }
    if (keep) {
      if (tl > j->cap - o)
        return SL_ERR_NOBUF;
      memcpy(j->scratch + o, tmp, tl);
      o += tl;
    }
  }
  if (keep) {
    out->p = j->scratch + j->used;
    out->len = o - j->used;
    j->used = o;
  } else if (out) {
    out->p = j->b + start;
    out->len = j->i - 1 - start;
  }
  if (raw_escaped)
    *raw_escaped = escaped;
  return SL_OK;
}

static int digit(json *j) {
  return j->i < j->n && j->b[j->i] >= '0' && j->b[j->i] <= '9';
}

/* A JSON number as thousandths, clamped to +-SCORE_CLAMP_MILLI. */
static int number(json *j, int64_t *milli) {
  ws(j);
  int neg = 0;
  if (j->i < j->n && j->b[j->i] == '-') {
    neg = 1;
    j->i++;
  }
  if (!digit(j))
    return SL_ERR_MALFORMED;
  uint64_t mant = 0;
  int exp10 = 0;
  if (j->b[j->i] == '0') {
    j->i++;
    if (digit(j))
      return SL_ERR_MALFORMED; /* JSON allows no leading zeros */
  }
  while (digit(j)) {
    unsigned d = (unsigned)(j->b[j->i++] - '0');
    if (mant < 100000000000000000ULL)
      mant = mant * 10 + d;
    else
      exp10++;
  }
  if (j->i < j->n && j->b[j->i] == '.') {
    j->i++;
    if (!digit(j))
      return SL_ERR_MALFORMED;
    while (digit(j)) {
      unsigned d = (unsigned)(j->b[j->i++] - '0');
      if (mant < 100000000000000000ULL) {
        mant = mant * 10 + d;
        exp10--;
      }
    }
  }
  if (j->i < j->n && (j->b[j->i] == 'e' || j->b[j->i] == 'E')) {
    j->i++;
    int eneg = 0;
    if (j->i < j->n && (j->b[j->i] == '+' || j->b[j->i] == '-'))
      eneg = j->b[j->i++] == '-';
    if (!digit(j))
      return SL_ERR_MALFORMED;
    int e = 0;
    while (digit(j)) {
      if (e < 10000)
        e = e * 10 + (j->b[j->i] - '0');
      j->i++;
    }
    exp10 += eneg ? -e : e;
  }
  /* value = mant * 10^exp10; milli = mant * 10^(exp10 + 3) */
  int s = exp10 + 3;
  int64_t v;
  if (mant == 0) {
    v = 0;
  } else if (s >= 0) {
    uint64_t m = mant;
    for (int k = 0; k < s && m <= (uint64_t)SCORE_CLAMP_MILLI; k++)
      m *= 10;
    v = m > (uint64_t)SCORE_CLAMP_MILLI ? SCORE_CLAMP_MILLI : (int64_t)m;
  } else {
    uint64_t m = mant;
    for (int k = 0; k < -s && m; k++)
      m /= 10;
    v = m > (uint64_t)SCORE_CLAMP_MILLI ? SCORE_CLAMP_MILLI : (int64_t)m;
  }
  *milli = neg ? -v : v;
  return SL_OK;
}

static int literal(json *j, const char *w) {
  size_t l = strlen(w);
  ws(j);
  if (j->n - j->i < l || memcmp(j->b + j->i, w, l) != 0)
    return SL_ERR_MALFORMED;
  j->i += l;
  return SL_OK;
}

static int skip_value(json *j, int depth);

/* Calls member(j, key, depth) for each member of an object; the key is
   raw (escaped keys never match a known name). */
typedef int (*member_fn)(json *j, sl_bytes key, int escaped, int depth,
                         void *ctx);

static int object(json *j, int depth, member_fn fn, void *ctx) {
  if (depth > SL_RSPAMD_DEPTH_MAX)
    return SL_ERR_MALFORMED;
  if (expect(j, '{') < 0)
    return SL_ERR_MALFORMED;
  if (peek(j) == '}') {
    j->i++;
    return SL_OK;
  }
  for (;;) {
    sl_bytes key;
    int esc, rc;
    if ((rc = string(j, 0, &key, &esc)) < 0)
      return rc;
    if (expect(j, ':') < 0)
      return SL_ERR_MALFORMED;
    rc = fn ? fn(j, key, esc, depth, ctx) : skip_value(j, depth + 1);
    if (rc < 0)
      return rc;
    int c = peek(j);
    j->i++;
    if (c == '}')
      return SL_OK;
    if (c != ',')
      return SL_ERR_MALFORMED;
  }
}

static int skip_value(json *j, int depth) {
  if (depth > SL_RSPAMD_DEPTH_MAX)
    return SL_ERR_MALFORMED;
  int c = peek(j);
  int64_t x;
  switch (c) {
  case '{':
    return object(j, depth, NULL, NULL);
  case '[':
    j->i++;
    if (peek(j) == ']') {
      j->i++;
      return SL_OK;
    }
    for (;;) {
      int rc = skip_value(j, depth + 1);
      if (rc < 0)
        return rc;
      c = peek(j);
      j->i++;
      if (c == ']')
        return SL_OK;
      if (c != ',')
        return SL_ERR_MALFORMED;
    }
  case '"':
    return string(j, 0, NULL, NULL);
  case 't':
    return literal(j, "true");
  case 'f':
    return literal(j, "false");
  case 'n':
    return literal(j, "null");
  default:
    return number(j, &x);
  }
}

static int key_is(sl_bytes key, int escaped, const char *name) {
  size_t l = strlen(name);
  return !escaped && key.len == l && memcmp(key.p, name, l) == 0;
}

typedef struct header_ctx {
  sl_rspamd_result *res;
  sl_bytes name;
  sl_bytes value;
  long order;
  int have_value;
} header_ctx;

static long order_of(int64_t milli) {
  int64_t o = milli / 1000;
  if (o > 1000000)
    o = 1000000;
  if (o < -1000000)
    o = -1000000;
  return (long)o;
}

static int header_obj_member(json *j, sl_bytes key, int esc, int depth,
                             void *ctx) {
  header_ctx *h = ctx;
  if (key_is(key, esc, "value")) {
    if (peek(j) != '"')
      return SL_ERR_MALFORMED;
    h->have_value = 1;
    return string(j, 1, &h->value, NULL);
  }
  if (key_is(key, esc, "order")) {
    int64_t m;
    int rc = number(j, &m);
    h->order = order_of(m);
    return rc;
  }
  return skip_value(j, depth + 1);
}

static int add_one(json *j, header_ctx *h, int depth) {
  int c = peek(j);
  int rc;
  h->order = -1;
  h->have_value = 0;
  if (c == '"') {
    if ((rc = string(j, 1, &h->value, NULL)) < 0)
      return rc;
  } else if (c == '{') {
    if ((rc = object(j, depth, header_obj_member, h)) < 0)
      return rc;
    if (!h->have_value)
      return SL_ERR_MALFORMED;
  } else {
    return SL_ERR_MALFORMED;
  }
  sl_rspamd_result *r = h->res;
  if (r->n_add >= SL_RSPAMD_HEADERS_MAX)
    return SL_ERR_NOBUF;
  r->add[r->n_add].name = h->name;
  r->add[r->n_add].value = h->value;
  r->add[r->n_add].order = h->order;
  r->n_add++;
  return SL_OK;
}

/* The key of a header map, unescaped into scratch. */
static int header_name(json *j, sl_bytes key, int esc, sl_bytes *name) {
  if (!esc) {
    if (key.len > j->cap - j->used)
      return SL_ERR_NOBUF;
    memcpy(j->scratch + j->used, key.p, key.len);
    name->p = j->scratch + j->used;
    name->len = key.len;
    j->used += key.len;
    return SL_OK;
  }
  /* re-read the key with unescaping: it starts at the quote before it */
  json k = *j;
  k.b = key.p - 1;
  k.n = key.len + 2;
  k.i = 0;
  int rc = string(&k, 1, name, NULL);
  j->used = k.used;
  return rc;
}

static int add_headers_member(json *j, sl_bytes key, int esc, int depth,
                              void *ctx) {
  header_ctx h = {ctx, {NULL, 0}, {NULL, 0}, 0, 0};
  int rc = header_name(j, key, esc, &h.name);
  if (rc < 0)
    return rc;
  if (peek(j) != '[')
    return add_one(j, &h, depth + 1);
  j->i++;
  if (peek(j) == ']') {
    j->i++;
    return SL_OK;
  }
  for (;;) {
    if (depth + 2 > SL_RSPAMD_DEPTH_MAX)
      return SL_ERR_MALFORMED;
    if ((rc = add_one(j, &h, depth + 2)) < 0)
      return rc;
    int c = peek(j);
    j->i++;
    if (c == ']')
      return SL_OK;
    if (c != ',')
      return SL_ERR_MALFORMED;
  }
}

static int remove_headers_member(json *j, sl_bytes key, int esc, int depth,
                                 void *ctx) {
  (void)depth;
  sl_rspamd_result *r = ctx;
  sl_bytes name;
  int64_t m;
  int rc = header_name(j, key, esc, &name);
  if (rc < 0)
    return rc;
  int c = peek(j);
  if (c != '-' && (c < '0' || c > '9'))
    return SL_ERR_MALFORMED;
  if ((rc = number(j, &m)) < 0)
    return rc;
  if (r->n_remove >= SL_RSPAMD_HEADERS_MAX)
    return SL_ERR_NOBUF;
  r->remove[r->n_remove].name = name;
  r->remove[r->n_remove].order = order_of(m);
  r->n_remove++;
  return SL_OK;
}

static int milter_member(json *j, sl_bytes key, int esc, int depth, void *ctx) {
  if (key_is(key, esc, "add_headers"))
    return object(j, depth + 1, add_headers_member, ctx);
  if (key_is(key, esc, "remove_headers"))
    return object(j, depth + 1, remove_headers_member, ctx);
  return skip_value(j, depth + 1);
}

static int messages_member(json *j, sl_bytes key, int esc, int depth,
                           void *ctx) {
  sl_rspamd_result *r = ctx;
  if (key_is(key, esc, "smtp_message")) {
    if (peek(j) != '"')
      return SL_ERR_MALFORMED;
    return string(j, 1, &r->smtp_message, NULL);
  }
  return skip_value(j, depth + 1);
}

static const char *const action_names[] = {"no action",   "greylist",
                                           "add header",  "rewrite subject",
                                           "soft reject", "reject"};

static int top_member(json *j, sl_bytes key, int esc, int depth, void *ctx) {
  sl_rspamd_result *r = ctx;
  int c = peek(j);
  if (key_is(key, esc, "action")) {
    sl_bytes a;
    int aesc, rc;
    if (c != '"')
      return SL_ERR_MALFORMED;
    if ((rc = string(j, 0, &a, &aesc)) < 0)
      return rc;
    r->action = SL_RSPAMD_ACTION_UNKNOWN;
    for (size_t k = 0; k < sizeof(action_names) / sizeof(action_names[0]); k++)
      if (key_is(a, aesc, action_names[k]))
        r->action = (sl_rspamd_action)k;
    return SL_OK;
  }
  if (key_is(key, esc, "score") || key_is(key, esc, "required_score")) {
    if (c != '-' && (c < '0' || c > '9'))
      return SL_ERR_MALFORMED;
    int64_t m;
    int rc = number(j, &m);
    if (key.len == 5) {
      r->score_milli = m;
      r->has_score = 1;
    } else {
      r->required_score_milli = m;
    }
    return rc;
  }
  if (key_is(key, esc, "subject")) {
    if (c != '"')
      return SL_ERR_MALFORMED;
    return string(j, 1, &r->subject, NULL);
  }
  if (key_is(key, esc, "messages")) {
    if (c != '{')
      return SL_ERR_MALFORMED;
    return object(j, depth + 1, messages_member, r);
  }
  if (key_is(key, esc, "milter")) {
    if (c != '{')
      return SL_ERR_MALFORMED;
    return object(j, depth + 1, milter_member, r);
  }
  return skip_value(j, depth + 1);
}

int sl_rspamd_parse_result(const uint8_t *b, size_t len, uint8_t *scratch,
                           size_t scratch_cap, sl_rspamd_result *res) {
  if (!res)
    return SL_ERR_INVALID_ARGUMENT;
  memset(res, 0, sizeof(*res));
  res->action = SL_RSPAMD_ACTION_UNKNOWN;
  if ((!b && len) || (!scratch && scratch_cap))
    return SL_ERR_INVALID_ARGUMENT;
  json j = {b, len, 0, scratch, scratch_cap, 0};
  if (peek(&j) != '{')
    return SL_ERR_MALFORMED;
  int rc = object(&j, 1, top_member, res);
  if (rc < 0)
    return rc;
  if (peek(&j) != -1)
    return SL_ERR_MALFORMED;
  return SL_OK;
}

const char *sl_rspamd_action_name(sl_rspamd_action a) {
  if ((unsigned)a < sizeof(action_names) / sizeof(action_names[0]))
    return action_names[a];
  return "unknown";
}

sl_verdict sl_rspamd_verdict(const sl_rspamd_result *res) {
  switch (res->action) {
  case SL_RSPAMD_REJECT:
    return SL_VERDICT_REJECT;
  case SL_RSPAMD_SOFT_REJECT:
  case SL_RSPAMD_GREYLIST:
    return SL_VERDICT_TEMPFAIL;
  case SL_RSPAMD_ADD_HEADER:
  case SL_RSPAMD_REWRITE_SUBJECT:
    return SL_VERDICT_CHANGE;
  case SL_RSPAMD_NO_ACTION:
    return res->n_add || res->n_remove ? SL_VERDICT_CHANGE : SL_VERDICT_ACCEPT;
  default:
    return SL_VERDICT_TEMPFAIL;
  }
}
