/* sd_check.c: policy service (at MAIL, RCPT, DATA) and greylisting at RCPT
   (sd_check.h). */
#include "sd_check.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/greylist.h"
#include "sluice/policyd.h"
#include "sluice/spf.h"

/* What a policy server may send back before its empty line. */
#define RESP_MAX 8192

/* One DNS question of the SPF check; the check may be cancelled before
   the answer comes (c-ares calls back all the same). */
typedef struct spf_q {
  struct sd_check *k; /* NULL: the check is gone */
} spf_q;

struct sd_check {
  sd_handler h;
  sd_timer timer;
  sd_loop *loop;
  sd_state *st;
  const sd_config *cfg;
  sd_check_cb cb;
  void *ctx;
  int fd;
  uint8_t registered;
  sd_state_req greq;
  char *out; /* the encoded request */
  size_t outlen, outoff;
  uint8_t *in;
  size_t inlen;
  char rcpt[SL_GREY_KEY_MAX];
  char client_key[SL_GREY_KEY_MAX];
  char triplet[SL_GREY_KEY_MAX];
  uint8_t allowlisted;
  uint8_t spf_done, spf_passed, asn_done;
  sd_dns *dns;
  sl_spf *spf;
  spf_q *spfq; /* the question out */
  char sender[SL_GREY_KEY_MAX], helo[256];
  const sl_addr *client_p;
  sl_addr client;
  uint16_t code;
  uint8_t stage; /* sl_command: SL_CMD_MAIL, SL_CMD_RCPT or SL_CMD_DATA */
  char text[SL_CHECK_TEXT_MAX];
};

/* The policy_stages bit of a check's stage. */
static uint32_t stage_bit(uint8_t stage) {
  switch (stage) {
  case SL_CMD_MAIL:
    return SL_POLICY_AT_MAIL;
  case SL_CMD_DATA:
    return SL_POLICY_AT_DATA;
  case SL_CMD_EHLO:
  case SL_CMD_HELO:
    return SL_POLICY_AT_HELO;
  default:
    return SL_POLICY_AT_RCPT;
  }
}

static void policy_close(sd_check *k) {
  if (k->fd >= 0) {
    if (k->registered)
      sd_loop_del(k->loop, k->fd);
    close(k->fd);
  }
  k->fd = -1;
  k->registered = 0;
  sd_timer_stop(k->loop, &k->timer);
}

static void check_free(sd_check *k) {
  if (k->spfq)
    k->spfq->k = NULL;
  free(k->spf);
  policy_close(k);
  free(k->out);
  free(k->in);
  free(k);
}

/* A refusal in Postfix's words (smtpd_check.c): "<rcpt>: Recipient address
   rejected: ...", "<sender>: Sender address rejected: ...", "<DATA>: Data
   command rejected: ..." after the enhanced status code of "d.d.d text". */
static void refusal(sd_check *k, uint16_t code, const char *dtext) {
  const char *sp = strchr(dtext, ' ');
  int elen = sp ? (int)(sp - dtext) : (int)strlen(dtext);
  k->code = code;
  /* a long recipient cuts the text, never the code */
  char *o = k->text, *end = k->text + sizeof k->text - 1;
  int helo = k->stage == SL_CMD_EHLO || k->stage == SL_CMD_HELO;
  const char *what = k->stage == SL_CMD_MAIL   ? k->sender
                     : k->stage == SL_CMD_DATA ? "DATA"
                     : helo                    ? k->helo
                                               : k->rcpt;
  const char *how = k->stage == SL_CMD_MAIL   ? ">: Sender address rejected: "
                    : k->stage == SL_CMD_DATA ? ">: Data command rejected: "
                    : helo                    ? ">: Helo command rejected: "
                           : ">: Recipient address rejected: ";
  const char *parts[] = {" <", what, how, sp ? sp + 1 : ""};
  if (elen > 9)
    elen = 9;
  memcpy(o, dtext, (size_t)elen);
  o += elen;
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    for (const char *p = parts[i]; *p && o < end; p++)
      *o++ = *p;
  *o = 0;
}

/* ---- greylisting ----------------------------------------------------------
 */

static void grey_verdict(sd_check *k, const sd_grey_result *res) {
  if (res->verdict == SD_GREY_NEW || res->verdict == SD_GREY_EARLY) {
    char t[200];
    snprintf(t, sizeof t,
             "4.7.1 Greylisted, see RFC 6647; try again in %u "
             "seconds",
             (unsigned)(res->wait_s ? res->wait_s : 1));
    refusal(k, 450, t);
  }
  /* PASS, ALLOWED, and UNKNOWN (the backend could not answer) pass */
}

