/*
** vtab.c -- the "logstor" module: creating, connecting, renaming and
** dropping tables.
**
**   CREATE VIRTUAL TABLE kv USING logstor(pk INTEGER PRIMARY KEY, a INT, v TEXT
**                                          [, segment_size=N] [, file_size=N]
**                                          [, disk_size=N] [, groups=N]
**                                          [, on_damage=error|salvage]
**                                          [, space_target=X]
**                                          [, synchronous=full|normal|off]
**                                          [, sync_interval=MS]
**                                          [, cache_size=N]
**                                          [, order=token|key]);
**
** Arguments are column definitions (name, optional type, optional PRIMARY
** KEY and NOT NULL) or options NAME=VALUE.  Without PRIMARY KEY the first
** column is the key.  The table is declared to SQLite as
**   CREATE TABLE x(<columns>, token HIDDEN) WITHOUT ROWID
** with a single-column primary key.  Sizes are a byte count or a count with a
** K, M or G suffix; SQLite's tokenizer needs the suffixed form quoted
** (disk_size='4M').  segment_size, file_size and disk_size apply to the whole
** data directory and are fixed when it is created; groups (compaction groups,
** token ranges) is per table.  on_damage says what damage found when the
** data directory is opened does (the engine's LS_ON_DAMAGE_*); the URI
** parameter logstor_on_damage overrides it (db.c), so a database can be
** opened with salvage once without changing its schema.  synchronous (and
** sync_interval, in milliseconds) say when a commit is durable (the
** engine's LS_SYNC_*), for the data directory from when a table giving
** them opens; the URI parameter logstor_synchronous wins, and the function
** logstor_synchronous() sets one connection's choice (func.c).
** cache_size is the bound of the engine's record cache (0: none), taken
** when the data directory is opened; the URI parameter logstor_cache_size
** wins over it.  order is per table and fixed at CREATE: 'token' (the
** default) keeps rows in token order (a hash of the key), 'key' in key order
** (SQLite's order of the key values), so that ranges and ORDER BY on the key
** are index range scans (scan.c); the engine keeps it with the table.
**
** Identity.  The engine keys a table's data by a numeric id that never
** changes.  The id lives in the shadow table "<name>_logstor" (one row),
** which SQLite renames and drops with the table inside the user's
** transaction.  So ALTER TABLE ... RENAME keeps the data, and BEGIN; DROP;
** ROLLBACK or BEGIN; CREATE; ROLLBACK leave the data as it was (see db.c for
** how a committed DROP reaches the engine).
*/
#include "logstor_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct coldef {
  char *name;
  char *type;
  int pk, notnull;
} coldef;

typedef struct tabdef {
  coldef *cols;
  int ncol, cap;
  int pk;                          /* key column, -1 until known */
  ls_options opt;
  uint32_t groups;
  int order;                       /* LS_ORDER_* */
  uint32_t given;                  /* options seen (bit per known option) */
} tabdef;

static void tabdef_free(tabdef *d) {
  for (int i = 0; i < d->ncol; i++) {
    sqlite3_free(d->cols[i].name);
    sqlite3_free(d->cols[i].type);
  }
  sqlite3_free(d->cols);
}

static const char *skip_space(const char *p) {
  while (*p && isspace((unsigned char)*p)) p++;
  return p;
}

/* Case-insensitive match of keyword kw at p, ending at a word boundary. */
static int keyword(const char *p, const char *kw) {
  size_t n = strlen(kw);
  return sqlite3_strnicmp(p, kw, (int)n) == 0 && !isalnum((unsigned char)p[n]) && p[n] != '_';
}

/* Parse an identifier (bare or quoted) at *pp into a new string. */
static char *parse_ident(const char **pp) {
  const char *p = skip_space(*pp);
  char q = *p, close = q == '[' ? ']' : q;
  if (q == '"' || q == '`' || q == '[' || q == '\'') {
    const char *s = ++p;
    char *out = sqlite3_malloc((int)strlen(s) + 1);
    if (!out) return NULL;
    int n = 0;
    for (; *p; p++) {
      if (*p == close) {
        if (close != ']' && p[1] == close) { out[n++] = close; p++; continue; }
        break;
      }
      out[n++] = *p;
    }
    if (*p != close) { sqlite3_free(out); return NULL; }
    out[n] = 0;
    *pp = p + 1;
    return out;
  }
  const char *s = p;
  while (*p && (isalnum((unsigned char)*p) || *p == '_' || (unsigned char)*p >= 0x80)) p++;
  if (p == s) return NULL;
  *pp = p;
  return sqlite3_mprintf("%.*s", (int)(p - s), s);
}

