/*
** bench.c -- tool/bench: measured speed, never asserted.
**
**   tool/bench [sql] [--n N] [--quick] [--so PATH] [--dir D] [--space-target X]
**              [--overwrites N]
**       The same SQL workloads, in one run, on a logstor table and on the
**       table a user would otherwise pick: a native WITHOUT ROWID table in
**       WAL mode with synchronous=FULL (both make every commit durable);
**       the autocommit inserts run again with synchronous=normal on both
**       (logstor_synchronous('normal'); PRAGMA synchronous=NORMAL).
**       Prints ops/s of each, the ratio, bytes written per user byte, disk
**       bytes per live byte, index bytes per key and the reopen time (with
**       the checkpoint a clean close leaves, and without: as after a crash).
**   tool/bench engine [--n N] [--value B] [--batch K] [--dir D]
**       The engine alone, without SQLite.
**   tool/bench clean [--quick] [--util PCT] [--csv FILE] [--png FILE] [--dir D]
**       The cleaner under random overwrites of a fixed key set at 50, 75
**       and 90 % disk utilisation, uniform and hot/cold, for each policy
**       (greedy, LFS's cost-benefit, ours): write amplification and
**       throughput (engine only).
**
** The SQL and engine benches also report, for the bulk load and the
** random overwrites, the engine's write amplification split by source:
** all data bytes (format bytes excluded), separator bytes and compaction
** bytes per user byte, from the engine's counters after ls_flush.
**
** Rows are (pk INTEGER PRIMARY KEY, a INT, v BLOB) with random 63-bit keys
** and 100-byte random values: 116 logical bytes, as in the measured
** baselines of ../shared/reference/performance-anchors.md.
*/
#include "logstor.h"
#include <sqlite3.h>

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

/* ---- write amplification by source ------------------------------------------ */

/* Deltas of the engine's write counters over one phase. */
typedef struct wa_delta {
  uint64_t user;                   /* record bytes of committed user writes */
  uint64_t data;                   /* all bytes written to data files, format bytes excluded */
  uint64_t sep, comp;              /* of which the separator's and compaction's */
  uint64_t format;                 /* zeros written to prepare data files (not in data) */
  double flush_ms;                 /* the ls_flush that closed the phase */
} wa_delta;

static void wa_diff(wa_delta *d, const ls_stats *a, const ls_stats *b) {
  d->user = b->user_bytes_written - a->user_bytes_written;
  d->format = b->format_bytes_written - a->format_bytes_written;
  d->data = (b->bytes_written - a->bytes_written) - d->format;
  d->sep = b->separator_bytes_written - a->separator_bytes_written;
  d->comp = b->compaction_bytes_written - a->compaction_bytes_written;
}

static double per_user(uint64_t x, uint64_t user) { return user ? (double)x / (double)user : 0; }

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

static int bench_engine(int argc, char **argv) {
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

/* ---- SQL: logstor against native SQLite ------------------------------------ */

typedef struct sqlrun {
  const char *label;
  int logstor;
  sqlite3 *db;
  char path[4096];
  char so[4096];
  double rate[8];                  /* ops/s per workload */
  uint64_t wbytes[8];              /* bytes written to the device per workload */
  wa_delta wa[8];                  /* logstor: the engine's counters per workload */
  double reopen_ms;
  double rescan_ms;                /* logstor: reopen without a checkpoint */
  uint64_t disk_bytes;
  uint64_t alloc_bytes;            /* disk_bytes without holes */
  uint64_t index_bytes;
  uint64_t cache_hits, cache_misses, cache_bytes, cache_size;
  uint64_t rss_kb;                 /* VmHWM of the process after this system's run */
} sqlrun;

enum { W_LOAD, W_OVERWRITE, W_GET, W_IN, W_SCAN, W_AUTOCOMMIT, W_AUTONORMAL, W_N };
static const char *wname[W_N] = { "bulk load, 1000 rows/txn", "random overwrite, 1000/txn",
                                  "point read by key (warm)", "IN-batch read, 100 keys",
                                  "full scan", "autocommit insert", "  ... synchronous=normal" };
static const char *wtarget[W_N] = { ">= 15x", ">= 10x", ">= 1.5x", ">= 2x", ">= 0.5x", ">= 1x", ">= 2x" };

/* A VFS that counts the bytes SQLite writes (database, WAL and journal
** files), so that both systems report bytes written by the same measure:
** logical bytes handed to the kernel.  (/proc/self/io can not be used: on
** recent kernels it charges a whole large folio when a 4 KiB block in it
** is dirtied.) */
static uint64_t vfs_written;
static sqlite3_vfs count_vfs, *real_vfs;
typedef struct cfile { sqlite3_file base; sqlite3_file *real; } cfile;
#define REAL(f) (((cfile *)(f))->real)
static int c_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int c_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) { return REAL(f)->pMethods->xRead(REAL(f), b, n, o); }
static int c_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
  vfs_written += (uint64_t)n;
  return REAL(f)->pMethods->xWrite(REAL(f), b, n, o);
}
static int c_truncate(sqlite3_file *f, sqlite3_int64 n) { return REAL(f)->pMethods->xTruncate(REAL(f), n); }
static int c_sync(sqlite3_file *f, int fl) { return REAL(f)->pMethods->xSync(REAL(f), fl); }
static int c_size(sqlite3_file *f, sqlite3_int64 *n) { return REAL(f)->pMethods->xFileSize(REAL(f), n); }
static int c_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int c_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int c_check(sqlite3_file *f, int *r) { return REAL(f)->pMethods->xCheckReservedLock(REAL(f), r); }
static int c_fcntl(sqlite3_file *f, int op, void *a) { return REAL(f)->pMethods->xFileControl(REAL(f), op, a); }
static int c_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int c_caps(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int c_shmmap(sqlite3_file *f, int i, int sz, int e, void volatile **p) {
  return REAL(f)->pMethods->xShmMap(REAL(f), i, sz, e, p);
}
static int c_shmlock(sqlite3_file *f, int o, int n, int fl) { return REAL(f)->pMethods->xShmLock(REAL(f), o, n, fl); }
static void c_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int c_shmunmap(sqlite3_file *f, int d) { return REAL(f)->pMethods->xShmUnmap(REAL(f), d); }
static int c_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p) { return REAL(f)->pMethods->xFetch(REAL(f), o, n, p); }
static int c_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) { return REAL(f)->pMethods->xUnfetch(REAL(f), o, p); }
static const sqlite3_io_methods c_methods = {
  3, c_close, c_read, c_write, c_truncate, c_sync, c_size, c_lock, c_unlock, c_check, c_fcntl, c_sector,
  c_caps, c_shmmap, c_shmlock, c_shmbarrier, c_shmunmap, c_fetch, c_unfetch
};
static int c_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out) {
  (void)v;
  cfile *c = (cfile *)f;
  c->real = (sqlite3_file *)&c[1];
  int rc = real_vfs->xOpen(real_vfs, name, c->real, flags, out);
  c->base.pMethods = c->real->pMethods ? &c_methods : NULL;
  return rc;
}
static void count_vfs_register(void) {
  real_vfs = sqlite3_vfs_find(NULL);
  count_vfs = *real_vfs;
  count_vfs.zName = "count";
  count_vfs.szOsFile = (int)sizeof(cfile) + real_vfs->szOsFile;
  count_vfs.xOpen = c_open;
  sqlite3_vfs_register(&count_vfs, 0);
}

