/*
** scan.c -- query planning and cursors of logstor tables.
**
** Plans.  A point lookup by key; a batch of key lookups for `pk IN (...)`
** (the values arrive together through sqlite3_vtab_in and their disk reads
** are issued together); a token range scan for constraints on the hidden
** column token; a full scan.  Scans return rows in ascending token order,
** and so does the IN plan (its rows are sorted), so ORDER BY token is
** consumed; a scan can also go down (ORDER BY token DESC).  Inside a write
** transaction every read goes through the connection's transaction and sees
** its own writes.
**
** Key-ordered tables (order=key).  The token is the key's position, so
** that scans return rows in key order (rows sharing a position sorted by
** key: read.c) and ORDER BY pk, ASC or DESC, is consumed by a scan.  Range
** constraints on pk (<, <=, >, >=, BETWEEN) bound the scan: the bound
** value, converted as SQLite's comparison converts it, gives a position;
** rows between the positions are scanned and SQLite checks the constraint
** itself (not omitted: a position summarises several keys).  SQLite's
** comparison converts a value as the other side's affinity says; on a key
** of INTEGER, REAL or NUMERIC affinity it is always numeric affinity on
** the bound, which the module can apply.  On a TEXT or untyped key a bound
** of numeric affinity (a column, a CAST) would convert the key instead, so
** there only a bound known at planning to be a literal of the key's own
** class is used.
*/
#include "logstor_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
** idxNum bits (set by lsx_best_index, read by lsx_filter):
**
**   PLAN_EQ      1   pk = ?          argv: the key
**   PLAN_IN      2   pk IN (...)     argv: the list (sqlite3_vtab_in)
**   PLAN_LO      4   token >= ? / > ?   argv: the bound
**   PLAN_LO_GT   8   the lower bound is strict (>)
**   PLAN_HI     16   token <= ? / < ?   argv: the bound
**   PLAN_HI_LT  32   the upper bound is strict (<)
**   PLAN_TEQ    64   token = ?       argv: the token
**
** argv holds, in this order, the key (EQ or IN), the lower bound, the upper
** bound (or the token for TEQ), the pk lower bound, the pk upper bound.  No bit: a full scan.  idxStr names the
** plan for EXPLAIN QUERY PLAN ("pk=?", "pk IN (...)", "token=?", "token
** range", "full scan"); xFilter does not read it.
*/
#define PLAN_EQ 1
#define PLAN_IN 2
#define PLAN_LO 4
#define PLAN_LO_GT 8
#define PLAN_HI 16
#define PLAN_HI_LT 32
#define PLAN_TEQ 64
#define PLAN_KLO 128               /* pk >= ? / > ?    argv: the bound (key-ordered) */
#define PLAN_KHI 256               /* pk <= ? / < ?    argv: the bound (key-ordered) */
#define PLAN_DESC 512              /* the scan goes down (ORDER BY pk/token DESC) */

typedef struct lsx_order { int64_t token; int i; } lsx_order;
#define IN_TAKEN (-0x7fff)           /* inrcs mark: the row is in the result */

struct lsx_cursor {
  sqlite3_vtab_cursor base;
  lsx_cursor *next, *prev;         /* the open cursors of the table's ls_db */
  int eof;
  /* A point lookup locates the row; the record is read only when a column
  ** needs it (an UPDATE that sets every other column never reads it). */
  int lazy;                        /* located, not read yet */
  uint64_t where;                  /* from ls_locate */
  ls_txn *txn;                     /* the transaction it reads through */
  lsx_buf kb;                      /* its key */
  ls_key lk;
  ls_cursor *scan;                 /* range and full scans */
  int64_t hi;                      /* last token of a range scan */
  ls_value one;                    /* the row of a point lookup */
  ls_value *list;                  /* rows of an IN lookup, token order */
  int nlist, ilist;
  /* The IN plan's arrays, capin entries each, kept with their buffers for
  ** the next statement (a closed cursor is kept by its table). */
  lsx_buf *inkeys;                 /* the keys encoded */
  ls_key *inlk;
  int *inrcs;
  lsx_order *inord;                /* the rows found, by token */
  ls_value *spare_list;            /* scratch to permute list through (owns
                                   ** nothing) */
  int capin;
  const ls_value *row;             /* the current row */
};

static double table_rows(ls_vtab *t) {
  ls_table_info ti;
  if (!t->ldb->eng || ls_table_info_get(t->ldb->eng, t->id, &ti)) return 1000;
  return ti.rows ? (double)ti.rows : 1;
}

/* Fraction of the token space above (lower) or below (upper) value v. */
static double token_fraction(sqlite3_value *v, int lower) {
  int type = v ? sqlite3_value_type(v) : SQLITE_NULL;
  if (type != SQLITE_INTEGER && type != SQLITE_FLOAT) return 0.5;
  double t = sqlite3_value_double(v);
  double f = (t + 9223372036854775808.0) / 18446744073709551616.0;
  if (f < 0) f = 0;
  if (f > 1) f = 1;
  return lower ? 1 - f : f;
}

/* A range constraint i on the key of key-ordered table t can bound a scan
** (top of the file): always on a numeric key; on a TEXT or untyped key only
** with a literal bound of the key's own class, known now. */
static int key_bound_usable(ls_vtab *t, sqlite3_index_info *info, int i) {
  int aff = t->aff[t->pk];
  if (aff == AFF_INTEGER || aff == AFF_NUMERIC || aff == AFF_REAL) return 1;
  sqlite3_value *v = NULL;
  if (sqlite3_vtab_rhs_value(info, i, &v) != SQLITE_OK || !v) return 0;
  return sqlite3_value_type(v) == (aff == AFF_TEXT ? SQLITE_TEXT : SQLITE_BLOB);
}

int lsx_best_index(sqlite3_vtab *vtab, sqlite3_index_info *info) {
  ls_vtab *t = (ls_vtab *)vtab;
  int tokcol = t->ncol;
  int eq = -1, lo = -1, hi = -1, teq = -1, klo = -1, khi = -1, plan = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (!c->usable) continue;
    if (c->iColumn == t->pk && c->op == SQLITE_INDEX_CONSTRAINT_EQ) {
      if (sqlite3_vtab_collation(info, i) && sqlite3_stricmp(sqlite3_vtab_collation(info, i), "BINARY")) continue;
      eq = i;
    } else if (t->keyed && c->iColumn == t->pk &&
               (c->op == SQLITE_INDEX_CONSTRAINT_GT || c->op == SQLITE_INDEX_CONSTRAINT_GE ||
                c->op == SQLITE_INDEX_CONSTRAINT_LT || c->op == SQLITE_INDEX_CONSTRAINT_LE)) {
      const char *coll = sqlite3_vtab_collation(info, i);
      if ((coll && sqlite3_stricmp(coll, "BINARY")) || !key_bound_usable(t, info, i)) continue;
      if (c->op == SQLITE_INDEX_CONSTRAINT_GT || c->op == SQLITE_INDEX_CONSTRAINT_GE) klo = i;
      else khi = i;
    } else if (c->iColumn == tokcol) {
      switch (c->op) {
        case SQLITE_INDEX_CONSTRAINT_EQ: teq = i; break;
        case SQLITE_INDEX_CONSTRAINT_GT: lo = i; plan |= PLAN_LO_GT; break;
        case SQLITE_INDEX_CONSTRAINT_GE: lo = i; plan &= ~PLAN_LO_GT; break;
        case SQLITE_INDEX_CONSTRAINT_LT: hi = i; plan |= PLAN_HI_LT; break;
        case SQLITE_INDEX_CONSTRAINT_LE: hi = i; plan &= ~PLAN_HI_LT; break;
      }
    }
  }
  double rows = table_rows(t);
  int argv = 0;
  if (eq >= 0) {
    plan = 0;
    info->aConstraintUsage[eq].argvIndex = ++argv;
    /* With INTEGER or NUMERIC key affinity, SQLite's comparison and the key
    ** encoding agree.  For TEXT and untyped keys the other side's affinity
    ** can make SQLite compare differently, and for REAL keys the affinity
    ** rounds a large integer probe to a double that SQLite would not call
    ** equal: SQLite re-checks those rows. */
    int aff = t->aff[t->pk];
    info->aConstraintUsage[eq].omit = aff == AFF_INTEGER || aff == AFF_NUMERIC;
    if (sqlite3_vtab_in(info, eq, -1)) {
      sqlite3_vtab_in(info, eq, 1);
      plan = PLAN_IN;
      info->estimatedCost = 10 + log2(rows + 1);
      info->estimatedRows = 10;
    } else {
      plan = PLAN_EQ;
      info->estimatedCost = 1 + log2(rows + 1) / 10;
      info->estimatedRows = 1;
      info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
    }
  } else if (teq >= 0) {
    plan = PLAN_TEQ;
    info->aConstraintUsage[teq].argvIndex = ++argv;
    info->aConstraintUsage[teq].omit = 1;
    info->estimatedCost = 2;
    info->estimatedRows = 1;
  } else if (lo >= 0 || hi >= 0 || klo >= 0 || khi >= 0) {
    double frac = 1;
    if (lo >= 0) {
      plan |= PLAN_LO;
      info->aConstraintUsage[lo].argvIndex = ++argv;
      info->aConstraintUsage[lo].omit = 1;
      sqlite3_value *v = NULL;
      frac = token_fraction(sqlite3_vtab_rhs_value(info, lo, &v) == SQLITE_OK ? v : NULL, 1);
    } else {
      plan &= ~PLAN_LO_GT;
    }
    if (hi >= 0) {
      plan |= PLAN_HI;
      info->aConstraintUsage[hi].argvIndex = ++argv;
      info->aConstraintUsage[hi].omit = 1;
      sqlite3_value *v = NULL;
      double f = token_fraction(sqlite3_vtab_rhs_value(info, hi, &v) == SQLITE_OK ? v : NULL, 0);
      frac = lo >= 0 ? frac + f - 1 : f;
      if (frac < 0.001) frac = 0.001;
    } else {
      plan &= ~PLAN_HI_LT;
    }
    /* Key bounds, checked again by SQLite; a guess at what they keep. */
    if (klo >= 0) {
      plan |= PLAN_KLO;
      info->aConstraintUsage[klo].argvIndex = ++argv;
      frac *= 0.25;
    }
    if (khi >= 0) {
      plan |= PLAN_KHI;
      info->aConstraintUsage[khi].argvIndex = ++argv;
      frac *= 0.25;
    }
    info->estimatedRows = (sqlite3_int64)(rows * frac) + 1;
    info->estimatedCost = 10 + rows * frac;
  } else {
    plan = 0;
    info->estimatedCost = 10 + rows * 1.1;
    info->estimatedRows = (sqlite3_int64)rows;
  }
  /* Every plan yields rows in ascending token order; a scan can go down.  On
  ** a key-ordered table that is the key's order (a point lookup: one row). */
  if (info->nOrderBy == 1) {
    const struct sqlite3_index_orderby *o = &info->aOrderBy[0];
    int scan = !(plan & (PLAN_EQ | PLAN_IN));
    if (o->iColumn == tokcol || (t->keyed && o->iColumn == t->pk)) {
      if (plan & PLAN_EQ || (!o->desc && (scan || o->iColumn == tokcol))) {
        info->orderByConsumed = 1;
      } else if (o->desc && scan) {
        plan |= PLAN_DESC;
        info->orderByConsumed = 1;
      }
    }
  }
  info->idxNum = plan;
  /* What EXPLAIN QUERY PLAN shows ("SCAN t VIRTUAL TABLE INDEX 5:token range"). */
  int desc = !!(plan & PLAN_DESC);
  info->idxStr = (char *)(plan & PLAN_EQ ? "pk=?" : plan & PLAN_IN ? "pk IN (...)" : plan & PLAN_TEQ ? "token=?"
                          : plan & (PLAN_KLO | PLAN_KHI) ? (desc ? "pk range desc" : "pk range")
                          : plan & (PLAN_LO | PLAN_HI) ? (desc ? "token range desc" : "token range")
                          : desc ? "full scan desc" : "full scan");
  info->needToFreeIdxStr = 0;
  return SQLITE_OK;
}

