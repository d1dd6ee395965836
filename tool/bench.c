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
**       (bench_sql.c)
**   tool/bench engine [--n N] [--value B] [--batch K] [--dir D]
**       The engine alone, without SQLite.  (bench_engine.c)
**   tool/bench clean [--quick] [--util PCT] [--csv FILE] [--png FILE] [--dir D]
**       The cleaner under random overwrites of a fixed key set at 50, 75
**       and 90 % disk utilisation, uniform and hot/cold, for each policy
**       (greedy, LFS's cost-benefit, ours): write amplification and
**       throughput (engine only).  (bench_clean.c)
**   tool/bench ycsb [--records R] [--ops N] [--scan-ops N] [--threads T]
**              [--batch K] [--workloads ABCDEF] [--order token|key] [--quick]
**              [--so PATH] [--dir D]
**       YCSB-style workloads A-F (zipfian requests, 1 KB records), T
**       threads with a connection each, autocommit or K operations per
**       transaction, on a logstor table and a native WITHOUT ROWID table
**       (WAL, synchronous=FULL) in one run: ops/s, ratio, peak RSS and the
**       record cache against its bound; --order key: a key-ordered logstor
**       table.  (bench_ycsb.c)
**   tool/bench scale [--n N] [--batch K] [--csv FILE] [--png FILE] [--so PATH]
**              [--dir D]
**       Loads N rows (default 10M) into a logstor table: the load rate,
**       RSS, index bytes and disk bytes per key every 5 % of N, then the
**       reopen time with and without a checkpoint; scale.csv and, with
**       gnuplot installed, scale.png.  (bench_scale.c)
**
** The SQL and engine benches also report, for the bulk load and the
** random overwrites, the engine's write amplification split by source:
** all data bytes (format bytes excluded), separator bytes and compaction
** bytes per user byte, from the engine's counters after ls_flush.
**
** Rows are (pk INTEGER PRIMARY KEY, a INT, v BLOB) with random 63-bit keys
** and 100-byte random values: 116 logical bytes, as in the measured
** baselines of ../shared/reference/performance-anchors.md.
**
** This file: main and the helpers the modes share (bench.h).
*/
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void die(const char *what, int rc) {
  fprintf(stderr, "bench: %s: %s (%s)\n", what, ls_errmsg(), ls_strerror(rc));
  exit(1);
}

uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void rmtree(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
}

/* Keys are 8-byte big-endian random integers, like an INTEGER primary key. */
void make_key(uint64_t i, uint8_t out[8]) {
  uint64_t s = i;
  uint64_t v = splitmix(&s) >> 1;
  for (int b = 7; b >= 0; b--) { out[b] = (uint8_t)v; v >>= 8; }
}

/* ---- write amplification by source ------------------------------------------ */

void wa_diff(wa_delta *d, const ls_stats *a, const ls_stats *b) {
  d->user = b->user_bytes_written - a->user_bytes_written;
  d->format = b->format_bytes_written - a->format_bytes_written;
  d->data = (b->bytes_written - a->bytes_written) - d->format;
  d->sep = b->separator_bytes_written - a->separator_bytes_written;
  d->comp = b->compaction_bytes_written - a->compaction_bytes_written;
}

double per_user(uint64_t x, uint64_t user) { return user ? (double)x / (double)user : 0; }

uint64_t du_as(const char *path, int allocated) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "du -s %s '%s' 2>/dev/null", allocated ? "--block-size=1" : "-b --apparent-size", path);
  FILE *p = popen(cmd, "r");
  if (!p) return 0;
  unsigned long long v = 0;
  if (fscanf(p, "%llu", &v) != 1) v = 0;
  pclose(p);
  return v;
}

uint64_t du(const char *path) { return du_as(path, 0); }

void sql_ok(sqlite3 *db, int rc, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    fprintf(stderr, "bench: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
  }
}

void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    fprintf(stderr, "bench: %s: %s\n", sql, err);
    exit(1);
  }
}

