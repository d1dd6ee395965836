/*
** bench_scale.c -- tool/bench scale: a large load into one logstor table
** through SQL, watched over time, then the reopen time (bench.c lists the
** modes).
**
** Loads n rows (default 10M) of the SQL bench's shape (pk INTEGER PRIMARY
** KEY, a INT, v BLOB: random 63-bit keys, 100-byte values, 116 logical
** bytes) in transactions of --batch rows (default 1000), in WAL mode with
** synchronous=FULL.  Every 5 % of n it prints the rows/s of that slice,
** the process's RSS and its growth per key since before the load (with and
** without the record cache's bytes), the index bytes per key, the record cache's bytes and disk bytes per live
** byte (apparent file sizes; and allocated, without holes).  Then it
** closes cleanly (which writes the index checkpoint) and times a reopen
** plus first read, then removes CHECKPOINT (as after a crash) and times
** it again; the peak RSS of the load, the close and each reopen.  Writes scale.csv and, with gnuplot installed, scale.png.
**
** How long it takes: the load runs at the bulk-load rate of `tool/bench`
** (100k-300k rows/s on a shared 2-core machine), so 10M rows take about a
** minute with the reopens (65 s measured); the directory holds 1.5 GB.
*/
#include "bench.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SC_STEPS 20                /* samples: every 5 % */

typedef struct sc_point {
  double pct;
  uint64_t rows;
  double secs;                     /* since the load began */
  double rate;                     /* rows/s of this slice */
  uint64_t rss;                    /* bytes */
  double rss_per_key;              /* growth since before the load */
  double rss_nocache_per_key;      /* the same, the record cache's bytes left out */
  double index_per_key;
  uint64_t cache;
  uint64_t disk, alloc;            /* bytes of the .db, its -wal and the data directory */
} sc_point;

/* Bytes of the database: its file, -wal and data directory. */
static uint64_t sc_disk(const char *path, int allocated) {
  char p[4300];
  uint64_t b = du_as(path, allocated);
  snprintf(p, sizeof p, "%s-wal", path);
  if (access(p, F_OK) == 0) b += du_as(p, allocated);
  snprintf(p, sizeof p, "%s-logstor", path);
  return b + du_as(p, allocated);
}

/* Reset the process's peak RSS (VmHWM) to its current RSS, after handing
** the memory the last step freed back to the system (else the allocator
** keeps it, and it counts in the next step's peak); 0 if it can't. */
static int sc_reset_peak(void) {
  malloc_trim(0);
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return 0;
  int ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok;
}

/* Open path, read the row of key 0; returns the milliseconds it took. */
static double sc_reopen(const char *path, const char *so, uint64_t *recovery_ms, uint64_t *from_checkpoint) {
  double t0 = now();
  sqlite3 *db = bench_db_open(path, NULL, so);
  sqlite3_stmt *st;
  sql_ok(db, sqlite3_prepare_v2(db, "SELECT a FROM t WHERE pk = ?1", -1, &st, NULL), "reopen");
  sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at(0));
  if (sqlite3_step(st) != SQLITE_ROW) { fprintf(stderr, "bench scale: row missing after reopen\n"); exit(1); }
  sqlite3_finalize(st);
  double ms = (now() - t0) * 1000;
  *recovery_ms = stat_engine(db, "recovery_ms");
  *from_checkpoint = stat_engine(db, "recovery_checkpoint");
  sqlite3_close(db);
  return ms;
}

static void sc_plot(const char *png, const sc_point *pt, int np, long n) {
  char script[64];
  FILE *f = plot_begin(png, script, sizeof script);
  if (!f) return;
  fprintf(f, "set title 'logstor scale: loading %ld rows of 116 bytes, 1 table'\n"
             "set xlabel 'rows loaded (millions)'\nset ylabel 'load rate of the slice, rows/s'\n"
             "set y2label 'bytes per key'\nset ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\n"
             "set key bottom left\nset grid\n", n);
  fprintf(f, "$d << EOD\n");
  for (int i = 0; i < np; i++)
    fprintf(f, "%.4f %.0f %.2f %.2f %.2f\n", (double)pt[i].rows / 1e6, pt[i].rate, pt[i].rss_per_key,
            pt[i].index_per_key, pt[i].rss_nocache_per_key);
  fprintf(f, "EOD\nplot $d using 1:2 with linespoints lw 2 title 'rows/s', "
             "$d using 1:3 axes x1y2 with linespoints lw 2 title 'RSS growth per key', "
             "$d using 1:5 axes x1y2 with linespoints lw 2 title 'RSS growth per key, cache left out', "
             "$d using 1:4 axes x1y2 with linespoints lw 2 title 'index bytes per key'\n");
  plot_end(f, script, png);
}