int lsx_open(sqlite3_vtab *vtab, sqlite3_vtab_cursor **out) {
  ls_vtab *t = (ls_vtab *)vtab;
  lsx_cursor *c = t->spare;          /* a closed cursor, buffers and all */
  if (c) {
    t->spare = NULL;
    c->next = c->prev = NULL;
    c->txn = NULL;
  } else {
    c = sqlite3_malloc(sizeof *c);
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
  }
  c->eof = 1;
  ls_db *d = t->ldb;
  lsx_db_reconcile(d);
  c->next = d->cursors;
  if (d->cursors) d->cursors->prev = c;
  d->cursors = c;
  d->ncursors++;
  *out = &c->base;
  return SQLITE_OK;
}

/* Forget the rows of the last filter (the buffers stay). */
static void reset(lsx_cursor *c) {
  c->lazy = 0;
  if (c->scan) ls_cursor_close(c->scan);
  c->scan = NULL;
  c->nlist = c->ilist = 0;
  c->row = NULL;
  c->eof = 1;
}

/* Free the IN plan's arrays and what they hold. */
static void in_free(lsx_cursor *c) {
  for (int i = 0; i < c->capin; i++) {
    ls_value_free(&c->list[i]);
    lsx_buf_free(&c->inkeys[i]);
  }
  sqlite3_free(c->list);
  sqlite3_free(c->spare_list);
  sqlite3_free(c->inkeys);
  sqlite3_free(c->inlk);
  sqlite3_free(c->inrcs);
  sqlite3_free(c->inord);
  c->list = c->spare_list = NULL;
  c->inkeys = NULL;
  c->inlk = NULL;
  c->inrcs = NULL;
  c->inord = NULL;
  c->capin = 0;
}

