/* sl_data.c: DATA framing; see sl_data.h.  This is the per-byte path. */
#include "sl_data.h"

#include <string.h>

enum {
  ST_LINE_START = 0, /* at the start of a line */
  ST_DOT,            /* the line so far is "." */
  ST_DOT_CR,         /* the line so far is ".\r" */
  ST_MID,            /* inside a line */
  ST_CR,             /* inside a line, just after "\r" */
  ST_LOOSE_START,    /* loose discard: at a line start */
  ST_LOOSE_DOT,      /* loose discard: the line so far is "." */
  ST_LOOSE_MID,      /* loose discard: inside a line */
  ST_LOOSE_ENDED     /* loose discard: the violation itself ended a "." line */
};

/* Flag kept in state's high bit: the previous line ended in a normalised
   bare LF, so a following "." line is content, not end-of-data (Postfix's
   "normalize" requires exactly CRLF . CRLF). */
#define ST_AFTER_BARE_LF 0x80u
#define ST_MASK 0x7fu

void sl_data_init(sl_data *d, uint32_t text_line_max, uint64_t size_max,
                  int normalize_lf) {
  memset(d, 0, sizeof(*d));
  d->text_max = text_line_max > 2 ? text_line_max - 2 : 0;
  d->size_max = size_max;
  d->normalize_lf = normalize_lf ? 1 : 0;
  d->state = ST_LINE_START;
}

void sl_data_discard(sl_data *d, int loose) {
  d->discard = 1;
  if (loose && !d->loose_end) {
    d->loose_end = 1;
    uint8_t st = d->state & ST_MASK;
    /* Where a smuggling violation left off, in loose terms (a CR or LF it
       stopped at ended a line); otherwise a "." already seen at a line
       start still counts. */
    d->state = d->loose_state                         ? d->loose_state
               : st == ST_DOT                         ? ST_LOOSE_DOT
               : (st == ST_LINE_START || st == ST_CR) ? ST_LOOSE_START
                                                      : ST_LOOSE_MID;
  }
}

/* Index of the first CR, LF or NUL in p[0..n), or n.  Eight bytes at a time
   with the exact "has zero byte" test; the tail byte by byte. */
static size_t scan_special(const uint8_t *p, size_t n) {
  const uint64_t ones = 0x0101010101010101ull;
  const uint64_t highs = 0x8080808080808080ull;
  const uint64_t crs = ones * '\r', lfs = ones * '\n';
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    uint64_t a = v ^ crs, b = v ^ lfs;
    uint64_t z = ((a - ones) & ~a) | ((b - ones) & ~b) | ((v - ones) & ~v);
    if (z & highs)
      break;
  }
  for (; i < n; i++)
    if (p[i] == '\r' || p[i] == '\n' || p[i] == 0)
      break;
  return i;
}

static sl_data_status violation(sl_data *d, sl_violation v, uint8_t st,
                                size_t i, size_t o, size_t *consumed,
                                size_t *produced) {
  d->violation = v;
  d->state = st; /* the refused message is read on from here */
  d->loose_state = 0;
  *consumed = i;
  *produced = o;
  return SL_DATA_VIOLATION;
}

/* A smuggling violation: the message will be read loosely to its end, from
   the state the offending byte leaves (see sl_data_discard). */
static sl_data_status smuggled(sl_data *d, sl_violation v, uint8_t loose,
                               size_t i, size_t o, size_t *consumed,
                               size_t *produced) {
  violation(d, v, ST_MID, i, o, consumed, produced);
  d->loose_state = loose;
  return SL_DATA_VIOLATION;
}

/* Loose discard: any of CR, LF, CRLF ends a line; a "." line ends it all. */
static sl_data_status run_loose(sl_data *d, const uint8_t *in, size_t inlen,
                                size_t *consumed, size_t *produced) {
  uint8_t st = d->state;
  *produced = 0;
  if (st == ST_LOOSE_ENDED) {
    d->state = ST_LOOSE_START;
    *consumed = 0;
    return SL_DATA_END;
  }
  for (size_t i = 0; i < inlen; i++) {
    uint8_t c = in[i];
    int eol = c == '\r' || c == '\n';
    if (st == ST_LOOSE_DOT && eol) {
      d->state = ST_LOOSE_START;
      *consumed = i + 1;
      return SL_DATA_END;
    }
    if (eol)
      st = ST_LOOSE_START;
    else if (st == ST_LOOSE_START && c == '.')
      st = ST_LOOSE_DOT;
    else
      st = ST_LOOSE_MID;
  }
  d->state = st;
  *consumed = inlen;
  return SL_DATA_MORE;
}

