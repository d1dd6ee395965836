/*
** txn.c -- how logstor follows SQLite's transactions.
**
** SQLite tells a virtual table about a transaction only if the table was
** written in it (xBegin ... xSync, xCommit or xRollback, with xSavepoint,
** xRelease and xRollbackTo in between); a table that is only read hears
** nothing, not even the COMMIT.  logstor needs the end of every SQL
** transaction that used it: the reads of an explicit transaction see one
** snapshot and are checked at commit, and must not outlive it; a DROP TABLE
** may only destroy data once SQLite's commit is certain; a CREATE or DROP
** rolled back to a savepoint must be undone.
**
** The sentinel.  A tiny module, logstor_txn, with one table in the temp
** schema (temp.logstor_txn, created when first needed; it stays).  Running
** "DELETE FROM temp.logstor_txn WHERE 0" makes SQLite call its xBegin and
** enlist it in the open transaction, so from then on it receives every
** savepoint call, xSync and the final xCommit or xRollback -- without a
** lock on any database file (temp is private to the connection) and
** without changing a row.  It is joined by the first read of an explicit
** transaction that is not writing yet, by DROP TABLE and by a CREATE
** inside BEGIN.  (Side effect: the statement resets sqlite3_changes() to
** 0 when that first read is a SELECT.)  Where the sentinel can not join
** (PRAGMA query_only), an explicit transaction's reads fall back to one
** snapshot per statement.
**
** Snapshots.  Every engine transaction reads one committed state (its
** snapshot, engine/snapshot.h).  In autocommit mode a read statement gets
** a read-only transaction, shared by the statements running at once (as
** SQLite shares its read transaction) and ended with the last of their
** cursors; a write statement gets a fresh write transaction at xBegin.  In
** an explicit transaction the first read or write starts the transaction
** that every later statement reads through, until SQLite's transaction
** ends.
**
** State machine of one ls_db (its tables share the transaction):
**
**   NONE --read in autocommit--> STATEMENT --last cursor closed--> NONE
**   NONE --read in BEGIN (sentinel joins)--> READ --xBegin--> WRITE
**   NONE --xBegin--> WRITE --xSync: prepare--> PREPARED
**   PREPARED --a write or ROLLBACK TO (COMMIT failed and the transaction
**            goes on): unprepare--> WRITE
**   READ, WRITE, PREPARED --end of the SQL transaction--> NONE
**       (xCommit of any of our tables or the sentinel: publish what is
**        prepared; xRollback: unprepare and discard)
**
** Callbacks are per connection, not per table: whichever of our tables (or
** the sentinel) gets xSync, xCommit, xRollback or a savepoint call first
** acts for every database of the connection; the repeats find nothing left
** to do.  That also covers a database whose only written table was dropped
** in the transaction and then restored by ROLLBACK TO (SQLite forgets the
** dropped table's place in the transaction; the sentinel still has one).
**
** Savepoint levels.  conn->depth counts the savepoints open (statement
** savepoints included); a CREATE or DROP made at depth d is undone by
** xRollbackTo(n) for n < d, and releasing savepoint n makes it depth
** min(d, n).  xRollbackTo(-1) (ROLLBACK TO the savepoint that opened the
** transaction) undoes everything.
*/
#include "logstor_int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Discard ldb's transaction (after publishing it, or not). */
static void txn_drop(ls_db *d) {
  if (d->txn) {
    lsx_cursors_detach(d, d->txn);
    if (d->readonly && !d->spare_read) {
      ls_txn_end_read(d->txn);     /* the next statement restarts it */
      d->spare_read = d->txn;
    } else {
      ls_txn_free(d->txn);         /* unprepares a prepared one */
    }
  }
  d->txn = NULL;
  sqlite3_free(d->wname);
  d->wname = NULL;
  d->in_write = 0;
  d->readonly = 0;
  d->sql_scope = 0;
  d->nmarks = 0;
  d->decision = 0;
  d->ndrows = 0;
}