/* Room for n keys in the IN plan's arrays (new entries zeroed). */
static int in_reserve(lsx_cursor *c, int n) {
  if (n <= c->capin) return SQLITE_OK;
  int cap = c->capin ? 2 * c->capin : 16;
  while (cap < n) cap *= 2;
  ls_value *l = sqlite3_realloc(c->list, cap * (int)sizeof *l);
  if (l) c->list = l;
  lsx_buf *k = sqlite3_realloc(c->inkeys, cap * (int)sizeof *k);
  if (k) c->inkeys = k;
  ls_key *lk = sqlite3_realloc(c->inlk, cap * (int)sizeof *lk);
  if (lk) c->inlk = lk;
  int *r = sqlite3_realloc(c->inrcs, cap * (int)sizeof *r);
  if (r) c->inrcs = r;
  lsx_order *o = sqlite3_realloc(c->inord, cap * (int)sizeof *o);
  if (o) c->inord = o;
  ls_value *l2 = sqlite3_realloc(c->spare_list, cap * (int)sizeof *l2);
  if (l2) c->spare_list = l2;
  /* list keeps its entries (and buffers) whatever fails; capin grows only
  ** when every array did. */
  if (!l || !k || !lk || !r || !o || !l2) return SQLITE_NOMEM;
  memset(l + c->capin, 0, (size_t)(cap - c->capin) * sizeof *l);
  memset(c->inkeys + c->capin, 0, (size_t)(cap - c->capin) * sizeof *k);
  c->capin = cap;
  return SQLITE_OK;
}

