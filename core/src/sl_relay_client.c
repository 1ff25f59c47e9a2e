/*
 * sl_relay_client.c: the client side: the PROXY header, command lines
 * (checked, answered locally or relayed), message data after DATA and BDAT
 * chunks.  A command that needs an upstream which is not ready is left
 * unconsumed in the input buffer and parsed again later, so nothing is
 * stored twice.
 */
#include <string.h>

#include "sl_caps.h"
#include "sl_cmd.h"
#include "sl_data.h"
#include "sl_envelope.h"
#include "sl_relay_int.h"
#include "sluice/proxy.h"

static int step_proxy(sl_relay *r);

/* ---- step: client input ---------------------------------------------- */

static uint32_t params_allowed(const sl_relay *r) {
  uint32_t o = r->offered, p = 0;
  if (o & SL_CAP_SIZE)
    p |= SL_P_SIZE;
  if (o & SL_CAP_8BITMIME)
    p |= SL_P_BODY_8BIT;
  if (o & SL_CAP_SMTPUTF8)
    p |= SL_P_SMTPUTF8;
  if (o & SL_CAP_DSN)
    p |= SL_P_DSN;
  if (o & SL_CAP_AUTH)
    p |= SL_P_AUTH;
  return p;
}

static enum local_reply path_reply(sl_path_err e, int is_mail) {
  switch (e) {
  case SL_PATH_TOO_LONG:
    return R_PATH_TOO_LONG;
  case SL_PATH_PARAM:
    return R_PARAM;
  case SL_PATH_NEED_SMTPUTF8:
    return R_NEED_UTF8;
  case SL_PATH_SIZE:
    return R_SIZE;
  default:
    return is_mail ? R_BAD_SENDER : R_BAD_RCPT;
  }
}

/* Bytes a client sent ahead of a reply it had to wait for (RFC 2920 3.1;
   Postfix's smtpd_forbid_unauth_pipelining).  Returns 1 if that ends the
   session. */
int sl__sync_violation(sl_relay *r) {
  r->stats.sync_violations++;
  return r->pol->forbid_unauth_pipelining;
}

/* Must this command end a pipelined group (RFC 2920 3.1; Postfix's
   SMTPD_CMD_FLAG_LAST)?  Without EHLO and an offered PIPELINING every
   command must.  STARTTLS (its plaintext tail is discarded), QUIT (nothing
   after it is read) and BDAT (its chunk follows it) have their own rules. */
static int ends_group(const sl_relay *r, sl_verb v) {
  switch (v) {
  case SL_V_EHLO:
  case SL_V_HELO:
  case SL_V_DATA:
  case SL_V_NOOP:
  case SL_V_VRFY:
  case SL_V_EXPN:
  case SL_V_AUTH:
    return 1;
  case SL_V_STARTTLS:
  case SL_V_QUIT:
  case SL_V_BDAT:
    return 0;
  default:
    return !(r->esmtp && (r->offered & SL_CAP_PIPELINING));
  }
}

/* A relayed MAIL's reply has not come back yet. */
static int mail_reply_due(const sl_relay *r) {
  for (unsigned i = 0; i < r->q_len; i++)
    if (r->q[(r->q_head + i) % QUEUE_CAP] == Q_UP_MAIL)
      return 1;
  return 0;
}

/* Message bytes sent before the reply to DATA, under
   forbid_unauth_pipelining, while that reply is still queued: it is
   replaced by the refusal (a relayed DATA's own reply is swallowed and the
   upstream leg closed before a body byte moves). */
void sl__refuse_sync(sl_relay *r) {
  uint8_t *k = &r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP];
  *k = *k >= Q_LOCAL ? (uint8_t)(Q_LOCAL + R_SYNC) : (uint8_t)Q_UP_DATA_SYNC;
  r->wait_354 = 0;
  r->no_input = 1;
}

/* The body a client sent after a DATA that was then refused (locally or by
   the upstream) is message content, never commands: it is read up to its
   end-of-data line and dropped without a reply. */
static void discard_early_body(sl_relay *r) {
  sl_data_init(&r->data, r->lim->text_line_max, 0,
               (r->pol->lenient & SL_LENIENT_NORMALIZE_BARE_LF) != 0);
  sl_data_discard(&r->data, 0);
  r->viol = SL_VIOL_NONE;
  r->quiet = 1;
  r->cl = CL_DISCARD;
  r->t_client = r->now;
}

/* The message size allowed: the lower of ours and the upstream's SIZE
   (and, in screen-first, the pool's, which is what the client was
   offered). */
static uint64_t size_limit(const sl_relay *r) {
  uint64_t m = r->lim->message_size_max;
  if (r->up_size && (!m || r->up_size < m))
    m = r->up_size;
  if (r->pol->mode == SL_MODE_SCREEN_FIRST &&
      (r->info.flags & SL_CONN_POOL_CAPS) && r->info.pool_size &&
      (!m || r->info.pool_size < m))
    m = r->info.pool_size;
  return m;
}

/* Sends a client command line upstream, if the upstream can take it now.
   1: sent; 0: not now (leave it); -1: unavailable (answer locally). */
static int relay_line(sl_relay *r, const uint8_t *line, size_t len,
                      uint8_t kind) {
  int u = sl__need_upstream(r);
  if (u <= 0)
    return u;
  if (!sl__up_can_send(r) || !sl__up_room(r, len))
    return 0;
  /* RFC 3461 6.2: relayed without NOTIFY/ORCPT to a server without DSN */
  sl__up_write_params(r, line, len,
                      kind == Q_UP_RCPT && !(r->up_caps & SL_CAP_DSN) ? SL_P_DSN
                                                                      : 0);
  sl__up_sent(r, kind, sl__is_sync(kind));
  if (kind == Q_UP_RCPT)
    sl__ftap(r, SL_FI_RCPT, line, len);
  return 1;
}

static int sasl_response(const uint8_t *p, size_t n) {
  if (n == 1 && p[0] == '*')
    return 1;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '='))
      return 0;
  }
  return 1;
}

/* A SASL line toward the AUTH at the queue head (a continuation, or "*"
   to cancel the exchange); the upstream's answer is the client's reply. */
static void sasl_line(sl_relay *r, const uint8_t *line, size_t len) {
  sl__up_write_line(r, line, len);
  r->q_sync |= 1u << r->q_head; /* the client waits for the answer again */
  r->up_out++;
  r->up_sync++;
  r->t_up = sl__tadd(r->now, r->lim->upstream_command_timeout);
  r->cl = CL_WAIT;
}

/* Cancels the AUTH exchange upstream with "*" (RFC 4954 4), for the
   client's own "*" and in place of a line that cannot go up (not base64,
   bare CR/LF or NUL, too long).  A cancelled exchange names no one,
   whatever an upstream that asks on or accepts regardless answers (LOGIN's
   password would else be read as the user, or a user kept from the
   cancelled exchange); a user in force from an earlier 235 stays. */