/* A connection that holds SQLite's write lock on d's database orders its
** transaction after every one that committed before it took the lock; the
** last of those may still be between SQLite's commit and xCommit (the
** engine's publish), so a snapshot taken now would miss its rows (the
** next writer read them as they were before, and its commit failed the
** engine's check).  Nothing new can be prepared meanwhile (that needs the
** lock), so the wait is short. */
#define PUBLISH_WAIT_MS 10000
static int wait_published(ls_db *d) {
  if (sqlite3_txn_state(d->conn->db, d->schema) != SQLITE_TXN_WRITE) return LS_OK;
  return ls_wait_unprepared(d->eng, PUBLISH_WAIT_MS);
}

int lsx_txn_read(ls_db *d, sqlite3_vtab *vtab, const char *table, ls_txn **out) {
  ls_conn *conn = d->conn;
  int erc = LS_OK;
  *out = NULL;
  if (!d->txn || d->readonly) erc = wait_published(d);
  if (erc) return lsx_error(vtab, table, erc);
  if (sqlite3_get_autocommit(conn->db)) {
    /* A statement's snapshot, shared by the statements running at once
    ** (SQLite's read transaction), ending with the last of their cursors;
    ** or the write of this statement's transaction. */
    if (!d->txn && d->spare_read) {
      ls_txn_restart_read(d->spare_read);
      d->txn = d->spare_read;
      d->spare_read = NULL;
      d->readonly = 1;
    } else if (!d->txn) {
      erc = ls_txn_begin_read(d->eng, &d->txn);
      d->readonly = 1;
    }
  } else if (!d->txn || d->readonly) {
    /* The first read of an explicit transaction: its snapshot lasts until
    ** the transaction ends. */
    if (d->txn) txn_drop(d);
    erc = ls_txn_begin(d->eng, &d->txn);
    d->nmarks = 0;
    if (!erc) {
      char *err = NULL;
      d->sql_scope = lsx_txn_join(conn, &err) == SQLITE_OK;
      sqlite3_free(err);           /* without it: one snapshot per statement */
    }
  }
  if (erc) {
    d->txn = NULL;
    d->readonly = 0;
    return lsx_error(vtab, table, erc);
  }
  *out = d->txn;
  return SQLITE_OK;
}

/* Savepoints up to n begin at the transaction's current position. */
static int marks_fill(ls_db *d, int n) {
  if (n >= d->capmarks) {
    int cap = n + 8;
    int *m = sqlite3_realloc(d->marks, cap * (int)sizeof *m);
    if (!m) return LS_NOMEM;
    d->marks = m;
    d->capmarks = cap;
  }
  int mark = ls_txn_savepoint(d->txn);
  while (d->nmarks <= n) d->marks[d->nmarks++] = mark;
  return LS_OK;
}

int lsx_txn_write(ls_db *d, sqlite3_vtab *vtab, const char *table, ls_txn **out) {
  int erc = LS_OK;
  /* A statement snapshot (autocommit mode) takes no writes: a write
  ** transaction starts from the newest state. */
  if (d->txn && (d->readonly || (!d->in_write && sqlite3_get_autocommit(d->conn->db)))) txn_drop(d);
  if (!d->txn) {
    erc = wait_published(d);
    if (!erc) erc = ls_txn_begin(d->eng, &d->txn);
    d->nmarks = 0;
  }
  if (!erc && ls_txn_prepared(d->txn)) erc = ls_txn_unprepare(d->txn);
  /* Savepoints opened before the first write (a statement's own included)
  ** begin where the write transaction begins.  SQLite follows xBegin with
  ** the savepoint calls itself, but a table created in this transaction
  ** gets no xBegin: only these marks let its failing statement undo
  ** itself. */
  if (!erc && !d->in_write && d->nmarks < d->premarks) erc = marks_fill(d, d->premarks - 1);
  if (erc) return lsx_error(vtab, table, erc);
  if (!d->wname) d->wname = sqlite3_mprintf("%s", table);
  if (!sqlite3_get_autocommit(d->conn->db)) d->conn->explicit_txn = 1;
  d->in_write = 1;
  d->sql_scope = 1;                /* our own xCommit / xRollback will come */
  *out = d->txn;
  return SQLITE_OK;
}

