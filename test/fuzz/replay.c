/*
** replay.c -- run the fuzz target over files, without libFuzzer: every
** `make check` replays the seed corpus through it (under ASan and UBSan in
** `make V=asan check`), and any compiler builds it.
**
**   fuzz_replay [FILE|DIR ...]    default: $LOGSTOR_SRC/test/fuzz/corpus
**
** Each file is one input.  A broken promise or a sanitizer report ends the
** process; otherwise the last line is "N passed, 0 failed" (N inputs).
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
  if (!f) { perror(path); return 0; }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
  size_t got = buf && n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
  fclose(f);
  if (buf) LLVMFuzzerTestOneInput(buf, got);
  free(buf);
  return 1;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_path(const char *path) {
  struct stat st;
  if (stat(path, &st)) { perror(path); return -1; }
  if (!S_ISDIR(st.st_mode)) return run_file(path);
  DIR *d = opendir(path);
  if (!d) { perror(path); return -1; }
  char **names = NULL;
  size_t nn = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    if (nn == cap) {
      cap = cap ? 2 * cap : 64;
      names = realloc(names, cap * sizeof *names);
    }
    size_t l = strlen(path) + strlen(de->d_name) + 2;
    names[nn] = malloc(l);
    snprintf(names[nn++], l, "%s/%s", path, de->d_name);
  }
  closedir(d);
  qsort(names, nn, sizeof *names, cmp);
  int n = 0;
  for (size_t i = 0; i < nn; i++) {
    n += run_file(names[i]);
    free(names[i]);
  }
  free(names);
  return n;
}

int main(int argc, char **argv) {
  char def[4096];
  const char *src = getenv("LOGSTOR_SRC");
  snprintf(def, sizeof def, "%s/test/fuzz/corpus", src && *src ? src : ".");
  int n = 0, bad = 0;
  if (argc < 2) {
    int r = run_path(def);
    if (r < 0) bad++; else n += r;
  }
  for (int i = 1; i < argc; i++) {
    int r = run_path(argv[i]);
    if (r < 0) bad++; else n += r;
  }
  if (n == 0 && !bad) { fprintf(stderr, "fuzz_replay: no inputs\n"); bad = 1; }
  printf("%d passed, %d failed\n", n, bad);
  return bad ? 1 : 0;
}
