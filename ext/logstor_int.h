/*
** logstor_int.h -- definitions shared by the files of the SQLite module.
**
** Every file of ext/ includes this header, which declares the sqlite3_api
** pointer (SQLITE_EXTENSION_INIT3); logstor.c alone defines it
** (SQLITE_EXTENSION_INIT1).  ext/ reaches the engine only through
** engine/logstor.h.
**
** Objects:
**   ls_conn   one per SQLite connection that loaded the module (the pAux of
**             the modules); owns the ls_db list.  Freed when the connection
**             closes.
**   ls_db     one per (connection, schema) that uses logstor: the engine of
**             that database's data directory, and the connection's open
**             write transaction on it (shared by all logstor tables of the
**             schema, so a transaction over several tables commits as one).
**   ls_vtab   one per (connection, table): the column layout and table id.
**   ls_cursor one per open scan.
*/
#ifndef LOGSTOR_INT_H
#define LOGSTOR_INT_H

#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3

#include <stdint.h>
#include "logstor.h"

#define LOGSTOR_VERSION "0.1.0"
#define LOGSTOR_MIN_SQLITE 3038000     /* sqlite3_vtab_in, _rhs_value, _distinct */

/* Column affinities (SQLite's rules for a declared type). */
enum { AFF_BLOB = 0, AFF_TEXT, AFF_NUMERIC, AFF_INTEGER, AFF_REAL };

typedef struct lsx_buf { uint8_t *p; size_t n, cap; } lsx_buf;
typedef struct ls_conn ls_conn;
typedef struct ls_db ls_db;
typedef struct ls_vtab ls_vtab;

/* A table created or dropped in the open SQL transaction (txn.c). */
typedef struct lsx_change {
  uint32_t id;                     /* engine table id */
  int drop;                        /* 1: DROP TABLE, 0: CREATE */
  int level;                       /* savepoints open when it was made */
  int undone;                      /* a CREATE rolled back to a savepoint */
} lsx_change;

typedef struct lsx_cursor lsx_cursor;

struct ls_db {
  ls_conn *conn;
  ls_db *next;
  char *schema;                    /* "main", "temp", an ATTACH name */
  char *dir;                       /* data directory */
  int tmpdir;                      /* a private directory removed at close */
  ls_engine *eng;
  int eng_readonly;                /* eng was opened read-only: it changes
                                   ** nothing (no labels, no orphan drops) */
  char owner[40];                  /* identity of the database owning dir */
  /* The connection's transaction on this database (txn.c). */
  ls_txn *txn;                     /* writes, or the reads of an explicit
                                   ** SQL transaction; NULL: none */
  int in_write;                    /* between xBegin and the end of the SQL
                                   ** transaction */
  int readonly;                    /* txn is a statement snapshot (autocommit
                                   ** mode, ls_txn_begin_read) */
  ls_txn *spare_read;              /* the last statement snapshot, ended and
                                   ** kept for the next (ls_txn_restart_read) */
  char *wname;                     /* the first table written (messages) */
  int sql_scope;                   /* txn ends with SQLite's transaction (we
                                   ** get its xCommit or xRollback) */
  int ncursors;                    /* open cursors on tables of this schema */
  lsx_cursor *cursors;             /* ... listed (scan.c) */
  int *marks;                      /* savepoint i -> ls_txn_savepoint mark */
  int nmarks, capmarks;
  int premarks;                    /* savepoints opened in this SQL transaction before
                                      the write transaction began (their marks: its start) */
  lsx_change *changes;             /* CREATEs and DROPs of the transaction */
  int nchanges, capchanges;
  uint32_t *orphans;               /* tables to check against the shadow
                                   ** tables (ls_open_tables), then drop */
  uint32_t norphans;
  uint64_t decision;               /* this transaction's decision id, 0: none */
  uint32_t *drows;                 /* tables whose shadow table has its row */
  int ndrows, capdrows;
  uint32_t *dropped;               /* engine drops that failed, retried */
  int ndropped;
};

struct ls_conn {
  sqlite3 *db;
  ls_db *dbs;
  int joined;                      /* the sentinel (txn.c) is in SQLite's
                                   ** open transaction */
  int depth;                       /* savepoints open in it */
  int sync;                        /* LS_SYNC_* of its commits (0: each data
                                   ** directory's; logstor_synchronous()) */
  int explicit_txn;                /* the SQL transaction is not one
                                   ** autocommit statement */
};

struct ls_vtab {
  sqlite3_vtab base;
  sqlite3 *db;
  ls_db *ldb;
  char *name;                      /* table name (for messages) */
  uint32_t id;                     /* engine table id (0: not read yet from
                                   ** the shadow table; lsx_vtab_ready) */
  int absent;                      /* lsx_vtab_ready found the table's data
                                   ** not in the directory: DROP only
                                   ** removes the schema entry */
  int ncol;                        /* declared columns (token not counted) */
  int pk;                          /* index of the key column */
  int keyed;                       /* order=key: rows in key order, the
                                   ** token is the key's position */
  char **cols;                     /* column names */
  uint8_t *aff;                    /* column affinities */
  uint8_t *notnull;                /* NOT NULL declared */
  /* Scratch space reused by every call (a table object is used by one
  ** connection, one call at a time). */
  lsx_buf kbuf, obuf, rbuf;        /* new key, old key, row record */
  void *enc;                       /* record.c's per-column work array */
  lsx_cursor *spare;               /* a closed cursor kept for the next (scan.c) */
  ls_value old;                    /* the old row of an UPDATE */
  uint8_t last_key[32];            /* the last short key hashed here ... */
  uint32_t last_len;               /* ... (0: none) */
  uint8_t last_digest[20];         /* ... and its digest */
};

