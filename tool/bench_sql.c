/*
** bench_sql.c -- tool/bench [sql]: the same SQL workloads, in one run, on a
** logstor table and on a native WITHOUT ROWID table (WAL, synchronous=FULL);
** bench.c lists the modes and their options.
*/
#include "bench.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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


static void sql_open(sqlrun *r) {
  r->db = bench_db_open(r->path, "count", r->logstor ? r->so : NULL);
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

int bench_sql(int argc, char **argv, const char *argv0) {
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
  if (!so) so = bench_so_path(argv0, sopath, sizeof sopath);
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
