/*
** db.c -- the engine of each database a connection uses.
**
** Where the data lives.  The logstor tables of a database keep their data in
** one directory beside the database file, "<database path>-logstor" (named
** like SQLite's -wal and -journal files).  The URI parameter logstor_dir
** (file:app.db?logstor_dir=/fast/disk) places it elsewhere; the path never
** comes from the schema, so a database file received from someone else can
** not point the engine at other files.  A ":memory:" or temporary database
** gets a private temporary directory, removed when the connection closes.
** Every connection of the process that opens the same directory shares one
** engine (the engine's registry); another process gets SQLITE_BUSY.
**
** An absent directory.  Only CREATE VIRTUAL TABLE makes the directory, and
** only in a database without logstor tables or with its directory there.
** A table of a database whose directory does not exist (a copied .db file)
** connects with its ls_db "absent" (eng NULL): every use fails with
** lsx_db_absent's message, DROP TABLE removes only the schema entry and the
** shadow table (vtab.c), and nothing is created.  The directory is looked
** for again at each use, so putting it back needs no reopen.
**
** Transactions.  All logstor tables of one database share the connection's
** transaction on that database's engine (txn.c), so a SQLite transaction
** that writes several of them commits them as one engine transaction.
**
** Orphans.  A crash between creating an engine table and SQLite's commit of
** the CREATE, or between SQLite's commit of a DROP and the engine drop,
** leaves an engine table that no shadow table names.  The tables that
** existed when the engine instance opened the directory (ls_open_tables:
** handed to one connection only, before any connection of this process can
** have a CREATE in flight) are checked against the committed shadow tables
** at the first statement in autocommit mode, and those no shadow table
** names are dropped.  A shadow table that can not be read stops the check:
** an error is never taken for absence.
*/
#include "logstor_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

void lsx_rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
      if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
      char *sub = sqlite3_mprintf("%s/%s", path, de->d_name);
      if (sub) { unlink(sub); sqlite3_free(sub); }
    }
    closedir(d);
  }
  rmdir(path);
}

static void db_free(ls_db *d) {
  if (d->txn) ls_txn_free(d->txn);
  ls_txn_free(d->spare_read);
  free(d->orphans);
  sqlite3_free(d->changes);
  if (d->eng) ls_close(d->eng);
  if (d->tmpdir && d->dir) lsx_rm_tree(d->dir);
  sqlite3_free(d->schema);
  sqlite3_free(d->dir);
  sqlite3_free(d->marks);
  sqlite3_free(d->dropped);
  sqlite3_free(d->drows);
  sqlite3_free(d);
}

void lsx_conn_free(void *p) {
  ls_conn *conn = p;
  while (conn->dbs) {
    ls_db *d = conn->dbs;
    conn->dbs = d->next;
    db_free(d);
  }
  ls_thread_cleanup();
  sqlite3_free(conn);
}

ls_db *lsx_db_find(ls_conn *conn, const char *schema) {
  for (ls_db *d = conn->dbs; d; d = d->next)
    if (!sqlite3_stricmp(d->schema, schema)) return d;
  return NULL;
}

/* The data directory of schema: from the URI parameter, beside the file,
** or a new private temporary directory. */
static int data_dir(sqlite3 *db, const char *schema, char **dir, int *tmp, char **pzErr) {
  const char *file = sqlite3_db_filename(db, schema);
  *tmp = 0;
  if (file && *file) {
    const char *over = sqlite3_uri_parameter(file, "logstor_dir");
    *dir = over && *over ? sqlite3_mprintf("%s", over) : sqlite3_mprintf("%s-logstor", file);
    return *dir ? SQLITE_OK : SQLITE_NOMEM;
  }
  const char *base = getenv("TMPDIR");
  char *tmpl = sqlite3_mprintf("%s/logstor-%s-XXXXXX", base && *base ? base : "/tmp",
                               !sqlite3_stricmp(schema, "temp") ? "temp" : "mem");
  if (!tmpl) return SQLITE_NOMEM;
  if (!mkdtemp(tmpl)) {
    *pzErr = sqlite3_mprintf("cannot create a temporary directory for schema %s: %s", schema,
                             strerror(errno));
    sqlite3_free(tmpl);
    return SQLITE_CANTOPEN;
  }
  *dir = tmpl;
  *tmp = 1;
  return SQLITE_OK;
}