static void sasl_cancel(sl_relay *r) {
  if (!r->authed)
    sl__auth_forget(r);
  sasl_line(r, (const uint8_t *)"*", 1);
}

static int has_8bit(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] & 0x80)
      return 1;
  return 0;
}

/* The local reply for 8-bit bytes where they are not allowed, or -1. */
static int envelope_8bit(const sl_relay *r, sl_verb v, const uint8_t *line,
                         size_t len, size_t arg) {
  switch (sl_env_8bit(v, line, len, arg, r->utf8_txn,
                      (r->offered & SL_CAP_SMTPUTF8) != 0)) {
  case SL_ENV_OK:
    return -1;
  case SL_ENV_BAD_UTF8:
    return R_BAD_UTF8;
  case SL_ENV_NEED_SMTPUTF8:
    return R_NEED_UTF8;
  case SL_ENV_HELO_8BIT:
    return R_HELO_8BIT;
  default:
    return R_8BIT;
  }
}

static void smuggling(sl_relay *r, sl_violation v);

/* Relay control for a RCPT that passed the syntax checks: the local
   refusal, or -1 to relay it. */
static int relay_control(const sl_relay *r, const uint8_t *arg, size_t alen) {
  const sl_rcpt_policy *p = &r->pol->rcpt;
  size_t off, n;
  if (sl_env_path(arg, alen, &off, &n) < 0)
    return R_BAD_RCPT;
  int trusted = r->authed || sl_rcpt_client_trusted(p, &r->info.client);
  switch (sl_rcpt_check(p, arg + off, n, trusted)) {
  case SL_RCPT_OK:
    return -1;
  case SL_RCPT_UNCONFIGURED:
    return R_RELAY_UNCONFIGURED;
  case SL_RCPT_SOURCE_ROUTE:
    return R_SOURCE_ROUTE;
  case SL_RCPT_PERCENT_HACK:
    return R_PERCENT_HACK;
  case SL_RCPT_BANG_PATH:
    return R_BANG_PATH;
  default:
    return R_RELAY_DENIED;
  }
}

/* Half of the chk buffer for a path, NUL-terminated: a path longer than
   half a small buffer (256 bytes by default, RFC 5321's limit) is cut. */
