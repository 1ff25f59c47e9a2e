/*
 * sl_relay_replies.c: replies to the client, in command order: the local reply
 * table, the reply queue, rendering (local replies, re-framed upstream
 * replies, the greeting) and the step that sends the queue's head.
 *
 * Ordering.  Each client command puts one entry on a small queue at the
 * moment it is consumed: either a local reply or "the upstream's reply to
 * what was just sent".  Replies are emitted from the head only, so local and
 * relayed replies interleave in command order (RFC 2920) and every command
 * gets exactly one.  Upstream reply bytes are parsed only when an upstream
 * entry is at the head, so an upstream can never answer ahead of its turn.
 */
#include <string.h>

#include "sl_caps.h"
#include "sl_data.h"
#include "sl_relay_int.h"
#include "sl_relay_replies.h"
#include "sl_reply.h"
#include "sluice/filter.h"

enum {
  RF_CLOSE = 1, /* the session ends once this reply is sent */
  RF_HOST = 2,  /* "<code> <enhanced> <hostname> <text>" (greetings,
                   closings) */
  RF_NOERR = 4  /* a refusal that does not count toward errors_max */
};

static const struct {
  uint16_t code;
  uint8_t flags;
  const char *text;
} replies[R_COUNT] = {
    [R_OK] = {250, 0, "2.0.0 Ok"},
    [R_BYE] = {221, RF_CLOSE, "2.0.0 Bye"},
    [R_HELP] = {214, 0,
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT"},
    [R_VRFY252] = {252, 0,
                   "2.5.0 Cannot VRFY user, but will accept message and "
                   "attempt delivery"},
    [R_VRFY502] = {502, 0, "5.5.1 VRFY and EXPN are disabled"},
    [R_UNKNOWN] = {500, 0, "5.5.2 Error: command not recognized"},
    [R_LINE_TOO_LONG] = {500, 0, "5.5.2 Error: line too long"},
    [R_BAD_CHAR] = {500, 0, "5.5.2 Error: bare CR, bare LF or NUL in command"},
    [R_SYNTAX] = {501, 0, "5.5.4 Syntax error in parameters or arguments"},
    [R_HELO_SYNTAX] = {501, 0, "5.5.4 Syntax: EHLO hostname"},
    [R_BAD_SENDER] = {501, 0, "5.1.7 Bad sender address syntax"},
    [R_BAD_RCPT] = {501, 0, "5.1.3 Bad recipient address syntax"},
    [R_PATH_TOO_LONG] = {501, 0, "5.1.3 Path too long"},
    [R_PARAM] = {555, 0, "5.5.4 Unsupported option"},
    [R_NEED_UTF8] = {553, 0, "5.6.7 Non-ASCII address requires SMTPUTF8"},
    [R_SIZE] = {552, 0, "5.3.4 Message size exceeds fixed limit"},
    [R_TOO_MANY_RCPT] = {452, 0, "4.5.3 Error: too many recipients"},
    [R_RCPT_OVERSHOOT] = {452, RF_NOERR, "4.5.3 Error: too many recipients"},
    [R_NEED_HELO] = {503, 0, "5.5.1 Error: send HELO/EHLO first"},
    [R_NEED_MAIL] = {503, 0, "5.5.1 Error: need MAIL command"},
    [R_NESTED_MAIL] = {503, 0, "5.5.1 Error: nested MAIL command"},
    [R_NEED_RCPT] = {503, 0, "5.5.1 Error: need RCPT command"},
    [R_TLS_READY] = {220, 0, "2.0.0 Ready to start TLS"},
    [R_TLS_UNAVAIL] = {502, 0, "5.5.1 Error: STARTTLS not available"},
    [R_TLS_ACTIVE] = {503, 0, "5.5.1 Error: TLS already active"},
    [R_AUTH_UNAVAIL] = {503, 0, "5.5.1 Error: authentication not enabled"},
    [R_AUTH_NEED_TLS] =
        {538, 0,
         "5.7.11 Encryption required for requested authentication mechanism"},
    [R_NOT_IMPL] = {502, 0, "5.5.1 Error: command not implemented"},
    [R_REJECTED] = {554, 0,
                    "5.7.1 Service unavailable; client rejected by policy"},
    [R_DROP] = {521, RF_CLOSE | RF_HOST,
                "5.7.1 Service unavailable; closing connection"},
    [R_TEMPFAIL] = {421, RF_CLOSE | RF_HOST,
                    "4.7.0 Service temporarily unavailable; try again later"},
    [R_NO_UPSTREAM] = {421, RF_CLOSE | RF_HOST,
                       "4.3.2 Service not available; no mail server reachable"},
    [R_UPSTREAM_LOST] =
        {451, 0,
         "4.4.2 Error: connection to the mail server lost; try again later"},
    [R_UPSTREAM_FAIL] =
        {451, 0, "4.3.0 Error: mail server unavailable; try again later"},
    [R_AUTH_LOST] = {421, RF_CLOSE | RF_HOST,
                     "4.4.2 Error: connection to the mail server lost; "
                     "reconnect and authenticate again"},
    [R_SMUGGLE] = {554, RF_CLOSE,
                   "5.6.0 Error: bare CR, bare LF or NUL in message; SMTP "
                   "smuggling refused"},
    [R_TEXT_TOO_LONG] = {554, 0, "5.6.0 Error: message line too long"},
    [R_MSG_SIZE] = {552, 0, "5.3.4 Error: message size exceeds fixed limit"},
    [R_TIMEOUT] = {421, RF_CLOSE | RF_HOST, "4.4.2 Error: timeout exceeded"},
    [R_TOO_MANY_ERRORS] = {421, RF_CLOSE | RF_HOST,
                           "4.7.0 Error: too many errors"},
    [R_TOO_MANY_JUNK] = {421, RF_CLOSE | RF_HOST,
                         "4.7.0 Error: too many junk commands"},
    [R_SYNC] = {554, RF_CLOSE, "5.5.0 Error: SMTP protocol synchronization"},
    [R_NONSMTP] = {221, RF_CLOSE,
                   "2.7.0 Error: I can break rules, too. Goodbye."},
    [R_GREETING] = {220, RF_HOST, "ESMTP"},
    [R_EHLO_LOCAL] = {250, 0, ""},
    [R_HELO_LOCAL] = {250, RF_HOST, ""},
    [R_BAD_UTF8] = {500, 0, "5.5.2 Error: bad UTF-8 syntax"},
    [R_8BIT] = {500, 0, "5.5.2 Error: non-ASCII command requires SMTPUTF8"},
    [R_HELO_8BIT] = {501, 0,
                     "5.5.2 Syntax: EHLO hostname (ASCII; IDNs as A-labels)"},
    [R_RELAY_DENIED] = {554, 0, "5.7.1 Relay access denied"},
    [R_RELAY_UNCONFIGURED] = {454, 0, "4.7.1 Relay access denied"},
    [R_SOURCE_ROUTE] = {554, 0,
                        "5.7.1 Relay access denied: source route refused"},
    [R_PERCENT_HACK] = {554, 0,
                        "5.7.1 Relay access denied: '%' or '@' in the local "
                        "part refused"},
    [R_BANG_PATH] = {554, 0, "5.7.1 Relay access denied: bang path refused"},
    /* RFC 6152 3: convert or refuse; sluice stores nothing to convert */
    [R_UP_NO_8BIT] = {550, 0,
                      "5.6.3 Error: 8-bit content needs a conversion the mail "
                      "server does not support"},
    /* RFC 6531 3.2: never forwarded to a server without SMTPUTF8 */
    [R_UP_NO_UTF8] = {553, 0,
                      "5.6.7 Error: the mail server does not support "
                      "SMTPUTF8"},
    /* a chunk taken on the way to DATA upstream: nothing is accepted yet */
    [R_BDAT_OK] = {250, 0, "2.0.0 Ok: chunk received"},
    /* the code is the upstream's refusal of DATA (bdat_fail_code) */
    [R_BDAT_FAILED] = {554, 0,
                       ".0.0 Error: the mail server refused the "
                       "message"},
    /* the filter's own line from frep (emit_local); these texts only
       when the pool had no buffer for it */
    [R_FILTER] = {550, 0, "5.7.1 Message rejected by content filter"},
    [R_FILTER_TEMP] = {451, 0,
                       "4.7.1 Message deferred by content filter; try again "
                       "later"},
    /* the driver's answer to SL_REQ_RCPT_CHECK (chk_code, chk_text); a
       greylisted recipient is the server's choice, not a client error */
    [R_CHECK] = {450, RF_NOERR, "4.7.1 Recipient address rejected"},
    /* Postfix's words for an accepted sender */
    [R_MAIL_HELD] = {250, 0, "2.1.0 Ok"},
    /* the mail server's refusal of the held MAIL (mail_fail_code, the
       text in chk); this text only without a chk buffer */
    [R_MAIL_FAILED] = {451, RF_NOERR,
                       "4.3.0 Error: the mail server refused the sender"},
};

/* ---- the reply queue ----------------------------------------------------- */

int sl__q_full(const sl_relay *r) {
  return r->q_len >= QUEUE_CAP || r->q_len >= r->lim->pipeline_max;
}

uint8_t sl__q_peek(const sl_relay *r) { return r->q[r->q_head]; }

void sl__q_push(sl_relay *r, uint8_t k) {
  unsigned slot = (r->q_head + r->q_len) % QUEUE_CAP;
  r->q[slot] = k;
  r->q_cmd[slot] = r->cmd_now;
  r->q_cur &= ~(1u << slot);
  r->q_sync &= ~(1u << slot);
  if (k == Q_UP_MAIL || k == Q_UP_RCPT)
    r->q_cur |= 1u << slot;
  r->q_len++;
}

/* A new transaction state starts (RSET, MAIL, EHLO, end of data): replies
   still owed to earlier MAIL/RCPT commands no longer change it. */
void sl__txn_reset(sl_relay *r) {
  r->mail_held = r->mail_fail = 0;
  sl__buf_release(r, &r->mailh);
  r->q_cur = 0;
  r->mail = 0;
  r->utf8_txn = 0;
  r->rcpts = 0;
  r->overshoot = 0;
}

void sl__msize_push(sl_relay *r, uint64_t size) {
  unsigned i = (r->msize_head + r->msize_len) % MSIZE_CAP;
  r->msize[i] = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
  r->mmark_pend = (uint8_t)(r->mmark_pend | 1u << i);
  r->msize_len++;
}

/* The newest end's terminator is written only now (a filtered message's
   end, held for the verdict when its size was pushed). */
void sl__msize_mark_newest(sl_relay *r) {
  if (r->msize_len) {
    unsigned i = (r->msize_head + r->msize_len - 1u) % MSIZE_CAP;
    r->mmark_pend = (uint8_t)(r->mmark_pend | 1u << i);
  }
}

/* uout ran empty: every end written so far is out. */
void sl__msize_out(sl_relay *r) {
  for (unsigned i = 0; r->mmark_pend && i < MSIZE_CAP; i++)
    if (r->mmark_pend & 1u << i)
      r->mmark[i] = (uint32_t)r->stats.upstream_bytes_in;
  r->mmark_pend = 0;
}

/* Does the reply at the head of uin start in bytes read before the oldest
   owed end of data was all out? */
static int reply_before_end(const sl_relay *r) {
  if (!r->msize_len)
    return 0;
  if (r->mmark_pend & 1u << r->msize_head)
    return 1;
  uint32_t start = (uint32_t)(r->stats.upstream_bytes_in - r->uin.len);
  return (int32_t)(start - r->mmark[r->msize_head]) < 0;
}

static uint64_t msize_pop(sl_relay *r) {
  if (!r->msize_len)
    return 0;
  uint32_t v = r->msize[r->msize_head];
  r->msize_head = (uint8_t)((r->msize_head + 1) % MSIZE_CAP);
  r->msize_len--;
  return v;
}

/* Every end-of-data reply still owed is gone (failed over to local
   replies, or the queue was dropped). */
void sl__msize_clear(sl_relay *r) {
  r->msize_head = r->msize_len = 0;
  r->mmark_pend = 0;
}

static int q_head_current(const sl_relay *r) {
  return (r->q_cur >> r->q_head) & 1u;
}

void sl__q_push_local(sl_relay *r, enum local_reply id) {
  sl__q_push(r, (uint8_t)(Q_LOCAL + id));
}

static void q_pop(sl_relay *r) {
  r->q_sync &= ~(1u << r->q_head);
  r->q_head = (uint8_t)((r->q_head + 1) % QUEUE_CAP);
  r->q_len--;
  r->t_release = SL_TSTAMP_NONE;
}

/* ---- replies to the client ----------------------------------------------- */

void sl__set_stage(sl_relay *r, sl_stage s) {
  if (r->stats.stage < s)
    r->stats.stage = (uint8_t)s;
}

void sl__client_close_after_reply(sl_relay *r, sl_end_reason why) {
  r->cl = CL_CLOSING;
  if (!r->stats.end_reason)
    r->stats.end_reason = (uint8_t)why;
}

/* Bookkeeping after a reply with code went out. */
static void replied(sl_relay *r, unsigned code) {
  if (code >= 400 && r->cl < CL_CLOSING) {
    r->stats.errors++;
    if (r->lim->errors_max && r->stats.errors >= r->lim->errors_max) {
      /* Commands read but not yet answered locally get no answer: the
         421 comes next whatever the client's write sizes were.  Replies
         owed by the upstream keep their place, unless a command left
         unanswered comes before one (the client would take that reply
         for the earlier command's).  Input is read no more, so content
         or an AUTH exchange the client is still sending would never end.
         In those cases the upstream transaction is aborted (the leg
         closed, never a terminator) and nothing waits on the client. */
      int behind_local = 0; /* an upstream reply owed after a local one */
      for (uint8_t i = 0, local = 0; i < r->q_len && !behind_local; i++) {
        uint8_t k = r->q[(r->q_head + i) % QUEUE_CAP];
        if (k >= Q_LOCAL)
          local = 1;
        else if (local)
          behind_local = 1;
      }
      if (r->cl == CL_DATA || r->cl == CL_BDAT || r->cl == CL_DISCARD ||
          r->cl == CL_AUTH || behind_local) {
        sl__up_close(r);
        if (r->cl != CL_WAIT && r->cl != CL_TLS && r->cl != CL_PROXY)
          r->cl = CL_CMD;
      }
      uint8_t n = 0;
      for (uint8_t i = 0; i < r->q_len; i++) {
        unsigned from = (r->q_head + i) % QUEUE_CAP;
        uint8_t k = r->q[from];
        if (k < Q_LOCAL) {
          unsigned to = (r->q_head + n++) % QUEUE_CAP;
          r->q[to] = k;
          r->q_cmd[to] = r->q_cmd[from];
        }
      }
      r->q_len = n;
      r->q_sync = 0;
      r->cmd_now = SL_CMD_NONE; /* a goodbye, after the reply it counted */
      sl__q_push_local(r, R_TOO_MANY_ERRORS);
      r->no_input = 1;
    }
  }
}

size_t sl__local_len(const sl_relay *r, enum local_reply id) {
  if (id == R_CHECK)
    return strlen((const char *)r->chk.p + sl__buf_cap(&r->chk) / 2) + 8;
  if (id == R_MAIL_FAILED && r->chk.p)
    return strlen((const char *)r->chk.p) + 8;
  return strlen(replies[id].text) + strlen(r->pol->hostname) + 8;
}

/* An enhanced status code "d.ddd.ddd " (RFC 3463) at the start of s: its
   length with the space, or 0. */
static size_t enhanced_len(const char *s) {
  size_t i = 0;
  for (int part = 0; part < 3; part++) {
    size_t d = 0;
    while (s[i] >= '0' && s[i] <= '9' && d < 3) {
      i++;
      d++;
    }
    if (d == 0 || s[i] != (part < 2 ? '.' : ' '))
      return 0;
    i++;
  }
  return i;
}

/* "<code> <text>", or with RF_HOST "<code> <enhanced> <host> <rest>": RFC
   2034 puts the enhanced status code right after the reply code, so the
   hostname goes after it (as Postfix writes "421 4.4.2 host Error: ..."). */
static size_t render_local(uint8_t *o, enum local_reply id, unsigned code,
                           const char *host) {
  const char *text = replies[id].text;
  size_t n = sl_put_decimal(o, code);
  o[n++] = ' ';
  if (text[0] == '.') /* the class digit is the code's (R_BDAT_FAILED) */
    o[n++] = (uint8_t)('0' + code / 100);
  if (replies[id].flags & RF_HOST || id == R_HELO_LOCAL) {
    size_t e = enhanced_len(text);
    memcpy(o + n, text, e);
    n += e;
    text += e;
    n += sl__put_str(o + n, host);
    if (text[0])
      o[n++] = ' ';
  }
  n += sl__put_str(o + n, text);
  o[n++] = '\r';
  o[n++] = '\n';
  return n;
}

/* Renders a local reply into cout.  0 when done, -1 when cout has no room
   yet (the reply stays queued). */
/* A 4xx/5xx reply went into cout for the queue head: the event says what
   it answered, in the order the client reads the replies. */
static void refused(sl_relay *r, unsigned code) {
  if (code < 400)
    return;
  sl__event(r,
            &(sl_event){.kind = SL_EV_REFUSAL,
                        .refusal = {.command = (sl_command)r->q_cmd[r->q_head],
                                    .code = (uint16_t)code}});
}

static int emit_local(sl_relay *r, enum local_reply id) {
  const char *host = r->pol->hostname;
  if (r->teaser && id != R_GREETING) {
    /* The "220-" teaser began a reply: a local reply that comes before the
       greeting (a forced close's 421) goes after the greeting's last line,
       or the client reads one reply with two codes (guarantee 5). */
    if (sl__buf_reserve(
            r, &r->cout,
            (uint32_t)(sl__local_len(r, R_GREETING) + sl__local_len(r, id))))
      return -1;
    emit_local(r, R_GREETING);
  }
  if (id == R_EHLO_LOCAL) {
    /* screen-first: what sluice offers before any upstream exists, no
       more than the pool can take (guarantee 8) */
    uint32_t offer = r->pol->features & SL_FEAT_ALL;
    uint64_t size = r->lim->message_size_max;
    if (r->info.flags & SL_CONN_POOL_CAPS) {
      offer &= r->info.pool_features | SL_FEAT_PIPELINING | SL_FEAT_STARTTLS;
      if (r->info.pool_size && (!size || r->info.pool_size < size))
        size = r->info.pool_size;
    }
    if ((offer & SL_FEAT_STARTTLS) && r->stats.tls_client)
      offer &= ~(uint32_t)SL_FEAT_STARTTLS;
    const char *mech = r->pol->auth_mechanisms;
    size_t mlen = mech && (offer & SL_FEAT_AUTH) ? strlen(mech) : 0;
    if (r->pol->auth_requires_tls && !r->stats.tls_client)
      mlen = 0;
    size_t hl = strlen(host);
    if (sl__buf_reserve(r, &r->cout,
                        (uint32_t)(hl + mlen + SL_CAPS_RENDER_MAX)))
      return -1;
    size_t n = sl_caps_render(sl__buf_tail(&r->cout), (const uint8_t *)host, hl,
                              offer, size, (const uint8_t *)mech, mlen);
    sl__buf_grow(&r->cout, n);
    r->offered = offer & (mlen ? ~0u : ~(uint32_t)SL_CAP_AUTH);
    return 0;
  }
  if (id == R_FILTER && r->frep.len) {
    if (sl__buf_reserve(r, &r->cout, r->frep.len))
      return -1;
    sl__buf_put(&r->cout, r->frep.p + r->frep.off, r->frep.len);
    sl__buf_release(r, &r->frep);
    refused(r, r->fcode);
    return 0;
  }
  if (sl__buf_reserve(r, &r->cout, (uint32_t)sl__local_len(r, id)))
    return -1;
  if (id == R_CHECK) {
    uint8_t *o = sl__buf_tail(&r->cout);
    size_t n = sl_put_decimal(o, r->chk_code);
    o[n++] = ' ';
    n += sl__put_str(o + n, (const char *)r->chk.p + sl__buf_cap(&r->chk) / 2);
    o[n++] = '\r';
    o[n++] = '\n';
    sl__buf_grow(&r->cout, n);
    r->chk_queued = 0;
    refused(r, r->chk_code);
    return 0;
  }
  if (id == R_MAIL_FAILED && r->chk.p) {
    uint8_t *o = sl__buf_tail(&r->cout);
    size_t n = sl_put_decimal(o, r->mail_fail_code);
    o[n++] = ' ';
    n += sl__put_str(o + n, (const char *)r->chk.p);
    o[n++] = '\r';
    o[n++] = '\n';
    sl__buf_grow(&r->cout, n);
    refused(r, r->mail_fail_code);
    return 0;
  }
  unsigned code = replies[id].code;
  if (id == R_BDAT_FAILED && r->bdat_fail_code)
    code = r->bdat_fail_code;
  sl__buf_grow(&r->cout, render_local(sl__buf_tail(&r->cout), id, code, host));
  if (id == R_GREETING)
    r->teaser = 0; /* the multi-line greeting is complete */
  refused(r, code);
  if (id == R_HELO_LOCAL)
    r->offered = 0;
  return 0;
}

unsigned sl_relay_reply_count(void) { return R_COUNT; }

int sl_relay_reply_enhanced(unsigned id) {
  return id < R_COUNT && id != R_GREETING && id != R_EHLO_LOCAL &&
         id != R_HELO_LOCAL;
}

size_t sl_relay_reply_render(unsigned id, const char *host, uint8_t *out,
                             size_t cap) {
  if (id >= R_COUNT || id == R_EHLO_LOCAL || !host ||
      cap < strlen(replies[id].text) + strlen(host) + 8)
    return 0;
  return render_local(out, (enum local_reply)id, replies[id].code, host);
}

/* The length of an enhanced status code (RFC 3463 "d.ddd.ddd") at the
   start of a reply line's text, followed by a space or the end; 0 if none. */
static size_t esc_len(const uint8_t *t, size_t n) {
  size_t i = 0;
  for (int part = 0; part < 3; part++) {
    size_t d = 0;
    while (i < n && t[i] >= '0' && t[i] <= '9' && d < 3) {
      i++;
      d++;
    }
    if (d == 0)
      return 0;
    if (part < 2) {
      if (i >= n || t[i] != '.')
        return 0;
      i++;
    }
  }
  return i == n || t[i] == ' ' ? i : 0;
}

/* The held MAIL was refused (by the upstream's reply, or locally when it
   was to go there): the RCPT waiting for it and the rest of the
   transaction get code and text (its last line, printable ASCII, cut to
   half of chk; 421 becomes 451: the upstream is closing, this session is
   not).  The client may start again with a new MAIL. */
void sl__mail_refused(sl_relay *r, unsigned code, const uint8_t *text,
                      size_t n) {
  r->mail_fail_code = (uint16_t)(code == 421 ? 451 : code);
  if (r->chk.p) {
    size_t half = sl__buf_cap(&r->chk) / 2, i = 0;
    char *t = (char *)r->chk.p;
    if ((r->offered & SL_CAP_ENHANCEDSTATUSCODES) && !esc_len(text, n)) {
      memcpy(t, "4.0.0 ", 6);
      t[0] = (char)('0' + r->mail_fail_code / 100);
      i = 6;
    }
    for (size_t j = 0; j < n && i < half - 1; j++)
      t[i++] = text[j] >= 0x20 && text[j] < 0x7f ? (char)text[j] : '?';
    t[i] = 0;
  }
  r->mail_held = 0;
  sl__buf_release(r, &r->mailh);
  r->mail_fail = 1;
  r->mail = 0;
  r->rcpts = 0;
  r->q_cur = 0;
}

void sl__mail_refused_local(sl_relay *r, enum local_reply id) {
  const char *t = replies[id].text;
  sl__mail_refused(r, replies[id].code, (const uint8_t *)t, strlen(t));
}

/* Re-frames an upstream reply into cout; EHLO replies are rebuilt from the
   capability intersection.  -1 when cout has no room yet. */
int sl__emit_upstream(sl_relay *r, const uint8_t *buf, const sl_reply *rep,
                      uint8_t kind) {
  if (kind == Q_UP_EHLO && rep->code / 100 == 2) {
    sl_caps caps;
    sl_caps_parse(buf, rep, &caps);
    size_t pos = 0, glen = 0;
    const uint8_t *greet = NULL;
    sl_reply_next_line(buf, rep, &pos, &greet, &glen);
    uint32_t offer = (r->pol->features & SL_FEAT_ALL) &
                     (caps.bits | SL_CAP_PIPELINING | SL_CAP_STARTTLS);
    if (r->stats.tls_client)
      offer &= ~(uint32_t)SL_CAP_STARTTLS;
    if (r->pol->auth_requires_tls && !r->stats.tls_client)
      offer &= ~(uint32_t)SL_CAP_AUTH;
    uint64_t size = r->lim->message_size_max;
    if (caps.size && (!size || caps.size < size))
      size = caps.size;
    size_t alen = (offer & SL_CAP_AUTH) ? caps.auth_len : 0;
    if (sl__buf_reserve(r, &r->cout,
                        (uint32_t)(glen + alen + SL_CAPS_RENDER_MAX)))
      return -1;
    size_t n = sl_caps_render(sl__buf_tail(&r->cout), greet, glen, offer, size,
                              buf + caps.auth_off, alen);
    sl__buf_grow(&r->cout, n);
    r->offered = offer & (alen ? ~0u : ~(uint32_t)SL_CAP_AUTH);
    r->up_caps = caps.bits;
    r->up_size = caps.size;
    return 0;
  }
  /* Each line is rebuilt: code, separator, sanitised text, CRLF.  RFC
     2034: once ENHANCEDSTATUSCODES is offered, every 2xx/4xx/5xx reply but
     the greeting and EHLO's starts with one; an upstream that does not
     write one (screen-first offered the extension before the upstream was
     known) gets the class's generic "c.0.0" (RFC 3463). */
  unsigned cls = rep->code / 100;
  int esc = (r->offered & SL_CAP_ENHANCEDSTATUSCODES) && kind != Q_UP &&
            kind != Q_UP_EHLO && kind != Q_UP_HELO && cls != 3;
  if (sl__buf_reserve(r, &r->cout, rep->len + 10u * rep->nlines))
    return -1;
  size_t pos = 0, len;
  const uint8_t *text;
  uint32_t line = 0;
  while (sl_reply_next_line(buf, rep, &pos, &text, &len)) {
    line++;
    uint8_t *o = sl__buf_tail(&r->cout);
    size_t n = sl_reply_put_line(o, rep->code, line == rep->nlines, text, len);
    if (esc && !esc_len(text, len)) {
      memmove(o + 10, o + 4, n - 4);
      memcpy(o + 4, "0.0.0 ", 6);
      o[4] = (uint8_t)('0' + cls);
      n += 6;
    }
    sl__buf_grow(&r->cout, n);
  }
  if (kind == Q_UP_HELO) {
    r->offered = 0;
    r->up_caps = 0; /* a HELO session has no extensions upstream either */
  }
  return 0;
}

/* What a relayed reply means for the session. */
static void after_upstream_reply(sl_relay *r, uint8_t kind, unsigned code,
                                 int current) {
  unsigned cls = code / 100;
  switch (kind) {
  case Q_UP_EHLO:
  case Q_UP_HELO:
    if (cls == 2)
      sl__set_stage(r, SL_STAGE_HELO);
    break;
  case Q_UP_MAIL:
    if (cls == 2)
      sl__set_stage(r, SL_STAGE_MAIL);
    else if (current)
      sl__txn_reset(r);
    break;
  case Q_UP_RCPT:
    if (current)
      sl__ftap(r, SL_FI_RCPT_REPLY, NULL, code);
    if (cls == 2) {
      r->stats.recipients_accepted++;
      sl__set_stage(r, SL_STAGE_RCPT);
    } else if (current && r->rcpts) {
      r->rcpts--;
    }
    break;
  case Q_UP_DATA:
    if (code == 354) {
      r->wait_354 = 0;
      r->body_early = 0; /* those bytes were the body */
      sl_data_init(&r->data, r->lim->text_line_max, r->lim->message_size_max,
                   (r->pol->lenient & SL_LENIENT_NORMALIZE_BARE_LF) != 0);
      r->cl = CL_DATA;
      r->t_client = r->now;
      sl_tbucket_fill(&r->bucket, r->prof->data_rate, r->now);
      sl__set_stage(r, SL_STAGE_DATA);
    }
    /* refused: sl__step_client() goes on once the reply is out */
    break;
  case Q_UP_END:
  case Q_UP_BDAT_LAST:
    if (cls == 2) {
      r->stats.messages_accepted++;
      sl__set_stage(r, SL_STAGE_DELIVERED);
    } else if (cls == 4) {
      r->stats.messages_tempfailed++;
    } else {
      r->stats.messages_rejected++;
    }
    r->stats.last_upstream_code = (uint16_t)code;
    sl__event(r, &(sl_event){.kind = SL_EV_MESSAGE,
                             .message = {.code = (uint16_t)code,
                                         .size = msize_pop(r)}});
    break;
  case Q_UP_BDAT_FLAST:
    /* the client's LAST chunk of a filtered message, refused upstream:
       the message's end, whose size the hold kept */
    if (cls == 4)
      r->stats.messages_tempfailed++;
    else
      r->stats.messages_rejected++;
    r->stats.last_upstream_code = (uint16_t)code;
    sl__event(
        r, &(sl_event){.kind = SL_EV_MESSAGE,
                       .message = {.code = (uint16_t)code, .size = r->fsize}});
    break;
  case Q_UP_AUTH:
    r->cl = code == 334 ? CL_AUTH : CL_CMD;
    sl__auth_done(r, code);
    if (code == 235)
      r->authed = 1;
    break;
  case Q_UP_BDAT_DATA:
    /* DATA refused (354 is handled before): this chunk had that reply, the
       transaction's other chunks get its code, and no chunk byte moves. */
    r->bdat_failed = 1;
    r->bdat_fail_code = (uint16_t)code;
    r->bdat_discard = 1;
    break;
  default:
    break;
  }
  if (code == 421) {
    /* The upstream is closing: so is this session (RFC 5321 3.8). */
    sl__client_close_after_reply(r, SL_END_UPSTREAM);
  }
}

/* After a local reply went out. */
static void after_local_reply(sl_relay *r, enum local_reply id) {
  if (replies[id].flags & RF_CLOSE) {
    sl__client_close_after_reply(
        r, id == R_BYE       ? SL_END_QUIT
           : id == R_TIMEOUT ? SL_END_TIMEOUT
           : id == R_SMUGGLE || id == R_SYNC || id == R_NONSMTP
               ? SL_END_PROTOCOL
           : id == R_NO_UPSTREAM || id == R_AUTH_LOST ? SL_END_UPSTREAM
                                                      : SL_END_REJECTED);
    return;
  }
  if (id == R_TLS_READY) {
    r->tls_pending = 1;
    return;
  }
  if (id == R_EHLO_LOCAL || id == R_HELO_LOCAL)
    sl__set_stage(r, SL_STAGE_HELO);
  if (id == R_MAIL_HELD)
    sl__set_stage(r, SL_STAGE_MAIL);
  if (id == R_FILTER || id == R_FILTER_TEMP) {
    /* a message the filters refused: counted as its reply says */
    if (r->fcode / 100 == 4)
      r->stats.messages_tempfailed++;
    else
      r->stats.messages_rejected++;
    r->stats.last_upstream_code = r->fcode; /* the end of data's reply */
    sl__event(r, &(sl_event){.kind = SL_EV_MESSAGE,
                             .message = {.code = r->fcode, .size = r->fsize}});
  }
  if (r->cl == CL_WAIT && r->q_len == 0 && !r->no_input && !r->wait_354)
    r->cl = CL_CMD; /* the AUTH we waited on was answered locally */
}

/* ---- step: replies leave the queue in order ------------------------- */

static int greeting_due(const sl_relay *r) {
  if (!r->dnsbl_done)
    return 0;
  if (!sl__allowlisted(r) && r->prof->greet_delay &&
      r->now < sl__tadd(r->stats.start, r->prof->greet_delay + r->greet_jitter))
    return 0;
  if (r->pol->mode == SL_MODE_PASSTHROUGH && r->up != UP_READY && !r->rejected)
    return 0;
  return 1;
}

static int emit_greeting(sl_relay *r) {
  sl_action act = sl__verdict(r);
  if (act == SL_ACT_TARPIT)
    sl__use_suspect(r, SL_TARPIT_ACTION);
  if (act == SL_ACT_DROP) {
    if (r->greet_held) {
      sl__buf_release(r, &r->cout); /* the upstream's greeting is not sent */
      r->greet_held = 0;
    }
    if (emit_local(r, R_DROP)) /* after the teaser's greeting, if any */
      return -1;
    r->greeted = 1;
    sl__set_stage(r, SL_STAGE_GREETING);
    q_pop(r);
    sl__up_close(r);
    r->no_input = 1;
    sl__client_close_after_reply(r, SL_END_REJECTED);
    return 0;
  }
  if (!r->greet_held && emit_local(r, R_GREETING))
    return -1;
  if (r->greet_held) {
    /* The upstream's greeting, held in cout until now (nothing goes out
       before it), is the client's: a 5xx one is a refusal. */
    const uint8_t *g = r->cout.p + r->cout.off;
    if (r->cout.len >= 3)
      refused(
          r, (unsigned)((g[0] - '0') * 100 + (g[1] - '0') * 10 + (g[2] - '0')));
  }
  r->greet_held = 0;
  if (r->prof->greet_delay)
    r->stats.delay_total += r->now - r->stats.start; /* held by the tarpit */
  if (act == SL_ACT_REJECT) {
    r->rejected = 1;
    if (r->up != UP_NONE)
      sl__up_close(r); /* a rejected client never reaches the mail server */
  }
  r->greeted = 1;
  sl__set_stage(r, SL_STAGE_GREETING);
  q_pop(r);
  if (r->pol->mode == SL_MODE_PASSTHROUGH)
    r->up_used = 1;
  /* The tests before the greeting are over; a step leaves room for this
     event (at most the pregreet event came before it). */
  if (act == SL_ACT_CONTINUE && r->prof != &r->pol->suspect && !r->pregreet &&
      !(r->info.flags & SL_CONN_SCREEN_PASSED) &&
      (r->pol->ndnsbl || r->prof->greet_delay))
    sl__event(r, &(sl_event){.kind = SL_EV_SCREEN_PASSED});
  return 0;
}

int sl__is_sync(uint8_t k) {
  return k == Q_UP_EHLO || k == Q_UP_HELO || k == Q_UP_DATA ||
         k == Q_UP_DATA_SYNC || k == Q_UP_AUTH || k == Q_UP_VRFY ||
         k == Q_UP_BDAT_DATA;
}

/* After a BDAT transaction's DATA was refused, the upstream may still hold
   its MAIL and RCPTs while the client, whose transaction ends with LAST,
   starts afresh: reset it, with a reply that goes to no one. */
static void up_hidden_rset(sl_relay *r) {
  if (r->up != UP_READY || r->cl >= CL_CLOSING || r->q_len >= QUEUE_CAP ||
      !sl__up_can_send(r) || !sl__up_room(r, 4))
    return;
  sl__up_write_line(r, (const uint8_t *)"RSET", 4);
  sl__up_sent(r, Q_UP_RSET_OWN, 0);
}

/* The upstream's 354 to the DATA carrying a BDAT transaction: the client
   never sees it; the chunk waiting for it may now be framed, and the entry
   becomes that chunk's reply (taken locally, or the end-of-data's). */
static void bdat_go(sl_relay *r, const sl_reply *rep) {
  sl__buf_consume(r, &r->uin, rep->len);
  r->up_out--;
  r->up_sync--;
  r->t_up = r->up_out ? sl__tadd(r->now, r->lim->upstream_command_timeout)
                      : SL_TSTAMP_NONE;
  r->t_release = SL_TSTAMP_NONE;
  r->bdat_go = 1;
  r->q[r->q_head] = r->bdat_last ? Q_UP_BDAT_LAST : Q_LOCAL + R_BDAT_OK;
  if (r->bdat_last) /* its bytes are still to come: bdat_left */
    sl__msize_push(r, r->data.size + r->bdat_left);
  sl__set_stage(r, SL_STAGE_DATA);
}

int sl__step_replies(sl_relay *r) {
  int progress = 0;
  while (r->q_len && r->cl < CL_CLOSING && sl__ring_free(r) >= STEP_ROOM) {
    uint8_t k = sl__q_peek(r);
    if (k == Q_GREETING) {
      if (!greeting_due(r) || emit_greeting(r))
        break;
      progress = 1;
      continue;
    }
    if (k >= Q_LOCAL) {
      /* An AUTH whose upstream was lost after its 334: the answer goes to
         the continuation line the client is still to send. */
      if (r->cl == CL_AUTH)
        break;
      enum local_reply id = (enum local_reply)(k - Q_LOCAL);
      /* A chunk is answered once it has been read (RFC 3030 2). */
      if (id == R_BDAT_OK && r->cl == CL_BDAT && r->q_len == 1)
        break;
      /* Tarpits delay answers, never the goodbye of a closing session. */
      if (!(replies[id].flags & RF_CLOSE) &&
          !sl__released(r, r->prof->reply_delay))
        break;
      if (emit_local(r, id))
        break;
      q_pop(r);
      after_local_reply(r, id);
      if (!(replies[id].flags & RF_NOERR))
        replied(r, replies[id].code);
      progress = 1;
      continue;
    }
    /* A reply is read only once everything sluice wrote upstream is out,
       as in the preamble: one the upstream sent earlier (queued ahead by
       a script, or unsolicited) then answers the oldest command owed, and
       an end of data's acceptance must have come after the end was out
       (reply_before_end). */
    if (r->up != UP_READY || !r->uin.len || r->uout.len)
      break;
    sl_reply rep;
    const uint8_t *b = r->uin.p + r->uin.off;
    int rc = sl_reply_scan(b, r->uin.len, r->lim->reply_line_max,
                           r->lim->reply_max, &rep);
    /* A reply to the last command sent while its BDAT chunk is still being
       read from the client answers bytes the upstream never received: a
       broken or hostile upstream.  (uout is empty here: see above.) */
    if (rc > 0 && (r->up_out == 0 || /* nothing asked: an AUTH after 334 */
                   (r->up_out == 1 && r->cl == CL_BDAT && !r->bdat_discard &&
                    k != Q_UP_BDAT_DATA)))
      rc = -1;
    if (k == Q_UP_BDAT_DATA && rc > 0 && rep.code != 354 && rep.code < 400)
      rc = -1; /* DATA "accepted" with no body: never a chunk's 2xx */
    if (rc > 0 && r->fheld && (k == Q_UP_END || k == Q_UP_BDAT_LAST))
      rc = -1; /* a reply to a terminator the filters still hold */
    if (rc > 0 && (k == Q_UP_END || k == Q_UP_BDAT_LAST) && reply_before_end(r))
      rc = -1; /* sent before the end went out: no acceptance of it */
    if (rc < 0) {
      sl__up_fail(r, SL_UPFAIL_MALFORMED);
      progress = 1;
      continue;
    }
    if (k == Q_UP_BDAT_DATA && rc > 0 && rep.code == 354) {
      bdat_go(r, &rep);
      progress = 1;
      continue;
    }
    if (k == Q_UP_XFORWARD && rc > 0 && rep.code / 100 != 2) {
      /* Refused like an XCLIENT: the leg fails (the MAIL behind it gets a
         local reply) and the driver never offers this session's identity
         to that server again. */
      sl__buf_consume(r, &r->uin, rep.len);
      sl__up_fail(r, SL_UPFAIL_IDENTITY);
      progress = 1;
      continue;
    }
    if (k == Q_UP_BDAT_FLAST && rc > 0 && r->fchunk_owed) {
      /* where this reply goes depends on the verdict (sl_relay_filter.c) */
      if (!r->fres)
        break;
      r->fchunk_owed = 0;
      if (rep.code / 100 != 2 && r->fres - 1 < SL_VERDICT_DISCARD)
        r->fchunk_failed = 1; /* relayed below: the client's answer */
      else
        k = Q_UP_RSET_OWN; /* to no one, at once */
    }
    if (k == Q_UP_RSET_FILTER && rc > 0) {
      /* the refused chunked message is gone upstream: now the filter's
         reply */
      sl__buf_consume(r, &r->uin, rep.len);
      r->up_out--;
      r->t_up = r->up_out ? sl__tadd(r->now, r->lim->upstream_command_timeout)
                          : SL_TSTAMP_NONE;
      r->q[r->q_head] = (uint8_t)(Q_LOCAL + (r->frep.len || r->fcode / 100 == 5
                                                 ? R_FILTER
                                                 : R_FILTER_TEMP));
      progress = 1;
      continue;
    }
    if (k == Q_UP_MAIL_HELD && rc > 0) {
      /* The reply to the held MAIL answers no client command (the client
         had its 250): a 2xx lets the RCPT behind it go, a refusal becomes
         that RCPT's and the transaction's. */
      if (rep.code / 100 == 3) {
        sl__up_fail(r, SL_UPFAIL_MALFORMED);
        progress = 1;
        continue;
      }
      if (rep.code / 100 == 2) {
        sl__set_stage(r, SL_STAGE_MAIL);
      } else {
        size_t pos = 0, n = 0, ln;
        const uint8_t *t = NULL, *lt;
        while (sl_reply_next_line(b, &rep, &pos, &lt, &ln)) {
          t = lt;
          n = ln;
        }
        sl__mail_refused(r, rep.code, t, t ? n : 0);
      }
      sl__buf_consume(r, &r->uin, rep.len);
      r->up_out--;
      r->up_sync--;
      r->t_up = r->up_out ? sl__tadd(r->now, r->lim->upstream_command_timeout)
                          : SL_TSTAMP_NONE;
      q_pop(r);
      progress = 1;
      continue;
    }
    if (k == Q_UP_RSET_OWN || k == Q_UP_XFORWARD) {
      if (rc == 0)
        break;
      sl__buf_consume(r, &r->uin, rep.len);
      r->up_out--;
      r->t_up = r->up_out ? sl__tadd(r->now, r->lim->upstream_command_timeout)
                          : SL_TSTAMP_NONE;
      q_pop(r);
      progress = 1;
      continue;
    }
    if (k == Q_UP_DATA_SYNC) {
      if (rc == 0 || emit_local(r, R_SYNC))
        break;
      q_pop(r);
      sl__up_close(r);
      after_local_reply(r, R_SYNC);
      replied(r, replies[R_SYNC].code);
      progress = 1;
      continue;
    }
    if (rc == 0 || !sl__released(r, r->prof->reply_delay) ||
        sl__emit_upstream(r, b, &rep, k))
      break;
    refused(r, rep.code);
    int current = q_head_current(r);
    sl__buf_consume(r, &r->uin, rep.len);
    r->up_out--;
    if (sl__is_sync(k))
      r->up_sync--;
    r->t_up = r->up_out ? sl__tadd(r->now, r->lim->upstream_command_timeout)
                        : SL_TSTAMP_NONE;
    if (!(k == Q_UP_AUTH && rep.code == 334)) {
      q_pop(r);
    } else {
      r->t_release = SL_TSTAMP_NONE;
      /* the client was waiting for this: its continuation is no
         synchronisation error */
      r->q_sync &= ~(1u << r->q_head);
    }
    after_upstream_reply(r, k, rep.code, current);
    replied(r, rep.code);
    if (k == Q_UP_BDAT_DATA)
      up_hidden_rset(r);
    progress = 1;
  }
  return progress;
}