/* A size: digits with an optional K/M/G suffix (and optional B), quoted or
** not.  Returns 0 and *v, or 1 if malformed. */
int lsx_parse_size(const char *s, uint64_t *v) {
  s = skip_space(s);
  char q = *s;
  if (q == '\'' || q == '"') s++;
  if (!isdigit((unsigned char)*s)) return 1;
  uint64_t n = 0;
  while (isdigit((unsigned char)*s)) {
    if (n > (UINT64_MAX - 9) / 10) return 1;
    n = n * 10 + (uint64_t)(*s++ - '0');
  }
  uint64_t mul = 1;
  switch (toupper((unsigned char)*s)) {
    case 'K': mul = 1ull << 10; s++; break;
    case 'M': mul = 1ull << 20; s++; break;
    case 'G': mul = 1ull << 30; s++; break;
  }
  if (mul > 1 && toupper((unsigned char)*s) == 'B') s++;
  if ((q == '\'' || q == '"') && *s++ != q) return 1;
  s = skip_space(s);
  if (*s) return 1;
  if (n > UINT64_MAX / mul) return 1;
  *v = n * mul;
  return 0;
}

/* Is arg an option (NAME = VALUE)?  Sets *value to after the '='. */
static int is_option(const char *arg, char *name, size_t cap, const char **value) {
  const char *p = skip_space(arg);
  size_t n = 0;
  while (isalnum((unsigned char)p[n]) || p[n] == '_') n++;
  if (!n || n >= cap) return 0;
  const char *e = skip_space(p + n);
  if (*e != '=') return 0;
  memcpy(name, p, n);
  name[n] = 0;
  *value = e + 1;
  return 1;
}

/* A cache_size of v bytes: 0 (no cache) up to 1 TiB.  1 and *err if out of
** range. */
int lsx_cache_size_check(uint64_t v, char **err) {
  if (v <= (1ull << 40)) return 0;
  *err = sqlite3_mprintf("cache_size must be at most 1T (1099511627776 bytes), not %llu", (unsigned long long)v);
  return 1;
}

/* on_damage=error|salvage (quoted or not) into *out; 1 if malformed. */
int lsx_on_damage_parse(const char *value, int *out) {
  const char *s = skip_space(value);
  char q = *s == '\'' || *s == '"' ? *s++ : 0;
  size_t n = 0;
  while (isalpha((unsigned char)s[n])) n++;
  const char *e = s + n;
  if (q && *e++ != q) return 1;
  if (*skip_space(e)) return 1;
  if (n == 5 && !sqlite3_strnicmp(s, "error", 5)) *out = LS_ON_DAMAGE_ERROR;
  else if (n == 7 && !sqlite3_strnicmp(s, "salvage", 7)) *out = LS_ON_DAMAGE_SALVAGE;
  else return 1;
  return 0;
}

/* synchronous=off|normal|full, or SQLite's 0|1|2 (quoted or not), into
** *out (LS_SYNC_*); 1 if malformed. */
int lsx_synchronous_parse(const char *value, int *out) {
  static const struct { const char *name; int mode; } names[] = {
    { "off", LS_SYNC_OFF }, { "normal", LS_SYNC_NORMAL }, { "full", LS_SYNC_FULL },
    { "0", LS_SYNC_OFF }, { "1", LS_SYNC_NORMAL }, { "2", LS_SYNC_FULL },
  };
  const char *s = skip_space(value);
  char q = *s == '\'' || *s == '"' ? *s++ : 0;
  size_t n = 0;
  while (isalnum((unsigned char)s[n])) n++;
  const char *e = s + n;
  if (q && *e++ != q) return 1;
  if (*skip_space(e)) return 1;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i].name) == n && !sqlite3_strnicmp(s, names[i].name, (int)n)) {
      *out = names[i].mode;
      return 0;
    }
  return 1;
}

const char *lsx_synchronous_name(int mode) {
  return mode == LS_SYNC_OFF ? "off" : mode == LS_SYNC_NORMAL ? "normal" : "full";
}

