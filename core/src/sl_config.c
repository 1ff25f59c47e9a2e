/* sl_config.c: defaults and consistency checks of sl_limits and sl_policy. */
#include <string.h>

#include "sluice/errors.h"
#include "sluice/limits.h"
#include "sluice/policy.h"

void sl_limits_default(sl_limits *l) {
  memset(l, 0, sizeof(*l));
  l->version = SL_LIMITS_VERSION;
  l->command_line_max = 512;
  l->auth_line_max = 12288;
  l->reply_line_max = 512;
  l->reply_max = 13312; /* a 12288-octet AUTH challenge plus its framing */
  l->text_line_max = 1000;
  l->path_max = 256;
  l->domain_max = 255;
  l->message_size_max = 52428800;
  l->recipients_max = 100;
  l->recipient_overshoot_max = 1000;
  l->pipeline_max = 32;
  l->errors_max = 20;
  l->junk_commands_max = 100;
  l->buffer_size = 16384;
  l->small_buffer_size = 512;
  l->proxy_header_timeout = 5 * SL_SEC;
  l->command_timeout = 300 * SL_SEC;
  l->data_block_timeout = 180 * SL_SEC;
  l->record_timeout = 60 * SL_SEC;
  l->send_timeout = 300 * SL_SEC;
  l->upstream_connect_timeout = 30 * SL_SEC;
  l->upstream_greeting_timeout = 300 * SL_SEC;
  l->upstream_command_timeout = 300 * SL_SEC;
  l->upstream_data_init_timeout = 120 * SL_SEC;
  l->upstream_data_term_timeout = 600 * SL_SEC;
  l->tls_handshake_timeout = 60 * SL_SEC;
  /* Longer than any legitimate session: the RFC 5321 4.5.3.2 waits of one
     transaction (32 min) plus message_size_max at 128 kbit/s (55 min),
     with room to spare (README "Limits"). */
  l->session_timeout = 7200 * SL_SEC;
}

int sl_limits_check(const sl_limits *l) {
  if (!l || l->version != SL_LIMITS_VERSION)
    return SL_ERR_INVALID_ARGUMENT;
  /* A command line must fit a small buffer, a reply or an AUTH line a large
     one (with room for the re-framing); the pipeline queue is a fixed
     array. */
  if (l->command_line_max < 64 || l->command_line_max > l->small_buffer_size ||
      l->small_buffer_size < 300 || l->small_buffer_size % 8 ||
      l->buffer_size % 8 || l->auth_line_max < l->command_line_max ||
      l->auth_line_max + 2 > l->buffer_size || l->reply_line_max < 64 ||
      l->reply_max < l->reply_line_max ||
      (uint64_t)l->reply_max + 512 > l->buffer_size || l->text_line_max < 80 ||
      l->path_max < 16 || l->domain_max < 16 || l->recipients_max < 1 ||
      l->pipeline_max < 2 || l->pipeline_max > 32 ||
      l->buffer_size > 65528 /* 16-bit offsets in the relay */)
    return SL_ERR_INVALID_ARGUMENT;
  return SL_OK;
}

void sl_policy_default(sl_policy *p) {
  memset(p, 0, sizeof(*p));
  p->version = SL_POLICY_VERSION;
  p->mode = SL_MODE_PASSTHROUGH;
  p->hostname = "localhost";
  p->features = SL_FEAT_ALL & ~(uint32_t)(SL_FEAT_STARTTLS | SL_FEAT_AUTH);
  p->vrfy = SL_VRFY_252;
  p->identity = SL_IDENT_NONE;
  p->upstream_tls = SL_UPTLS_OPPORTUNISTIC;
  p->upstream_attempts = 3;
  p->auth_requires_tls = 1;
  p->greet_teaser = 1;
  /* Postfix 3.9's default for smtpd_forbid_unauth_pipelining */
  p->forbid_unauth_pipelining = 1;
  p->pregreet_action = SL_ACT_CONTINUE;
  p->pregreet_score = 0;
  p->dnsbl_timeout = 5 * SL_SEC;
  p->tarpit_score = INT32_MAX;
  p->reject_score = INT32_MAX;
  p->allow_score = INT32_MIN;
  p->dnsbl_action = SL_ACT_REJECT;
}

static int tarpit_ok(const sl_tarpit *t) {
  return !(t->stutter_bytes && !t->stutter_interval);
}

int sl_policy_check(const sl_policy *p) {
  if (!p || p->version != SL_POLICY_VERSION || !p->hostname ||
      (p->mode != SL_MODE_PASSTHROUGH && p->mode != SL_MODE_SCREEN_FIRST) ||
      (p->features & ~(uint32_t)SL_FEAT_ALL) || p->upstream_attempts < 1 ||
      p->ndnsbl > SL_DNSBL_ZONES_MAX || (p->ndnsbl && !p->dnsbl) ||
      p->vrfy > SL_VRFY_RELAY || p->identity > SL_IDENT_XFORWARD ||
      p->upstream_tls > SL_UPTLS_IMPLICIT || p->pregreet_action > SL_ACT_DROP ||
      p->dnsbl_action > SL_ACT_DROP || !tarpit_ok(&p->normal) ||
      !tarpit_ok(&p->suspect) || sl_rcpt_policy_check(&p->rcpt) != SL_OK)
    return SL_ERR_INVALID_ARGUMENT;
  /* The hostname goes into replies and EHLO: keep it a plain token. */
  size_t n = strlen(p->hostname);
  if (n == 0 || n > 255)
    return SL_ERR_INVALID_ARGUMENT;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p->hostname[i];
    if (c <= 0x20 || c >= 0x7f)
      return SL_ERR_INVALID_ARGUMENT;
  }
  for (size_t z = 0; z < p->ndnsbl; z++) {
    if (!p->dnsbl[z].zone || !p->dnsbl[z].zone[0] ||
        p->dnsbl[z].ncodes > SL_DNSBL_CODES_MAX)
      return SL_ERR_INVALID_ARGUMENT;
  }
  return SL_OK;
}