void lsx_txn_idle(ls_db *d) {
  if (d->txn && !d->in_write && !d->sql_scope) txn_drop(d);
}

int lsx_txn_change(ls_db *d, uint32_t id, int drop) {
  if (d->nchanges == d->capchanges) {
    int cap = d->capchanges ? 2 * d->capchanges : 4;
    lsx_change *p = sqlite3_realloc(d->changes, cap * (int)sizeof *p);
    if (!p) return SQLITE_NOMEM;
    d->changes = p;
    d->capchanges = cap;
  }
  d->changes[d->nchanges++] = (lsx_change){ id, drop, d->conn->depth, 0 };
  return SQLITE_OK;
}

/* ROLLBACK TO savepoint n: forget the DROPs made inside it (the tables
** stay) and mark its CREATEs undone (their tables go when the transaction
** ends: until then its writes may still name them). */
static void changes_rollback_to(ls_db *d, int n) {
  int keep = 0;
  for (int i = 0; i < d->nchanges; i++) {
    lsx_change *c = &d->changes[i];
    if (c->level > n && c->drop) continue;
    if (c->level > n) c->undone = 1;
    d->changes[keep++] = *c;
  }
  d->nchanges = keep;
}

/* The transaction ended: carry out its DROPs if it committed, undo its
** CREATEs if not (and those undone by a savepoint either way). */
static void changes_end(ls_db *d, int commit) {
  for (int i = 0; i < d->nchanges; i++) {
    lsx_change *c = &d->changes[i];
    if (c->drop ? commit : !commit || c->undone) (void)lsx_db_drop(d, c->id);
  }
  d->nchanges = 0;
}

/* xSync: prepare every database's writes (validated, durable, not yet
** visible).  An error goes into vtab's message, named after the first
** table the transaction wrote in that database.
**
** Atomic commit with SQLite.  SQLite commits its own files after every
** xSync and before xCommit, so a crash in between leaves the engine's
** prepared writes durable and SQLite's part rolled back (or, with several
** databases in WAL mode, some committed).  In an explicit transaction --
** where SQLite's part may hold anything else: native tables, DDL, other
** databases -- the engine's prepare is decided (engine rule W11): its
** outcome after a crash is whether SQLite committed a row carrying the
** decision id.  The first write to each table puts that row into the
** table's shadow table (db.c, lsx_db_note_write; from xUpdate, where the
** running statement restores changes() when it ends -- a write in xSync
** would leave changes() wrong), so a later DROP of one table keeps the
** others' decision; a ROLLBACK TO forgets which tables have it, and the
** next write puts it again.  Here every table the transaction writes must
** have the row, else the prepare is plain.  Each database then commits or
** not exactly as SQLite's file for it does (with a rollback journal SQLite
** makes several files atomic; in WAL mode it does not, and neither do
** we).  The remaining window: an autocommit statement that writes a
** logstor table and, from a trigger or a function, a native table or a
** second database is prepared plainly (SQLite gives no way to see it
** coming), so a crash after xSync keeps its logstor part alone.  The row
** costs SQLite a page write and a sync per explicit transaction; rows of
** finished transactions are deleted when a later one writes the table. */
static int conn_sync(ls_conn *conn, sqlite3_vtab *vtab) {
  for (ls_db *d = conn->dbs; d; d = d->next) {
    if (!d->txn || !d->in_write || ls_txn_prepared(d->txn)) continue;
    int erc = ls_txn_synchronous(d->txn, conn->sync), decided = 0;
    if (!erc && d->decision && ls_txn_size(d->txn)) {
      int rc = lsx_db_prepare_decided(d, &decided);
      if (rc < 0) {
        erc = rc;
      } else if (rc) {
        sqlite3_free(vtab->zErrMsg);
        vtab->zErrMsg = sqlite3_mprintf("logstor: %s: cannot read the shadow tables: %s",
                                        d->wname ? d->wname : d->schema, sqlite3_errmsg(conn->db));
        return rc;
      }
    }
    if (!erc && !decided) erc = ls_txn_prepare(d->txn);
    if (erc) return lsx_error(vtab, d->wname ? d->wname : d->schema, erc);
  }
  return SQLITE_OK;
}