static int parse_option(tabdef *d, const char *name, const char *value, char **err) {
  uint64_t v;
  static const char *known[] = { "segment_size", "file_size", "disk_size", "groups", "on_damage", "synchronous",
                                 "sync_interval", "space_target", "cache_size", "order", NULL };
  int k = 0;
  while (known[k] && sqlite3_stricmp(name, known[k])) k++;
  if (!known[k]) {
    *err = sqlite3_mprintf("unknown option '%s' (known: segment_size, file_size, disk_size, groups, on_damage, "
                           "synchronous, sync_interval, space_target, cache_size, order)", name);
    return SQLITE_ERROR;
  }
  if (d->given & (1u << k)) {
    *err = sqlite3_mprintf("option %s given twice", known[k]);
    return SQLITE_ERROR;
  }
  d->given |= 1u << k;
  if (k == 4) {
    if (lsx_on_damage_parse(value, &d->opt.on_damage)) {
      *err = sqlite3_mprintf("option on_damage: %s is not error or salvage", skip_space(value));
      return SQLITE_ERROR;
    }
    return SQLITE_OK;
  }
  if (k == 9) {
    /* A word, quoted or not: order=key, order='key'. */
    const char *p = skip_space(value);
    char q = *p == '\'' || *p == '"' ? *p++ : 0;
    size_t n = 0;
    while (isalpha((unsigned char)p[n])) n++;
    int closed = !q || p[n] == q;
    int word = (n == 3 && !sqlite3_strnicmp(p, "key", 3)) || (n == 5 && !sqlite3_strnicmp(p, "token", 5));
    if (!closed || !word || *skip_space(p + n + (q ? 1 : 0))) {
      *err = sqlite3_mprintf("option order: %s is not token or key", skip_space(value));
      return SQLITE_ERROR;
    }
    d->order = n == 3 ? LS_ORDER_KEY : LS_ORDER_TOKEN;
    return SQLITE_OK;
  }
  if (k == 5) {
    if (lsx_synchronous_parse(value, &d->opt.synchronous)) {
      *err = sqlite3_mprintf("option synchronous: %s is not off, normal or full", skip_space(value));
      return SQLITE_ERROR;
    }
    return SQLITE_OK;
  }
  if (k == 6) {
    const char *p = skip_space(value);
    v = 0;
    while (isdigit((unsigned char)*p) && v <= LS_MAX_SYNC_INTERVAL_MS) v = v * 10 + (uint64_t)(*p++ - '0');
    if (p == skip_space(value) || *skip_space(p) || v < 1 || v > LS_MAX_SYNC_INTERVAL_MS) {
      *err = sqlite3_mprintf("option sync_interval: %s is not a number of milliseconds between 1 and %u",
                             skip_space(value), LS_MAX_SYNC_INTERVAL_MS);
      return SQLITE_ERROR;
    }
    d->opt.sync_interval_ms = (uint32_t)v;
    return SQLITE_OK;
  }
  if (k == 7) {
    const char *p = skip_space(value);
    char q = *p == '\'' || *p == '"' ? *p++ : 0;
    char *end = NULL;
    double x = isdigit((unsigned char)*p) ? strtod(p, &end) : 0;
    if (end && q && *end == q) end++;
    if (!end || *skip_space(end) || !(x >= 1.1 && x <= 100)) {
      *err = sqlite3_mprintf("option space_target: %s is not a number between 1.1 and 100", skip_space(value));
      return SQLITE_ERROR;
    }
    d->opt.space_target = x;
    return SQLITE_OK;
  }
  if (lsx_parse_size(value, &v)) {
    const char *text = skip_space(value);
    int quoted = *text == '\'' || *text == '"';
    if (k == 3)
      *err = sqlite3_mprintf("groups must be a whole number between 1 and 4096, not %s%s%s", quoted ? "" : "'", text,
                             quoted ? "" : "'");
    else
      *err = sqlite3_mprintf("option %s: %s%s%s is not a size (a byte count, or a quoted count with K, M or G)",
                             name, quoted ? "" : "'", text, quoted ? "" : "'");
    return SQLITE_ERROR;
  }
  /* Zero is not "the default": a size given must be a size. */
  if (v == 0 && k < 2) {
    *err = sqlite3_mprintf("%s must be greater than zero", known[k]);
    return SQLITE_ERROR;
  }
  switch (k) {
    case 0: d->opt.segment_size = v; break;
    case 1: d->opt.file_size = v; break;
    case 2: d->opt.disk_size = v; break;
    case 8:
      if (lsx_cache_size_check(v, err)) return SQLITE_ERROR;
      d->opt.cache_size = v ? v : LS_CACHE_NONE;
      break;
    default:
      if (v < 1 || v > 4096) {
        *err = sqlite3_mprintf("groups must be between 1 and 4096, not %llu", (unsigned long long)v);
        return SQLITE_ERROR;
      }
      d->groups = (uint32_t)v;
  }
  return SQLITE_OK;
}

