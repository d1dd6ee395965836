/*
** segment.c -- data files and segment allocation (see segment.h).
**
** Data files (formatting, growth, holes) are in datafile.c.
**
** Lock order: lock, then hist_lock.
*/
#include "segment.h"
#include "segment_int.h"
#include "format.h"
#include "ls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#define LEASE_STEP 1024          /* segment sequences leased per manifest write */

void seg_file_name(uint32_t n, char *buf) { snprintf(buf, 32, "data-%06u.ls", n); }

int seg_sync(ls_segmgr *m, int fd, int full) {
  pthread_mutex_lock(&m->sync_lock);
  int r = m->sync_err;
  if (!r) r = full ? m->io->m->fsync(m->io, fd) : m->io->m->sync(m->io, fd);
  if (r && !m->sync_err) m->sync_err = r;
  pthread_mutex_unlock(&m->sync_lock);
  return r;
}

int seg_sync_failed(ls_segmgr *m) {
  pthread_mutex_lock(&m->sync_lock);
  int r = m->sync_err != 0;
  pthread_mutex_unlock(&m->sync_lock);
  return r;
}

int seg_sync_note(seg_syncset *s, int fd) {
  for (int i = 0; i < s->n; i++)
    if (s->fd[i] == fd) return LS_OK;
  if (s->n == SEG_SYNCSET_MAX) return 1;
  s->fd[s->n++] = fd;
  return LS_OK;
}

int seg_sync_all(ls_segmgr *m, seg_syncset *s, _Atomic uint64_t *syncs) {
  int r = 0;
  for (int i = 0; i < s->n && !r; i++) {
    r = seg_sync(m, s->fd[i], 0);
    atomic_fetch_add(syncs, 1);
  }
  s->n = 0;
  return r;
}

/* Sync the pending files; the caller holds sync_lock. */
static int pending_sync_locked(ls_segmgr *m, _Atomic uint64_t *syncs) {
  int r = m->sync_err;
  for (int i = 0; i < m->pending.n && !r; i++) {
    r = m->io->m->sync(m->io, m->pending.fd[i]);
    atomic_fetch_add(syncs, 1);
  }
  if (r && !m->sync_err) m->sync_err = r;
  m->pending.n = 0;
  return r;
}

int seg_pending_add(ls_segmgr *m, seg_syncset *s, _Atomic uint64_t *syncs) {
  int r = 0;
  pthread_mutex_lock(&m->sync_lock);
  for (int i = 0; i < s->n && !r; i++)
    if (seg_sync_note(&m->pending, s->fd[i]) && !(r = pending_sync_locked(m, syncs)))
      seg_sync_note(&m->pending, s->fd[i]);
  pthread_mutex_unlock(&m->sync_lock);
  s->n = 0;
  return r;
}

int seg_pending_sync(ls_segmgr *m, _Atomic uint64_t *syncs) {
  pthread_mutex_lock(&m->sync_lock);
  int r = m->pending.n ? pending_sync_locked(m, syncs) : 0;
  pthread_mutex_unlock(&m->sync_lock);
  return r;
}

/* ---- FIFOs of segments --------------------------------------------------- */

int seg_fifo_push(seg_fifo *q, seg_ref x) {
  if (q->len == q->cap) {
    uint32_t ncap = q->cap ? 2 * q->cap : 64;
    seg_ref *v = malloc(ncap * sizeof *v);
    if (!v) return LS_NOMEM;
    for (uint32_t i = 0; i < q->len; i++) v[i] = q->v[(q->head + i) % q->cap];
    free(q->v);
    q->v = v;
    q->cap = ncap;
    q->head = 0;
  }
  q->v[(q->head + q->len) % q->cap] = x;
  q->len++;
  return LS_OK;
}

