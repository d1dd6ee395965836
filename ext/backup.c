/*
** backup.c -- logstor_backup(path): an online, consistent copy of the main
** database, its native tables and its logstor tables as of one moment.
**
**   SELECT logstor_backup('/backup/app.db');
**
** makes /backup/app.db (through SQLite's backup API) and, when the database
** has logstor tables, /backup/app.db-logstor/ (a fresh data directory
** holding every row of them), and returns the number of logstor rows
** copied.  The copy opens as any database does: its shadow tables name the
** same table ids and owner as the original's, and its directory has them.
**
** One moment.  Commits of one database file are ordered by SQLite's write
** lock, and an engine transaction written from SQL is prepared while its
** connection holds that lock and published just after SQLite's commit
** (txn.c).  So the backup
**   1. takes the write lock on a connection of its own (BEGIN IMMEDIATE):
**      no commit can start;
**   2. waits for the engine to have no prepared transaction left (those of
**      commits SQLite finished and whose publish is under way);
**   3. starts a read transaction on a second connection of its own (the
**      source of the .db copy) and an engine snapshot (the source of the
**      rows): both see exactly the commits made before step 1;
**   4. lets the write lock go.  Writers then go on: in WAL mode at once; in
**      rollback-journal mode once the .db file is copied (the read lock
**      keeps them from committing, as for any reader).
** The .db file is copied first (its read transaction ends as early as
** possible), then the rows, from the snapshot, into a new engine.  The
** snapshot keeps old versions within the engine's bounds (README,
** "Isolation"); a copy that outlasts them fails with SQLITE_BUSY and can be
** retried.  A read-only database needs no lock: nothing can write its
** logstor tables.  An in-memory database is copied from the calling
** connection itself (no other connection can write it).
**
** Anything that fails removes what the backup made.  logstor_stats shows a
** running backup of its database under scope 'backup' (path,
** pages_copied, pages_total, rows_copied, rows_total; all 0 while it waits
** for the write lock).
*/
#include "logstor_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BACKUP_TXN_BYTES (1u << 20)      /* rows copied per engine commit */
#define BACKUP_PAGES 256                 /* pages per sqlite3_backup_step */
#define BACKUP_DEFAULT_TIMEOUT_MS 5000   /* without a busy timeout set */

/* ---- progress (logstor_stats) ----------------------------------------------- */

typedef struct backup_job {
  ls_engine *eng;                  /* the source's engine */
  char *path;
  lsx_backup_progress p;
  struct backup_job *next;
} backup_job;

static pthread_mutex_t jobs_lock = PTHREAD_MUTEX_INITIALIZER;
static backup_job *jobs;

int lsx_backup_progress_of(ls_engine *e, int (*fn)(void *arg, const char *path, const lsx_backup_progress *p),
                           void *arg) {
  int rc = 0;
  pthread_mutex_lock(&jobs_lock);
  for (backup_job *j = jobs; j && !rc; j = j->next)
    if (j->eng == e) rc = fn(arg, j->path, &j->p);
  pthread_mutex_unlock(&jobs_lock);
  return rc;
}

static void job_update(backup_job *j, const lsx_backup_progress *p) {
  if (!j->eng) return;
  pthread_mutex_lock(&jobs_lock);
  j->p = *p;
  pthread_mutex_unlock(&jobs_lock);
}

static void job_list(backup_job *j, int add) {
  if (!j->eng) return;
  pthread_mutex_lock(&jobs_lock);
  if (add) {
    j->next = jobs;
    jobs = j;
  } else {
    for (backup_job **pp = &jobs; *pp; pp = &(*pp)->next)
      if (*pp == j) { *pp = j->next; break; }
  }
  pthread_mutex_unlock(&jobs_lock);
}

/* ---- the backup ---------------------------------------------------------------- */