/* Parse one column definition. */
static int parse_column(tabdef *d, const char *arg, char **err) {
  const char *p = arg;
  char *name = parse_ident(&p);
  if (!name) {
    *err = sqlite3_mprintf("cannot read a column name in '%s'", arg);
    return SQLITE_ERROR;
  }
  coldef c = { name, NULL, 0, 0 };
  /* The type: words up to the first constraint keyword. */
  const char *type_start = skip_space(p), *type_end = type_start;
  p = type_start;
  static const char *unsupported[] = { "UNIQUE", "CHECK", "DEFAULT", "REFERENCES", "GENERATED", "AS",
                                       "CONSTRAINT", "AUTOINCREMENT", NULL };
  while (*(p = skip_space(p))) {
    if (keyword(p, "PRIMARY")) {
      const char *k = skip_space(p + 7);
      if (!keyword(k, "KEY")) goto bad;
      c.pk = 1;
      p = k + 3;
      const char *o = skip_space(p);
      if (keyword(o, "ASC")) p = o + 3;
      else if (keyword(o, "DESC")) p = o + 4;
      continue;
    }
    if (keyword(p, "NOT")) {
      const char *k = skip_space(p + 3);
      if (!keyword(k, "NULL")) goto bad;
      c.notnull = 1;
      p = k + 4;
      continue;
    }
    if (keyword(p, "NULL")) { p += 4; continue; }
    if (keyword(p, "COLLATE")) {
      const char *k = skip_space(p + 7);
      if (!keyword(k, "BINARY")) {
        *err = sqlite3_mprintf("column %s: only COLLATE BINARY is supported (keys are compared bytewise)",
                               name);
        goto fail;
      }
      p = k + 6;
      continue;
    }
    for (int i = 0; unsupported[i]; i++)
      if (keyword(p, unsupported[i])) {
        *err = sqlite3_mprintf("column %s: %s is not supported by logstor tables", name, unsupported[i]);
        goto fail;
      }
    if (c.pk || c.notnull) goto bad;        /* type words after a constraint */
    /* A type word, possibly with (n) or (n, m). */
    while (*p && !isspace((unsigned char)*p) && *p != '(') p++;
    if (*p == '(') {
      while (*p && *p != ')') p++;
      if (*p == ')') p++;
    }
    type_end = p;
  }
  c.type = sqlite3_mprintf("%.*s", (int)(type_end - type_start), type_start);
  if (!c.type) goto fail;
  if (!sqlite3_stricmp(name, "token")) {
    *err = sqlite3_mprintf("a column may not be named token: logstor provides the hidden column token");
    goto fail;
  }
  for (int i = 0; i < d->ncol; i++)
    if (!sqlite3_stricmp(d->cols[i].name, name)) {
      *err = sqlite3_mprintf("duplicate column name: %s", name);
      goto fail;
    }
  if (c.pk) {
    if (d->pk >= 0) {
      *err = sqlite3_mprintf("more than one PRIMARY KEY column (%s and %s): logstor keys are one column",
                             d->cols[d->pk].name, name);
      goto fail;
    }
    d->pk = d->ncol;
  }
  if (d->ncol == d->cap) {
    d->cap = d->cap ? 2 * d->cap : 8;
    coldef *n = sqlite3_realloc(d->cols, d->cap * (int)sizeof *n);
    if (!n) goto fail;
    d->cols = n;
  }
  d->cols[d->ncol++] = c;
  return SQLITE_OK;
bad:
  *err = sqlite3_mprintf("cannot parse column definition '%s'", arg);
fail:
  sqlite3_free(c.name);
  sqlite3_free(c.type);
  return *err ? SQLITE_ERROR : SQLITE_NOMEM;
}

/* A table constraint: PRIMARY KEY(col) names the key; others are refused.
** Returns 1 if arg is a table constraint (handled, *rc set), else 0. */
static int table_constraint(tabdef *d, const char *arg, char **pkname, int *rc, char **err) {
  const char *p = skip_space(arg);
  if (keyword(p, "PRIMARY")) {
    const char *k = skip_space(p + 7);
    if (!keyword(k, "KEY")) return 0;
    k = skip_space(k + 3);
    if (*k != '(') {
      *err = sqlite3_mprintf("PRIMARY KEY must follow a column, or name one: PRIMARY KEY(column)");
      *rc = SQLITE_ERROR;
      return 1;
    }
    k++;
    char *name = parse_ident(&k);
    k = skip_space(k);
    if (!name || *k != ')' || *skip_space(k + 1)) {
      sqlite3_free(name);
      *err = sqlite3_mprintf("PRIMARY KEY(...) must name exactly one column: logstor keys are one column");
      *rc = SQLITE_ERROR;
      return 1;
    }
    if (*pkname || d->pk >= 0) {
      sqlite3_free(name);
      *err = sqlite3_mprintf("more than one PRIMARY KEY: logstor keys are one column");
      *rc = SQLITE_ERROR;
      return 1;
    }
    *pkname = name;
    *rc = SQLITE_OK;
    return 1;
  }
  static const char *refused[] = { "UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT", NULL };
  for (int i = 0; refused[i]; i++)
    if (keyword(p, refused[i])) {
      *err = sqlite3_mprintf("table constraint %s is not supported by logstor tables", refused[i]);
      *rc = SQLITE_ERROR;
      return 1;
    }
  return 0;
}