static void grey_done(void *ctx, const sd_grey_result *res) {
  sd_check *k = ctx;
  k->greq = 0;
  grey_verdict(k, res);
  k->cb(k->ctx, k->code, k->text);
  check_free(k);
}

static int grey_start(sd_check *k);

static void finish_async(sd_check *k) {
  if (grey_start(k) == SD_STATE_PENDING)
    return;
  k->cb(k->ctx, k->code, k->text);
  check_free(k);
}

/* ---- SPF: the client part is the sender's domain where SPF passes -------- */

static int spf_run(sd_check *k);

/* The triplet again after the client part changed (SPF, ASN); the sender
   and recipient fitted when the check started, so they fit now. */
static void rekey(sd_check *k) {
  char sender[SL_GREY_KEY_MAX], rcpt[SL_GREY_KEY_MAX];
  if (sl_grey_sender((const uint8_t *)k->sender, strlen(k->sender), sender,
                     sizeof sender) < 0 ||
      sl_grey_rcpt((const uint8_t *)k->rcpt, strlen(k->rcpt), rcpt,
                   sizeof rcpt) < 0 ||
      sl_grey_triplet(k->client_key, sender, rcpt, k->triplet,
                      sizeof k->triplet) < 0)
    k->allowlisted = 1; /* nothing to key by */
}

/* The origin-ASN answer (Team Cymru's TXT format): its AS is the client
   part; no answer keeps the /24 or /64. */
static void asn_answer(void *arg, int st, const char *const *strs, size_t n) {
  spf_q *q = arg;
  sd_check *k = q->k;
  free(q);
  if (k == NULL || st == SD_DNS_CANCELLED)
    return;
  k->spfq = NULL;
  if (st == SD_DNS_OK && n > 0 &&
      sl_grey_asn(strs[0], k->client_key, sizeof k->client_key) >= 0)
    rekey(k);
  finish_async(k);
}

static void spf_answered(sd_check *k) {
  if (spf_run(k) == SD_STATE_PENDING)
    return;
  finish_async(k);
}

static void spf_addrs(void *arg, int st, const sl_addr *a, size_t n) {
  spf_q *q = arg;
  sd_check *k = q->k;
  free(q);
  if (k == NULL || st == SD_DNS_CANCELLED)
    return;
  k->spfq = NULL;
  sl_spf_answer(k->spf,
                st == SD_DNS_OK         ? SL_SPF_DNS_OK
                : st == SD_DNS_NOTFOUND ? SL_SPF_DNS_NXDOMAIN
                                        : SL_SPF_DNS_ERROR,
                NULL, a, n);
  spf_answered(k);
}

static void spf_a(void *arg, int st, const uint32_t *a, size_t n) {
  sl_addr v[SD_DNS_MAX_A];
  for (size_t i = 0; i < n && i < SD_DNS_MAX_A; i++) {
    memset(&v[i], 0, sizeof v[i]);
    v[i].family = SL_AF_INET;
    v[i].bytes[0] = (uint8_t)(a[i] >> 24);
    v[i].bytes[1] = (uint8_t)(a[i] >> 16);
    v[i].bytes[2] = (uint8_t)(a[i] >> 8);
    v[i].bytes[3] = (uint8_t)a[i];
  }
  spf_addrs(arg, st, v, n);
}

static void spf_aaaa(void *arg, int st, const uint8_t (*a)[16], size_t n) {
  sl_addr v[SD_DNS_MAX_A];
  for (size_t i = 0; i < n && i < SD_DNS_MAX_A; i++) {
    memset(&v[i], 0, sizeof v[i]);
    v[i].family = SL_AF_INET6;
    memcpy(v[i].bytes, a[i], 16);
  }
  spf_addrs(arg, st, v, n);
}

static void spf_strs(void *arg, int st, const char *const *strs, size_t n) {
  spf_q *q = arg;
  sd_check *k = q->k;
  free(q);
  if (k == NULL || st == SD_DNS_CANCELLED)
    return;
  k->spfq = NULL;
  sl_spf_answer(k->spf,
                st == SD_DNS_OK         ? SL_SPF_DNS_OK
                : st == SD_DNS_NOTFOUND ? SL_SPF_DNS_NXDOMAIN
                                        : SL_SPF_DNS_ERROR,
                strs, NULL, n);
  spf_answered(k);
}