int lsx_shadow_each(sqlite3 *db, const char *schema, int (*fn)(void *arg, const char *name), void *arg) {
  char *sql = sqlite3_mprintf("SELECT name FROM \"%w\".sqlite_schema WHERE type='table' AND name LIKE "
                              "'%%\\_logstor' ESCAPE '\\'", schema);
  if (!sql) return SQLITE_NOMEM;
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  sqlite3_free(sql);
  if (rc) return rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rc = fn(arg, (const char *)sqlite3_column_text(st, 0));
    if (rc) break;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Run sql (one %w for the shadow table's name after the schema's) and
** hand each row to fn; SQLITE_DONE from fn stops early. */
typedef struct shadow_query {
  sqlite3 *db;
  const char *schema;
  const char *sql;                 /* "SELECT ... FROM \"%w\".\"%w\" ..." */
  int (*row)(struct shadow_query *q, sqlite3_stmt *st);
  void *arg;
  int64_t param;                   /* bound to ?1 if the query has it */
  const char *name;                /* the shadow table being read */
} shadow_query;

static int shadow_query_one(void *arg, const char *name) {
  shadow_query *q = arg;
  q->name = name;
  /* (A query may name the shadow table twice: extra arguments are unused.) */
  char *sql = sqlite3_mprintf(q->sql, q->schema, name, q->schema, name);
  sqlite3_stmt *st = NULL;
  int rc = sql ? sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  if (!rc && sqlite3_bind_parameter_count(st)) sqlite3_bind_int64(st, 1, q->param);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) rc = q->row(q, st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

typedef struct id_list { uint32_t *v; int n, cap; } id_list;

static int collect_id(shadow_query *q, sqlite3_stmt *st) {
  id_list *l = q->arg;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    uint32_t *p = sqlite3_realloc(l->v, cap * (int)sizeof *p);
    if (!p) return SQLITE_NOMEM;
    l->v = p;
    l->cap = cap;
  }
  l->v[l->n++] = (uint32_t)sqlite3_column_int64(st, 0);
  return SQLITE_OK;
}

/* Ids named by the shadow tables of schema, in a malloc'ed array.  Any
** error (a shadow table that can not be read) is returned, never taken for
** an absent id.  (Rows with a negative id are decisions, txn.c.) */
static int shadow_ids(sqlite3 *db, const char *schema, uint32_t **ids, int *n) {
  id_list l = { 0 };
  shadow_query q = { db, schema, "SELECT id FROM \"%w\".\"%w\" WHERE id > 0", collect_id, &l, 0, NULL };
  int rc = lsx_shadow_each(db, schema, shadow_query_one, &q);
  if (rc) { sqlite3_free(l.v); l.v = NULL; l.n = 0; }
  *ids = l.v;
  *n = l.n;
  return rc;
}

static int has_id(const uint32_t *ids, int n, uint32_t id) {
  for (int i = 0; i < n; i++)
    if (ids[i] == id) return 1;
  return 0;
}

/* Read dir/OWNER into buf (empty if absent). */
static void owner_read(const char *dir, char *buf, size_t cap) {
  buf[0] = 0;
  char *path = sqlite3_mprintf("%s/OWNER", dir);
  FILE *f = path ? fopen(path, "r") : NULL;
  if (f) {
    if (fgets(buf, (int)cap, f)) buf[strcspn(buf, "\n")] = 0;
    fclose(f);
  }
  sqlite3_free(path);
}

static int copy_owner(shadow_query *q, sqlite3_stmt *st) {
  char *out = q->arg;
  const char *o = (const char *)sqlite3_column_text(st, 0);
  snprintf(out, 40, "%s", o ? o : "");
  return SQLITE_DONE;
}

static int first_only(void *arg, const char *name) {
  int rc = shadow_query_one(arg, name);
  return rc ? rc : SQLITE_DONE;
}

void lsx_database_owner(sqlite3 *db, const char *schema, char out[40]) {
  out[0] = 0;
  shadow_query q = { db, schema, "SELECT owner FROM \"%w\".\"%w\" WHERE id > 0", copy_owner, out, 0, NULL };
  (void)lsx_shadow_each(db, schema, first_only, &q);
}

/* Do this database's shadow tables name the directory's owner? */
static int owned_here(ls_db *d, sqlite3 *db) {
  char owner[40], mine[40];
  owner_read(d->dir, owner, sizeof owner);
  if (!owner[0]) return 0;
  lsx_database_owner(db, d->schema, mine);
  return !strcmp(owner, mine);
}

/* ls_options.decide: did the database commit the transaction with this
** decision id?  Its row is in the shadow table of a table it wrote (txn.c). */
static int found(shadow_query *q, sqlite3_stmt *st) {
  (void)st;
  *(int *)q->arg = 1;
  return SQLITE_DONE;
}

static int decide(void *arg, uint64_t id) {
  ls_db *d = arg;
  int yes = 0;
  shadow_query q = { d->conn->db, d->schema, "SELECT 1 FROM \"%w\".\"%w\" WHERE id = ?1", found, &yes,
                     -(int64_t)id, NULL };
  int rc = lsx_shadow_each(d->conn->db, d->schema, shadow_query_one, &q);
  return rc ? -1 : yes;
}

/* The message for a database whose data directory does not exist. */
char *lsx_db_absent(const ls_db *d) {
  return sqlite3_mprintf("the data directory %s does not exist: the rows of this database's logstor tables "
                         "live there, not in the .db file (a copy of the .db file alone -- cp, .backup, "
                         "VACUUM INTO -- has none: copy the directory with it). If the directory is "
                         "elsewhere, open the database with the URI parameter logstor_dir "
                         "(file:DB?logstor_dir=PATH); DROP TABLE removes the table", d->dir);
}

static int dir_exists(const char *dir) {
  struct stat st;
  return stat(dir, &st) == 0;
}

/* Open d's engine: creating the directory only if create is set.  Without
** it, a directory that does not exist leaves d->eng NULL (d "absent"): the
** tables of such a database connect, fail at their first use with
** lsx_db_absent's message, and can be dropped; nothing is created. */
static int db_open(ls_db *d, const ls_options *opt, int create, char **pzErr) {
  /* A database open read-only (sqlite3 -readonly, SQLITE_OPEN_READONLY)
  ** opens its directory read-only: shared with other read-only processes,
  ** nothing written. */
  const char *file = sqlite3_db_filename(d->conn->db, d->schema);
  int readonly = !d->tmpdir && sqlite3_db_readonly(d->conn->db, d->schema) == 1;
  if (!d->tmpdir && (!create || readonly) && !dir_exists(d->dir)) return SQLITE_OK;
  ls_options o;
  if (opt) o = *opt; else ls_options_init(&o);
  o.create = 1;
  o.readonly = readonly;
  /* The URI parameter logstor_on_damage wins over the table option. */
  const char *od = file && *file ? sqlite3_uri_parameter(file, "logstor_on_damage") : NULL;
  if (od && lsx_on_damage_parse(od, &o.on_damage)) {
    *pzErr = sqlite3_mprintf("URI parameter logstor_on_damage: %s is not error or salvage", od);
    return SQLITE_ERROR;
  }
  const char *sy = file && *file ? sqlite3_uri_parameter(file, "logstor_synchronous") : NULL;
  if (sy && lsx_synchronous_parse(sy, &o.synchronous)) {
    *pzErr = sqlite3_mprintf("URI parameter logstor_synchronous: %s is not off, normal or full", sy);
    return SQLITE_ERROR;
  }
  const char *cs = file && *file ? sqlite3_uri_parameter(file, "logstor_cache_size") : NULL;
  if (cs) {
    uint64_t v;
    if (lsx_parse_size(cs, &v)) {
      *pzErr = sqlite3_mprintf("URI parameter logstor_cache_size: %s is not a size (a byte count, or a count with "
                               "K, M or G)", cs);
      return SQLITE_ERROR;
    }
    if (lsx_cache_size_check(v, pzErr)) return SQLITE_ERROR;
    o.cache_size = v ? v : LS_CACHE_NONE;
  }
  o.decide = decide;
  o.decide_arg = d;
  int erc = ls_open(d->dir, &o, &d->eng);
  if (erc) {
    *pzErr = sqlite3_mprintf("%s", ls_errmsg());
    d->eng = NULL;
    return lsx_sqlite_code(erc);
  }
  d->eng_readonly = o.readonly;
  if (o.readonly || ls_open_tables(d->eng, &d->orphans, &d->norphans)) d->norphans = 0;
  return SQLITE_OK;
}

int lsx_db_get(ls_conn *conn, const char *schema, ls_db **out, const ls_options *opt, int create, char **pzErr) {
  ls_db *d = lsx_db_find(conn, schema);
  if (d) {
    /* An absent directory is looked for again (it may have been put back). */
    int rc = d->eng ? SQLITE_OK : db_open(d, opt, create, pzErr);
    if (!rc) *out = d;
    return rc;
  }
  d = sqlite3_malloc(sizeof *d);
  if (!d) return SQLITE_NOMEM;
  memset(d, 0, sizeof *d);
  d->conn = conn;
  d->schema = sqlite3_mprintf("%s", schema);
  int rc = d->schema ? data_dir(conn->db, schema, &d->dir, &d->tmpdir, pzErr) : SQLITE_NOMEM;
  if (!rc) rc = db_open(d, opt, create, pzErr);
  if (rc) { db_free(d); return rc; }
  d->next = conn->dbs;
  conn->dbs = d;
  *out = d;
  return SQLITE_OK;
}

/* Replace dir/OWNER durably. */
int lsx_owner_write(const char *dir, const char *id) {
  char *tmp = sqlite3_mprintf("%s/OWNER.tmp", dir), *path = sqlite3_mprintf("%s/OWNER", dir);
  int rc = SQLITE_IOERR;
  int fd = tmp ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600) : -1;
  if (fd >= 0) {
    size_t n = strlen(id);
    if (write(fd, id, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0 && rename(tmp, path) == 0) {
      int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) { if (fsync(dfd) == 0) rc = SQLITE_OK; close(dfd); }
    }
    close(fd);
  }
  sqlite3_free(tmp);
  sqlite3_free(path);
  return rc;
}