/* Tests (decided.test): the process ends here, after SQLite's commit and
** before the engine's, as a crash could end it. */
static int test_exit_in_commit(void) {
  const char *v = getenv("LOGSTOR_TEST_EXIT_IN_COMMIT");
  return v && !strcmp(v, "1");
}

/* Tests (serial_host.c): microseconds to wait between SQLite's commit and
** the engine's publish, widening the window the next writer must wait out. */
static void test_publish_delay(void) {
  const char *v = getenv("LOGSTOR_TEST_PUBLISH_DELAY_US");
  if (v && atoi(v) > 0) usleep((useconds_t)atoi(v));
}

/* The SQL transaction ended: xCommit (commit set) or xRollback. */
static void conn_end(ls_conn *conn, int commit) {
  for (ls_db *d = conn->dbs; d; d = d->next) {
    if (d->txn && ls_txn_prepared(d->txn)) {
      if (commit && test_exit_in_commit()) _exit(0);
      if (commit) test_publish_delay();
      if (commit) ls_txn_publish(d->txn);
      /* An unprepare that fails leaves the engine read-only (and the
      ** writes would count after a restart); SQLite ignores errors here. */
      else (void)ls_txn_unprepare(d->txn);
    }
    txn_drop(d);
    changes_end(d, commit);
    d->premarks = 0;
  }
  conn->joined = 0;
  conn->depth = 0;
  conn->explicit_txn = 0;
}

enum { SP_BEGIN, SP_RELEASE, SP_ROLLBACK };

/* A savepoint call for savepoint n (-1: the one that opened the
** transaction). */
static int conn_savepoint(ls_conn *conn, int op, int n, sqlite3_vtab *vtab) {
  for (ls_db *d = conn->dbs; d; d = d->next) {
    if (op == SP_BEGIN) {
      if (!d->txn || !d->in_write) {
        if (n + 1 > d->premarks) d->premarks = n + 1;
        continue;
      }
      if (n < d->nmarks) continue;
      if (marks_fill(d, n)) return SQLITE_NOMEM;
    } else if (op == SP_RELEASE) {
      if (d->premarks > n) d->premarks = n < 0 ? 0 : n;
      if (n >= 0 && n < d->nmarks) d->nmarks = n;
      for (int i = 0; i < d->nchanges; i++)
        if (d->changes[i].level > n) d->changes[i].level = n < 0 ? 0 : n;
    } else {
      if (d->premarks > n + 1) d->premarks = n + 1;
      changes_rollback_to(d, n);
      d->ndrows = 0;               /* rows written inside may be gone: again */
      if (!d->txn || !d->in_write) continue;
      int mark = n < 0 ? 0 : n < d->nmarks ? d->marks[n] : -1;
      if (mark < 0 || (uint64_t)mark == (uint64_t)ls_txn_savepoint(d->txn)) {
        if (n < 0) d->nmarks = 0;
        continue;                  /* nothing written since */
      }
      int erc = ls_txn_prepared(d->txn) ? ls_txn_unprepare(d->txn) : LS_OK;
      if (!erc) erc = ls_txn_rollback_to(d->txn, mark);
      if (erc) return lsx_error(vtab, d->wname ? d->wname : d->schema, erc);
      d->nmarks = n < 0 ? 0 : n + 1;
    }
  }
  conn->depth = op == SP_RELEASE ? (n < 0 ? 0 : n) : n + 1;
  return SQLITE_OK;
}

/* ---- the methods of logstor tables --------------------------------------- */

