/*
** bench.c -- tool/bench: measured speed, never asserted.
**
**   tool/bench [sql] [--n N] [--quick] [--so PATH] [--dir D]
**       The same SQL workloads, in one run, on a logstor table and on the
**       table a user would otherwise pick: a native WITHOUT ROWID table in
**       WAL mode with synchronous=FULL (both make every commit durable).
**       Prints ops/s of each, the ratio, bytes written per user byte, disk
**       bytes per live byte, index bytes per key and the reopen time.
**   tool/bench engine [--n N] [--value B] [--batch K] [--dir D]
**       The engine alone, without SQLite.
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

/* ---- SQL: logstor against native SQLite ------------------------------------ */

typedef struct sqlrun {
  const char *label;
  int logstor;
  sqlite3 *db;
  char path[4096];
  char so[4096];
  double rate[8];                  /* ops/s per workload */
  uint64_t wbytes[8];              /* bytes written to the device per workload */
  double reopen_ms;
  uint64_t disk_bytes;
  uint64_t index_bytes;
} sqlrun;

enum { W_LOAD, W_OVERWRITE, W_GET, W_IN, W_SCAN, W_AUTOCOMMIT, W_N };
static const char *wname[W_N] = { "bulk load, 1000 rows/txn", "random overwrite, 1000/txn",
                                  "point read by key (warm)", "IN-batch read, 100 keys",
                                  "full scan", "autocommit insert" };
static const char *wtarget[W_N] = { ">= 15x", ">= 10x", ">= 1.5x", ">= 2x", ">= 0.5x", ">= 1x" };

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

static uint64_t du(const char *path) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "du -sb --apparent-size '%s' 2>/dev/null", path);
  FILE *p = popen(cmd, "r");
  if (!p) return 0;
  unsigned long long v = 0;
  if (fscanf(p, "%llu", &v) != 1) v = 0;
  pclose(p);
  return v;
}

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
      sql_ok(db, sqlite3_prepare_v2(db, "INSERT INTO t(pk, a, v) VALUES(?1, ?2, ?3)", -1, &st, NULL), "prepare");
      for (long i = 0; i < ops; i++) {
        fill_value(val, (uint64_t)i);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at((uint64_t)(n + i)));
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
  if (done == 0) { fprintf(stderr, "bench: %s did nothing on %s\n", wname[w], r->label); exit(1); }
  return (double)done / dt;
}

