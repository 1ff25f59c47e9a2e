/*
 * sl_names_test.c: every vocabulary list of relay.h and ratelim.h gives its
 * enum and its names from the same entries, names are distinct and
 * lower-case, values outside a list are "unknown", and the words the
 * drivers' logs and metrics are read by stay what they were.
 */
#include <ctype.h>
#include <string.h>

#include "sl_test.h"
#include "sluice/ratelim.h"
#include "sluice/relay.h"

/* Checks one list: each entry's enum value and name, names distinct, no
   gap in the values, "unknown" right after the last. */
#define CHECK_LIST(map, prefix, fn, type)                                      \
  do {                                                                         \
    const char *nms_[64];                                                      \
    int vals_[64], cnt_ = 0;                                                   \
    map(ROW_##prefix) for (int i_ = 0; i_ < cnt_; i_++) {                      \
      CHECK_STR(fn((type)vals_[i_]), nms_[i_]);                                \
      for (const char *p_ = nms_[i_]; *p_; p_++)                               \
        CHECK(islower((unsigned char)*p_) || isdigit((unsigned char)*p_) ||    \
              *p_ == '_');                                                     \
      for (int j_ = i_ + 1; j_ < cnt_; j_++)                                   \
        CHECK(strcmp(nms_[i_], nms_[j_]) != 0);                                \
      if (i_)                                                                  \
        CHECK_INT(vals_[i_], vals_[i_ - 1] + 1);                               \
    }                                                                          \
    CHECK(cnt_ > 1);                                                           \
    CHECK_STR(fn((type)(vals_[cnt_ - 1] + 1)), "unknown");                     \
    CHECK_STR(fn((type)-1), "unknown");                                        \
  } while (0)

#define ROW_(prefix, name, value, text)                                        \
  CHECK_INT(SL_##prefix##_##name, value);                                      \
  nms_[cnt_] = text;                                                           \
  vals_[cnt_++] = value;
#define ROW_REQ(name, value, text) ROW_(REQ, name, value, text)
#define ROW_EV(name, value, text) ROW_(EV, name, value, text)
#define ROW_TARPIT(name, value, text) ROW_(TARPIT, name, value, text)
#define ROW_VIOL(name, value, text) ROW_(VIOL, name, value, text)
#define ROW_UPFAIL(name, value, text) ROW_(UPFAIL, name, value, text)
#define ROW_STAGE(name, value, text) ROW_(STAGE, name, value, text)
#define ROW_END(name, value, text) ROW_(END, name, value, text)
#define ROW_ADMIT(name, value, text) ROW_(ADMIT, name, value, text)
#define ROW_MODE(name, value, text) ROW_(MODE, name, value, text)
#define ROW_VRFY(name, value, text) ROW_(VRFY, name, value, text)
#define ROW_IDENT(name, value, text) ROW_(IDENT, name, value, text)
#define ROW_UPTLS(name, value, text) ROW_(UPTLS, name, value, text)
#define ROW_ACT(name, value, text) ROW_(ACT, name, value, text)

static void test_lists(void) {
  CHECK_LIST(SL_REQUEST_MAP, REQ, sl_request_name, sl_request_type);
  CHECK_LIST(SL_EVENT_MAP, EV, sl_event_name, sl_event_kind);
  CHECK_LIST(SL_TARPIT_REASON_MAP, TARPIT, sl_tarpit_reason_name,
             sl_tarpit_reason);
  CHECK_LIST(SL_VIOLATION_MAP, VIOL, sl_violation_name, sl_violation);
  CHECK_LIST(SL_UPSTREAM_FAILURE_MAP, UPFAIL, sl_upstream_failure_name,
             sl_upstream_failure);
  CHECK_LIST(SL_STAGE_MAP, STAGE, sl_stage_name, sl_stage);
  CHECK_LIST(SL_END_REASON_MAP, END, sl_end_reason_name, sl_end_reason);
  CHECK_LIST(SL_ADMISSION_MAP, ADMIT, sl_admission_name, sl_admission);
  CHECK_LIST(SL_MODE_MAP, MODE, sl_mode_name, sl_mode);
  CHECK_LIST(SL_VRFY_POLICY_MAP, VRFY, sl_vrfy_policy_name, sl_vrfy_policy);
  CHECK_LIST(SL_IDENTITY_MAP, IDENT, sl_identity_name, sl_identity);
  CHECK_LIST(SL_UPSTREAM_TLS_MAP, UPTLS, sl_upstream_tls_name, sl_upstream_tls);
  CHECK_LIST(SL_ACTION_MAP, ACT, sl_action_name, sl_action);
}

/* The session log's stage=, end=, smuggling=, upstream_failures= and
   admission= values and the metric labels are these words: operators'
   queries depend on them. */
static void test_log_words(void) {
  CHECK_STR(sl_stage_name(SL_STAGE_DELIVERED), "delivered");
  CHECK_STR(sl_end_reason_name(SL_END_CLIENT_CLOSED), "client_closed");
  CHECK_STR(sl_end_reason_name(SL_END_QUIT), "quit");
  CHECK_STR(sl_violation_name(SL_VIOL_LINE_TOO_LONG), "line_too_long");
  CHECK_STR(sl_upstream_failure_name(SL_UPFAIL_IDENTITY), "identity");
  CHECK_STR(sl_admission_name(SL_ADMIT_TEMPFAIL), "tempfail");
  CHECK_STR(sl_tarpit_reason_name(SL_TARPIT_ADMISSION), "admission");
  CHECK_STR(sl_event_name(SL_EV_SESSION_END), "session_end");
  CHECK_STR(sl_request_name(SL_REQ_CLOSE_CLIENT), "close_client");
}

/* The configuration's words (sluiced.conf): operators' files depend on
   them. */
static void test_config_words(void) {
  CHECK_STR(sl_mode_name(SL_MODE_SCREEN_FIRST), "screen");
  CHECK_STR(sl_vrfy_policy_name(SL_VRFY_502), "502");
  CHECK_STR(sl_identity_name(SL_IDENT_PROXY_V2), "proxy2");
  CHECK_STR(sl_upstream_tls_name(SL_UPTLS_OPPORTUNISTIC), "opportunistic");
  CHECK_STR(sl_action_name(SL_ACT_DROP), "drop");
}

int main(void) {
  SL_RUN(test_lists);
  SL_RUN(test_log_words);
  SL_RUN(test_config_words);
  return sl_test_summary();
}
