/*
 * sl_names.c: the name functions of relay.h and ratelim.h, expanded from the
 * same X-macro lists as their enums, so a value and its name cannot drift
 * apart.
 */
#include "sluice/ratelim.h"
#include "sluice/relay.h"

#define SL_NAME_CASE_(name, value, text)                                       \
  case value:                                                                  \
    return text;

#define SL_NAME_FN_(fn, type, map)                                             \
  const char *fn(type v) {                                                     \
    switch ((int)v) { map(SL_NAME_CASE_) default : return "unknown"; }         \
  }

SL_NAME_FN_(sl_request_name, sl_request_type, SL_REQUEST_MAP)
SL_NAME_FN_(sl_event_name, sl_event_kind, SL_EVENT_MAP)
SL_NAME_FN_(sl_tarpit_reason_name, sl_tarpit_reason, SL_TARPIT_REASON_MAP)
SL_NAME_FN_(sl_violation_name, sl_violation, SL_VIOLATION_MAP)
SL_NAME_FN_(sl_upstream_failure_name, sl_upstream_failure,
            SL_UPSTREAM_FAILURE_MAP)
SL_NAME_FN_(sl_stage_name, sl_stage, SL_STAGE_MAP)
SL_NAME_FN_(sl_end_reason_name, sl_end_reason, SL_END_REASON_MAP)
SL_NAME_FN_(sl_admission_name, sl_admission, SL_ADMISSION_MAP)
SL_NAME_FN_(sl_mode_name, sl_mode, SL_MODE_MAP)
SL_NAME_FN_(sl_vrfy_policy_name, sl_vrfy_policy, SL_VRFY_POLICY_MAP)
SL_NAME_FN_(sl_identity_name, sl_identity, SL_IDENTITY_MAP)
SL_NAME_FN_(sl_upstream_tls_name, sl_upstream_tls, SL_UPSTREAM_TLS_MAP)
SL_NAME_FN_(sl_action_name, sl_action, SL_ACTION_MAP)
SL_NAME_FN_(sl_command_name, sl_command, SL_COMMAND_MAP)
