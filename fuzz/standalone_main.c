/*
 * standalone_main.c: replays files through a fuzz target without libFuzzer
 * (OpenSSL's test-corpus.c, curl-fuzzer's standalone runner), so every
 * ordinary test run re-checks the corpora.  Arguments are files or
 * directories (their regular, non-hidden files, not recursive).  A target
 * signals failure by aborting; if all inputs come back, it prints
 * "N passed, 0 failed" and exits 0.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return -1;
  }
  for (;;) {
    if (len == cap) {
      uint8_t *q = realloc(buf, cap * 2);
      if (!q) {
        free(buf);
        fclose(f);
        return -1;
      }
      buf = q;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  /* Copy into an exactly sized block so ASan catches reads past the end. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  memcpy(exact, buf, len);
  free(buf);
  if (getenv("SLUICE_FUZZ_VERBOSE"))
    fprintf(stderr, "running %s (%zu bytes)\n", path, len);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  unsigned long passed = 0, errors = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      errors++;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (run_file(argv[i]) == 0)
        passed++;
      else
        errors++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) {
      perror(argv[i]);
      errors++;
      continue;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      size_t n = strlen(argv[i]) + strlen(e->d_name) + 2;
      char *path = malloc(n);
      if (!path)
        return 2;
      snprintf(path, n, "%s/%s", argv[i], e->d_name);
      struct stat fs;
      if (stat(path, &fs) == 0 && S_ISREG(fs.st_mode)) {
        if (run_file(path) == 0)
          passed++;
        else
          errors++;
      }
      free(path);
    }
    closedir(d);
  }
  printf("%lu passed, 0 failed\n", passed);
  if (errors)
    fprintf(stderr, "%lu input(s) could not be read\n", errors);
  return errors ? 1 : 0;
}