/* Bytes of path: apparent (file sizes), or allocated (holes not counted). */
static uint64_t du_as(const char *path, int allocated) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "du -s %s '%s' 2>/dev/null", allocated ? "--block-size=1" : "-b --apparent-size", path);
  FILE *p = popen(cmd, "r");
  if (!p) return 0;
  unsigned long long v = 0;
  if (fscanf(p, "%llu", &v) != 1) v = 0;
  pclose(p);
  return v;
}

static uint64_t du(const char *path) { return du_as(path, 0); }

static void sql_ok(sqlite3 *db, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fprintf(stderr, "bench: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
  }
}

static void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "bench: %s: %s\n", sql, err);
    exit(1);
  }
}

static void sql_open(sqlrun *r) {
  sql_ok(r->db, sqlite3_open_v2(r->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "count"), "open");
  exec(r->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  if (r->logstor) {
    char *err = NULL;
    sqlite3_enable_load_extension(r->db, 1);
    if (sqlite3_load_extension(r->db, r->so, NULL, &err) != SQLITE_OK) {
      fprintf(stderr, "bench: cannot load %s: %s\n", r->so, err);
      exit(1);
    }
  }
}

/* Bytes written by r so far: SQLite's files, plus the engine's data files. */
static uint64_t written(sqlrun *r) {
  uint64_t b = vfs_written;
  if (r->logstor) {
    sqlite3_stmt *st;
    sql_ok(r->db, sqlite3_prepare_v2(r->db, "SELECT value FROM logstor_stats WHERE scope='engine' AND "
                                     "name='bytes_written'", -1, &st, NULL), "stats");
    if (sqlite3_step(st) == SQLITE_ROW) b += (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  return b;
}

/* The engine's write counters, through logstor_stats. */
static void sql_stats(sqlrun *r, ls_stats *s) {
  memset(s, 0, sizeof *s);
  sqlite3_stmt *st;
  sql_ok(r->db, sqlite3_prepare_v2(r->db, "SELECT name, value FROM logstor_stats WHERE scope='engine'", -1, &st,
                                   NULL), "stats");
  while (sqlite3_step(st) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    uint64_t v = (uint64_t)sqlite3_column_int64(st, 1);
    if (!name) continue;
    if (!strcmp(name, "bytes_written")) s->bytes_written = v;
    else if (!strcmp(name, "user_bytes_written")) s->user_bytes_written = v;
    else if (!strcmp(name, "format_bytes_written")) s->format_bytes_written = v;
    else if (!strcmp(name, "separator_bytes_written")) s->separator_bytes_written = v;
    else if (!strcmp(name, "compaction_bytes_written")) s->compaction_bytes_written = v;
  }
  sqlite3_finalize(st);
}

/* Does workload w get the separator's accounting (flush, then counters)? */
static int wa_phase(int w) { return w == W_LOAD || w == W_OVERWRITE; }

static void print_sql_wa(const sqlrun *r) {
  printf("\nlogstor write amplification by source, from the engine's counters, per user byte (record bytes\n"
         "committed: 24-byte header + key + value, 8-byte aligned); logstor_flush('t') runs after each phase,\n"
         "untimed, so that the separator's work for the phase is counted (it is in the byte figures above too)\n");
  printf("%-28s %14s %10s %11s %10s\n", "", "written/user", "separator", "compaction", "flush ms");
  for (int w = 0; w < W_N; w++) {
    if (!wa_phase(w)) continue;
    const wa_delta *d = &r->wa[w];
    printf("%-28s %14.2f %10.2f %11.2f %10.0f\n", wname[w], per_user(d->data, d->user), per_user(d->sep, d->user),
           per_user(d->comp, d->user), d->flush_ms);
  }
  printf("%-28s (written/user: all data bytes written, format bytes excluded)\n", "");
}

static uint64_t key_at(uint64_t i) {
  uint64_t s = i;
  return splitmix(&s) >> 1;
}

static void fill_value(uint8_t *v, uint64_t i) {
  uint64_t s = i * 7919 + 1;
  for (int b = 0; b < 100; b += 8) {
    uint64_t x = splitmix(&s);
    memcpy(v + b, &x, b + 8 <= 100 ? 8 : 100 - b);
  }
}

/* The process's peak resident set (VmHWM), KiB; 0 if unknown. */
static uint64_t peak_rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  uint64_t kb = 0;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "VmHWM:", 6)) kb = strtoull(line + 6, NULL, 10);
  if (f) fclose(f);
  return kb;
}

