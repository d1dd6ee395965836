/*
** segment.c -- data files and segment allocation (see segment.h).
**
** Formatting a file: create data-N.tmp (O_EXCL), write zeros over all of
** it, fdatasync, rename to data-N.ls, fsync the directory.  A crash leaves
** at most a .tmp file, which recovery deletes.  Files are never shrunk or
** deleted while the engine runs.
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

int seg_init(ls_segmgr *m, ls_io *io, int dirfd, uint32_t seg_size, uint64_t file_size,
             uint64_t disk_size) {
  memset(m, 0, sizeof *m);
  m->io = io;
  m->dirfd = dirfd;
  m->seg_size = seg_size;
  m->file_size = file_size;
  m->segs_per_file = (uint32_t)(file_size / seg_size);
  uint64_t maxf = LOC_MAX_SEGS / m->segs_per_file;
  if (maxf > 65536) maxf = 65536;
  if (disk_size && disk_size / file_size < maxf) maxf = disk_size / file_size;
  m->max_files = (uint32_t)maxf;
  m->fds = malloc(m->max_files * sizeof(int));
  m->files = calloc(m->max_files, sizeof(ls_seg *));
  if (!m->fds || !m->files) {
    free(m->fds); free(m->files);
    return ls_err(LS_NOMEM, "segment manager: out of memory");
  }
  for (uint32_t i = 0; i < m->max_files; i++) m->fds[i] = -1;
  pthread_mutex_init(&m->lock, NULL);
  pthread_cond_init(&m->cond, NULL);
  m->next_seq = 1;
  return LS_OK;
}

void seg_shutdown(ls_segmgr *m) {
  uint32_t n = atomic_load(&m->nfiles);
  for (uint32_t i = 0; i < n; i++) {
    if (m->fds[i] >= 0) m->io->m->close(m->io, m->fds[i]);
    for (uint32_t j = 0; m->files[i] && j < m->segs_per_file; j++) free(m->files[i][j].deps);
    free(m->files[i]);
  }
  free(m->fds);
  free(m->files);
  free(m->freeq);
  pthread_mutex_destroy(&m->lock);
  pthread_cond_destroy(&m->cond);
  memset(m, 0, sizeof *m);
}

/* Append id to the free FIFO.  Caller holds m->lock. */
static int freeq_push(ls_segmgr *m, uint32_t id) {
  if (m->fq_len == m->fq_cap) {
    uint32_t ncap = m->fq_cap ? 2 * m->fq_cap : 256;
    uint32_t *q = malloc(ncap * sizeof *q);
    if (!q) return LS_NOMEM;
    for (uint32_t i = 0; i < m->fq_len; i++) q[i] = m->freeq[(m->fq_head + i) % m->fq_cap];
    free(m->freeq);
    m->freeq = q;
    m->fq_cap = ncap;
    m->fq_head = 0;
  }
  m->freeq[(m->fq_head + m->fq_len) % m->fq_cap] = id;
  m->fq_len++;
  return LS_OK;
}

/* Descriptors for one file, all FREE. */
static int add_descriptors(ls_segmgr *m, uint32_t file) {
  m->files[file] = calloc(m->segs_per_file, sizeof(ls_seg));
  return m->files[file] ? LS_OK : ls_err(LS_NOMEM, "segment manager: out of memory");
}

int seg_open_files(ls_segmgr *m, uint32_t n) {
  if (n > m->max_files)
    return ls_err(LS_INVALID, "data directory holds %u data files but disk_size allows %u", n,
                  m->max_files);
  for (uint32_t i = 0; i < n; i++) {
    char name[32];
    seg_file_name(i, name);
    int fd = m->io->m->open(m->io, m->dirfd, name, O_RDWR, 0);
    if (fd < 0) return ls_err_io(fd, "open %s", name);
    m->fds[i] = fd;
    int rc = add_descriptors(m, i);
    if (rc) return rc;
    atomic_store(&m->nfiles, i + 1);
  }
  return LS_OK;
}

