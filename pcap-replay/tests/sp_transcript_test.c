/* The transcript format: writer/reader round trip and malformed input. */
#include <stdlib.h>
#include <string.h>

#include "sl_test.h"
#include "sp_transcript.h"

static const char good[] =
    "sluice-transcript 1\n"
    "source my.pcap session 3\n"
    "client 2001:db8::1 40000\n"
    "server 192.0.2.7 25\n"
    "start 1400000000.000042\n"
    "\n"
    "S 0 8\n220 hi\r\n\n"
    "C 10 9\nEH\nLO x\r\n\n" /* data may hold newlines: length rules */
    "G 15 S 100\n"
    "E 20 server-fin\n"
    "C 20 0\n\n"
    "E 30 client-fin\n";

static int read_all(const char *text, size_t len, sp_record *recs, int max,
                    sp_transcript_reader *r) {
  int rc = sp_transcript_reader_init(r, (const uint8_t *)text, len);
  if (rc)
    return rc;
  int n = 0;
  while (n < max && (rc = sp_transcript_next(r, &recs[n])) == 1)
    n++;
  return rc < 0 ? rc : n;
}

static void test_read_good(void) {
  sp_transcript_reader r;
  sp_record recs[10];
  int n = read_all(good, sizeof good - 1, recs, 10, &r);
  CHECK_INT(n, 6);
  CHECK_STR(r.hdr.source, "my.pcap");
  CHECK_INT(r.hdr.session, 3);
  CHECK_STR(r.hdr.client_ip, "2001:db8::1");
  CHECK_INT(r.hdr.client_port, 40000);
  CHECK_STR(r.hdr.server_ip, "192.0.2.7");
  CHECK_INT(r.hdr.start_sec, 1400000000);
  CHECK_INT(r.hdr.start_usec, 42);
  CHECK_INT(recs[0].type, SP_REC_SERVER);
  CHECK_MEM(recs[0].data, recs[0].len, "220 hi\r\n", 8);
  CHECK_INT(recs[1].t_us, 10);
  CHECK_MEM(recs[1].data, recs[1].len, "EH\nLO x\r\n", 9);
  CHECK_INT(recs[2].type, SP_REC_GAP);
  CHECK_INT(recs[2].side, SP_SIDE_SERVER);
  CHECK_INT(recs[2].len, 100);
  CHECK_INT(recs[3].end, SP_END_SERVER_FIN);
  CHECK_INT(recs[4].len, 0);
  CHECK_INT(recs[5].end, SP_END_CLIENT_FIN);
}

static void test_round_trip(void) {
  sp_buf b = {0};
  sp_transcript_header h;
  memset(&h, 0, sizeof h);
  strcpy(h.source, "a b\nc.pcap"); /* sanitised: one token */
  h.session = 7;
  strcpy(h.client_ip, "10.0.0.1");
  h.client_port = 1;
  strcpy(h.server_ip, "10.0.0.2");
  h.server_port = 587;
  h.start_sec = 5;
  h.start_usec = 999999;
  CHECK_INT(sp_transcript_put_header(&b, &h), 0);
  uint8_t bin[256];
  for (int i = 0; i < 256; i++)
    bin[i] = (uint8_t)i;
  sp_record in[] = {
      {SP_REC_CLIENT, 1, SP_SIDE_CLIENT, 256, bin, 0},
      {SP_REC_GAP, 2, SP_SIDE_CLIENT, 1u << 31, NULL, 0},
      {SP_REC_END, 3, SP_SIDE_CLIENT, 0, NULL, SP_END_TLS},
  };
  for (size_t i = 0; i < 3; i++)
    CHECK_INT(sp_transcript_put_record(&b, &in[i]), 0);
  sp_transcript_reader r;
  sp_record out[4];
  int n = read_all((const char *)b.data, b.len, out, 4, &r);
  CHECK_INT(n, 3);
  CHECK_STR(r.hdr.source, "a_b_c.pcap");
  CHECK_INT(r.hdr.start_usec, 999999);
  CHECK_INT(r.hdr.server_port, 587);
  CHECK_MEM(out[0].data, out[0].len, bin, 256);
  CHECK_INT(out[1].len, 1u << 31);
  CHECK_INT(out[2].end, SP_END_TLS);
  sp_record bad = {SP_REC_END, 0, SP_SIDE_CLIENT, 0, NULL, (sp_end_reason)99};
  CHECK(sp_transcript_put_record(&b, &bad) != 0);
  sp_buf_free(&b);
}

