/*
** reclaim.c -- the cleaner's freeing (rule C2 in cleaner.c): segments left
** without live records are freed after readers drained, each with a
** durable free marker first (C3 needs it where a tombstone was dropped;
** every slot needs it so that a torn first write of its next incarnation
** can not leave the old incarnation's header over new bytes: FORMAT.md,
** "Free markers"); and settling: the buffer
** header of a segment the writer filled directly for one group is
** rewritten with the SETTLED flag once its transaction counts (FORMAT.md),
** so it no longer pins the segment of its COMMIT record.  Space of free
** segments goes back to the file system in segment.c (holes).
*/
#include "cleaner_int.h"

#include <stdlib.h>

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Write a durable free marker over the header of every segment in ids. */
static int write_markers(ls_cleaner *c, const uint32_t *ids, uint32_t n) {
  ls_engine *e = c->e;
  seg_syncset sync = { .n = 0 };
  int serr = 0;                    /* a sync failed (-errno) */
  for (uint32_t i = 0; i < n && !serr; i++) {
    ls_seg *d = seg_get(&e->sm, ids[i]);
    pthread_mutex_lock(&e->sm.lock);
    uint64_t seq = d->seq;
    pthread_mutex_unlock(&e->sm.lock);
    uint8_t hdr[LS_BUF_HDR];
    ls_free_marker(hdr, seq, atomic_load(&e->next_seq) - 1);
    int fd = seg_fd(&e->sm, ids[i]);
    /* Only the header's bytes: a single sector, written whole or not at
    ** all; the records after it stay as they are either way. */
    int r = e->io->m->write(e->io, fd, hdr, sizeof hdr, seg_base(&e->sm, ids[i]));
    if (r) return ls_err_io(r, LS_CAUSE_WRITE, "write of a free marker into segment %u", ids[i]);
    atomic_fetch_add(&e->bytes_written, sizeof hdr);
    atomic_fetch_add(&e->marker_bytes, sizeof hdr);
    if (seg_sync_note(&sync, fd) && !(serr = seg_sync_all(&e->sm, &sync, &e->syncs))) seg_sync_note(&sync, fd);
  }
  if (!serr) serr = seg_sync_all(&e->sm, &sync, &e->syncs);
  if (serr) return ls_err_io(serr, LS_CAUSE_SYNC, "fdatasync after free markers");
  /* Durable: the old records can not be read any more (seg_free_many). */
  for (uint32_t i = 0; i < n; i++) seg_flags(&e->sm, ids[i], SEGF_MARK, 0);
  return LS_OK;
}

/* Free every noted segment that is empty.  Returns how many were freed. */
uint64_t cl_reclaim(ls_cleaner *c) {
  ls_engine *e = c->e;
  pthread_mutex_lock(&c->qlock);
  for (uint32_t i = 0; i < c->empty.n; i++) (void)seg_ids_push(&c->cand, c->empty.v[i]);
  c->empty.n = 0;
  pthread_mutex_unlock(&c->qlock);
  uint64_t freed = 0;
  while (c->cand.n && !atomic_load(&e->failed)) {
    qsort(c->cand.v, c->cand.n, sizeof(uint32_t), cmp_u32);
    c->ids.n = 0;
    for (uint32_t i = 0; i < c->cand.n; i++) {
      uint32_t s = c->cand.v[i];
      if (i && s == c->cand.v[i - 1]) continue;
      if (seg_is_empty(&e->sm, s)) (void)seg_ids_push(&c->ids, s);
    }
    c->cand.n = 0;
    if (!c->ids.n) break;
    /* Readers that may hold a location into these segments entered before
    ** their last record died, which was before this wait. */
    cat_hook(e, "free:before-wait");
    ls_guard_wait(&e->guard);
    /* N1 (writer.c): the writes that killed these segments' records are
    ** durable before the records become unreadable. */
    int rc = seg_pending_sync(&e->sm, &e->syncs);
    if (rc) rc = ls_err_io(rc, LS_CAUSE_SYNC, "fdatasync of a data file before freeing segments");
    if (!rc) rc = write_markers(c, c->ids.v, c->ids.n);
    if (rc) {
      cat_fail(e, ls_errmsg());
      break;
    }
    uint64_t mixed = 0;
    pthread_mutex_lock(&e->sm.lock);
    for (uint32_t i = 0; i < c->ids.n; i++) {
      ls_seg *d = seg_get(&e->sm, c->ids.v[i]);
      mixed += d->kind == LS_KIND_MIXED && d->state == SEG_CLEANING && !(d->flags & SEGF_ADOPTED);
    }
    pthread_mutex_unlock(&e->sm.lock);
    seg_free_many(&e->sm, c->ids.v, (int)c->ids.n, &c->cand);
    atomic_fetch_add(&e->segments_freed, c->ids.n);
    atomic_fetch_add(&e->separator_freed, mixed);
    freed += c->ids.n;
  }
  c->cand.n = 0;
  return freed;
}

