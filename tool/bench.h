/*
** bench.h -- what the modes of tool/bench share (bench.c), and the modes.
**
** tool/bench is one binary built from tool/bench*.c: bench.c (main, the
** shared helpers below), bench_sql.c (the SQL workloads against native
** SQLite), bench_engine.c (the engine alone), bench_clean.c (the cleaner),
** bench_ycsb.c (YCSB-style workloads, threads) and bench_scale.c (a large
** load over time, reopen).  bench.c's opening comment lists every mode.
*/
#ifndef LOGSTOR_BENCH_H
#define LOGSTOR_BENCH_H

#include "logstor.h"
#include <sqlite3.h>

#include <stdint.h>
#include <stdio.h>

/* The modes: argv after the mode's name. */
int bench_sql(int argc, char **argv, const char *argv0);
int bench_engine(int argc, char **argv);
int bench_clean(int argc, char **argv);
int bench_ycsb(int argc, char **argv, const char *argv0);
int bench_scale(int argc, char **argv, const char *argv0);

/* Seconds on the monotonic clock. */
double now(void);
/* Report an engine error (ls_errmsg) and exit 1. */
void die(const char *what, int rc);
/* The next number of the splitmix64 sequence of state *s. */
uint64_t splitmix(uint64_t *s);
/* rm -rf dir. */
void rmtree(const char *dir);
/* Key i as 8 big-endian bytes of a random 63-bit integer (the engine benches). */
void make_key(uint64_t i, uint8_t out[8]);

/* Deltas of the engine's write counters over one phase. */
typedef struct wa_delta {
  uint64_t user;                   /* record bytes of committed user writes */
  uint64_t data;                   /* all bytes written to data files, format bytes excluded */
  uint64_t sep, comp;              /* of which the separator's and compaction's */
  uint64_t format;                 /* zeros written to prepare data files (not in data) */
  double flush_ms;                 /* the ls_flush that closed the phase */
} wa_delta;

void wa_diff(wa_delta *d, const ls_stats *a, const ls_stats *b);
/* x per user byte; 0 when user is 0. */
double per_user(uint64_t x, uint64_t user);

/* Bytes of path: apparent (file sizes), or allocated (holes not counted). */
uint64_t du_as(const char *path, int allocated);
uint64_t du(const char *path);

/* Exit with SQLite's message unless rc is OK, DONE or ROW. */
void sql_ok(sqlite3 *db, int rc, const char *what);
/* sqlite3_exec, exiting with the message on failure. */
void exec(sqlite3 *db, const char *sql);
/* Open path (created if missing) through vfs (NULL: the default) in WAL
** mode with synchronous=FULL; with so, load the extension from that path.
** Exits on failure. */
sqlite3 *bench_db_open(const char *path, const char *vfs, const char *so);
/* The default --so: logstor.so at the top of the build tree (tool/bench ->
** ../logstor.so), written into buf. */
const char *bench_so_path(const char *argv0, char *buf, size_t size);
/* The engine's counter name from logstor_stats (scope 'engine'); 0 if absent. */
uint64_t stat_engine(sqlite3 *db, const char *name);

/* The SQL benches' key of row i: a random 63-bit integer. */
uint64_t key_at(uint64_t i);
/* The 100-byte value of row i of the SQL bench. */
void fill_value(uint8_t *v, uint64_t i);
/* The process's peak resident set (VmHWM) or its current one (VmRSS), KiB;
** 0 if unknown. */
uint64_t peak_rss_kb(void);
uint64_t rss_kb(void);

/* A gnuplot script for png: NULL (having said why) when gnuplot is not
** installed; else write the plot commands to it and pass it to plot_end,
** which runs gnuplot and removes the script. */
FILE *plot_begin(const char *png, char *script, size_t size);
void plot_end(FILE *f, const char *script, const char *png);

#endif
