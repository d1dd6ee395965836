/*
** engine.c -- opening and closing an engine, the process registry, the
** table catalog and the background thread.
**
** Opening a directory:
**   1. open the directory, take its identity (st_dev, st_ino);
**   2. if this process has it open already, share that engine (refcount);
**   3. flock(LOCK) exclusively and without waiting: another process gets
**      LS_BUSY (flock locks belong to the open file description, so closing
**      some other descriptor of the file can not drop them);
**   4. read the manifest, or write a new one for an empty directory;
**   5. recover (scan the data files), start the writer and the background
**      thread.
** The last ls_close stops and joins both threads before returning, so no
** engine thread outlives its users (a loadable extension may be unloaded
** right after).
**
** Catalog changes are made durable in the manifest first, then published
** to readers as a new catalog array; the old array and any dropped table
** are freed after ls_guard_wait.  Drop and truncate run on the writer
** thread (writer_call) so they are ordered with every commit.
*/
#include "engine_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static ls_engine *reg_head;

void ls_options_init(ls_options *o) { memset(o, 0, sizeof *o); }

void ls_value_free(ls_value *v) {
  free(v->mem);
  memset(v, 0, sizeof *v);
}

uint32_t ls_max_value(ls_engine *e, uint32_t key_len) {
  uint32_t m = ls_max_record(e->seg_size);
  return key_len + LS_REC_HDR >= m ? 0 : m - LS_REC_HDR - key_len;
}

/* ---- helpers used by the other modules ---------------------------------- */

ls_table *eng_table(ls_engine *e, uint32_t id) {
  ls_catalog *c = atomic_load(&e->catalog);
  return id < c->cap ? c->t[id] : NULL;
}

int eng_lookup(ls_engine *e, uint32_t table, const idx_key *key, uint64_t *word) {
  ls_table *t = eng_table(e, table);
  if (!t) return ls_err(LS_NOTABLE, "no table with id %u", table);
  pthread_rwlock_rdlock(&t->lock);
  if (!idx_get(t->idx, key, word)) *word = 0;
  pthread_rwlock_unlock(&t->lock);
  return LS_OK;
}

int eng_install(ls_engine *e, ls_table *t, const idx_key *key, uint64_t word, uint64_t *old) {
  uint64_t prev = 0;
  int had;
  if (loc_tomb(word)) {
    if (!idx_get(t->idx, key, &prev)) return INSTALL_DEAD;
    idx_put(t->idx, key, word, NULL);            /* replaces: never allocates */
    had = 1;
  } else {
    had = idx_put(t->idx, key, word, &prev);
    /* Out of memory after the data is durable: the row is on disk and a
    ** restart finds it.  Leave the old entry; count the new record dead. */
    if (had < 0) return INSTALL_DEAD;
  }
  seg_account(&e->sm, word, +1);
  atomic_fetch_add(&t->live_bytes, loc_size(word));
  if (!loc_tomb(word)) atomic_fetch_add(&t->rows, 1);
  if (!had) return INSTALL_NEW;
  seg_account(&e->sm, prev, -1);
  atomic_fetch_sub(&t->live_bytes, loc_size(prev));
  if (!loc_tomb(prev)) atomic_fetch_sub(&t->rows, 1);
  *old = prev;
  return INSTALL_REPLACED;
}

void eng_problem(ls_engine *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&e->problems_lock);
  size_t len = e->problems ? strlen(e->problems) : 0;
  ls_vappend_line(&e->problems, &len, fmt, ap);
  pthread_mutex_unlock(&e->problems_lock);
  va_end(ap);
}

void eng_fail(ls_engine *e, const char *what) {
  if (atomic_load(&e->failed)) return;
  snprintf(e->fail_msg, sizeof e->fail_msg,
           "the engine is read-only after a failed write (%s); reopen the database to write again",
           what);
  atomic_store(&e->failed, 1);
}

/* ---- background thread: format data files ahead of need ---------------- */

