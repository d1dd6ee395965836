/*
** separate.c -- the separator: each sealed mixed segment, oldest first, is
** read back and its live records copied into the relocation buffers of
** their groups (relocate.c) -- or, when all its records are of one group
** and nothing ties it to another segment, it joins that group as it is
** (adoption).  A segment held by a prepared transaction waits.
*/
#include "cleaner_int.h"

/* Mixed segment s (CLEANING, read back into c->img) joins its group's set
** as it is if all its rows belong to one table of one group and nothing
** ties it to another segment: no pins (no other segment needs a COMMIT or
** ABORT record in it), no deps (its CONT records are committed by COMMIT
** records in it), no holds (no prepared transaction).  The separator would
** only copy its live rows, in the same (sequence) order, into a segment of
** that group; a single table of one group -- the common case -- so writes
** its rows once.  Its bytes still say mixed: recovery finds it mixed, and
** the separator adopts or separates it again.  Only while live rows fill
** at most half of a bounded disk: a copy packs them tighter (no dead rows,
** no padding), and on a fuller disk that density saves compaction more
** writes than the copy costs.  Returns 1 if adopted. */
static int adopt(ls_cleaner *c, uint32_t s, uint32_t used, uint64_t sseq) {
  ls_engine *e = c->e;
  if (c->resume_seg == s && c->resume_seq == sseq) return 0;   /* copies made already */
  if (e->disk_size && 2 * cat_live_bytes(e) > e->disk_size) return 0;
  ls_walk w;
  ls_walk_init(&w, c->img, e->seg_size, used, sseq, LS_KIND_MIXED);
  w.durable = 1;
  ls_rec r;
  uint32_t off, table = 0, n = 0;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END) {
    if (k == LS_WALK_GAP) return 0;        /* damaged: copy what can be read */
    if (k != LS_WALK_RECORD || (r.type != LS_REC_PUT && r.type != LS_REC_DELETE)) continue;
    if (n++ && r.table != table) return 0;
    table = r.table;
  }
  if (!n) return 0;
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = cat_table(e, table);
  uint32_t gs = t && t->groups == 1 ? t->gsets[0] : 0;
  ls_guard_leave(&e->guard, g);
  if (!gs) return 0;
  pthread_mutex_lock(&e->sm.lock);
  ls_seg *d = seg_get(&e->sm, s);
  int ok = d->seq == sseq && d->state == SEG_CLEANING && !d->pins && !d->holds && !d->ndeps;
  if (ok) {
    d->table = table;
    d->group = 0;
    d->flags |= SEGF_ADOPTED;
  }
  pthread_mutex_unlock(&e->sm.lock);
  if (!ok) return 0;
  seg_set_add(&e->sm, s, gs);
  /* Emptied meanwhile, or its table dropped (then no set took it). */
  if (!atomic_load(&d->live_records)) (void)seg_ids_push(&c->cand, s);
  atomic_fetch_add(&e->separator_adopted, 1);
  return 1;
}

/* Separate up to max ready mixed segments.  Returns how many, or an error
** (LS_FULL: no segment for a buffer now; the segment went back). */
int cl_separate(ls_cleaner *c, uint32_t max, uint32_t *done) {
  ls_engine *e = c->e;
  *done = 0;
  /* Segments a prepared transaction held: try them again. */
  uint32_t nd = c->deferred.len;
  for (uint32_t i = 0; i < nd; i++) {
    seg_ref x;
    seg_fifo_pop(&c->deferred, &x);
    pthread_mutex_lock(&c->qlock);
    if (seg_fifo_push(&c->mixed, x) == LS_OK) atomic_fetch_add(&c->backlog, 1);
    pthread_mutex_unlock(&c->qlock);
  }
  while (*done < max && !atomic_load(&e->failed)) {
    seg_ref x;
    pthread_mutex_lock(&c->qlock);
    int got = seg_fifo_pop(&c->mixed, &x);
    pthread_mutex_unlock(&c->qlock);
    if (!got) break;
    atomic_fetch_sub(&c->backlog, 1);
    pthread_mutex_lock(&e->sm.lock);
    ls_seg *d = seg_get(&e->sm, x.id);
    int ok = d->seq == x.seq && d->state == SEG_SEALED;
    int held = ok && d->holds > 0;
    assert(!ok || !(d->flags & SEGF_INFLIGHT));   /* W6 (writer.c): never separated in flight */
    if (ok && !held) d->state = SEG_CLEANING;
    pthread_mutex_unlock(&e->sm.lock);
    if (!ok) continue;                                /* freed meanwhile */
    if (held) { (void)seg_fifo_push(&c->deferred, x); continue; }
    uint32_t used, kind;
    uint64_t sseq;
    int rc = cl_read_back(c, x.id, &used, &sseq, &kind);
    if (!rc && kind == LS_KIND_MIXED && adopt(c, x.id, used, sseq)) {
      (*done)++;
      continue;
    }
    if (!rc) rc = cl_relocate_img(c, x.id, used, sseq, kind, ++c->ordinal);
    if (rc == LS_CORRUPT) {
      cat_problem(e, "%s", ls_errmsg());
    } else if (rc) {
      /* No segment or memory for a buffer now, or an I/O error: the
      ** segment goes back to the head of the queue (the records already
      ** copied are not copied again: see resume). */
      pthread_mutex_lock(&e->sm.lock);
      d->state = SEG_SEALED;
      pthread_mutex_unlock(&e->sm.lock);
      pthread_mutex_lock(&c->qlock);
      if (seg_fifo_push_front(&c->mixed, x) == LS_OK) atomic_fetch_add(&c->backlog, 1);
      pthread_mutex_unlock(&c->qlock);
      return rc;
    }
    (*done)++;
    /* The buffers written so far emptied their sources: short of space,
    ** free those now rather than after the whole backlog (whose copies
    ** would otherwise all need free segments first). */
    int urgent = 0;
    if (c->cand.n && (cl_want_compaction(c, &urgent), urgent)) cl_reclaim(c);
  }
  return LS_OK;
}