static int parse_args(int argc, const char *const *argv, tabdef *d, char **err) {
  memset(d, 0, sizeof *d);
  d->pk = -1;
  d->groups = 1;
  ls_options_init(&d->opt);
  char *pkname = NULL;
  int rc = SQLITE_OK;
  for (int i = 3; i < argc && !rc; i++) {
    char name[64];
    const char *value;
    if (table_constraint(d, argv[i], &pkname, &rc, err)) continue;
    rc = is_option(argv[i], name, sizeof name, &value) ? parse_option(d, name, value, err)
                                                       : parse_column(d, argv[i], err);
  }
  if (!rc && pkname) {
    if (d->pk >= 0) {
      *err = sqlite3_mprintf("more than one PRIMARY KEY: logstor keys are one column");
      rc = SQLITE_ERROR;
    } else {
      for (int c = 0; c < d->ncol; c++)
        if (!sqlite3_stricmp(d->cols[c].name, pkname)) d->pk = c;
      if (d->pk < 0) {
        *err = sqlite3_mprintf("PRIMARY KEY(%s): no such column", pkname);
        rc = SQLITE_ERROR;
      }
    }
  }
  sqlite3_free(pkname);
  if (rc) return rc;
  if (d->ncol == 0) {
    *err = sqlite3_mprintf("no columns: declare at least the key, as in logstor(pk, v)");
    return SQLITE_ERROR;
  }
  if (d->pk < 0) d->pk = 0;
  return SQLITE_OK;
}

static int declare(sqlite3 *db, const tabdef *d) {
  sqlite3_str *s = sqlite3_str_new(db);
  sqlite3_str_appendall(s, "CREATE TABLE x(");
  for (int i = 0; i < d->ncol; i++)
    sqlite3_str_appendf(s, "%s\"%w\" %s%s", i ? ", " : "", d->cols[i].name, d->cols[i].type,
                        i == d->pk ? " PRIMARY KEY" : "");
  sqlite3_str_appendall(s, ", token HIDDEN) WITHOUT ROWID");
  char *sql = sqlite3_str_finish(s);
  if (!sql) return SQLITE_NOMEM;
  int rc = sqlite3_declare_vtab(db, sql);
  sqlite3_free(sql);
  return rc;
}

static void vtab_free(ls_vtab *t) {
  if (!t) return;
  for (int i = 0; i < t->ncol; i++) sqlite3_free(t->cols[i]);
  sqlite3_free(t->cols);
  sqlite3_free(t->aff);
  sqlite3_free(t->notnull);
  lsx_buf_free(&t->kbuf);
  lsx_buf_free(&t->obuf);
  lsx_buf_free(&t->rbuf);
  sqlite3_free(t->enc);
  lsx_cursor_free(t->spare);
  ls_value_free(&t->old);
  sqlite3_free(t->name);
  sqlite3_free(t->base.zErrMsg);
  sqlite3_free(t);
}

static ls_vtab *vtab_new(sqlite3 *db, ls_db *ldb, const char *name, tabdef *d) {
  ls_vtab *t = sqlite3_malloc(sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->db = db;
  t->ldb = ldb;
  t->ncol = d->ncol;
  t->pk = d->pk;
  t->keyed = d->order == LS_ORDER_KEY;
  t->name = sqlite3_mprintf("%s", name);
  t->cols = sqlite3_malloc(d->ncol * (int)sizeof(char *));
  t->aff = sqlite3_malloc(d->ncol);
  t->notnull = sqlite3_malloc(d->ncol);
  if (!t->name || !t->cols || !t->aff || !t->notnull) { vtab_free(t); return NULL; }
  for (int i = 0; i < d->ncol; i++) {
    t->cols[i] = d->cols[i].name;            /* ownership moves */
    d->cols[i].name = NULL;
    t->aff[i] = (uint8_t)lsx_affinity(d->cols[i].type);
    t->notnull[i] = (uint8_t)(d->cols[i].notnull || i == d->pk);
  }
  return t;
}

/* Run one SQL statement with a bound integer (-1: none). */
static int exec1(sqlite3 *db, const char *sql, sqlite3_int64 bind) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc) return rc;
  if (bind >= 0) sqlite3_bind_int64(st, 1, bind);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int check_sizes(ls_db *ldb, const ls_options *o, char **err) {
  ls_stats s;
  ls_stats_get(ldb->eng, &s);
  struct { const char *n; uint64_t want, have; } v[] = {
    { "segment_size", o->segment_size, s.segment_size },
    { "file_size", o->file_size, s.file_size },
    { "disk_size", o->disk_size, s.disk_size },
  };
  for (int i = 0; i < 3; i++)
    if (v[i].want && v[i].want != v[i].have) {
      *err = sqlite3_mprintf("%s %llu does not match %llu, fixed when the data directory %s was created",
                             v[i].n, (unsigned long long)v[i].want, (unsigned long long)v[i].have, ldb->dir);
      return SQLITE_ERROR;
    }
  return SQLITE_OK;
}