int seg_fifo_push_front(seg_fifo *q, seg_ref x) {
  int rc = seg_fifo_push(q, x);             /* makes room */
  if (rc) return rc;
  q->len--;
  q->head = (q->head + q->cap - 1) % q->cap;
  q->v[q->head] = x;
  q->len++;
  return LS_OK;
}

int seg_fifo_pop(seg_fifo *q, seg_ref *x) {
  if (!q->len) return 0;
  *x = q->v[q->head];
  q->head = (q->head + 1) % q->cap;
  q->len--;
  return 1;
}

/* The reserve (segment.h): about 1.5% of a bounded disk, between 4 and 32
** segments; on an unbounded disk 6% of the segments in existence, between
** 2 and 8 (the file system's end is the bound: a store that filled it
** compacts and deletes from its reserve).  Caller holds m->lock or is
** alone.  A bounded disk's is set once, at init: the cleaner reads it
** without the lock (cl_want_compaction). */
void seg_set_reserve(ls_segmgr *m) {
  if (m->disk_size && m->reserve_clean) return;
  uint64_t total = m->disk_size ? (uint64_t)m->max_files * m->segs_per_file : atomic_load(&m->nsegs);
  uint64_t lo = m->disk_size ? 4 : 2, hi = m->disk_size ? 32 : 8;
  uint64_t rc = m->disk_size ? total / 64 : total / 16;
  m->reserve_clean = (uint32_t)(rc < lo ? lo : rc > hi ? hi : rc);
  m->reserve_delete = m->reserve_clean / 2 < lo / 2 ? (uint32_t)(lo / 2) : m->reserve_clean / 2;
}

int seg_init(ls_segmgr *m, ls_io *io, int dirfd, uint32_t seg_size, uint64_t file_size,
             uint64_t disk_size) {
  memset(m, 0, sizeof *m);
  m->io = io;
  m->dirfd = dirfd;
  m->seg_size = seg_size;
  m->file_size = file_size;
  m->segs_per_file = (uint32_t)(file_size / seg_size);
  m->hist_div = seg_size / SEG_NBUCKETS;
  uint64_t maxf = LOC_MAX_SEGS / m->segs_per_file;
  if (maxf > 65536) maxf = 65536;
  if (disk_size && disk_size / file_size < maxf) maxf = disk_size / file_size;
  m->max_files = (uint32_t)maxf;
  m->disk_size = disk_size;
  seg_set_reserve(m);
  m->fds = malloc(m->max_files * sizeof(int));
  m->files = calloc(m->max_files, sizeof(ls_seg *));
  if (!m->fds || !m->files) {
    free(m->fds); free(m->files);
    return ls_err(LS_NOMEM, "segment manager: out of memory");
  }
  for (uint32_t i = 0; i < m->max_files; i++) m->fds[i] = -1;
  pthread_mutex_init(&m->lock, NULL);
  pthread_cond_init(&m->cond, NULL);
  pthread_mutex_init(&m->hist_lock, NULL);
  pthread_mutex_init(&m->sync_lock, NULL);
  pthread_mutex_init(&m->ahead_lock, NULL);
  pthread_cond_init(&m->ahead_cond, NULL);
  m->next_seq = 1;
  return LS_OK;
}

void seg_shutdown(ls_segmgr *m) {
  uint32_t n = atomic_load(&m->nfiles);
  for (uint32_t i = 0; i < n; i++) {
    if (m->fds[i] >= 0) m->io->m->close(m->io, m->fds[i]);
    for (uint32_t j = 0; m->files[i] && j < m->segs_per_file; j++) free(m->files[i][j].deps);
    if (m->files[i]) free((void *)m->files[i][0].blkmin);
    free(m->files[i]);
  }
  for (uint32_t i = 0; i < m->ngsets; i++) free(m->gsets[i]);
  free(m->gsets);
  free(m->fds);
  free(m->files);
  free(m->free.v);
  free(m->punched.v);
  pthread_mutex_destroy(&m->lock);
  pthread_cond_destroy(&m->cond);
  pthread_mutex_destroy(&m->hist_lock);
  pthread_mutex_destroy(&m->sync_lock);
  pthread_mutex_destroy(&m->ahead_lock);
  pthread_cond_destroy(&m->ahead_cond);
  memset(m, 0, sizeof *m);
}

