/*
** bench_ycsb.c -- tool/bench ycsb: YCSB-style workloads A-F on a logstor
** table and on a native WITHOUT ROWID table, in one run (bench.c lists the
** modes).
**
**   A  update-heavy       50 % reads, 50 % updates
**   B  read-mostly        95 % reads,  5 % updates
**   C  read-only         100 % reads
**   F  read-modify-write  50 % reads, 50 % read-modify-writes
**   D  read-latest        95 % reads,  5 % inserts; reads favour new rows
**   E  short scans        95 % `WHERE pk >= ? ORDER BY pk LIMIT 100`, 5 % inserts
**
** run in that order (YCSB's: D and E insert) on the same rows.  Records are
** 1 KB: an 8-byte random integer key and a 1000-byte value (an update
** rewrites the value).  Requests follow YCSB's scrambled zipfian
** distribution (theta 0.99) over the loaded records; D's follow its
** "latest" distribution (zipfian over the rows by recency, newest first).
** Each of T threads has its own connection and runs ops/T operations,
** each in its own transaction (autocommit; F's read and write share one)
** or K to a transaction (--batch K; BEGIN IMMEDIATE when the batch
** writes).  Both databases are in WAL mode with synchronous=FULL, and use
** the same busy handler: it retries every 50 us (SQLite's default one
** sleeps up to 100 ms and would measure itself).  A transaction that still
** gets SQLITE_BUSY is rolled back and run again (counted as a retry).
**
** --order key makes the logstor table key-ordered (order=key), where E's
** scans are index range scans; with the default order=token they read and
** sort the whole table (E then runs fewer operations, and is labelled).
*/
#include "bench.h"

#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define Y_VALUE 1000               /* value bytes of a record */
#define Y_SCAN 100                 /* rows of a scan */
#define Y_MAXT 64                  /* most threads */
#define Y_LOAD_BATCH 1000          /* rows per transaction of the load */

enum { OP_READ, OP_UPDATE, OP_INSERT, OP_SCAN, OP_RMW };
enum { D_ZIPF, D_LATEST };

typedef struct ywork {
  char name;
  const char *label;
  int pct[5];                      /* per cent of each OP_ */
  int dist;
  const char *target;              /* issue 14's target ratio */
} ywork;

static const ywork y_work[] = {
  { 'A', "update-heavy, 50/50 read/update", { 50, 50, 0, 0, 0 }, D_ZIPF, ">= 1.5x" },
  { 'B', "read-mostly, 95/5 read/update", { 95, 5, 0, 0, 0 }, D_ZIPF, ">= 2.5x" },
  { 'C', "read-only", { 100, 0, 0, 0, 0 }, D_ZIPF, ">= 3x" },
  { 'F', "read-modify-write, 50/50", { 50, 0, 0, 0, 50 }, D_ZIPF, ">= 1.5x" },
  { 'D', "read-latest, 95/5 read/insert", { 95, 0, 5, 0, 0 }, D_LATEST, ">= 3x" },
  { 'E', "short scans, 95/5 scan/insert", { 0, 0, 5, 95, 0 }, D_ZIPF, ">= 1x (order='key')" },
};
#define Y_NWORK ((int)(sizeof y_work / sizeof y_work[0]))

/* ---- YCSB's zipfian generator (Gray et al., "Quickly generating
** billion-record synthetic databases"), as core/ZipfianGenerator.java -- */

typedef struct zipf {
  uint64_t n;
  double theta, alpha, zetan, eta, half_pow_theta;
} zipf;

static void zipf_init(zipf *z, uint64_t n, double theta) {
  double zeta2 = 1 + pow(0.5, theta), zetan = 0;
  for (uint64_t i = 1; i <= n; i++) zetan += 1 / pow((double)i, theta);
  z->n = n;
  z->theta = theta;
  z->alpha = 1 / (1 - theta);
  z->zetan = zetan;
  z->eta = (1 - pow(2.0 / (double)n, 1 - theta)) / (1 - zeta2 / zetan);
  z->half_pow_theta = 1 + pow(0.5, theta);
}

/* A rank 0..n-1, 0 the most popular. */
static uint64_t zipf_next(const zipf *z, uint64_t *rs) {
  double u = (double)(splitmix(rs) >> 11) * 0x1.0p-53;
  double uz = u * z->zetan;
  if (uz < 1) return 0;
  if (uz < z->half_pow_theta) return 1;
  uint64_t r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1, z->alpha));
  return r < z->n ? r : z->n - 1;
}

/* ---- one system (logstor or native), its connections and results ------- */

