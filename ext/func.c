/*
** func.c -- SQL functions.
**
**   logstor_token(value)    the token of a key value (the signed 64-bit
**                           number scans are ordered by); the value is
**                           encoded as it is, so it must be given after
**                           the key column's affinity ('42' and 42 differ)
**   logstor_token(table, value)  the same after applying the affinity of
**                           table's key column, as the table stores it
**   logstor_version()       the module's version
**   logstor_check(table)    'ok', or one line per problem: every segment on
**                           disk is read (damage anywhere, found now or at
**                           open, that may hold rows of the table is
**                           listed); each index entry leads to a readable
**                           record with the same key and a good checksum;
**                           the segment accounting adds up
**   logstor_check()         the same for every table of the main database's
**                           data directory
**   logstor_flush(table)    separates everything committed so far: every
**                           row moves into a segment of its table's group
**                           and the mixed segments (shared by all tables)
**                           are freed; returns the number of segments freed
**   logstor_compact(table)  logstor_flush, then compacts the table's groups
**                           until no step frees a segment, dropping the
**                           deletes that nothing older survives; returns
**                           the number of segments freed (segments whose
**                           rows all died are freed at once, without it)
** A table argument is "name" or "schema.name".  The functions with effects
** are SQLITE_DIRECTONLY (not callable from triggers and views).
*/
#include "logstor_int.h"

#include <stdlib.h>
#include <string.h>

/* The affinity of the key column of "table" or "schema.table" (a logstor
** table), or -1 with an error set on ctx. */
static int key_affinity(sqlite3_context *ctx, sqlite3_value *table) {
  const char *arg = (const char *)sqlite3_value_text(table);
  if (!arg) {
    sqlite3_result_error(ctx, "logstor_token: a table name is required", -1);
    return -1;
  }
  ls_db *ldb;
  uint32_t id;
  char *err = NULL, *name = NULL;
  int rc = lsx_resolve_table(sqlite3_user_data(ctx), arg, &ldb, &id, &name, &err);
  sqlite3_stmt *st = NULL;
  if (!rc) rc = sqlite3_prepare_v2(sqlite3_context_db_handle(ctx), "SELECT type FROM pragma_table_info(?1, ?2) WHERE pk",
                                   -1, &st, NULL);
  if (!rc) {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ldb->schema, -1, SQLITE_STATIC);
  }
  int aff = -1;
  if (!rc && sqlite3_step(st) == SQLITE_ROW) aff = lsx_affinity((const char *)sqlite3_column_text(st, 0));
  else if (!rc) rc = SQLITE_ERROR;
  sqlite3_finalize(st);
  sqlite3_free(name);
  if (rc) {
    sqlite3_result_error(ctx, err ? err : "logstor_token: cannot read the table's key column", -1);
    sqlite3_result_error_code(ctx, rc);
  }
  sqlite3_free(err);
  return rc ? -1 : aff;
}

static void fn_token(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  int aff = AFF_BLOB;
  if (argc == 2 && (aff = key_affinity(ctx, argv[0])) < 0) return;
  lsx_buf b = {0};
  int rc = lsx_key_encode(argv[argc - 1], aff, &b);
  if (rc == SQLITE_OK) sqlite3_result_int64(ctx, ls_token_of(b.p, (uint32_t)b.n));
  else if (rc == SQLITE_CONSTRAINT_NOTNULL) sqlite3_result_null(ctx);
  else sqlite3_result_error_code(ctx, rc);
  lsx_buf_free(&b);
}

static void fn_version(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_result_text(ctx, LOGSTOR_VERSION, -1, SQLITE_STATIC);
}

/* Resolve the table argument; on failure set the error and return 0. */
static int table_arg(sqlite3_context *ctx, sqlite3_value *v, ls_db **ldb, uint32_t *id) {
  const char *name = (const char *)sqlite3_value_text(v);
  if (!name) {
    sqlite3_result_error(ctx, "logstor: a table name is required", -1);
    return 0;
  }
  char *err = NULL;
  int rc = lsx_resolve_table(sqlite3_user_data(ctx), name, ldb, id, NULL, &err);
  if (rc) {
    sqlite3_result_error(ctx, err ? err : "logstor: cannot open the table", -1);
    sqlite3_result_error_code(ctx, rc);
    sqlite3_free(err);
    return 0;
  }
  return 1;
}