/* Write zeros over a new file and make it durable under its final name. */
static int format_file(ls_segmgr *m, uint32_t n, int *fdout) {
  char tmp[40], name[32];
  seg_file_name(n, name);
  snprintf(tmp, sizeof tmp, "data-%06u.tmp", n);
  ls_io *io = m->io;
  io->m->unlink(io, m->dirfd, tmp);
  int fd = io->m->open(io, m->dirfd, tmp, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return ls_err_io(fd, "create data file %s", tmp);
  uint8_t *zero = ls_alloc_aligned(FORMAT_CHUNK);
  int e = zero ? 0 : -ENOMEM;
  if (zero) memset(zero, 0, FORMAT_CHUNK);
  for (uint64_t off = 0; !e && off < m->file_size; off += FORMAT_CHUNK) {
    uint64_t len = m->file_size - off < FORMAT_CHUNK ? m->file_size - off : FORMAT_CHUNK;
    e = io->m->write(io, fd, zero, len, off);
    if (!e) atomic_fetch_add(&m->format_bytes, len);
  }
  free(zero);
  if (!e) e = io->m->sync(io, fd);
  if (!e) e = io->m->rename(io, m->dirfd, tmp, name);
  if (!e) e = io->m->fsync(io, m->dirfd);
  if (e) {
    io->m->close(io, fd);
    io->m->unlink(io, m->dirfd, tmp);
    return ls_err_io(e, "format data file %s", name);
  }
  *fdout = fd;
  return LS_OK;
}

int seg_add_file(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  while (m->formatting) pthread_cond_wait(&m->cond, &m->lock);
  uint32_t n = atomic_load(&m->nfiles);
  if (n >= m->max_files) {
    pthread_mutex_unlock(&m->lock);
    return ls_err(LS_FULL, "disk_size reached: %u data files of %llu bytes in use", n,
                  (unsigned long long)m->file_size);
  }
  m->formatting = 1;
  pthread_mutex_unlock(&m->lock);

  int fd = -1;
  int rc = format_file(m, n, &fd);
  if (!rc) rc = add_descriptors(m, n);

  pthread_mutex_lock(&m->lock);
  if (!rc) {
    m->fds[n] = fd;
    atomic_store(&m->nfiles, n + 1);
    for (uint32_t i = 0; i < m->segs_per_file && !rc; i++)
      rc = freeq_push(m, n * m->segs_per_file + i);
  } else if (fd >= 0) {
    m->io->m->close(m->io, fd);
  }
  m->formatting = 0;
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

int seg_alloc(ls_segmgr *m, int kind, uint32_t table, uint32_t group, int grow, uint32_t *id) {
  pthread_mutex_lock(&m->lock);
  for (;;) {
    if (m->fq_len) break;
    if (m->formatting) {            /* a file is on its way */
      pthread_cond_wait(&m->cond, &m->lock);
      continue;
    }
    if (!grow || atomic_load(&m->nfiles) >= m->max_files) {
      pthread_mutex_unlock(&m->lock);
      return ls_err(LS_FULL, "no free segment: %u of %u data files in use, all segments hold live data",
                    atomic_load(&m->nfiles), m->max_files);
    }
    pthread_mutex_unlock(&m->lock);
    int rc = seg_add_file(m);
    if (rc) return rc;
    pthread_mutex_lock(&m->lock);
  }
  while (m->next_seq >= m->lease_end) {
    /* Lease more sequences before using any (a manifest write). */
    uint64_t end = m->next_seq + LEASE_STEP;
    pthread_mutex_unlock(&m->lock);
    int rc = m->lease ? m->lease(m->lease_arg, end) : LS_OK;
    pthread_mutex_lock(&m->lock);
    if (rc) {
      pthread_mutex_unlock(&m->lock);
      return rc;
    }
    if (end > m->lease_end) m->lease_end = end;
  }
  uint32_t s = m->freeq[m->fq_head];
  m->fq_head = (m->fq_head + 1) % m->fq_cap;
  m->fq_len--;
  ls_seg *d = seg_get(m, s);
  d->seq = m->next_seq++;
  d->seed = ls_rec_seed(d->seq);
  d->state = SEG_ACTIVE;
  d->kind = (uint8_t)kind;
  d->table = table;
  d->group = group;
  atomic_store(&d->live_bytes, 0);
  atomic_store(&d->live_records, 0);
  pthread_mutex_unlock(&m->lock);
  *id = s;
  return LS_OK;
}

void seg_seal(ls_segmgr *m, uint32_t id) {
  pthread_mutex_lock(&m->lock);
  seg_get(m, id)->state = SEG_SEALED;
  pthread_mutex_unlock(&m->lock);
}

int seg_add_dep(ls_segmgr *m, uint32_t x, uint32_t y) {
  if (x == y) return LS_OK;
  pthread_mutex_lock(&m->lock);
  ls_seg *d = seg_get(m, x);
  int rc = LS_OK;
  for (uint32_t i = 0; i < d->ndeps; i++)
    if (d->deps[i] == y) goto out;
  if (d->ndeps == d->capdeps) {
    uint32_t ncap = d->capdeps ? 2 * d->capdeps : 4;
    uint32_t *p = realloc(d->deps, ncap * sizeof *p);
    if (!p) { rc = ls_err(LS_NOMEM, "out of memory"); goto out; }
    d->deps = p;
    d->capdeps = ncap;
  }
  d->deps[d->ndeps++] = y;
  seg_get(m, y)->pins++;
out:
  pthread_mutex_unlock(&m->lock);
  return rc;
}

void seg_hold(ls_segmgr *m, uint32_t s, int delta) {
  pthread_mutex_lock(&m->lock);
  seg_get(m, s)->holds += (uint32_t)delta;
  pthread_mutex_unlock(&m->lock);
}

int seg_is_empty(ls_segmgr *m, uint32_t s) {
  ls_seg *d = seg_get(m, s);
  pthread_mutex_lock(&m->lock);
  int r = d->state == SEG_SEALED && d->pins == 0 && d->holds == 0 && atomic_load(&d->live_records) == 0;
  pthread_mutex_unlock(&m->lock);
  return r;
}

int seg_free_many(ls_segmgr *m, const uint32_t *ids, int n, uint32_t *released, int cap) {
  int nrel = 0;
  pthread_mutex_lock(&m->lock);
  for (int i = 0; i < n; i++) {
    ls_seg *d = seg_get(m, ids[i]);
    d->state = SEG_FREE;
    d->seq = 0;
    d->table = d->group = 0;
    for (uint32_t j = 0; j < d->ndeps; j++) {
      ls_seg *y = seg_get(m, d->deps[j]);
      if (--y->pins == 0 && nrel < cap) released[nrel++] = d->deps[j];
    }
    free(d->deps);
    d->deps = NULL;
    d->ndeps = d->capdeps = 0;
    /* A push can only fail for memory; the segment is then lost until the
    ** next open, which finds it free again.  Never lose data over it. */
    (void)freeq_push(m, ids[i]);
  }
  pthread_cond_broadcast(&m->cond);
  pthread_mutex_unlock(&m->lock);
  return nrel;
}

void seg_push_free(ls_segmgr *m, uint32_t id) {
  pthread_mutex_lock(&m->lock);
  (void)freeq_push(m, id);
  pthread_mutex_unlock(&m->lock);
}

uint32_t seg_nfree(ls_segmgr *m) {
  pthread_mutex_lock(&m->lock);
  uint32_t n = m->fq_len;
  pthread_mutex_unlock(&m->lock);
  return n;
}