void lsx_cursor_free(lsx_cursor *c) {
  if (!c) return;
  reset(c);
  in_free(c);
  ls_value_free(&c->one);
  lsx_buf_free(&c->kb);
  sqlite3_free(c);
}

int lsx_close(sqlite3_vtab_cursor *cur) {
  lsx_cursor *c = (lsx_cursor *)cur;
  ls_vtab *t = (ls_vtab *)cur->pVtab;
  ls_db *d = t->ldb;
  reset(c);
  if (c->prev) c->prev->next = c->next; else d->cursors = c->next;
  if (c->next) c->next->prev = c->prev;
  if (--d->ncursors == 0) lsx_txn_idle(d);
  if (t->spare) {
    lsx_cursor_free(c);
    return SQLITE_OK;
  }
  /* Kept for the table's next statement, without large buffers. */
  if (c->one.cap > 65536) ls_value_free(&c->one);
  if (c->kb.cap > 4096) lsx_buf_free(&c->kb);
  if (c->capin > 1024) in_free(c);
  for (int i = 0; i < c->capin; i++)
    if (c->list[i].cap > 65536) ls_value_free(&c->list[i]);
  t->spare = c;
  return SQLITE_OK;
}

/* A token bound from a constraint value, compared as SQLite compares the
** column token with it: 1 and *tok, 0 when the bound excludes every row, 2
** when it excludes none.  The column's declared type "HIDDEN" gives it
** NUMERIC affinity, so SQLite compares a text that looks like a number
** ('42', ' 1e3 ') as that number (token_operand converts it first); other
** text and blobs sort after every integer. */
static int token_bound(sqlite3_value *v, int lower, int strict, int64_t *tok) {
  const double two63 = 9223372036854775808.0;
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: {
      sqlite3_int64 i = sqlite3_value_int64(v);
      if (strict) {
        if (lower && i == INT64_MAX) return 0;
        if (!lower && i == INT64_MIN) return 0;
        i += lower ? 1 : -1;
      }
      *tok = i;
      return 1;
    }
    case SQLITE_FLOAT: {
      double d = sqlite3_value_double(v);
      if (isnan(d)) return 0;
      if (d >= two63) return lower ? 0 : 2;          /* above every token */
      if (d < -two63) return lower ? 2 : 0;          /* below every token */
      double r = lower ? ceil(d) : floor(d);
      if (r >= two63) return lower ? 0 : 2;
      int64_t i = (int64_t)r;
      if (strict && r == d) {                        /* integer arithmetic: exact */
        if (lower && i == INT64_MAX) return 0;
        if (!lower && i == INT64_MIN) return 0;
        i += lower ? 1 : -1;
      }
      *tok = i;
      return 1;
    }
    case SQLITE_NULL:
      return 0;
    default:                        /* TEXT and BLOB sort after every integer */
      return lower ? 0 : 2;
  }
}