static int count_table(void *arg, const ls_table_info *t) {
  (void)t;
  (*(int *)arg)++;
  return 0;
}

int lsx_db_owner(ls_db *d, const char *claimed, int create, char **err) {
  char owner[40];
  owner_read(d->dir, owner, sizeof owner);
  if (claimed && *claimed) {
    if (!owner[0] && create) {
      /* The database has tables, their directory is gone: a new table
      ** here would get the id of an old one, whose schema entry would then
      ** read its rows. */
      *err = sqlite3_mprintf("the data directory %s does not hold this database's other logstor tables: "
                             "drop them (DROP TABLE), or open the database with the URI parameter "
                             "logstor_dir naming their directory, before creating a table", d->dir);
      return SQLITE_ERROR;
    } else if (!owner[0]) {
      *err = sqlite3_mprintf("the data directory %s does not hold this database's tables (was it removed or "
                             "replaced? A directory elsewhere is opened with the URI parameter logstor_dir; "
                             "DROP TABLE removes the table)", d->dir);
      return SQLITE_CORRUPT_VTAB;
    } else if (strcmp(owner, claimed)) {
      *err = sqlite3_mprintf("the data directory %s belongs to another database (this one's is opened with "
                             "the URI parameter logstor_dir; DROP TABLE removes the table)", d->dir);
      return SQLITE_ERROR;
    }
    snprintf(d->owner, sizeof d->owner, "%s", claimed);
    return SQLITE_OK;
  }
  /* The database has no logstor table yet -- or none left in the schema
  ** this connection sees: its transaction dropped them all, and their data
  ** goes only when it commits.  A directory this connection already found
  ** named by the database's shadow tables (d->owner) is the database's own. */
  if (!create) return SQLITE_OK;
  if (owner[0]) {
    int n = 0;
    if (strcmp(owner, d->owner)) ls_table_foreach(d->eng, count_table, &n);
    if (n) {
      *err = sqlite3_mprintf("the data directory %s holds the tables of another database", d->dir);
      return SQLITE_ERROR;
    }
  } else {
    unsigned char r[16];
    sqlite3_randomness(sizeof r, r);
    for (int i = 0; i < 16; i++) snprintf(owner + 2 * i, 3, "%02x", r[i]);
    if (lsx_owner_write(d->dir, owner)) goto ioerr;
  }
  snprintf(d->owner, sizeof d->owner, "%s", owner);
  return SQLITE_OK;
ioerr:
  *err = sqlite3_mprintf("cannot write %s/OWNER: %s", d->dir, strerror(errno));
  return SQLITE_IOERR;
}

