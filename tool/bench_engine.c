/*
** bench_engine.c -- tool/bench engine: the engine alone, without SQLite
** (bench.c lists the modes).  Puts, random gets and a scan of n rows, index
** bytes per key, bytes written per user byte, the reopen time, then random
** overwrites of the loaded keys with their write amplification by source.
*/
#include "bench.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* count puts of vlen-byte values in transactions of batch rows: keys 0,
** 1, ... of the bench's n (rs NULL) or keys picked at random (state *rs).
** Each value starts with its number, first + i. */
static void engine_puts(ls_engine *e, uint32_t id, long count, long batch, long n, uint64_t *rs, uint8_t *val,
                        long vlen, long first) {
  int rc;
  for (long b = 0; b < count; b += batch) {
    ls_txn *t;
    if ((rc = ls_txn_begin(e, &t))) die("begin", rc);
    for (long i = b; i < b + batch && i < count; i++) {
      uint8_t k[8];
      make_key(rs ? splitmix(rs) % (uint64_t)n : (uint64_t)i, k);
      ls_key key;
      ls_key_set(&key, k, 8);
      long tag = first + i;
      memcpy(val, &tag, sizeof tag);
      if ((rc = ls_txn_put(t, id, &key, val, (uint32_t)vlen))) die("put", rc);
    }
    if ((rc = ls_txn_commit(t))) die("commit", rc);
    ls_txn_free(t);
  }
}

/* Engine bench: ls_flush (so that the separator's work for the phase is
** counted), then one line of bytes written per user byte since *s0. */
static void print_engine_wa(ls_engine *e, uint32_t id, const ls_stats *s0, const char *phase) {
  uint64_t freed = 0;
  double t0 = now();
  int rc = ls_flush(e, id, &freed);
  if (rc) die("flush", rc);
  double ms = (now() - t0) * 1000;
  ls_stats s1;
  ls_stats_get(e, &s1);
  wa_delta d;
  wa_diff(&d, s0, &s1);
  printf("  %-9s%10.2f bytes written per user byte, format excluded; separator %.2f, compaction %.2f per user "
         "byte (stats after an untimed ls_flush: %.0f ms)\n",
         phase, per_user(d.data, d.user), per_user(d.sep, d.user), per_user(d.comp, d.user), ms);
}

int bench_engine(int argc, char **argv) {
  long n = 1000000, vlen = 100, batch = 1000;
  int io = LS_IO_AUTO;
  const char *dir = NULL;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--value") && i + 1 < argc) vlen = atol(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atol(argv[++i]);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--quick")) n = 100000;
    else if (!strcmp(argv[i], "--posix")) io = LS_IO_POSIX;
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
  o.io = io;
  ls_engine *e;
  int rc = ls_open(path, &o, &e);
  if (rc) die("open", rc);
  uint32_t id;
  rc = ls_table_create(e, "bench", 1, &id);
  if (rc) die("create table", rc);
  uint8_t *val = malloc((size_t)vlen);
  uint64_t seed = 42;
  for (long i = 0; i < vlen; i++) val[i] = (uint8_t)splitmix(&seed);

  ls_stats s0;
  ls_stats_get(e, &s0);
  struct mallinfo2 m0 = mallinfo2();
  double t0 = now();
  engine_puts(e, id, n, batch, n, NULL, val, vlen, 0);
  double t1 = now();
  struct mallinfo2 m1 = mallinfo2();
  printf("  put      %10.0f rows/s  (%.2f s)\n", (double)n / (t1 - t0), t1 - t0);
  print_engine_wa(e, id, &s0, "put WA");
  t1 = now();

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

  /* Random overwrites of the loaded keys, on the reopened engine (after
  ** the figures above, so that they keep their meaning). */
  long over = n / 5 < batch ? batch : n / 5;
  ls_stats_get(e, &s0);
  uint64_t os = 11;
  double t6 = now();
  engine_puts(e, id, over, batch, n, &os, val, vlen, n);
  double t7 = now();
  printf("  overwrite%10.0f rows/s  (%ld random overwrites of loaded keys, %ld per transaction, after the reopen)\n",
         (double)over / (t7 - t6), over, batch);
  print_engine_wa(e, id, &s0, "over. WA");
  ls_close(e);
  ls_value_free(&v);
  free(val);
  if (!dir) rmtree(tmpl);
  return 0;
}