/* Run workload w on r; returns ops/s. */
static double sql_workload(sqlrun *r, int w, long n, long ops) {
  sqlite3 *db = r->db;
  sqlite3_stmt *st = NULL;
  uint8_t val[100];
  uint64_t rs = 99 + (uint64_t)w;
  double t0 = now();
  long done = 0;
  switch (w) {
    case W_LOAD:
    case W_OVERWRITE:
      sql_ok(db, sqlite3_prepare_v2(db, w == W_LOAD ? "INSERT INTO t(pk, a, v) VALUES(?1, ?2, ?3)"
                                                    : "UPDATE t SET a = ?2, v = ?3 WHERE pk = ?1",
                                    -1, &st, NULL), "prepare");
      for (long b = 0; b < ops; b += 1000) {
        exec(db, "BEGIN");
        for (long i = b; i < b + 1000 && i < ops; i++) {
          uint64_t k = w == W_LOAD ? key_at((uint64_t)i) : key_at(splitmix(&rs) % (uint64_t)n);
          fill_value(val, (uint64_t)i + (uint64_t)w * 1000003);
          sqlite3_bind_int64(st, 1, (sqlite3_int64)k);
          sqlite3_bind_int64(st, 2, i);
          sqlite3_bind_blob(st, 3, val, 100, SQLITE_STATIC);
          sql_ok(db, sqlite3_step(st), "write");
          sqlite3_reset(st);
          done++;
        }
        exec(db, "COMMIT");
      }
      break;
    case W_GET:
      sql_ok(db, sqlite3_prepare_v2(db, "SELECT a, v FROM t WHERE pk = ?1", -1, &st, NULL), "prepare");
      for (long i = 0; i < ops; i++) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at(splitmix(&rs) % (uint64_t)n));
        if (sqlite3_step(st) == SQLITE_ROW) done++;
        sqlite3_reset(st);
      }
      break;
    case W_IN: {
      char sql[2048] = "SELECT a, v FROM t WHERE pk IN (";
      for (int j = 0; j < 100; j++) strcat(sql, j ? ",?" : "?");
      strcat(sql, ")");
      sql_ok(db, sqlite3_prepare_v2(db, sql, -1, &st, NULL), "prepare");
      for (long i = 0; i < ops; i += 100) {
        for (int j = 0; j < 100; j++)
          sqlite3_bind_int64(st, j + 1, (sqlite3_int64)key_at(splitmix(&rs) % (uint64_t)n));
        while (sqlite3_step(st) == SQLITE_ROW) done++;
        sqlite3_reset(st);
      }
      break;
    }
    case W_SCAN:
      sql_ok(db, sqlite3_prepare_v2(db, "SELECT pk, a, v FROM t", -1, &st, NULL), "prepare");
      while (sqlite3_step(st) == SQLITE_ROW) {
        (void)sqlite3_column_blob(st, 2);
        done++;
      }
      break;
    case W_AUTOCOMMIT:
    case W_AUTONORMAL:
      /* Both durable at COMMIT, or both synced in the background: the
      ** last commits may be lost on power failure, never part of one. */
      if (w == W_AUTONORMAL) {
        exec(db, r->logstor ? "SELECT logstor_synchronous('normal')" : "PRAGMA synchronous=NORMAL");
        t0 = now();
      }
      sql_ok(db, sqlite3_prepare_v2(db, "INSERT INTO t(pk, a, v) VALUES(?1, ?2, ?3)", -1, &st, NULL), "prepare");
      for (long i = 0; i < ops; i++) {
        fill_value(val, (uint64_t)i);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at((uint64_t)(n + i + (w == W_AUTONORMAL ? ops : 0))));
        sqlite3_bind_int64(st, 2, i);
        sqlite3_bind_blob(st, 3, val, 100, SQLITE_STATIC);
        sql_ok(db, sqlite3_step(st), "insert");
        sqlite3_reset(st);
        done++;
      }
      break;
  }
  sqlite3_finalize(st);
  double dt = now() - t0;
  if (w == W_AUTONORMAL) exec(db, r->logstor ? "SELECT logstor_synchronous('full')" : "PRAGMA synchronous=FULL");
  if (done == 0) { fprintf(stderr, "bench: %s did nothing on %s\n", wname[w], r->label); exit(1); }
  return (double)done / dt;
}