int lsx_db_drop(ls_db *d, uint32_t id) {
  int erc = ls_table_drop(d->eng, id);
  if (erc == LS_OK || erc == LS_NOTABLE) return erc;
  uint32_t *p = sqlite3_realloc(d->dropped, (d->ndropped + 1) * (int)sizeof *p);
  if (p) { d->dropped = p; p[d->ndropped++] = id; }
  return erc;
}

void lsx_db_reconcile(ls_db *d) {
  if (!d->eng || (!d->ndropped && !d->norphans) || !sqlite3_get_autocommit(d->conn->db)) return;
  uint32_t *ids = NULL;
  int n = 0;
  if (shadow_ids(d->conn->db, d->schema, &ids, &n) != SQLITE_OK) return;   /* next time */
  /* Orphans only in a directory this database owns (another database's
  ** tables are not ours to drop). */
  if (d->norphans && owned_here(d, d->conn->db)) {
    for (uint32_t i = 0; i < d->norphans; i++)
      if (!has_id(ids, n, d->orphans[i])) {
        int erc = ls_table_drop(d->eng, d->orphans[i]);
        if (erc && erc != LS_NOTABLE) break;       /* the rest wait for the next open */
      }
  }
  free(d->orphans);
  d->orphans = NULL;
  d->norphans = 0;
  int keep = 0;
  for (int i = 0; i < d->ndropped; i++) {
    if (has_id(ids, n, d->dropped[i])) continue;   /* named again: not ours to drop */
    int erc = ls_table_drop(d->eng, d->dropped[i]);
    if (erc && erc != LS_NOTABLE) d->dropped[keep++] = d->dropped[i];   /* tried again later */
  }
  d->ndropped = keep;
  sqlite3_free(ids);
}