sl_data_status sl_data_run(sl_data *d, const uint8_t *in, size_t inlen,
                           uint8_t *out, size_t outcap, size_t *consumed,
                           size_t *produced) {
  if (d->loose_end)
    return run_loose(d, in, inlen, consumed, produced);

  const int w = !d->discard; /* write output */
  size_t i = 0, o = 0;
  uint8_t st = d->state & ST_MASK;
  uint8_t after_bare = d->state & ST_AFTER_BARE_LF;

  /* Each step below writes at most 4 bytes, and a line's content at least
     one: keep that much room. */
  while (i < inlen && (!w || o + 4 <= outcap)) {
    uint8_t c = in[i];
    switch (st) {
    case ST_LINE_START:
      if (c == '.') {
        st = ST_DOT;
        i++;
        break;
      }
      after_bare = 0;
      st = ST_MID;
      break; /* the byte is handled as line content */
    case ST_DOT:
      if (c == '\r') {
        st = ST_DOT_CR;
        i++;
        break;
      }
      if (c == '\n' && !d->normalize_lf)
        return smuggled(d, SL_VIOL_BARE_LF, ST_LOOSE_ENDED, i + 1, o, consumed,
                        produced);
      /* ".X": the dot was stuffing; redo it only if X is a dot. */
      if (c == '.') {
        if (w)
          out[o++] = '.';
      } else if (c == '\n') {
        /* normalise ".<LF>": the content line is "." and needs stuffing */
        if (w) {
          memcpy(out + o, "..", 2);
          o += 2;
        }
        st = ST_CR; /* the LF is consumed below as the line end */
        after_bare = ST_AFTER_BARE_LF;
        d->line_len = 1;
        d->size += 1; /* checked with the line end, in ST_CR */
        break;
      }
      after_bare = 0;
      st = ST_MID;
      break;
    case ST_DOT_CR:
      if (c != '\n')
        return smuggled(d, SL_VIOL_BARE_CR, ST_LOOSE_ENDED, i, o, consumed,
                        produced);
      i++;
      if (after_bare) {
        /* "." after a normalised bare LF is content, not the end */
        if (w) {
          memcpy(out + o, "..\r", 3);
          o += 3;
        }
        if (w)
          out[o++] = '\n';
        d->size += 3;
        after_bare = 0;
        st = ST_LINE_START;
        d->line_len = 0;
        if (!d->discard && d->size_max && d->size > d->size_max)
          return violation(d, SL_VIOL_SIZE, st, i, o, consumed, produced);
        break;
      }
      if (w) {
        memcpy(out + o, ".\r\n", 3);
        o += 3;
      }
      d->state = ST_LINE_START;
      d->line_len = 0;
      *consumed = i;
      *produced = o;
      return SL_DATA_END;
    case ST_MID: {
      size_t room = w ? outcap - o - 3 : inlen - i;
      size_t avail = inlen - i < room ? inlen - i : room;
      size_t n = scan_special(in + i, avail);
      if (n && !d->discard) {
        /* Stop at the exact byte that breaks a limit, so the violation and
           where it is reported never depend on how the input was split. */
        size_t line_room =
            d->line_len < d->text_max ? d->text_max - d->line_len : 0;
        uint64_t size_room = !d->size_max            ? UINT64_MAX
                             : d->size < d->size_max ? d->size_max - d->size
                                                     : 0;
        if (n > line_room || n > size_room) {
          /* up to and including the offending byte */
          size_t k =
              (line_room <= size_room ? line_room : (size_t)size_room) + 1;
          if (w)
            memcpy(out + o, in + i, k);
          o += w ? k : 0;
          i += k;
          d->line_len += (uint32_t)k;
          d->size += k;
          return violation(
              d, k == line_room + 1 ? SL_VIOL_LINE_TOO_LONG : SL_VIOL_SIZE,
              ST_MID, i, o, consumed, produced);
        }
      }
      if (n) {
        if (w)
          memcpy(out + o, in + i, n);
        o += w ? n : 0;
        i += n;
        d->line_len += (uint32_t)n;
        d->size += n;
        break;
      }
      if (c == 0)
        return smuggled(d, SL_VIOL_NUL, ST_LOOSE_MID, i + 1, o, consumed,
                        produced);
      if (c == '\r') {
        st = ST_CR;
        i++;
        break;
      }
      /* bare LF */
      if (!d->normalize_lf)
        return smuggled(d, SL_VIOL_BARE_LF, ST_LOOSE_START, i + 1, o, consumed,
                        produced);
      if (w) {
        memcpy(out + o, "\r\n", 2);
        o += 2;
      }
      i++;
      d->size += 2;
      d->line_len = 0;
      st = ST_LINE_START;
      after_bare = ST_AFTER_BARE_LF;
      if (!d->discard && d->size_max && d->size > d->size_max)
        return violation(d, SL_VIOL_SIZE, st, i, o, consumed, produced);
      break;
    }
    case ST_CR:
      if (c != '\n')
        return smuggled(d, SL_VIOL_BARE_CR, ST_LOOSE_START, i, o, consumed,
                        produced);
      if (w) {
        memcpy(out + o, "\r\n", 2);
        o += 2;
      }
      i++;
      d->size += 2;
      d->line_len = 0;
      st = ST_LINE_START;
      if (!d->discard && d->size_max && d->size > d->size_max)
        return violation(d, SL_VIOL_SIZE, ST_LINE_START, i, o, consumed,
                         produced);
      break;
    default:
      return smuggled(d, SL_VIOL_BARE_CR, ST_LOOSE_MID, i, o, consumed,
                      produced);
    }
  }
  d->state = (uint8_t)(st | after_bare);
  *consumed = i;
  *produced = o;
  return SL_DATA_MORE;
}