static int bench_sql(int argc, char **argv, const char *argv0) {
  long n = 1000000;
  const char *dir = NULL, *so = NULL, *only = NULL;   /* --only logstor|sqlite: for profiling */
  const char *space_target = NULL;
  long over_arg = 0;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--quick")) n = 20000;
    else if (!strcmp(argv[i], "--so") && i + 1 < argc) so = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--space-target") && i + 1 < argc) space_target = argv[++i];
    else if (!strcmp(argv[i], "--overwrites") && i + 1 < argc) over_arg = atol(argv[++i]);
    else { fprintf(stderr, "bench: unknown option %s\n", argv[i]); return 2; }
  }
  char tmpl[] = "/tmp/logstor-bench-XXXXXX";
  if (!dir) {
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    dir = tmpl;
  }
  char sopath[4096];
  if (!so) {
    /* logstor.so at the top of the build tree: tool/bench -> ../logstor.so */
    const char *slash = strrchr(argv0, '/');
    snprintf(sopath, sizeof sopath, "%.*s/../logstor.so", slash ? (int)(slash - argv0) : 1, slash ? argv0 : ".");
    so = sopath;
  }
  long over = over_arg > 0 ? over_arg : n / 5 < 1000 ? 1000 : n / 5;      /* overwrites */
  long gets = n / 5 < 1000 ? 1000 : n / 5;
  long auto_n = n >= 100000 ? 10000 : 1000;
  printf("SQL bench: %ld rows of 116 bytes (random 63-bit keys), %ld overwrites, %ld point reads, "
         "%ld autocommit inserts; directory %s\n", n, over, gets, auto_n, dir);
  printf("logstor: CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, a INT, v BLOB)\n");
  printf("sqlite:  CREATE TABLE t(pk INTEGER PRIMARY KEY, a INT, v BLOB) WITHOUT ROWID\n");
  printf("both databases: journal_mode=WAL, synchronous=FULL (NORMAL for the last row); bytes written are logical bytes handed to "
         "the kernel (data files formatted ahead included)\n\n");
  sqlrun runs[2];
  memset(runs, 0, sizeof runs);
  runs[0].label = "logstor";
  runs[0].logstor = 1;
  runs[1].label = "sqlite";
  for (int r = 0; r < 2; r++) {
    snprintf(runs[r].path, sizeof runs[r].path, "%s/%s.db", dir, runs[r].label);
    snprintf(runs[r].so, sizeof runs[r].so, "%s", so);
  }
  long opsof[W_N] = { n, over, gets, gets, 0, auto_n, auto_n };
  count_vfs_register();
  /* Interleave the two systems workload by workload. */
  int first = only && !strcmp(only, "sqlite") ? 1 : 0, last = only && !strcmp(only, "logstor") ? 0 : 1;
  for (int r = first; r <= last; r++) {
    sql_open(&runs[r]);
    char create[256];
    snprintf(create, sizeof create, "CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, a INT, v BLOB%s%s)",
             space_target ? ", space_target=" : "", space_target ? space_target : "");
    exec(runs[r].db, runs[r].logstor ? create : "CREATE TABLE t(pk INTEGER PRIMARY KEY, a INT, v BLOB) WITHOUT ROWID");
  }
  for (int w = 0; w < W_N; w++) {
    for (int r = first; r <= last; r++) {
      uint64_t v0 = vfs_written, e0 = written(&runs[r]) - v0;
      ls_stats s0, s1;
      if (runs[r].logstor && wa_phase(w)) sql_stats(&runs[r], &s0);
      runs[r].rate[w] = sql_workload(&runs[r], w, n, opsof[w]);
      if (runs[r].logstor && wa_phase(w)) {
        double t0 = now();
        exec(runs[r].db, "SELECT logstor_flush('t')");
        runs[r].wa[w].flush_ms = (now() - t0) * 1000;
        sql_stats(&runs[r], &s1);
        wa_diff(&runs[r].wa[w], &s0, &s1);
      }
      uint64_t v1 = vfs_written, e1 = written(&runs[r]) - v1;
      runs[r].wbytes[w] = (v1 - v0) + (e1 - e0);
      fflush(stdout);
    }
  }
  /* Sizes, index memory, then reopen. */
  for (int r = first; r <= last; r++) {
    if (runs[r].logstor) {
      sqlite3_stmt *st;
      sql_ok(runs[r].db, sqlite3_prepare_v2(runs[r].db, "SELECT value FROM logstor_stats WHERE scope='engine' "
                                            "AND name='index_bytes'", -1, &st, NULL), "stats");
      if (sqlite3_step(st) == SQLITE_ROW) runs[r].index_bytes = (uint64_t)sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
      sql_ok(runs[r].db, sqlite3_prepare_v2(runs[r].db, "SELECT name, value FROM logstor_stats WHERE scope='engine' "
                                            "AND name LIKE 'cache%'", -1, &st, NULL), "stats");
      while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        uint64_t v = (uint64_t)sqlite3_column_int64(st, 1);
        if (!name) continue;
        if (!strcmp(name, "cache_hits")) runs[r].cache_hits = v;
        else if (!strcmp(name, "cache_misses")) runs[r].cache_misses = v;
        else if (!strcmp(name, "cache_bytes")) runs[r].cache_bytes = v;
        else if (!strcmp(name, "cache_size")) runs[r].cache_size = v;
      }
      sqlite3_finalize(st);
    } else {
      exec(runs[r].db, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
    sqlite3_close(runs[r].db);
    char p[4200];
    snprintf(p, sizeof p, "%s-logstor", runs[r].path);
    runs[r].disk_bytes = du(runs[r].path) + (runs[r].logstor ? du(p) : 0);
    runs[r].alloc_bytes = du_as(runs[r].path, 1) + (runs[r].logstor ? du_as(p, 1) : 0);
    double t0 = now();
    sql_open(&runs[r]);
    sqlite3_stmt *st;
    sql_ok(runs[r].db, sqlite3_prepare_v2(runs[r].db, "SELECT a FROM t WHERE pk = ?1", -1, &st, NULL), "reopen");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at(0));
    if (sqlite3_step(st) != SQLITE_ROW) { fprintf(stderr, "bench: row missing after reopen\n"); exit(1); }
    sqlite3_finalize(st);
    runs[r].reopen_ms = (now() - t0) * 1000;
    sqlite3_close(runs[r].db);
    if (runs[r].logstor) {
      /* Again without the checkpoint the close left: as after a crash. */
      snprintf(p, sizeof p, "%s-logstor/CHECKPOINT", runs[r].path);
      unlink(p);
      t0 = now();
      sql_open(&runs[r]);
      sql_ok(runs[r].db, sqlite3_prepare_v2(runs[r].db, "SELECT a FROM t WHERE pk = ?1", -1, &st, NULL), "reopen");
      sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at(0));
      if (sqlite3_step(st) != SQLITE_ROW) { fprintf(stderr, "bench: row missing after reopen\n"); exit(1); }
      sqlite3_finalize(st);
      runs[r].rescan_ms = (now() - t0) * 1000;
      sqlite3_close(runs[r].db);
    }
  }
  if (only) {
    for (int w = 0; w < W_N; w++) printf("%-28s %14.0f ops/s\n", wname[w], runs[first].rate[w]);
    if (first == 0) print_sql_wa(&runs[0]);
    if (dir == tmpl) rmtree(tmpl);
    return 0;
  }
  printf("%-28s %14s %14s %8s   %s\n", "workload", "logstor ops/s", "sqlite ops/s", "ratio", "target");
  for (int w = 0; w < W_N; w++)
    printf("%-28s %14.0f %14.0f %7.2fx   %s\n", wname[w], runs[0].rate[w], runs[1].rate[w],
           runs[0].rate[w] / runs[1].rate[w], wtarget[w]);
  uint64_t rows = (uint64_t)(n + 2 * auto_n);
  double logical = (double)rows * 116;
  double user_load = (double)n * 116, user_over = (double)over * 116;
  printf("\n%-28s %14s %14s\n", "", "logstor", "sqlite");
  printf("%-28s %14.2f %14.2f\n", "bytes written / user byte, load", runs[0].wbytes[W_LOAD] / user_load,
         runs[1].wbytes[W_LOAD] / user_load);
  printf("%-28s %14.2f %14.2f\n", "  ... overwrite", runs[0].wbytes[W_OVERWRITE] / user_over,
         runs[1].wbytes[W_OVERWRITE] / user_over);
  printf("%-28s %14.0f %14.0f\n", "  ... per autocommit insert", (double)runs[0].wbytes[W_AUTOCOMMIT] / auto_n,
         (double)runs[1].wbytes[W_AUTOCOMMIT] / auto_n);
  printf("%-28s %14.0f %14.0f\n", "  ... synchronous=normal", (double)runs[0].wbytes[W_AUTONORMAL] / auto_n,
         (double)runs[1].wbytes[W_AUTONORMAL] / auto_n);
  printf("%-28s %14.2f %14.2f\n", "disk bytes / live byte", runs[0].disk_bytes / logical,
         runs[1].disk_bytes / logical);
  printf("%-28s %14.2f %14.2f\n", "  ... allocated (no holes)", runs[0].alloc_bytes / logical,
         runs[1].alloc_bytes / logical);
  printf("%-28s %14.1f %14s\n", "index bytes / key", (double)runs[0].index_bytes / (double)rows, "-");
  printf("%-28s %14.0f %14.0f\n", "reopen + first read, ms", runs[0].reopen_ms, runs[1].reopen_ms);
  printf("%-28s %14.0f %14s\n", "  ... without checkpoint", runs[0].rescan_ms, "-");
  printf("%-28s %14.1f %14s\n", "record cache MiB (bound)", (double)runs[0].cache_bytes / 1048576, "");
  printf("%-28s %14.1f %14s\n", "  ... its bound, MiB", (double)runs[0].cache_size / 1048576, "");
  printf("%-28s %14.2f %14s\n", "  ... hit ratio, all reads",
         runs[0].cache_hits + runs[0].cache_misses
             ? (double)runs[0].cache_hits / (double)(runs[0].cache_hits + runs[0].cache_misses) : 0, "");
  printf("%-28s %14.0f %14s\n", "peak RSS of the process, MiB", (double)peak_rss_kb() / 1024, "");
  print_sql_wa(&runs[0]);
  if (dir == tmpl) rmtree(tmpl);
  return 0;
}

