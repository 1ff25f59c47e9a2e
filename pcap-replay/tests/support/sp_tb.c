/* sp_tb.c: hand-made sessions for the replay tests (sp_tb.h). */
#include "sp_tb.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void sp_tb_head(sp_tb *t) {
  t->len = (size_t)snprintf(t->buf, sizeof t->buf,
                            "sluice-transcript 1\nsource hand.pcap session 1\n"
                            "client 192.0.2.7 40000\nserver 198.51.100.1 25\n"
                            "start 1700000000.000000\n\n");
}

void sp_tb_rec(sp_tb *t, char type, unsigned long long us, const char *data) {
  t->len += (size_t)snprintf(t->buf + t->len, sizeof t->buf - t->len,
                             "%c %llu %zu\n%s\n", type, us, strlen(data), data);
}

void sp_tb_end(sp_tb *t, unsigned long long us, const char *why) {
  t->len += (size_t)snprintf(t->buf + t->len, sizeof t->buf - t->len,
                             "E %llu %s\n", us, why);
}

int sp_tb_load(sp_script *s, const sp_tb *t) {
  char err[256];
  int rc = sp_script_from_transcript(s, (const uint8_t *)t->buf, t->len, err,
                                     sizeof err);
  if (rc)
    fprintf(stderr, "transcript: %s\n", err);
  return rc;
}