/* A constraint value on token as SQLite compares it with the column: a text
** that looks like a number becomes that number (in a copy, *conv, which the
** caller frees).  Returns the value to use, NULL when out of memory. */
static sqlite3_value *token_operand(sqlite3_value *v, sqlite3_value **conv) {
  *conv = NULL;
  if (sqlite3_value_type(v) != SQLITE_TEXT) return v;
  if (!(*conv = sqlite3_value_dup(v))) return NULL;
  (void)sqlite3_value_numeric_type(*conv);
  return *conv;
}

/* The position of a bound on the key of key-ordered table t, converted as
** SQLite's comparison converts it (numeric affinity on a numeric key):
** 1 and *pos; 0 when no key compares with it (NULL); 2 when it bounds
** nothing the module can use (a key too long to encode); -1 out of memory. */
static int key_bound(ls_vtab *t, sqlite3_value *v, lsx_buf *kb, int64_t *pos) {
  int aff = t->aff[t->pk];
  int rc = lsx_key_encode(v, aff == AFF_REAL ? AFF_NUMERIC : aff, kb);
  if (rc == SQLITE_NOMEM) return -1;
  if (rc == SQLITE_CONSTRAINT_NOTNULL) return 0;
  if (rc) return 2;
  *pos = ls_key_position(kb->p, (uint32_t)kb->n);
  return 1;
}

