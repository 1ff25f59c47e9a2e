#include "sp_capture.h"

#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_decode.h"

struct sp_capture {
  pcap_t *p;
  char *path;
  int dlt;
  uint64_t number;
};

int sp_capture_open(sp_capture **out, const char *path, char *err,
                    size_t errlen) {
  *out = NULL;
  /* libpcap reports a missing file and a bad file alike; tell them apart
   * so the exit status can say "usage" versus "malformed". */
  FILE *probe = fopen(path, "rb");
  if (!probe) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return SP_ERR_IO;
  }
  fclose(probe);
  char ebuf[PCAP_ERRBUF_SIZE] = "";
  pcap_t *p = pcap_open_offline_with_tstamp_precision(
      path, PCAP_TSTAMP_PRECISION_MICRO, ebuf);
  if (!p) {
    snprintf(err, errlen, "%s: offset 0: not a readable pcap/pcapng file: %s",
             path, ebuf);
    return SP_ERR_MALFORMED;
  }
  int dlt = pcap_datalink(p);
  if (!sp_decode_link_supported(dlt)) {
    const char *name = pcap_datalink_val_to_name(dlt);
    snprintf(err, errlen, "%s: unsupported link type %d (%s)", path, dlt,
             name ? name : "unknown");
    pcap_close(p);
    return SP_ERR_UNSUPPORTED;
  }
  sp_capture *c = calloc(1, sizeof *c);
  char *dup = strdup(path);
  if (!c || !dup) {
    free(c);
    free(dup);
    pcap_close(p);
    snprintf(err, errlen, "%s: out of memory", path);
    return SP_ERR_NOMEM;
  }
  c->p = p;
  c->path = dup;
  c->dlt = dlt;
  *out = c;
  return SP_OK;
}

int sp_capture_linktype(const sp_capture *c) { return c->dlt; }

int sp_capture_next(sp_capture *c, sp_frame *f, char *err, size_t errlen) {
  FILE *fp = pcap_file(c->p);
  long off = fp ? ftell(fp) : -1;
  struct pcap_pkthdr *h;
  const u_char *data;
  int rc = pcap_next_ex(c->p, &h, &data);
  if (rc == PCAP_ERROR_BREAK)
    return 0;
  if (rc != 1) {
    snprintf(err, errlen, "%s: packet %llu at offset %ld: %s", c->path,
             (unsigned long long)c->number + 1, off, pcap_geterr(c->p));
    return SP_ERR_MALFORMED;
  }
  c->number++;
  /* pcapng stores 64-bit times: a damaged one must not overflow here or in
   * the differences taken later, so times are clamped to [0, 2^60] us
   * (transcripts have no negative times either). */
  const int64_t lim = INT64_C(1) << 60;
  int64_t sec = (int64_t)h->ts.tv_sec;
  if (sec > lim / 1000000)
    f->ts_us = lim;
  else if (sec < 0)
    f->ts_us = 0;
  else {
    /* a damaged record's microseconds may be negative or past 10^6 */
    int64_t us = (int64_t)h->ts.tv_usec;
    f->ts_us = sec * 1000000 + (us < 0 ? 0 : us > 999999 ? 999999 : us);
  }
  f->data = data;
  f->caplen = h->caplen;
  f->wirelen = h->len < h->caplen ? h->caplen : h->len;
  f->number = c->number;
  f->offset = off < 0 ? 0 : (uint64_t)off;
  return 1;
}

void sp_capture_close(sp_capture *c) {
  if (!c)
    return;
  pcap_close(c->p);
  free(c->path);
  free(c);
}
