/*
 * sl_config_man: writes sluiced.conf(5) from its template, replacing the
 * line "@KEYS@" with one entry per key of the table (name, default, doc),
 * so the manual page lists every key by construction.
 * usage: sl_config_man TEMPLATE OUTPUT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"

/* man(7) text: a backslash is \e, and a line must not start with a control
   character (the doc strings are single lines, so only their start). */
static void put_text(FILE *o, const char *s) {
  if (*s == '.' || *s == '\'')
    fputs("\\&", o);
  for (; *s; s++) {
    if (*s == '\\')
      fputs("\\e", o);
    else if (*s == '-')
      fputs("\\-", o);
    else
      fputc(*s, o);
  }
}

/* The default of key as --print-defaults spells it, from the dump of a
   fresh config (repeatable keys have none). */
static const char *default_of(const char *dump, const char *key, char *out,
                              size_t n) {
  size_t kl = strlen(key);
  for (const char *l = dump; l && *l;
       l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    if (strncmp(l, key, kl) == 0 && strncmp(l + kl, " = ", 3) == 0) {
      const char *v = l + kl + 3, *e = strchr(v, '\n');
      size_t len = e ? (size_t)(e - v) : strlen(v);
      if (len >= n)
        len = n - 1;
      memcpy(out, v, len);
      out[len] = '\0';
      return out;
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: sl_config_man TEMPLATE OUTPUT\n");
    return 2;
  }
  FILE *t = fopen(argv[1], "r");
  if (t == NULL) {
    perror(argv[1]);
    return 1;
  }
  sl_config *c = sl_config_new();
  char *dump = NULL;
  size_t dlen = 0;
  FILE *d = open_memstream(&dump, &dlen);
  if (c == NULL || d == NULL)
    return 1;
  sl_config_dump(c, d, 0);
  fclose(d);
  FILE *o = fopen(argv[2], "w");
  if (o == NULL) {
    perror(argv[2]);
    return 1;
  }
  char line[4096];
  while (fgets(line, sizeof line, t)) {
    if (strcmp(line, "@KEYS@\n") != 0) {
      fputs(line, o);
      continue;
    }
    size_t n;
    const sl_config_key *k = sl_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
      char def[512];
      fprintf(o, ".TP\n.B %s\n", k[i].name);
      put_text(o, k[i].doc);
      fputs(".\n", o);
      if (k[i].flags & SL_KEY_REPEAT) {
        fputs("May be given on several lines; none by default.\n", o);
      } else if (default_of(dump, k[i].name, def, sizeof def)) {
        fputs("Default: ", o);
        if (def[0]) {
          fputs("\\(lq", o);
          put_text(o, def);
          fputs("\\(rq", o);
        } else {
          fputs("empty", o);
        }
        fputs(".\n", o);
      }
      if (!(k[i].flags & SL_KEY_DAEMON))
        fputs("Also read by\n.BR sluice\\-replay (1).\n", o);
    }
  }
  fclose(t);
  free(dump);
  sl_config_unref(c);
  return fclose(o) == 0 ? 0 : 1;
}
