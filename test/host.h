/*
** host.h -- what the C hosts of the extension (backup_host.c,
** serial_host.c) share: a connection with the extension loaded, and a
** statement run with its error printed.
*/
#ifndef LOGSTOR_TEST_HOST_H
#define LOGSTOR_TEST_HOST_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

/* file opened with the extension at so loaded and a 20 s busy timeout;
** exits 2 if that fails. */
static inline sqlite3 *host_open(const char *so, const char *file) {
  sqlite3 *db = NULL;
  char *err = NULL;
  if (sqlite3_open(file, &db) || sqlite3_enable_load_extension(db, 1) ||
      sqlite3_load_extension(db, so, NULL, &err)) {
    fprintf(stderr, "open %s: %s\n", file, err ? err : sqlite3_errmsg(db));
    exit(2);
  }
  sqlite3_busy_timeout(db, 20000);
  return db;
}

/* sqlite3_exec, printing the error: the result code. */
static inline int host_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
  if (rc) fprintf(stderr, "%s: %s\n", sql, err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  return rc;
}

#endif