/* The engine's error rc (message in ls_errmsg) as the function's result. */
static void engine_error(sqlite3_context *ctx, sqlite3_value *table, int rc) {
  char *m = sqlite3_mprintf("logstor: %s: %s", sqlite3_value_text(table), ls_errmsg());
  sqlite3_result_error(ctx, m ? m : "logstor: out of memory", -1);
  sqlite3_result_error_code(ctx, lsx_sqlite_code(rc));
  sqlite3_free(m);
}

static void fn_check(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  ls_db *ldb = NULL;
  uint32_t id = 0;
  if (argc == 1) {
    if (!table_arg(ctx, argv[0], &ldb, &id)) return;
  } else {
    /* Engine-wide: the main database's data directory (none without a
    ** logstor table: nothing to check). */
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    sqlite3_stmt *st = NULL;
    int any = sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_schema WHERE type='table' AND name LIKE "
                                     "'%\\_logstor' ESCAPE '\\' LIMIT 1", -1, &st, NULL) == SQLITE_OK &&
              sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!any) {
      sqlite3_result_text(ctx, "ok", -1, SQLITE_STATIC);
      return;
    }
    char *err = NULL;
    int rc = lsx_db_get(sqlite3_user_data(ctx), "main", &ldb, NULL, 0, &err);
    if (!rc && !ldb->eng) {
      err = lsx_db_absent(ldb);
      rc = SQLITE_CANTOPEN;
    }
    if (rc) {
      char *m = sqlite3_mprintf("logstor: %s", err ? err : "cannot open the data directory");
      sqlite3_result_error(ctx, m ? m : "logstor: out of memory", -1);
      sqlite3_result_error_code(ctx, rc);
      sqlite3_free(m);
      sqlite3_free(err);
      return;
    }
  }
  char *report = NULL;
  int rc = ls_check(ldb->eng, id, &report);
  if (rc) {
    if (argc == 1) {
      engine_error(ctx, argv[0], rc);
    } else {
      char *m = sqlite3_mprintf("logstor: %s", ls_errmsg());
      sqlite3_result_error(ctx, m ? m : "logstor: out of memory", -1);
      sqlite3_result_error_code(ctx, lsx_sqlite_code(rc));
      sqlite3_free(m);
    }
    return;
  }
  sqlite3_result_text(ctx, report, -1, SQLITE_TRANSIENT);
  free(report);
}

/* logstor_flush and logstor_compact: user data says which. */
static void fn_clean(sqlite3_context *ctx, int argc, sqlite3_value **argv, int compact) {
  (void)argc;
  ls_db *ldb;
  uint32_t id;
  if (!table_arg(ctx, argv[0], &ldb, &id)) return;
  uint64_t freed = 0;
  int rc = compact ? ls_compact(ldb->eng, id, &freed) : ls_flush(ldb->eng, id, &freed);
  if (rc) {
    engine_error(ctx, argv[0], rc);
    return;
  }
  sqlite3_result_int64(ctx, (sqlite3_int64)freed);
}

static void fn_flush(sqlite3_context *ctx, int argc, sqlite3_value **argv) { fn_clean(ctx, argc, argv, 0); }
static void fn_compact(sqlite3_context *ctx, int argc, sqlite3_value **argv) { fn_clean(ctx, argc, argv, 1); }

int lsx_register_functions(sqlite3 *db, ls_conn *conn) {
  int pure = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  int effects = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  int rc = sqlite3_create_function_v2(db, "logstor_token", 1, pure, conn, fn_token, 0, 0, 0);
  /* Reads the schema: deterministic within a statement, not innocuous. */
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_token", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, conn, fn_token,
                                           0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_version", 0, pure, conn, fn_version, 0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_check", 1, effects, conn, fn_check, 0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_check", 0, effects, conn, fn_check, 0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_flush", 1, effects, conn, fn_flush, 0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_compact", 1, effects, conn, fn_compact, 0, 0, 0);
  return rc;
}