static void spf_timeout(sd_timer *t) {
  sd_check *k = (sd_check *)(void *)((char *)t - offsetof(sd_check, timer));
  if (k->spfq)
    k->spfq->k = NULL; /* its answer is dropped */
  k->spfq = NULL;
  k->spf_done = 1; /* no result: the /24 or /64 keys the triplet */
  finish_async(k);
}

/* Asks the evaluator's next question, or keys the triplet by its result:
   SD_STATE_PENDING while a question is out. */
static int spf_run(sd_check *k) {
  sl_spf_qtype t;
  const char *name;
  if (sl_spf_step(k->spf, &t, &name)) {
    spf_q *q = malloc(sizeof *q);
    int rc = -1;
    if (q) {
      q->k = k;
      if (t == SL_SPF_Q_A)
        rc = sd_dns_query_a(k->dns, name, spf_a, q);
      else if (t == SL_SPF_Q_AAAA)
        rc = sd_dns_query_aaaa(k->dns, name, spf_aaaa, q);
      else
        rc = sd_dns_query_strs(k->dns, name, t == SL_SPF_Q_MX, spf_strs, q);
    }
    if (rc == 0) {
      k->spfq = q;
      return SD_STATE_PENDING;
    }
    free(q); /* a name c-ares refuses: no result */
  } else if (sl_spf_get_result(k->spf) == SL_SPF_PASS &&
             sl_grey_client(&k->client, sl_spf_domain(k->spf), k->client_key,
                            sizeof k->client_key) >= 0) {
    k->spf_passed = 1;
    rekey(k);
  }
  sd_timer_stop(k->loop, &k->timer);
  k->spf_done = 1;
  return SD_STATE_DONE;
}

/* SD_STATE_DONE with k->code/text set, or SD_STATE_PENDING */
static int grey_start(sd_check *k) {
  const sd_config *c = k->cfg;
  if (!c->greylist || k->allowlisted || k->code || k->stage != SL_CMD_RCPT)
    return SD_STATE_DONE; /* greylisting keys a recipient: RCPT only */
  if (!k->spf_done && k->dns && c->greylist_spf) {
    k->spf = malloc(sizeof *k->spf);
    k->spf_done = 1;
    if (k->spf && sl_spf_init(k->spf, &k->client, k->sender, k->helo) == 0) {
      k->spf_done = 0;
      sd_timer_init(&k->timer, spf_timeout);
      sd_timer_set(k->loop, &k->timer,
                   sd_loop_now(k->loop) + (c->greylist_spf_timeout
                                               ? c->greylist_spf_timeout
                                               : 5 * SL_SEC));
      if (spf_run(k) == SD_STATE_PENDING)
        return SD_STATE_PENDING;
    }
  }
  const char *zone = k->client.family == SL_AF_INET6 ? c->greylist_asn6_zone
                                                     : c->greylist_asn_zone;
  if (!k->spf_passed && !k->asn_done && k->dns && zone && zone[0]) {
    char name[300];
    spf_q *q = malloc(sizeof *q);
    k->asn_done = 1;
    if (q && sl_addr_dnsbl_name(&k->client, zone, name, sizeof name) > 0) {
      q->k = k;
      if (sd_dns_query_strs(k->dns, name, 0, asn_answer, q) == 0) {
        k->spfq = q;
        return SD_STATE_PENDING;
      }
    }
    free(q);
  }
  sd_grey_params p = {(uint32_t)(c->greylist_delay / SL_SEC),
                      (uint32_t)(c->greylist_retry_window / SL_SEC),
                      (uint32_t)(c->greylist_max_age / SL_SEC),
                      c->greylist_auto_allow};
  sd_grey_result res;
  memset(&res, 0, sizeof res);
  int rc = sd_state_grey_check(k->st, k->client_key, k->triplet, &p, grey_done,
                               k, &res, &k->greq);
  if (rc == SD_STATE_DONE)
    grey_verdict(k, &res);
  return rc;
}

/* ---- the policy service ---------------------------------------------------
 */