static void *bg_main(void *arg) {
  ls_engine *e = arg;
  pthread_mutex_lock(&e->bg_lock);
  for (;;) {
    while (!e->bg_stop && !e->bg_kick) pthread_cond_wait(&e->bg_cond, &e->bg_lock);
    if (e->bg_stop) break;
    e->bg_kick = 0;
    pthread_mutex_unlock(&e->bg_lock);
    uint32_t low = e->sm.segs_per_file / 4;
    if (low < 2) low = 2;
    /* Zeroed free segments ahead of need: holes first, then new files
    ** (failures resurface to the writer). */
    while (seg_nfree(&e->sm) - seg_npunched(&e->sm) < low && seg_npunched(&e->sm))
      if (seg_unpunch(&e->sm)) break;
    if (seg_nfree(&e->sm) < low && atomic_load(&e->sm.nfiles) < e->sm.max_files)
      (void)seg_add_file(&e->sm);
    pthread_mutex_lock(&e->bg_lock);
  }
  pthread_mutex_unlock(&e->bg_lock);
  ls_thread_cleanup();
  return NULL;
}

void eng_kick_bg(ls_engine *e) {
  pthread_mutex_lock(&e->bg_lock);
  e->bg_kick = 1;
  pthread_cond_signal(&e->bg_cond);
  pthread_mutex_unlock(&e->bg_lock);
}

/* ---- catalog -------------------------------------------------------------- */

static void table_free(ls_engine *e, ls_table *t) {
  if (!t) return;
  for (uint32_t g = 0; t->gsets && g < t->groups; g++) seg_gset_release(&e->sm, t->gsets[g]);
  free(t->gsets);
  idx_free(t->idx);
  pthread_rwlock_destroy(&t->lock);
  free(t);
}

static ls_table *table_new(ls_engine *e, const ls_mtable *m) {
  ls_table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->id = m->id;
  t->groups = m->groups;
  t->trunc_seq = m->trunc_seq;
  memcpy(t->name, m->name, sizeof t->name);
  pthread_rwlock_init(&t->lock, NULL);
  t->idx = idx_new();
  t->gsets = calloc(t->groups, sizeof *t->gsets);
  int ok = t->idx && t->gsets;
  for (uint32_t g = 0; ok && g < t->groups; g++) ok = (t->gsets[g] = seg_gset_new(&e->sm, t->id, g)) != 0;
  if (!ok) { table_free(e, t); return NULL; }
  return t;
}

/* Publish a catalog equal to the current one with id set to t (NULL to
** remove).  Caller holds cat_lock.  The old array is freed after readers
** drained.  LS_OK or LS_NOMEM. */
static int catalog_set(ls_engine *e, uint32_t id, ls_table *t) {
  ls_catalog *old = atomic_load(&e->catalog);
  uint32_t cap = old->cap > id ? old->cap : id + 1;
  ls_catalog *c = calloc(1, sizeof *c + cap * sizeof(ls_table *));
  if (!c) return ls_err(LS_NOMEM, "out of memory");
  c->cap = cap;
  memcpy(c->t, old->t, old->cap * sizeof(ls_table *));
  c->t[id] = t;
  atomic_store(&e->catalog, c);
  ls_guard_wait(&e->guard);
  free(old);
  return LS_OK;
}

static int catalog_load(ls_engine *e) {
  ls_catalog *c = calloc(1, sizeof *c + e->man.next_table * sizeof(ls_table *));
  if (!c) return ls_err(LS_NOMEM, "out of memory");
  c->cap = e->man.next_table;
  atomic_store(&e->catalog, c);
  for (uint32_t i = 0; i < e->man.ntables; i++) {
    ls_table *t = table_new(e, &e->man.tables[i]);
    if (!t) return ls_err(LS_NOMEM, "out of memory");
    c->t[t->id] = t;
  }
  return LS_OK;
}

static void catalog_free(ls_engine *e) {
  ls_catalog *c = atomic_load(&e->catalog);
  if (!c) return;
  for (uint32_t i = 0; i < c->cap; i++) table_free(e, c->t[i]);
  free(c);
  atomic_store(&e->catalog, NULL);
}