sqlite3 *bench_db_open(const char *path, const char *vfs, const char *so) {
  sqlite3 *db = NULL;
  sql_ok(db, sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), "open");
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  if (so) {
    char *err = NULL;
    sqlite3_enable_load_extension(db, 1);
    if (sqlite3_load_extension(db, so, NULL, &err) != SQLITE_OK) {
      fprintf(stderr, "bench: cannot load %s: %s\n", so, err);
      exit(1);
    }
  }
  return db;
}

const char *bench_so_path(const char *argv0, char *buf, size_t size) {
  const char *slash = strrchr(argv0, '/');
  snprintf(buf, size, "%.*s/../logstor.so", slash ? (int)(slash - argv0) : 1, slash ? argv0 : ".");
  return buf;
}

uint64_t stat_engine(sqlite3 *db, const char *name) {
  sqlite3_stmt *st;
  uint64_t v = 0;
  sql_ok(db, sqlite3_prepare_v2(db, "SELECT value FROM logstor_stats WHERE scope='engine' AND name=?1", -1, &st,
                                NULL), "stats");
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW) v = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

uint64_t key_at(uint64_t i) {
  uint64_t s = i;
  return splitmix(&s) >> 1;
}

void fill_value(uint8_t *v, uint64_t i) {
  uint64_t s = i * 7919 + 1;
  for (int b = 0; b < 100; b += 8) {
    uint64_t x = splitmix(&s);
    memcpy(v + b, &x, b + 8 <= 100 ? 8 : 100 - b);
  }
}

static uint64_t status_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  uint64_t kb = 0;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, field, n)) kb = strtoull(line + n, NULL, 10);
  if (f) fclose(f);
  return kb;
}

uint64_t peak_rss_kb(void) { return status_kb("VmHWM:"); }
uint64_t rss_kb(void) { return status_kb("VmRSS:"); }

FILE *plot_begin(const char *png, char *script, size_t size) {
  if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
    printf("gnuplot is not installed: no plot written (%s skipped)\n", png);
    return NULL;
  }
  snprintf(script, size, "/tmp/logstor-bench-plot-XXXXXX");
  int fd = mkstemp(script);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    perror("bench: gnuplot script");
    if (fd >= 0) { close(fd); unlink(script); }
    return NULL;
  }
  fprintf(f, "set terminal png size 900,600\nset output '%s'\n", png);
  return f;
}

void plot_end(FILE *f, const char *script, const char *png) {
  fclose(f);
  char cmd[4400];
  snprintf(cmd, sizeof cmd, "gnuplot '%s'", script);
  if (system(cmd) == 0) printf("plot written to %s\n", png);
  else printf("gnuplot failed: no plot written\n");
  unlink(script);
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "engine")) return bench_engine(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "sql")) return bench_sql(argc - 2, argv + 2, argv[0]);
  if (argc >= 2 && !strcmp(argv[1], "clean")) return bench_clean(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "ycsb")) return bench_ycsb(argc - 2, argv + 2, argv[0]);
  if (argc >= 2 && !strcmp(argv[1], "scale")) return bench_scale(argc - 2, argv + 2, argv[0]);
  if (argc < 2 || argv[1][0] == '-') return bench_sql(argc - 1, argv + 1, argv[0]);
  fprintf(stderr, "usage: tool/bench [sql] [--n N] [--quick] [--so PATH] [--dir D]\n"
                  "       tool/bench engine [--n N] [--value B] [--batch K] [--dir D]\n"
                  "       tool/bench clean [--quick] [--util PCT] [--csv FILE] [--png FILE] [--dir D]\n"
                  "       tool/bench ycsb [--records R] [--ops N] [--scan-ops N] [--threads T] [--batch K]\n"
                  "                       [--workloads ABCDEF] [--order token|key] [--quick] [--so PATH] [--dir D]\n"
                  "       tool/bench scale [--n N] [--batch K] [--csv FILE] [--png FILE] [--so PATH] [--dir D]\n");
  return 2;
}