static int bench_sql(int argc, char **argv, const char *argv0) {
  long n = 1000000;
  const char *dir = NULL, *so = NULL, *only = NULL;   /* --only logstor|sqlite: for profiling */
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--quick")) n = 20000;
    else if (!strcmp(argv[i], "--so") && i + 1 < argc) so = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
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
  long over = n / 5 < 1000 ? 1000 : n / 5;      /* overwrites */
  long gets = n / 5 < 1000 ? 1000 : n / 5;
  long auto_n = n >= 100000 ? 10000 : 1000;
  printf("SQL bench: %ld rows of 116 bytes (random 63-bit keys), %ld overwrites, %ld point reads, "
         "%ld autocommit inserts; directory %s\n", n, over, gets, auto_n, dir);
  printf("logstor: CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, a INT, v BLOB)\n");
  printf("sqlite:  CREATE TABLE t(pk INTEGER PRIMARY KEY, a INT, v BLOB) WITHOUT ROWID\n");
  printf("both databases: journal_mode=WAL, synchronous=FULL; bytes written are logical bytes handed to "
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
  long opsof[W_N] = { n, over, gets, gets, 0, auto_n };
  count_vfs_register();
  /* Interleave the two systems workload by workload. */
  int first = only && !strcmp(only, "sqlite") ? 1 : 0, last = only && !strcmp(only, "logstor") ? 0 : 1;
  for (int r = first; r <= last; r++) {
    sql_open(&runs[r]);
    exec(runs[r].db, runs[r].logstor ? "CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, a INT, v BLOB)"
                                     : "CREATE TABLE t(pk INTEGER PRIMARY KEY, a INT, v BLOB) WITHOUT ROWID");
  }
  for (int w = 0; w < W_N; w++) {
    for (int r = first; r <= last; r++) {
      uint64_t v0 = vfs_written, e0 = written(&runs[r]) - v0;
      runs[r].rate[w] = sql_workload(&runs[r], w, n, opsof[w]);
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
    } else {
      exec(runs[r].db, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
    sqlite3_close(runs[r].db);
    char p[4200];
    snprintf(p, sizeof p, "%s-logstor", runs[r].path);
    runs[r].disk_bytes = du(runs[r].path) + (runs[r].logstor ? du(p) : 0);
    double t0 = now();
    sql_open(&runs[r]);
    sqlite3_stmt *st;
    sql_ok(runs[r].db, sqlite3_prepare_v2(runs[r].db, "SELECT a FROM t WHERE pk = ?1", -1, &st, NULL), "reopen");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at(0));
    if (sqlite3_step(st) != SQLITE_ROW) { fprintf(stderr, "bench: row missing after reopen\n"); exit(1); }
    sqlite3_finalize(st);
    runs[r].reopen_ms = (now() - t0) * 1000;
    sqlite3_close(runs[r].db);
  }
  if (only) {
    for (int w = 0; w < W_N; w++) printf("%-28s %14.0f ops/s\n", wname[w], runs[first].rate[w]);
    if (dir == tmpl) rmtree(tmpl);
    return 0;
  }
  printf("%-28s %14s %14s %8s   %s\n", "workload", "logstor ops/s", "sqlite ops/s", "ratio", "target");
  for (int w = 0; w < W_N; w++)
    printf("%-28s %14.0f %14.0f %7.2fx   %s\n", wname[w], runs[0].rate[w], runs[1].rate[w],
           runs[0].rate[w] / runs[1].rate[w], wtarget[w]);
  uint64_t rows = (uint64_t)(n + auto_n);
  double logical = (double)rows * 116;
  double user_load = (double)n * 116, user_over = (double)over * 116;
  printf("\n%-28s %14s %14s\n", "", "logstor", "sqlite");
  printf("%-28s %14.2f %14.2f\n", "bytes written / user byte, load", runs[0].wbytes[W_LOAD] / user_load,
         runs[1].wbytes[W_LOAD] / user_load);
  printf("%-28s %14.2f %14.2f\n", "  ... overwrite", runs[0].wbytes[W_OVERWRITE] / user_over,
         runs[1].wbytes[W_OVERWRITE] / user_over);
  printf("%-28s %14.0f %14.0f\n", "  ... per autocommit insert", (double)runs[0].wbytes[W_AUTOCOMMIT] / auto_n,
         (double)runs[1].wbytes[W_AUTOCOMMIT] / auto_n);
  printf("%-28s %14.2f %14.2f\n", "disk bytes / live byte", runs[0].disk_bytes / logical,
         runs[1].disk_bytes / logical);
  printf("%-28s %14.1f %14s\n", "index bytes / key", (double)runs[0].index_bytes / (double)rows, "-");
  printf("%-28s %14.0f %14.0f\n", "reopen + first read, ms", runs[0].reopen_ms, runs[1].reopen_ms);
  if (dir == tmpl) rmtree(tmpl);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "engine")) return bench_engine(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "sql")) return bench_sql(argc - 2, argv + 2, argv[0]);
  if (argc < 2 || argv[1][0] == '-') return bench_sql(argc - 1, argv + 1, argv[0]);
  fprintf(stderr, "usage: tool/bench [sql] [--n N] [--quick] [--so PATH] [--dir D]\n"
                  "       tool/bench engine [--n N] [--value B] [--batch K] [--dir D]\n");
  return 2;
}
