/*
** bench.c -- tool/bench: measured speed, never asserted.
**
**   tool/bench engine [--n N] [--value B] [--batch K] [--dir D]
**       The engine alone: N puts of B-byte values in transactions of K,
**       N point gets (warm), a full scan, index bytes per key, and the
**       reopen (recovery) time.
**
** Every run prints the parameters and one line per measurement.
*/
#include "logstor.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench: %s: %s (%s)\n", what, ls_errmsg(), ls_strerror(rc));
  exit(1);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static void rmtree(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
}

/* Keys are 8-byte big-endian random integers, like an INTEGER primary key. */
static void make_key(uint64_t i, uint8_t out[8]) {
  uint64_t s = i;
  uint64_t v = splitmix(&s) >> 1;
  for (int b = 7; b >= 0; b--) { out[b] = (uint8_t)v; v >>= 8; }
}

static int bench_engine(int argc, char **argv) {
  long n = 1000000, vlen = 100, batch = 1000;
  const char *dir = NULL;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--value") && i + 1 < argc) vlen = atol(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atol(argv[++i]);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--quick")) n = 100000;
    else { fprintf(stderr, "bench engine: unknown option %s\n", argv[i]); return 2; }
  }
  char tmpl[] = "/tmp/logstor-bench-XXXXXX";
  char path[4096];
  if (!dir) {
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    snprintf(path, sizeof path, "%s/data", tmpl);
  } else {
    snprintf(path, sizeof path, "%s", dir);
  }
  printf("engine bench: %ld rows, %ld-byte values, %ld rows per transaction, directory %s\n", n, vlen, batch, path);
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  ls_engine *e;
  int rc = ls_open(path, &o, &e);
  if (rc) die("open", rc);
  uint32_t id;
  rc = ls_table_create(e, "bench", 1, &id);
  if (rc) die("create table", rc);
  uint8_t *val = malloc((size_t)vlen);
  uint64_t seed = 42;
  for (long i = 0; i < vlen; i++) val[i] = (uint8_t)splitmix(&seed);

  struct mallinfo2 m0 = mallinfo2();
  double t0 = now();
  for (long b = 0; b < n; b += batch) {
    ls_txn *t;
    if ((rc = ls_txn_begin(e, &t))) die("begin", rc);
    for (long i = b; i < b + batch && i < n; i++) {
      uint8_t k[8];
      make_key((uint64_t)i, k);
      ls_key key;
      ls_key_set(&key, k, 8);
      memcpy(val, &i, sizeof i);
      if ((rc = ls_txn_put(t, id, &key, val, (uint32_t)vlen))) die("put", rc);
    }
    if ((rc = ls_txn_commit(t))) die("commit", rc);
    ls_txn_free(t);
  }
  double t1 = now();
  struct mallinfo2 m1 = mallinfo2();
  printf("  put      %10.0f rows/s  (%.2f s)\n", (double)n / (t1 - t0), t1 - t0);

  ls_value v = {0};
  uint64_t rs = 7;
  for (long i = 0; i < n; i++) {
    uint8_t k[8];
    make_key(splitmix(&rs) % (uint64_t)n, k);
    ls_key key;
    ls_key_set(&key, k, 8);
    if ((rc = ls_get(e, id, &key, &v))) die("get", rc);
  }
  double t2 = now();
  printf("  get      %10.0f rows/s  (%.2f s, warm, random keys)\n", (double)n / (t2 - t1), t2 - t1);

  ls_cursor *c;
  long rows = 0;
  if ((rc = ls_cursor_open(e, NULL, id, &c))) die("cursor", rc);
  for (rc = ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) rows++;
  if (rc) die("scan", rc);
  ls_cursor_close(c);
  double t3 = now();
  printf("  scan     %10.0f rows/s  (%ld rows)\n", (double)rows / (t3 - t2), rows);

  ls_stats s;
  ls_stats_get(e, &s);
  double heap = (double)(m1.uordblks - m0.uordblks) / (double)n;
  printf("  index    %10.1f bytes/key by the index's count, %.1f bytes/key of heap growth during the load\n",
         (double)s.index_bytes / (double)s.records_live, heap);
  printf("  written  %10.2f bytes per user byte (%" PRIu64 " commits in %" PRIu64 " groups, %" PRIu64 " syncs)\n",
         (double)s.bytes_written / (double)s.user_bytes_written, s.commits, s.commit_groups, s.syncs);
  ls_close(e);

  double t4 = now();
  rc = ls_open(path, NULL, &e);
  if (rc) die("reopen", rc);
  double t5 = now();
  ls_stats_get(e, &s);
  printf("  reopen   %10.0f ms  (recovery %" PRIu64 " ms: %" PRIu64 " records in %" PRIu64 " segments)\n",
         (t5 - t4) * 1000, s.recovery_ms, s.recovery_records, s.recovery_segments);
  ls_close(e);
  ls_value_free(&v);
  free(val);
  if (!dir) rmtree(tmpl);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "engine")) return bench_engine(argc - 2, argv + 2);
  fprintf(stderr, "usage: tool/bench engine [--n N] [--value B] [--batch K] [--dir D] [--quick]\n");
  return 2;
}