/* Append id to the free FIFO.  Caller holds m->lock. */
int seg_freeq_push(ls_segmgr *m, uint32_t id) {
  return seg_fifo_push(&m->free, (seg_ref){ id, 0 });
}

/* Descriptors for one file, all FREE. */
int seg_add_descriptors(ls_segmgr *m, uint32_t file) {
  uint32_t bps = m->seg_size / LS_BLOCK;
  ls_seg *d = calloc(m->segs_per_file, sizeof(ls_seg));
  _Atomic uint64_t *blk = calloc((size_t)m->segs_per_file * bps, sizeof *blk);
  if (!d || !blk) {
    free(d);
    free((void *)blk);
    return ls_err(LS_NOMEM, "segment manager: out of memory");
  }
  for (uint32_t i = 0; i < m->segs_per_file; i++) {
    atomic_init(&d[i].dead_floor, SEG_NOFLOOR);
    atomic_init(&d[i].stale_floor, SEG_NOFLOOR);
    d[i].hprev = d[i].hnext = SEG_NONE;
    d[i].blkmin = blk + (size_t)i * bps;
  }
  m->files[file] = d;
  return LS_OK;
}

uint64_t seg_file_len(const ls_segmgr *m, uint32_t f, uint32_t nsegs) {
  uint32_t files = seg_files_for(m, nsegs);
  return f + 1 < files ? m->file_size : f + 1 == files ? (uint64_t)seg_tail_for(m, nsegs) * m->seg_size : 0;
}

int seg_open_files(ls_segmgr *m, uint32_t nsegs, uint8_t *missing) {
  uint32_t n = seg_files_for(m, nsegs);
  if (n > m->max_files)
    return ls_err(LS_INVALID, "data directory holds %u data files but disk_size allows %u", n,
                  m->max_files);
  for (uint32_t i = 0; i < n; i++) {
    char name[32];
    seg_file_name(i, name);
    int fd = m->io->m->open(m->io, m->dirfd, name, m->readonly ? O_RDONLY : O_RDWR, 0);
    if (fd == -ENOENT && missing) {
      missing[i] = 1;                       /* recovery reports it */
    } else if (fd < 0) {
      return ls_err_io(fd, LS_CAUSE_OTHER, "open %s", name);
    } else {
      m->fds[i] = fd;
    }
    int rc = seg_add_descriptors(m, i);
    if (rc) return rc;
    atomic_store(&m->nfiles, i + 1);
  }
  atomic_store(&m->nsegs, nsegs);
  seg_set_reserve(m);
  return LS_OK;
}

int seg_seal_header(ls_segmgr *m, uint32_t s, uint64_t seq, uint32_t end, int *fdout) {
  uint8_t hdr[LS_BUF_HDR];
  int fd = seg_fd(m, s);
  *fdout = fd;
  ssize_t n = m->io->m->read(m->io, fd, hdr, sizeof hdr, seg_base(m, s));
  if (n < 0) return ls_err_io((int)n, LS_CAUSE_READ, "read of the header of segment %u", s);
  ls_bufhdr h;
  if (n != (ssize_t)sizeof hdr || !ls_bufhdr_decode(hdr, &h) || h.seg_seq != seq || h.kind == LS_KIND_FREE)
    return ls_corrupt("segment %u: its header could not be read back to seal it", s);
  if ((h.flags & LS_BF_SEALED) && h.seg_end == end) return LS_OK;
  assert(end >= LS_BUF_HDR && end <= m->seg_size && end % LS_REC_ALIGN == 0);
  h.flags |= LS_BF_SEALED;
  h.seg_end = end;
  ls_bufhdr_encode(hdr, &h);
  /* One sector, written whole or not at all: either header is valid. */
  int e = m->io->m->write(m->io, fd, hdr, sizeof hdr, seg_base(m, s));
  if (e) return ls_err_io(e, LS_CAUSE_WRITE, "write of the header of segment %u", s);
  return LS_OK;
}