typedef struct backup {
  ls_conn *conn;
  const char *path;                /* the new .db file */
  char *dir;                       /* path-logstor */
  int made_file, made_dir;         /* what to remove on failure */
  const char *vfs;                 /* the source's VFS */
  int timeout_ms;
  int64_t busy_until;              /* busy_retry gives up then */
  sqlite3 *lock;                   /* holds the write lock (step 1) */
  sqlite3 *reader;                 /* reads the source (step 3) */
  sqlite3 *src;                    /* the source of the .db copy */
  ls_db *ldb;                      /* the source's engine */
  ls_txn *snap;                    /* its snapshot */
  uint32_t *ids;                   /* logstor tables, ascending */
  int nids, capids;
  char owner[40];
  ls_engine *dst;                  /* the copy's engine */
  backup_job job;
  lsx_backup_progress p;
  char *err;                       /* sqlite3_malloc'ed message */
} backup;

static int fail(backup *b, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *m = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_free(b->err);
  b->err = m;
  return rc;
}

static int fail_engine(backup *b, int erc, const char *what) {
  return fail(b, lsx_sqlite_code(erc), "%s: %s", what, ls_errmsg());
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* The busy timeout of the calling connection (PRAGMA busy_timeout), or the
** default when none is set: how long the backup waits for writers. */
static int busy_timeout(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  int ms = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA main.busy_timeout", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    ms = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return ms > 0 ? ms : BACKUP_DEFAULT_TIMEOUT_MS;
}

/* The busy handler of the backup's own connections: retries every 100 us
** until the timeout.  (SQLite's busy timeout sleeps up to 100 ms between
** tries, and a writer committing in a loop in rollback-journal mode takes
** the lock again well within that: the backup would starve.) */
static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int busy_retry(void *arg, int count) {
  backup *b = arg;
  if (count == 0) b->busy_until = now_us() + (int64_t)b->timeout_ms * 1000;
  else if (now_us() >= b->busy_until) return 0;
  struct timespec ts = { 0, 100000 };
  nanosleep(&ts, NULL);
  return 1;
}

static int open_conn(backup *b, const char *file, int flags, sqlite3 **out, const char *what) {
  int rc = sqlite3_open_v2(file, out, flags, b->vfs);
  if (rc) {
    rc = fail(b, rc, "cannot open %s %s: %s", what, file, *out ? sqlite3_errmsg(*out) : sqlite3_errstr(rc));
    sqlite3_close(*out);
    *out = NULL;
    return rc;
  }
  sqlite3_busy_handler(*out, busy_retry, b);
  return SQLITE_OK;
}

static int exec(backup *b, sqlite3 *db, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  return rc ? fail(b, rc, "%s: %s", sql, sqlite3_errmsg(db)) : SQLITE_OK;
}

/* Collect the id and owner of each shadow table of the source (read in the
** source's read transaction: the tables of the backup's moment). */
typedef struct shadow_arg { backup *b; int rc; } shadow_arg;

static int add_id(backup *b, uint32_t id) {
  if (b->nids == b->capids) {
    int cap = b->capids ? 2 * b->capids : 16;
    uint32_t *p = sqlite3_realloc(b->ids, cap * (int)sizeof *p);
    if (!p) return SQLITE_NOMEM;
    b->ids = p;
    b->capids = cap;
  }
  b->ids[b->nids++] = id;
  return SQLITE_OK;
}

static int shadow_one(void *arg, const char *name) {
  shadow_arg *a = arg;
  backup *b = a->b;
  char *sql = sqlite3_mprintf("SELECT id, owner FROM main.\"%w\" WHERE id > 0", name);
  sqlite3_stmt *st = NULL;
  int rc = sql ? sqlite3_prepare_v2(b->src, sql, -1, &st, NULL) : SQLITE_NOMEM;
  sqlite3_free(sql);
  while (!rc && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *o = (const char *)sqlite3_column_text(st, 1);
    if (!b->owner[0] && o) snprintf(b->owner, sizeof b->owner, "%s", o);
    rc = add_id(b, (uint32_t)sqlite3_column_int64(st, 0));
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return SQLITE_OK;
  a->rc = fail(b, rc, "cannot read the shadow table %s: %s", name, sqlite3_errmsg(b->src));
  return a->rc;
}

static int cmp_id(const void *x, const void *y) {
  uint32_t a = *(const uint32_t *)x, c = *(const uint32_t *)y;
  return a < c ? -1 : a > c;
}

/* Steps 1-4 (above): the source's read transaction and engine snapshot of
** one moment. */
static int take_moment(backup *b) {
  sqlite3 *db = b->conn->db;
  const char *file = sqlite3_db_filename(db, "main");
  int is_file = file && *file;
  int readonly = sqlite3_db_readonly(db, "main") == 1;
  /* The engine, if the database has a data directory (never created
  ** here), opened before the lock is taken (recovery may take a while). */
  char *err = NULL;
  int rc = lsx_db_get(b->conn, "main", &b->ldb, NULL, 0, &err);
  if (rc) rc = fail(b, rc, "%s", err ? err : sqlite3_errstr(rc));
  sqlite3_free(err);
  if (rc) return rc;
  /* Listed from now on (logstor_stats: all zero while it waits for the
  ** write lock). */
  if (b->ldb->eng) {
    b->job.path = sqlite3_mprintf("%s", b->path);
    if (!b->job.path) return SQLITE_NOMEM;
    b->job.eng = b->ldb->eng;
    job_list(&b->job, 1);
  }
  if (is_file) {
    if (!readonly) rc = open_conn(b, file, SQLITE_OPEN_READWRITE, &b->lock, "the database");
    if (!rc) rc = open_conn(b, file, readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE, &b->reader,
                            "the database");
    if (!rc && b->lock) rc = exec(b, b->lock, "BEGIN IMMEDIATE");
    b->src = b->reader;
  } else {
    b->src = db;                   /* in memory: nobody else writes it */
  }
  ls_engine *eng = b->ldb->eng;
  if (eng && b->lock) {
    int erc = ls_wait_unprepared(eng, (uint32_t)b->timeout_ms);
    if (erc) rc = fail_engine(b, erc, "waiting for the commits under way");
  }
  if (!rc && is_file) rc = exec(b, b->reader, "BEGIN; SELECT count(*) FROM main.sqlite_schema");
  if (!rc) {
    shadow_arg a = { b, SQLITE_OK };
    int src = lsx_shadow_each(b->src, "main", shadow_one, &a);
    if (a.rc) rc = a.rc;
    else if (src) rc = fail(b, src, "cannot read the schema: %s", sqlite3_errmsg(b->src));
  }
  if (!rc && b->nids) {
    if (!eng) {
      char *m = lsx_db_absent(b->ldb);
      rc = fail(b, SQLITE_CANTOPEN, "%s", m ? m : "the data directory does not exist");
      sqlite3_free(m);
    } else if ((rc = lsx_db_owner(b->ldb, b->owner, 0, &err)) != SQLITE_OK) {
      /* The directory is another database's (as the tables' use says). */
      rc = fail(b, rc, "%s", err ? err : sqlite3_errstr(rc));
      sqlite3_free(err);
    } else {
      int erc = ls_txn_begin_read(eng, &b->snap);
      if (erc) rc = fail_engine(b, erc, "cannot start a snapshot");
    }
  }
  if (!rc && b->nids) {
    qsort(b->ids, (size_t)b->nids, sizeof *b->ids, cmp_id);
    /* Under the write lock no commit changes these: the snapshot's rows. */
    for (int i = 0; i < b->nids; i++) {
      ls_table_info info;
      if (ls_table_info_get(eng, b->ids[i], &info) == LS_OK) b->p.rows_total += info.rows;
    }
  }
  if (b->lock) {
    (void)sqlite3_exec(b->lock, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(b->lock);
    b->lock = NULL;
  }
  return rc;
}

/* The .db file, through SQLite's backup API, from the read transaction. */
static int copy_file(backup *b) {
  sqlite3 *dst = NULL;
  b->made_file = 1;
  int rc = open_conn(b, b->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &dst, "the backup file");
  if (rc) return rc;
  sqlite3_backup *bk = sqlite3_backup_init(dst, "main", b->src, "main");
  if (!bk) {
    rc = fail(b, sqlite3_errcode(dst), "cannot start the copy of the database file: %s", sqlite3_errmsg(dst));
  } else {
    do {
      rc = sqlite3_backup_step(bk, BACKUP_PAGES);
      b->p.pages_total = sqlite3_backup_pagecount(bk);
      b->p.pages_copied = b->p.pages_total - sqlite3_backup_remaining(bk);
      job_update(&b->job, &b->p);
    } while (rc == SQLITE_OK);
    int frc = sqlite3_backup_finish(bk);
    if (rc == SQLITE_DONE) rc = frc;
    if (rc) rc = fail(b, rc, "copying the database file into %s: %s", b->path, sqlite3_errmsg(dst));
  }
  if (sqlite3_close(dst) && !rc) rc = fail(b, SQLITE_IOERR, "cannot close %s", b->path);
  return rc;
}

/* Copy the rows of table id as the snapshot sees them into the copy. */
static int copy_table(backup *b, uint32_t id) {
  ls_engine *src = b->ldb->eng;
  ls_cursor *c = NULL;
  ls_txn *t = NULL;
  uint64_t bytes = 0;
  int erc = ls_cursor_open(src, b->snap, id, &c);
  if (!erc) erc = ls_cursor_seek(c, INT64_MIN);
  while (!erc && ls_cursor_valid(c)) {
    const ls_value *v = ls_cursor_row(c);
    if (!t) erc = ls_txn_begin(b->dst, &t);
    if (!erc) {
      ls_key k;
      ls_key_set(&k, v->key, v->key_len);
      erc = ls_txn_put(t, id, &k, v->data, v->len);
      bytes += v->key_len + v->len;
      b->p.rows_copied++;
    }
    if (!erc && bytes >= BACKUP_TXN_BYTES) {
      erc = ls_txn_commit(t);
      ls_txn_free(t);
      t = NULL;
      bytes = 0;
      job_update(&b->job, &b->p);
    }
    if (!erc) erc = ls_cursor_next(c);
  }
  if (!erc && t) erc = ls_txn_commit(t);
  int rc = erc ? fail_engine(b, erc, "copying the rows") : SQLITE_OK;
  if (t) ls_txn_free(t);
  if (c) ls_cursor_close(c);
  job_update(&b->job, &b->p);
  return rc;
}

/* The copy's data directory: same sizes, owner, table ids, groups and
** labels as the source's, every row of the snapshot. */
static int copy_rows(backup *b) {
  ls_engine *src = b->ldb->eng;
  ls_stats s;
  ls_stats_get(src, &s);
  ls_options o;
  ls_options_init(&o);
  o.segment_size = s.segment_size;
  o.file_size = s.file_size;
  o.disk_size = s.disk_size;
  o.create = 1;
  o.cache_size = LS_CACHE_NONE;
  o.synchronous = LS_SYNC_NORMAL;  /* the close syncs */
  b->made_dir = 1;
  int erc = ls_open(b->dir, &o, &b->dst);
  if (erc) return fail_engine(b, erc, "cannot create the data directory of the copy");
  int rc = lsx_owner_write(b->dir, b->owner);
  if (rc) return fail(b, rc, "cannot write %s/OWNER: %s", b->dir, strerror(errno));
  for (int i = 0; i < b->nids; i++) {
    ls_table_info info;
    erc = ls_table_info_get(src, b->ids[i], &info);
    if (erc) return fail_engine(b, erc, "a table of the backup");
    erc = ls_table_create_ex(b->dst, info.name, info.groups, info.order, info.id, NULL);
    if (erc) return fail_engine(b, erc, "creating a table of the copy");
    rc = copy_table(b, info.id);
    if (rc) return rc;
  }
  ls_close(b->dst);                /* syncs every commit */
  b->dst = NULL;
  return SQLITE_OK;
}

static void backup_cleanup(backup *b, int failed) {
  if (b->snap) ls_txn_free(b->snap);
  if (b->lock) sqlite3_close(b->lock);
  if (b->reader) sqlite3_close(b->reader);
  if (b->dst) ls_close(b->dst);
  job_list(&b->job, 0);
  if (failed) {
    static const char *sfx[] = { "", "-journal", "-wal", "-shm" };
    for (int i = 0; b->made_file && i < 4; i++) {
      char *f = sqlite3_mprintf("%s%s", b->path, sfx[i]);
      if (f) unlink(f);
      sqlite3_free(f);
    }
    if (b->made_dir) lsx_rm_tree(b->dir);
  }
  sqlite3_free(b->ids);
  sqlite3_free(b->dir);
  sqlite3_free(b->job.path);
}

/* Make the copy; SQLITE_OK, or an error with b->err set. */
static int backup_run(backup *b) {
  sqlite3 *db = b->conn->db;
  if (!sqlite3_get_autocommit(db))
    return fail(b, SQLITE_ERROR, "logstor_backup can not run inside a transaction (BEGIN ... COMMIT): it takes "
                                 "the database's write lock for a moment");
  b->dir = sqlite3_mprintf("%s-logstor", b->path);
  if (!b->dir) return SQLITE_NOMEM;
  static const char *sfx[] = { "", "-journal", "-wal", "-shm", "-logstor" };
  for (int i = 0; i < 5; i++) {
    char *f = sqlite3_mprintf("%s%s", b->path, sfx[i]);
    if (!f) return SQLITE_NOMEM;
    int there = exists(f);
    int rc = there ? fail(b, SQLITE_CANTOPEN, "%s exists: a backup goes into a new file (and a new directory %s)",
                          f, b->dir)
                   : SQLITE_OK;
    sqlite3_free(f);
    if (rc) return rc;
  }
  sqlite3_vfs *vfs = NULL;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) == SQLITE_OK && vfs) b->vfs = vfs->zName;
  b->timeout_ms = busy_timeout(db);
  int rc = take_moment(b);
  job_update(&b->job, &b->p);
  if (!rc) rc = copy_file(b);
  if (b->reader) {
    (void)sqlite3_exec(b->reader, "COMMIT", NULL, NULL, NULL);   /* writers may commit again */
    sqlite3_close(b->reader);
    b->reader = NULL;
  }
  if (!rc && b->nids) rc = copy_rows(b);
  return rc;
}

static void fn_backup(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  backup b;
  memset(&b, 0, sizeof b);
  b.conn = sqlite3_user_data(ctx);
  int rc;
  if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
    rc = fail(&b, SQLITE_MISMATCH, "path must be text (the new database file), not %s",
              sqlite3_value_type(argv[0]) == SQLITE_NULL ? "NULL" : "a number or blob");
  } else if (!*(b.path = (const char *)sqlite3_value_text(argv[0]))) {
    rc = fail(&b, SQLITE_MISUSE, "path is empty");
  } else {
    rc = backup_run(&b);
  }
  backup_cleanup(&b, rc != SQLITE_OK);
  if (rc) {
    char *m = sqlite3_mprintf("logstor: backup%s%s: %s", b.path && *b.path ? " into " : "", b.path ? b.path : "",
                              b.err ? b.err : sqlite3_errstr(rc));
    sqlite3_result_error(ctx, m ? m : "logstor: backup failed", -1);
    sqlite3_result_error_code(ctx, rc);
    sqlite3_free(m);
  } else {
    sqlite3_result_int64(ctx, (sqlite3_int64)b.p.rows_copied);
  }
  sqlite3_free(b.err);
}

int lsx_register_backup(sqlite3 *db, ls_conn *conn) {
  return sqlite3_create_function_v2(db, "logstor_backup", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, conn, fn_backup, 0, 0,
                                    0);
}
