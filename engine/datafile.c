/*
** datafile.c -- the data files on disk, for the segment manager
** (segment.h): formatting, growth a step at a time, the ahead thread's
** preparation, and holes (free segments whose space went back to the file
** system).
**
** A growth step (segment.h, "Growth") formats new segments before the
** manifest counts them (the grown callback), and only then hands them out.
** A new file: create data-N.tmp (O_EXCL), write zeros with a free marker at
** the start of every segment, fdatasync, rename to data-N.ls, fsync the
** directory.  A longer last file: the same bytes written past its counted
** end, fdatasynced.  A crash leaves at most a .tmp file, which recovery
** deletes, bytes past the counted end, which the next step formats again,
** or one file more than the manifest counts, holding nothing but markers,
** which recovery adopts.  Files are never shrunk or deleted while the
** engine runs.
**
** The start of every segment always holds a valid buffer header or free
** marker (FORMAT.md): formatting writes markers, a hole keeps its first
** block (with a marker written and synced before the rest is punched), and
** zeroing a hole writes the marker again.  So offset 0 without a valid
** header is damage, never an unused segment.
*/
#include "segment.h"
#include "segment_int.h"
#include "format.h"
#include "ls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

#define FORMAT_CHUNK (1u << 20)

static int format_file(ls_segmgr *m, uint32_t n, uint64_t len, int *fdout);

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
  if (!rc && fresh) rc = seg_add_descriptors(m, f);

  atomic_store(&m->grow_failed, rc == LS_FULL);
  pthread_mutex_lock(&m->lock);
  assert(m->formatting && atomic_load(&m->nsegs) == have);
  if (!rc) {
    if (fresh) {
      m->fds[f] = fd;
      atomic_store(&m->nfiles, f + 1);
    }
    atomic_store(&m->nsegs, have + step);
    seg_set_reserve(m);
    for (uint32_t i = 0; i < step && !rc; i++) rc = seg_freeq_push(m, have + i);
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
  pthread_cond_broadcast(&m->ahead_cond);
  pthread_mutex_unlock(&m->ahead_lock);
}

void seg_ahead_stop(ls_segmgr *m) {
  pthread_mutex_lock(&m->ahead_lock);
  m->ahead_stop = 1;
  pthread_cond_broadcast(&m->ahead_cond);
  pthread_mutex_unlock(&m->ahead_lock);
}

int seg_ahead_wait(ls_segmgr *m) {
  pthread_mutex_lock(&m->ahead_lock);
  m->ahead_running = 0;
  pthread_cond_broadcast(&m->ahead_cond);        /* a holder waits for this */
  while (!m->ahead_stop && (!m->ahead_kick || m->ahead_held)) pthread_cond_wait(&m->ahead_cond, &m->ahead_lock);
  int go = !m->ahead_stop;
  m->ahead_kick = 0;
  m->ahead_running = go;
  pthread_mutex_unlock(&m->ahead_lock);
  return go;
}

void seg_ahead_hold(ls_segmgr *m, int hold) {
  pthread_mutex_lock(&m->ahead_lock);
  m->ahead_held = hold;
  while (hold && m->ahead_running) pthread_cond_wait(&m->ahead_cond, &m->ahead_lock);
  pthread_cond_broadcast(&m->ahead_cond);
  pthread_mutex_unlock(&m->ahead_lock);
}

/* Free segments the ahead thread wants at hand. */
static uint32_t ahead_low(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  uint32_t low = seg_keep_free(m, SEG_FOR_USER) + ahead_of(m, atomic_load(&m->nsegs));
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
    int more = seg_can_grow(m);
    pthread_mutex_unlock(&m->lock);
    if (!more || seg_grow(m, low)) break;
  }
}

static int cmp_desc(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x > y ? -1 : x < y;
}

uint32_t seg_punch_excess(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  /* Kept: the user reserve and twice what the ahead thread keeps. */
  uint32_t total = seg_count(m);
  uint32_t keep = seg_keep_free(m, SEG_FOR_USER) + 2 * ahead_of(m, total);
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
  for (uint32_t i = want; i < n; i++) (void)seg_freeq_push(m, all[i]);   /* room: the ring holds n */
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
    if (seg_ids_push(&m->punched, all[i])) (void)seg_freeq_push(m, all[i]);
  }
  for (uint32_t i = done; i < want; i++) (void)seg_freeq_push(m, all[i]);
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
    (void)seg_freeq_push(m, s);
  }
  pthread_mutex_unlock(&m->lock);
  return e ? ls_err_io(e, LS_CAUSE_OTHER, "zero a free segment before use") : LS_OK;
}