/* Free segments an allocation for purpose must leave.  Caller holds
** m->lock. */
uint32_t seg_keep_free(const ls_segmgr *m, int purpose) {
  return purpose == SEG_FOR_USER ? m->reserve_clean + m->reserve_delete
       : purpose == SEG_FOR_DELETE ? m->reserve_clean : 0;
}

/* May the store grow?  Caller holds m->lock. */
int seg_can_grow(ls_segmgr *m) {
  return atomic_load(&m->nsegs) < (uint64_t)m->max_files * m->segs_per_file;
}

int seg_can_alloc(ls_segmgr *m, int purpose) {
  pthread_mutex_lock(&m->lock);
  int ok = m->free.len > seg_keep_free(m, purpose);   /* holes may not be writable */
  pthread_mutex_unlock(&m->lock);
  return ok;
}

int seg_alloc(ls_segmgr *m, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *id) {
  pthread_mutex_lock(&m->lock);
  for (;;) {
    if (m->free.len > seg_keep_free(m, purpose)) {
      if (m->next_seq < m->lease_end) break;
      /* Lease more sequences before using any (a manifest write); the
      ** free count is checked again afterwards. */
      uint64_t end = m->next_seq + LEASE_STEP;
      pthread_mutex_unlock(&m->lock);
      int rc = m->lease ? m->lease(m->lease_arg, end) : LS_OK;
      if (rc) return rc;
      pthread_mutex_lock(&m->lock);
      if (end > m->lease_end) m->lease_end = end;
      continue;
    }
    if (m->free.len + m->punched.n > seg_keep_free(m, purpose)) {
      pthread_mutex_unlock(&m->lock);
      int rc = seg_unpunch(m);
      if (rc && rc != LS_FULL) return rc;
      pthread_mutex_lock(&m->lock);
      if (!rc) continue;
    }
    if (m->formatting) {            /* a file is on its way */
      pthread_cond_wait(&m->cond, &m->lock);
      continue;
    }
    if (seg_can_grow(m)) {
      pthread_mutex_unlock(&m->lock);
      int rc = seg_grow(m, seg_keep_free(m, purpose) + 1);
      if (rc && rc != LS_FULL) return rc;
      pthread_mutex_lock(&m->lock);
      if (!rc) continue;
    }
    uint32_t nf = atomic_load(&m->nfiles);
    pthread_mutex_unlock(&m->lock);
    return ls_err(LS_FULL, "no space left: all %u data files of %llu bytes hold live data%s", nf,
                  (unsigned long long)m->file_size,
                  nf >= m->max_files ? " and disk_size allows no more" : " and the file system has no room for another");
  }
  seg_ref x;
  seg_fifo_pop(&m->free, &x);
  uint32_t s = x.id;
  ls_seg *d = seg_get(m, s);
  assert(d->state == SEG_FREE && d->seq == 0 && d->pins == 0 && d->holds == 0 && d->retains == 0 && d->ndeps == 0);
  assert(atomic_load(&d->live_records) == 0 && !atomic_load(&d->gset));
  d->seq = m->next_seq++;
  atomic_store(&d->born, 0);
  d->seed = ls_rec_seed(d->seq);
  d->state = SEG_ACTIVE;
  d->kind = (uint8_t)kind;
  d->flags = 0;
  d->table = table;
  d->group = group;
  d->used = 0;
  atomic_store(&d->live_bytes, 0);
  atomic_store(&d->live_records, 0);
  atomic_store(&d->live_tombs, 0);
  atomic_store(&d->tomb_bytes, 0);
  atomic_store(&d->dead_floor, SEG_NOFLOOR);
  atomic_store(&d->min_seq, 0);
  atomic_store(&d->max_seq, 0);
  for (uint32_t b = 0; b < m->seg_size / LS_BLOCK; b++) atomic_store_explicit(&d->blkmin[b], 0, memory_order_relaxed);
  /* stale_floor stays until this incarnation's first write is durable. */
  pthread_mutex_unlock(&m->lock);
  *id = s;
  return LS_OK;
}