/* The id of table name in schema if it is a logstor table: SQLITE_OK,
** SQLITE_NOTFOUND, or an error. */
static int table_id(sqlite3 *db, const char *schema, const char *name, uint32_t *id) {
  char *sql = sqlite3_mprintf("SELECT id FROM \"%w\".sqlite_schema AS s, \"%w\".\"%w_logstor\" "
                              "WHERE s.type = 'table' AND s.name = %Q AND s.sql LIKE 'CREATE VIRTUAL TABLE%%' AND id > 0",
                              schema, schema, name, name);
  sqlite3_stmt *st = NULL;
  int rc = sql ? sqlite3_prepare_v2(db, sql, -1, &st, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  if (rc == SQLITE_ERROR) return SQLITE_NOTFOUND;    /* no such shadow table */
  if (rc) return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *id = (uint32_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? SQLITE_OK : rc == SQLITE_DONE ? SQLITE_NOTFOUND : rc;
}

int lsx_resolve_table(ls_conn *conn, const char *arg, ls_db **out, uint32_t *id, char **table, char **err) {
  sqlite3 *db = conn->db;
  char *schema = NULL, *name = NULL;
  int rc = SQLITE_NOTFOUND;
  /* "schema.table" with an attached schema of that name ... */
  const char *dot = strchr(arg, '.');
  if (dot) {
    schema = sqlite3_mprintf("%.*s", (int)(dot - arg), arg);
    name = sqlite3_mprintf("%s", dot + 1);
    rc = schema && name ? (sqlite3_db_filename(db, schema) ? table_id(db, schema, name, id) : SQLITE_NOTFOUND)
                        : SQLITE_NOMEM;
  }
  /* ... else the whole argument is a table name (it may hold dots),
  ** found as SQLite finds an unqualified name: temp, main, attached. */
  if (rc == SQLITE_NOTFOUND) {
    sqlite3_free(schema);
    sqlite3_free(name);
    schema = name = NULL;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_database_list ORDER BY seq <> 1, seq", -1, &st, NULL);
    while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      const char *sch = (const char *)sqlite3_column_text(st, 0);
      rc = table_id(db, sch, arg, id);
      if (rc == SQLITE_OK) {
        schema = sqlite3_mprintf("%s", sch);
        name = sqlite3_mprintf("%s", arg);
        if (!schema || !name) rc = SQLITE_NOMEM;
        break;
      }
      if (rc == SQLITE_NOTFOUND) rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK && !schema) rc = SQLITE_NOTFOUND;
  }
  if (rc == SQLITE_OK) {
    rc = lsx_db_get(conn, schema, out, NULL, 0, err);
    if (!rc && !(*out)->eng) {
      char *m = lsx_db_absent(*out);
      *err = m ? sqlite3_mprintf("logstor: %s: %s", arg, m) : NULL;
      sqlite3_free(m);
      rc = SQLITE_CANTOPEN;
    }
    if (!rc) lsx_db_reconcile(*out);
  } else if (rc == SQLITE_NOTFOUND) {
    *err = sqlite3_mprintf("logstor: no logstor table %s", arg);
    rc = SQLITE_ERROR;
  } else if (!*err) {
    *err = sqlite3_mprintf("logstor: %s: %s", arg, sqlite3_errmsg(db));
  }
  if (!rc && table) { *table = name; name = NULL; }
  sqlite3_free(schema);
  sqlite3_free(name);
  return rc;
}

/* ---- decided commits ------------------------------------------------------ */

/* Run one statement of sql (%w: schema, shadow table) with ?1 bound. */
static int exec_bound(sqlite3 *db, const char *sql_fmt, const char *schema, const char *name, int64_t v) {
  char *sql = sqlite3_mprintf(sql_fmt, schema, name);
  sqlite3_stmt *st = NULL;
  int rc = sql ? sqlite3_prepare_v2(db, sql, -1, &st, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  if (!rc) {
    sqlite3_bind_int64(st, 1, v);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Decision rows of finished transactions go (those the engine no longer
** holds in doubt: their COMMIT record is durable, or they never counted),
** except the transaction's own. */
static int prune_decisions(ls_db *d, const char *name) {
  sqlite3 *db = d->conn->db;
  char *sql = sqlite3_mprintf("SELECT id FROM \"%w\".\"%w\" WHERE id < 0", d->schema, name);
  sqlite3_stmt *st = NULL;
  int rc = sql ? sqlite3_prepare_v2(db, sql, -1, &st, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  int64_t gone[16];
  int n = 0;
  while (rc == SQLITE_OK && n < 16 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    rc = SQLITE_OK;
    int64_t v = sqlite3_column_int64(st, 0);
    if (v < 0 && v != -(int64_t)d->decision && !ls_decision_pending(d->eng, (uint64_t)-v)) gone[n++] = v;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) rc = SQLITE_OK;
  for (int i = 0; !rc && i < n; i++)
    rc = exec_bound(db, "DELETE FROM \"%w\".\"%w\" WHERE id = ?1", d->schema, name, gone[i]);
  return rc;
}

int lsx_db_note_write(ls_db *d, const char *table, uint32_t id) {
  if (!d->conn->explicit_txn || d->tmpdir) return SQLITE_OK;
  for (int i = 0; i < d->ndrows; i++)
    if (d->drows[i] == id) return SQLITE_OK;
  if (d->ndrows == d->capdrows) {
    int cap = d->capdrows ? 2 * d->capdrows : 4;
    uint32_t *p = sqlite3_realloc(d->drows, cap * (int)sizeof *p);
    if (!p) return SQLITE_NOMEM;
    d->drows = p;
    d->capdrows = cap;
  }
  if (!d->decision) {
    sqlite3_randomness(sizeof d->decision, &d->decision);
    d->decision = (d->decision >> 2) | 1;      /* nonzero, and its negation fits */
  }
  /* The statements below must leave no trace the user can see: the
  ** running statement sets changes() when it ends, last_insert_rowid()
  ** is put back here. */
  sqlite3 *db = d->conn->db;
  sqlite3_int64 last = sqlite3_last_insert_rowid(db);
  char *name = sqlite3_mprintf("%s_logstor", table);
  int rc = name ? prune_decisions(d, name) : SQLITE_NOMEM;
  if (!rc) rc = exec_bound(db, "INSERT INTO \"%w\".\"%w\"(id, owner) VALUES(?1, NULL)", d->schema, name,
                           -(int64_t)d->decision);
  sqlite3_free(name);
  sqlite3_set_last_insert_rowid(db, last);
  if (!rc) d->drows[d->ndrows++] = id;
  return rc;
}

/* Has every shadow table of a table the transaction writes its row? */
typedef struct verify { ls_db *d; int written, missing; } verify;

static int check_row(shadow_query *q, sqlite3_stmt *st) {
  verify *v = q->arg;
  if (!ls_txn_writes(v->d->txn, (uint32_t)sqlite3_column_int64(st, 0))) return SQLITE_DONE;
  v->written++;
  v->missing += sqlite3_column_int(st, 1) == 0;
  return SQLITE_DONE;
}

int lsx_db_prepare_decided(ls_db *d, int *decided) {
  *decided = 0;
  if (!d->decision) return SQLITE_OK;
  sqlite3 *db = d->conn->db;
  verify v = { d, 0, 0 };
  /* %w twice: the query names its own table for the count. */
  char *sql = sqlite3_mprintf("SELECT id, (SELECT count(*) FROM \"%%w\".\"%%w\" WHERE id = %lld) FROM \"%%w\".\"%%w\" "
                              "WHERE id > 0", -(long long)d->decision);
  if (!sql) return SQLITE_NOMEM;
  shadow_query q = { db, d->schema, sql, check_row, &v, 0, NULL };
  int rc = lsx_shadow_each(db, d->schema, shadow_query_one, &q);
  sqlite3_free(sql);
  if (rc || !v.written || v.missing) return rc;     /* prepared plainly */
  rc = ls_txn_prepare_decided(d->txn, d->decision);
  *decided = !rc;
  return rc;                       /* negative: the engine's */
}
