/*
 * fuzz_rspamd.c: rspamd's /checkv2 request head, the HTTP/1.1 response
 * reader and the JSON reply reader (sluice/rspamd.h).
 *
 * Byte 0 picks the mode (bits 0-1), byte 1 a seed.
 * HTTP mode: the rest is a response, read whole and in pseudo-random
 * splits into a body buffer of a seed-chosen size: both readings give the
 * same result, status and body; bytes after a complete response are left
 * unconsumed; a complete body is then read as JSON.
 * JSON mode: the rest is a reply body.  With scratch as large as the body
 * the parser never runs out of room; every string it returns lies in the
 * scratch buffer; a smaller scratch gives the same result or NOBUF; the
 * verdict is one of the five; smtp_message becomes one safe reply line.
 * Request mode: the rest is split at 0xff bytes into envelope fields: the
 * head has one CRLF-terminated line per header, no other CR or LF, no
 * control byte, one Rcpt line per recipient, and ends with the blank line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_reply.h"
#include "sluice/rspamd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why) {
  fprintf(stderr, "fuzz_rspamd: %s\n", why);
  abort();
}

static uint32_t rng_state;
static uint32_t rnd(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 8;
}

static void in_scratch(sl_bytes b, const uint8_t *s, size_t cap) {
  if (b.len && (b.p < s || b.p + b.len > s + cap))
    fail("string outside the scratch buffer");
}

static void check_reply_line(sl_verdict v, sl_bytes text) {
  uint8_t out[SL_FILTER_REPLY_MAX];
  int n = sl_filter_reply(out, v, text.p, text.len);
  sl_reply r;
  if (n <= 0 ||
      sl_reply_scan(out, (size_t)n, SL_FILTER_REPLY_MAX, SL_FILTER_REPLY_MAX,
                    &r) != 1 ||
      r.nlines != 1 || r.len != (uint32_t)n)
    fail("smtp_message is not one reply line");
}

static void json_mode(const uint8_t *b, size_t n, uint8_t seed) {
  uint8_t *scratch = malloc(n ? n : 1);
  if (!scratch)
    abort();
  static sl_rspamd_result res, res2;
  int rc = sl_rspamd_parse_result(b, n, scratch, n, &res);
  if (rc == SL_ERR_NOBUF && res.n_add < SL_RSPAMD_HEADERS_MAX &&
      res.n_remove < SL_RSPAMD_HEADERS_MAX)
    fail("scratch as large as the body ran out");
  if (rc != SL_OK && rc != SL_ERR_MALFORMED && rc != SL_ERR_NOBUF)
    fail("unexpected error");
  if (rc == SL_OK) {
    in_scratch(res.smtp_message, scratch, n);
    in_scratch(res.subject, scratch, n);
    if (res.n_add > SL_RSPAMD_HEADERS_MAX ||
        res.n_remove > SL_RSPAMD_HEADERS_MAX)
      fail("header count over the bound");
    for (size_t i = 0; i < res.n_add; i++) {
      in_scratch(res.add[i].name, scratch, n);
      in_scratch(res.add[i].value, scratch, n);
    }
    for (size_t i = 0; i < res.n_remove; i++)
      in_scratch(res.remove[i].name, scratch, n);
    if (res.score_milli > 1000000000000000LL ||
        res.score_milli < -1000000000000000LL)
      fail("score not clamped");
    sl_verdict v = sl_rspamd_verdict(&res);
    if (v != SL_VERDICT_ACCEPT && v != SL_VERDICT_CHANGE &&
        v != SL_VERDICT_TEMPFAIL && v != SL_VERDICT_REJECT)
      fail("verdict");
    if (v == SL_VERDICT_TEMPFAIL || v == SL_VERDICT_REJECT)
      check_reply_line(v, res.smtp_message);
    if (!sl_rspamd_action_name(res.action))
      fail("action name");
  }
  /* a smaller scratch: the same outcome, or it ran out */
  size_t small = n ? (seed * n) / 256 : 0;
  int rc2 = sl_rspamd_parse_result(b, n, scratch, small, &res2);
  if (rc2 != rc && rc2 != SL_ERR_NOBUF)
    fail("scratch size changed the outcome");
  if (rc2 == SL_OK &&
      (res2.action != res.action || res2.score_milli != res.score_milli ||
       res2.n_add != res.n_add ||
       res2.smtp_message.len != res.smtp_message.len))
    fail("scratch size changed the result");
  free(scratch);
}

typedef struct reading {
  int rc;
  unsigned status;
  size_t consumed;
  size_t body_len;
  uint64_t body_hash;
} reading;

static reading read_http(const uint8_t *b, size_t n, size_t cap, int split,
                         uint8_t **body_out) {
  static sl_http_reader h;
  uint8_t *body = malloc(cap ? cap : 1);
  if (!body)
    abort();
  sl_http_reader_init(&h, body, cap);
  reading r = {SL_ERR_INCOMPLETE, 0, 0, 0, 0};
  size_t i = 0;
  while (i < n) {
    size_t want = split ? 1 + rnd() % 61 : n - i;
    if (want > n - i)
      want = n - i;
    size_t used = 0;
    r.rc = sl_http_reader_feed(&h, b + i, want, &used);
    if (used > want)
      fail("consumed more than given");
    i += used;
    if (r.rc != SL_ERR_INCOMPLETE)
      break;
    if (used != want)
      fail("incomplete but bytes left");
  }
  if (r.rc == SL_ERR_INCOMPLETE && (n & 1))
    r.rc = sl_http_reader_eof(&h);
  r.consumed = i;
  if (r.rc == SL_OK) {
    size_t bl;
    const uint8_t *bp = sl_http_reader_body(&h, &bl);
    r.status = sl_http_reader_status(&h);
    if (r.status < 100 || r.status > 599 || bl > cap || (bl && bp != body))
      fail("status or body");
    r.body_len = bl;
    uint64_t x = 1469598103934665603ull;
    for (size_t k = 0; k < bl; k++)
      x = (x ^ bp[k]) * 1099511628211ull;
    r.body_hash = x;
    /* a finished reader takes nothing more */
    size_t used = 1;
    if (sl_http_reader_feed(&h, (const uint8_t *)"x", 1, &used) != SL_OK ||
        used != 0)
      fail("finished reader took more");
  } else if (r.rc < 0) {
    size_t used = 1;
    int again = sl_http_reader_feed(&h, (const uint8_t *)"x", 1, &used);
    if (again != r.rc && r.rc != SL_ERR_INCOMPLETE)
      fail("error not sticky");
  }
  *body_out = body;
  return r;
}