/* ---- cleaning: write amplification against disk utilisation ------------------ */

#define CL_REC_HDR 24u             /* record header bytes (FORMAT.md) */
#define CL_KEY 8u                  /* key bytes */
#define CL_VMIN 100u               /* value bytes: CL_VMIN .. CL_VMAX, fixed per key */
#define CL_VMAX 1000u
#define CL_BATCH 64                /* rows per transaction */
#define CL_BASE 3                  /* baseline runs per key set (the median counts) */

/* A value length for key i, and the bytes of its record on disk. */
static uint32_t cl_vlen(uint64_t i) {
  uint64_t s = i ^ 0xC1EA4ULL;
  return CL_VMIN + (uint32_t)(splitmix(&s) % (CL_VMAX - CL_VMIN + 1));
}
static uint64_t cl_recbytes(uint64_t i) { return (CL_REC_HDR + CL_KEY + cl_vlen(i) + 7) & ~(uint64_t)7; }

enum { CL_UNIFORM, CL_HOTCOLD };
static const char *cl_pname[2] = { "uniform", "hot/cold" };
static const char *cl_pcsv[2] = { "uniform", "hotcold" };

/* The key set of one utilisation: keys 0..n-1 with their digests. */
typedef struct cl_keys {
  uint64_t n;
  uint8_t (*bytes)[CL_KEY];
  ls_key *k;
  uint32_t *vlen;
  uint64_t *rec;
  uint64_t live;                   /* sum of rec */
} cl_keys;

static void cl_keys_make(cl_keys *ks, uint64_t target) {
  uint64_t n = 0, live = 0;
  while (live + cl_recbytes(n) <= target) live += cl_recbytes(n++);
  ks->n = n;
  ks->live = live;
  ks->bytes = malloc(n * sizeof *ks->bytes);
  ks->k = malloc(n * sizeof *ks->k);
  ks->vlen = malloc(n * sizeof *ks->vlen);
  ks->rec = malloc(n * sizeof *ks->rec);
  if (!ks->bytes || !ks->k || !ks->vlen || !ks->rec) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
  for (uint64_t i = 0; i < n; i++) {
    make_key(i, ks->bytes[i]);
    ls_key_set(&ks->k[i], ks->bytes[i], CL_KEY);
    ks->vlen[i] = cl_vlen(i);
    ks->rec[i] = cl_recbytes(i);
  }
}

static void cl_keys_free(cl_keys *ks) {
  free(ks->bytes);
  free(ks->k);
  free(ks->vlen);
  free(ks->rec);
}

/* One run: a fresh directory, a table loaded with the key set. */
typedef struct cl_run {
  ls_engine *e;
  uint32_t id;
  const cl_keys *ks;
  int pattern;
  uint64_t rs;                     /* random state */
  uint64_t tag;                    /* written into each value */
  uint8_t val[CL_VMAX];
} cl_run;

static uint64_t cl_pick(cl_run *r) {
  uint64_t n = r->ks->n, x = splitmix(&r->rs);
  if (r->pattern == CL_UNIFORM) return x % n;
  /* Hot/cold: 90 % of the writes go to the keys whose number is a
  ** multiple of 10, 10 % of them, spread over the whole load (hot and cold
  ** rows start out in the same segments). */
  uint64_t hot = (n + 9) / 10, cold = n - hot;
  if (!cold || splitmix(&r->rs) % 10 < 9) return 10 * (x % hot);
  uint64_t c = x % cold;                       /* the c-th key that is not a multiple of 10 */
  return 10 * (c / 9) + c % 9 + 1;
}