/* Each case: input, and a piece the error message must contain. */
static void bad_case(const char *text, size_t len, const char *want) {
  /* Copy to an exact-size heap block so ASan catches any over-read. */
  char *copy = malloc(len ? len : 1);
  memcpy(copy, text, len);
  sp_transcript_reader r;
  sp_record recs[16];
  int n = read_all(copy, len, recs, 16, &r);
  CHECK_INT(n, SP_ERR_MALFORMED);
  if (!strstr(r.err, want)) {
    fprintf(stderr, "error \"%s\" lacks \"%s\"\n", r.err, want);
    CHECK(0);
  }
  free(copy);
}

#define HDR                                                                    \
  "sluice-transcript 1\nsource x session 1\nclient 1.2.3.4 5\n"                \
  "server 5.6.7.8 25\nstart 1.000000\n\n"
#define BAD(lit, want) bad_case(lit, sizeof lit - 1, want)

static void test_malformed(void) {
  BAD("", "first line");
  BAD("sluice-transcript 2\n\n", "first line");
  BAD("sluice-transcript 1", "first line");
  BAD("sluice-transcript 1\nsource x session 1\n", "blank line");
  BAD("sluice-transcript 1\nsource x session 1\n\n",
      "lacks client server start");
  BAD("sluice-transcript 1\nsource x\nclient 1.2.3.4 5\n\n", "bad source");
  BAD("sluice-transcript 1\nclient 1.2.3.4 70000\n\n", "bad client");
  BAD("sluice-transcript 1\nstart 1.5\n\n", "6 fraction digits");
  BAD(HDR, "without its final E");
  BAD(HDR "C 0 5\nabc\n", "runs past the end");
  BAD(HDR "C 0 3\nabcX", "not followed by a newline");
  BAD(HDR "C 0 99999999999999999999999\nabc\n", "bad length");
  BAD(HDR "C 0 -1\n\n", "bad length");
  BAD(HDR "S 5 1\na\nS 4 1\nb\n", "backwards");
  BAD(HDR "G 1 X 5\n", "bad side");
  BAD(HDR "G 1 C 0\n", "bad byte count");
  BAD(HDR "E 1 client-bye\n", "unknown end reason");
  BAD(HDR "E 1 tls\nC 2 1\na\n", "after the final E");
  BAD(HDR "E 1 client-fin\nE 2 client-fin\n", "second FIN");
  BAD(HDR "Q 1 2\n", "unknown record type");
  BAD(HDR "C 1 2", "not ended by a newline");
  BAD(HDR "E 1 server-fin\n", "without its final E");
  /* The offset named is the record's. */
  BAD(HDR "C 0 1\na\nX 1 1\n", "offset 98 (line 9)");
}

static void test_load(void) {
  const char *tmp = getenv("TMPDIR");
  char buf[512];
  snprintf(buf, sizeof buf, "%s/sp_transcript_test.txt", tmp ? tmp : "/tmp");
  FILE *f = fopen(buf, "wb");
  CHECK(f != NULL);
  if (!f)
    return;
  fwrite(good, 1, sizeof good - 1, f);
  fclose(f);
  uint8_t *data;
  size_t len;
  char err[256];
  CHECK_INT(sp_transcript_load(buf, 1 << 20, &data, &len, err, sizeof err), 0);
  CHECK_INT(len, sizeof good - 1);
  free(data);
  CHECK_INT(sp_transcript_load(buf, 10, &data, &len, err, sizeof err),
            SP_ERR_MALFORMED);
  CHECK(strstr(err, "larger than 10") != NULL);
  remove(buf);
  CHECK_INT(sp_transcript_load(buf, 10, &data, &len, err, sizeof err),
            SP_ERR_IO);
  CHECK(strstr(err, "cannot open") != NULL);
}

int main(void) {
  SL_RUN(test_read_good);
  SL_RUN(test_round_trip);
  SL_RUN(test_malformed);
  SL_RUN(test_load);
  return sl_test_summary();
}