void seg_seal(ls_segmgr *m, uint32_t id) {
  pthread_mutex_lock(&m->lock);
  assert(seg_get(m, id)->state == SEG_ACTIVE);
  seg_get(m, id)->state = SEG_SEALED;
  pthread_mutex_unlock(&m->lock);
}

int seg_add_dep(ls_segmgr *m, uint32_t x, uint32_t y) {
  if (x == y) return LS_OK;
  pthread_mutex_lock(&m->lock);
  ls_seg *d = seg_get(m, x);
  int rc = LS_OK;
  assert(d->state != SEG_FREE && seg_get(m, y)->state != SEG_FREE);
  for (uint32_t i = 0; i < d->ndeps; i++)
    if (d->deps[i] == y) goto out;
  if (LS_GROW(d->deps, d->capdeps, d->ndeps + 1, 4)) { rc = ls_err(LS_NOMEM, "out of memory"); goto out; }
  d->deps[d->ndeps++] = y;
  seg_get(m, y)->pins++;
out:
  pthread_mutex_unlock(&m->lock);
  return rc;
}

int seg_ids_push(seg_ids *s, uint32_t id) {
  if (s->n && s->v[s->n - 1] == id) return LS_OK;
  if (LS_GROW(s->v, s->cap, s->n + 1, 64)) return LS_NOMEM;
  s->v[s->n++] = id;
  return LS_OK;
}

/* Release the pins d holds.  Caller holds m->lock. */
static void release_deps(ls_segmgr *m, ls_seg *d, seg_ids *released) {
  for (uint32_t j = 0; j < d->ndeps; j++) {
    ls_seg *y = seg_get(m, d->deps[j]);
    assert(y->pins > 0);
    /* If the list can not grow the segment stays allocated until the
    ** next open finds it empty: space, never data, is lost. */
    if (--y->pins == 0) (void)seg_ids_push(released, d->deps[j]);
  }
  free(d->deps);
  d->deps = NULL;
  d->ndeps = d->capdeps = 0;
}

void seg_drop_deps(ls_segmgr *m, uint32_t x, seg_ids *released) {
  pthread_mutex_lock(&m->lock);
  release_deps(m, seg_get(m, x), released);
  pthread_mutex_unlock(&m->lock);
}

void seg_hold(ls_segmgr *m, uint32_t s, int delta) {
  pthread_mutex_lock(&m->lock);
  assert(delta > 0 || seg_get(m, s)->holds > 0);
  assert(seg_get(m, s)->state != SEG_FREE);
  seg_get(m, s)->holds += (uint32_t)delta;
  pthread_mutex_unlock(&m->lock);
}

void seg_retain(ls_segmgr *m, uint32_t s, int delta) {
  pthread_mutex_lock(&m->lock);
  ls_seg *d = seg_get(m, s);
  assert(delta > 0 || d->retains > 0);
  assert(d->state != SEG_FREE);
  d->retains += (uint32_t)delta;
  pthread_mutex_unlock(&m->lock);
}

int seg_is_empty(ls_segmgr *m, uint32_t s) {
  ls_seg *d = seg_get(m, s);
  pthread_mutex_lock(&m->lock);
  int r = (d->state == SEG_SEALED || d->state == SEG_CLEANING) && d->pins == 0 && d->holds == 0 && d->retains == 0 &&
          !(d->flags & SEGF_INFLIGHT) && atomic_load(&d->live_records) == 0;
  pthread_mutex_unlock(&m->lock);
  return r;
}

