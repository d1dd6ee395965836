/*
** stats.c -- the eponymous tables logstor_stats and logstor_segments.
**
**   SELECT * FROM logstor_stats;                 -- the main database
**   SELECT * FROM logstor_stats('aux');          -- an attached one
**   logstor_stats(scope, name, value, schema HIDDEN)
**       scope 'engine' for counters of the data directory, or a table name
**       for that table's counters.
**   logstor_segments(id, kind, state, table_name, group_id, live_bytes, seq,
**                    schema HIDDEN)
**       one row per segment of the data files.
**
** Both read a snapshot taken in xFilter.  A database whose data directory
** does not exist yields no rows (the directory is not created by looking).
** Both are SQLITE_VTAB_DIRECTONLY: not usable from triggers or views.
*/
#include "logstor_int.h"

#include <string.h>
#include <sys/stat.h>

typedef struct srow {
  char *c[5];                      /* text columns (NULL: none) */
  sqlite3_int64 i[4];              /* integer columns */
  double d;                        /* a REAL value */
  int type;                        /* for logstor_stats.value: INTEGER, FLOAT or TEXT */
} srow;

typedef struct stab {
  sqlite3_vtab base;
  ls_conn *conn;
  int segments;                    /* 1: logstor_segments, 0: logstor_stats */
} stab;

typedef struct scur {
  sqlite3_vtab_cursor base;
  srow *rows;
  int n, cap, pos;
} scur;

static int stats_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                         char **pzErr, int segments) {
  (void)argc; (void)argv; (void)pzErr;
  int rc = sqlite3_declare_vtab(db, segments
      ? "CREATE TABLE x(id INTEGER, kind TEXT, state TEXT, table_name TEXT, group_id INTEGER, "
        "live_bytes INTEGER, seq INTEGER, schema HIDDEN)"
      : "CREATE TABLE x(scope TEXT, name TEXT, value, schema HIDDEN)");
  if (rc) return rc;
  stab *t = sqlite3_malloc(sizeof *t);
  if (!t) return SQLITE_NOMEM;
  memset(t, 0, sizeof *t);
  t->conn = aux;
  t->segments = segments;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *out = &t->base;
  return SQLITE_OK;
}

static int stats_connect0(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **e) {
  return stats_connect(db, aux, argc, argv, out, e, 0);
}
static int stats_connect1(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **e) {
  return stats_connect(db, aux, argc, argv, out, e, 1);
}

static int stats_disconnect(sqlite3_vtab *v) {
  sqlite3_free(v->zErrMsg);
  sqlite3_free(v);
  return SQLITE_OK;
}

static int stats_best_index(sqlite3_vtab *v, sqlite3_index_info *info) {
  int schemacol = ((stab *)v)->segments ? 7 : 3;
  info->idxNum = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (c->iColumn == schemacol && c->op == SQLITE_INDEX_CONSTRAINT_EQ) {
      if (!c->usable) return SQLITE_CONSTRAINT;
      info->aConstraintUsage[i].argvIndex = 1;
      info->aConstraintUsage[i].omit = 1;
      info->idxNum = 1;
    }
  }
  info->estimatedCost = 100;
  return SQLITE_OK;
}

static int stats_open(sqlite3_vtab *v, sqlite3_vtab_cursor **out) {
  (void)v;
  scur *c = sqlite3_malloc(sizeof *c);
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof *c);
  *out = &c->base;
  return SQLITE_OK;
}

static void clear_rows(scur *c) {
  for (int r = 0; r < c->n; r++)
    for (int k = 0; k < 5; k++) sqlite3_free(c->rows[r].c[k]);
  sqlite3_free(c->rows);
  c->rows = NULL;
  c->n = c->cap = c->pos = 0;
}