/* Read the table's id and owner from its shadow table and check them
** against the data directory.  SQLITE_OK, or an error with *err set. */
static int read_shadow(ls_vtab *t, char **err) {
  ls_db *ldb = t->ldb;
  ls_table_info info;
  char *sql = sqlite3_mprintf("SELECT id, owner FROM \"%w\".\"%w_logstor\" WHERE id > 0", ldb->schema, t->name);
  sqlite3_stmt *st = NULL;
  int rc = sql ? sqlite3_prepare_v2(t->db, sql, -1, &st, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    uint32_t id = (uint32_t)sqlite3_column_int64(st, 0);
    const char *owner = (const char *)sqlite3_column_text(st, 1);
    rc = SQLITE_OK;
    if (!ldb->eng) {
      /* Retried: the directory may have been put back. */
      rc = lsx_db_get(ldb->conn, ldb->schema, &ldb, NULL, 0, err);
      if (!rc && !ldb->eng) {
        *err = lsx_db_absent(ldb);
        rc = SQLITE_CANTOPEN;
      }
      if (rc) t->absent = 1;
    }
    if (!rc) {
      rc = lsx_db_owner(ldb, owner ? owner : "", 0, err);
      if (rc && rc != SQLITE_IOERR) t->absent = 1;
    }
    if (rc) {
      /* err is set */
    } else if (!ls_table_exists(ldb->eng, id)) {
      *err = sqlite3_mprintf("the data directory %s has no table with id %u (was it removed or replaced? A "
                             "directory elsewhere is opened with the URI parameter logstor_dir; DROP TABLE "
                             "removes the table)", ldb->dir, id);
      rc = SQLITE_CORRUPT_VTAB;
      t->absent = 1;
    } else if (ls_table_info_get(ldb->eng, id, &info) == LS_OK && (info.order == LS_ORDER_KEY) != t->keyed) {
      /* The schema's order option against the engine's: they were made
      ** together and never change, so only an edited schema differs. */
      *err = sqlite3_mprintf("the table is %s-ordered in its data directory, but its schema says order=%s",
                             info.order == LS_ORDER_KEY ? "key" : "token", t->keyed ? "key" : "token");
      rc = SQLITE_CORRUPT_VTAB;
    } else {
      t->id = id;
      /* Keep the engine's label current (a RENAME inside a transaction
      ** that committed since). */
      if (sqlite3_get_autocommit(t->db) && !ldb->eng_readonly) (void)ls_table_rename(ldb->eng, id, t->name);
    }
  } else if (rc == SQLITE_DONE || rc == SQLITE_ERROR) {
    *err = sqlite3_mprintf("the shadow table %s_logstor that holds the table's id is %s", t->name,
                           rc == SQLITE_DONE ? "empty" : "missing");
    rc = SQLITE_CORRUPT_VTAB;
  } else if (!*err) {
    *err = sqlite3_mprintf("cannot read the shadow table %s_logstor: %s", t->name, sqlite3_errmsg(t->db));
  }
  sqlite3_finalize(st);
  return rc;
}

int lsx_vtab_ready(ls_vtab *t) {
  if (t->id) return SQLITE_OK;
  char *err = NULL;
  int rc = read_shadow(t, &err);
  if (rc) {
    sqlite3_free(t->base.zErrMsg);
    t->base.zErrMsg = sqlite3_mprintf("logstor: %s: %s", t->name, err ? err : sqlite3_errstr(rc));
  }
  sqlite3_free(err);
  return rc;
}