int ls_table_create(ls_engine *e, const char *name, uint32_t groups, uint32_t *id) {
  if (!name) name = "";
  if (strlen(name) > LS_NAME_MAX) return ls_err(LS_INVALID, "table name longer than %d bytes", LS_NAME_MAX);
  if (groups < 1 || groups > 4096) return ls_err(LS_INVALID, "groups must be between 1 and 4096, not %u", groups);
  pthread_mutex_lock(&e->cat_lock);
  ls_manifest m;
  int rc = ls_manifest_copy(&m, &e->man);
  ls_mtable mt;
  memset(&mt, 0, sizeof mt);
  ls_table *t = NULL;
  if (!rc) {
    mt.id = m.next_table++;
    mt.groups = groups;
    /* Records of this id can not exist; the truncation point is moot. */
    mt.trunc_seq = 0;
    snprintf(mt.name, sizeof mt.name, "%s", name);
    ls_mtable *nt = realloc(m.tables, (m.ntables + 1) * sizeof *nt);
    if (!nt) rc = ls_err(LS_NOMEM, "out of memory");
    else { m.tables = nt; m.tables[m.ntables++] = mt; }
  }
  if (!rc) rc = ls_manifest_write(e->io, e->dirfd, &m);
  if (!rc) {
    t = table_new(e, &mt);
    if (!t) rc = ls_err(LS_NOMEM, "out of memory");
  }
  if (!rc) rc = catalog_set(e, mt.id, t);
  if (!rc) {
    ls_manifest_free(&e->man);
    e->man = m;
    *id = mt.id;
  } else {
    table_free(e, t);
    ls_manifest_free(&m);
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

/* Write the manifest with table id changed by edit (or removed when
** remove is set).  Caller holds cat_lock. */
static int manifest_update(ls_engine *e, uint32_t id, int remove, uint64_t trunc_seq, const char *name) {
  ls_manifest m;
  int rc = ls_manifest_copy(&m, &e->man);
  if (rc) return rc;
  ls_mtable *mt = ls_manifest_table(&m, id);
  if (!mt) { ls_manifest_free(&m); return ls_err(LS_NOTABLE, "no table with id %u", id); }
  if (remove) {
    uint32_t i = (uint32_t)(mt - m.tables);
    memmove(mt, mt + 1, (m.ntables - i - 1) * sizeof *mt);
    m.ntables--;
  } else {
    if (trunc_seq) mt->trunc_seq = trunc_seq;
    if (name) snprintf(mt->name, sizeof mt->name, "%s", name);
  }
  /* Keep the write sequence above every truncation point across restarts. */
  if (trunc_seq && trunc_seq > m.seq_floor) m.seq_floor = trunc_seq;
  rc = ls_manifest_write(e->io, e->dirfd, &m);
  if (rc) { ls_manifest_free(&m); return rc; }
  ls_manifest_free(&e->man);
  e->man = m;
  return LS_OK;
}

/* The segment manager's lease callback: make end the durable floor of
** segment sequences. */
static int lease_seg_seq(void *arg, uint64_t end) {
  ls_engine *e = arg;
  pthread_mutex_lock(&e->cat_lock);
  int rc = LS_OK;
  if (e->man.seg_seq_floor < end) {
    ls_manifest m;
    rc = ls_manifest_copy(&m, &e->man);
    if (!rc) {
      m.seg_seq_floor = end;
      rc = ls_manifest_write(e->io, e->dirfd, &m);
      if (!rc) { ls_manifest_free(&e->man); e->man = m; }
      else ls_manifest_free(&m);
    }
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

/* Remove every entry of t's index from the accounting (the entries are
** gone); note emptied segments.  Runs on the writer thread. */
static int unaccount_entry(void *arg, const idx_entry *en, uint64_t seq) {
  ls_engine *e = arg;
  LS_UNUSED(seq);
  seg_account(&e->sm, en->word, -1);
  writer_note_dead(e, en->word);
  return 0;
}

static int do_drop(ls_engine *e, void *arg) {
  uint32_t id = *(uint32_t *)arg;
  pthread_mutex_lock(&e->cat_lock);
  ls_table *t = eng_table(e, id);
  int rc = t ? manifest_update(e, id, 1, 0, NULL) : ls_err(LS_NOTABLE, "no table with id %u", id);
  if (!rc) rc = catalog_set(e, id, NULL);   /* waits for readers of t */
  pthread_mutex_unlock(&e->cat_lock);
  if (rc) return rc;
  idx_foreach(t->idx, unaccount_entry, e);
  table_free(e, t);
  writer_free_empty(e);
  return LS_OK;
}

static int do_truncate(ls_engine *e, void *arg) {
  uint32_t id = *(uint32_t *)arg;
  pthread_mutex_lock(&e->cat_lock);
  ls_table *t = eng_table(e, id);
  /* On the writer thread no sequence is being assigned: every record of t
  ** written so far is below next_seq. */
  uint64_t cut = atomic_load(&e->next_seq);
  int rc = t ? manifest_update(e, id, 0, cut, NULL) : ls_err(LS_NOTABLE, "no table with id %u", id);
  pthread_mutex_unlock(&e->cat_lock);
  if (rc) return rc;
  pthread_rwlock_wrlock(&t->lock);
  t->trunc_seq = cut;
  atomic_fetch_add(&t->changes, 1);
  idx_foreach(t->idx, unaccount_entry, e);
  idx_clear(t->idx);
  atomic_store(&t->rows, 0);
  atomic_store(&t->live_bytes, 0);
  pthread_rwlock_unlock(&t->lock);
  writer_free_empty(e);            /* waits for readers of the old entries */
  return LS_OK;
}

int ls_table_drop(ls_engine *e, uint32_t id) { return writer_call(e, do_drop, &id); }
int ls_table_truncate(ls_engine *e, uint32_t id) { return writer_call(e, do_truncate, &id); }

int ls_table_rename(ls_engine *e, uint32_t id, const char *name) {
  if (strlen(name) > LS_NAME_MAX) return ls_err(LS_INVALID, "table name longer than %d bytes", LS_NAME_MAX);
  pthread_mutex_lock(&e->cat_lock);
  ls_table *t = eng_table(e, id);
  int rc = t ? LS_OK : ls_err(LS_NOTABLE, "no table with id %u", id);
  if (!rc && strcmp(t->name, name) != 0) {
    rc = manifest_update(e, id, 0, 0, name);
    if (!rc) snprintf(t->name, sizeof t->name, "%s", name);
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

int ls_table_exists(ls_engine *e, uint32_t id) {
  unsigned g = ls_guard_enter(&e->guard);
  int r = eng_table(e, id) != NULL;
  ls_guard_leave(&e->guard, g);
  return r;
}

/* ---- open / close ----------------------------------------------------------- */

static int check_options(const ls_options *o) {
  if (o->segment_size &&
      (o->segment_size % LS_BLOCK || o->segment_size < LS_MIN_SEGMENT_SIZE || o->segment_size > LS_MAX_SEGMENT_SIZE))
    return ls_err(LS_INVALID, "segment_size must be a multiple of 4096 between %u and %u bytes, not %llu",
                  LS_MIN_SEGMENT_SIZE, LS_MAX_SEGMENT_SIZE, (unsigned long long)o->segment_size);
  uint64_t seg = o->segment_size ? o->segment_size : LS_DEFAULT_SEGMENT_SIZE;
  if (o->file_size && (o->file_size % seg || o->file_size > (1ull << 40)))
    return ls_err(LS_INVALID, "file_size must be a multiple of segment_size (%llu) and at most 1 TiB, not %llu",
                  (unsigned long long)seg, (unsigned long long)o->file_size);
  uint64_t file = o->file_size ? o->file_size : LS_DEFAULT_FILE_SIZE;
  if (!o->file_size && file % seg)
    return ls_err(LS_INVALID, "segment_size %llu does not divide the default file_size; set file_size",
                  (unsigned long long)seg);
  if (o->disk_size && o->disk_size < 2 * file)
    return ls_err(LS_INVALID, "disk_size must be at least two files (2 x %llu bytes), not %llu",
                  (unsigned long long)file, (unsigned long long)o->disk_size);
  if (o->io < LS_IO_AUTO || o->io > LS_IO_POSIX) return ls_err(LS_INVALID, "unknown I/O backend %d", o->io);
  if (o->compaction_policy < 0 || o->compaction_policy > LS_POLICY_LFS)
    return ls_err(LS_INVALID, "unknown compaction policy %d", o->compaction_policy);
  return LS_OK;
}

/* Non-zero requested sizes must match the directory's. */
static int check_match(const ls_manifest *m, const ls_options *o, const char *path) {
  struct { const char *n; uint64_t want, have; } s[] = {
    { "segment_size", o->segment_size, m->segment_size },
    { "file_size", o->file_size, m->file_size },
    { "disk_size", o->disk_size, m->disk_size },
  };
  for (int i = 0; i < 3; i++)
    if (s[i].want && s[i].want != s[i].have)
      return ls_err(LS_INVALID, "%s %llu does not match %llu, fixed when the data directory %s was created", s[i].n,
                    (unsigned long long)s[i].want, (unsigned long long)s[i].have, path);
  return LS_OK;
}

static int dir_has_data(int dirfd) {
  int fd = openat(dirfd, "data-000000.ls", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) { close(fd); return 1; }
  return 0;
}

static void engine_destroy(ls_engine *e) {
  if (e->bg_started) {
    pthread_mutex_lock(&e->bg_lock);
    e->bg_stop = 1;
    pthread_cond_signal(&e->bg_cond);
    pthread_mutex_unlock(&e->bg_lock);
    pthread_join(e->bg_thread, NULL);
  }
  writer_stop(e);                  /* no more hand-offs */
  cleaner_stop(e);
  catalog_free(e);
  if (e->sm.files) seg_shutdown(&e->sm);
  ls_io_destroy(e->io);
  ls_manifest_free(&e->man);
  if (e->lockfd >= 0) close(e->lockfd);   /* releases the flock */
  if (e->dirfd >= 0) close(e->dirfd);
  ls_guard_destroy(&e->guard);
  pthread_mutex_destroy(&e->cat_lock);
  pthread_mutex_destroy(&e->bg_lock);
  pthread_cond_destroy(&e->bg_cond);
  pthread_mutex_destroy(&e->problems_lock);
  free(e->problems);
  free(e->path);
  free(e);
}

static int engine_create(const char *dir, int dirfd, const ls_options *o, ls_engine **out) {
  ls_engine *e = calloc(1, sizeof *e);
  if (!e) { close(dirfd); return ls_err(LS_NOMEM, "out of memory"); }
  e->dirfd = dirfd;
  e->lockfd = -1;
  e->refs = 1;
  ls_guard_init(&e->guard);
  pthread_mutex_init(&e->cat_lock, NULL);
  pthread_mutex_init(&e->bg_lock, NULL);
  pthread_cond_init(&e->bg_cond, NULL);
  pthread_mutex_init(&e->problems_lock, NULL);
  e->policy = o->compaction_policy ? o->compaction_policy : LS_POLICY_COST_BENEFIT;
  e->manual_cleaning = o->manual_cleaning;
  e->separator_memory = o->separator_memory;
  seg_ids mixed = {0}, settle = {0}, empties = {0};
  int rc = LS_OK;
  e->path = strdup(dir);
  if (!e->path) { rc = ls_err(LS_NOMEM, "out of memory"); goto fail; }

  e->lockfd = openat(dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (e->lockfd < 0) { rc = ls_err_io(-errno, "open %s/LOCK", dir); goto fail; }
  if (flock(e->lockfd, LOCK_EX | LOCK_NB)) {
    rc = errno == EWOULDBLOCK
           ? ls_err(LS_BUSY, "data directory %s is in use by another process", dir)
           : ls_err_io(-errno, "lock %s/LOCK", dir);
    goto fail;
  }

  const char *fault = o->fault ? o->fault : getenv("LOGSTOR_FAULT");
  int kind = o->io;
  const char *env = getenv("LOGSTOR_IO");           /* "posix" or "io_uring" */
  if (kind == LS_IO_AUTO && env && !strcmp(env, "posix")) kind = LS_IO_POSIX;
  if (kind == LS_IO_AUTO && env && !strcmp(env, "io_uring")) kind = LS_IO_URING;
  rc = ls_io_create(kind, fault, &e->io);
  if (rc) goto fail;

  rc = ls_manifest_read(e->io, dirfd, &e->man);
  if (rc == LS_NOTFOUND) {
    if (dir_has_data(dirfd)) {
      rc = ls_corrupt("data directory %s has data files but no MANIFEST", dir);
      goto fail;
    }
    memset(&e->man, 0, sizeof e->man);
    e->man.version = LS_FORMAT_VERSION;
    e->man.segment_size = o->segment_size ? o->segment_size : LS_DEFAULT_SEGMENT_SIZE;
    e->man.file_size = o->file_size ? o->file_size : LS_DEFAULT_FILE_SIZE;
    e->man.disk_size = o->disk_size;
    e->man.next_table = 1;
    rc = ls_manifest_write(e->io, dirfd, &e->man);
  } else if (!rc) {
    rc = check_match(&e->man, o, dir);
    if (!rc && (e->man.segment_size % LS_BLOCK || e->man.segment_size < LS_MIN_SEGMENT_SIZE ||
                e->man.segment_size > LS_MAX_SEGMENT_SIZE || !e->man.file_size ||
                e->man.file_size % e->man.segment_size))
      rc = ls_corrupt("manifest of %s: impossible sizes", dir);
  }
  if (rc) goto fail;
  e->seg_size = (uint32_t)e->man.segment_size;
  e->file_size = e->man.file_size;
  e->disk_size = e->man.disk_size;

  rc = seg_init(&e->sm, e->io, dirfd, e->seg_size, e->file_size, e->disk_size);
  if (rc) goto fail;
  e->sm.lease = lease_seg_seq;
  e->sm.lease_arg = e;
  rc = catalog_load(e);
  if (rc) goto fail;
  rc = recover(e, &mixed, &settle, &empties);
  if (rc) goto fail;
  rc = writer_start(e);
  if (rc) goto fail;
  rc = cleaner_start(e, &mixed, &settle, &empties);
  if (rc) goto fail;
  free(mixed.v);
  free(settle.v);
  free(empties.v);
  mixed.v = settle.v = empties.v = NULL;
  if (pthread_create(&e->bg_thread, NULL, bg_main, e)) {
    rc = ls_err(LS_NOMEM, "cannot start the background thread");
    goto fail;
  }
  e->bg_started = 1;
  eng_kick_bg(e);
  *out = e;
  return LS_OK;
fail:
  free(mixed.v);
  free(settle.v);
  free(empties.v);
  engine_destroy(e);
  return rc;
}

int ls_open(const char *dir, const ls_options *opt, ls_engine **out) {
  ls_options def;
  if (!opt) { ls_options_init(&def); opt = &def; }
  *out = NULL;
  ls_hash_init();
  int rc = check_options(opt);
  if (rc) return rc;
  if (opt->create && mkdir(dir, 0700) && errno != EEXIST) return ls_err_io(-errno, "create directory %s", dir);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    if (errno == ENOENT) return ls_err(LS_INVALID, "data directory %s does not exist", dir);
    return ls_err_io(-errno, "open data directory %s", dir);
  }
  struct stat st;
  if (fstat(dirfd, &st)) { close(dirfd); return ls_err_io(-errno, "stat %s", dir); }

  pthread_mutex_lock(&reg_lock);
  for (ls_engine *e = reg_head; e; e = e->next_open) {
    if (e->dev == st.st_dev && e->ino == st.st_ino && e->pid == getpid()) {
      close(dirfd);
      rc = check_match(&e->man, opt, dir);
      if (!rc) { e->refs++; *out = e; }
      pthread_mutex_unlock(&reg_lock);
      return rc;
    }
  }
  ls_engine *e = NULL;
  rc = engine_create(dir, dirfd, opt, &e);
  if (!rc) {
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->pid = getpid();
    e->next_open = reg_head;
    reg_head = e;
    *out = e;
  }
  pthread_mutex_unlock(&reg_lock);
  return rc;
}

int ls_refs(ls_engine *e) {
  pthread_mutex_lock(&reg_lock);
  int n = e->refs;
  pthread_mutex_unlock(&reg_lock);
  return n;
}

void ls_close(ls_engine *e) {
  if (!e) return;
  pthread_mutex_lock(&reg_lock);
  if (--e->refs > 0) {
    pthread_mutex_unlock(&reg_lock);
    return;
  }
  for (ls_engine **pp = &reg_head; *pp; pp = &(*pp)->next_open)
    if (*pp == e) { *pp = e->next_open; break; }
  /* Destroy under the registry lock: a concurrent open of the same
  ** directory waits until the lock file is released. */
  engine_destroy(e);
  pthread_mutex_unlock(&reg_lock);
}