static int stats_close(sqlite3_vtab_cursor *cur) {
  clear_rows((scur *)cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

static srow *add_row(scur *c) {
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 64;
    srow *p = sqlite3_realloc(c->rows, cap * (int)sizeof *p);
    if (!p) return NULL;
    c->rows = p;
    c->cap = cap;
  }
  srow *r = &c->rows[c->n++];
  memset(r, 0, sizeof *r);
  return r;
}

static int add_int(scur *c, const char *scope, const char *name, uint64_t v) {
  srow *r = add_row(c);
  if (!r) return SQLITE_NOMEM;
  r->c[0] = sqlite3_mprintf("%s", scope);
  r->c[1] = sqlite3_mprintf("%s", name);
  r->i[0] = (sqlite3_int64)v;
  r->type = SQLITE_INTEGER;
  return r->c[0] && r->c[1] ? SQLITE_OK : SQLITE_NOMEM;
}

static int add_real(scur *c, const char *scope, const char *name, double v) {
  int rc = add_int(c, scope, name, 0);
  if (rc) return rc;
  c->rows[c->n - 1].d = v;
  c->rows[c->n - 1].type = SQLITE_FLOAT;
  return SQLITE_OK;
}

static int add_text(scur *c, const char *scope, const char *name, const char *v) {
  srow *r = add_row(c);
  if (!r) return SQLITE_NOMEM;
  r->c[0] = sqlite3_mprintf("%s", scope);
  r->c[1] = sqlite3_mprintf("%s", name);
  r->c[2] = sqlite3_mprintf("%s", v ? v : "");
  r->type = SQLITE_TEXT;
  return r->c[0] && r->c[1] && r->c[2] ? SQLITE_OK : SQLITE_NOMEM;
}

static int table_rows(void *arg, const ls_table_info *t) {
  scur *c = arg;
  const char *s = t->name;
  /* The names engine counters use for the same quantities. */
  return add_int(c, s, "id", t->id) || add_int(c, s, "rows", t->rows) ||
         add_int(c, s, "records_live", t->records_live) || add_int(c, s, "bytes_live", t->live_bytes) ||
         add_int(c, s, "index_bytes", t->index_bytes) || add_int(c, s, "groups", t->groups);
}

/* A logstor_backup of this database running in the process (backup.c). */
static int backup_rows(void *arg, const char *path, const lsx_backup_progress *p) {
  scur *c = arg;
  const char *s = "backup";
  return add_text(c, s, "path", path) || add_int(c, s, "pages_copied", (uint64_t)p->pages_copied) ||
         add_int(c, s, "pages_total", (uint64_t)p->pages_total) || add_int(c, s, "rows_copied", p->rows_copied) ||
         add_int(c, s, "rows_total", p->rows_total) ? SQLITE_NOMEM : SQLITE_OK;
}

typedef struct names { uint32_t *id; char **name; int n, cap; } names;

static int collect_name(void *arg, const ls_table_info *t) {
  names *x = arg;
  if (x->n == x->cap) {
    x->cap = x->cap ? 2 * x->cap : 16;
    uint32_t *i = sqlite3_realloc(x->id, x->cap * (int)sizeof *i);
    char **s = sqlite3_realloc(x->name, x->cap * (int)sizeof *s);
    if (i) x->id = i;
    if (s) x->name = s;
    if (!i || !s) return 1;
  }
  x->id[x->n] = t->id;
  x->name[x->n++] = sqlite3_mprintf("%s", t->name);
  return 0;
}

typedef struct segctx { scur *c; names *nm; } segctx;

static int segment_row(void *arg, const ls_segment_info *s) {
  segctx *x = arg;
  srow *r = add_row(x->c);
  if (!r) return 1;
  r->i[0] = s->id;
  r->c[1] = sqlite3_mprintf("%s", s->kind);
  r->c[2] = sqlite3_mprintf("%s", s->state);
  for (int i = 0; s->table && i < x->nm->n; i++)
    if (x->nm->id[i] == s->table) r->c[3] = sqlite3_mprintf("%s", x->nm->name[i]);
  r->i[1] = s->group;
  r->i[2] = (sqlite3_int64)s->live_bytes;
  r->i[3] = (sqlite3_int64)s->seq;
  return 0;
}

/* The engine of schema in *out if its data directory exists (never creates
** it; NULL when it does not).  SQLITE_OK, or an error with *err set: no
** such schema, or the engine can not be opened (SQLITE_BUSY: another
** process has it). */
static int engine_of(ls_conn *conn, const char *schema, ls_engine **out, char **err) {
  *out = NULL;
  ls_db *d = lsx_db_find(conn, schema);
  if (!d) {
    const char *file = sqlite3_db_filename(conn->db, schema);
    if (!file) {
      *err = sqlite3_mprintf("no such database: %s", schema);
      return SQLITE_ERROR;
    }
    if (!*file) return SQLITE_OK;                  /* temp/memory: nothing until used */
    const char *over = sqlite3_uri_parameter(file, "logstor_dir");
    char *dir = over && *over ? sqlite3_mprintf("%s", over) : sqlite3_mprintf("%s-logstor", file);
    struct stat st;
    int exists = dir && stat(dir, &st) == 0;
    sqlite3_free(dir);
    if (!exists) return SQLITE_OK;
    int rc = lsx_db_get(conn, schema, &d, NULL, 0, err);
    if (rc) return rc;
  }
  lsx_db_reconcile(d);                /* orphans and failed drops, in autocommit mode */
  *out = d->eng;
  return SQLITE_OK;
}

static int stats_filter(sqlite3_vtab_cursor *cur, int idxNum, const char *idxStr, int argc, sqlite3_value **argv) {
  scur *c = (scur *)cur;
  stab *t = (stab *)cur->pVtab;
  (void)idxStr; (void)argc;
  clear_rows(c);
  const char *schema = idxNum ? (const char *)sqlite3_value_text(argv[0]) : "main";
  if (!schema) return SQLITE_OK;
  char *err = NULL;
  ls_engine *e;
  int erc = engine_of(t->conn, schema, &e, &err);
  if (erc) {
    sqlite3_free(t->base.zErrMsg);
    t->base.zErrMsg = sqlite3_mprintf("logstor: %s", err ? err : sqlite3_errstr(erc));
    sqlite3_free(err);
    return erc;
  }
  if (!e) return SQLITE_OK;
  int rc = SQLITE_OK;
  if (t->segments) {
    names nm = {0};
    ls_table_foreach(e, collect_name, &nm);
    segctx x = { c, &nm };
    if (ls_segment_foreach(e, segment_row, &x)) rc = SQLITE_NOMEM;
    for (int i = 0; i < nm.n; i++) sqlite3_free(nm.name[i]);
    sqlite3_free(nm.id);
    sqlite3_free(nm.name);
    return rc;
  }
  ls_stats s;
  ls_stats_get(e, &s);
  const char *g = "engine";
  struct { const char *n; uint64_t v; } v[] = {
    { "bytes_written", s.bytes_written }, { "user_bytes_written", s.user_bytes_written },
    { "records_live", s.records_live }, { "rows", s.rows }, { "bytes_live", s.bytes_live },
    { "index_bytes", s.index_bytes },
    { "segments_total", s.segments_total }, { "segments_free", s.segments_free },
    { "segments_used", s.segments_used }, { "data_file_bytes", s.data_file_bytes },
    { "commits", s.commits }, { "commit_groups", s.commit_groups },
    { "writer_handoffs", s.writer_handoffs }, { "syncs", s.syncs },
    { "conflicts", s.conflicts }, { "reads", s.reads }, { "recovery_ms", s.recovery_ms },
    { "recovery_records", s.recovery_records }, { "recovery_segments", s.recovery_segments },
    { "recovery_checkpoint", s.recovery_checkpoint },
    { "doubts_resolved", s.doubts_resolved },
    { "write_seq", s.write_seq }, { "failed", (uint64_t)s.failed }, { "segment_size", s.segment_size },
    { "file_size", s.file_size }, { "disk_size", s.disk_size },
    { "segments_compacted", s.segments_compacted }, { "compaction_bytes_written", s.compaction_bytes_written },
    { "compaction_records_relocated", s.compaction_records_relocated },
    { "compaction_records_dropped", s.compaction_records_dropped }, { "tombstones_dropped", s.tombstones_dropped },
    { "separator_bytes_written", s.separator_bytes_written },
    { "separator_records_relocated", s.separator_records_relocated },
    { "separator_segments_adopted", s.separator_segments_adopted },
    { "separator_buffers_in_use", s.separator_buffers_in_use }, { "separator_delay_us", s.separator_delay_us },
    { "segments_freed_by_separator", s.segments_freed_by_separator }, { "segments_freed", s.segments_freed },
    { "mixed_segments", s.mixed_segments }, { "format_bytes_written", s.format_bytes_written },
    { "meta_bytes_written", s.meta_bytes_written },
    { "damaged_ranges", s.damaged_ranges }, { "damaged_bytes", s.damaged_bytes },
    { "snapshots_active", s.snapshots_active }, { "snapshot_versions", s.snapshot_versions },
    { "snapshot_bytes", s.snapshot_bytes }, { "snapshots_expired", s.snapshots_expired },
    { "cache_size", s.cache_size }, { "cache_bytes", s.cache_bytes }, { "cache_entries", s.cache_entries },
    { "cache_hits", s.cache_hits }, { "cache_misses", s.cache_misses },
  };
  for (size_t i = 0; !rc && i < sizeof v / sizeof v[0]; i++) rc = add_int(c, g, v[i].n, v[i].v);
  if (!rc) rc = add_real(c, g, "write_amplification", s.write_amplification);
  if (!rc) rc = add_real(c, g, "space_amplification", s.space_amplification);
  if (!rc) rc = add_text(c, g, "io_backend", s.io_backend);
  if (!rc) rc = add_text(c, g, "version", LOGSTOR_VERSION);
  if (!rc && ls_table_foreach(e, table_rows, c)) rc = SQLITE_NOMEM;
  if (!rc) rc = lsx_backup_progress_of(e, backup_rows, c);
  return rc;
}

static int stats_next(sqlite3_vtab_cursor *cur) {
  ((scur *)cur)->pos++;
  return SQLITE_OK;
}

static int stats_eof(sqlite3_vtab_cursor *cur) {
  scur *c = (scur *)cur;
  return c->pos >= c->n;
}

static int stats_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  scur *c = (scur *)cur;
  stab *t = (stab *)cur->pVtab;
  srow *r = &c->rows[c->pos];
  if (t->segments) {
    switch (col) {
      case 0: sqlite3_result_int64(ctx, r->i[0]); break;
      case 1: case 2: sqlite3_result_text(ctx, r->c[col], -1, SQLITE_TRANSIENT); break;
      case 3: if (r->c[3]) sqlite3_result_text(ctx, r->c[3], -1, SQLITE_TRANSIENT); break;
      case 4: sqlite3_result_int64(ctx, r->i[1]); break;
      case 5: sqlite3_result_int64(ctx, r->i[2]); break;
      case 6: sqlite3_result_int64(ctx, r->i[3]); break;
    }
    return SQLITE_OK;
  }
  switch (col) {
    case 0: case 1: sqlite3_result_text(ctx, r->c[col], -1, SQLITE_TRANSIENT); break;
    case 2:
      if (r->type == SQLITE_TEXT) sqlite3_result_text(ctx, r->c[2], -1, SQLITE_TRANSIENT);
      else if (r->type == SQLITE_FLOAT) sqlite3_result_double(ctx, r->d);
      else sqlite3_result_int64(ctx, r->i[0]);
      break;
  }
  return SQLITE_OK;
}

