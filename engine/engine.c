/*
** engine.c -- opening and closing an engine: the process registry, the
** lock file, and the threads (writer, cleaner, background formatting).
**
** Layer: the top (engine/README.md).  Calls: catalog, recovery, the
** cleaner and the writer to start and stop them.
**
** Opening a directory:
**   1. open the directory, take its identity (st_dev, st_ino);
**   2. if this process has it open already, share that engine (refcount);
**   3. flock(LOCK) without waiting, exclusively, or shared for a read-only
**      open (ls_options.readonly: any number of read-only processes, or one
**      writer): another process gets LS_BUSY (flock locks belong to the
**      open file description, so closing some other descriptor of the file
**      can not drop them);
**   4. read the manifest, or write a new one for an empty directory;
**   5. recover (scan the data files), start the writer, the cleaner and
**      the background thread.
** The last ls_close stops and joins every thread before returning, so no
** engine thread outlives its users (a loadable extension may be unloaded
** right after).
*/
#include "catalog.h"
#include "cleaner.h"
#include "recovery.h"
#include "checkpoint.h"
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* engine.c's part of an engine. */
struct eng_host {
  dev_t dev;                       /* identity in the process registry */
  ino_t ino;
  int refs;                        /* opens sharing this engine (registry lock) */
  pid_t pid;                       /* process that opened it (a forked child
                                   ** must not share it: no threads, no lock) */
  ls_engine *next_open;            /* registry list */
  int lockfd;                      /* holds the flock on LOCK */
  pthread_t bg_thread;             /* formats data files ahead of need */
  int bg_started;
  uint32_t *open_tables;           /* tables that existed when this instance
                                   ** opened the directory, until claimed
                                   ** (ls_open_tables; registry lock) */
  uint32_t nopen_tables;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static ls_engine *reg_head;

void ls_options_init(ls_options *o) { memset(o, 0, sizeof *o); }

/* The background thread: segments ahead of need (segment.h). */
static void *bg_main(void *arg) {
  ls_engine *e = arg;
  while (seg_ahead_wait(&e->sm)) seg_prepare_ahead(&e->sm);
  ls_thread_cleanup();
  return NULL;
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
  if (o->on_damage < LS_ON_DAMAGE_ERROR || o->on_damage > LS_ON_DAMAGE_REPORT)
    return ls_err(LS_INVALID, "unknown on_damage choice %d", o->on_damage);
  if (o->space_target != 0 && !(o->space_target >= 1.1 && o->space_target <= 100))
    return ls_err(LS_INVALID, "space_target must be between 1.1 and 100, not %g", o->space_target);
  if (o->synchronous < LS_SYNC_DEFAULT || o->synchronous > LS_SYNC_OFF)
    return ls_err(LS_INVALID, "unknown synchronous choice %d", o->synchronous);
  if (o->sync_interval_ms > LS_MAX_SYNC_INTERVAL_MS)
    return ls_err(LS_INVALID, "sync_interval must be between 1 and %u ms, not %u", LS_MAX_SYNC_INTERVAL_MS,
                  o->sync_interval_ms);
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

/* Segments no snapshot retains any more may be empty: the cleaner checks. */
static void snap_released(void *arg, const uint32_t *segs, uint32_t n) { cleaner_note_empty(arg, segs, n); }

static void engine_destroy(ls_engine *e) {
  eng_host *h = e->host;
  if (h && h->bg_started) {
    seg_ahead_stop(&e->sm);
    pthread_join(h->bg_thread, NULL);
  }
  writer_stop(e);                  /* no more hand-offs */
  cleaner_stop(e);
  /* A clean close of a writable engine leaves a checkpoint for the next
  ** open (checkpoint.h); without one that open scans everything. */
  if (h && h->bg_started) (void)ckpt_write(e);
  cat_free(e);
  if (e->snaps.sm) snap_destroy(&e->snaps);
  cache_free(e->cache);
  if (e->sm.files) seg_shutdown(&e->sm);
  ls_io_destroy(e->io);
  ls_manifest_free(&e->man);
  if (h && h->lockfd >= 0) close(h->lockfd);   /* releases the flock */
  if (e->dirfd >= 0) close(e->dirfd);
  ls_guard_destroy(&e->guard);
  pthread_mutex_destroy(&e->cat_lock);
  pthread_mutex_destroy(&e->problems_lock);
  free(e->problems);
  free(e->damage);
  free(e->damage_hash);
  free(e->path);
  free(e->kept);
  free(e->reserve);
  free(h->open_tables);
  free(h);
  free(e);
}

static int engine_create(const char *dir, int dirfd, const ls_options *o, ls_engine **out) {
  ls_engine *e = calloc(1, sizeof *e);
  eng_host *h = calloc(1, sizeof *h);
  if (!e || !h) { free(e); free(h); close(dirfd); return ls_err(LS_NOMEM, "out of memory"); }
  e->host = h;
  e->dirfd = dirfd;
  h->lockfd = -1;
  h->refs = 1;
  ls_guard_init(&e->guard);
  pthread_mutex_init(&e->cat_lock, NULL);
  pthread_mutex_init(&e->problems_lock, NULL);
  e->policy = o->compaction_policy ? o->compaction_policy : LS_POLICY_COST_BENEFIT;
  e->manual_cleaning = o->manual_cleaning;
  e->separator_memory = o->separator_memory;
  e->on_damage = o->on_damage;
  atomic_init(&e->space_target, (uint32_t)((o->space_target ? o->space_target : LS_DEFAULT_SPACE_TARGET) * 1000 + 0.5));
  atomic_init(&e->sync_mode, o->synchronous ? o->synchronous : LS_SYNC_FULL);
  atomic_init(&e->sync_interval_ns,
              (uint64_t)(o->sync_interval_ms ? o->sync_interval_ms : LS_DEFAULT_SYNC_INTERVAL_MS) * 1000000);
  e->readonly = o->readonly;
  e->decide = o->decide;
  e->decide_arg = o->decide_arg;
  /* Kept for an install that runs out of memory (cat_install). */
  e->reserve = malloc(LS_INSTALL_RESERVE);
  seg_ids mixed = {0}, settle = {0}, empties = {0};
  int rc = LS_OK;
  e->path = strdup(dir);
  if (!e->path) { rc = ls_err(LS_NOMEM, "out of memory"); goto fail; }

  /* A read-only open opens LOCK read-only (the directory may be on a
  ** read-only file system; a shared flock needs no write access).  With no
  ** LOCK file there, it is made if the file system allows; on a read-only
  ** file system nobody can write the directory, and no lock is needed. */
  h->lockfd = openat(dirfd, "LOCK", (o->readonly ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (h->lockfd < 0 && errno == ENOENT && o->readonly) {
    h->lockfd = openat(dirfd, "LOCK", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (h->lockfd < 0 && errno == EROFS) goto locked;
  }
  if (h->lockfd < 0) { rc = ls_err_io(-errno, LS_CAUSE_OTHER, "open %s/LOCK", dir); goto fail; }
  if (flock(h->lockfd, (o->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB)) {
    rc = errno == EWOULDBLOCK
           ? ls_err(LS_BUSY, "data directory %s is in use by another process", dir)
           : ls_err_io(-errno, LS_CAUSE_OTHER, "lock %s/LOCK", dir);
    goto fail;
  }
locked:;
  const char *fault = o->fault ? o->fault : getenv("LOGSTOR_FAULT");
  int kind = o->io;
  const char *env = getenv("LOGSTOR_IO");           /* "posix" or "io_uring" */
  if (kind == LS_IO_AUTO && env && !strcmp(env, "posix")) kind = LS_IO_POSIX;
  if (kind == LS_IO_AUTO && env && !strcmp(env, "io_uring")) kind = LS_IO_URING;
  rc = ls_io_create(kind, fault, &e->io);
  if (!rc && o->record_io) {
    ls_io *rec = NULL;
    rc = ls_io_record_create(e->io, &rec);
    if (rc) ls_io_destroy(e->io);
    e->io = rc ? NULL : rec;
  }
  if (rc) goto fail;

  rc = ls_manifest_read(e->io, dirfd, &e->man);
  if (rc == LS_NOTFOUND && o->readonly) {
    rc = ls_err(LS_INVALID, "data directory %s has no MANIFEST: nothing to open read-only", dir);
    goto fail;
  }
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
  e->sm.readonly = e->readonly;
  if (rc) goto fail;
  e->sm.lease = cat_lease;
  e->sm.grown = cat_grown;
  e->sm.lease_arg = e;
  uint64_t snap_mem = o->snapshot_memory ? o->snapshot_memory : LS_DEFAULT_SNAPSHOT_MEMORY;
  snap_init(&e->snaps, &e->sm, snap_mem / SNAP_VERSION_BYTES + 1,
            e->disk_size ? e->disk_size / 4 : LS_DEFAULT_SNAPSHOT_DISK);
  e->snaps.released = snap_released;
  e->cache_size = o->cache_size == LS_CACHE_NONE ? 0 : o->cache_size ? o->cache_size : LS_DEFAULT_CACHE_SIZE;
  e->cache = cache_new(e->cache_size);
  if (!e->cache) e->cache_size = 0;          /* no memory for it: reads go to disk */
  e->snaps.released_arg = e;
  rc = cat_load(e);
  if (rc) goto fail;
  rc = recover(e, &mixed, &settle, &empties);
  if (rc) goto fail;
  if (e->on_damage == LS_ON_DAMAGE_REPORT || e->readonly) {
    /* Nothing is written: no commit, no cleaning, no new file. */
    if (e->readonly)
      snprintf(e->fail_msg, sizeof e->fail_msg, "the data directory %s is open read-only", dir);
    else
      snprintf(e->fail_msg, sizeof e->fail_msg, "the data directory %s was opened to report damage only "
               "(on_damage=report): it is read-only", dir);
    atomic_store(&e->failed, 1);
  }
  if (e->man.ntables) {
    h->open_tables = malloc(e->man.ntables * sizeof *h->open_tables);
    if (!h->open_tables) { rc = ls_err(LS_NOMEM, "out of memory"); goto fail; }
    for (uint32_t i = 0; i < e->man.ntables; i++) h->open_tables[i] = e->man.tables[i].id;
    h->nopen_tables = e->man.ntables;
  }
  rc = writer_start(e);
  for (uint32_t i = 0; !rc && i < e->nkept; i++) rc = writer_decision_keep(e, e->kept[i]);
  if (rc) goto fail;
  rc = cleaner_start(e, &mixed, &settle, &empties);
  if (rc) goto fail;
  free(mixed.v);
  free(settle.v);
  free(empties.v);
  mixed.v = settle.v = empties.v = NULL;
  if (e->on_damage != LS_ON_DAMAGE_REPORT && !e->readonly) {
    if (pthread_create(&h->bg_thread, NULL, bg_main, e)) {
      rc = ls_err(LS_NOMEM, "cannot start the background thread");
      goto fail;
    }
    h->bg_started = 1;
    seg_ahead_kick(&e->sm);
  }
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
  if (opt->create && !opt->readonly && mkdir(dir, 0700) && errno != EEXIST) return ls_err_io(-errno, LS_CAUSE_OTHER, "create directory %s", dir);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    if (errno == ENOENT) return ls_err(LS_INVALID, "data directory %s does not exist", dir);
    return ls_err_io(-errno, LS_CAUSE_OTHER, "open data directory %s", dir);
  }
  struct stat st;
  if (fstat(dirfd, &st)) { close(dirfd); return ls_err_io(-errno, LS_CAUSE_OTHER, "stat %s", dir); }

  pthread_mutex_lock(&reg_lock);
  for (ls_engine *e = reg_head; e; e = e->host->next_open) {
    eng_host *h = e->host;
    if (h->dev == st.st_dev && h->ino == st.st_ino && h->pid == getpid()) {
      close(dirfd);
      /* The sizes, not e->man: another thread may be replacing the
      ** manifest (a lease, a new data file) under the catalog lock. */
      ls_manifest sizes;
      memset(&sizes, 0, sizeof sizes);
      sizes.segment_size = e->seg_size;
      sizes.file_size = e->file_size;
      sizes.disk_size = e->disk_size;
      rc = check_match(&sizes, opt, dir);
      /* A read-only opener may share a writable engine (writes are refused
      ** above it); a writer can not use a read-only one. */
      if (!rc && e->readonly && !opt->readonly)
        rc = ls_err(LS_BUSY, "data directory %s is open read-only in this process", dir);
      if (!rc) { h->refs++; *out = e; }
      pthread_mutex_unlock(&reg_lock);
      return rc;
    }
  }
  ls_engine *e = NULL;
  rc = engine_create(dir, dirfd, opt, &e);
  if (!rc) {
    e->host->dev = st.st_dev;
    e->host->ino = st.st_ino;
    e->host->pid = getpid();
    e->host->next_open = reg_head;
    reg_head = e;
    *out = e;
  }
  pthread_mutex_unlock(&reg_lock);
  return rc;
}

int ls_refs(ls_engine *e) {
  pthread_mutex_lock(&reg_lock);
  int n = e->host->refs;
  pthread_mutex_unlock(&reg_lock);
  return n;
}

int ls_open_tables(ls_engine *e, uint32_t **ids, uint32_t *n) {
  pthread_mutex_lock(&reg_lock);
  *ids = e->host->open_tables;
  *n = e->host->nopen_tables;
  e->host->open_tables = NULL;
  e->host->nopen_tables = 0;
  pthread_mutex_unlock(&reg_lock);
  return LS_OK;
}

void ls_close(ls_engine *e) {
  if (!e) return;
  pthread_mutex_lock(&reg_lock);
  if (--e->host->refs > 0) {
    pthread_mutex_unlock(&reg_lock);
    return;
  }
  for (ls_engine **pp = &reg_head; *pp; pp = &(*pp)->host->next_open)
    if (*pp == e) { *pp = e->host->next_open; break; }
  /* Destroy under the registry lock: a concurrent open of the same
  ** directory waits until the lock file is released. */
  engine_destroy(e);
  pthread_mutex_unlock(&reg_lock);
}