typedef struct ysys {
  const char *label;
  int logstor;
  char path[4200];
  sqlite3 *db[Y_MAXT];             /* a connection per thread */
  _Atomic uint64_t next;           /* the item number of the next insert */
  double rate[Y_NWORK];            /* ops/s per workload */
  uint64_t retries[Y_NWORK];       /* transactions run again after SQLITE_BUSY */
  atomic_flag busy_seen;           /* the first SQLITE_BUSY's message is in busy_msg */
  char busy_msg[300];
  uint64_t cache_max, cache_size;  /* logstor: most cache_bytes seen after a workload; the bound */
  double load_rate;
} ysys;

typedef struct ythread {
  ysys *s;
  const ywork *w;
  const zipf *z;
  pthread_barrier_t *bar;
  sqlite3 *db;
  uint64_t records;                /* loaded records: the zipfian requests' range */
  long ops;
  int batch;
  uint64_t rs;                     /* random state of the picks: the same for both systems */
  uint64_t ver;                    /* values written (a retry writes a new one, picks unchanged) */
  uint64_t retries, missing;
  sqlite3_stmt *read, *update, *insert, *scan, *begin, *begin_w, *commit, *rollback;
  uint8_t val[Y_VALUE];
} ythread;

/* The 1000-byte value of item i in its version ver. */
static void y_value(uint8_t *v, uint64_t i, uint64_t ver) {
  uint64_t s = i * 0x9E3779B97F4A7C15ULL + ver;
  for (int b = 0; b < Y_VALUE; b += 8) {
    uint64_t x = splitmix(&s);
    memcpy(v + b, &x, b + 8 <= Y_VALUE ? 8 : (size_t)(Y_VALUE - b));
  }
}

static int y_busy(void *arg, int count) {
  (void)arg;
  if (count > 400000) return 0;    /* about 20 s at 50 us */
  usleep(50);
  return 1;
}

static void y_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
  sql_ok(db, sqlite3_prepare_v2(db, sql, -1, st, NULL), sql);
}