/* ---- logstor.c -------------------------------------------------------- */
/* Map an engine code to an SQLite code and set the message of vtab
** ("logstor: <table>: <cause>").  Returns the SQLite code. */
int lsx_error(sqlite3_vtab *vtab, const char *table, int rc);
/* The same for a message returned through a char** (xCreate/xConnect). */
int lsx_error_msg(char **pzErr, const char *table, int rc);
int lsx_sqlite_code(int rc);

/* ---- db.c -------------------------------------------------------------- */
/* The ls_db of schema for this connection, opening the engine (with the
** sizes of opt, NULL for the directory's) if needed.  Only with create
** is a data directory that does not exist made; without it the ls_db
** comes back "absent" (eng NULL; lsx_db_absent says why).  *err gets a
** message (sqlite3_malloc'ed) on failure. */
int lsx_db_get(ls_conn *conn, const char *schema, ls_db **out, const ls_options *opt, int create, char **err);
/* The message for an absent data directory, sqlite3_malloc'ed. */
char *lsx_db_absent(const ls_db *d);
/* "error" or "salvage" (quoted or not) as LS_ON_DAMAGE_* into *out; 1 if
** it is neither (vtab.c). */
int lsx_on_damage_parse(const char *value, int *out);
/* synchronous=off|normal|full (or 0|1|2) into *out (LS_SYNC_*); 1 if
** malformed.  The name of a mode. */
int lsx_synchronous_parse(const char *value, int *out);
const char *lsx_synchronous_name(int mode);
int lsx_parse_size(const char *s, uint64_t *v);
int lsx_cache_size_check(uint64_t v, char **err);
/* Find without opening (NULL if the schema has no engine open here). */
ls_db *lsx_db_find(ls_conn *conn, const char *schema);

/* Call fn with the name of every shadow table ("<table>_logstor") of
** schema; fn's nonzero result stops (SQLITE_DONE: without error). */
int lsx_shadow_each(sqlite3 *db, const char *schema, int (*fn)(void *arg, const char *name), void *arg);

/* Decided commits (txn.c).  In an explicit transaction the first write to
** each table puts a row (id = -decision) into its shadow table, inside
** SQLite's transaction; lsx_db_prepare_decided then prepares the engine's
** transaction decided if every table it writes has the row (*decided 1),
** else leaves it to a plain prepare (*decided 0).  A negative result is an
** engine code (LS_*), a positive one SQLite's. */
int lsx_db_note_write(ls_db *d, const char *table, uint32_t id);
int lsx_db_prepare_decided(ls_db *d, int *decided);

/* The owner the shadow tables of schema record ("" if none). */
void lsx_database_owner(sqlite3 *db, const char *schema, char out[40]);
void lsx_conn_free(void *p);
/* Identity of the database that owns ldb's directory, checked against the
** shadow tables (create: adopt or record it).  SQLITE_OK or an error with
** *err set. */
int lsx_db_owner(ls_db *ldb, const char *claimed, int create, char **err);
/* Resolve "schema.table", or "table" (it may hold dots) searched as SQLite
** searches an unqualified name, to its ls_db, engine id and (when table
** is not NULL) its name, sqlite3_malloc'ed. */
int lsx_resolve_table(ls_conn *conn, const char *arg, ls_db **ldb, uint32_t *id, char **table, char **err);
/* In autocommit mode only: drop the engine tables no committed shadow
** table names -- orphans of a crash (checked once per engine instance) and
** drops that failed before. */
void lsx_db_reconcile(ls_db *ldb);
/* Drop engine table id now; a failure is remembered and retried by
** lsx_db_reconcile.  Returns the engine code. */
int lsx_db_drop(ls_db *ldb, uint32_t id);

/* Write dir/OWNER (the database's identity) durably: SQLITE_OK or
** SQLITE_IOERR (errno set).  Remove a data directory and its files. */
int lsx_owner_write(const char *dir, const char *id);
void lsx_rm_tree(const char *path);

/* ---- backup.c ------------------------------------------------------------ */
/* How far a running logstor_backup is (logstor_stats, scope 'backup'). */
typedef struct lsx_backup_progress {
  int64_t pages_copied, pages_total;       /* of the .db file */
  uint64_t rows_copied, rows_total;        /* of the logstor tables */
} lsx_backup_progress;
/* Call fn for each backup of engine e's database running in this process;
** fn's nonzero result stops and is returned. */
int lsx_backup_progress_of(ls_engine *e, int (*fn)(void *arg, const char *path, const lsx_backup_progress *p),
                           void *arg);
