/*
** serial_host.c -- writers of one database are serialised by SQLite's write
** lock, and a logstor table behaves as a native one under it (run by
** test/txn.test).
**
**   serial_host LOGSTOR_SO DB ROUNDS
**
** Two threads, each on its own connection, run ROUNDS times: a
** read-modify-write transaction (BEGIN IMMEDIATE; read a counter of the
** logstor table t and of the native table n; both must be equal; write both
** plus one; COMMIT), then an autocommit UPDATE t SET v = v + 1 of a second
** counter.  SQLite's write lock orders them all, so nothing may fail (no
** SQLITE_BUSY past the busy timeout, no conflict error) and no increment may
** be lost.  With LOGSTOR_TEST_PUBLISH_DELAY_US set, every commit waits that
** long between SQLite's commit and the engine's publish, the window in which
** the next writer used to read the row as it was before (and then fail its
** commit with "another transaction changed a row this transaction read").
** Prints "N passed, N failed".
*/
#include "host.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *so, *dbfile;
static int rounds;
static atomic_int failures, mismatches;

static sqlite3 *open_db(void) { return host_open(so, dbfile); }

static int exec(sqlite3 *db, const char *sql) {
  int rc = host_exec(db, sql);
  if (rc) atomic_fetch_add(&failures, 1);
  return rc;
}

static long one(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  long v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = (long)sqlite3_column_int64(st, 0);
  else {
    fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
    atomic_fetch_add(&failures, 1);
  }
  sqlite3_finalize(st);
  return v;
}

static void *worker(void *arg) {
  (void)arg;
  sqlite3 *db = open_db();
  for (int i = 0; i < rounds; i++) {
    if (exec(db, "BEGIN IMMEDIATE")) continue;
    long a = one(db, "SELECT v FROM t WHERE k = 1"), b = one(db, "SELECT v FROM n WHERE k = 1");
    if (a != b) atomic_fetch_add(&mismatches, 1);
    char sql[160];
    snprintf(sql, sizeof sql, "UPDATE t SET v = %ld WHERE k = 1; UPDATE n SET v = %ld WHERE k = 1; COMMIT", a + 1,
             b + 1);
    if (exec(db, sql)) exec(db, "ROLLBACK");
    exec(db, "UPDATE t SET v = v + 1 WHERE k = 2");
  }
  sqlite3_close(db);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: serial_host LOGSTOR_SO DB ROUNDS\n");
    return 2;
  }
  so = argv[1];
  dbfile = argv[2];
  rounds = atoi(argv[3]);
  sqlite3 *db = open_db();
  if (exec(db, "PRAGMA journal_mode=WAL; CREATE VIRTUAL TABLE t USING logstor(k INTEGER PRIMARY KEY, v);"
               "CREATE TABLE n(k INTEGER PRIMARY KEY, v); INSERT INTO t VALUES(1, 0), (2, 0);"
               "INSERT INTO n VALUES(1, 0)"))
    return 2;
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, worker, NULL);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  long t1 = one(db, "SELECT v FROM t WHERE k = 1"), n1 = one(db, "SELECT v FROM n WHERE k = 1");
  long t2 = one(db, "SELECT v FROM t WHERE k = 2");
  sqlite3_close(db);
  int pass = 0, fail = 0;
#define CHECK(cond, ...) do { if (cond) pass++; else { fail++; printf(__VA_ARGS__); } } while (0)
  CHECK(atomic_load(&failures) == 0, "! %d statements failed\n", atomic_load(&failures));
  CHECK(atomic_load(&mismatches) == 0, "! %d transactions read t and n apart\n", atomic_load(&mismatches));
  CHECK(t1 == 2L * rounds && n1 == 2L * rounds, "! read-modify-write counters %ld and %ld, expected %d\n", t1, n1,
        2 * rounds);
  CHECK(t2 == 2L * rounds, "! autocommit counter %ld, expected %d\n", t2, 2 * rounds);
  printf("%d passed, %d failed\n", pass, fail);
  return fail ? 1 : 0;
}