/* Run st (bound) to its end; ROW results counted into *rows.  Returns
** SQLITE_DONE, SQLITE_BUSY (to be retried), or exits on any other error. */
static int y_step(ythread *t, sqlite3_stmt *st, long *rows) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    (void)sqlite3_column_blob(st, sqlite3_column_count(st) - 1);
    if (rows) (*rows)++;
  }
  if (((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) && !atomic_flag_test_and_set(&t->s->busy_seen))
    snprintf(t->s->busy_msg, sizeof t->s->busy_msg, "%s: %s", sqlite3_sql(st), sqlite3_errmsg(t->db));
  sqlite3_reset(st);
  if (rc == SQLITE_DONE || (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) return rc & 0xff;
  fprintf(stderr, "bench ycsb: %s: %s: %s\n", t->s->label, sqlite3_sql(st), sqlite3_errmsg(t->db));
  exit(1);
}

/* One operation: op on item. */
static int y_op(ythread *t, int op, uint64_t item) {
  sqlite3_int64 key = (sqlite3_int64)key_at(item);
  long rows = 0;
  int rc;
  switch (op) {
    case OP_READ:
      sqlite3_bind_int64(t->read, 1, key);
      rc = y_step(t, t->read, &rows);
      if (rc == SQLITE_DONE && !rows) t->missing++;
      return rc;
    case OP_UPDATE:
    case OP_INSERT: {
      sqlite3_stmt *st = op == OP_UPDATE ? t->update : t->insert;
      y_value(t->val, item, ++t->ver);
      sqlite3_bind_int64(st, 1, key);
      sqlite3_bind_blob(st, 2, t->val, Y_VALUE, SQLITE_STATIC);
      return y_step(t, st, NULL);
    }
    case OP_SCAN:
      sqlite3_bind_int64(t->scan, 1, key);
      return y_step(t, t->scan, &rows);
    case OP_RMW:
      /* Read, change the value, write it back (in the caller's transaction). */
      sqlite3_bind_int64(t->read, 1, key);
      if ((rc = y_step(t, t->read, &rows)) != SQLITE_DONE) return rc;
      if (!rows) t->missing++;
      return y_op(t, OP_UPDATE, item);
  }
  return SQLITE_DONE;
}

/* The next operation of t's workload and its item. */
static void y_pick(ythread *t, int *op, uint64_t *item) {
  int p = (int)(splitmix(&t->rs) % 100), o = 0;
  while (o < 4 && p >= t->w->pct[o]) p -= t->w->pct[o++];
  *op = o;
  if (o == OP_INSERT) {
    *item = atomic_fetch_add(&t->s->next, 1);
  } else if (t->w->dist == D_LATEST) {
    uint64_t newest = atomic_load(&t->s->next) - 1, r = zipf_next(t->z, &t->rs);
    *item = r <= newest ? newest - r : 0;
  } else {
    /* Scrambled: the popular items are spread over the key space and the load. */
    uint64_t r = zipf_next(t->z, &t->rs);
    *item = splitmix(&r) % t->records;
  }
}

static void *y_thread(void *arg) {
  ythread *t = arg;
  enum { MAXB = 4096 };
  int ops[MAXB];
  uint64_t items[MAXB];
  pthread_barrier_wait(t->bar);
  for (long done = 0; done < t->ops;) {
    int k = t->batch > 1 ? t->batch : 1, writes = 0;
    if (k > t->ops - done) k = (int)(t->ops - done);
    for (int i = 0; i < k; i++) {
      y_pick(t, &ops[i], &items[i]);
      writes += ops[i] != OP_READ && ops[i] != OP_SCAN;
    }
    /* One statement alone needs no BEGIN; F's read-modify-write does. */
    int txn = t->batch > 1 || ops[0] == OP_RMW;
    for (;;) {
      int rc = SQLITE_DONE;
      if (txn) rc = y_step(t, writes ? t->begin_w : t->begin, NULL);
      for (int i = 0; i < k && rc == SQLITE_DONE; i++) rc = y_op(t, ops[i], items[i]);
      if (txn && rc == SQLITE_DONE) rc = y_step(t, t->commit, NULL);
      if (rc == SQLITE_DONE) break;
      if (txn && !sqlite3_get_autocommit(t->db)) y_step(t, t->rollback, NULL);
      t->retries++;
    }
    done += k;
  }
  return NULL;
}

/* Run workload w on s with its threads; returns ops/s. */
static double y_run(ysys *s, int wi, const zipf *z, uint64_t records, long ops, int threads, int batch,
                    uint64_t *missing) {
  const ywork *w = &y_work[wi];
  ythread t[Y_MAXT];
  pthread_t tid[Y_MAXT];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  for (int i = 0; i < threads; i++) {
    ythread *x = &t[i];
    memset(x, 0, sizeof *x);
    x->s = s;
    x->w = w;
    x->z = z;
    x->bar = &bar;
    x->db = s->db[i];
    x->records = records;
    x->ops = ops / threads + (i < ops % threads);
    x->batch = batch;
    x->rs = 0x5EED0000ULL + (uint64_t)w->name * 131 + (uint64_t)i;
    y_prepare(x->db, "SELECT v FROM t WHERE pk = ?1", &x->read);
    y_prepare(x->db, "UPDATE t SET v = ?2 WHERE pk = ?1", &x->update);
    y_prepare(x->db, "INSERT INTO t(pk, v) VALUES(?1, ?2)", &x->insert);
    y_prepare(x->db, "SELECT pk, v FROM t WHERE pk >= ?1 ORDER BY pk LIMIT 100", &x->scan);
    y_prepare(x->db, "BEGIN", &x->begin);
    y_prepare(x->db, "BEGIN IMMEDIATE", &x->begin_w);
    y_prepare(x->db, "COMMIT", &x->commit);
    y_prepare(x->db, "ROLLBACK", &x->rollback);
    if (pthread_create(&tid[i], NULL, y_thread, x)) { fprintf(stderr, "bench ycsb: pthread_create\n"); exit(1); }
  }
  pthread_barrier_wait(&bar);
  double t0 = now();
  for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  double dt = now() - t0;
  pthread_barrier_destroy(&bar);
  for (int i = 0; i < threads; i++) {
    s->retries[wi] += t[i].retries;
    *missing += t[i].missing;
    sqlite3_stmt *st[] = { t[i].read, t[i].update, t[i].insert, t[i].scan, t[i].begin, t[i].begin_w, t[i].commit,
                           t[i].rollback };
    for (size_t j = 0; j < sizeof st / sizeof st[0]; j++) sqlite3_finalize(st[j]);
  }
  return (double)ops / dt;
}

/* Load records rows through the first connection, Y_LOAD_BATCH a transaction. */
static void y_load(ysys *s, uint64_t records) {
  sqlite3 *db = s->db[0];
  sqlite3_stmt *st;
  uint8_t val[Y_VALUE];
  y_prepare(db, "INSERT INTO t(pk, v) VALUES(?1, ?2)", &st);
  double t0 = now();
  for (uint64_t b = 0; b < records; b += Y_LOAD_BATCH) {
    exec(db, "BEGIN");
    for (uint64_t i = b; i < b + Y_LOAD_BATCH && i < records; i++) {
      y_value(val, i, 0);
      sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at(i));
      sqlite3_bind_blob(st, 2, val, Y_VALUE, SQLITE_STATIC);
      sql_ok(db, sqlite3_step(st), "load");
      sqlite3_reset(st);
    }
    exec(db, "COMMIT");
  }
  s->load_rate = (double)records / (now() - t0);
  sqlite3_finalize(st);
  atomic_store(&s->next, records);
}

