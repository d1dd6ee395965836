/*
** checkpoint.c -- index checkpoints (checkpoint.h; the layout is in
** FORMAT.md, "Checkpoint").
**
** Rules:
**  (K1) A checkpoint is written only at a clean close, after the writer and
**       the cleaner stopped and every data file was synced, and only when
**       the state is one a full recovery would rebuild the same: nothing
**       failed, no damage known, every segment in use sealed, with no
**       COMMIT record to keep (deps, pins) and no prepared records (holds),
**       and no transaction the host decided at this open (W11: its
**       decision must stay pending while its PREPARE record is read).
**       The close of an engine with a background cleaner settles and
**       separates first (cleaner_stop), so only a failure, damage or a
**       decided transaction keeps it from writing one.
**  (K2) It is made durable before it counts: CHECKPOINT.tmp is written and
**       synced, renamed over CHECKPOINT, the directory synced.
**  (K3) An open that finds it removes it (and syncs the directory) before
**       anything else is written, valid or not: so a CHECKPOINT on disk
**       always describes the data files as the last clean close left them.
**  (K4) It is used only when, besides its checksum and its own consistency,
**       the data files match it: same geometry and file count, the
**       manifest's tables with the same truncation points, and the header
**       at offset 0 of every segment -- a free marker where it lists none,
**       else the same incarnation, sealed at the same end -- with no
**       sequence on disk beyond the ones it continues from.  Anything else:
**       ignored, and recovery scans every segment as without one.
**  (K5) What it does not hold is derived as recovery derives it: live counts
**       from the indexes, each block's smallest sequence as the segment's
**       smallest (a lower bound, as segment.h needs), free segments with
**       or without their space (holes) from the file system.
*/
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_MAGIC   "LSCKPT01"
#define CKPT_VERSION 1
#define CKPT_HDR     64
#define CKPT_SEG     64
#define CKPT_TAB     24
#define CKPT_ENT     24

/* ---- writing ---------------------------------------------------------------- */

/* The checkpoint is written through a buffer of WCHUNK bytes, its CRC
** kept as it goes: memory stays bounded whatever the number of keys (the
** whole file in memory cost 24 bytes per key at close). */
#define WCHUNK (1u << 20)
typedef struct wbuf {
  ls_io *io;
  int fd;
  uint8_t *p;                      /* WCHUNK bytes */
  size_t len;                      /* in p, not yet written */
  uint64_t off;                    /* file offset of p[0] */
  uint32_t crc;                    /* of every byte before p */
  int err;                         /* first write error (-errno) */
} wbuf;

static void wflush(wbuf *b) {
  if (!b->err && b->len) b->err = b->io->m->write(b->io, b->fd, b->p, b->len, b->off);
  b->crc = ls_crc32c(b->crc, b->p, b->len);
  b->off += b->len;
  b->len = 0;
}

/* Room for n more bytes (n <= WCHUNK) at b->p + b->len. */
static uint8_t *wroom(wbuf *b, size_t n) {
  if (b->len + n > WCHUNK) wflush(b);
  return b->p + b->len;
}

static int put_entry(void *arg, const idx_entry *en, uint64_t seq) {
  wbuf *b = arg;
  LS_UNUSED(seq);
  uint8_t *p = wroom(b, CKPT_ENT);
  ls_put64(p, en->hi);
  ls_put64(p + 8, en->lo);
  ls_put64(p + 16, en->word);
  b->len += CKPT_ENT;
  return 0;
}

/* K1: may this state be checkpointed? */
static int eligible(ls_engine *e, uint32_t nseg, uint32_t *nused) {
  if (atomic_load(&e->failed) || e->on_damage != LS_ON_DAMAGE_ERROR || e->man.ndamaged || e->nkept) return 0;
  pthread_mutex_lock(&e->problems_lock);
  int clean = e->ndamage == 0 && e->problems == NULL;
  pthread_mutex_unlock(&e->problems_lock);
  if (!clean) return 0;
  *nused = 0;
  int ok = 1;
  pthread_mutex_lock(&e->sm.lock);
  for (uint32_t s = 0; ok && s < nseg; s++) {
    ls_seg *d = seg_get(&e->sm, s);
    if (d->state == SEG_FREE) continue;
    /* The writer's active segment was sealed on disk as it stopped (W10);
    ** an open checks that it was (K4). */
    ok = d->ndeps == 0 && d->pins == 0 && d->holds == 0 &&
         !(d->flags & (SEGF_DAMAGED | SEGF_INFLIGHT | SEGF_MARK)) && d->used >= LS_BUF_HDR &&
         d->used <= e->seg_size;
    (*nused)++;
  }
  pthread_mutex_unlock(&e->sm.lock);
  return ok;
}