int lsx_begin(sqlite3_vtab *vtab) {
  ls_vtab *t = (ls_vtab *)vtab;
  ls_txn *txn;
  int rc = lsx_vtab_ready(t);
  if (!rc) rc = lsx_txn_write(t->ldb, vtab, t->name, &txn);
  /* SQLite follows a successful xBegin with xSavepoint(k) when k + 1
  ** savepoints are open; without one, none is. */
  if (!rc) t->ldb->conn->depth = 0;
  return rc;
}

int lsx_sync(sqlite3_vtab *vtab) {
  ls_vtab *t = (ls_vtab *)vtab;
  return conn_sync(t->ldb->conn, vtab);
}

int lsx_commit(sqlite3_vtab *vtab) {
  conn_end(((ls_vtab *)vtab)->ldb->conn, 1);
  return SQLITE_OK;
}

int lsx_rollback(sqlite3_vtab *vtab) {
  conn_end(((ls_vtab *)vtab)->ldb->conn, 0);
  return SQLITE_OK;
}

int lsx_savepoint(sqlite3_vtab *vtab, int n) {
  ls_vtab *t = (ls_vtab *)vtab;
  return conn_savepoint(t->ldb->conn, SP_BEGIN, n, vtab);
}

int lsx_release(sqlite3_vtab *vtab, int n) {
  ls_vtab *t = (ls_vtab *)vtab;
  return conn_savepoint(t->ldb->conn, SP_RELEASE, n, vtab);
}

int lsx_rollback_to(sqlite3_vtab *vtab, int n) {
  ls_vtab *t = (ls_vtab *)vtab;
  return conn_savepoint(t->ldb->conn, SP_ROLLBACK, n, vtab);
}

/* ---- the sentinel ---------------------------------------------------------- */

typedef struct sentinel {
  sqlite3_vtab base;
  ls_conn *conn;
} sentinel;

static int sen_init(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                    char **pzErr) {
  (void)argc; (void)argv; (void)pzErr;
  int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(x)");
  if (rc) return rc;
  sentinel *s = sqlite3_malloc(sizeof *s);
  if (!s) return SQLITE_NOMEM;
  memset(s, 0, sizeof *s);
  s->conn = aux;
  *out = &s->base;
  return SQLITE_OK;
}

/* Created inside a transaction, SQLite enlists the table at once (without
** xBegin), so it hears of the end from now on. */
static int sen_create(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                      char **pzErr) {
  int rc = sen_init(db, aux, argc, argv, out, pzErr);
  if (!rc) ((ls_conn *)aux)->joined = 1;
  return rc;
}

static int sen_disconnect(sqlite3_vtab *vtab) {
  sqlite3_free(vtab->zErrMsg);
  sqlite3_free(vtab);
  return SQLITE_OK;
}

static int sen_best_index(sqlite3_vtab *vtab, sqlite3_index_info *info) {
  (void)vtab;
  info->estimatedCost = 1;
  info->estimatedRows = 0;
  return SQLITE_OK;
}

static int sen_open(sqlite3_vtab *vtab, sqlite3_vtab_cursor **out) {
  (void)vtab;
  sqlite3_vtab_cursor *c = sqlite3_malloc(sizeof *c);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  *out = c;
  return SQLITE_OK;
}

static int sen_close(sqlite3_vtab_cursor *c) {
  sqlite3_free(c);
  return SQLITE_OK;
}

static int sen_filter(sqlite3_vtab_cursor *c, int n, const char *s, int argc, sqlite3_value **argv) {
  (void)c; (void)n; (void)s; (void)argc; (void)argv;
  return SQLITE_OK;
}

static int sen_next(sqlite3_vtab_cursor *c) { (void)c; return SQLITE_OK; }
static int sen_eof(sqlite3_vtab_cursor *c) { (void)c; return 1; }

static int sen_column(sqlite3_vtab_cursor *c, sqlite3_context *ctx, int i) {
  (void)c; (void)ctx; (void)i;
  return SQLITE_OK;
}

