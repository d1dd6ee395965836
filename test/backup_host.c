/*
** backup_host.c -- logstor_backup while another thread writes (run by
** test/backup.test).
**
**   backup_host LOGSTOR_SO DIR JOURNAL_MODE ROUNDS
**
** A writer thread, on its own connection, commits transactions that change
** a logstor table t and a native table n the same way (inserts, updates,
** deletes), so at every committed moment the two hold the same rows.  The
** main thread meanwhile makes ROUNDS backups with SELECT logstor_backup,
** each once the writer has committed more since the last, and checks every
** copy: logstor_check says ok, t and n hold the same rows (the copy of the
** .db file and the copy of the rows are of one moment), and the moments
** move on.  Prints one line per round and "N passed, N failed".
*/
#include "host.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *so, *dir;
static atomic_int stop;
static atomic_long commits;
static atomic_int writer_failed;

static sqlite3 *open_db(const char *file) { return host_open(so, file); }

static long long one(sqlite3 *db, const char *sql, char *text, size_t cap) {
  sqlite3_stmt *st = NULL;
  long long v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
    if (text) snprintf(text, cap, "%s", sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
  } else {
    fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
  }
  sqlite3_finalize(st);
  return v;
}

static void *writer(void *arg) {
  sqlite3 *db = open_db(arg);
  char sql[512];
  for (long i = 1; !atomic_load(&stop); i++) {
    snprintf(sql, sizeof sql,
             "BEGIN;"
             "INSERT INTO t VALUES(%ld, %ld); INSERT INTO n VALUES(%ld, %ld);"
             "UPDATE t SET v = v + 1 WHERE pk = %ld; UPDATE n SET v = v + 1 WHERE pk = %ld;"
             "DELETE FROM t WHERE pk = %ld; DELETE FROM n WHERE pk = %ld;"
             "COMMIT;",
             i, i, i, i, i / 2, i / 2, i % 3 ? -1 : i - 7, i % 3 ? -1 : i - 7);
    if (host_exec(db, sql)) {
      atomic_store(&writer_failed, 1);
      (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      break;
    }
    atomic_fetch_add(&commits, 1);
  }
  sqlite3_close(db);
  return NULL;
}

/* The progress check: a holder keeps a write transaction open, so the
** backup waits for the write lock; a poller, on a connection of its own,
** finds the backup listed in logstor_stats and lets the holder commit. */
static atomic_int phase;           /* 1: the holder has the lock; 2: commit */
static atomic_int listed;          /* the poller saw the backup */

static void *holder(void *arg) {
  sqlite3 *db = open_db(arg);
  if (host_exec(db, "BEGIN; INSERT INTO t VALUES(-1, -1); INSERT INTO n VALUES(-1, -1)")) atomic_store(&writer_failed, 1);
  atomic_store(&phase, 1);
  while (atomic_load(&phase) != 2) sched_yield();
  if (host_exec(db, "COMMIT")) atomic_store(&writer_failed, 1);
  sqlite3_close(db);
  return NULL;
}

static void *poller(void *arg) {
  sqlite3 *db = open_db(arg);
  while (atomic_load(&phase) != 1) sched_yield();
  /* Bounded, so that a backup never listed fails instead of hanging. */
  for (long i = 0; i < 2000000 && !atomic_load(&listed); i++)
    if (one(db, "SELECT count(*) FROM logstor_stats WHERE scope = 'backup' AND name = 'path' "
                "AND value LIKE '%copy-progress.db'", NULL, 0) == 1 &&
        one(db, "SELECT sum(value) FROM logstor_stats WHERE scope = 'backup' AND name <> 'path'", NULL, 0) == 0)
      atomic_store(&listed, 1);
  atomic_store(&phase, 2);
  sqlite3_close(db);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: backup_host LOGSTOR_SO DIR JOURNAL_MODE ROUNDS\n");
    return 2;
  }
  so = argv[1];
  dir = argv[2];
  int rounds = atoi(argv[4]);
  char src[4096], sql[4096 + 64];
  snprintf(src, sizeof src, "%s/src.db", dir);
  sqlite3 *db = open_db(src);
  snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", argv[3]);
  if (host_exec(db, sql) ||
      host_exec(db, "CREATE VIRTUAL TABLE t USING logstor(pk INTEGER PRIMARY KEY, v INT);"
               "CREATE TABLE n(pk INTEGER PRIMARY KEY, v INT)"))
    return 1;
  pthread_t th;
  pthread_create(&th, NULL, writer, src);
  int pass = 0, fail = 0;
  long last_rows = -1, last_commits = 0;
  for (int r = 0; r < rounds && !atomic_load(&writer_failed); r++) {
    /* Back up only once the writer has moved on. */
    while (atomic_load(&commits) < last_commits + 20 && !atomic_load(&writer_failed)) sched_yield();
    last_commits = atomic_load(&commits);
    char copy[4200];
    snprintf(copy, sizeof copy, "%s/copy%d.db", dir, r);
    char *q = sqlite3_mprintf("SELECT logstor_backup(%Q)", copy);
    long long copied = one(db, q, NULL, 0);
    sqlite3_free(q);
    sqlite3 *c = open_db(copy);
    char check[256] = "";
    one(c, "SELECT logstor_check()", check, sizeof check);
    long long rows = one(c, "SELECT count(*) FROM t", NULL, 0);
    long long native = one(c, "SELECT count(*) FROM n", NULL, 0);
    long long diff = one(c, "SELECT (SELECT count(*) FROM (SELECT pk, v FROM t EXCEPT SELECT pk, v FROM n)) + "
                            "(SELECT count(*) FROM (SELECT pk, v FROM n EXCEPT SELECT pk, v FROM t))", NULL, 0);
    int ok = !strcmp(check, "ok") && rows > last_rows && rows == native && diff == 0 && copied == rows;
    printf("round %d: copied %lld, check %s, t %lld rows, n %lld rows, %lld differ%s\n", r, copied, check, rows,
           native, diff, ok ? "" : "  <-- FAIL");
    ok ? pass++ : fail++;
    last_rows = rows;
    sqlite3_close(c);
  }
  atomic_store(&stop, 1);
  pthread_join(th, NULL);
  if (atomic_load(&writer_failed)) { printf("the writer failed\n"); fail++; }
  long long final = one(db, "SELECT (SELECT count(*) FROM t) = (SELECT count(*) FROM n)", NULL, 0);
  final == 1 ? pass++ : fail++;

  /* The backup waits for the holder's transaction, is listed meanwhile,
  ** and its copy has the holder's rows; no longer listed afterwards. */
  pthread_t ht, pt;
  pthread_create(&ht, NULL, holder, src);
  pthread_create(&pt, NULL, poller, src);
  while (atomic_load(&phase) == 0) sched_yield();
  char copy[4200];
  snprintf(copy, sizeof copy, "%s/copy-progress.db", dir);
  char *q = sqlite3_mprintf("SELECT logstor_backup(%Q)", copy);
  long long copied = one(db, q, NULL, 0);
  sqlite3_free(q);
  pthread_join(ht, NULL);
  pthread_join(pt, NULL);
  sqlite3 *c = open_db(copy);
  long long held = one(c, "SELECT (SELECT count(*) FROM t WHERE pk = -1) + (SELECT count(*) FROM n WHERE pk = -1)",
                       NULL, 0);
  sqlite3_close(c);
  long long after = one(db, "SELECT count(*) FROM logstor_stats WHERE scope = 'backup'", NULL, 0);
  int ok = copied > 0 && atomic_load(&listed) && held == 2 && after == 0 && !atomic_load(&writer_failed);
  printf("progress: listed while waiting %d, the holder's rows in the copy %lld, listed after %lld%s\n",
         atomic_load(&listed), held, after, ok ? "" : "  <-- FAIL");
  ok ? pass++ : fail++;
  sqlite3_close(db);
  printf("%d passed, %d failed\n", pass, fail);
  return fail != 0;
}