/* Create the engine table and the shadow table of a new table t. */
static int create_table(sqlite3 *db, ls_vtab *t, const char *schema, const char *name, uint32_t groups,
                        int order, char **err) {
  ls_db *ldb = t->ldb;
  /* Every shadow table of a database names the same owner. */
  char claimed[40] = "";
  lsx_database_owner(db, schema, claimed);
  int rc = lsx_db_owner(ldb, claimed, 1, err);
  /* Inside BEGIN the CREATE can be rolled back to a savepoint, which only
  ** the sentinel hears of (txn.c). */
  if (!rc && !sqlite3_get_autocommit(db)) rc = lsx_txn_join(ldb->conn, err);
  if (rc) return rc;
  int erc = ls_table_create_ex(ldb->eng, name, groups, order, 0, &t->id);
  if (erc) {
    *err = sqlite3_mprintf("%s", ls_errmsg());
    return lsx_sqlite_code(erc);
  }
  char *sql = sqlite3_mprintf("CREATE TABLE \"%w\".\"%w_logstor\"(id INTEGER, owner TEXT)", schema, name);
  char *ins = sqlite3_mprintf("INSERT INTO \"%w\".\"%w_logstor\"(id, owner) VALUES(?, %Q)", schema, name,
                              ldb->owner);
  rc = sql && ins ? exec1(db, sql, -1) : SQLITE_NOMEM;
  if (!rc) rc = exec1(db, ins, t->id);
  sqlite3_free(sql);
  sqlite3_free(ins);
  /* Undone if the transaction (or savepoint) that creates it rolls back. */
  if (!rc) rc = lsx_txn_change(ldb, t->id, 0);
  if (rc) {
    if (!*err) *err = sqlite3_mprintf("cannot create the shadow table %s_logstor: %s", name, sqlite3_errmsg(db));
    (void)lsx_db_drop(ldb, t->id);   /* the create failed either way */
    t->id = 0;
  }
  return rc;
}

static int init(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                char **pzErr, int create) {
  ls_conn *conn = aux;
  const char *schema = argv[1], *name = argv[2];
  tabdef d;
  char *err = NULL;
  ls_vtab *t = NULL;
  ls_db *ldb = NULL;
  int rc = parse_args(argc, argv, &d, &err);
  /* Connecting never creates the data directory: a table whose directory
  ** is absent connects, fails at its first use, and can be dropped. */
  if (!rc) {
    /* A database that already has logstor tables never makes their
    ** directory anew (a new table would take an old one's id). */
    char claimed[40] = "";
    if (create) lsx_database_owner(db, schema, claimed);
    rc = lsx_db_get(conn, schema, &ldb, &d.opt, create && !claimed[0], &err);
    if (!rc && !ldb->eng && create) {
      char *m = lsx_db_absent(ldb);
      err = m ? sqlite3_mprintf("%s. A new logstor table needs the others dropped first (it would take the "
                                  "id of one of them)", m)
              : NULL;
      sqlite3_free(m);
      rc = SQLITE_CANTOPEN;
    }
  }
  if (!rc && ldb->eng) rc = check_sizes(ldb, &d.opt, &err);
  if (!rc && ldb->eng && (d.given & (1u << 7))) (void)ls_space_target(ldb->eng, d.opt.space_target);
  if (!rc && ldb->eng && (d.given & (3u << 5))) {
    /* synchronous and sync_interval: the data directory's, as its tables
    ** say when they open (the URI parameter wins). */
    const char *file = sqlite3_db_filename(db, schema);
    int mode = file && *file && sqlite3_uri_parameter(file, "logstor_synchronous") ? LS_SYNC_DEFAULT
                                                                                  : d.opt.synchronous;
    (void)ls_synchronous(ldb->eng, mode, d.opt.sync_interval_ms);
  }
  if (!rc) rc = declare(db, &d);
  if (!rc) {
    t = vtab_new(db, ldb, name, &d);
    if (!t) rc = SQLITE_NOMEM;
  }
  /* A new table is made now; an existing one is read at its first use
  ** (lsx_vtab_ready). */
  if (!rc && create) rc = create_table(db, t, schema, name, d.groups, d.order, &err);
  if (!rc) {
    sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1);
    lsx_db_reconcile(ldb);
  }
  tabdef_free(&d);
  if (rc) {
    vtab_free(t);
    if (err) {
      *pzErr = sqlite3_mprintf("logstor: %s: %s", name, err);
      sqlite3_free(err);
    }
    *out = NULL;
    return rc;
  }
  *out = &t->base;
  return SQLITE_OK;
}

static int lsx_create(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                      char **pzErr) {
  return init(db, aux, argc, argv, out, pzErr, 1);
}

static int lsx_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                       char **pzErr) {
  return init(db, aux, argc, argv, out, pzErr, 0);
}

static int lsx_disconnect(sqlite3_vtab *vtab) {
  vtab_free((ls_vtab *)vtab);
  return SQLITE_OK;
}