int seg_damaged(ls_segmgr *m, uint32_t s) {
  pthread_mutex_lock(&m->lock);
  int r = (seg_get(m, s)->flags & SEGF_DAMAGED) != 0;
  pthread_mutex_unlock(&m->lock);
  return r;
}

void seg_flags(ls_segmgr *m, uint32_t s, uint8_t set, uint8_t clear) {
  pthread_mutex_lock(&m->lock);
  ls_seg *d = seg_get(m, s);
  d->flags = (uint8_t)((d->flags | set) & ~clear);
  pthread_mutex_unlock(&m->lock);
}

/* ---- group sets ----------------------------------------------------------- */

/* List operations; caller holds hist_lock. */
static void list_unlink(ls_segmgr *m, ls_gset *g, uint32_t s) {
  ls_seg *d = seg_get(m, s);
  if (d->hprev != SEG_NONE) seg_get(m, d->hprev)->hnext = d->hnext; else g->head[d->hbucket] = d->hnext;
  if (d->hnext != SEG_NONE) seg_get(m, d->hnext)->hprev = d->hprev; else g->tail[d->hbucket] = d->hprev;
  d->hprev = d->hnext = SEG_NONE;
}

static void list_append(ls_segmgr *m, ls_gset *g, uint32_t s, uint32_t b) {
  ls_seg *d = seg_get(m, s);
  d->hbucket = (uint8_t)b;
  d->hnext = SEG_NONE;
  d->hprev = g->tail[b];
  if (g->tail[b] != SEG_NONE) seg_get(m, g->tail[b])->hnext = s; else g->head[b] = s;
  g->tail[b] = s;
}

uint32_t seg_gset_new(ls_segmgr *m, uint32_t table, uint32_t group) {
  ls_gset *g = calloc(1, sizeof *g);
  if (!g) return 0;
  g->table = table;
  g->group = group;
  g->alive = 1;
  for (int b = 0; b < SEG_NBUCKETS; b++) g->head[b] = g->tail[b] = SEG_NONE;
  pthread_mutex_lock(&m->hist_lock);
  if (LS_GROW(m->gsets, m->capgsets, m->ngsets + 1, 16)) {
    pthread_mutex_unlock(&m->hist_lock);
    free(g);
    return 0;
  }
  m->gsets[m->ngsets++] = g;
  uint32_t h = m->ngsets;
  pthread_mutex_unlock(&m->hist_lock);
  return h;
}

void seg_gset_release(ls_segmgr *m, uint32_t gs) {
  if (!gs) return;
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = m->gsets[gs - 1];
  if (g) {
    g->alive = 0;
    if (!g->count) { free(g); m->gsets[gs - 1] = NULL; }
  }
  pthread_mutex_unlock(&m->hist_lock);
}

void seg_set_add(ls_segmgr *m, uint32_t s, uint32_t gs) {
  pthread_mutex_lock(&m->lock);
  ls_seg *d = seg_get(m, s);
  assert(d->state != SEG_FREE);
  d->state = SEG_SEALED;
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs ? m->gsets[gs - 1] : NULL;
  if (g && g->alive && !atomic_load(&d->gset)) {
    /* Publish the set before reading live bytes: a concurrent seg_account
    ** either is counted in the value read here or sees the set and moves
    ** the segment itself (both sequentially consistent). */
    atomic_store(&d->gset, gs);
    list_append(m, g, s, seg_bucket(m, atomic_load(&d->live_bytes)));
    g->count++;
  }
  pthread_mutex_unlock(&m->hist_lock);
  pthread_mutex_unlock(&m->lock);
}