sl_violation sl_bdat_check(uint8_t *state, const uint8_t *in, size_t len,
                           size_t *consumed) {
  size_t i = 0;
  while (i < len) {
    if (*state) { /* a CR ended the previous piece */
      if (in[i] != '\n') {
        *consumed = i;
        return SL_VIOL_BARE_CR;
      }
      *state = 0;
      i++;
      continue;
    }
    i += scan_special(in + i, len - i);
    if (i == len)
      break;
    uint8_t c = in[i++];
    if (c == 0) {
      *consumed = i;
      return SL_VIOL_NUL;
    }
    if (c == '\n') {
      *consumed = i;
      return SL_VIOL_BARE_LF;
    }
    if (i < len) {
      if (in[i] != '\n') {
        *consumed = i;
        return SL_VIOL_BARE_CR;
      }
      i++;
    } else {
      *state = 1;
    }
  }
  *consumed = len;
  return SL_VIOL_NONE;
}

void sl_stuff_init(sl_stuff *s, uint32_t text_line_max) {
  memset(s, 0, sizeof(*s));
  s->text_max = text_line_max > 2 ? text_line_max - 2 : 0;
}

sl_violation sl_stuff_run(sl_stuff *s, const uint8_t *in, size_t len,
                          uint8_t *out, size_t outcap, size_t *consumed,
                          size_t *produced) {
  size_t i = 0, o = 0;
  sl_violation v = SL_VIOL_NONE;
  while (i < len && o + 2 <= outcap) {
    uint8_t c = in[i];
    if (s->cr) {
      if (c != '\n') {
        v = SL_VIOL_BARE_CR;
        break;
      }
      s->cr = 0;
      s->mid = 0;
      s->line_len = 0;
      out[o++] = '\r';
      out[o++] = '\n';
      i++;
      continue;
    }
    if (c == '\r') {
      s->cr = 1;
      i++;
      continue;
    }
    if (c == '\n') {
      v = SL_VIOL_BARE_LF;
      break;
    }
    if (c == 0) {
      v = SL_VIOL_NUL;
      break;
    }
    if (++s->line_len > s->text_max) {
      v = SL_VIOL_LINE_TOO_LONG;
      break;
    }
    if (!s->mid && c == '.')
      out[o++] = '.'; /* transparency (RFC 5321 4.5.2) */
    s->mid = 1;
    out[o++] = c;
    i++;
  }
  *consumed = v == SL_VIOL_NONE ? i : i + 1;
  *produced = o;
  return v;
}

size_t sl_stuff_end(sl_stuff *s, uint8_t *out) {
  size_t o = 0;
  if (s->mid) {
    out[o++] = '\r';
    out[o++] = '\n';
  }
  memcpy(out + o, ".\r\n", 3);
  o += 3;
  s->mid = 0;
  s->line_len = 0;
  return o;
}