static int cmp_order(const void *a, const void *b) {
  const lsx_order *x = a, *y = b;
  if (x->token != y->token) return x->token < y->token ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

int lsx_filter(sqlite3_vtab_cursor *cur, int plan, const char *idxStr, int argc, sqlite3_value **argv) {
  lsx_cursor *c = (lsx_cursor *)cur;
  ls_vtab *t = (ls_vtab *)cur->pVtab;
  ls_txn *txn;
  (void)idxStr;
  (void)argc;
  reset(c);
  int rc = lsx_vtab_ready(t);
  if (!rc) rc = lsx_txn_read(t->ldb, cur->pVtab, t->name, &txn);
  if (rc) return rc;
  c->txn = txn;
  int erc = LS_OK;
  if (plan & PLAN_EQ) {
    rc = lsx_key_encode(argv[0], t->aff[t->pk], &c->kb);
    if (rc) {                      /* NULL or unencodable: no row equals it */
      rc = rc == SQLITE_NOMEM ? rc : SQLITE_OK;
      goto out;
    }
    lsx_key_set(t, c->kb.p, (uint32_t)c->kb.n, &c->lk);
    erc = ls_locate(t->ldb->eng, txn, t->id, &c->lk, &c->where);
    if (erc == LS_OK) {
      c->lazy = 1;
      c->eof = 0;
      c->one.token = lsx_token(t, &c->lk);
    }
    if (erc == LS_NOTFOUND) erc = LS_OK;
  } else if (plan & PLAN_IN) {
    /* Collect the distinct keys, read them in one batch, sort by token. */
    int n = 0;
    sqlite3_value *v;
    for (rc = sqlite3_vtab_in_first(argv[0], &v); rc == SQLITE_OK && v; rc = sqlite3_vtab_in_next(argv[0], &v)) {
      if ((rc = in_reserve(c, n + 1))) break;
      c->inkeys[n].n = 0;
      int r = lsx_key_encode(v, t->aff[t->pk], &c->inkeys[n]);
      if (r == SQLITE_NOMEM) { rc = r; break; }
      if (r == SQLITE_OK) n++;
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    if (!rc && n) {
      ls_value *list = c->list;
      for (int i = 0; i < n; i++) ls_key_set(&c->inlk[i], c->inkeys[i].p, (uint32_t)c->inkeys[i].n);
      erc = ls_get_many(t->ldb->eng, txn, t->id, n, c->inlk, list, c->inrcs);
      /* The rows found, sorted by token (the same key gives the same token,
      ** so a key listed twice sorts next to itself and is kept once), go
      ** to the front in that order; the other entries follow with their
      ** buffers (the array is permuted through spare_list, which owns
      ** nothing). */
      lsx_order *ord = c->inord;
      int m = 0;
      for (int i = 0; !erc && i < n; i++) {
        if (c->inrcs[i] == LS_NOTFOUND) continue;
        if (c->inrcs[i]) { erc = c->inrcs[i]; break; }
        list[i].token = lsx_token(t, &c->inlk[i]);
        ord[m++] = (lsx_order){ list[i].token, i };
      }
      if (!erc) {
        if (m > 1) qsort(ord, (size_t)m, sizeof *ord, cmp_order);
        ls_value *out = c->spare_list;
        int k = 0, run = 0;        /* run: first kept row of the current token */
        for (int j = 0; j < m; j++) {
          const ls_value *row = &list[ord[j].i];
          if (k && out[k - 1].token != row->token) run = k;
          int dup = 0;
          for (int x = run; x < k && !dup; x++)
            dup = out[x].key_len == row->key_len && !memcmp(out[x].key, row->key, row->key_len);
          if (dup) continue;
          out[k++] = *row;
          c->inrcs[ord[j].i] = IN_TAKEN;
        }
        c->nlist = k;
        for (int i = 0; i < c->capin; i++)
          if (i >= n || c->inrcs[i] != IN_TAKEN) out[k++] = list[i];
        memcpy(list, out, (size_t)c->capin * sizeof *list);
      }
      if (c->nlist) { c->row = &list[0]; c->eof = 0; }
    }
  } else {
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    int a = 0, ok = 1;
    int ntok = plan & PLAN_TEQ ? 1 : !!(plan & PLAN_LO) + !!(plan & PLAN_HI);
    sqlite3_value *conv[2] = { NULL, NULL }, *v[2] = { NULL, NULL };
    for (int i = 0; i < argc && i < ntok; i++)
      if (!(v[i] = token_operand(argv[i], &conv[i]))) erc = LS_NOMEM;
    if (erc) {
      ok = 0;
    } else if (plan & PLAN_TEQ) {
      int r = token_bound(v[a], 1, 0, &lo);
      ok = r == 1 && (sqlite3_value_type(v[a]) == SQLITE_INTEGER || sqlite3_value_double(v[a]) == (double)lo);
      hi = lo;
    } else {
      if (plan & PLAN_LO) {
        int r = token_bound(v[a++], 1, !!(plan & PLAN_LO_GT), &lo);
        ok = r != 0;
        if (r == 2) lo = INT64_MIN;
      }
      if (ok && (plan & PLAN_HI)) {
        int r = token_bound(v[a], 0, !!(plan & PLAN_HI_LT), &hi);
        ok = r != 0;
        if (r == 2) hi = INT64_MAX;
      }
    }
    sqlite3_value_free(conv[0]);
    sqlite3_value_free(conv[1]);
    a = ntok;
    for (int side = 0; ok && !erc && side < 2; side++) {
      if (!(plan & (side ? PLAN_KHI : PLAN_KLO))) continue;
      int64_t pos;
      int r = key_bound(t, argv[a++], &c->kb, &pos);
      if (r < 0) erc = LS_NOMEM;
      else if (r == 0) ok = 0;
      else if (r == 1 && !side && pos > lo) lo = pos;
      else if (r == 1 && side && pos < hi) hi = pos;
    }
    if (!erc && ok && lo <= hi) {
      c->hi = hi;
      erc = ls_cursor_open(t->ldb->eng, txn, t->id, &c->scan);
      if (!erc) erc = ls_cursor_range(c->scan, lo, hi, !!(plan & PLAN_DESC));
      if (!erc && ls_cursor_valid(c->scan) && ls_cursor_row(c->scan)->token <= hi) {
        c->row = ls_cursor_row(c->scan);
        c->eof = 0;
      }
    }
  }
out:
  if (erc) return lsx_error(cur->pVtab, t->name, erc);
  return rc;
}

int lsx_next(sqlite3_vtab_cursor *cur) {
  lsx_cursor *c = (lsx_cursor *)cur;
  ls_vtab *t = (ls_vtab *)cur->pVtab;
  if (c->scan) {
    int erc = ls_cursor_next(c->scan);
    if (erc) { c->eof = 1; return lsx_error(cur->pVtab, t->name, erc); }
    if (ls_cursor_valid(c->scan) && ls_cursor_row(c->scan)->token <= c->hi) c->row = ls_cursor_row(c->scan);
    else c->eof = 1;
  } else if (c->list && ++c->ilist < c->nlist) {
    c->row = &c->list[c->ilist];
  } else {
    c->eof = 1;
  }
  return SQLITE_OK;
}

int lsx_eof(sqlite3_vtab_cursor *cur) { return ((lsx_cursor *)cur)->eof; }

int lsx_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  lsx_cursor *c = (lsx_cursor *)cur;
  ls_vtab *t = (ls_vtab *)cur->pVtab;
  if (c->lazy) {
    if (col == t->ncol) {
      sqlite3_result_int64(ctx, c->one.token);
      return SQLITE_OK;
    }
    if (col == t->pk && lsx_key_exact(t->aff[col], c->kb.p, (uint32_t)c->kb.n))
      return lsx_key_result(ctx, c->kb.p, (uint32_t)c->kb.n, t->aff[col]);
    /* An UPDATE that leaves the column alone needs no value (never for the
    ** key column: SQLite passes it back as the old key). */
    if (col != t->pk && sqlite3_vtab_nochange(ctx)) return SQLITE_OK;
    int erc = ls_get_at(t->ldb->eng, c->txn, t->id, &c->lk, c->where, &c->one);
    if (erc == LS_NOTFOUND) {
      /* Deleted since it was located: only when the statement's transaction
      ** ended under it (a snapshot keeps a located row readable).  An error,
      ** not a row of NULLs. */
      sqlite3_free(cur->pVtab->zErrMsg);
      cur->pVtab->zErrMsg = sqlite3_mprintf("logstor: %s: the row was deleted while the statement read it", t->name);
      return SQLITE_ABORT;
    }
    if (erc) return lsx_error(cur->pVtab, t->name, erc);
    c->one.token = lsx_token(t, &c->lk);
    c->row = &c->one;
    c->lazy = 0;
  }
  const ls_value *r = c->row;
  if (!r) return SQLITE_ERROR;
  if (col == t->ncol) {
    sqlite3_result_int64(ctx, r->token);
    return SQLITE_OK;
  }
  int rc = lsx_row_column(t, r->data, r->len, r->key, r->key_len, col, ctx);
  if (rc == SQLITE_CORRUPT_VTAB) {
    sqlite3_free(cur->pVtab->zErrMsg);
    cur->pVtab->zErrMsg = sqlite3_mprintf("logstor: %s: malformed row record", t->name);
  }
  return rc;
}

void lsx_cursors_detach(ls_db *d, ls_txn *t) {
  for (lsx_cursor *c = d->cursors; c; c = c->next) {
    if (c->txn != t) continue;
    c->txn = NULL;
    if (c->scan) ls_cursor_detach(c->scan);
  }
}

int lsx_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
  /* A WITHOUT ROWID table: SQLite never asks. */
  (void)cur;
  *rowid = 0;
  return SQLITE_ERROR;
}
