/*
 * The SMTP side of a session: the PROXY header, command parsing and replies,
 * and DATA/BDAT framing.  Nothing here touches a socket: input is taken from
 * the session's buffer and replies are appended to its output buffer.
 */
#include "sink.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---------------------------------------------------------------- output */

static void reply_raw(struct sink_session *s, const char *text, size_t len) {
  const struct sink_config *cfg = &s->sk->cfg;
  if (len > SINK_OUT_SIZE - s->out_len) {
    /* Cannot happen while SINK_OUT_RESERVE holds; keep the stream
     * well-formed by dropping the session rather than a partial reply. */
    s->mode = M_CLOSING;
    s->eof = true;
    return;
  }
  size_t before = s->out_len;
  memcpy(s->out + s->out_len, text, len);
  s->out_len += len;
  if (cfg->delay_ms && !s->waiting) {
    s->out_hold = before;
    s->waiting = true;
    sink_delay_push(s, sink_now_ms() + cfg->delay_ms);
  }
}

static void reply(struct sink_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reply(struct sink_session *s, const char *fmt, ...) {
  char buf[SINK_REPLY_MAX + 1];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 2, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  size_t len = (size_t)n;
  if (len > sizeof buf - 3)
    len = sizeof buf - 3;
  buf[len++] = '\r';
  buf[len++] = '\n';
  reply_raw(s, buf, len);
}

/* ---------------------------------------------------------- transactions */

static void txn_reset(struct sink_session *s) {
  sink_store_discard(s);
  s->mail_seen = false;
  s->data_used = false;
  s->bdat_used = false;
  s->bdat_fail = false;
  s->bdat_last = false;
  s->too_long = false;
  s->too_big = false;
  s->rcpts = 0;
  s->msg_bytes = 0;
  s->raw_bytes = 0;
  s->bdat_remaining = 0;
}

/* Ends a transaction (DATA's terminator or BDAT LAST) with one reply. */
static void txn_finish(struct sink_session *s) {
  const struct sink_config *cfg = &s->sk->cfg;
  if (s->too_long) {
    s->sk->st.rejected++;
    reply(s, "500 5.5.2 Error: message line longer than %zu bytes",
          cfg->max_line);
  } else if (s->too_big) {
    s->sk->st.rejected++;
    reply(s, "552 5.3.4 Error: message file too big");
  } else if (cfg->tempfail_data) {
    s->sk->st.rejected++;
    reply(s,
          "451 4.3.0 Error: temporary failure (sluice-sink --tempfail-data)");
  } else {
    uint64_t id = ++s->sk->msg_seq;
    if (sink_store_commit(s, id) < 0) {
      s->sk->st.rejected++;
      txn_reset(s);
      reply(s, "451 4.3.0 Error: cannot store message");
      return;
    }
    s->sk->st.messages++;
    s->sk->st.bytes += s->msg_bytes;
    reply(s, "250 2.0.0 Ok: queued as %" PRIu64, id);
  }
  txn_reset(s);
}

static bool verb_is(const char *line, size_t len, const char *verb) {
  size_t n = strlen(verb);
  if (len < n || strncasecmp(line, verb, n) != 0)
    return false;
  return len == n || line[n] == ' ';
}

/* Finds "<path>" at p; returns the index just past '>' or 0 on error. */
static size_t parse_path(const char *p, size_t len) {
  if (len < 2 || p[0] != '<')
    return 0;
  bool quoted = false;
  for (size_t i = 1; i < len; i++) {
    if (quoted && p[i] == '\\') {
      i++;
      continue;
    }
    if (p[i] == '"')
      quoted = !quoted;
    else if (!quoted && p[i] == '>')
      return i + 1;
  }
  return 0;
}

static bool reject_match(const struct sink *sk, const char *addr) {
  for (size_t i = 0; i < sk->cfg.n_reject; i++)
    if (strstr(addr, sk->cfg.reject_rcpt[i]))
      return true;
  return false;
}

/* Parses "MAIL FROM:" / "RCPT TO:" arguments into path and params. */
static bool split_path_args(const char *arg, size_t alen, char *path,
                            size_t psize, const char **params) {
  while (alen && *arg == ' ') {
    arg++;
    alen--;
  }
  size_t end = parse_path(arg, alen);
  if (!end || end >= psize)
    return false;
  if (end < alen && arg[end] != ' ')
    return false;
  memcpy(path, arg, end);
  path[end] = '\0';
  const char *p = arg + end;
  while (*p == ' ')
    p++;
  *params = p;
  return true;
}

void sink_send_greeting(struct sink_session *s) {
  const struct sink_config *cfg = &s->sk->cfg;
  reply(s, "220 %s ESMTP sluice-sink", cfg->name);
}

static void cmd_ehlo(struct sink_session *s, const char *line, size_t len,
                     bool ehlo) {
  const struct sink_config *cfg = &s->sk->cfg;
  if (len < 6 || line[5] == ' ') {
    reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
    return;
  }
  txn_reset(s);
  snprintf(s->helo, sizeof s->helo, "%.*s", (int)len, line);
  s->helo_seen = true;
  if (!ehlo) {
    reply(s, "250 %s", cfg->name);
    return;
  }
  if (cfg->garbage) {
    /* A reply a strict parser must refuse: an unnumbered line inside a
     * multi-line reply, then a bad code. */
    static const char junk[] =
        "250-sluice-sink\r\nthis is not smtp\r\n25x garbage\r\n";
    reply_raw(s, junk, sizeof junk - 1);
    return;
  }
  char buf[SINK_OUT_RESERVE];
  int n = snprintf(
      buf, sizeof buf,
      "250-%s\r\n250-PIPELINING\r\n250-SIZE %" PRIu64 "\r\n"
      "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n"
      "250-DSN\r\n%s250 CHUNKING\r\n",
      cfg->name, cfg->size_limit,
      cfg->xclient
          ? "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT\r\n"
          : "");
  if (n > 0)
    reply_raw(s, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void cmd_mail(struct sink_session *s, const char *line, size_t len) {
  const struct sink_config *cfg = &s->sk->cfg;
  if (len < 10 || strncasecmp(line, "MAIL FROM:", 10) != 0) {
    reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
    return;
  }
  if (!s->helo_seen) {
    reply(s, "503 5.5.1 Error: send HELO/EHLO first");
    return;
  }
  if (s->mail_seen) {
    reply(s, "503 5.5.1 Error: nested MAIL command");
    return;
  }
  char path[SINK_REPLY_MAX];
  const char *params;
  if (!split_path_args(line + 10, len - 10, path, sizeof path, &params)) {
    reply(s, "501 5.1.7 Bad sender address syntax");
    return;
  }
  /* SIZE= is checked against the advertised limit, as a real MTA would. */
  for (const char *p = params; *p;) {
    if (strncasecmp(p, "SIZE=", 5) == 0) {
      unsigned long long v = strtoull(p + 5, NULL, 10);
      if (cfg->size_limit && v > cfg->size_limit) {
        reply(s, "552 5.3.4 Message size exceeds fixed limit");
        return;
      }
    }
    const char *sp = strchr(p, ' ');
    if (!sp)
      break;
    p = sp + 1;
  }
  if (!sink_store_open(s)) {
    reply(s, "451 4.3.0 Error: cannot store message");
    return;
  }
  s->mail_seen = true;
  sink_store_env_printf(s, "mail: %s%s%s\n", path, *params ? " " : "", params);
  reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct sink_session *s, const char *line, size_t len) {
  if (len < 8 || strncasecmp(line, "RCPT TO:", 8) != 0) {
    reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
    return;
  }
  if (!s->mail_seen) {
    reply(s, "503 5.5.1 Error: need MAIL command");
    return;
  }
  char path[SINK_REPLY_MAX];
  const char *params;
  if (!split_path_args(line + 8, len - 8, path, sizeof path, &params) ||
      strlen(path) < 3) {
    reply(s, "501 5.1.3 Bad recipient address syntax");
    return;
  }
  if (reject_match(s->sk, path)) {
    reply(s, "550 5.1.1 %.400s: Recipient address rejected: User unknown",
          path);
    return;
  }
  if (s->rcpts >= SINK_MAX_RCPTS) {
    reply(s, "452 4.5.3 Error: too many recipients");
    return;
  }
  s->rcpts++;
  sink_store_env_printf(s, "rcpt: %s%s%s\n", path, *params ? " " : "", params);
  reply(s, "250 2.1.5 Ok");
}

static void cmd_data(struct sink_session *s) {
  if (!s->mail_seen) {
    reply(s, "503 5.5.1 Error: need RCPT command");
    return;
  }
  if (!s->rcpts) {
    reply(s, "554 5.5.1 Error: no valid recipients");
    return;
  }
  if (s->bdat_used) {
    reply(s, "503 5.5.1 Error: DATA after BDAT");
    return;
  }
  s->data_used = true;
  s->mode = M_DATA;
  s->dstate = DS_LS;
  s->line_len = 0;
  reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct sink_session *s, const char *line, size_t len) {
  const char *p = line + 4;
  const char *end = line + len;
  while (p < end && *p == ' ')
    p++;
  uint64_t n = 0;
  const char *digits = p;
  while (p < end && isdigit((unsigned char)*p)) {
    if (n > (UINT64_MAX - 9) / 10) {
      reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
      return;
    }
    n = n * 10 + (uint64_t)(*p - '0');
    p++;
  }
  bool last = false;
  if (p == digits) {
    reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
    return;
  }
  while (p < end && *p == ' ')
    p++;
  if (p < end) {
    if ((size_t)(end - p) == 4 && strncasecmp(p, "LAST", 4) == 0)
      last = true;
    else {
      /* The chunk's size is unknowable from a bad command line, so the
       * bytes that follow cannot be skipped: the session is lost. */
      reply(s, "501 5.5.4 Syntax: BDAT count [LAST]");
      s->mode = M_CLOSING;
      return;
    }
  }
  if (!s->mail_seen || !s->rcpts || s->data_used)
    s->bdat_fail = true;
  if (!s->bdat_used)
    s->raw_bytes = 0;
  s->bdat_used = true;
  s->bdat_last = last;
  s->bdat_remaining = n;
  s->mode = M_BDAT;
}

static void cmd_xclient(struct sink_session *s, const char *line, size_t len) {
  const struct sink_config *cfg = &s->sk->cfg;
  if (!cfg->xclient) {
    reply(s, "502 5.5.1 Error: command not implemented");
    return;
  }
  if (s->mail_seen) {
    reply(s, "503 5.5.1 Error: MAIL transaction in progress");
    return;
  }
  const char *args = line + 7;
  size_t alen = len - 7;
  while (alen && *args == ' ') {
    args++;
    alen--;
  }
  if (!alen || !memchr(args, '=', alen)) {
    reply(s, "501 5.5.4 Syntax: XCLIENT attribute=value...");
    return;
  }
  size_t cur = strlen(s->xclient);
  if (cur + alen + 2 > sizeof s->xclient) {
    reply(s, "501 5.5.4 Error: XCLIENT attributes too long");
    return;
  }
  if (cur)
    s->xclient[cur++] = ' ';
  memcpy(s->xclient + cur, args, alen);
  s->xclient[cur + alen] = '\0';
  /* As in Postfix: XCLIENT starts the session over, with a new greeting. */
  s->helo_seen = false;
  s->helo[0] = '\0';
  sink_send_greeting(s);
}

static void handle_command(struct sink_session *s, const char *line,
                           size_t len) {
  if (memchr(line, '\0', len)) {
    reply(s, "500 5.5.2 Error: NUL in command");
    return;
  }
  if (verb_is(line, len, "EHLO"))
    cmd_ehlo(s, line, len, true);
  else if (verb_is(line, len, "HELO"))
    cmd_ehlo(s, line, len, false);
  else if (verb_is(line, len, "MAIL"))
    cmd_mail(s, line, len);
  else if (verb_is(line, len, "RCPT"))
    cmd_rcpt(s, line, len);
  else if (verb_is(line, len, "DATA")) {
    if (len != 4)
      reply(s, "501 5.5.4 Syntax: DATA");
    else
      cmd_data(s);
  } else if (verb_is(line, len, "BDAT"))
    cmd_bdat(s, line, len);
  else if (verb_is(line, len, "RSET")) {
    txn_reset(s);
    reply(s, "250 2.0.0 Ok");
  } else if (verb_is(line, len, "NOOP"))
    reply(s, "250 2.0.0 Ok");
  else if (verb_is(line, len, "QUIT")) {
    txn_reset(s);
    reply(s, "221 2.0.0 Bye");
    s->mode = M_CLOSING;
  } else if (verb_is(line, len, "VRFY"))
    reply(s, "252 2.0.0 Cannot VRFY user, but will accept message");
  else if (verb_is(line, len, "HELP"))
    reply(s, "214 2.0.0 sluice-sink: see RFC 5321");
  else if (verb_is(line, len, "XCLIENT"))
    cmd_xclient(s, line, len);
  else
    reply(s, "500 5.5.2 Error: command not recognized");
}

static void data_mid(struct sink_session *s, unsigned char c, char *chunk,
                     size_t *n) {
  const struct sink_config *cfg = &s->sk->cfg;
  chunk[(*n)++] = (char)c;
  s->dstate = c == '\r' ? DS_CR : DS_MID;
  if (++s->line_len > cfg->max_line)
    s->too_long = true;
}

/* Feeds DATA content; returns true when the terminator was consumed. */
static bool data_feed(struct sink_session *s) {
  const struct sink_config *cfg = &s->sk->cfg;
  char chunk[SINK_IN_SIZE];
  size_t n = 0;
  const unsigned char *p = (const unsigned char *)s->in + s->in_off;
  const unsigned char *end = (const unsigned char *)s->in + s->in_len;
  bool ended = false;
  while (p < end && !ended) {
    if (cfg->close_after && s->raw_bytes >= cfg->close_after)
      break;
    unsigned char c = *p++;
    s->raw_bytes++;
    switch (s->dstate) {
    case DS_LS:
      if (c == '.') {
        s->dstate = DS_DOT;
        s->line_len = 1;
      } else {
        data_mid(s, c, chunk, &n);
      }
      break;
    case DS_DOT:
      if (c == '\r') {
        s->dstate = DS_DOTCR;
        s->line_len++;
      } else {
        data_mid(s, c, chunk, &n); /* the leading dot is dropped */
      }
      break;
    case DS_DOTCR:
      if (c == '\n') {
        ended = true;
      } else {
        /* ".\r" not followed by LF: an unstuffed line starting in CR */
        chunk[n++] = '\r';
        s->dstate = DS_CR;
        data_mid(s, c, chunk, &n);
      }
      break;
    case DS_CR:
      if (c == '\n') {
        chunk[n++] = '\n';
        if (s->line_len + 1 > cfg->max_line)
          s->too_long = true;
        s->dstate = DS_LS;
        s->line_len = 0;
      } else {
        data_mid(s, c, chunk, &n);
      }
      break;
    case DS_MID:
      data_mid(s, c, chunk, &n);
      break;
    }
  }
  s->in_off = (size_t)((const char *)p - s->in);
  sink_store_content(s, chunk, n);
  return ended;
}

static bool close_after_hit(const struct sink_session *s) {
  const struct sink_config *cfg = &s->sk->cfg;
  return cfg->close_after && s->raw_bytes >= cfg->close_after;
}

static void bdat_feed(struct sink_session *s) {
  const struct sink_config *cfg = &s->sk->cfg;
  size_t avail = s->in_len - s->in_off;
  size_t take = avail;
  if ((uint64_t)take > s->bdat_remaining)
    take = (size_t)s->bdat_remaining;
  if (cfg->close_after && s->raw_bytes + take > cfg->close_after)
    take = (size_t)(cfg->close_after - s->raw_bytes);
  if (!s->bdat_fail)
    sink_store_content(s, s->in + s->in_off, take);
  s->in_off += take;
  s->raw_bytes += take;
  s->bdat_remaining -= take;
}

static void bdat_done(struct sink_session *s) {
  s->mode = M_CMD;
  if (s->bdat_fail) {
    reply(s, "503 5.5.1 Error: BDAT without valid transaction");
    if (s->bdat_last)
      txn_reset(s);
    return;
  }
  if (s->bdat_last) {
    txn_finish(s);
    return;
  }
  reply(s, "250 2.0.0 Ok: %" PRIu64 " octets so far", s->msg_bytes);
}

static const unsigned char proxy_v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Returns 1 when a header was consumed, 0 when more bytes are needed, -1 on
 * a malformed header. */
static int proxy_v1(struct sink_session *s) {
  const char *p = s->in + s->in_off;
  size_t avail = s->in_len - s->in_off;
  const char *lf = memchr(p, '\n', avail);
  if (!lf)
    return avail >= SINK_PROXY_V1_MAX ? -1 : 0;
  size_t len = (size_t)(lf - p) + 1;
  if (len > SINK_PROXY_V1_MAX || len < 8 || p[len - 2] != '\r')
    return -1;
  char line[SINK_PROXY_V1_MAX + 1];
  memcpy(line, p, len - 2);
  line[len - 2] = '\0';
  s->in_off += len;
  if (strcmp(line, "PROXY UNKNOWN") == 0 ||
      strncmp(line, "PROXY UNKNOWN ", 14) == 0) {
    snprintf(s->proxy, sizeof s->proxy, "UNKNOWN");
    return 1;
  }
  char proto[8], src[64], dst[64];
  unsigned sport, dport;
  char extra;
  if (sscanf(line, "PROXY %7s %63s %63s %u %u%c", proto, src, dst, &sport,
             &dport, &extra) != 5)
    return -1;
  unsigned char tmp[16];
  int af = strcmp(proto, "TCP4") == 0   ? AF_INET
           : strcmp(proto, "TCP6") == 0 ? AF_INET6
                                        : 0;
  if (!af || inet_pton(af, src, tmp) != 1 || inet_pton(af, dst, tmp) != 1 ||
      sport > 65535 || dport > 65535)
    return -1;
  if (af == AF_INET)
    snprintf(s->proxy, sizeof s->proxy, "v1 TCP4 %s:%u %s:%u", src, sport, dst,
             dport);
  else
    snprintf(s->proxy, sizeof s->proxy, "v1 TCP6 [%s]:%u [%s]:%u", src, sport,
             dst, dport);
  return 1;
}

static int proxy_v2(struct sink_session *s) {
  const unsigned char *p = (const unsigned char *)s->in + s->in_off;
  size_t avail = s->in_len - s->in_off;
  if (avail < 16)
    return 0;
  size_t len = ((size_t)p[14] << 8) | p[15];
  if (16 + len > SINK_IN_SIZE)
    return -1;
  if (avail < 16 + len)
    return 0;
  if ((p[12] & 0xf0) != 0x20)
    return -1;
  unsigned cmd = p[12] & 0x0f;
  unsigned fam = p[13];
  const unsigned char *a = p + 16;
  s->in_off += 16 + len;
  if (cmd == 0) {
    snprintf(s->proxy, sizeof s->proxy, "v2 LOCAL");
    return 1;
  }
  if (cmd != 1)
    return -1;
  char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
  if (fam == 0x11 && len >= 12) {
    inet_ntop(AF_INET, a, src, sizeof src);
    inet_ntop(AF_INET, a + 4, dst, sizeof dst);
    snprintf(s->proxy, sizeof s->proxy, "v2 TCP4 %s:%u %s:%u", src,
             (unsigned)(a[8] << 8 | a[9]), dst, (unsigned)(a[10] << 8 | a[11]));
  } else if (fam == 0x21 && len >= 36) {
    inet_ntop(AF_INET6, a, src, sizeof src);
    inet_ntop(AF_INET6, a + 16, dst, sizeof dst);
    snprintf(s->proxy, sizeof s->proxy, "v2 TCP6 [%s]:%u [%s]:%u", src,
             (unsigned)(a[32] << 8 | a[33]), dst,
             (unsigned)(a[34] << 8 | a[35]));
  } else {
    snprintf(s->proxy, sizeof s->proxy, "v2 UNSPEC");
  }
  return 1;
}

static int proxy_header(struct sink_session *s) {
  const char *p = s->in + s->in_off;
  size_t avail = s->in_len - s->in_off;
  if (p[0] == 'P') {
    if (memcmp(p, "PROXY ", avail < 6 ? avail : 6) != 0)
      return -1;
    return avail < 6 ? 0 : proxy_v1(s);
  }
  if (memcmp(p, proxy_v2_sig, avail < 12 ? avail : 12) != 0)
    return -1;
  return avail < 12 ? 0 : proxy_v2(s);
}

/* Consumes buffered input as far as the state allows. */
void sink_session_process(struct sink_session *s) {
  const struct sink_config *cfg = &s->sk->cfg;
  s->out_full = false;
  while (!s->waiting && s->mode != M_CLOSING) {
    size_t avail = s->in_len - s->in_off;
    if (s->mode == M_STALL) {
      s->in_off = s->in_len;
      break;
    }
    if (SINK_OUT_SIZE - s->out_len < SINK_OUT_RESERVE) {
      s->out_full = true;
      break;
    }
    if (s->mode == M_PROXY) {
      if (!avail)
        break;
      int r = proxy_header(s);
      if (r == 0)
        break;
      if (r < 0) {
        sink_log(s->sk, "bad PROXY header from %s", s->peer);
        s->mode = M_CLOSING;
        break;
      }
      s->mode = M_CMD;
      sink_send_greeting(s);
      if (cfg->stall)
        s->mode = M_STALL;
      continue;
    }
    if (s->mode == M_DATA) {
      if (!avail)
        break;
      bool ended = data_feed(s);
      /* Fault injection: a message that reaches N bytes is never
       * answered, the connection just goes away mid-transaction. */
      if (close_after_hit(s)) {
        s->mode = M_CLOSING;
        s->eof = true;
        break;
      }
      if (ended) {
        s->mode = M_CMD;
        txn_finish(s);
      }
      continue;
    }
    if (s->mode == M_BDAT) {
      if (s->bdat_remaining && !avail)
        break;
      bdat_feed(s);
      if (close_after_hit(s) && (s->bdat_remaining || s->bdat_last)) {
        s->mode = M_CLOSING;
        s->eof = true;
        break;
      }
      if (!s->bdat_remaining)
        bdat_done(s);
      continue;
    }
    /* M_CMD */
    if (!avail)
      break;
    char *line = s->in + s->in_off;
    char *lf = memchr(line, '\n', avail);
    if (s->discarding) {
      if (!lf) {
        s->in_off = s->in_len;
        break;
      }
      s->in_off += (size_t)(lf - line) + 1;
      s->discarding = false;
      continue;
    }
    if (!lf) {
      if (avail > cfg->max_line || avail == SINK_IN_SIZE) {
        reply(s, "500 5.5.2 Error: line too long");
        s->in_off = s->in_len;
        s->discarding = true;
      }
      break;
    }
    size_t len = (size_t)(lf - line) + 1;
    s->in_off += len;
    if (len > cfg->max_line) {
      reply(s, "500 5.5.2 Error: line too long");
      continue;
    }
    if (len < 2 || line[len - 2] != '\r') {
      reply(s, "500 5.5.2 Error: bare LF in command");
      continue;
    }
    line[len - 2] = '\0'; /* the handlers treat the line as a C string */
    handle_command(s, line, len - 2);
  }
  if (s->in_off == s->in_len) {
    s->in_off = s->in_len = 0;
  } else if (s->in_off > 0 && s->in_len == SINK_IN_SIZE) {
    memmove(s->in, s->in + s->in_off, s->in_len - s->in_off);
    s->in_len -= s->in_off;
    s->in_off = 0;
  }
}