/* Take s out of its set.  Caller holds both locks. */
static void set_remove(ls_segmgr *m, uint32_t s) {
  ls_seg *d = seg_get(m, s);
  uint32_t gs = atomic_load(&d->gset);
  if (!gs) return;
  ls_gset *g = m->gsets[gs - 1];
  assert(g && g->count > 0);
  list_unlink(m, g, s);
  atomic_store(&d->gset, 0);
  if (--g->count == 0 && !g->alive) { free(g); m->gsets[gs - 1] = NULL; }
}

void seg_set_take(ls_segmgr *m, uint32_t s) {
  pthread_mutex_lock(&m->lock);
  pthread_mutex_lock(&m->hist_lock);
  assert(seg_get(m, s)->state == SEG_SEALED);
  set_remove(m, s);
  seg_get(m, s)->state = SEG_CLEANING;
  pthread_mutex_unlock(&m->hist_lock);
  pthread_mutex_unlock(&m->lock);
}

void seg_hist_update(ls_segmgr *m, uint32_t s) {
  pthread_mutex_lock(&m->hist_lock);
  ls_seg *d = seg_get(m, s);
  uint32_t gs = atomic_load(&d->gset);
  if (gs) {
    uint32_t b = seg_bucket(m, atomic_load(&d->live_bytes));
    if (b != d->hbucket) {
      ls_gset *g = m->gsets[gs - 1];
      list_unlink(m, g, s);
      list_append(m, g, s, b);
    }
  }
  pthread_mutex_unlock(&m->hist_lock);
}

/* ---- freeing --------------------------------------------------------------- */

int seg_free_many(ls_segmgr *m, const uint32_t *ids, int n, seg_ids *released) {
  pthread_mutex_lock(&m->lock);
  for (int i = 0; i < n; i++) {
    ls_seg *d = seg_get(m, ids[i]);
    /* Rule of freeing (header): no entry points into it, nothing pins or
    ** holds it, it is not in flight. */
    assert(d->state == SEG_SEALED || d->state == SEG_CLEANING);
    assert(atomic_load(&d->live_records) == 0 && atomic_load(&d->live_bytes) == 0);
    assert(d->pins == 0 && d->holds == 0 && d->retains == 0 && !(d->flags & SEGF_INFLIGHT));
    pthread_mutex_lock(&m->hist_lock);
    set_remove(m, ids[i]);
    pthread_mutex_unlock(&m->hist_lock);
    /* The old records stay readable by recovery until the slot's next
    ** incarnation is durable, unless a free marker already is. */
    if (d->flags & SEGF_MARK) atomic_store(&d->stale_floor, SEG_NOFLOOR);
    else seg_lower_floor(&d->stale_floor, atomic_load(&d->dead_floor));
    atomic_store(&d->dead_floor, SEG_NOFLOOR);
    d->state = SEG_FREE;
    d->seq = 0;
    d->flags = 0;
    d->table = d->group = 0;
    release_deps(m, d, released);
    /* A push can only fail for memory; the segment is then lost until the
    ** next open, which finds it free again.  Never lose data over it. */
    (void)seg_freeq_push(m, ids[i]);
  }
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return LS_OK;
}

void seg_push_free(ls_segmgr *m, uint32_t id) {
  pthread_mutex_lock(&m->lock);
  (void)seg_freeq_push(m, id);
  pthread_mutex_unlock(&m->lock);
}

uint32_t seg_nfree(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  uint32_t n = m->free.len + m->punched.n;
  pthread_mutex_unlock(&m->lock);
  return n;
}

uint64_t seg_headroom(ls_segmgr *m) {
  return seg_nfree(m) + (uint64_t)m->max_files * m->segs_per_file - atomic_load(&m->nsegs);
}

uint32_t seg_npunched(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  uint32_t n = m->punched.n;
  pthread_mutex_unlock(&m->lock);
  return n;
}

void seg_push_punched(ls_segmgr *m, uint32_t s) {
  pthread_mutex_lock(&m->lock);
  if (seg_ids_push(&m->punched, s)) (void)seg_freeq_push(m, s);
  pthread_mutex_unlock(&m->lock);
}