int bench_scale(int argc, char **argv, const char *argv0) {
  long n = 10000000, batch = 1000;
  const char *dir = NULL, *so = NULL, *csv = "scale.csv", *png = "scale.png";
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--n") && i + 1 < argc) n = atol(argv[++i]);
    else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atol(argv[++i]);
    else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!strcmp(argv[i], "--png") && i + 1 < argc) png = argv[++i];
    else if (!strcmp(argv[i], "--so") && i + 1 < argc) so = argv[++i];
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
    else { fprintf(stderr, "bench scale: unknown option %s\n", argv[i]); return 2; }
  }
  if (n < SC_STEPS || batch < 1) { fprintf(stderr, "bench scale: --n >= %d, --batch >= 1\n", SC_STEPS); return 2; }
  char tmpl[] = "/tmp/logstor-bench-XXXXXX", sopath[4096], path[4200];
  if (!dir) {
    if (!mkdtemp(tmpl)) { perror("mkdtemp"); return 1; }
    dir = tmpl;
  }
  if (!so) so = bench_so_path(argv0, sopath, sizeof sopath);
  snprintf(path, sizeof path, "%s/scale.db", dir);
  printf("scale bench: %ld rows of 116 bytes (random 63-bit keys), %ld rows per transaction, one logstor table;\n"
         "journal_mode=WAL, synchronous=FULL; directory %s\n", n, batch, dir);
  printf("CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, a INT, v BLOB)\n");
  printf("rows/s: of the last 5 %%; RSS growth: since before the load, per key (the record cache, at most its bound, "
         "included);\ndisk: the .db, -wal and data directory, apparent bytes (allocated) per live byte (116 per "
         "row)\n\n");
  printf("%5s %10s %8s %10s %9s %10s %10s %10s %10s %14s\n", "done", "rows", "seconds", "rows/s", "RSS MiB",
         "RSS B/key", "w/o cache", "index B/k", "cache MiB", "disk/live");
  fflush(stdout);
  sqlite3 *db = bench_db_open(path, NULL, so);
  exec(db, "CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, a INT, v BLOB)");
  sqlite3_stmt *st;
  sql_ok(db, sqlite3_prepare_v2(db, "INSERT INTO t(pk, a, v) VALUES(?1, ?2, ?3)", -1, &st, NULL), "prepare");
  sc_point pt[SC_STEPS];
  uint8_t val[100];
  uint64_t rss0 = rss_kb() * 1024;
  double t0 = now(), tprev = t0;
  long i = 0;
  for (int s = 0; s < SC_STEPS; s++) {
    long end = (long)((double)n * (s + 1) / SC_STEPS), first = i;
    while (i < end) {
      exec(db, "BEGIN");
      for (long j = 0; j < batch && i < end; j++, i++) {
        fill_value(val, (uint64_t)i);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)key_at((uint64_t)i));
        sqlite3_bind_int64(st, 2, i);
        sqlite3_bind_blob(st, 3, val, 100, SQLITE_STATIC);
        sql_ok(db, sqlite3_step(st), "insert");
        sqlite3_reset(st);
      }
      exec(db, "COMMIT");
    }
    double t = now();
    sc_point *p = &pt[s];
    p->pct = 100.0 * (s + 1) / SC_STEPS;
    p->rows = (uint64_t)i;
    p->secs = t - t0;
    p->rate = (double)(i - first) / (t - tprev);
    p->rss = rss_kb() * 1024;
    p->rss_per_key = ((double)p->rss - (double)rss0) / (double)i;
    p->index_per_key = (double)stat_engine(db, "index_bytes") / (double)i;
    p->cache = stat_engine(db, "cache_bytes");
    p->rss_nocache_per_key = ((double)p->rss - (double)rss0 - (double)p->cache) / (double)i;
    p->disk = sc_disk(path, 0);
    p->alloc = sc_disk(path, 1);
    double live = (double)i * 116;
    char dl[32];
    snprintf(dl, sizeof dl, "%.2f (%.2f)", (double)p->disk / live, (double)p->alloc / live);
    printf("%4.0f%% %10" PRIu64 " %8.1f %10.0f %9.0f %10.1f %10.1f %10.1f %10.1f %14s\n", p->pct, p->rows, p->secs,
           p->rate, (double)p->rss / 1048576, p->rss_per_key, p->rss_nocache_per_key, p->index_per_key,
           (double)p->cache / 1048576, dl);
    fflush(stdout);
    tprev = now();                 /* the sampling (du) is not the load's time */
    t0 += tprev - t;
  }
  sqlite3_finalize(st);
  double t_load = pt[SC_STEPS - 1].secs;
  /* Peak RSS of each step: VmHWM, reset before the step where the kernel allows. */
  int reset = 1;
  double peak_load = (double)peak_rss_kb() / 1024;
  reset &= sc_reset_peak();
  double tc = now();
  sqlite3_close(db);               /* clean: writes the checkpoint */
  double close_ms = (now() - tc) * 1000, peak_close = (double)peak_rss_kb() / 1024;
  printf("\nload: %ld rows in %.1f s, %.0f rows/s overall; peak RSS %.0f MiB\n", n, t_load, (double)n / t_load,
         peak_load);
  printf("clean close (writes the checkpoint): %.0f ms, peak RSS %.0f MiB\n", close_ms, peak_close);
  uint64_t rec_ms, from_cp;
  reset &= sc_reset_peak();
  double warm_ms = sc_reopen(path, so, &rec_ms, &from_cp), peak_warm = (double)peak_rss_kb() / 1024;
  printf("reopen + first read, with the checkpoint a clean close leaves: %8.0f ms (engine recovery %" PRIu64
         " ms, checkpoint used: %s), peak RSS %.0f MiB\n", warm_ms, rec_ms, from_cp ? "yes" : "no", peak_warm);
  char cp[4300];
  snprintf(cp, sizeof cp, "%s-logstor/CHECKPOINT", path);
  if (unlink(cp) != 0) perror(cp);
  reset &= sc_reset_peak();
  double scan_ms = sc_reopen(path, so, &rec_ms, &from_cp), peak_scan = (double)peak_rss_kb() / 1024;
  printf("reopen + first read, CHECKPOINT removed (as after a crash): %8.0f ms (engine recovery %" PRIu64
         " ms, checkpoint used: %s), peak RSS %.0f MiB\n", scan_ms, rec_ms, from_cp ? "yes" : "no", peak_scan);
  if (!reset) printf("(the peak RSS could not be reset between steps: each figure is the peak so far)\n");
  printf("(the files were just written: the page cache holds them, as it would after a quick restart)\n");

  FILE *f = fopen(csv, "w");
  if (!f) {
    perror(csv);
  } else {
    fprintf(f, "percent,rows,seconds,slice_rows_per_s,rss_bytes,rss_growth_per_key,rss_growth_without_cache_per_key,index_bytes_per_key,cache_bytes,"
               "disk_bytes,allocated_bytes,disk_per_live_byte,allocated_per_live_byte,reopen_ms,reopen_no_checkpoint_ms\n");
    for (int s = 0; s < SC_STEPS; s++) {
      const sc_point *p = &pt[s];
      double live = (double)p->rows * 116;
      fprintf(f, "%.0f,%" PRIu64 ",%.3f,%.0f,%" PRIu64 ",%.2f,%.2f,%.2f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.4f,%.4f,",
              p->pct, p->rows, p->secs, p->rate, p->rss, p->rss_per_key, p->rss_nocache_per_key, p->index_per_key,
              p->cache, p->disk, p->alloc,
              (double)p->disk / live, (double)p->alloc / live);
      /* The reopen times belong to the last row (the whole load). */
      if (s == SC_STEPS - 1) fprintf(f, "%.0f,%.0f\n", warm_ms, scan_ms);
      else fprintf(f, ",\n");
    }
    fclose(f);
    printf("CSV written to %s\n", csv);
  }
  sc_plot(png, pt, SC_STEPS, n);
  if (dir == tmpl) rmtree(tmpl);
  return 0;
}