/* DROP TABLE.  The shadow table goes with the user's transaction; the
** engine table goes once SQLite's commit is certain (txn.c: the sentinel
** hears of it), so a DROP that fails to commit or is rolled back, also to
** a savepoint, keeps the data.  Writes to the table earlier in the
** transaction stay in it: they are committed with it (and die with the
** table) or restored with it. */
static int lsx_destroy(sqlite3_vtab *vtab) {
  ls_vtab *t = (ls_vtab *)vtab;
  ls_db *ldb = t->ldb;
  char *err = NULL;
  int rc = lsx_vtab_ready(t);
  /* A table whose data is not in the directory (absent, another
  ** database's, or without its id) has nothing to free: the schema entry
  ** and the shadow table go, the engine is not touched. */
  int gone = rc && t->absent;
  if (gone) {
    rc = SQLITE_OK;
    sqlite3_free(vtab->zErrMsg);
    vtab->zErrMsg = NULL;
  }
  if (!rc && !gone) rc = lsx_txn_join(ldb->conn, &err);
  if (!rc) {
    char *sql = sqlite3_mprintf("DROP TABLE IF EXISTS \"%w\".\"%w_logstor\"", ldb->schema, t->name);
    rc = sql ? exec1(t->db, sql, -1) : SQLITE_NOMEM;
    sqlite3_free(sql);
    if (rc) err = sqlite3_mprintf("cannot drop the shadow table: %s", sqlite3_errmsg(t->db));
  }
  if (!rc && !gone) rc = lsx_txn_change(ldb, t->id, 1);
  if (rc) {
    if (err) {
      sqlite3_free(vtab->zErrMsg);
      vtab->zErrMsg = sqlite3_mprintf("logstor: %s: %s", t->name, err);
      sqlite3_free(err);
    }
    return rc;
  }
  vtab_free(t);
  return SQLITE_OK;
}

static int lsx_rename(sqlite3_vtab *vtab, const char *zNew) {
  ls_vtab *t = (ls_vtab *)vtab;
  int rc = lsx_vtab_ready(t);
  if (rc) return rc;
  char *sql = sqlite3_mprintf("ALTER TABLE \"%w\".\"%w_logstor\" RENAME TO \"%w_logstor\"", t->ldb->schema,
                              t->name, zNew);
  rc = sql ? exec1(t->db, sql, -1) : SQLITE_NOMEM;
  sqlite3_free(sql);
  if (rc) {
    sqlite3_free(vtab->zErrMsg);
    vtab->zErrMsg = sqlite3_mprintf("logstor: %s: cannot rename the shadow table: %s", t->name,
                                    sqlite3_errmsg(t->db));
    return rc;
  }
  /* The label follows at once in autocommit mode; inside a transaction
  ** (which may roll back) the next first use in autocommit mode sets it. */
  if (sqlite3_get_autocommit(t->db)) (void)ls_table_rename(t->ldb->eng, t->id, zNew);
  char *n = sqlite3_mprintf("%s", zNew);
  if (n) { sqlite3_free(t->name); t->name = n; }
  return SQLITE_OK;
}

static int lsx_shadow_name(const char *suffix) { return !sqlite3_stricmp(suffix, "logstor"); }

static sqlite3_module logstor_module = {
  /* iVersion    */ 3,
  /* xCreate     */ lsx_create,
  /* xConnect    */ lsx_connect,
  /* xBestIndex  */ lsx_best_index,
  /* xDisconnect */ lsx_disconnect,
  /* xDestroy    */ lsx_destroy,
  /* xOpen       */ lsx_open,
  /* xClose      */ lsx_close,
  /* xFilter     */ lsx_filter,
  /* xNext       */ lsx_next,
  /* xEof        */ lsx_eof,
  /* xColumn     */ lsx_column,
  /* xRowid      */ lsx_rowid,
  /* xUpdate     */ lsx_update,
  /* xBegin      */ lsx_begin,
  /* xSync       */ lsx_sync,
  /* xCommit     */ lsx_commit,
  /* xRollback   */ lsx_rollback,
  /* xFindFunction */ 0,
  /* xRename     */ lsx_rename,
  /* xSavepoint  */ lsx_savepoint,
  /* xRelease    */ lsx_release,
  /* xRollbackTo */ lsx_rollback_to,
  /* xShadowName */ lsx_shadow_name,
#if SQLITE_VERSION_NUMBER >= 3044000
  /* xIntegrity  */ 0,
#endif
};

int lsx_register_vtab(sqlite3 *db, ls_conn *conn) {
  return sqlite3_create_module_v2(db, "logstor", &logstor_module, conn, lsx_conn_free);
}
