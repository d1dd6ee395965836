/*
** logstor.c -- entry point of the SQLite extension (sqlite3_logstor_init)
** and the mapping of engine errors to SQLite codes.
**
** Loading: `.load ./logstor` in the sqlite3 shell, or
** sqlite3_load_extension(db, "./logstor", 0, &err).  The entry point checks
** that the running SQLite is at least 3.38.0 (the newest API used:
** sqlite3_vtab_in and sqlite3_vtab_rhs_value), then registers, for this
** connection, the module "logstor", the eponymous tables logstor_stats and
** logstor_segments, and the SQL functions.  The engine threads of a data
** directory are joined when the last connection using it closes, before
** SQLite can unload the library.
*/
#include "logstor_int.h"
SQLITE_EXTENSION_INIT1

#include <string.h>

int lsx_sqlite_code(int rc) {
  switch (rc) {
    case LS_OK: return SQLITE_OK;
    case LS_NOTFOUND: return SQLITE_NOTFOUND;
    case LS_CONFLICT: return SQLITE_BUSY_SNAPSHOT;
    case LS_IOERR:
      switch (ls_errcause()) {          /* what failed, not the message's words */
        case LS_CAUSE_SYNC: return SQLITE_IOERR_FSYNC;
        case LS_CAUSE_WRITE: return SQLITE_IOERR_WRITE;
        case LS_CAUSE_READ: return SQLITE_IOERR_READ;
        default: return SQLITE_IOERR;
      }
    case LS_CORRUPT: return SQLITE_CORRUPT_VTAB;
    case LS_FULL: return SQLITE_FULL;
    case LS_TOOBIG: return SQLITE_TOOBIG;
    case LS_NOMEM: return SQLITE_NOMEM;
    case LS_BUSY: return SQLITE_BUSY;
    case LS_READONLY: return SQLITE_READONLY;
    case LS_FORMAT: return SQLITE_CANTOPEN;
    case LS_EXPIRED: return SQLITE_BUSY_SNAPSHOT;
    default: return SQLITE_ERROR;
  }
}

static char *message(const char *table, int rc) {
  const char *m = ls_errmsg();
  if (rc == LS_NOMEM) m = "out of memory";
  if (table && *table) return sqlite3_mprintf("logstor: %s: %s", table, m);
  return sqlite3_mprintf("logstor: %s", m);
}

int lsx_error(sqlite3_vtab *vtab, const char *table, int rc) {
  if (rc == LS_OK) return SQLITE_OK;
  sqlite3_free(vtab->zErrMsg);
  vtab->zErrMsg = message(table, rc);
  return lsx_sqlite_code(rc);
}

int lsx_error_msg(char **pzErr, const char *table, int rc) {
  if (rc == LS_OK) return SQLITE_OK;
  if (pzErr) {
    sqlite3_free(*pzErr);
    *pzErr = message(table, rc);
  }
  return lsx_sqlite_code(rc);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_logstor_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);
__attribute__((visibility("default")))
int sqlite3_logstor_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  SQLITE_EXTENSION_INIT2(pApi);
  if (sqlite3_libversion_number() < LOGSTOR_MIN_SQLITE) {
    *pzErrMsg = sqlite3_mprintf("logstor requires SQLite 3.38.0 or later, but was loaded into SQLite %s",
                                sqlite3_libversion());
    return SQLITE_ERROR;
  }
  /* Loaded before on this connection: keep that registration (replacing
  ** it would split the connection's tables between two states). */
  sqlite3_stmt *probe = NULL;
  if (sqlite3_prepare_v2(db, "SELECT logstor_version()", -1, &probe, NULL) == SQLITE_OK) {
    sqlite3_finalize(probe);
    return SQLITE_OK;
  }
  /* The failed probe left its error on db, and an automatic extension's
  ** open fails on any error left (sqlite3_auto_extension; tool/logstor):
  ** a statement prepared without error clears it. */
  if (sqlite3_prepare_v2(db, "SELECT 1", -1, &probe, NULL) == SQLITE_OK) sqlite3_finalize(probe);
  ls_conn *conn = sqlite3_malloc(sizeof *conn);
  if (!conn) return SQLITE_NOMEM;
  memset(conn, 0, sizeof *conn);
  conn->db = db;
  /* The "logstor" module owns conn: its destructor runs when the
  ** connection closes (or the module is replaced by a second load). */
  int rc = lsx_register_vtab(db, conn);
  if (rc == SQLITE_OK) rc = lsx_register_stats(db, conn);
  if (rc == SQLITE_OK) rc = lsx_register_functions(db, conn);
  if (rc == SQLITE_OK) rc = lsx_register_backup(db, conn);
  if (rc == SQLITE_OK) rc = lsx_register_sentinel(db, conn);
  if (rc != SQLITE_OK) *pzErrMsg = sqlite3_mprintf("logstor: registration failed: %s", sqlite3_errmsg(db));
  return rc;
}
