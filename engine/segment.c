/*
** segment.c -- data files and segment allocation (see segment.h).
**
** Formatting a file: create data-N.tmp (O_EXCL), write zeros over all of
** it with a free marker at the start of every segment, fdatasync, rename
** to data-N.ls, fsync the directory, and only then record the new count of
** files in the manifest (the files callback) and hand out its segments.  A
** crash leaves at most a .tmp file, which recovery deletes, or one file
** more than the manifest counts, holding nothing but markers, which
** recovery adopts.  Files are never shrunk or deleted while the engine runs.
**
** The start of every segment always holds a valid buffer header or free
** marker (FORMAT.md): formatting writes markers, a hole keeps its first
** block (with a marker written and synced before the rest is punched), and
** zeroing a hole writes the marker again.  So offset 0 without a valid
** header is damage, never an unused segment.
**
** Lock order: lock, then hist_lock.
*/
#include "segment.h"
#include "format.h"
#include "ls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#define FORMAT_CHUNK (1u << 20)
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
** alone. */
static void set_reserve(ls_segmgr *m) {
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
  set_reserve(m);
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
static int freeq_push(ls_segmgr *m, uint32_t id) {
  return seg_fifo_push(&m->free, (seg_ref){ id, 0 });
}

/* Descriptors for one file, all FREE. */
static int add_descriptors(ls_segmgr *m, uint32_t file) {
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

static int format_file(ls_segmgr *m, uint32_t n, uint64_t len, int *fdout);

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
    int fd = m->io->m->open(m->io, m->dirfd, name, O_RDWR, 0);
    if (fd == -ENOENT && missing) {
      missing[i] = 1;                       /* recovery reports it */
    } else if (fd < 0) {
      return ls_err_io(fd, LS_CAUSE_OTHER, "open %s", name);
    } else {
      m->fds[i] = fd;
    }
    int rc = add_descriptors(m, i);
    if (rc) return rc;
    atomic_store(&m->nfiles, i + 1);
  }
  atomic_store(&m->nsegs, nsegs);
  set_reserve(m);
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

int seg_recreate_file(ls_segmgr *m, uint32_t n) {
  int fd = -1;
  int rc = format_file(m, n, seg_file_len(m, n, atomic_load(&m->nsegs)), &fd);
  if (rc) return rc;
  m->fds[n] = fd;
  return LS_OK;
}

/* Fill chunk (len bytes at file offset off) with zeros and a free marker
** at the start of each segment in it. */
static void format_chunk(ls_segmgr *m, uint8_t *chunk, uint64_t off, uint64_t len) {
  memset(chunk, 0, len);
  uint64_t first = ls_align_up(off, m->seg_size);
  for (uint64_t b = first; b < off + len && off + len - b >= LS_BUF_HDR; b += m->seg_size)
    ls_free_marker(chunk + (b - off), 0, 0);
}

int seg_format_range(ls_segmgr *m, int fd, uint64_t from, uint64_t to) {
  uint8_t *buf = ls_alloc_aligned(FORMAT_CHUNK);
  if (!buf) return -ENOMEM;
  int e = 0;
  for (uint64_t off = from; !e && off < to; off += FORMAT_CHUNK) {
    uint64_t len = to - off < FORMAT_CHUNK ? to - off : FORMAT_CHUNK;
    format_chunk(m, buf, off, len);
    e = m->io->m->write(m->io, fd, buf, len, off);
    if (!e) atomic_fetch_add(&m->format_bytes, len);
  }
  free(buf);
  return e;
}

/* Write zeros and markers over a new file of len bytes and make it durable
** under its final name. */
static int format_file(ls_segmgr *m, uint32_t n, uint64_t len, int *fdout) {
  char tmp[40], name[32];
  seg_file_name(n, name);
  snprintf(tmp, sizeof tmp, "data-%06u.tmp", n);
  ls_io *io = m->io;
  io->m->unlink(io, m->dirfd, tmp);
  int fd = io->m->open(io, m->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return ls_err_io(fd, LS_CAUSE_OTHER, "create data file %s", tmp);
  int e = seg_format_range(m, fd, 0, len);
  if (!e) e = io->m->sync(io, fd);
  if (!e) e = io->m->rename(io, m->dirfd, tmp, name);
  if (!e) e = io->m->fsync(io, m->dirfd);
  if (e) {
    io->m->close(io, fd);
    io->m->unlink(io, m->dirfd, tmp);
    return ls_err_io(e, LS_CAUSE_WRITE, "format data file %s", name);
  }
  *fdout = fd;
  return LS_OK;
}

/* May the store grow?  Caller holds m->lock. */
static int can_grow(ls_segmgr *m) {
  return atomic_load(&m->nsegs) < (uint64_t)m->max_files * m->segs_per_file;
}

/* Segments the ahead thread keeps formatted beyond the user reserve: an
** eighth of those in existence, at most a quarter file. */
static uint32_t ahead_of(const ls_segmgr *m, uint32_t nsegs) {
  uint32_t cap = m->segs_per_file / 4 ? m->segs_per_file / 4 : 1;
  return nsegs / 8 < cap ? nsegs / 8 : cap;
}

int seg_grow(ls_segmgr *m, uint32_t below) {
  pthread_mutex_lock(&m->lock);
  while (m->formatting) pthread_cond_wait(&m->cond, &m->lock);
  /* Holes do not count: the caller found none it could zero (and on a
  ** full file system none can be), so only zeroed free segments meet the
  ** need; counting holes here made seg_alloc spin. */
  uint32_t have = atomic_load(&m->nsegs), avail = m->free.len;
  if (avail >= below) {
    /* Another thread's step (or freed segments) met the need meanwhile. */
    pthread_mutex_unlock(&m->lock);
    return LS_OK;
  }
  uint32_t f = seg_files_for(m, have), tail = seg_tail_for(m, have);
  int fresh = !have || tail == m->segs_per_file;     /* a new file */
  if (fresh && f >= m->max_files) {
    pthread_mutex_unlock(&m->lock);
    return ls_err(LS_FULL, "disk_size reached: %u data files of %llu bytes in use", f,
                  (unsigned long long)m->file_size);
  }
  /* The step: a quarter of the store, at least 2 and what below asks,
  ** at most a quarter file and what the file has room for. */
  uint32_t room = fresh ? m->segs_per_file : m->segs_per_file - tail;
  uint32_t cap = m->segs_per_file / 4 ? m->segs_per_file / 4 : 1;
  uint32_t step = have / 4 < 2 ? 2 : have / 4;
  if (step > cap) step = cap;
  if (step < below - avail) step = below - avail;
  if (step > room) step = room;
  m->formatting = 1;
  pthread_mutex_unlock(&m->lock);

  int fd = -1, rc = LS_OK;
  if (fresh) {
    rc = format_file(m, f, (uint64_t)step * m->seg_size, &fd);
  } else {
    /* Bytes past the manifest's length of the file (an earlier step that
    ** failed or was cut short by a crash) are formatted again.  Through a
    ** descriptor of its own, synced outside sync_lock: a step's fdatasync
    ** takes as long as its megabytes, and commits must not wait for it.
    ** Linux reports a writeback error to every open description of the
    ** file (errseq), so the writer's descriptor still sees any failure
    ** this sync sees, and seg_sync's rule holds. */
    char name[32];
    seg_file_name(f - 1, name);
    uint64_t from = (uint64_t)tail * m->seg_size;
    int e = fd = m->io->m->open(m->io, m->dirfd, name, O_RDWR, 0);
    if (fd >= 0) {
      e = seg_format_range(m, fd, from, from + (uint64_t)step * m->seg_size);
      if (!e) e = m->io->m->sync(m->io, fd);
      m->io->m->close(m->io, fd);
      fd = -1;
    }
    if (e) rc = ls_err_io(e, LS_CAUSE_WRITE, "format %u more segments of data file %s", step, name);
  }
  /* The manifest counts the segments before any of them is used. */
  if (!rc && m->grown) rc = m->grown(m->lease_arg, have + step);
  if (!rc && fresh) rc = add_descriptors(m, f);

  atomic_store(&m->grow_failed, rc == LS_FULL);
  pthread_mutex_lock(&m->lock);
  assert(m->formatting && atomic_load(&m->nsegs) == have);
  if (!rc) {
    if (fresh) {
      m->fds[f] = fd;
      atomic_store(&m->nfiles, f + 1);
    }
    atomic_store(&m->nsegs, have + step);
    set_reserve(m);
    for (uint32_t i = 0; i < step && !rc; i++) rc = freeq_push(m, have + i);
  } else if (fresh && fd >= 0) {
    m->io->m->close(m->io, fd);
  }
  m->formatting = 0;
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

void seg_ahead_kick(ls_segmgr *m) {
  pthread_mutex_lock(&m->ahead_lock);
  m->ahead_kick = 1;
  pthread_cond_signal(&m->ahead_cond);
  pthread_mutex_unlock(&m->ahead_lock);
}

void seg_ahead_stop(ls_segmgr *m) {
  pthread_mutex_lock(&m->ahead_lock);
  m->ahead_stop = 1;
  pthread_cond_signal(&m->ahead_cond);
  pthread_mutex_unlock(&m->ahead_lock);
}

int seg_ahead_wait(ls_segmgr *m) {
  pthread_mutex_lock(&m->ahead_lock);
  while (!m->ahead_stop && !m->ahead_kick) pthread_cond_wait(&m->ahead_cond, &m->ahead_lock);
  int go = !m->ahead_stop;
  m->ahead_kick = 0;
  pthread_mutex_unlock(&m->ahead_lock);
  return go;
}

/* Free segments an allocation for purpose must leave.  Caller holds
** m->lock. */
static uint32_t keep_free(const ls_segmgr *m, int purpose) {
  return purpose == SEG_FOR_USER ? m->reserve_clean + m->reserve_delete
       : purpose == SEG_FOR_DELETE ? m->reserve_clean : 0;
}

/* Free segments the ahead thread wants at hand. */
static uint32_t ahead_low(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  uint32_t low = keep_free(m, SEG_FOR_USER) + ahead_of(m, atomic_load(&m->nsegs));
  pthread_mutex_unlock(&m->lock);
  return low;
}

void seg_prepare_ahead(ls_segmgr *m) {
  /* Holes first, then growth, a step at a time. */
  uint32_t low = ahead_low(m);
  while (seg_nfree(m) - seg_npunched(m) < low && seg_npunched(m))
    if (seg_unpunch(m)) break;
  while (seg_nfree(m) - seg_npunched(m) < (low = ahead_low(m))) {
    pthread_mutex_lock(&m->lock);
    int more = can_grow(m);
    pthread_mutex_unlock(&m->lock);
    if (!more || seg_grow(m, low)) break;
  }
}

int seg_can_alloc(ls_segmgr *m, int purpose) {
  pthread_mutex_lock(&m->lock);
  int ok = m->free.len > keep_free(m, purpose);   /* holes may not be writable */
  pthread_mutex_unlock(&m->lock);
  return ok;
}

int seg_alloc(ls_segmgr *m, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *id) {
  pthread_mutex_lock(&m->lock);
  for (;;) {
    if (m->free.len > keep_free(m, purpose)) {
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
    if (m->free.len + m->punched.n > keep_free(m, purpose)) {
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
    if (can_grow(m)) {
      pthread_mutex_unlock(&m->lock);
      int rc = seg_grow(m, keep_free(m, purpose) + 1);
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
  if (m->ngsets == m->capgsets) {
    uint32_t ncap = m->capgsets ? 2 * m->capgsets : 16;
    ls_gset **p = realloc(m->gsets, ncap * sizeof *p);
    if (!p) { pthread_mutex_unlock(&m->hist_lock); free(g); return 0; }
    m->gsets = p;
    m->capgsets = ncap;
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
    (void)freeq_push(m, ids[i]);
  }
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return LS_OK;
}

void seg_push_free(ls_segmgr *m, uint32_t id) {
  pthread_mutex_lock(&m->lock);
  (void)freeq_push(m, id);
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
  if (seg_ids_push(&m->punched, s)) (void)freeq_push(m, s);
  pthread_mutex_unlock(&m->lock);
}

static int cmp_desc(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x > y ? -1 : x < y;
}

uint32_t seg_punch_excess(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  /* Kept: the user reserve and twice what the ahead thread keeps. */
  uint32_t total = seg_count(m);
  uint32_t keep = keep_free(m, SEG_FOR_USER) + 2 * ahead_of(m, total);
  if (keep < total / 8) keep = total / 8;
  if (m->no_punch || m->free.len <= keep || m->free.len < total / 4) {
    pthread_mutex_unlock(&m->lock);
    return 0;
  }
  /* The highest ids go first: whole files at the end empty out. */
  uint32_t n = m->free.len, want = m->free.len - keep;
  uint32_t *all = malloc(n * sizeof *all);
  if (!all) { pthread_mutex_unlock(&m->lock); return 0; }
  seg_ref x;
  for (uint32_t i = 0; seg_fifo_pop(&m->free, &x); i++) all[i] = x.id;
  qsort(all, n, sizeof *all, cmp_desc);
  for (uint32_t i = want; i < n; i++) (void)freeq_push(m, all[i]);   /* room: the ring holds n */
  pthread_mutex_unlock(&m->lock);

  /* First a free marker over each one's first block, durable, so that no
  ** crash leaves a segment with old records after a punched start; then
  ** the rest goes (descending ids: each file's segments come together; its
  ** fsync follows its last punch). */
  uint8_t *blk = ls_alloc_aligned(LS_BLOCK);
  int prev = -1, e = blk ? 0 : -ENOMEM;
  if (blk) {
    memset(blk, 0, LS_BLOCK);
    ls_free_marker(blk, 0, 0);
  }
  for (uint32_t i = 0; i < want && !e; i++) {
    int fd = seg_fd(m, all[i]);
    if (prev >= 0 && fd != prev) e = seg_sync(m, prev, 0);
    prev = fd;
    if (!e) e = m->io->m->write(m->io, fd, blk, LS_BLOCK, seg_base(m, all[i]));
    if (e) {
      /* A marker may be half there: as bad as a failed sync. */
      pthread_mutex_lock(&m->sync_lock);
      if (!m->sync_err) m->sync_err = e;
      pthread_mutex_unlock(&m->sync_lock);
    }
  }
  if (!e && prev >= 0) e = seg_sync(m, prev, 0);
  free(blk);
  uint32_t done = 0;
  prev = -1;
  for (uint32_t i = 0; i < want && !e; i++) {
    int fd = seg_fd(m, all[i]);
    if (prev >= 0 && fd != prev) e = seg_sync(m, prev, 1);
    prev = fd;
    if (!e) e = m->io->m->fallocate(m->io, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                    seg_base(m, all[i]) + LS_BLOCK, m->seg_size - LS_BLOCK);
    if (!e) done++;
  }
  if (!e && prev >= 0) e = seg_sync(m, prev, 1);
  pthread_mutex_lock(&m->lock);
  /* The ones punched are holes (zeroed before use) even if the sync
  ** failed; a hole punched but not synced may read back as old bytes, so
  ** their floors stay.  Those not reached are free as before. */
  for (uint32_t i = 0; i < done; i++) {
    if (!e) atomic_store(&seg_get(m, all[i])->stale_floor, SEG_NOFLOOR);
    if (seg_ids_push(&m->punched, all[i])) (void)freeq_push(m, all[i]);
  }
  for (uint32_t i = done; i < want; i++) (void)freeq_push(m, all[i]);
  if (e) m->no_punch = 1;
  pthread_mutex_unlock(&m->lock);
  free(all);
  if (e) ls_err_io(e, LS_CAUSE_OTHER, "punch holes in data files");
  return done;
}

int seg_unpunch(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  if (!m->punched.n) {
    pthread_mutex_unlock(&m->lock);
    return ls_err(LS_FULL, "no free segment");
  }
  uint32_t s = m->punched.v[--m->punched.n];
  pthread_mutex_unlock(&m->lock);
  uint8_t *zero = ls_alloc_aligned(m->seg_size);
  int e = zero ? 0 : -ENOMEM;
  if (zero) {
    memset(zero, 0, m->seg_size);
    ls_free_marker(zero, 0, 0);             /* its start stays a marker */
  }
  int fd = seg_fd(m, s);
  if (!e) e = m->io->m->write(m->io, fd, zero, m->seg_size, seg_base(m, s));
  if (!e) e = seg_sync(m, fd, 0);
  free(zero);
  pthread_mutex_lock(&m->lock);
  if (e) (void)seg_ids_push(&m->punched, s);
  else {
    atomic_fetch_add(&m->format_bytes, m->seg_size);
    (void)freeq_push(m, s);
  }
  pthread_mutex_unlock(&m->lock);
  return e ? ls_err_io(e, LS_CAUSE_OTHER, "zero a free segment before use") : LS_OK;
}