/* ---- settling directly written segments ------------------------------------ */

int cl_settle_all(ls_cleaner *c) {
  ls_engine *e = c->e;
  seg_ref x;
  seg_syncset sync = { .n = 0 };
  int rc = LS_OK, serr = 0;
  c->ids.n = 0;
  while (!rc && !serr && !atomic_load(&e->failed)) {
    pthread_mutex_lock(&c->qlock);
    int got = seg_fifo_pop(&c->settle, &x);
    pthread_mutex_unlock(&c->qlock);
    if (!got) break;
    pthread_mutex_lock(&e->sm.lock);
    ls_seg *d = seg_get(&e->sm, x.id);
    int ok = d->seq == x.seq && (d->state == SEG_SEALED || d->state == SEG_CLEANING) && d->ndeps > 0;
    uint32_t used = d->used;
    pthread_mutex_unlock(&e->sm.lock);
    if (!ok) continue;                 /* freed meanwhile, or nothing to settle */
    uint8_t hdr[LS_BUF_HDR];
    int fd = seg_fd(&e->sm, x.id);
    ssize_t n = e->io->m->read(e->io, fd, hdr, sizeof hdr, seg_base(&e->sm, x.id));
    ls_bufhdr h;
    if (n != (ssize_t)sizeof hdr || !ls_bufhdr_decode(hdr, &h) || h.seg_seq != x.seq || h.kind != LS_KIND_GROUP) {
      /* Left unsettled: it keeps its COMMIT record's segment (space, not
      ** data, is lost). */
      cat_problem(e, "segment %u: its header could not be read back to settle it", x.id);
      continue;
    }
    h.flags |= LS_BF_SETTLED;
    /* Its one buffer is durable: sealed too (FORMAT.md, "Sealing"). */
    if (used >= LS_BUF_HDR && used % LS_REC_ALIGN == 0 && !(h.flags & LS_BF_SEALED)) {
      h.flags |= LS_BF_SEALED;
      h.seg_end = used;
    }
    ls_bufhdr_encode(hdr, &h);
    int r = e->io->m->write(e->io, fd, hdr, sizeof hdr, seg_base(&e->sm, x.id));
    if (r) {
      rc = ls_err_io(r, LS_CAUSE_WRITE, "write of the header of segment %u", x.id);
      cat_fail(e, ls_errmsg());
      break;
    }
    atomic_fetch_add(&e->bytes_written, sizeof hdr);
    atomic_fetch_add(&e->marker_bytes, sizeof hdr);
    (void)seg_ids_push(&c->ids, x.id);
    if (seg_sync_note(&sync, fd) && !(serr = seg_sync_all(&e->sm, &sync, &e->syncs))) seg_sync_note(&sync, fd);
  }
  /* Durable before the COMMIT records they needed may go. */
  if (!rc && !serr) serr = seg_sync_all(&e->sm, &sync, &e->syncs);
  if (serr) {
    rc = ls_err_io(serr, LS_CAUSE_SYNC, "fdatasync after settling segments");
    cat_fail(e, ls_errmsg());
  }
  if (!rc)
    for (uint32_t i = 0; i < c->ids.n; i++) seg_drop_deps(&e->sm, c->ids.v[i], &c->cand);
  c->ids.n = 0;
  return rc;
}