static void http_mode(const uint8_t *b, size_t n, uint8_t seed) {
  size_t cap = (size_t)seed * 8;
  uint8_t *b1, *b2;
  rng_state = seed;
  reading whole = read_http(b, n, cap, 0, &b1);
  rng_state = seed * 5u + 3u;
  reading split = read_http(b, n, cap, 1, &b2);
  if (whole.rc != split.rc || whole.status != split.status ||
      whole.body_len != split.body_len || whole.body_hash != split.body_hash)
    fail("split reading differs from whole reading");
  if (whole.rc == SL_OK && whole.consumed != split.consumed)
    fail("split reading consumed a different length");
  if (whole.rc == SL_OK)
    json_mode(b1, whole.body_len, seed);
  free(b1);
  free(b2);
}

static void request_mode(const uint8_t *b, size_t n, uint8_t seed) {
  sl_bytes f[16];
  size_t nf = 0, start = 0;
  for (size_t i = 0; i <= n && nf < 16; i++) {
    if (i == n || b[i] == 0xff) {
      f[nf].p = b + start;
      f[nf].len = i - start;
      nf++;
      start = i + 1;
    }
  }
  sl_bytes empty = {NULL, 0};
  while (nf < 16)
    f[nf++] = empty;
  sl_rspamd_request rq;
  memset(&rq, 0, sizeof(rq));
  rq.content_length = (uint64_t)seed * 1000003u;
  rq.chunked = seed & 1; /* the streamed form: no length, chunked */
  rq.ip = f[0];
  rq.helo = f[1];
  rq.hostname = f[2];
  rq.from = f[3];
  rq.queue_id = f[4];
  rq.user = f[5];
  rq.host = f[6];
  rq.flags = f[7];
  rq.rcpts = f + 8;
  rq.nrcpts = seed % 9;
  size_t cap = 256 + (size_t)seed * 32;
  uint8_t *out = malloc(cap);
  if (!out)
    abort();
  long len = sl_rspamd_request_head(out, cap, &rq);
  if (len < 0) {
    if (len != SL_ERR_NOBUF && len != SL_ERR_INVALID_ARGUMENT)
      fail("request error code");
    free(out);
    return;
  }
  size_t L = (size_t)len;
  if (L < 4 || memcmp(out, "POST /checkv2 HTTP/1.1\r\n", 24) != 0 ||
      memcmp(out + L - 4, "\r\n\r\n", 4) != 0)
    fail("request head frame");
  size_t rcpts = 0, line = 0;
  for (size_t i = 0; i < L; i++) {
    uint8_t c = out[i];
    if (c == '\r') {
      if (i + 1 >= L || out[i + 1] != '\n')
        fail("bare CR in the request head");
      if (i == line && i + 2 != L)
        fail("blank line before the end of the head");
      if (i - line >= 6 && memcmp(out + line, "Rcpt: ", 6) == 0)
        rcpts++;
      i++;
      line = i + 1;
    } else if (c == '\n' || c < 0x20 || c == 0x7f) {
      fail("control byte in the request head");
    }
  }
  if (rcpts != rq.nrcpts)
    fail("one Rcpt line per recipient");
  /* exactly one framing header, the one asked for */
  int te = 0, cl = 0;
  for (size_t i = 0; i + 28 <= L; i++) {
    if (i && out[i - 1] != '\n')
      continue;
    te += memcmp(out + i, "Transfer-Encoding: chunked\r\n", 28) == 0;
    cl += i + 16 <= L && memcmp(out + i, "Content-Length: ", 16) == 0;
  }
  if (te + cl != 1 || te != (rq.chunked != 0))
    fail("one framing header, the one asked for");
  /* a chunk header is the hex size and CRLF, nothing else */
  uint8_t ch[SL_RSPAMD_CHUNK_HEADER_MAX];
  uint64_t size = rq.content_length + 1;
  size_t hl = sl_rspamd_put_chunk_header(ch, size);
  uint64_t back = 0;
  if (hl < 3 || hl > SL_RSPAMD_CHUNK_HEADER_MAX || ch[hl - 2] != '\r' ||
      ch[hl - 1] != '\n')
    fail("chunk header frame");
  for (size_t i = 0; i + 2 < hl; i++) {
    uint8_t c = ch[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                   : -1;
    if (d < 0 || (i == 0 && d == 0))
      fail("chunk size digit");
    back = back * 16 + (uint64_t)d;
  }
  if (back != size)
    fail("chunk size value");
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  const uint8_t *b = data + 2;
  size_t n = size - 2;
  switch (data[0] & 3) {
  case 0:
  case 3:
    http_mode(b, n, data[1]);
    break;
  case 1:
    json_mode(b, n, data[1]);
    break;
  default:
    request_mode(b, n, data[1]);
    break;
  }
  return 0;
}