static void chk_copy(sl_relay *r, int second, const uint8_t *src, size_t n) {
  size_t half = sl__buf_cap(&r->chk) / 2;
  char *dst = (char *)r->chk.p + (second ? half : 0);
  if (n > half - 1)
    n = half - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

/* Does this session ask the driver about anything (chk is needed)? */
static int checks_on(const sl_relay *r) {
  return r->pol->rcpt_check || r->pol->check_stages;
}

/* The driver's check of the command line being dispatched (stage: RCPT,
   EHLO/HELO, MAIL or DATA; path: the recipient, EHLO name or sender, NULL
   for DATA): -1 to go
   on (chk_state stays ANSWERED until the line is consumed, so a command
   that waits for upstream room is not asked about twice), -2 to leave the
   line until the answer comes, or the local refusal. */
static int ask_check(sl_relay *r, uint8_t stage, const uint8_t *path,
                     size_t n) {
  if (r->chk_state == CHK_ANSWERED) {
    if (!r->chk_code)
      return -1;
    r->chk_state = CHK_IDLE;
    r->chk_queued = 1;
    return R_CHECK;
  }
  if (r->chk_state == CHK_ASKED || r->chk_queued || !r->chk.p)
    return -2;
  int named = stage == SL_CMD_RCPT || stage == SL_CMD_EHLO ||
              stage == SL_CMD_HELO; /* the second half's path or name */
  if (stage == SL_CMD_MAIL)
    chk_copy(r, 0, path, n);
  chk_copy(r, 1, named ? path : (const uint8_t *)"", named ? n : 0);
  r->chk_stage = stage;
  r->chk_id = sl__new_id(r, TAG_CHECK);
  sl__push_req(r, SL_REQ_RCPT_CHECK, r->chk_id, 0);
  r->chk_state = CHK_ASKED;
  return -2;
}

/* policy.rcpt_check for a RCPT that passed relay control (ask_check). */
static int rcpt_check(sl_relay *r, const uint8_t *arg, size_t alen) {
  size_t off = 0, n = 0;
  if (r->chk_state == CHK_IDLE && sl_env_path(arg, alen, &off, &n) < 0)
    return R_BAD_RCPT;
  return ask_check(r, SL_CMD_RCPT, arg + off, n);
}

/* A relayed RCPT's reply has not come back yet. */
static int rcpt_reply_due(const sl_relay *r) {
  for (unsigned i = 0; i < r->q_len; i++)
    if (r->q[(r->q_head + i) % QUEUE_CAP] == Q_UP_RCPT)
      return 1;
  return 0;
}

/* Screen-first, a RCPT check on and no upstream yet: the MAIL is answered
   here and kept until a RCPT passes its check (mailh), so a greylisted or
   refused client never reaches the mail server. */
static int mail_may_wait(const sl_relay *r) {
  /* A filtered transaction is not held: its milters must see the MAIL
     (filter_tap) before they are asked about a RCPT. */
  return r->pol->mode == SL_MODE_SCREEN_FIRST && r->pol->rcpt_check &&
         r->up == UP_NONE && !r->authed && !sl__filter_wanted(r);
}

/* Sends a checked MAIL line upstream: the client's (kind Q_UP_MAIL, a new
   transaction) or the one held for a RCPT check (Q_UP_MAIL_HELD, which
   nothing follows before its reply, since a refusal must answer the RCPT
   waiting behind it).  -1 sent, -2 not now (leave the command), or the
   local refusal. */
static int mail_upstream(sl_relay *r, const uint8_t *line, size_t len,
                         uint8_t kind) {
  sl_cmd c;
  sl_cmd_parse(line, len, &c);
  const uint8_t *arg = line + c.arg;
  size_t alen = len - c.arg;
  int u = sl__need_upstream(r);
  if (u == 0 || (u > 0 && !(sl__up_can_send(r) && sl__up_room(r, len))))
    return -2;
  if (u < 0)
    return R_UPSTREAM_FAIL;
  /* Only what this upstream's EHLO offered goes to it (guarantee 8):
     what cannot be dropped without changing the message is refused. */
  uint32_t has = sl_cmd_param_classes(arg, alen), up = r->up_caps;
  if ((has & SL_P_SMTPUTF8) && !(up & SL_CAP_SMTPUTF8))
    return R_UP_NO_UTF8;
  if ((has & SL_P_BODY_8BIT) && !(up & SL_CAP_8BITMIME))
    return R_UP_NO_8BIT;
  uint32_t drop = (up & SL_CAP_SIZE ? 0 : SL_P_SIZE) |
                  (up & SL_CAP_8BITMIME ? 0 : SL_P_BODY_7BIT) |
                  (up & SL_CAP_DSN ? 0 : SL_P_DSN) |
                  (up & SL_CAP_AUTH ? 0 : SL_P_AUTH);
  if (r->pol->identity == SL_IDENT_XFORWARD && (up & SL_CAP_XFORWARD) &&
      !r->xfwd_sent) {
    /* Postfix forgets XFORWARD attributes at each transaction's end
       (mail_reset): every MAIL needs its own.  Without PIPELINING the
       MAIL waits, unconsumed, for the XFORWARD's reply (RFC 2920). */
    uint8_t xl[SL_XCLIENT_LINE_MAX];
    sl_ident id;
    sl__ident(r, &id);
    size_t xn = sl_xforward_line(xl, &id, r->up_caps);
    if (r->q_len + 2u > QUEUE_CAP || !sl__up_room(r, xn + len + 2))
      return -2;
    sl__up_write_line(r, xl, xn);
    sl__up_sent(r, Q_UP_XFORWARD, 0);
    r->xfwd_sent = 1;
    if (!sl__up_can_send(r))
      return -2;
  }
  r->xfwd_sent = 0;
  if (kind == Q_UP_MAIL)
    sl__txn_reset(r);
  sl__up_write_params(r, line, len, drop);
  sl__up_sent(r, kind, kind == Q_UP_MAIL_HELD);
  r->fmsg = sl__filter_wanted(r) ? 1u : 0u;
  r->fbol = 1;
  sl__ftap(r, SL_FI_MAIL, line, len);
  sl__auth_tap(r);
  return -1;
}

/* Whatever the answer to a DATA line (relayed, refused for its state, its
   8-bit bytes or a rejected client), the bytes after it wait for that
   reply: a 354 makes them the body, a refusal a body to drop, never
   commands (RFC 2920 3.1; they could smuggle a RCPT upstream). */
static void wait_after_data(sl_relay *r, int early) {
  r->cl = CL_WAIT;
  r->wait_354 = 1;
  r->body_early = early != 0;
}

static int is_junk(sl_verb v) {
  return v == SL_V_NOOP || v == SL_V_RSET || v == SL_V_VRFY || v == SL_V_EXPN ||
         v == SL_V_HELP;
}

/*
 * One complete command line (CRLF stripped; `whole` bytes with it).
 * Returns 1 when consumed, 0 to leave it for later.
 */
static int dispatch(sl_relay *r, const uint8_t *line, size_t len,
                    size_t whole) {
  sl_cmd c;
  sl_cmd_parse(line, len, &c);
  r->cmd_now = (uint8_t)c.verb;
  const uint8_t *arg = line + c.arg;
  size_t alen = len - c.arg;
  int more = r->cin.len > whole; /* bytes pipelined after this line */
  int lr = -1;                   /* a local reply, or -1 */
  int early = 0; /* bytes follow a command that must end its group */
  int rc;

  if (r->cl == CL_AUTH) {
    r->sync_bad = 0; /* a continuation sent before the 334: counted */
    if (r->up != UP_READY) {
      r->cl = CL_CMD; /* the upstream is gone: the AUTH's 451 answers this */
      goto consumed;
    }
    if (!sl__up_room(r, len))
      return 0;
    /* It belongs to the AUTH at the queue head.  Only a SASL response
       (base64, or "*" to cancel; RFC 4954 4) goes upstream: any other text
       cancels the exchange, so no arbitrary line reaches the upstream. */
    if (sasl_response(line, len) && !(len == 1 && line[0] == '*')) {
      sl__auth_response(r, line, len);
      sasl_line(r, line, len);
    } else {
      sasl_cancel(r);
    }
    goto consumed;
  }
  if (is_junk(c.verb) && r->lim->junk_commands_max &&
      ++r->stats.junk > r->lim->junk_commands_max) {
    lr = R_TOO_MANY_JUNK;
    r->no_input = 1;
    goto reply;
  }
  /* RFC 2920 3.1, checked before the command runs as Postfix does: bytes
     after a command that must end a group, or that came before the reply
     to an earlier one, are a synchronisation error. */
  early = more && ends_group(r, c.verb); /* counted once consumed */
  if ((early || r->sync_bad) && r->pol->forbid_unauth_pipelining) {
    lr = R_SYNC;
    r->no_input = 1;
    goto reply;
  }
  if (r->rejected) {
    switch (c.verb) {
    case SL_V_QUIT:
      lr = R_BYE;
      r->no_input = 1;
      break;
    case SL_V_NOOP:
    case SL_V_RSET:
      lr = R_OK;
      break;
    case SL_V_HELP:
      lr = R_HELP;
      break;
    case SL_V_BDAT: {
      /* refused, but its chunk follows all the same (RFC 3030 2) */
      uint64_t size;
      int last;
      if (sl_cmd_bdat(arg, alen, &size, &last) == 0 && size) {
        r->bdat_left = size;
        r->bdat_discard = 1;
        r->cl = CL_BDAT;
      }
      lr = R_REJECTED;
      break;
    }
    case SL_V_DATA:
      wait_after_data(r, early);
      lr = R_REJECTED;
      break;
    default:
      lr = R_REJECTED;
    }
    goto reply;
  }
  /* 8-bit bytes: only as SMTPUTF8 allows, and only well-formed UTF-8.  A
     RCPT outside a transaction gets its 503 first. */
  if (c.verb != SL_V_UNKNOWN && c.verb != SL_V_NONSMTP &&
      !(c.verb == SL_V_RCPT && !r->mail) &&
      (lr = envelope_8bit(r, c.verb, line, len, c.arg)) >= 0) {
    if (c.verb == SL_V_DATA)
      wait_after_data(r, early);
    goto reply;
  }
  /* A BDAT transaction downgraded to DATA for this upstream has its body
     open there: a command line would be read as message content, and its
     reply would never come.  NOOP is answered here; any other command
     aborts the upstream transaction (the leg closed, never a terminator)
     and ends the client's, then runs as it would outside one. */
  if (r->bdat_down && r->mail && !r->bdat_failed && c.verb != SL_V_BDAT) {
    if (c.verb == SL_V_NOOP) {
      lr = R_OK;
      goto reply;
    }
    sl__up_close(r);
    sl__txn_reset(r);
    r->bdat_down = r->bdat_go = r->bdat_failed = 0;
  }

  switch (c.verb) {
  case SL_V_EHLO:
  case SL_V_HELO: {
    size_t hn = sl_cmd_helo_arg(arg, alen, r->lim->domain_max);
    if (!hn) {
      lr = R_HELO_SYNTAX;
      break;
    }
    if (r->pol->check_stages & SL_CHECK_HELO) {
      if (!r->chk.p && sl__buf_reserve(r, &r->chk, r->lim->small_buffer_size))
        return 0; /* the pool is empty: retried when it has one */
      rc = ask_check(r, c.verb == SL_V_EHLO ? SL_CMD_EHLO : SL_CMD_HELO, arg,
                     hn);
      if (rc == -2)
        return 0;
      if (rc >= 0) {
        lr = rc;
        break;
      }
    }
    int via_up = r->pol->mode == SL_MODE_PASSTHROUGH || r->up == UP_READY;
    if (via_up) {
      int u = sl__need_upstream(r);
      if (u == 0 || (u > 0 && !sl__up_can_send(r)))
        return 0;
      if (u < 0) {
        lr = R_UPSTREAM_FAIL;
        break;
      }
      if (!sl__up_room(r, len))
        return 0;
    }
    /* Keep the line: a later upstream connection replays it. */
    sl__buf_release(r, &r->ehlo);
    if (sl__buf_reserve(r, &r->ehlo, (uint32_t)len))
      return 0;
    sl__buf_put(&r->ehlo, line, len);
    r->helo = 1;
    r->esmtp = c.verb == SL_V_EHLO;
    sl__txn_reset(r);
    if (via_up) {
      if (r->probe_held && r->esmtp) {
        /* answered by the probe's reply, already in uin */
        r->probe_held = 0;
      } else {
        sl__probe_drop(r);
        sl__up_write_line(r, line, len);
      }
      sl__up_sent(r, r->esmtp ? Q_UP_EHLO : Q_UP_HELO, 1);
      r->replayed = 1;
    } else {
      lr = r->esmtp ? R_EHLO_LOCAL : R_HELO_LOCAL;
    }
    break;
  }
  case SL_V_MAIL: {
    if (!r->helo) {
      lr = R_NEED_HELO;
      break;
    }
    if (r->mail) {
      /* Under pipelining the MAIL before this one may still await its
         reply: only that reply says whether this one is nested.  Postfix
         answers a MAIL after a refused MAIL as a first MAIL, so this one
         waits, unread, for it. */
      if (mail_reply_due(r))
        return 0;
      lr = R_NESTED_MAIL;
      break;
    }
    sl_path_limits pl = {r->lim->path_max, r->lim->domain_max, size_limit(r),
                         params_allowed(r)};
    uint64_t size = 0;
    sl_path_err e = sl_cmd_check_path(arg, alen, 1, &pl, &size);
    if (e != SL_PATH_OK) {
      lr = (int)path_reply(e, 1);
      break;
    }
    if (checks_on(r) && !r->chk.p &&
        sl__buf_reserve(r, &r->chk, r->lim->small_buffer_size))
      return 0; /* the pool is empty: retried when it has one */
    r->mail_size = size;
    if (r->pol->check_stages & SL_CHECK_MAIL) {
      size_t po, pn;
      if (sl_env_path(arg, alen, &po, &pn) < 0)
        po = pn = 0;
      if ((rc = ask_check(r, SL_CMD_MAIL, arg + po, pn)) != -1) {
        if (rc == -2)
          return 0;
        lr = rc;
        break;
      }
    }
    if (mail_may_wait(r)) {
      sl__txn_reset(r); /* releases mailh */
      if (sl__buf_reserve(r, &r->mailh, (uint32_t)len))
        return 0;
      sl__buf_put(&r->mailh, line, len);
      r->mail_held = 1;
      r->fmsg = 0; /* decided when the MAIL goes upstream */
      lr = R_MAIL_HELD;
    } else if ((rc = mail_upstream(r, line, len, Q_UP_MAIL)) != -1) {
      if (rc == -2)
        return 0;
      lr = rc;
      break;
    }
    r->utf8_txn = sl_env_mail_smtputf8(arg, alen) != 0;
    if (checks_on(r)) {
      size_t po, pn;
      if (sl_env_path(arg, alen, &po, &pn) < 0)
        pn = 0;
      chk_copy(r, 0, arg + po, pn);
    }
    r->bdat_cr = 0; /* a CRLF may span two chunks of one message only */
    r->bdat_down = r->bdat_go = r->bdat_failed = 0;
    r->mail = 1;
    r->data.size = 0;
    break;
  }
  case SL_V_RCPT: {
    if (r->mail_fail) {
      lr = R_MAIL_FAILED; /* the held MAIL was refused upstream */
      r->chk_state = CHK_IDLE;
      break;
    }
    if (!r->mail) {
      lr = R_NEED_MAIL;
      break;
    }
    if (r->rcpts >= r->lim->recipients_max) {
      /* 452 (RFC 5321 4.5.3.1.10): the client delivers to the accepted
         ones and retries the rest.  A client that pipelines past the
         limit (Postfix's smtp client does) is not making errors until it
         overshoots by recipient_overshoot_max (Postfix's
         smtpd_recipient_overshoot_limit); then each one counts. */
      if (r->overshoot < r->lim->recipient_overshoot_max) {
        if (r->overshoot < UINT16_MAX)
          r->overshoot++;
        lr = R_RCPT_OVERSHOOT;
      } else {
        lr = R_TOO_MANY_RCPT;
      }
      break;
    }
    sl_path_limits pl = {r->lim->path_max, r->lim->domain_max, 0,
                         params_allowed(r)};
    sl_path_err e = sl_cmd_check_path(arg, alen, 0, &pl, NULL);
    if (e != SL_PATH_OK) {
      lr = (int)path_reply(e, 0);
      break;
    }
    if ((lr = relay_control(r, arg, alen)) >= 0) {
      r->stats.recipients_relay_denied++;
      break;
    }
    if (r->pol->rcpt_check && (lr = rcpt_check(r, arg, alen)) != -1) {
      if (lr == -2)
        return 0;
      break;
    }
    if (r->mail_held) {
      /* The first RCPT that passed its check: the held MAIL goes first,
         and this RCPT waits for its reply (read again then). */
      rc = mail_upstream(r, r->mailh.p + r->mailh.off, r->mailh.len,
                         Q_UP_MAIL_HELD);
      if (rc == -1) {
        r->mail_held = 0;
        sl__buf_release(r, &r->mailh);
        return 0;
      }
      if (rc == -2)
        return 0;
      r->chk_state = CHK_IDLE;
      if (rc == R_UPSTREAM_FAIL) {
        lr = rc; /* no mail server now: the next RCPT tries again */
        break;
      }
      sl__mail_refused_local(r, (enum local_reply)rc);
      lr = R_MAIL_FAILED;
      break;
    }
    if ((rc = relay_line(r, line, len, Q_UP_RCPT)) == 0)
      return 0;
    r->chk_state = CHK_IDLE;
    if (rc < 0) {
      lr = R_UPSTREAM_FAIL;
      break;
    }
    r->rcpts++;
    break;
  }
  case SL_V_DATA:
    if (r->mail_fail)
      lr = R_MAIL_FAILED;
    else if (!r->mail)
      lr = R_NEED_MAIL;
    else if ((r->pol->check_stages & SL_CHECK_DATA) && rcpt_reply_due(r))
      return 0; /* the check's recipient_count is the accepted ones */
    else if (!r->rcpts)
      lr = R_NEED_RCPT;
    else if ((r->pol->check_stages & SL_CHECK_DATA) &&
             (rc = ask_check(r, SL_CMD_DATA, NULL, 0)) != -1) {
      if (rc == -2)
        return 0;
      lr = rc;
    } else if ((rc = relay_line(r, line, len, Q_UP_DATA)) == 0)
      return 0;
    else if (rc < 0)
      lr = R_UPSTREAM_FAIL;
    wait_after_data(r, early);
    break;
  case SL_V_BDAT: {
    uint64_t size;
    int last;
    if (sl_cmd_bdat(arg, alen, &size, &last)) {
      lr = R_SYNTAX;
      break;
    }
    uint64_t max = size_limit(r);
    if (!(r->offered & SL_CAP_CHUNKING))
      lr = R_NOT_IMPL;
    else if (r->mail_fail) {
      lr = R_MAIL_FAILED;
      if (last)
        sl__txn_reset(r);
    } else if (!r->mail)
      lr = R_NEED_MAIL;
    else if (r->bdat_failed) {
      /* the upstream refused this transaction's DATA: every chunk fails
         with its code, and LAST ends the transaction as usual */
      lr = R_BDAT_FAILED;
      if (last)
        sl__txn_reset(r);
    } else if (!r->rcpts)
      lr = R_NEED_RCPT;
    else if (max && (size > max || r->data.size + size > max))
      lr = R_MSG_SIZE;
    if (lr < 0 && last && r->msize_len == MSIZE_CAP)
      return 0; /* wait for an earlier message's reply */
    int down = 0;
    if (lr < 0 && (rc = sl__need_upstream(r)) <= 0) {
      if (rc == 0)
        return 0;
      lr = R_UPSTREAM_FAIL;
    }
    if (lr < 0 && last && !size && r->bdat_cr && !r->bdat_down &&
        (r->up_caps & SL_CAP_CHUNKING) &&
        !(r->fmsg && !sl__filter_chunked(r))) {
      /* An empty LAST chunk after a chunk that ended on CR: the message,
         whose bytes went up as they came, would end on a bare CR.  Refused
         as in a chunk: the leg closes, never the end (guarantee 3). */
      r->viol = SL_VIOL_BARE_CR;
      smuggling(r, SL_VIOL_BARE_CR);
      sl__up_close(r);
      r->no_input = 1;
      lr = R_SMUGGLE;
    } else if (lr < 0 && (!(r->up_caps & SL_CAP_CHUNKING) ||
                          (r->fmsg && !sl__filter_chunked(r)))) {
      /* Promised CHUNKING, but this upstream lacks it: the transaction
         goes to it as one DATA, never as BDAT (guarantee 8). */
      down = 1;
      if (!r->bdat_down) {
        if (!sl__up_can_send(r) || !sl__up_room(r, 4))
          return 0;
        sl__up_write_line(r, (const uint8_t *)"DATA", 4);
        sl__up_sent(r, Q_UP_BDAT_DATA, 1);
        r->bdat_down = 1;
        r->bdat_go = 0;
        sl_stuff_init(&r->stuff, r->lim->text_line_max);
        /* a first chunk that is LAST records its size in bdat_go() */
      } else {
        /* LAST is owed the end-of-data's reply once the terminator is
           out; other chunks are answered when read */
        sl__q_push(r, last ? Q_UP_BDAT_LAST : (uint8_t)(Q_LOCAL + R_BDAT_OK));
        if (last)
          sl__msize_push(r, r->data.size + size);
      }
      if (last)
        sl__txn_reset(r);
    } else if (lr < 0 && last && r->fmsg) {
      /* Filtered: the client's LAST chunk goes up as a plain one (none if
         empty), and the end of the message is a "BDAT 0 LAST" held for
         the verdict, whose entry is pushed when the chunk is read. */
      uint8_t up[32];
      memcpy(up, "BDAT ", 5);
      size_t un = 5 + sl_put_decimal(up + 5, size);
      if (!sl__up_can_send(r) || !sl__up_room(r, un) ||
          r->q_len + 2 > QUEUE_CAP)
        return 0;
      if (size) {
        sl__up_write_line(r, up, un);
        sl__up_sent(r, Q_UP_BDAT_FLAST, 0);
        r->fchunk_owed = 1;
      } else {
        sl__filter_chunk_end(r); /* an empty LAST chunk: the end at once */
      }
      sl__txn_reset(r);
    } else if (lr < 0) {
      rc = relay_line(r, line, len, last ? Q_UP_BDAT_LAST : Q_UP_BDAT);
      if (rc == 0)
        return 0;
      if (rc < 0) {
        lr = R_UPSTREAM_FAIL;
      } else if (last) {
        sl__msize_push(r, r->data.size + size);
        sl__txn_reset(r); /* the transaction ends with this chunk */
      }
    }
    /* The chunk's bytes follow whatever the answer is (RFC 3030 2). */
    r->bdat_left = size;
    r->bdat_discard = lr >= 0;
    r->bdat_last = last != 0;
    if (lr < 0)
      sl__set_stage(r, SL_STAGE_DATA);
    if (size || (down && lr < 0)) { /* an empty chunk still ends a DATA */
      r->cl = CL_BDAT;
      sl_tbucket_fill(&r->bucket, r->prof->data_rate, r->now);
    }
    break;
  }
  case SL_V_RSET:
    if (r->up == UP_READY && !(sl__up_can_send(r) && sl__up_room(r, len)))
      return 0;
    sl__txn_reset(r);
    if (r->up == UP_READY) {
      if ((rc = relay_line(r, line, len, Q_UP_RSET)) == 0)
        return 0;
      if (rc > 0)
        break;
    }
    lr = R_OK;
    break;
  case SL_V_NOOP:
    lr = R_OK;
    break;
  case SL_V_QUIT:
    lr = R_BYE;
    r->no_input = 1;
    break;
  case SL_V_VRFY:
  case SL_V_EXPN:
    if (r->pol->vrfy == SL_VRFY_RELAY) {
      /* An 8-bit argument (RFC 6531 3.7.4, allowed with the SMTPUTF8
         sluice offered) goes only to an upstream that offered SMTPUTF8
         (guarantee 8); the check waits for the upstream to be ready. */
      if (r->up == UP_READY && !(r->up_caps & SL_CAP_SMTPUTF8) &&
          has_8bit(line, len)) {
        lr = R_UP_NO_UTF8;
        break;
      }
      if ((rc = relay_line(r, line, len, Q_UP_VRFY)) == 0)
        return 0;
      if (rc > 0)
        break;
      lr = R_UPSTREAM_FAIL;
      break;
    }
    lr = r->pol->vrfy == SL_VRFY_502 ? R_VRFY502 : R_VRFY252;
    break;
  case SL_V_HELP:
    lr = R_HELP;
    break;
  case SL_V_AUTH:
    if (!(r->offered & SL_CAP_AUTH)) {
      lr = (r->pol->features & SL_FEAT_AUTH) && r->pol->auth_requires_tls &&
                   !r->stats.tls_client
               ? R_AUTH_NEED_TLS
               : R_AUTH_UNAVAIL;
      break;
    }
    if (r->up == UP_READY && !(r->up_caps & SL_CAP_AUTH)) {
      lr = R_AUTH_UNAVAIL; /* offered by screen-first, not by this server */
      break;
    }
    if ((rc = relay_line(r, line, len, Q_UP_AUTH)) == 0)
      return 0;
    if (rc < 0) {
      lr = R_UPSTREAM_FAIL;
      break;
    }
    sl__auth_start(r, arg, alen);
    r->cl = CL_WAIT;
    break;
  case SL_V_STARTTLS:
    if (!(r->pol->features & SL_FEAT_STARTTLS)) {
      lr = R_TLS_UNAVAIL;
      break;
    }
    if (r->stats.tls_client) {
      lr = R_TLS_ACTIVE;
      break;
    }
    /* Plaintext after STARTTLS must never be read as commands inside TLS
       (CVE-2011-0411): drop it, count it, read nothing until the
       handshake. */
    if (more) {
      size_t extra = r->cin.len - whole;
      r->stats.starttls_discarded += (uint32_t)extra;
      sl__event(r, &(sl_event){.kind = SL_EV_STARTTLS_INJECTION,
                               .starttls_injection.bytes = (uint32_t)extra});
      whole = r->cin.len;
    }
    lr = R_TLS_READY;
    r->no_input = 1;
    r->cl = CL_WAIT;
    break;
  case SL_V_NONSMTP:
    lr = R_NONSMTP;
    r->no_input = 1;
    break;
  case SL_V_XCLIENT:
  case SL_V_XFORWARD:
  case SL_V_ETRN:
    lr = R_NOT_IMPL;
    break;
  default:
    lr = R_UNKNOWN;
    break;
  }
reply:
  if (lr == R_UPSTREAM_FAIL && r->authed && r->up == UP_NONE &&
      r->cl != CL_BDAT) {
    /* sl__need_upstream(): the authenticated leg is lost.  (A chunk still
       to read gets the 451; the command after it gets this.) */
    lr = R_AUTH_LOST;
    r->no_input = 1;
  }
  if (lr >= 0)
    sl__q_push_local(r, (enum local_reply)lr);
  if (early)
    r->stats.sync_violations++;
  r->sync_bad = 0;
  if (ends_group(r, c.verb) && r->q_len)
    r->q_sync |= 1u << ((r->q_head + r->q_len - 1) % QUEUE_CAP);
consumed:
  if (r->chk_state == CHK_ANSWERED)
    r->chk_state = CHK_IDLE; /* the answer was for this line */
  sl__buf_consume(r, &r->cin, whole);
  r->stats.commands++;
  r->t_client = r->now;
  return 1;
}

/* The verb a refused line began with (a line too long or with a bad
   byte is never dispatched): what its reply answers. */
static void line_cmd(sl_relay *r, const uint8_t *p, size_t n) {
  sl_cmd c;
  sl_cmd_parse(p, n < 16 ? n : 16, &c);
  r->cmd_now = (uint8_t)c.verb;
}

/* One line from cin: 1 consumed, 0 wait for more. */
static int step_line(sl_relay *r) {
  uint8_t *p = r->cin.p + r->cin.off;
  size_t n = r->cin.len;
  uint8_t *nl = memchr(p, '\n', n);
  if (r->skip_line) {
    /* the rest of an overlong line, up to its end */
    sl__buf_consume(r, &r->cin, nl ? (size_t)(nl - p) + 1 : n);
    if (nl)
      r->skip_line = 0;
    return 1;
  }
  uint32_t limit = sl__line_limit(r);
  if (r->cl == CL_AUTH && r->up == UP_READY && !sl__up_room(r, 1))
    return 0; /* a cancel may have to go upstream */
  if (!nl) {
    if (n >= limit) {
      line_cmd(r, p, n);
      /* Never split a long line into two commands: refuse it whole. */
      sl__buf_consume(r, &r->cin, n);
      r->skip_line = 1;
      goto too_long;
    }
    if (sl__buf_free(&r->cin) == 0)
      sl__buf_reserve(r, &r->cin, limit - (uint32_t)n); /* a long AUTH line */
    return 0;
  }
  size_t whole = (size_t)(nl - p) + 1;
  if (whole > limit) {
    line_cmd(r, p, whole);
    sl__buf_consume(r, &r->cin, whole);
    goto too_long;
  }
  size_t len = whole - 1;
  int bad = len == 0 || p[len - 1] != '\r';
  if (!bad) {
    len--;
    bad = memchr(p, '\r', len) != NULL || memchr(p, 0, len) != NULL;
  }
  if (bad) {
    if (r->cl == CL_AUTH && r->up != UP_READY) {
      r->cl = CL_CMD; /* the AUTH's local answer goes to this line */
    } else if (r->cl == CL_AUTH) {
      if (!sl__up_room(r, 1))
        return 0;
      sasl_cancel(r);
    } else {
      line_cmd(r, p, len);
      sl__q_push_local(r, R_BAD_CHAR);
    }
    sl__buf_consume(r, &r->cin, whole);
    r->stats.commands++;
    return 1;
  }
  return dispatch(r, p, len, whole);
too_long:
  r->stats.commands++;
  if (r->cl == CL_AUTH && r->up != UP_READY)
    r->cl = CL_CMD; /* the AUTH's local answer goes to this line */
  else if (r->cl == CL_AUTH)
    sasl_cancel(r); /* room checked before consuming */
  else {
    sl__q_push_local(r, R_LINE_TOO_LONG);
  }
  return 1;
}

/* A message refused for its framing: the event names the violation. */
static void smuggling(sl_relay *r, sl_violation v) {
  sl__event(r, &(sl_event){.kind = SL_EV_SMUGGLING, .smuggling.violation = v});
}

static enum local_reply refusal(uint8_t viol) {
  if (sl__is_smuggle(viol))
    return R_SMUGGLE;
  if (viol == SL_VIOL_LINE_TOO_LONG)
    return R_TEXT_TOO_LONG;
  if (viol == SL_VIOL_SIZE)
    return R_MSG_SIZE;
  return R_UPSTREAM_LOST;
}

/* Message data after 354: framed into uout, or discarded. */
static int step_data(sl_relay *r) {
  int discard = r->cl == CL_DISCARD;
  uint8_t *out = NULL;
  size_t room = 0;
  if (!discard) {
    if (r->msize_len == MSIZE_CAP)
      return 0; /* cannot happen: a 354 comes after earlier ends' replies */
    uint32_t want = r->cin.len + 4u < r->lim->buffer_size
                        ? r->cin.len + 4u
                        : r->lim->buffer_size / 2;
    if (sl__buf_free(&r->uout) < 4 && sl__buf_reserve(r, &r->uout, want))
      return 0;
    if (sl__buf_free(&r->uout) < want && r->uout.len == 0 &&
        sl__buf_reserve(r, &r->uout, want))
      return 0;
    room = sl__buf_free(&r->uout);
    if (room < 4)
      return 0;
    out = sl__buf_tail(&r->uout);
  }
  if (r->fmsg && !discard && sl__ring_free(r) < STEP_ROOM)
    return 0; /* the end may need room for its SL_REQ_FILTER */
  size_t used = 0, made = 0;
  sl_data_status st = sl_data_run(&r->data, r->cin.p + r->cin.off, r->cin.len,
                                  out, room, &used, &made);
  /* a filtered message's terminator (".\r\n", the last bytes made at its
     end) is held back for the filters' verdict */
  size_t held = r->fmsg && !discard && st == SL_DATA_END ? 3 : 0;
  if (made - held) {
    if (r->uout.len == 0)
      r->t_uout = r->now;
    sl__filter_body(r, out, made - held);
    sl__buf_grow(&r->uout, made - held);
  }
  sl__buf_consume(r, &r->cin, used);
  r->cmd_now = SL_CMD_END_OF_MESSAGE; /* what a reply queued here answers */
  if (st == SL_DATA_END) {
    if (r->quiet) {
      r->quiet = 0; /* an early body after a refused DATA: no reply */
    } else if (discard) {
      sl__q_push_local(r, refusal(r->viol));
      if (sl__is_smuggle(r->viol))
        r->no_input = 1;
      r->mail = 0;
      r->rcpts = 0;
      r->viol = SL_VIOL_NONE;
    } else {
      sl__txn_reset(r);
      sl__msize_push(r, r->data.size);
      sl__up_sent(r, Q_UP_END, 0);
      if (held)
        sl__filter_hold(r, out + made - held, held, r->data.size);
    }
    r->cl = CL_CMD;
    return 1;
  }
  if (st == SL_DATA_VIOLATION && r->quiet) {
    /* smuggling bytes in a body that was never accepted: where it ends is
       ambiguous, so nothing after it is read; the session ends */
    smuggling(r, r->data.violation);
    r->quiet = 0;
    r->cl = CL_CMD;
    r->no_input = 1;
    sl__q_push_local(r, R_SMUGGLE);
    return 1;
  }
  if (st == SL_DATA_VIOLATION) {
    r->viol = (uint8_t)r->data.violation;
    if (sl__is_smuggle(r->viol))
      smuggling(r, (sl_violation)r->viol);
    /* Abort the upstream transaction by closing; never send the
       terminator after a violation (SECURITY.md 1.1, rule 3). */
    sl__up_close(r);
    sl_data_discard(&r->data, sl__is_smuggle(r->viol));
    r->cl = CL_DISCARD;
    return 1;
  }
  return used > 0;
}

/* A chunk's content refused on the way to DATA upstream: the upstream
   transaction is aborted by closing, never by its terminator. */
static void bdat_down_refuse(sl_relay *r, sl_violation v) {
  r->viol = (uint8_t)v;
  sl__up_close(r);
  sl__q_fail_upstream(r, R_UPSTREAM_LOST);
  enum local_reply why = refusal((uint8_t)v);
  r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP] = (uint8_t)(Q_LOCAL + why);
  if (sl__is_smuggle(r->viol)) {
    smuggling(r, v);
    r->no_input = 1; /* as for DATA, the session ends */
  }
  r->bdat_discard = 1;
}

