/* sl_greylist_test.c: greylisting keys: BATV and +ext variants of one
   sender make one key, the client part is the SPF domain or the /24 and
   /64, and nothing is written past cap. */
#include <string.h>

#include "sl_test.h"
#include "sluice/greylist.h"

static const char *snd(const char *path) {
  static char out[SL_GREY_KEY_MAX];
  if (sl_grey_sender((const uint8_t *)path, strlen(path), out, sizeof(out)) < 0)
    return "(error)";
  return out;
}

static void test_sender(void) {
  CHECK_STR(snd("user@Example.COM"), "user@example.com");
  CHECK_STR(snd("prvs=1234567890=user@example.com"), "user@example.com");
  CHECK_STR(snd("PRVS=0123abcdef=user+list@EXAMPLE.com"), "user@example.com");
  CHECK_STR(snd("user+bounce-123@example.com"), "user@example.com");
  CHECK_STR(snd("User@example.com"), "User@example.com");
  CHECK_STR(snd(""), "");
  CHECK_STR(snd("+only@example.com"), "+only@example.com");
  CHECK_STR(snd("prvs=@example.com"), "prvs=@example.com");
  CHECK_STR(snd("prvs=tag@example.com"), "prvs=tag@example.com");
  CHECK_STR(snd("\"a@b\"@Example.com"), "\"a@b\"@example.com");
  CHECK_STR(snd("postmaster"), "postmaster");
  char small[8];
  CHECK_INT(sl_grey_sender((const uint8_t *)"user@example.com", 16, small,
                           sizeof(small)),
            -1);
  CHECK_INT(sl_grey_sender((const uint8_t *)"a@b", 3, small, 3), -1);
  CHECK_INT(sl_grey_sender((const uint8_t *)"a@b", 3, small, 4), 3);
}

static void test_rcpt(void) {
  char out[64];
  CHECK_INT(
      sl_grey_rcpt((const uint8_t *)"Bob+x@Local.TEST", 16, out, sizeof(out)),
      16);
  CHECK_STR(out, "Bob+x@local.test");
}

static const char *cli(const char *ip, const char *spf) {
  static char out[SL_GREY_KEY_MAX];
  sl_addr a;
  memset(&a, 0, sizeof(a));
  if (ip && sl_addr_parse(&a, ip, strlen(ip)))
    return "(bad ip)";
  if (sl_grey_client(&a, spf, out, sizeof(out)) < 0)
    return "(error)";
  return out;
}

static void test_client(void) {
  CHECK_STR(cli("192.0.2.77", NULL), "net:192.0.2.0/24");
  CHECK_STR(cli("192.0.2.200", ""), "net:192.0.2.0/24");
  CHECK_STR(cli("192.0.2.1", "Mail.Example.ORG"), "spf:mail.example.org");
  CHECK_STR(cli("2001:db8:1:2:3:4:5:6", NULL), "net:2001:db8:1:2::/64");
  CHECK_STR(cli("::ffff:198.51.100.9", NULL), "net:198.51.100.0/24");
  CHECK_STR(cli(NULL, NULL), "net:unknown");
  sl_addr a;
  sl_addr_parse(&a, "192.0.2.1", 9);
  char small[10];
  CHECK_INT(sl_grey_client(&a, NULL, small, sizeof(small)), -1);
  CHECK_INT(sl_grey_client(&a, "example.org", small, sizeof(small)), -1);
}

static void test_triplet(void) {
  char out[SL_GREY_KEY_MAX];
  CHECK_INT(sl_grey_triplet("net:192.0.2.0/24", "a@b.example", "c@d.example",
                            out, sizeof(out)),
            40);
  CHECK_STR(out, "net:192.0.2.0/24 a@b.example c@d.example");
  CHECK_INT(sl_grey_triplet("n", "", "r", out, sizeof(out)), 4);
  CHECK_STR(out, "n  r");
  CHECK_INT(sl_grey_triplet("n", "", "r", out, 4), -1);
  CHECK_INT(sl_grey_triplet("n", "", "r", out, 5), 4);
}

static void test_asn(void) {
  char out[64];
  CHECK_INT(sl_grey_asn("23028 | 216.90.108.0/24 | US | arin | 1998-09-25", out,
                        sizeof(out)),
            9);
  CHECK_STR(out, "asn:23028");
  CHECK_INT(
      sl_grey_asn("3356 1299 | 4.0.0.0/9 | US | arin |", out, sizeof(out)), 8);
  CHECK_STR(out, "asn:3356");
  CHECK_INT(sl_grey_asn("4200000000|x", out, sizeof(out)), 14);
  CHECK_INT(sl_grey_asn("", out, sizeof(out)), -1);
  CHECK_INT(sl_grey_asn("NA | 1.2.3.0/24", out, sizeof(out)), -1);
  CHECK_INT(sl_grey_asn("12345678901 |", out, sizeof(out)), -1);
  CHECK_INT(sl_grey_asn("123x |", out, sizeof(out)), -1);
  CHECK_INT(sl_grey_asn("123 |", out, 7), -1);
  CHECK_INT(sl_grey_asn("123 |", out, 8), 7);
}

int main(void) {
  SL_RUN(test_asn);
  SL_RUN(test_sender);
  SL_RUN(test_rcpt);
  SL_RUN(test_client);
  SL_RUN(test_triplet);
  return sl_test_summary();
}