/* Write keys in transactions of CL_BATCH rows until bytes record bytes
** are written: all keys in order (load) or picked keys (overwrite).
** *rows counts the rows written.  Returns LS_OK or the failing code. */
static int cl_write(cl_run *r, int load, uint64_t bytes, uint64_t *rows) {
  const cl_keys *ks = r->ks;
  uint64_t done = 0, i = 0;
  *rows = 0;
  while (load ? i < ks->n : done < bytes) {
    ls_txn *t;
    int rc = ls_txn_begin(r->e, &t);
    if (rc) return rc;
    for (int j = 0; j < CL_BATCH && (load ? i < ks->n : 1); j++) {
      uint64_t k = load ? i++ : cl_pick(r);
      r->tag++;
      memcpy(r->val, &r->tag, sizeof r->tag);
      if ((rc = ls_txn_put(t, r->id, &ks->k[k], r->val, ks->vlen[k]))) break;
      done += ks->rec[k];
      (*rows)++;
    }
    if (!rc) rc = ls_txn_commit(t);
    ls_txn_free(t);
    if (rc) return rc;
  }
  return LS_OK;
}

/* What one measured point (or baseline) gives. */
typedef struct cl_result {
  int ok;                          /* 0: the run failed (why in err, detail in msg) */
  char err[200], msg[300];
  uint64_t keys, live;             /* bytes_live after the load */
  uint64_t rows;
  double secs, ops;                /* measured phase */
  wa_delta wa;                     /* bytes written over the measured phase */
  uint64_t compacted, delay_us, commits, syncs;
  double wa_clean, wa_total;
  double space_amp;                /* at the end */
} cl_result;

static int cl_open(const char *path, uint64_t disk, uint64_t file, uint64_t seg, int policy, ls_engine **e) {
  rmtree(path);
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.disk_size = disk;
  o.file_size = file;
  o.segment_size = seg;
  o.compaction_policy = policy;
  return ls_open(path, &o, e);
}

/* Load the key set into a fresh directory, overwrite warm bytes, then
** measure meas bytes of overwrites.  disk 0: the baseline (unbounded). */
static void cl_point(const char *path, const cl_keys *ks, int pattern, int policy, uint64_t disk, uint64_t file,
                     uint64_t seg, uint64_t warm, uint64_t meas, cl_result *res) {
  memset(res, 0, sizeof *res);
  cl_run *r = calloc(1, sizeof *r);
  if (!r) { fprintf(stderr, "bench: out of memory\n"); exit(1); }
  r->ks = ks;
  r->pattern = pattern;
  r->rs = 1234567 + (uint64_t)pattern;
  uint64_t vs = 77;
  for (uint32_t i = 0; i < CL_VMAX; i++) r->val[i] = (uint8_t)splitmix(&vs);
  res->keys = ks->n;
  const char *phase = "open";
  uint64_t rows = 0, freed = 0;
  ls_stats sl, s0, s1;
  int rc = cl_open(path, disk, file, seg, policy, &r->e);
  if (!rc) { phase = "create table"; rc = ls_table_create(r->e, "t", 1, &r->id); }
  if (!rc) { phase = "load"; rc = cl_write(r, 1, 0, &rows); }
  /* Separate the load before anything is measured. */
  if (!rc) { phase = "flush"; rc = ls_flush(r->e, r->id, &freed); }
  if (!rc) {
    ls_stats_get(r->e, &sl);
    res->live = sl.bytes_live;
  }
  if (!rc && warm) { phase = "warm-up"; rc = cl_write(r, 0, warm, &rows); }
  if (!rc) {
    phase = "measured phase";
    ls_stats_get(r->e, &s0);
    double t0 = now();
    rc = cl_write(r, 0, meas, &res->rows);
    res->secs = now() - t0;
    ls_stats_get(r->e, &s1);
  }
  if (rc) {
    snprintf(res->msg, sizeof res->msg, "%s", ls_errmsg());
    if (r->e && (!strcmp(phase, "warm-up") || !strcmp(phase, "measured phase"))) {
      /* How far the overwrites got. */
      ls_stats_get(r->e, &s1);
      wa_delta d;
      wa_diff(&d, &sl, &s1);
      snprintf(res->err, sizeof res->err, "%s after %.1f MiB of overwrites (%.2fx disk_size; WA clean so far "
               "%.2f)", ls_strerror(rc), (double)d.user / 1048576.0, disk ? (double)d.user / (double)disk : 0,
               per_user(d.user + d.comp, d.user));
    } else {
      snprintf(res->err, sizeof res->err, "%s: %s", phase, ls_strerror(rc));
    }
  } else {
    res->ok = 1;
    res->ops = (double)res->rows / res->secs;
    wa_diff(&res->wa, &s0, &s1);
    res->compacted = s1.segments_compacted - s0.segments_compacted;
    res->delay_us = s1.separator_delay_us - s0.separator_delay_us;
    res->commits = s1.commits - s0.commits;
    res->syncs = s1.syncs - s0.syncs;
    res->wa_clean = per_user(res->wa.user + res->wa.comp, res->wa.user);
    res->wa_total = per_user(res->wa.data, res->wa.user);
    res->space_amp = s1.space_amplification;
  }
  if (r->e) ls_close(r->e);
  rmtree(path);
  free(r);
}

static int cmp_result_ops(const void *a, const void *b) {
  const cl_result *x = a, *y = b;
  return x->ops < y->ops ? -1 : x->ops > y->ops;
}

/* The policies measured, in the order of the table. */
#define CL_NPOL 3
static const int cl_policy[CL_NPOL] = { LS_POLICY_GREEDY, LS_POLICY_LFS, LS_POLICY_COST_BENEFIT };
static const char *cl_polname[CL_NPOL] = { "greedy", "LFS c-b", "cost-benefit" };
static const char *cl_polcsv[CL_NPOL] = { "greedy", "lfs", "cost-benefit" };