/* BDAT content framed as DATA for an upstream without CHUNKING. */
static int step_bdat_down(sl_relay *r) {
  if (!r->bdat_go)
    return 0; /* the chunk waits in cin for the 354 */
  size_t n = r->cin.len < r->bdat_left ? r->cin.len : (size_t)r->bdat_left;
  if (n) {
    uint32_t want =
        n + 2 < r->lim->buffer_size ? (uint32_t)n + 2 : r->lim->buffer_size / 2;
    if (sl__buf_free(&r->uout) < 2 && sl__buf_reserve(r, &r->uout, want))
      return 0;
    size_t used = 0, made = 0;
    sl_violation v = sl_stuff_run(&r->stuff, r->cin.p + r->cin.off, n,
                                  sl__buf_tail(&r->uout),
                                  sl__buf_free(&r->uout), &used, &made);
    if (made && r->uout.len == 0)
      r->t_uout = r->now;
    sl__filter_body(r, sl__buf_tail(&r->uout), made);
    sl__buf_grow(&r->uout, made);
    if (used > n)
      used = n;
    sl__buf_consume(r, &r->cin, used);
    r->bdat_left -= used;
    r->data.size += used;
    if (v != SL_VIOL_NONE) {
      bdat_down_refuse(r, v);
      if (r->bdat_left == 0)
        r->cl = CL_CMD;
      return 1;
    }
    if (r->bdat_left)
      return used > 0;
  }
  r->cl = CL_CMD;
  if (!r->bdat_last)
    return 1;
  if (r->stuff.cr) {
    /* the message would end on a bare CR */
    bdat_down_refuse(r, SL_VIOL_BARE_CR);
    return 1;
  }
  if (sl__buf_reserve(r, &r->uout, 5) ||
      (r->fmsg && sl__ring_free(r) < STEP_ROOM)) {
    r->cl = CL_BDAT; /* try the end again when the pool (or ring) has room */
    return 0;
  }
  if (r->uout.len == 0)
    r->t_uout = r->now;
  if (r->fmsg) {
    /* the terminator is held for the verdict, not written yet */
    uint8_t term[5];
    size_t tn = sl_stuff_end(&r->stuff, term);
    sl__filter_hold(r, term, tn, r->data.size);
  } else {
    sl__buf_grow(&r->uout, sl_stuff_end(&r->stuff, sl__buf_tail(&r->uout)));
    sl__msize_mark_newest(r); /* pushed at the 354: the end goes out now */
  }
  /* the LAST chunk's entry now waits for the end-of-data's reply */
  r->up_out++;
  r->t_up = sl__tadd(r->now, sl__up_timeout(r, Q_UP_BDAT_LAST));
  r->bdat_down = r->bdat_go = 0;
  return 1;
}

