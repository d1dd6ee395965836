/*
** relocate.c -- the cleaner's relocation buffers (rule C1 in cleaner.c):
** live records of mixed segments (the separator) and of group segments
** (compaction) are copied into one buffer per compaction group; a buffer
** is written as a new group segment, made durable, and then each record's
** index entry moves to the copy by compare-and-swap on the old location.
** Also the tombstone floor (C3).
*/
#include "cleaner_int.h"

#include <stdlib.h>

static int rec_by_seq(const void *a, const void *b) {
  const cl_rec *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- relocation buffers ------------------------------------------------- */

static void buf_reset(cl_buf *b) {
  b->len = LS_BUF_HDR;
  b->nrec = 0;
  b->min_put = UINT64_MAX;
  b->oldest = UINT64_MAX;
  b->sep_bytes = b->comp_bytes = 0;
}

/* Take b out of the hash and keep it as a spare. */
static void buf_retire(ls_cleaner *c, cl_buf *b) {
  for (cl_buf **pp = &c->hash[cl_hslot(b->table, b->group)]; *pp; pp = &(*pp)->next)
    if (*pp == b) { *pp = b->next; break; }
  buf_reset(b);
  b->next = c->spare;
  c->spare = b;
  atomic_fetch_sub(&c->inuse, 1);
}

/* Write b as a new group segment and move its records' index entries (C1).
** LS_OK (b is retired), LS_FULL (no segment: b is kept), or an I/O error
** (the engine is failed). */
int cl_buf_flush(ls_cleaner *c, cl_buf *b) {
  ls_engine *e = c->e;
  if (!b->nrec) { buf_retire(c, b); return LS_OK; }
  /* A dropped table's records are gone already. */
  unsigned g = ls_guard_enter(&e->guard);
  int alive = cat_table(e, b->table) != NULL;
  ls_guard_leave(&e->guard, g);
  if (!alive) { buf_retire(c, b); return LS_OK; }

  uint32_t out;
  int rc = seg_alloc(&e->sm, LS_KIND_GROUP, b->table, b->group, SEG_FOR_CLEANER, &out);
  if (rc) return rc;
  ls_seg *d = seg_get(&e->sm, out);
  /* Records in sequence order: old and new ones rarely share a block,
  ** which keeps the tombstone floors of later deaths precise. */
  qsort(b->recs, b->nrec, sizeof *b->recs, rec_by_seq);
  uint32_t pos = LS_BUF_HDR;
  for (uint32_t i = 0; i < b->nrec; i++) {
    cl_rec *rr = &b->recs[i];
    memcpy(c->sorted + pos, b->mem + rr->off, rr->size);
    rr->off = pos;
    pos += rr->size;
    ls_rec_seal(c->sorted + rr->off, rr->seq, LS_RF_END, d->seed);
    seg_note_rec(d, rr->off, rr->seq);
  }
  uint8_t *img = c->sorted;
  c->sorted = b->mem;
  b->mem = img;
  ls_bufhdr h = {
    .kind = LS_KIND_GROUP, .seg_seq = d->seq, .max_seq = atomic_load(&e->next_seq) - 1,
    .data_size = b->len - LS_BUF_HDR, .nrecords = b->nrec, .table = b->table, .group = b->group,
  };
  ls_bufhdr_encode(b->mem, &h);
  uint32_t len = (uint32_t)ls_align_up(b->len, LS_BLOCK);
  memset(b->mem + b->len, 0, len - b->len);
  int fd = seg_fd(&e->sm, out);
  int r = e->io->m->write(e->io, fd, b->mem, len, seg_base(&e->sm, out));
  if (!r) r = seg_sync(&e->sm, fd, 0);
  atomic_fetch_add(&e->syncs, 1);
  if (r) {
    rc = ls_err_io(r, LS_CAUSE_WRITE, "write of group segment %u", out);
    cat_fail(e, ls_errmsg());
    return rc;
  }
  if (atomic_load(&e->failed)) return ls_err(LS_READONLY, "%s", e->fail_msg);
  d->used = len;
  /* Durable: its end goes into its header (FORMAT.md, "Sealing"; synced
  ** with a later sync of the file, if ever: unsealed it reads the same). */
  int sfd;
  r = seg_seal_header(&e->sm, out, d->seq, len, &sfd);
  if (r) {
    cat_fail(e, ls_errmsg());
    return r;
  }
  atomic_store(&d->born, atomic_load(&e->next_seq));
  atomic_store(&d->stale_floor, SEG_NOFLOOR);   /* its first write is durable */
  atomic_fetch_add(&e->bytes_written, len);
  atomic_fetch_add(&e->cleaner_segments, 1);
  /* Bytes of the write, split by where the records came from. */
  uint64_t total = b->sep_bytes + b->comp_bytes;
  uint64_t sep = total ? (uint64_t)((double)len * (double)b->sep_bytes / (double)total) : 0;
  atomic_fetch_add(&e->separator_bytes, sep);
  atomic_fetch_add(&e->compaction_bytes, len - sep);
  cat_hook(e, "flush:durable");

  /* Move the entries.  The source's incarnation is checked under the table
  ** lock: no entry can change meanwhile, so an equal word there is the
  ** very record copied. */
  g = ls_guard_enter(&e->guard);
  ls_table *t = cat_table(e, b->table);
  if (t) pthread_rwlock_wrlock(&t->lock);
  for (uint32_t i = 0; i < b->nrec; i++) {
    cl_rec *rr = &b->recs[i];
    if (t && i + IDX_PF_FAR < b->nrec) idx_prefetch(t->idx, &(idx_key){ b->recs[i + IDX_PF_FAR].hi, b->recs[i + IDX_PF_FAR].lo }, 0);
    if (t && i + IDX_PF_NEAR < b->nrec) idx_prefetch(t->idx, &(idx_key){ b->recs[i + IDX_PF_NEAR].hi, b->recs[i + IDX_PF_NEAR].lo }, 1);
    int tomb = loc_tomb(rr->old);
    uint64_t nw = loc_make(out, rr->off, rr->size, tomb);
    if (t && seg_seq_of(&e->sm, loc_seg(rr->old)) == rr->src_seq && idx_cas(t->idx, &(idx_key){ rr->hi, rr->lo }, rr->old, nw)) {
      seg_account(&e->sm, rr->old, -1);
      seg_account(&e->sm, nw, +1);
      if (e->cache && !tomb) cache_move(e->cache, rr->old, rr->src_seq, nw, d->seq, b->mem + rr->off, rr->size);
      (void)seg_ids_push(&c->cand, loc_seg(rr->old));
    } else if (!tomb) {
      /* A user write won: the copy is dead on arrival, and an older
      ** version of its key for the tombstone floors. */
      seg_lower_floor(&d->dead_floor, rr->seq);
    }
  }
  if (t) pthread_rwlock_unlock(&t->lock);
  uint32_t gs = b->gset;
  ls_guard_leave(&e->guard, g);
  seg_set_add(&e->sm, out, gs);
  if (!atomic_load(&d->live_records)) (void)seg_ids_push(&c->cand, out);
  cat_hook(e, "flush:relocated");
  buf_retire(c, b);
  return LS_OK;
}

/* Write every buffer (of table, or all when 0); keeps going past LS_FULL
** and returns the first error. */
int cl_flush_all(ls_cleaner *c, uint32_t table) {
  int first = LS_OK;
  for (uint32_t h = 0; h < NHASH; h++) {
    cl_buf *b = c->hash[h];
    while (b) {
      cl_buf *next = b->next;
      if (!table || b->table == table) {
        int rc = cl_buf_flush(c, b);
        if (rc && !first) first = rc;
        if (rc && rc != LS_FULL) return rc;
      }
      b = next;
    }
  }
  return first;
}

/* Write buffers holding records of mixed segments separated more than
** age_limit segments ago. */
int cl_flush_aged(ls_cleaner *c) {
  ls_engine *e = c->e;
  uint64_t limit = seg_count(&e->sm) / 20;
  if (limit < 8) limit = 8;
  for (uint32_t h = 0; h < NHASH; h++) {
    cl_buf *b = c->hash[h];
    while (b) {
      cl_buf *next = b->next;
      if (b->oldest != UINT64_MAX && c->ordinal - b->oldest > limit) {
        int rc = cl_buf_flush(c, b);
        if (rc) return rc;
      }
      b = next;
    }
  }
  return LS_OK;
}

/* The buffer of (table, group), made if needed.  When the pool is used up
** the buffer holding the oldest records is written to make room. */
static int buf_get(ls_cleaner *c, uint32_t table, uint32_t group, uint32_t gset, cl_buf **out) {
  ls_engine *e = c->e;
  for (cl_buf *b = c->hash[cl_hslot(table, group)]; b; b = b->next)
    if (b->table == table && b->group == group) { *out = b; return LS_OK; }
  if (!c->spare && c->nbufs >= c->maxbufs) {
    cl_buf *victim = NULL;
    for (uint32_t h = 0; h < NHASH; h++)
      for (cl_buf *b = c->hash[h]; b; b = b->next)
        if (!victim || b->oldest < victim->oldest || (b->oldest == victim->oldest && b->len > victim->len))
          victim = b;
    int rc = cl_buf_flush(c, victim);
    if (rc) return rc;
  }
  cl_buf *b = c->spare;
  if (b) {
    c->spare = b->next;
  } else {
    b = calloc(1, sizeof *b);
    if (b) b->mem = ls_alloc_aligned(e->seg_size);
    if (b) b->caprec = e->seg_size / 32 + 1;
    if (b) b->recs = malloc(b->caprec * sizeof(cl_rec));
    if (!b || !b->mem || !b->recs) {
      if (b) { free(b->mem); free(b->recs); free(b); }
      return ls_err(LS_NOMEM, "cleaner: out of memory");
    }
    c->nbufs++;
    buf_reset(b);
  }
  b->table = table;
  b->group = group;
  b->gset = gset;
  b->next = c->hash[cl_hslot(table, group)];
  c->hash[cl_hslot(table, group)] = b;
  atomic_fetch_add(&c->inuse, 1);
  *out = b;
  return LS_OK;
}

/* ---- tombstone floor (C3) ------------------------------------------------ */

/* The smallest floor of every segment but exclude, and of the copies
** waiting to be written (buffers, a compaction step's staged records). */
uint64_t cl_tomb_floor(ls_cleaner *c, uint32_t exclude) {
  ls_engine *e = c->e;
  uint64_t f = UINT64_MAX;
  uint32_t n = seg_count(&e->sm);
  for (uint32_t s = 0; s < n; s++) {
    if (s == exclude) continue;
    ls_seg *d = seg_get(&e->sm, s);
    uint64_t a = atomic_load(&d->dead_floor), b = atomic_load(&d->stale_floor);
    if (a < f) f = a;
    if (b < f) f = b;
  }
  for (uint32_t h = 0; h < NHASH; h++)
    for (cl_buf *b = c->hash[h]; b; b = b->next)
      if (b->min_put < f) f = b->min_put;
  for (uint32_t i = 0; i < c->nstaged; i++)      /* copies of this compaction step */
    if (!c->staged[i].tomb && c->staged[i].seq < f) f = c->staged[i].seq;
  return f;
}

/* ---- relocating one segment ---------------------------------------------- */

static int item_cmp(const void *a, const void *b) {
  const cl_item *x = a, *y = b;
  if (x->table != y->table) return x->table < y->table ? -1 : 1;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* Read segment s back into c->img; *used receives the bytes read. */
int cl_read_back(ls_cleaner *c, uint32_t s, uint32_t *used, uint64_t *seq, uint32_t *kind) {
  ls_engine *e = c->e;
  pthread_mutex_lock(&e->sm.lock);
  ls_seg *d = seg_get(&e->sm, s);
  *used = d->used;
  *seq = d->seq;
  *kind = d->kind;
  pthread_mutex_unlock(&e->sm.lock);
  if (!*used) return LS_OK;
  ssize_t r = e->io->m->read(e->io, seg_fd(&e->sm, s), c->img, *used, seg_base(&e->sm, s));
  if (r < 0) return ls_err_io((int)r, LS_CAUSE_READ, "cleaner: read of segment %u", s);
  if ((uint32_t)r != *used) return ls_corrupt("cleaner: segment %u is cut short by the end of its file", s);
  return LS_OK;
}

/* Append it to the array *v of *n items (capacity *cap). */
static int item_append(cl_item **v, uint32_t *n, uint32_t *cap, const cl_item *it) {
  if (LS_GROW(*v, *cap, *n + 1, 1024)) return ls_err(LS_NOMEM, "cleaner: out of memory");
  (*v)[(*n)++] = *it;
  return LS_OK;
}

/* Append the record it (bytes at p) to its group's buffer, writing the
** buffer first if it is full.  ordinal: of its mixed segment, 0 for
** compaction. */
int cl_push_rec(ls_cleaner *c, const cl_item *it, const uint8_t *p, uint64_t ordinal) {
  ls_engine *e = c->e;
  cl_buf *b;
  int rc = buf_get(c, it->table, it->group, it->gset, &b);
  if (!rc && b->len + it->size > e->seg_size) {
    rc = cl_buf_flush(c, b);
    if (!rc) rc = buf_get(c, it->table, it->group, it->gset, &b);
  }
  if (!rc && LS_GROW(b->recs, b->caprec, b->nrec + 1, 64)) return ls_err(LS_NOMEM, "cleaner: out of memory");
  if (rc) return rc;
  memcpy(b->mem + b->len, p, it->size);
  b->recs[b->nrec++] = (cl_rec){ it->hi, it->lo, it->word, it->src_seq, it->seq, b->len, it->size };
  b->len += it->size;
  if (!it->tomb && it->seq < b->min_put) b->min_put = it->seq;
  if (ordinal) {
    if (ordinal < b->oldest) b->oldest = ordinal;
    b->sep_bytes += it->size;
  } else {
    b->comp_bytes += it->size;
  }
  return LS_OK;
}

/* Keep the record it (bytes at p) aside for compact_step. */
static int stage_rec(ls_cleaner *c, const cl_item *it, const uint8_t *p) {
  cl_item x = *it;
  x.off = c->stage_len;
  int rc = item_append(&c->staged, &c->nstaged, &c->capstaged, &x);
  if (rc) return rc;
  memcpy(c->stage + c->stage_len, p, it->size);
  c->stage_len += it->size;
  return LS_OK;
}

int cl_item_by_seq(const void *a, const void *b) {
  const cl_item *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void cl_note_damage(ls_cleaner *c, uint32_t s, uint64_t sseq, uint32_t kind, uint32_t start, uint32_t end,
                    const char *why) {
  ls_engine *e = c->e;
  ls_seg *d = seg_get(&e->sm, s);
  ls_damage x = {
    .file = s / e->sm.segs_per_file, .offset = seg_base(&e->sm, s) + start, .length = end - start,
    .segment = s, .seg_seq = sseq, .kind = (uint8_t)kind, .runtime = 1,
    .table = kind == LS_KIND_GROUP ? d->table : 0, .group = kind == LS_KIND_GROUP ? d->group : 0, .why = why,
  };
  cat_damage_add(e, &x);
  seg_flags(&e->sm, s, SEGF_DAMAGED, 0);
}

/* Copy the live records of segment s (CLEANING) into the relocation
** buffers; drop the tombstones rule C3 allows.  ordinal > 0 for a mixed
** segment (the separator), 0 for compaction.  On LS_FULL the caller puts s
** back where it was; records already copied are harmless (C1). */
int cl_relocate_img(ls_cleaner *c, uint32_t s, uint32_t used, uint64_t sseq, uint32_t kind, uint64_t ordinal) {
  ls_engine *e = c->e;
  int rc;
  c->nitems = 0;
  ls_walk w;
  ls_walk_init(&w, c->img, e->seg_size, used, sseq, kind);
  w.durable = 1;
  ls_rec r;
  uint32_t off;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END) {
    if (k == LS_WALK_GAP) {
      /* Damage the open found (and accepted) is passed over: nothing in it
      ** is indexed.  New damage is reported, and the segment left as it is. */
      if (seg_damaged(&e->sm, s)) continue;
      cl_note_damage(c, s, sseq, kind, w.gap_start, w.gap_end, w.why);
      return ls_corrupt("segment %u: damaged %s at offset %u found by the cleaner; its records stay where they are",
                        s, w.why, w.gap_start);
    }
    if (k != LS_WALK_RECORD || (r.type != LS_REC_PUT && r.type != LS_REC_DELETE)) continue;
    uint8_t dg[20];
    ls_digest(r.key, r.key_len, dg);
    idx_key key;
    idx_key_of(&key, cat_order(e, r.table), r.key, r.key_len, dg);
    int tomb = r.type == LS_REC_DELETE;
    cl_item it = { key.hi, key.lo, loc_make(s, off, r.size, tomb), r.seq, sseq, r.table, off, r.size, 0, 0,
                   (uint8_t)tomb, 0 };
    rc = item_append(&c->items, &c->nitems, &c->capitems, &it);
    if (rc) return rc;
  }

  /* Liveness: the index still points at exactly this record. */
  if (c->nitems) qsort(c->items, c->nitems, sizeof *c->items, item_cmp);
  /* A relocation of this incarnation stopped part-way before: the records
  ** before that point are in buffers already (or done). */
  uint32_t skip = 0;
  if (c->resume_seg == s && c->resume_seq == sseq) skip = c->resume_at;
  c->resume_seg = SEG_NONE;
  uint32_t nlive = 0, ntomb = 0;
  unsigned g = ls_guard_enter(&e->guard);
  for (uint32_t i = skip; i < c->nitems;) {
    uint32_t j = i;
    ls_table *t = cat_table(e, c->items[i].table);
    if (t) pthread_rwlock_rdlock(&t->lock);
    for (; j < c->nitems && c->items[j].table == c->items[i].table; j++) {
      cl_item *it = &c->items[j];
      if (t) {
        /* The keys are in no order: fetch the lookups ahead. */
        const cl_item *far = j + IDX_PF_FAR < c->nitems ? &c->items[j + IDX_PF_FAR] : NULL;
        const cl_item *near = j + IDX_PF_NEAR < c->nitems ? &c->items[j + IDX_PF_NEAR] : NULL;
        if (far && far->table == it->table) idx_prefetch(t->idx, &(idx_key){ far->hi, far->lo }, 0);
        if (near && near->table == it->table) idx_prefetch(t->idx, &(idx_key){ near->hi, near->lo }, 1);
      }
      uint64_t wd;
      if (!t || !idx_get(t->idx, &(idx_key){ it->hi, it->lo }, &wd) || wd != it->word) continue;
      it->live = 1;
      it->group = cat_group_of(it->hi, t->groups);
      it->gset = t->gsets[it->group];
      nlive++;
      ntomb += it->tomb;
    }
    if (t) pthread_rwlock_unlock(&t->lock);
    i = j;
  }
  ls_guard_leave(&e->guard, g);

  /* Tombstones nothing older can be found for (C3), while no snapshot may
  ** still see an older version through them (snapshot.h, S3). */
  uint64_t dropped = 0;
  if (ntomb && !snap_any(&e->snaps)) {
    uint64_t floor = cl_tomb_floor(c, s);
    g = ls_guard_enter(&e->guard);
    for (uint32_t i = 0; i < c->nitems; i++) {
      cl_item *it = &c->items[i];
      if (!it->live || !it->tomb || it->seq >= floor) continue;
      ls_table *t = cat_table(e, it->table);
      if (!t) continue;
      pthread_rwlock_wrlock(&t->lock);
      if (idx_erase_if(t->idx, &(idx_key){ it->hi, it->lo }, it->word)) {
        seg_flags(&e->sm, s, SEGF_MARK, 0);
        seg_account(&e->sm, it->word, -1);
        atomic_fetch_sub(&t->live_bytes, it->size);
        dropped++;
      }
      pthread_rwlock_unlock(&t->lock);
      it->live = 0;
    }
    ls_guard_leave(&e->guard, g);
    atomic_fetch_add(&e->tombstones_dropped, dropped);
  }

  /* Copy the live records: into their buffers, or (compaction) aside, to
  ** be written together in sequence order by compact_step. */
  for (uint32_t i = 0; i < c->nitems; i++) {
    cl_item *it = &c->items[i];
    if (!it->live) continue;
    rc = c->staging ? stage_rec(c, it, c->img + it->off) : cl_push_rec(c, it, c->img + it->off, ordinal);
    if (rc) {
      c->resume_seg = s;
      c->resume_seq = sseq;
      c->resume_at = i;
      return rc;
    }
  }
  if (ordinal) {
    atomic_fetch_add(&e->separator_relocated, nlive - dropped);
  } else {
    atomic_fetch_add(&e->compaction_relocated, nlive - dropped);
    atomic_fetch_add(&e->compaction_dropped, c->nitems - skip - nlive);
  }
  (void)seg_ids_push(&c->cand, s);
  return LS_OK;
}

/* The same, reading s back first. */
int cl_relocate(ls_cleaner *c, uint32_t s, uint64_t ordinal) {
  uint32_t used, kind;
  uint64_t sseq;
  int rc = cl_read_back(c, s, &used, &sseq, &kind);
  return rc ? rc : cl_relocate_img(c, s, used, sseq, kind, ordinal);
}