static void cl_plot(const char *png, const double *util, int nu, cl_result res[][CL_NPOL][2]) {
  int series = 0;
  for (int p = 0; p < CL_NPOL; p++)
    for (int g = 0; g < 2; g++)
      for (int u = 0; u < nu; u++) series += res[u][p][g].ok;
  if (!series) {
    printf("no point succeeded: no plot written\n");
    return;
  }
  if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
    printf("gnuplot is not installed: no plot written (%s skipped)\n", png);
    return;
  }
  char script[] = "/tmp/logstor-bench-plot-XXXXXX";
  int fd = mkstemp(script);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    perror("bench: gnuplot script");
    if (fd >= 0) { close(fd); unlink(script); }
    return;
  }
  fprintf(f, "set terminal png size 900,600\nset output '%s'\n", png);
  fprintf(f, "set title 'logstor cleaning: random overwrites of a fixed key set'\n"
             "set xlabel 'disk utilisation (live bytes / disk size), %%'\n"
             "set ylabel 'cleaning WA: (user + compaction bytes) / user bytes'\n"
             "set key top left\nset grid\nset xrange [45:95]\nset yrange [1:*]\n");
  /* One data block per workload x policy, points that failed left out. */
  for (int p = 0; p < CL_NPOL; p++)
    for (int g = 0; g < 2; g++) {
      fprintf(f, "$d%d%d << EOD\n", p, g);
      for (int u = 0; u < nu; u++)
        if (res[u][p][g].ok) fprintf(f, "%.0f %.4f\n", util[u] * 100, res[u][p][g].wa_clean);
      fprintf(f, "EOD\n");
    }
  fprintf(f, "plot ");
  int first = 1;
  for (int p = 0; p < CL_NPOL; p++)
    for (int g = 0; g < 2; g++) {
      int n = 0;
      for (int u = 0; u < nu; u++) n += res[u][p][g].ok;
      if (!n) continue;
      fprintf(f, "%s$d%d%d using 1:2 with linespoints lw 2 pt %d title '%s, %s'", first ? "" : ", ", p, g,
              5 + 2 * p + g, cl_pname[g], cl_polname[p]);
      first = 0;
    }
  fprintf(f, "\n");
  fclose(f);
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "gnuplot '%s'", script);
  if (system(cmd) == 0) printf("plot written to %s\n", png);
  else printf("gnuplot failed: no plot written\n");
  unlink(script);
}

