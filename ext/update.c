/*
** update.c -- writes of logstor tables (xUpdate).
**
** Writes go into the connection's engine transaction for the database
** (txn.c): they are visible to this connection at once and to others after
** the commit.  Conflicts follow SQLite (the module declares
** SQLITE_VTAB_CONSTRAINT_SUPPORT): a plain INSERT of an existing key fails
** with "UNIQUE constraint failed: t.pk" before anything is changed, and
** SQLite then applies the statement's conflict clause (IGNORE skips the
** row, FAIL keeps earlier rows, ROLLBACK rolls the transaction back, ABORT
** the statement); with REPLACE the row is overwritten here.
**
** Transactions: txn.c.
*/
#include "logstor_int.h"

#include <string.h>

static int constraint(ls_vtab *t, int code, const char *what, int col) {
  sqlite3_free(t->base.zErrMsg);
  t->base.zErrMsg = sqlite3_mprintf("%s constraint failed: %s.%s", what, t->name, t->cols[col]);
  return code;
}

/* NOT NULL columns of a new row (argv = the declared columns). */
static int check_not_null(ls_vtab *t, sqlite3_value **cols) {
  for (int c = 0; c < t->ncol; c++)
    if (t->notnull[c] && !sqlite3_value_nochange(cols[c]) && sqlite3_value_type(cols[c]) == SQLITE_NULL)
      return constraint(t, SQLITE_CONSTRAINT_NOTNULL, "NOT NULL", c);
  return SQLITE_OK;
}

static int key_of(ls_vtab *t, sqlite3_value *v, lsx_buf *b, ls_key *k) {
  int rc = lsx_key_encode(v, t->aff[t->pk], b);
  if (rc == SQLITE_CONSTRAINT_NOTNULL) return constraint(t, rc, "NOT NULL", t->pk);
  if (rc == SQLITE_TOOBIG) {
    sqlite3_free(t->base.zErrMsg);
    t->base.zErrMsg = sqlite3_mprintf("logstor: %s: key larger than %u bytes", t->name, LS_MAX_KEY - 1);
  }
  if (!rc) lsx_key_set(t, b->p, (uint32_t)b->n, k);
  return rc;
}

/* xUpdate.  argc == 1: DELETE argv[0]; argv[0] NULL: INSERT of argv[2..];
** else UPDATE of the row with key argv[0] to argv[2..] (argv[2+ncol] is
** the hidden token column).  The key, old key and row are encoded into the
** table's scratch buffers. */
int lsx_update(sqlite3_vtab *vtab, int argc, sqlite3_value **argv, sqlite3_int64 *rowid) {
  ls_vtab *t = (ls_vtab *)vtab;
  /* SQLite sets last_insert_rowid() to this after an INSERT; a WITHOUT
  ** ROWID table leaves it as it was. */
  *rowid = sqlite3_last_insert_rowid(t->db);
  ls_txn *txn;
  int rc = lsx_vtab_ready(t), erc = LS_OK;
  if (!rc) rc = lsx_txn_write(t->ldb, vtab, t->name, &txn);
  if (!rc && (rc = lsx_db_note_write(t->ldb, t->name, t->id)) != SQLITE_OK) {
    sqlite3_free(vtab->zErrMsg);
    vtab->zErrMsg = sqlite3_mprintf("logstor: %s: cannot record the transaction in %s_logstor: %s", t->name,
                                    t->name, sqlite3_errmsg(t->db));
  }
  if (rc) return rc;
  lsx_buf *kb = &t->kbuf, *ob = &t->obuf, *row = &t->rbuf;
  ls_key k, old;
  if (argc == 1) {                                   /* DELETE */
    rc = key_of(t, argv[0], ob, &old);
    if (!rc) {
      erc = ls_txn_exists(txn, t->id, &old);         /* remember the version deleted */
      if (erc >= 0) erc = ls_txn_delete(txn, t->id, &old);
    }
    goto out;
  }
  sqlite3_value **cols = argv + 2;
  /* The hidden token column: NULL in an INSERT; an UPDATE passes the old
  ** row's token back unless the statement assigns it. */
  int is_insert = sqlite3_value_type(argv[0]) == SQLITE_NULL;
  if (!is_insert) rc = key_of(t, argv[0], ob, &old);
  if (rc) goto out;
  sqlite3_value *tok = cols[t->ncol];
  if (sqlite3_value_type(tok) != SQLITE_NULL &&
      (is_insert || sqlite3_value_type(tok) != SQLITE_INTEGER || sqlite3_value_int64(tok) != lsx_token(t, &old))) {
    sqlite3_free(vtab->zErrMsg);
    vtab->zErrMsg = sqlite3_mprintf("logstor: %s: token is computed from the key and can not be set", t->name);
    rc = SQLITE_CONSTRAINT;
    goto out;
  }
  rc = check_not_null(t, cols);
  if (!rc) rc = key_of(t, cols[t->pk], kb, &k);
  if (rc) goto out;
  /* Columns the UPDATE leaves alone arrive as "no change": copy them from
  ** the old row (read only in that case). */
  const uint8_t *oldrow = NULL;
  uint32_t oldlen = 0;
  for (int c = 0; c < t->ncol && !oldrow; c++) {
    if (!sqlite3_value_nochange(cols[c])) continue;
    erc = ls_txn_get(txn, t->id, &old, &t->old);
    if (erc == LS_NOTFOUND) {
      sqlite3_free(vtab->zErrMsg);
      vtab->zErrMsg = sqlite3_mprintf("logstor: %s: the row being updated was deleted meanwhile", t->name);
      rc = SQLITE_ABORT;
      goto out;
    }
    if (erc) goto out;
    oldrow = t->old.data;
    oldlen = t->old.len;
  }
  rc = lsx_row_encode(t, cols, oldrow, oldlen, row);
  if (rc) goto out;
  int replace = sqlite3_vtab_on_conflict(t->db) == SQLITE_REPLACE;
  if (is_insert) {
    if (!replace) {
      erc = ls_txn_exists(txn, t->id, &k);
      if (erc == 1) { rc = constraint(t, SQLITE_CONSTRAINT_PRIMARYKEY, "UNIQUE", t->pk); goto out; }
      if (erc < 0) goto out;
    }
  } else if (ob->n != kb->n || memcmp(ob->p, kb->p, kb->n) != 0) {
    /* UPDATE that changes the key: the new key must be free unless REPLACE. */
    erc = ls_txn_exists(txn, t->id, &k);
    if (erc == 1 && !replace) { rc = constraint(t, SQLITE_CONSTRAINT_PRIMARYKEY, "UNIQUE", t->pk); goto out; }
    if (erc < 0) goto out;
    erc = ls_txn_exists(txn, t->id, &old);
    if (erc >= 0) erc = ls_txn_delete(txn, t->id, &old);
    if (erc < 0) goto out;
  } else {
    erc = ls_txn_exists(txn, t->id, &old);          /* remember the version updated */
    if (erc < 0) goto out;
  }
  erc = ls_txn_put(txn, t->id, &k, row->p, (uint32_t)row->n);
out:
  if (!rc && erc < 0) rc = lsx_error(vtab, t->name, erc);
  return rc;
}

