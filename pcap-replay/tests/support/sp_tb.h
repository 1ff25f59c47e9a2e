/* sp_tb.h: hand-made sessions for the replay tests, written in the
 * transcript format the extractor writes (sp_script.h reads it), so a test
 * states its session's records and times and nothing else. */
#ifndef SP_TB_H
#define SP_TB_H

#include <stddef.h>

#include "sp_script.h"

typedef struct sp_tb {
  char buf[16384];
  size_t len;
} sp_tb;

/* The header of one session: client 192.0.2.7:40000 to 198.51.100.1:25,
   starting at 1700000000 s. */
void sp_tb_head(sp_tb *t);
/* A record: type 'C' (client) or 'S' (server), us after the start. */
void sp_tb_rec(sp_tb *t, char type, unsigned long long us, const char *data);
/* The session's end at us: why is the extractor's word ("client-fin"...). */
void sp_tb_end(sp_tb *t, unsigned long long us, const char *why);
/* Parses t into s; 0, or -1 with the parser's message on stderr. */
int sp_tb_load(sp_script *s, const sp_tb *t);

#endif