static void policy_action(sd_check *k, const uint8_t *act, size_t n) {
  sl_policyd_verdict v;
  sl_policyd_action(act, n, &v);
  if (v.kind == SL_PD_ERROR) {
    const char *d = k->cfg->policy_default_action;
    d = d ? d : "451 4.3.5 Server configuration problem";
    sl_policyd_action((const uint8_t *)d, strlen(d), &v);
  }
  if (v.kind == SL_PD_REFUSE)
    refusal(k, v.code, v.text);
  else if (v.kind == SL_PD_OK)
    k->allowlisted = 1; /* Postfix's OK ends the restrictions */
}

static void policy_finish(sd_check *k, const uint8_t *act, size_t n) {
  policy_close(k);
  policy_action(k, act, n); /* n 0: the default action */
  finish_async(k);
}

static void policy_timeout(sd_timer *t) {
  sd_check *k = (sd_check *)(void *)((char *)t - offsetof(sd_check, timer));
  policy_finish(k, NULL, 0);
}

static void policy_io(sd_handler *h, uint32_t ev) {
  sd_check *k = (sd_check *)(void *)h;
  if (k->outoff < k->outlen) {
    if (ev & (EPOLLERR | EPOLLHUP) && !(ev & EPOLLOUT)) {
      policy_finish(k, NULL, 0);
      return;
    }
    ssize_t w =
        send(k->fd, k->out + k->outoff, k->outlen - k->outoff, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      policy_finish(k, NULL, 0);
      return;
    }
    if (w > 0)
      k->outoff += (size_t)w;
    if (k->outoff == k->outlen)
      sd_loop_mod(k->loop, k->fd, EPOLLIN, &k->h);
    return;
  }
  for (;;) {
    ssize_t r = recv(k->fd, k->in + k->inlen, RESP_MAX - k->inlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    if (r <= 0) {
      policy_finish(k, NULL, 0); /* closed or failed before the answer */
      return;
    }
    k->inlen += (size_t)r;
    const uint8_t *act;
    size_t alen;
    long rc = sl_policyd_parse(k->in, k->inlen, &act, &alen);
    if (rc > 0) {
      policy_finish(k, act, alen);
      return;
    }
    if (rc != SL_ERR_INCOMPLETE || k->inlen == RESP_MAX) {
      policy_finish(k, NULL, 0);
      return;
    }
  }
}

static int policy_connect(sd_check *k) {
  const char *s = k->cfg->policy_service;
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  if (strncmp(s, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)(void *)&ss;
    un->sun_family = AF_UNIX;
    snprintf(un->sun_path, sizeof un->sun_path, "%s", s + 5);
    len = (socklen_t)sizeof *un;
  } else {
    sl_sockaddr a;
    if (sl_parse_addrport(s + 5, &a) != 0)
      return -1;
    ss = a.ss;
    len = a.len;
  }
  k->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (k->fd < 0)
    return -1;
  if (connect(k->fd, (struct sockaddr *)&ss, len) != 0 &&
      errno != EINPROGRESS && errno != EAGAIN)
    return -1;
  k->h.cb = policy_io;
  if (sd_loop_add(k->loop, k->fd, EPOLLOUT, &k->h) != 0)
    return -1;
  k->registered = 1;
  sd_timer_init(&k->timer, policy_timeout);
  sd_timer_set(k->loop, &k->timer,
               sd_loop_now(k->loop) + (k->cfg->policy_timeout
                                           ? k->cfg->policy_timeout
                                           : 10 * SL_SEC));
  return 0;
}

/* Postfix's attributes (SMTPD_POLICY_README) that sluice knows at the
   check's stage: protocol_state MAIL, RCPT or DATA; the MAIL's SIZE=;
   recipient_count the recipients accepted before this one (RCPT) or in
   all (DATA); recipient only at RCPT; sasl_username and sasl_method only
   after an AUTH the upstream accepted, as Postfix sends them. */
static int policy_request(sd_check *k, const sd_check_facts *f) {
  const sl_request *q = f->req;
  char addr[SL_ADDR_STRLEN], helo[256], count[16], size[24];
  char user[SL_AUTH_USER_MAX + 1];
  if (sl_addr_format(f->client, addr, sizeof addr) < 0)
    snprintf(addr, sizeof addr, "unknown");
  snprintf(helo, sizeof helo, "%.*s", (int)q->check.helo_len, q->check.helo);
  snprintf(user, sizeof user, "%.*s", (int)q->check.sasl_username_len,
           q->check.sasl_username ? q->check.sasl_username : "");
  snprintf(count, sizeof count, "%u", (unsigned)q->check.rcpt_count);
  snprintf(size, sizeof size, "%llu", (unsigned long long)q->check.size);
  const char *state = k->stage == SL_CMD_MAIL   ? "MAIL"
                      : k->stage == SL_CMD_DATA ? "DATA"
                      : k->stage == SL_CMD_EHLO ? "EHLO"
                      : k->stage == SL_CMD_HELO ? "HELO"
                                                : "RCPT";
  const char *name =
      f->client_name && f->client_name[0] != '[' ? f->client_name : "unknown";
  sl_policyd_attr a[] = {
      {"request", "smtpd_access_policy"},
      {"protocol_state", state},
      {"protocol_name", q->check.esmtp ? "ESMTP" : "SMTP"},
      {"client_address", addr},
      {"client_name", name},
      {"reverse_client_name", name},
      {"helo_name", helo},
      {"sender", q->check.sender},
      {"recipient", q->check.rcpt},
      {"recipient_count", count},
      {"queue_id", ""},
      {"instance", f->instance},
      {"size", size},
      {"sasl_method", q->check.sasl_method ? q->check.sasl_method : ""},
      {"sasl_username", user},
      {"sasl_sender", ""},
      {"encryption_protocol", q->check.tls ? "TLS" : ""},
  };
  size_t cap = 1024 + 2 * SL_GREY_KEY_MAX + sizeof helo + sizeof user;
  k->out = malloc(cap);
  k->in = malloc(RESP_MAX);
  if (!k->out || !k->in)
    return -1;
  long n = sl_policyd_encode(a, sizeof a / sizeof a[0], k->out, cap);
  if (n < 0)
    return -1;
  k->outlen = (size_t)n;
  return 0;
}

int sd_check_start(sd_loop *loop, sd_state *st, sd_dns *dns,
                   const sd_config *cfg, const sd_check_facts *f,
                   sd_check_cb cb, void *ctx, uint16_t *code, char *text,
                   sd_check **out) {
  *out = NULL;
  *code = 0;
  text[0] = 0;
  sd_check *k = calloc(1, sizeof *k);
  if (k == NULL)
    return SD_STATE_DONE; /* no memory: the recipient goes on unchecked */
  const sl_request *q = f->req;
  k->loop = loop;
  k->st = st;
  k->cfg = cfg;
  k->cb = cb;
  k->ctx = ctx;
  k->fd = -1;
  k->allowlisted = q->check.allowlisted;
  /* a driver or test that predates stages fills 0: a RCPT */
  k->stage = q->check.stage ? q->check.stage : (uint8_t)SL_CMD_RCPT;
  k->dns = dns;
  k->client = *f->client;
  snprintf(k->rcpt, sizeof k->rcpt, "%s", q->check.rcpt);
  snprintf(k->sender, sizeof k->sender, "%s", q->check.sender);
  snprintf(k->helo, sizeof k->helo, "%.*s", (int)q->check.helo_len,
           q->check.helo);
  char sender[SL_GREY_KEY_MAX], rcpt[SL_GREY_KEY_MAX];
  if (cfg->greylist && k->stage == SL_CMD_RCPT &&
      (sl_grey_client(f->client, NULL, k->client_key, sizeof k->client_key) <
           0 ||
       sl_grey_sender((const uint8_t *)q->check.sender, strlen(q->check.sender),
                      sender, sizeof sender) < 0 ||
       sl_grey_rcpt((const uint8_t *)q->check.rcpt, strlen(q->check.rcpt), rcpt,
                    sizeof rcpt) < 0 ||
       sl_grey_triplet(k->client_key, sender, rcpt, k->triplet,
                       sizeof k->triplet) < 0))
    k->allowlisted = 1; /* no key fits: nothing to greylist by */
  if (cfg->policy_service && (cfg->policy_stages & stage_bit(k->stage))) {
    if (policy_request(k, f) == 0 && policy_connect(k) == 0) {
      *out = k;
      return SD_STATE_PENDING;
    }
    policy_close(k);
    policy_action(k, NULL, 0);
  }
  if (grey_start(k) == SD_STATE_PENDING) {
    *out = k;
    return SD_STATE_PENDING;
  }
  *code = k->code;
  memcpy(text, k->text, SL_CHECK_TEXT_MAX);
  check_free(k);
  return SD_STATE_DONE;
}

void sd_check_cancel(sd_check *k) {
  if (k == NULL)
    return;
  if (k->greq)
    sd_state_cancel(k->st, k->greq);
  check_free(k);
}