/* A BDAT chunk's bytes: checked and copied upstream, or discarded. */
static int step_bdat(sl_relay *r) {
  if (r->bdat_down && !r->bdat_discard)
    return step_bdat_down(r);
  size_t n = r->cin.len < r->bdat_left ? r->cin.len : (size_t)r->bdat_left;
  if (!r->bdat_discard) {
    if (sl__buf_free(&r->uout) == 0 || !r->uout.p) {
      uint32_t want = n + 1 < r->lim->buffer_size ? (uint32_t)n + 1
                                                  : r->lim->buffer_size / 2;
      if (sl__buf_reserve(r, &r->uout, want))
        return 0;
    }
    if (n > sl__buf_free(&r->uout))
      n = sl__buf_free(&r->uout);
    size_t ok;
    sl_violation v = sl_bdat_check(&r->bdat_cr, r->cin.p + r->cin.off, n, &ok);
    if (v == SL_VIOL_NONE && r->bdat_last && n == r->bdat_left && r->bdat_cr) {
      /* the message would end on a bare CR: keep it back and refuse */
      v = SL_VIOL_BARE_CR;
      ok = n - 1;
    }
    if (r->uout.len == 0)
      r->t_uout = r->now;
    sl__buf_put(&r->uout, r->cin.p + r->cin.off, ok);
    sl__filter_chunk(r, r->cin.p + r->cin.off, ok);
    if (v != SL_VIOL_NONE) {
      r->viol = (uint8_t)v;
      smuggling(r, v);
      sl__up_close(r);
      sl__q_fail_upstream(r, R_UPSTREAM_LOST);
      /* this chunk's own reply says why, and the session ends */
      r->q[(r->q_head + r->q_len - 1) % QUEUE_CAP] =
          (uint8_t)(Q_LOCAL + R_SMUGGLE);
      r->no_input = 1;
      r->bdat_discard = 1;
      n = ok;
    }
  }
  sl__buf_consume(r, &r->cin, n);
  r->bdat_left -= n;
  r->data.size += n;
  if (r->bdat_left == 0) {
    r->cl = CL_CMD;
    if (r->bdat_last && !r->bdat_discard && !r->bdat_down && r->fmsg &&
        r->up == UP_READY)
      sl__filter_chunk_end(r); /* step_client left ring room for it */
    if (!r->cin.len)
      r->t_rec = SL_TSTAMP_NONE; /* the chunk was the record */
    return 1;
  }
  return n > 0;
}