int lsx_register_backup(sqlite3 *db, ls_conn *conn);

/* ---- txn.c -------------------------------------------------------------- */
/* The transaction a read of ldb goes through (NULL: committed data).  In
** an explicit SQL transaction one is started, ending with SQLite's
** transaction.  SQLITE_OK or an error (message in vtab). */
int lsx_txn_read(ls_db *ldb, sqlite3_vtab *vtab, const char *table, ls_txn **out);
/* The transaction writes of ldb go into, started if needed. */
int lsx_txn_write(ls_db *ldb, sqlite3_vtab *vtab, const char *table, ls_txn **out);
/* The last cursor of ldb closed: a transaction that only served this
** statement ends. */
void lsx_txn_idle(ls_db *ldb);
/* Make sure the connection hears of the end of its SQL transaction (the
** sentinel joins it).  SQLITE_OK or an error with *err set. */
int lsx_txn_join(ls_conn *conn, char **err);
/* Note a table created (drop = 0) or dropped (1) in the open SQL
** transaction: undone or carried out when it ends.  Call lsx_txn_join
** first (it tells the savepoint level). */
int lsx_txn_change(ls_db *ldb, uint32_t id, int drop);
int lsx_register_sentinel(sqlite3 *db, ls_conn *conn);

/* ---- record.c ---------------------------------------------------------- */
int lsx_buf_reserve(lsx_buf *b, size_t more);
void lsx_buf_free(lsx_buf *b);

int lsx_affinity(const char *type);
/* Encode value v (after affinity aff) as a canonical key.  SQLITE_OK,
** SQLITE_CONSTRAINT for NULL, SQLITE_TOOBIG, SQLITE_NOMEM. */
int lsx_key_encode(sqlite3_value *v, int aff, lsx_buf *out);
/* Set the result of ctx to the key's value (column affinity aff). */
int lsx_key_result(sqlite3_context *ctx, const uint8_t *key, uint32_t len, int aff);
/* Encode the row argv[0..ncol-1] (the key column pk stored only when the
** canonical key does not give it back exactly).  A column whose value is
** "no change" (sqlite3_value_nochange, an UPDATE) is copied from the old
** row record old (NULL when there is none). */
int lsx_row_encode(ls_vtab *t, sqlite3_value **argv, const uint8_t *old, uint32_t oldlen, lsx_buf *out);
/* Does decoding key (of a column of affinity aff) give back the key column's
** value exactly (so the key column needs no read of the row)? */
int lsx_key_exact(int aff, const uint8_t *key, uint32_t len);
/* ls_key_set with a one-entry cache of the last key hashed for table t. */
void lsx_key_set(ls_vtab *t, const uint8_t *key, uint32_t len, ls_key *k);
/* The token of key k in table t (its position on a key-ordered table). */
int64_t lsx_token(const ls_vtab *t, const ls_key *k);
/* Set the result of ctx to column col of a row. */
int lsx_row_column(ls_vtab *t, const uint8_t *row, uint32_t len, const uint8_t *key, uint32_t klen,
                   int col, sqlite3_context *ctx);

/* ---- vtab.c / scan.c / update.c / stats.c / func.c ----------------------- */
int lsx_register_vtab(sqlite3 *db, ls_conn *conn);
/* The transaction t is ending while cursors of ldb may still use it: they
** go on without it (scan.c). */
void lsx_cursors_detach(ls_db *ldb, ls_txn *t);
int lsx_register_stats(sqlite3 *db, ls_conn *conn);
int lsx_register_functions(sqlite3 *db, ls_conn *conn);

/* Methods implemented in scan.c and update.c, installed by vtab.c. */
int lsx_best_index(sqlite3_vtab *vtab, sqlite3_index_info *info);
int lsx_open(sqlite3_vtab *vtab, sqlite3_vtab_cursor **out);
int lsx_close(sqlite3_vtab_cursor *cur);
void lsx_cursor_free(lsx_cursor *c);  /* a closed cursor (ls_vtab.spare) */
int lsx_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc, sqlite3_value **argv);
int lsx_next(sqlite3_vtab_cursor *cur);
int lsx_eof(sqlite3_vtab_cursor *cur);
int lsx_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col);
int lsx_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid);
int lsx_update(sqlite3_vtab *vtab, int argc, sqlite3_value **argv, sqlite3_int64 *rowid);
int lsx_begin(sqlite3_vtab *vtab);
int lsx_sync(sqlite3_vtab *vtab);
int lsx_commit(sqlite3_vtab *vtab);
int lsx_rollback(sqlite3_vtab *vtab);
int lsx_savepoint(sqlite3_vtab *vtab, int n);
int lsx_release(sqlite3_vtab *vtab, int n);
int lsx_rollback_to(sqlite3_vtab *vtab, int n);
/* The table's engine id and owner checked, read from its shadow table at
** the first use (xConnect reads no table: inside BEGIN that would leave a
** read transaction open, and SQLite could then not wait for a lock when
** the statement needs to write).  SQLITE_OK or an error in t's message. */
int lsx_vtab_ready(ls_vtab *t);

#endif