static int stats_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
  *rowid = ((scur *)cur)->pos;
  return SQLITE_OK;
}

#define STATS_MODULE(name, connect) \
static sqlite3_module name = { \
  /* iVersion */ 0, /* xCreate */ 0, /* xConnect */ connect, /* xBestIndex */ stats_best_index, \
  /* xDisconnect */ stats_disconnect, /* xDestroy */ 0, /* xOpen */ stats_open, \
  /* xClose */ stats_close, /* xFilter */ stats_filter, /* xNext */ stats_next, /* xEof */ stats_eof, \
  /* xColumn */ stats_column, /* xRowid */ stats_rowid, /* xUpdate */ 0, /* xBegin */ 0, /* xSync */ 0, \
  /* xCommit */ 0, /* xRollback */ 0, /* xFindFunction */ 0, /* xRename */ 0, /* xSavepoint */ 0, \
  /* xRelease */ 0, /* xRollbackTo */ 0, /* xShadowName */ 0 \
}

STATS_MODULE(stats_module, stats_connect0);
STATS_MODULE(segments_module, stats_connect1);

int lsx_register_stats(sqlite3 *db, ls_conn *conn) {
  int rc = sqlite3_create_module_v2(db, "logstor_stats", &stats_module, conn, NULL);
  if (!rc) rc = sqlite3_create_module_v2(db, "logstor_segments", &segments_module, conn, NULL);
  return rc;
}