int bench_ycsb(int argc, char **argv, const char *argv0) {
  long records = 100000, ops = 40000, scan_ops = -1;
  int threads = 4, batch = 0, rowid = 0;
  const char *dir = NULL, *so = NULL, *which = "ABCFDE", *order = "token";
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--records") && i + 1 < argc) records = atol(argv[++i]);
    else if (!strcmp(argv[i], "--ops") && i + 1 < argc) ops = atol(argv[++i]);
    else if (!strcmp(argv[i], "--scan-ops") && i + 1 < argc) scan_ops = atol(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--workloads") && i + 1 < argc) which = argv[++i];
    else if (!strcmp(argv[i], "--native-rowid")) rowid = 1;
    else if (!strcmp(argv[i], "--order") && i + 1 < argc) order = argv[++i];
    else if (!strcmp(argv[i], "--quick")) { records = 10000; ops = 4000; }
    else if (!strcmp(argv[i], "--so") && i + 1 < argc) so = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else { fprintf(stderr, "bench ycsb: unknown option %s\n", argv[i]); return 2; }
  }
  int keyed = !strcmp(order, "key");
  if (records < 100 || ops < 1 || threads < 1 || threads > Y_MAXT || batch < 0 || batch > 4096 ||
      (!keyed && strcmp(order, "token"))) {
    fprintf(stderr, "bench ycsb: --records >= 100, --ops >= 1, --threads 1..%d, --batch 0..4096, --order token|key\n",
            Y_MAXT);
    return 2;
  }
  /* E's scans read the whole table on a token-ordered table: fewer.  On a
  ** key-ordered one a scan is about 100 point reads' work. */
  if (scan_ops < 0) scan_ops = keyed ? (ops / 20 < threads ? threads : ops / 20) : ops / 200 < threads ? threads : ops / 200;
  char create[128];
  snprintf(create, sizeof create, "CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, v BLOB%s)",
           keyed ? ", order=key" : "");
  char tmpl[] = "/tmp/logstor-bench-XXXXXX", sopath[4096];
  if (!dir) {
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    dir = tmpl;
  }
  if (!so) so = bench_so_path(argv0, sopath, sizeof sopath);
  const char *native = rowid ? "CREATE TABLE t(pk INTEGER PRIMARY KEY, v BLOB)"
                             : "CREATE TABLE t(pk INTEGER PRIMARY KEY, v BLOB) WITHOUT ROWID";
  printf("YCSB-style bench: %ld records of 1 KB (random 63-bit integer keys, %d-byte values), %ld operations per "
         "workload (E: %ld),\n%d threads with a connection each, %s; requests zipfian (theta 0.99, scrambled), "
         "D's latest; directory %s\n", records, Y_VALUE, ops, scan_ops, threads,
         batch > 1 ? "transactions of --batch operations" : "autocommit (F: a transaction per read-modify-write)",
         dir);
  if (batch > 1) printf("batch: %d operations per transaction\n", batch);
  printf("logstor: %s\n", create);
  printf("sqlite:  %s\n", native);
  printf("both databases: journal_mode=WAL, synchronous=FULL, a busy handler retrying every 50 us\n");
  if (!rowid)
    printf("(a 1 KB row is over a WITHOUT ROWID table's 1002 bytes of local payload on 4 KiB pages: native rows "
           "spill to overflow pages; --native-rowid compares with a rowid table)\n");
  fflush(stdout);

  ysys sys[2];
  memset(sys, 0, sizeof sys);
  sys[0].label = "logstor";
  sys[0].logstor = 1;
  sys[1].label = "sqlite";
  for (int r = 0; r < 2; r++) {
    snprintf(sys[r].path, sizeof sys[r].path, "%s/ycsb-%s.db", dir, sys[r].label);
    for (int i = 0; i < threads; i++) {
      sys[r].db[i] = bench_db_open(sys[r].path, NULL, sys[r].logstor ? so : NULL);
      sqlite3_busy_handler(sys[r].db[i], y_busy, NULL);
      if (i == 0)
        exec(sys[r].db[0], sys[r].logstor ? create : native);
    }
  }
  double t_all = now();
  for (int r = 0; r < 2; r++) y_load(&sys[r], (uint64_t)records);
  printf("load, %d rows/txn, one connection: logstor %.0f rows/s, sqlite %.0f rows/s (%.2fx)\n\n", Y_LOAD_BATCH,
         sys[0].load_rate, sys[1].load_rate, sys[0].load_rate / sys[1].load_rate);
  zipf z;
  zipf_init(&z, (uint64_t)records, 0.99);
  printf("%-38s %14s %14s %8s   %s\n", "workload", "logstor ops/s", "sqlite ops/s", "ratio", "target");
  fflush(stdout);
  uint64_t missing[2] = { 0, 0 };
  for (int wi = 0; wi < Y_NWORK; wi++) {
    if (!strchr(which, y_work[wi].name)) continue;
    long n = y_work[wi].pct[OP_SCAN] ? scan_ops : ops;
    for (int r = 0; r < 2; r++) {
      uint64_t m = 0;
      sys[r].rate[wi] = y_run(&sys[r], wi, &z, (uint64_t)records, n, threads, batch, &m);
      /* D's latest reads may ask for a row whose insert is not committed yet. */
      if (y_work[wi].dist != D_LATEST) missing[r] += m;
      if (sys[r].logstor) {
        uint64_t c = stat_engine(sys[r].db[0], "cache_bytes");
        if (c > sys[r].cache_max) sys[r].cache_max = c;
      }
    }
    char name[64], retries[64] = "";
    snprintf(name, sizeof name, "%c %s", y_work[wi].name, y_work[wi].label);
    if (sys[0].retries[wi] || sys[1].retries[wi])
      snprintf(retries, sizeof retries, "  (busy retries: %" PRIu64 ", %" PRIu64 ")", sys[0].retries[wi],
               sys[1].retries[wi]);
    double ratio = sys[0].rate[wi] / sys[1].rate[wi];
    printf("%-38s %14.0f %14.0f %7.*fx   %s%s\n", name, sys[0].rate[wi], sys[1].rate[wi], ratio < 0.1 ? 3 : 2, ratio,
           y_work[wi].target, retries);
    fflush(stdout);
  }
  double t_total = now() - t_all;
  if (missing[0] || missing[1]) {
    fprintf(stderr, "bench ycsb: reads of loaded rows found nothing: logstor %" PRIu64 ", sqlite %" PRIu64 "\n",
            missing[0], missing[1]);
    return 1;
  }
  sqlite3 *db = sys[0].db[0];
  uint64_t cache_size = stat_engine(db, "cache_size"), cache_bytes = stat_engine(db, "cache_bytes");
  uint64_t index_bytes = stat_engine(db, "index_bytes"), live = stat_engine(db, "records_live");
  uint64_t hits = stat_engine(db, "cache_hits"), misses = stat_engine(db, "cache_misses");
  if (cache_bytes > sys[0].cache_max) sys[0].cache_max = cache_bytes;
  struct mallinfo2 mi = mallinfo2();
  if (!keyed)
    printf("\n* order=token: E's scans read and sort the whole table on logstor; on sqlite they are a b-tree "
           "range (--order key: an index range scan).\n");
  printf("\npeak RSS of the process (both systems, %d + %d connections): %.0f MiB; heap in use at the end %.0f MiB\n",
         threads, threads, (double)peak_rss_kb() / 1024, (double)mi.uordblks / 1048576);
  printf("logstor record cache: at most %.1f MiB after any workload, bound %.1f MiB: %s; hit ratio %.2f\n",
         (double)sys[0].cache_max / 1048576, (double)cache_size / 1048576,
         sys[0].cache_max <= cache_size ? "within its bound" : "OVER ITS BOUND",
         hits + misses ? (double)hits / (double)(hits + misses) : 0);
  printf("logstor index: %.1f bytes/key (%" PRIu64 " keys)\n", live ? (double)index_bytes / (double)live : 0, live);
  for (int r = 0; r < 2; r++)
    if (sys[r].busy_msg[0]) printf("%s: the first SQLITE_BUSY retried: %s\n", sys[r].label, sys[r].busy_msg);
  printf("total time %.0f s\n", t_total);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < threads; i++) sqlite3_close(sys[r].db[i]);
  if (dir == tmpl) rmtree(tmpl);
  return sys[0].cache_max <= cache_size ? 0 : 1;
}