int sl__step_client(sl_relay *r) {
  int progress = 0;
  if (r->cl == CL_WAIT && r->wait_354 && r->q_len == 0 && r->cout.len == 0 &&
      !r->no_input) {
    /* A refused DATA's reply has left: bytes the client sent before it
       arrived are the body it should not have sent. */
    r->wait_354 = 0;
    if (r->body_early)
      discard_early_body(r);
    else
      r->cl = CL_CMD;
    r->body_early = 0;
    progress = 1;
  }
  while ((r->cin.len || (r->cl == CL_BDAT && r->bdat_left == 0)) &&
         r->cl < CL_CLOSING && sl__ring_free(r) >= STEP_ROOM) {
    int rc;
    switch (r->cl) {
    case CL_PROXY:
      rc = step_proxy(r);
      break;
    case CL_CMD:
    case CL_AUTH:
      /* Pregreet bytes wait for the greeting; a client that does not read
         its replies gets no more of them. */
      if (!r->greeted || r->no_input || sl__q_full(r) ||
          r->cout.len >= r->lim->buffer_size / 2)
        return progress;
      rc = step_line(r);
      break;
    case CL_DATA:
    case CL_DISCARD:
      rc = step_data(r);
      break;
    case CL_BDAT:
      rc = step_bdat(r);
      break;
    default:
      return progress;
    }
    if (rc <= 0)
      break;
    progress = 1;
  }
  return progress;
}