static int bench_clean(int argc, char **argv) {
  int quick = 0;
  const char *csv = "clean.csv", *png = "clean.png", *dir = NULL;
  double util[3] = { 0.50, 0.75, 0.90 };
  int NU = 3;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) quick = 1;
    else if (!strcmp(argv[i], "--util") && i + 1 < argc) {
      util[0] = atof(argv[++i]) / 100;
      NU = 1;
      if (util[0] <= 0 || util[0] >= 1) { fprintf(stderr, "bench clean: --util takes a percentage, 1..99\n"); return 2; }
    }
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--png") && i + 1 < argc) png = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else { fprintf(stderr, "bench clean: unknown option %s\n", argv[i]); return 2; }
  }
  const uint64_t MiB = 1024 * 1024;
  uint64_t disk = (quick ? 16 : 64) * MiB, file = 4 * MiB, seg = LS_DEFAULT_SEGMENT_SIZE;
  uint64_t warm = disk, meas = quick ? 2 * disk : 4 * disk;
  char tmpl[] = "/tmp/logstor-bench-XXXXXX";
  if (!dir) {
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    dir = tmpl;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/clean", dir);
  cl_result res[3][CL_NPOL][2], base[3][2];
  printf("cleaning bench: disk_size %" PRIu64 " MiB, file_size %" PRIu64 " MiB, segment_size %" PRIu64
         " KiB; 8-byte keys, %u..%u-byte values (fixed per key), %d rows per transaction\n",
         disk / MiB, file / MiB, seg / 1024, CL_VMIN, CL_VMAX, CL_BATCH);
  printf("each point: load the key set, ls_flush, %.0fx disk_size of overwrites as warm-up, then %.0fx disk_size "
         "measured; directory %s\n", (double)warm / (double)disk, (double)meas / (double)disk, dir);
  printf("hot/cold: 90%% of the writes go to 10%% of the keys.  baseline: the same key set and writes on an "
         "unbounded disk (disk_size 0),\nno warm-up, %.2fx the live bytes measured (compaction is not due before "
         "2x); the median of %d runs\n\n", 0.75, CL_BASE);
  fflush(stdout);
  double t_all = now();
  int step = 0, nsteps = NU * 2 * (1 + CL_NPOL);
  for (int u = 0; u < NU; u++) {
    cl_keys ks;
    cl_keys_make(&ks, (uint64_t)(util[u] * (double)disk));
    for (int g = 0; g < 2; g++) {
      /* Baseline: an unbounded disk compacts once the segments in use hold
      ** twice the live bytes; stay below.  The median of CL_BASE runs. */
      uint64_t bmeas = ks.live / 4 * 3 < meas ? ks.live / 4 * 3 : meas;
      double t0 = now();
      cl_result b[CL_BASE];
      int nb = 0;
      for (int i = 0; i < CL_BASE; i++) {
        cl_point(path, &ks, g, 0, 0, file, seg, 0, bmeas, &b[nb]);
        if (b[nb].ok) nb++;
        else base[u][g] = b[nb];
      }
      if (nb) {
        qsort(b, (size_t)nb, sizeof *b, cmp_result_ops);
        base[u][g] = b[nb / 2];
      }
      fprintf(stderr, "[%2d/%d] %3.0f%% %-8s baseline x%d   %6.1f s\n", ++step, nsteps, util[u] * 100, cl_pname[g],
              CL_BASE, now() - t0);
      for (int p = 0; p < CL_NPOL; p++) {
        t0 = now();
        cl_point(path, &ks, g, cl_policy[p], disk, file, seg, warm, meas, &res[u][p][g]);
        fprintf(stderr, "[%2d/%d] %3.0f%% %-8s %-12s  %6.1f s\n", ++step, nsteps, util[u] * 100, cl_pname[g],
                cl_polname[p], now() - t0);
      }
    }
    cl_keys_free(&ks);
  }
  double t_total = now() - t_all;

  printf("baseline (disk_size 0, no compaction expected; the files grow, so it also formats new files):\n");
  printf("%-5s %-9s %8s %9s %11s %9s %12s %10s\n", "util", "workload", "keys", "live MiB", "rows/s", "WA total",
         "format/user", "compacted");
  for (int u = 0; u < NU; u++)
    for (int g = 0; g < 2; g++) {
      cl_result *b = &base[u][g];
      if (!b->ok) { printf("%4.0f%% %-9s failed: %s\n", util[u] * 100, cl_pname[g], b->err); continue; }
      printf("%4.0f%% %-9s %8" PRIu64 " %9.1f %11.0f %9.2f %12.2f %10" PRIu64 "%s\n", util[u] * 100, cl_pname[g],
             b->keys, (double)b->live / (double)MiB, b->ops, b->wa_total, per_user(b->wa.format, b->wa.user), b->compacted,
             b->compacted ? "  (compaction ran: not a clean baseline)" : "");
    }
  printf("\n%-5s %-9s %-13s %6s %9s %9s %11s %8s %10s %9s\n", "util", "workload", "policy", "actual", "WA clean",
         "WA total", "rows/s", "vs base", "compacted", "space amp");
  for (int u = 0; u < NU; u++)
    for (int g = 0; g < 2; g++)
      for (int p = 0; p < CL_NPOL; p++) {
        cl_result *r = &res[u][p][g], *b = &base[u][g];
        if (!r->ok) {
          printf("%4.0f%% %-9s %-13s failed: %s\n", util[u] * 100, cl_pname[g], cl_polname[p], r->err);
          continue;
        }
        printf("%4.0f%% %-9s %-13s %5.1f%% %9.2f %9.2f %11.0f %7.2fx %10" PRIu64 " %9.2f\n", util[u] * 100,
               cl_pname[g], cl_polname[p], 100.0 * (double)r->live / (double)disk, r->wa_clean, r->wa_total, r->ops,
               b->ok ? r->ops / b->ops : 0, r->compacted, r->space_amp);
      }
  printf("\nWA clean = (user + compaction bytes) / user bytes; WA total = (all data bytes - format bytes) / user "
         "bytes,\nseparator and writer padding included; both from the engine's counters over the measured phase "
         "(user bytes:\nrecord bytes, 24-byte header + key + value, 8-byte aligned).  actual: bytes_live / disk_size "
         "after the load.\nvs base: rows/s / baseline rows/s of the same key set and workload.  compacted: "
         "segments taken by compaction.\nspace amp: bytes of segments in use / live bytes at the end.  "
         "policy: greedy = emptiest first; LFS c-b = (1-u)*age/(1+u);\ncost-benefit (the default) = "
         "(1-u)/u * sqrt(T/ln(u0/u)), engine/cleaner.c.  "
         "Total time %.0f s.\n", t_total);

  FILE *f = fopen(csv, "w");
  if (!f) {
    perror(csv);
  } else {
    fprintf(f, "utilisation,workload,policy,actual_utilisation,keys,live_bytes,rows,seconds,rows_per_s,"
               "baseline_rows_per_s,ratio_to_baseline,user_bytes,compaction_bytes,separator_bytes,data_bytes,"
               "format_bytes,wa_cleaning,wa_total,segments_compacted,separator_delay_us,commits,syncs,space_amplification,"
               "error\n");
    for (int u = 0; u < NU; u++)
      for (int g = 0; g < 2; g++)
        for (int p = -1; p < CL_NPOL; p++) {
          cl_result *r = p < 0 ? &base[u][g] : &res[u][p][g], *b = &base[u][g];
          fprintf(f, "%.2f,%s,%s,%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.3f,%.0f,%.0f,%.4f,%" PRIu64 ",%" PRIu64
                     ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.4f,%.4f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
                     ",%.4f,",
                  util[u], cl_pcsv[g], p < 0 ? "baseline" : cl_polcsv[p],
                  (double)r->live / (double)disk, r->keys, r->live, r->rows, r->secs, r->ops, b->ok ? b->ops : 0,
                  b->ok && r->ok ? r->ops / b->ops : 0, r->wa.user, r->wa.comp, r->wa.sep, r->wa.data, r->wa.format, r->wa_clean,
                  r->wa_total, r->compacted, r->delay_us, r->commits, r->syncs, r->space_amp);
          if (!r->ok) {
            /* A quoted field: the reason, then the engine's message. */
            fputc('"', f);
            for (const char *c = r->err; *c; c++) fputs(*c == '"' ? "\"\"" : (char[2]){ *c, 0 }, f);
            fputs(": ", f);
            for (const char *c = r->msg; *c; c++) fputs(*c == '"' ? "\"\"" : (char[2]){ *c, 0 }, f);
            fputc('"', f);
          }
          fputc('\n', f);
        }
    fclose(f);
    printf("CSV written to %s\n", csv);
  }
  cl_plot(png, util, NU, res);
  if (dir == tmpl) rmtree(tmpl);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "engine")) return bench_engine(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "sql")) return bench_sql(argc - 2, argv + 2, argv[0]);
  if (argc >= 2 && !strcmp(argv[1], "clean")) return bench_clean(argc - 2, argv + 2);
  if (argc < 2 || argv[1][0] == '-') return bench_sql(argc - 1, argv + 1, argv[0]);
  fprintf(stderr, "usage: tool/bench [sql] [--n N] [--quick] [--so PATH] [--dir D]\n"
                  "       tool/bench engine [--n N] [--value B] [--batch K] [--dir D]\n"
                  "       tool/bench clean [--quick] [--util PCT] [--csv FILE] [--png FILE] [--dir D]\n");
  return 2;
}