int ckpt_write(ls_engine *e) {
  uint32_t nseg = seg_count(&e->sm), nused = 0;
  if (!eligible(e, nseg, &nused)) return LS_OK;
  /* Every seal is durable before a checkpoint says it is there (K1). */
  for (uint32_t f = 0; f < atomic_load(&e->sm.nfiles); f++) {
    int r = seg_sync(&e->sm, e->sm.fds[f], 0);
    if (r) return ls_err_io(r, LS_CAUSE_SYNC, "checkpoint: fdatasync of data file %u", f);
  }
  ls_catalog *c = atomic_load(&e->catalog);
  uint32_t ntables = 0;
  uint64_t nentries = 0;
  for (uint32_t i = 0; i < c->cap; i++)
    if (c->t[i]) {
      ntables++;
      nentries += idx_count(c->t[i]->idx);
    }
  /* K2: written to CHECKPOINT.tmp, synced, renamed. */
  ls_io *io = e->io;
  io->m->unlink(io, e->dirfd, CKPT_TMP);
  int fd = io->m->open(io, e->dirfd, CKPT_TMP, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return ls_err_io(fd, LS_CAUSE_WRITE, "checkpoint: create %s", CKPT_TMP);
  wbuf b = { .io = io, .fd = fd, .p = malloc(WCHUNK) };
  if (!b.p) {
    io->m->close(io, fd);
    io->m->unlink(io, e->dirfd, CKPT_TMP);
    return ls_err(LS_NOMEM, "checkpoint: out of memory");
  }
  uint8_t *h = wroom(&b, CKPT_HDR);
  memset(h, 0, CKPT_HDR);
  memcpy(h, CKPT_MAGIC, 8);
  ls_put32(h + 8, CKPT_VERSION);
  ls_put32(h + 12, e->seg_size);
  ls_put64(h + 16, e->file_size);
  ls_put32(h + 24, atomic_load(&e->sm.nfiles));
  ls_put32(h + 28, nused);
  ls_put32(h + 32, ntables);
  ls_put32(h + 36, nseg);
  ls_put64(h + 40, atomic_load(&e->next_seq));
  ls_put64(h + 48, e->sm.next_seq);
  ls_put64(h + 56, nentries);
  b.len += CKPT_HDR;
  for (uint32_t s = 0; s < nseg; s++) {
    ls_seg *d = seg_get(&e->sm, s);
    if (d->state == SEG_FREE) continue;
    uint8_t *p = wroom(&b, CKPT_SEG);
    memset(p, 0, CKPT_SEG);
    /* What its header on disk says (an adopted segment's still says mixed). */
    int adopted = (d->flags & SEGF_ADOPTED) != 0;
    ls_put32(p, s);
    ls_put32(p + 4, d->used);
    ls_put64(p + 8, d->seq);
    ls_put64(p + 16, atomic_load(&d->min_seq));
    ls_put64(p + 24, atomic_load(&d->max_seq));
    ls_put64(p + 32, atomic_load(&d->dead_floor));
    ls_put64(p + 40, atomic_load(&d->born));
    ls_put32(p + 48, adopted ? 0 : d->table);
    ls_put32(p + 52, adopted ? 0 : d->group);
    p[56] = adopted ? LS_KIND_MIXED : d->kind;
    b.len += CKPT_SEG;
  }
  for (uint32_t i = 0; i < c->cap; i++) {
    ls_table *t = c->t[i];
    if (!t) continue;
    uint8_t *p = wroom(&b, CKPT_TAB);
    ls_put32(p, t->id);
    ls_put32(p + 4, t->groups);
    ls_put64(p + 8, t->trunc_seq);
    ls_put64(p + 16, idx_count(t->idx));
    b.len += CKPT_TAB;
    idx_foreach(t->idx, put_entry, &b);
  }
  wflush(&b);
  uint8_t crc[4];
  ls_put32(crc, b.crc);
  int r = b.err;
  if (!r) r = io->m->write(io, fd, crc, 4, b.off);
  assert(r || b.off + 4 == CKPT_HDR + (uint64_t)nused * CKPT_SEG + (uint64_t)ntables * CKPT_TAB +
                              nentries * CKPT_ENT + 4);
  free(b.p);
  if (!r) r = io->m->fsync(io, fd);
  io->m->close(io, fd);
  if (!r) r = io->m->rename(io, e->dirfd, CKPT_TMP, CKPT_NAME);
  if (!r) r = io->m->fsync(io, e->dirfd);
  if (r) {
    io->m->unlink(io, e->dirfd, CKPT_TMP);
    io->m->unlink(io, e->dirfd, CKPT_NAME);
    return ls_err_io(r, LS_CAUSE_WRITE, "checkpoint: write of %s", CKPT_NAME);
  }
  return LS_OK;
}

/* ---- parsing ---------------------------------------------------------------- */

/* The record of segment id among v's (sorted by id), or NULL. */
static const uint8_t *find_seg(const ckpt_view *v, uint32_t id) {
  uint32_t lo = 0, hi = v->nsegs;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    uint32_t x = ls_get32(v->segs + (size_t)mid * CKPT_SEG);
    if (x == id) return v->segs + (size_t)mid * CKPT_SEG;
    if (x < id) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

int ckpt_parse(const uint8_t *buf, size_t len, uint32_t seg_size, uint32_t nseg, ckpt_view *v) {
  memset(v, 0, sizeof *v);
  if (len < CKPT_HDR + 4 || memcmp(buf, CKPT_MAGIC, 8) || ls_get32(buf + 8) != CKPT_VERSION) return 0;
  if (ls_get32(buf + len - 4) != ls_crc32c(0, buf, len - 4)) return 0;
  v->seg_size = ls_get32(buf + 12);
  v->file_size = ls_get64(buf + 16);
  v->nfiles = ls_get32(buf + 24);
  v->nsegs = ls_get32(buf + 28);
  v->ntables = ls_get32(buf + 32);
  v->segments = ls_get32(buf + 36);
  v->next_seq = ls_get64(buf + 40);
  v->next_seg_seq = ls_get64(buf + 48);
  v->nentries = ls_get64(buf + 56);
  if (v->seg_size != seg_size || !v->file_size || v->file_size % seg_size || v->nsegs > nseg) return 0;
  if (!v->segments) v->segments = (uint64_t)v->nfiles * (v->file_size / seg_size);   /* all files full */
  /* The lengths add up exactly (each count checked against what remains). */
  size_t end = len - 4, off = CKPT_HDR;
  if (v->nsegs > (end - off) / CKPT_SEG) return 0;
  v->segs = buf + off;
  off += (size_t)v->nsegs * CKPT_SEG;
  for (uint32_t i = 0; i < v->nsegs; i++) {
    const uint8_t *p = v->segs + (size_t)i * CKPT_SEG;
    uint32_t id = ls_get32(p), used = ls_get32(p + 4);
    if (id >= nseg || (i && id <= ls_get32(p - CKPT_SEG))) return 0;      /* increasing ids */
    if (used < LS_BUF_HDR || used > seg_size || used % LS_REC_ALIGN) return 0;
    if (!ls_get64(p + 8) || ls_get64(p + 8) >= v->next_seg_seq) return 0;   /* its incarnation */
    if (ls_get64(p + 16) > ls_get64(p + 24) || ls_get64(p + 24) >= v->next_seq) return 0;
    if (p[56] != LS_KIND_MIXED && p[56] != LS_KIND_GROUP) return 0;
    for (int j = 57; j < CKPT_SEG; j++)
      if (p[j]) return 0;
  }
  v->tables = buf + off;
  uint64_t total = 0;
  for (uint32_t i = 0; i < v->ntables; i++) {
    if (end - off < CKPT_TAB) return 0;
    const uint8_t *t = buf + off;
    uint64_t n = ls_get64(t + 16);
    if (!ls_get32(t) || !ls_get32(t + 4)) return 0;
    off += CKPT_TAB;
    if (n > (end - off) / CKPT_ENT) return 0;
    for (uint64_t k = 0; k < n; k++) {
      uint64_t word = ls_get64(buf + off + k * CKPT_ENT + 16);
      const uint8_t *s = find_seg(v, loc_seg(word));
      if (!s || loc_size(word) < LS_REC_HDR || loc_off(word) < LS_BUF_HDR ||
          (uint64_t)loc_off(word) + loc_size(word) > ls_get32(s + 4) || word != loc_make(loc_seg(word), loc_off(word), loc_size(word), loc_tomb(word)))
        return 0;
    }
    off += (size_t)n * CKPT_ENT;
    total += n;
  }
  return off == end && total == v->nentries;
}

/* ---- loading ---------------------------------------------------------------- */

/* K3: remove it, durably. */
static int discard(ls_engine *e) {
  ls_io *io = e->io;
  int r = io->m->unlink(io, e->dirfd, CKPT_NAME);
  if (r == -ENOENT) return LS_OK;
  if (!r) r = io->m->fsync(io, e->dirfd);
  return r ? ls_err_io(r, LS_CAUSE_WRITE, "remove %s", CKPT_NAME) : LS_OK;
}

int ckpt_discard(ls_engine *e) { return discard(e); }

/* Read the whole file into *buf (NULL: there is none). */
static int read_file(ls_engine *e, uint8_t **buf, size_t *len, uint64_t max) {
  ls_io *io = e->io;
  *buf = NULL;
  *len = 0;
  int fd = io->m->open(io, e->dirfd, CKPT_NAME, O_RDONLY, 0);
  if (fd == -ENOENT) return LS_OK;
  if (fd < 0) return ls_err_io(fd, LS_CAUSE_READ, "open %s", CKPT_NAME);
  struct stat st;
  int rc = LS_OK;
  if (fstat(fd, &st)) {
    rc = ls_err_io(-errno, LS_CAUSE_READ, "stat %s", CKPT_NAME);
  } else if ((uint64_t)st.st_size <= max && st.st_size > 0) {   /* larger: not ours, ignored */
    *buf = malloc((size_t)st.st_size);
    if (!*buf) {
      rc = ls_err(LS_NOMEM, "checkpoint: out of memory");
    } else {
      ssize_t n = io->m->read(io, fd, *buf, (size_t)st.st_size, 0);
      if (n != st.st_size) {
        free(*buf);
        *buf = NULL;              /* unreadable: ignored (K4) */
      } else {
        *len = (size_t)n;
      }
    }
  }
  io->m->close(io, fd);
  /* K3: consumed, whatever it holds. */
  int r = discard(e);
  if (r && !rc) {
    free(*buf);
    *buf = NULL;
    rc = r;
  }
  return rc;
}

/* K4: the engine's tables and the headers on disk against v. */
static int matches(ls_engine *e, const ckpt_view *v, uint32_t nseg) {
  if (v->file_size != e->file_size || v->nfiles != atomic_load(&e->sm.nfiles) || v->nfiles != e->man.files ||
      v->segments != nseg || nseg != ls_manifest_segments(&e->man) || v->ntables != e->man.ntables)
    return 0;
  const uint8_t *t = v->tables;
  for (uint32_t i = 0; i < v->ntables; i++) {
    uint32_t id = ls_get32(t);
    const ls_mtable *m = NULL;
    for (uint32_t j = 0; j < e->man.ntables && !m; j++)
      if (e->man.tables[j].id == id) m = &e->man.tables[j];
    if (!m || m->groups != ls_get32(t + 4) || m->trunc_seq != ls_get64(t + 8) || !cat_table(e, id)) return 0;
    t += CKPT_TAB + ls_get64(t + 16) * CKPT_ENT;
  }
  /* Every segment: free ones by their first block; those in use read
  ** whole and walked, every record's checksum checked, so that damage is
  ** found as a scan finds it (the scan runs instead and reports it). */
  enum { BATCH = 8 };
  uint8_t *bufs = ls_alloc_aligned((size_t)BATCH * e->seg_size);
  if (!bufs) return 0;
  int ok = 1;
  uint32_t k = 0;                  /* next record of v */
  for (uint32_t s = 0; ok && s < nseg; s += BATCH) {
    ls_io_req req[BATCH];
    const uint8_t *rec[BATCH];
    int n = 0;
    for (uint32_t i = s; i < nseg && i < s + BATCH; i++, n++) {
      const uint8_t *p = k < v->nsegs && ls_get32(v->segs + (size_t)k * CKPT_SEG) == i ? v->segs + (size_t)k++ * CKPT_SEG
                                                                                          : NULL;
      rec[n] = p;
      req[n] = (ls_io_req){ .op = LS_IOOP_READ, .fd = seg_fd(&e->sm, i), .buf = bufs + (size_t)n * e->seg_size,
                            .len = p ? ls_get32(p + 4) : LS_BLOCK, .off = seg_base(&e->sm, i) };
      req[n].len = (req[n].len + LS_BLOCK - 1) / LS_BLOCK * LS_BLOCK;
    }
    if (e->io->m->submit(e->io, req, n)) { ok = 0; break; }
    for (int j = 0; ok && j < n; j++) {
      const uint8_t *p = rec[j], *img = req[j].buf;
      ls_bufhdr h;
      ok = req[j].res == (ssize_t)req[j].len && ls_bufhdr_decode(img, &h) && h.max_seq < v->next_seq &&
           h.seg_seq < v->next_seg_seq;
      if (ok && !p) ok = h.kind == LS_KIND_FREE;
      if (!ok || !p) continue;
      uint32_t used = ls_get32(p + 4);
      ok = h.kind == p[56] && h.seg_seq == ls_get64(p + 8) && (h.flags & LS_BF_SEALED) && h.seg_end == used &&
           (h.kind == LS_KIND_MIXED || (h.table == ls_get32(p + 48) && h.group == ls_get32(p + 52)));
      ls_walk w;
      ls_walk_init(&w, img, e->seg_size, used, h.seg_seq, h.kind);
      w.durable = 1;
      for (int r = ok ? LS_WALK_RECORD : LS_WALK_END; r != LS_WALK_END;) {
        ls_rec rc;
        uint32_t off;
        r = ls_walk_next(&w, &rc, &off);
        if (r == LS_WALK_GAP) ok = 0;
        if (r == LS_WALK_BUFFER && w.hdr.max_seq >= v->next_seq) ok = 0;
        if (!ok) break;
      }
    }
  }
  free(bufs);
  return ok && k == v->nsegs;
}

static int cmp_by_seq(const void *a, const void *b, void *arg) {
  ls_engine *e = arg;
  uint64_t x = seg_get(&e->sm, *(const uint32_t *)a)->seq, y = seg_get(&e->sm, *(const uint32_t *)b)->seq;
  return x < y ? -1 : x > y;
}


/* Fill the indexes from v; on failure (memory, a key twice) they are
** emptied again and the checkpoint is not used. */
static int build_indexes(ls_engine *e, const ckpt_view *v) {
  const uint8_t *t = v->tables;
  int ok = 1;
  for (uint32_t i = 0; ok && i < v->ntables; i++) {
    ls_table *tb = cat_table(e, ls_get32(t));
    uint64_t n = ls_get64(t + 16);
    const uint8_t *p = t + CKPT_TAB;
    for (uint64_t k = 0; ok && k < n; k++, p += CKPT_ENT) {
      idx_key key = { ls_get64(p), ls_get64(p + 8) };
      ok = idx_put(tb->idx, &key, ls_get64(p + 16), NULL) == 0;
    }
    t += CKPT_TAB + n * CKPT_ENT;
  }
  if (!ok) {
    ls_catalog *c = atomic_load(&e->catalog);
    for (uint32_t i = 0; i < c->cap; i++)
      if (c->t[i]) idx_clear(c->t[i]->idx);
  }
  return ok;
}

int ckpt_load(ls_engine *e, uint32_t nseg, seg_ids *mixed, seg_ids *empties, int *loaded) {
  *loaded = 0;
  uint8_t *buf;
  size_t len;
  /* At most what nseg segments of records can need (a record is at least
  ** LS_REC_HDR bytes and costs an entry). */
  uint64_t max = CKPT_HDR + 4 + (uint64_t)nseg * CKPT_SEG + (uint64_t)(e->man.ntables + 1) * CKPT_TAB +
                 (uint64_t)nseg * (e->seg_size / LS_REC_HDR) * CKPT_ENT;
  int rc = read_file(e, &buf, &len, max);
  if (rc || !buf) return rc;
  ckpt_view v;
  if (!ckpt_parse(buf, len, e->seg_size, nseg, &v) || !matches(e, &v, nseg) || !build_indexes(e, &v)) {
    free(buf);
    return LS_OK;
  }
  /* The segments it lists (K5). */
  for (uint32_t i = 0; i < v.nsegs; i++) {
    const uint8_t *p = v.segs + (size_t)i * CKPT_SEG;
    ls_seg *d = seg_get(&e->sm, ls_get32(p));
    d->seq = ls_get64(p + 8);
    d->seed = ls_rec_seed(d->seq);
    d->kind = p[56];
    d->table = ls_get32(p + 48);
    d->group = ls_get32(p + 52);
    d->state = SEG_SEALED;
    d->used = ls_get32(p + 4);
    uint64_t min = ls_get64(p + 16);
    atomic_store(&d->min_seq, min);
    atomic_store(&d->max_seq, ls_get64(p + 24));
    atomic_store(&d->dead_floor, ls_get64(p + 32));
    atomic_store(&d->born, ls_get64(p + 40));
    for (uint32_t b = 0; b * LS_BLOCK < d->used; b++) atomic_store(&d->blkmin[b], min);
  }
  free(buf);
  ls_catalog *c = atomic_load(&e->catalog);
  for (uint32_t i = 0; i < c->cap; i++)
    if (c->t[i]) {
      void *arg[2] = { e, c->t[i] };
      idx_foreach(c->t[i]->idx, cat_account_entry, arg);
    }
  /* As recovery ends: free segments (holes found again), group segments to
  ** their sets, mixed ones with live records to the separator, empty ones
  ** to the cleaner. */
  for (uint32_t s = 0; !rc && s < nseg; s++) {
    ls_seg *d = seg_get(&e->sm, s);
    if (d->state == SEG_FREE) {
      off_t base = (off_t)seg_base(&e->sm, s) + LS_BLOCK;
      off_t data = lseek(seg_fd(&e->sm, s), base, SEEK_DATA);
      if ((data < 0 && errno == ENXIO) || (data >= 0 && data >= base + (off_t)e->seg_size - LS_BLOCK))
        seg_push_punched(&e->sm, s);
      else
        seg_push_free(&e->sm, s);
      continue;
    }
    int live = atomic_load(&d->live_records) > 0;
    if (d->kind == LS_KIND_GROUP) {
      ls_table *t = cat_table(e, d->table);
      if (t && d->group < t->groups) seg_set_add(&e->sm, s, t->gsets[d->group]);
    } else if (live && seg_ids_push(mixed, s)) {
      rc = ls_err(LS_NOMEM, "checkpoint: out of memory");
    }
    if (!rc && !live && seg_ids_push(empties, s)) rc = ls_err(LS_NOMEM, "checkpoint: out of memory");
  }
  if (rc) return rc;
  if (mixed->n) qsort_r(mixed->v, mixed->n, sizeof(uint32_t), cmp_by_seq, e);
  uint64_t next = v.next_seq;
  if (e->man.seq_floor + 1 > next) next = e->man.seq_floor + 1;
  for (uint32_t i = 0; i < e->man.ntables; i++)
    if (e->man.tables[i].trunc_seq > next) next = e->man.tables[i].trunc_seq;
  atomic_store(&e->next_seq, next);
  e->sm.next_seq = v.next_seg_seq;
  if (e->man.seg_seq_floor + 1 > e->sm.next_seq) e->sm.next_seq = e->man.seg_seq_floor + 1;
  *loaded = 1;
  return LS_OK;
}