static int sen_rowid(sqlite3_vtab_cursor *c, sqlite3_int64 *r) {
  (void)c;
  *r = 0;
  return SQLITE_OK;
}

/* The table holds no row; the only statement run on it deletes none. */
static int sen_update(sqlite3_vtab *vtab, int argc, sqlite3_value **argv, sqlite3_int64 *r) {
  (void)vtab; (void)argc; (void)argv; (void)r;
  return SQLITE_OK;
}

static int sen_begin(sqlite3_vtab *vtab) {
  ls_conn *conn = ((sentinel *)vtab)->conn;
  conn->joined = 1;
  conn->depth = 0;                 /* an xSavepoint follows if any are open */
  return SQLITE_OK;
}

static int sen_sync(sqlite3_vtab *vtab) { return conn_sync(((sentinel *)vtab)->conn, vtab); }

static int sen_commit(sqlite3_vtab *vtab) {
  conn_end(((sentinel *)vtab)->conn, 1);
  return SQLITE_OK;
}

static int sen_rollback(sqlite3_vtab *vtab) {
  conn_end(((sentinel *)vtab)->conn, 0);
  return SQLITE_OK;
}

static int sen_savepoint(sqlite3_vtab *vtab, int n) {
  return conn_savepoint(((sentinel *)vtab)->conn, SP_BEGIN, n, vtab);
}

static int sen_release(sqlite3_vtab *vtab, int n) {
  return conn_savepoint(((sentinel *)vtab)->conn, SP_RELEASE, n, vtab);
}

static int sen_rollback_to(sqlite3_vtab *vtab, int n) {
  return conn_savepoint(((sentinel *)vtab)->conn, SP_ROLLBACK, n, vtab);
}

static sqlite3_module sentinel_module = {
  /* iVersion    */ 2,
  /* xCreate     */ sen_create,
  /* xConnect    */ sen_init,
  /* xBestIndex  */ sen_best_index,
  /* xDisconnect */ sen_disconnect,
  /* xDestroy    */ sen_disconnect,
  /* xOpen       */ sen_open,
  /* xClose      */ sen_close,
  /* xFilter     */ sen_filter,
  /* xNext       */ sen_next,
  /* xEof        */ sen_eof,
  /* xColumn     */ sen_column,
  /* xRowid      */ sen_rowid,
  /* xUpdate     */ sen_update,
  /* xBegin      */ sen_begin,
  /* xSync       */ sen_sync,
  /* xCommit     */ sen_commit,
  /* xRollback   */ sen_rollback,
  /* xFindFunction */ 0,
  /* xRename     */ 0,
  /* xSavepoint  */ sen_savepoint,
  /* xRelease    */ sen_release,
  /* xRollbackTo */ sen_rollback_to,
  /* xShadowName */ 0,
#if SQLITE_VERSION_NUMBER >= 3044000
  /* xIntegrity  */ 0,
#endif
};

#define SENTINEL_CREATE "CREATE VIRTUAL TABLE IF NOT EXISTS temp.logstor_txn USING logstor_txn"

int lsx_register_sentinel(sqlite3 *db, ls_conn *conn) {
  /* The table is made when first needed, not here: touching the schema at
  ** load time would fix the database's text encoding before the user's
  ** PRAGMA encoding. */
  return sqlite3_create_module_v2(db, "logstor_txn", &sentinel_module, conn, NULL);
}

int lsx_txn_join(ls_conn *conn, char **err) {
  if (conn->joined) return SQLITE_OK;
  sqlite3 *db = conn->db;
  int rc = sqlite3_exec(db, SENTINEL_CREATE, 0, 0, 0);
  if (!rc && !conn->joined) rc = sqlite3_exec(db, "DELETE FROM temp.logstor_txn WHERE 0", 0, 0, 0);
  if (!rc && !conn->joined) rc = SQLITE_INTERNAL;
  if (rc) *err = sqlite3_mprintf("cannot follow the SQL transaction (temp.logstor_txn): %s", sqlite3_errmsg(db));
  return rc;
}
