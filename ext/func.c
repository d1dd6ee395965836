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
**   logstor_synchronous(mode)  this connection's commits are durable as
**                           mode says: 'full', 'normal' or 'off' (or
**                           SQLite's 0, 1, 2), whatever the data
**                           directory's synchronous option; returns the
**                           mode
**   logstor_synchronous()   the mode of this connection's commits (of the
**                           main database's data directory, when the
**                           connection chose none)
**   logstor_dump_sql()      SQL text that recreates every logstor table of the
**                           main database with its options and rows (one
**                           transaction; the shell's .dump has no rows):
**                           sqlite3 app.db '.load logstor' \
**                             'SELECT logstor_dump_sql()' > app.sql
** A table argument is "name" or "schema.name".  The functions with effects
** are SQLITE_DIRECTONLY (not callable from triggers and views).
*/
#include "logstor_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The affinity of the key column of "table" or "schema.table" (a logstor
** table), or -1 with an error set on ctx; *keyed: the table is key-ordered
** (its token is the key's position). */
static int key_affinity(sqlite3_context *ctx, sqlite3_value *table, int *keyed) {
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
  ls_table_info ti;
  *keyed = !rc && ldb->eng && ls_table_info_get(ldb->eng, id, &ti) == LS_OK && ti.order == LS_ORDER_KEY;
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
  int aff = AFF_BLOB, keyed = 0;
  if (argc == 2 && (aff = key_affinity(ctx, argv[0], &keyed)) < 0) return;
  lsx_buf b = {0};
  int rc = lsx_key_encode(argv[argc - 1], aff, &b);
  if (rc == SQLITE_OK)
    sqlite3_result_int64(ctx, keyed ? ls_key_position(b.p, (uint32_t)b.n) : ls_token_of(b.p, (uint32_t)b.n));
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

static void fn_synchronous(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  ls_conn *conn = sqlite3_user_data(ctx);
  if (argc == 1) {
    const char *v = (const char *)sqlite3_value_text(argv[0]);
    int mode;
    if (!v || lsx_synchronous_parse(v, &mode)) {
      char *m = sqlite3_mprintf("logstor_synchronous: %s is not off, normal or full", v ? v : "NULL");
      sqlite3_result_error(ctx, m ? m : "logstor: out of memory", -1);
      sqlite3_free(m);
      return;
    }
    conn->sync = mode;
  }
  int mode = conn->sync;
  if (!mode) {
    ls_db *ldb = lsx_db_find(conn, "main");
    ls_stats s;
    if (ldb && ldb->eng) {
      ls_stats_get(ldb->eng, &s);
      mode = s.synchronous;
    }
  }
  sqlite3_result_text(ctx, lsx_synchronous_name(mode), -1, SQLITE_STATIC);
}

/* Append v to s as an SQL literal that reads back as the same value: REAL
** with 17 digits (and its sign when zero), TEXT holding a NUL byte as a
** cast blob. */
static void dump_value(sqlite3_str *s, sqlite3_value *v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: sqlite3_str_appendf(s, "%lld", sqlite3_value_int64(v)); return;
    case SQLITE_FLOAT: {
      double d = sqlite3_value_double(v);
      char buf[40];
      if (isinf(d)) { sqlite3_str_appendall(s, d > 0 ? "9e999" : "-9e999"); return; }
      snprintf(buf, sizeof buf, "%.17g", d);
      sqlite3_str_appendall(s, buf);
      if (!strpbrk(buf, ".en")) sqlite3_str_appendall(s, ".0");   /* a REAL, not an INTEGER */
      return;
    }
    case SQLITE_TEXT: {
      const unsigned char *t = sqlite3_value_text(v);
      int n = sqlite3_value_bytes(v);
      if (memchr(t, 0, (size_t)n) == NULL) { sqlite3_str_appendf(s, "%Q", (const char *)t); return; }
      sqlite3_str_appendall(s, "CAST(X'");
      for (int i = 0; i < n; i++) sqlite3_str_appendf(s, "%02x", t[i]);
      sqlite3_str_appendall(s, "' AS TEXT)");
      return;
    }
    case SQLITE_BLOB: {
      const unsigned char *b = sqlite3_value_blob(v);
      int n = sqlite3_value_bytes(v);
      sqlite3_str_appendall(s, "X'");
      for (int i = 0; i < n; i++) sqlite3_str_appendf(s, "%02x", b[i]);
      sqlite3_str_appendall(s, "'");
      return;
    }
    default: sqlite3_str_appendall(s, "NULL");
  }
}

/* logstor_dump_sql(): BEGIN, then for each logstor table of main (by name)
** its CREATE VIRTUAL TABLE as written and one INSERT per row, COMMIT.  The
** rows are read in one statement per table, each seeing one committed
** state. */
static void fn_dump_sql(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  sqlite3_str *s = sqlite3_str_new(db);
  sqlite3_stmt *tabs = NULL, *rows = NULL;
  char *msg = NULL;                /* the first error's message */
  sqlite3_str_appendall(s, "BEGIN;\n");
  int rc = sqlite3_prepare_v2(db,
      "SELECT name, sql FROM main.sqlite_schema AS v WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' "
      "AND sql LIKE '%USING logstor%' "
      "AND EXISTS (SELECT 1 FROM main.sqlite_schema WHERE type = 'table' AND name = v.name || '_logstor') "
      "ORDER BY name", -1, &tabs, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(tabs)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(tabs, 0);
    sqlite3_str_appendf(s, "%s;\n", (const char *)sqlite3_column_text(tabs, 1));
    char *q = sqlite3_mprintf("SELECT * FROM main.\"%w\"", name);
    rc = q ? sqlite3_prepare_v2(db, q, -1, &rows, NULL) : SQLITE_NOMEM;
    sqlite3_free(q);
    while (rc == SQLITE_OK && (rc = sqlite3_step(rows)) == SQLITE_ROW) {
      sqlite3_str_appendf(s, "INSERT INTO \"%w\" VALUES(", name);
      for (int i = 0; i < sqlite3_column_count(rows); i++) {
        if (i) sqlite3_str_appendall(s, ", ");
        dump_value(s, sqlite3_column_value(rows, i));
      }
      sqlite3_str_appendall(s, ");\n");
      rc = SQLITE_OK;
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (rc && !msg) msg = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    sqlite3_finalize(rows);
    rows = NULL;
  }
  if (rc == SQLITE_DONE) rc = SQLITE_OK;
  if (rc && !msg) msg = sqlite3_mprintf("%s", sqlite3_errmsg(db));
  sqlite3_finalize(tabs);
  sqlite3_str_appendall(s, "COMMIT;\n");
  if (!rc) rc = sqlite3_str_errcode(s);
  if (rc) {
    /* A logstor table's error names itself. */
    const char *e = msg ? msg : sqlite3_errstr(rc);
    char *m = sqlite3_mprintf("%s%s", strncmp(e, "logstor: ", 9) ? "logstor: logstor_dump_sql: " : "", e);
    sqlite3_free(msg);
    sqlite3_free(sqlite3_str_finish(s));
    sqlite3_result_error(ctx, m ? m : "logstor: out of memory", -1);
    sqlite3_result_error_code(ctx, rc);
    sqlite3_free(m);
    return;
  }
  int n = sqlite3_str_length(s);
  sqlite3_result_text(ctx, sqlite3_str_finish(s), n, sqlite3_free);
}

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
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_synchronous", 1, effects, conn, fn_synchronous, 0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_synchronous", 0, effects, conn, fn_synchronous, 0, 0, 0);
  if (!rc) rc = sqlite3_create_function_v2(db, "logstor_dump_sql", 0, effects, conn, fn_dump_sql, 0, 0, 0);
  return rc;
}