/* ---- session start and the PROXY header ---------------------------------- */

void sl__session_start(sl_relay *r) {
  r->cmd_now = SL_CMD_CONNECT;
  r->t_client = r->now;
  if (r->info.admission == SL_ADMIT_TEMPFAIL) {
    r->dnsbl_done = 1;
    r->greeted = 1;
    r->no_input = 1;
    sl__q_push_local(r, R_TEMPFAIL);
    return;
  }
  if (r->info.admission == SL_ADMIT_TARPIT)
    sl__use_suspect(r, SL_TARPIT_ADMISSION);
  if (r->pol->ndnsbl == 0 || r->info.client.family == SL_AF_UNSPEC ||
      (r->info.flags & SL_CONN_SCREEN_PASSED))
    r->dnsbl_done = 1;
  sl__q_push(r, Q_GREETING);
  r->greet_jitter = sl__jitter(r);
  if (r->pol->mode == SL_MODE_PASSTHROUGH) {
    r->attempt = 0;
    sl__up_connect(r);
  } else if (r->pol->greet_teaser && r->prof->greet_delay &&
             !(r->info.flags & SL_CONN_SCREEN_PASSED) &&
             sl__buf_reserve(r, &r->cout,
                             (uint32_t)sl__local_len(r, R_GREETING)) == 0) {
    uint8_t *o = sl__buf_tail(&r->cout);
    size_t n = sl__put_str(o, "220-");
    n += sl__put_str(o + n, r->pol->hostname);
    n += sl__put_str(o + n, " ESMTP\r\n");
    sl__buf_grow(&r->cout, n);
    r->teaser = 1;
  }
}

