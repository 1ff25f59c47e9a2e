/* sp_dnsbl.c: the DNSBL answers file of sim and live (sp_dnsbl_load, see
 * sp_sim.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_sim.h"

/* ---- DNSBL answers ------------------------------------------------------ */

int sp_dnsbl_load(sp_dnsbl_table *t, const char *path, char *err,
                  size_t errlen) {
  memset(t, 0, sizeof *t);
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  char line[1024];
  unsigned lineno = 0;
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *h = strchr(line, '#');
    if (h)
      *h = '\0';
    char *w[2 + SL_DNSBL_ANSWERS_MAX + 1];
    int n = 0;
    for (char *s = strtok(line, " \t\r\n");
         s && n < (int)(sizeof w / sizeof w[0]); s = strtok(NULL, " \t\r\n"))
      w[n++] = s;
    if (!n)
      continue;
    sl_addr a;
    if (n < 2 || n > 2 + SL_DNSBL_ANSWERS_MAX ||
        sl_addr_parse(&a, w[0], strlen(w[0])) ||
        strlen(w[1]) >= SP_ZONE_NAME_MAX) {
      snprintf(err, errlen,
               "%s:%u: expected \"IP ZONE [A-record...]\" (at most %d)", path,
               lineno, SL_DNSBL_ANSWERS_MAX);
      fclose(f);
      sp_dnsbl_free(t);
      return -1;
    }
    if (t->n == cap) {
      cap = cap ? cap * 2 : 16;
      sp_dnsbl_answer *p = realloc(t->v, cap * sizeof *p);
      if (!p) {
        fclose(f);
        sp_dnsbl_free(t);
        snprintf(err, errlen, "out of memory");
        return -1;
      }
      t->v = p;
    }
    sp_dnsbl_answer *e = &t->v[t->n];
    memset(e, 0, sizeof *e);
    snprintf(e->ip, sizeof e->ip, "%s", w[0]);
    snprintf(e->zone, sizeof e->zone, "%s", w[1]);
    for (int i = 2; i < n; i++) {
      sl_addr r;
      if (sl_addr_parse(&r, w[i], strlen(w[i])) || r.family != SL_AF_INET) {
        snprintf(err, errlen, "%s:%u: \"%s\" is not an IPv4 A record", path,
                 lineno, w[i]);
        fclose(f);
        sp_dnsbl_free(t);
        return -1;
      }
      e->a[e->n++] = (uint32_t)r.bytes[0] << 24 | (uint32_t)r.bytes[1] << 16 |
                     (uint32_t)r.bytes[2] << 8 | r.bytes[3];
    }
    t->n++;
  }
  fclose(f);
  return 0;
}

void sp_dnsbl_free(sp_dnsbl_table *t) {
  free(t->v);
  memset(t, 0, sizeof *t);
}