static int step_proxy(sl_relay *r) {
  sl_proxy_header h;
  long n = sl_proxy_parse(r->cin.p + r->cin.off, r->cin.len, &h);
  if (n == SL_ERR_INCOMPLETE)
    return 0;
  if (n < 0) {
    /* haproxy's rule: anything but a valid header aborts, unanswered */
    sl__buf_release(r, &r->cin);
    r->no_input = 1;
    sl__client_close_after_reply(r, SL_END_PROTOCOL);
    return 1;
  }
  if (!h.local) {
    r->info.client = h.src;
    r->info.local = h.dst;
    if (r->info.proxy_admit)
      r->info.admission =
          r->info.proxy_admit(r->info.proxy_admit_ctx, &h.src, r->now);
  }
  sl__buf_consume(r, &r->cin, (size_t)n);
  r->cl = CL_CMD;
  if (!r->cin.len)
    r->t_rec = SL_TSTAMP_NONE; /* the header has its own deadline */
  if (r->cin.len) {
    r->pregreet = 1;
    r->stats.pregreet_bytes += r->cin.len;
  }
  sl__session_start(r);
  return 1;
}

/* The longest line the client may send next: an AUTH command and its SASL
   continuations may be auth_line_max long (RFC 4954 4), every other command
   command_line_max. */
uint32_t sl__line_limit(const sl_relay *r) {
  if (r->cl == CL_AUTH ||
      (r->cin.len >= 5 && sl_ieq(r->cin.p + r->cin.off, "AUTH ", 5)))
    return r->lim->auth_line_max;
  return r->lim->command_line_max;
}
