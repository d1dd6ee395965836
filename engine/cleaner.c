/*
** cleaner.c -- space reclamation: the separator, compaction, freeing.
**
** User writes of every table land in the writer's mixed segments.  The
** cleaner
**   - separates: reads each sealed mixed segment back (from the page cache,
**     usually) and copies its live records into relocation buffers, one per
**     compaction group (table, token range) -- or, when all its records are
**     of one group and nothing ties it to another segment, adopts it into
**     that group as it is;
**   - compacts: takes the segments of one group that free the most space
**     per byte copied, weighed by how slowly their records die (cost-
**     benefit), or just the emptiest (greedy), and copies their live
**     records into that group's buffer, leaving dead records and
**     droppable tombstones behind;
**   - writes a buffer as a new group segment when it is full, when it holds
**     records of mixed segments that are getting old (so that a slow group
**     can not keep the log from being freed), when the pool of buffers is
**     exhausted, and when asked (flush, compact, close); then moves each
**     record's index entry to the copy by compare-and-swap on the old
**     location -- a user write that raced wins and the copy is dead at once;
**   - frees segments left without live records, after readers drained;
**   - settles segments the writer filled directly with one group's records
**     of a large transaction: once the transaction is installed, the buffer
**     header is rewritten in place with the SETTLED flag, so the segment no
**     longer needs the COMMIT record kept in a mixed segment.
**
** Everything runs under c->lock, one step at a time: on the cleaner thread
** in the background, on the writer thread when a commit needs space
** (cleaner_alloc), on a caller's thread for flush and compact.  The
** lock is taken with no other engine lock held, and while holding it the
** cleaner never waits for the writer thread, so neither can deadlock.
**
** Rules (the crash argument is in FORMAT.md):
**  (C1) A copy keeps its record's write sequence; relocated records carry
**       END and are committed by being there.  An index entry moves only
**       after the copy is durable, and only if it still points at the very
**       record copied: same location and the source segment still in the
**       same incarnation (a slot freed and reused could hold a new record
**       at the same offset).
**  (C2) A segment is freed only when no entry points into it, after
**       ls_guard_wait, and never while it is pinned, held or in flight.
**  (C3) A live tombstone of sequence s is dropped only if no older version
**       of its key can be found by recovery: every other segment's
**       dead_floor and stale_floor, and the smallest put sequence still in
**       a buffer, are above s (segment.h).  Its own segment then holds the
**       only older versions; it gets a durable free marker before the slot
**       is reused, so recovery never sees part of it.  The floors are read
**       after the tombstone was seen live (under the table lock), so every
**       older version had died and lowered its segment's floor before.
**  (C4) Some free segments are reserved for the cleaner (segment.h), so it
**       can always write the copies that free space.
*/
#include "engine_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_INPUTS 16         /* segments one compaction step takes */
#define SEP_BATCH 16          /* mixed segments separated per background round */
#define NHASH 64              /* relocation buffer hash chains */
#define DELAY_CAP_US 50000    /* most flow-control delay per commit */
#define SETTLE_BATCH 16       /* direct segments settled together (one sync per file) */

typedef struct cl_ent {
  uint32_t id;
  uint64_t seq;                    /* incarnation when queued */
} cl_ent;

typedef struct cl_ring {
  cl_ent *v;
  uint32_t head, len, cap;
} cl_ring;

/* A record copied into a relocation buffer. */
typedef struct cl_rec {
  uint64_t hi, lo;
  uint64_t old;                    /* index word of the source */
  uint64_t src_seq;                /* incarnation of the source segment */
  uint64_t seq;                    /* the record's write sequence */
  uint32_t off, size;              /* in the buffer */
} cl_rec;

typedef struct cl_buf {
  uint32_t table, group, gset;
  uint8_t *mem;                    /* segment image: header, then records */
  uint32_t len;
  cl_rec *recs;
  uint32_t nrec, caprec;
  uint64_t min_put;                /* smallest sequence of a put in it */
  uint64_t oldest;                 /* oldest separator ordinal of a source */
  uint64_t sep_bytes, comp_bytes;  /* record bytes by kind of source */
  struct cl_buf *next;
} cl_buf;

/* A record of the segment being relocated. */
typedef struct cl_item {
  uint64_t hi, lo, word, seq;
  uint64_t src_seq;                /* incarnation of its segment (staged) */
  uint32_t table, off, size, group, gset;
  uint8_t tomb, live;
} cl_item;

struct ls_cleaner {
  ls_engine *e;
  pthread_t thread;
  int started;
  pthread_mutex_t lock;            /* one step at a time */

  pthread_mutex_t qlock;           /* hand-off queues, wake-up */
  pthread_cond_t qcond;
  int kicked, stop;
  cl_ring mixed;                   /* sealed mixed segments, oldest first */
  cl_ring settle;                  /* directly written group segments */
  seg_ids empty;                   /* segments that may be empty */
  _Atomic uint32_t backlog;        /* mixed segments waiting */

  /* Under lock. */
  seg_ids cand;                    /* free candidates being processed */
  seg_ids ids;                     /* scratch */
  cl_ring deferred;                /* mixed segments held by a prepared txn */
  cl_buf *hash[NHASH];
  cl_buf *spare;
  uint32_t nbufs, maxbufs;
  _Atomic uint32_t inuse;          /* buffers holding records */
  uint64_t ordinal;                /* mixed segments separated so far */
  uint32_t resume_seg;             /* a relocation stopped part-way: in this */
  uint64_t resume_seq;             /* incarnation, the records before */
  uint32_t resume_at;              /* item resume_at are in buffers already */
  uint8_t *img;                    /* a segment read back */
  uint8_t *sorted;                 /* a buffer's records in sequence order */
  cl_item *items;
  uint32_t nitems, capitems;
  int staging;                     /* compaction: collect live records first */
  uint8_t *stage;                  /* their bytes (MAX_INPUTS segments) */
  uint32_t stage_len;
  cl_item *staged;
  uint32_t nstaged, capstaged;
  double ema;                      /* segments written per segment freed */
};

/* ---- small helpers ------------------------------------------------------- */

static int ring_push(cl_ring *r, cl_ent x) {
  if (r->len == r->cap) {
    uint32_t ncap = r->cap ? 2 * r->cap : 64;
    cl_ent *v = malloc(ncap * sizeof *v);
    if (!v) return LS_NOMEM;
    for (uint32_t i = 0; i < r->len; i++) v[i] = r->v[(r->head + i) % r->cap];
    free(r->v);
    r->v = v;
    r->cap = ncap;
    r->head = 0;
  }
  r->v[(r->head + r->len) % r->cap] = x;
  r->len++;
  return LS_OK;
}

static int ring_push_front(cl_ring *r, cl_ent x) {
  int rc = ring_push(r, x);                 /* makes room */
  if (rc) return rc;
  r->len--;
  r->head = (r->head + r->cap - 1) % r->cap;
  r->v[r->head] = x;
  r->len++;
  return LS_OK;
}

static int ring_pop(cl_ring *r, cl_ent *x) {
  if (!r->len) return 0;
  *x = r->v[r->head];
  r->head = (r->head + 1) % r->cap;
  r->len--;
  return 1;
}

static uint64_t seg_seq_of(ls_segmgr *m, uint32_t s) { return atomic_load(&seg_get(m, s)->seq); }

static int rec_by_seq(const void *a, const void *b) {
  const cl_rec *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- hand-offs ------------------------------------------------------------ */

static void wake(ls_cleaner *c) {
  c->kicked = 1;
  pthread_cond_signal(&c->qcond);
}

void cleaner_kick(ls_engine *e) {
  ls_cleaner *c = e->cleaner;
  if (!c) return;
  pthread_mutex_lock(&c->qlock);
  wake(c);
  pthread_mutex_unlock(&c->qlock);
}

void cleaner_mixed_ready(ls_engine *e, const uint32_t *segs, uint32_t n) {
  ls_cleaner *c = e->cleaner;
  if (!c || !n) return;
  pthread_mutex_lock(&c->qlock);
  for (uint32_t i = 0; i < n; i++)
    if (ring_push(&c->mixed, (cl_ent){ segs[i], seg_seq_of(&e->sm, segs[i]) }) == LS_OK)
      atomic_fetch_add(&c->backlog, 1);
  /* (A segment not queued for lack of memory stays mixed until the next
  ** open re-separates it: space, never data, is lost.) */
  wake(c);
  pthread_mutex_unlock(&c->qlock);
}

void cleaner_note_empty(ls_engine *e, const uint32_t *segs, uint32_t n) {
  ls_cleaner *c = e->cleaner;
  if (!c || !n) return;
  pthread_mutex_lock(&c->qlock);
  for (uint32_t i = 0; i < n; i++) (void)seg_ids_push(&c->empty, segs[i]);
  wake(c);
  pthread_mutex_unlock(&c->qlock);
}

void cleaner_settle(ls_engine *e, const uint32_t *segs, uint32_t n) {
  ls_cleaner *c = e->cleaner;
  if (!c || !n) return;
  pthread_mutex_lock(&c->qlock);
  for (uint32_t i = 0; i < n; i++) (void)ring_push(&c->settle, (cl_ent){ segs[i], seg_seq_of(&e->sm, segs[i]) });
  wake(c);
  pthread_mutex_unlock(&c->qlock);
}

/* ---- freeing (C2) --------------------------------------------------------- */

/* Write a durable free marker over the header of every segment in ids that
** had a tombstone dropped. */
static int write_markers(ls_cleaner *c, const uint32_t *ids, uint32_t n) {
  ls_engine *e = c->e;
  int fds[16], nfd = 0;
  for (uint32_t i = 0; i < n; i++) {
    ls_seg *d = seg_get(&e->sm, ids[i]);
    pthread_mutex_lock(&e->sm.lock);
    int mark = d->flags & SEGF_MARK;
    uint64_t seq = d->seq;
    pthread_mutex_unlock(&e->sm.lock);
    if (!mark) continue;
    uint8_t hdr[LS_BUF_HDR];
    ls_bufhdr h = { .kind = LS_KIND_FREE, .seg_seq = seq, .max_seq = atomic_load(&e->next_seq) - 1 };
    ls_bufhdr_encode(hdr, &h);
    int fd = seg_fd(&e->sm, ids[i]);
    /* Only the header's bytes: a single sector, written whole or not at
    ** all; the records after it stay as they are either way. */
    int r = e->io->m->write(e->io, fd, hdr, sizeof hdr, seg_base(&e->sm, ids[i]));
    if (r) return ls_err_io(r, "write of a free marker into segment %u", ids[i]);
    atomic_fetch_add(&e->bytes_written, sizeof hdr);
    atomic_fetch_add(&e->marker_bytes, sizeof hdr);
    int seen = 0;
    for (int j = 0; j < nfd; j++) seen |= fds[j] == fd;
    if (!seen) {
      if (nfd == 16) {
        for (int j = 0; j < nfd; j++) {
          r = seg_sync(&e->sm, fds[j], 0);
          if (r) return ls_err_io(r, "fdatasync after free markers");
        }
        nfd = 0;
      }
      fds[nfd++] = fd;
    }
  }
  for (int j = 0; j < nfd; j++) {
    int r = seg_sync(&e->sm, fds[j], 0);
    atomic_fetch_add(&e->syncs, 1);
    if (r) return ls_err_io(r, "fdatasync after free markers");
  }
  return LS_OK;
}

/* Free every noted segment that is empty.  Returns how many were freed. */
static uint64_t reclaim(ls_cleaner *c) {
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
    eng_hook(e, "free:before-wait");
    ls_guard_wait(&e->guard);
    int rc = write_markers(c, c->ids.v, c->ids.n);
    if (rc) {
      eng_fail(e, ls_errmsg());
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

/* ---- relocation buffers ------------------------------------------------- */

static uint32_t hslot(uint32_t table, uint32_t group) { return (table * 31u + group) % NHASH; }

static void buf_reset(cl_buf *b) {
  b->len = LS_BUF_HDR;
  b->nrec = 0;
  b->min_put = UINT64_MAX;
  b->oldest = UINT64_MAX;
  b->sep_bytes = b->comp_bytes = 0;
}

/* Take b out of the hash and keep it as a spare. */
static void buf_retire(ls_cleaner *c, cl_buf *b) {
  for (cl_buf **pp = &c->hash[hslot(b->table, b->group)]; *pp; pp = &(*pp)->next)
    if (*pp == b) { *pp = b->next; break; }
  buf_reset(b);
  b->next = c->spare;
  c->spare = b;
  atomic_fetch_sub(&c->inuse, 1);
}

/* Write b as a new group segment and move its records' index entries (C1).
** LS_OK (b is retired), LS_FULL (no segment: b is kept), or an I/O error
** (the engine is failed). */
static int buf_flush(ls_cleaner *c, cl_buf *b) {
  ls_engine *e = c->e;
  if (!b->nrec) { buf_retire(c, b); return LS_OK; }
  /* A dropped table's records are gone already. */
  unsigned g = ls_guard_enter(&e->guard);
  int alive = eng_table(e, b->table) != NULL;
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
    rc = ls_err_io(r, "write of group segment %u", out);
    eng_fail(e, ls_errmsg());
    return rc;
  }
  if (atomic_load(&e->failed)) return ls_err(LS_READONLY, "%s", e->fail_msg);
  d->used = len;
  atomic_store(&d->born, atomic_load(&e->next_seq));
  atomic_store(&d->stale_floor, SEG_NOFLOOR);   /* its first write is durable */
  atomic_fetch_add(&e->bytes_written, len);
  atomic_fetch_add(&e->cleaner_segments, 1);
  /* Bytes of the write, split by where the records came from. */
  uint64_t total = b->sep_bytes + b->comp_bytes;
  uint64_t sep = total ? (uint64_t)((double)len * (double)b->sep_bytes / (double)total) : 0;
  atomic_fetch_add(&e->separator_bytes, sep);
  atomic_fetch_add(&e->compaction_bytes, len - sep);
  eng_hook(e, "flush:durable");

  /* Move the entries.  The source's incarnation is checked under the table
  ** lock: no entry can change meanwhile, so an equal word there is the
  ** very record copied. */
  g = ls_guard_enter(&e->guard);
  ls_table *t = eng_table(e, b->table);
  if (t) pthread_rwlock_wrlock(&t->lock);
  for (uint32_t i = 0; i < b->nrec; i++) {
    cl_rec *rr = &b->recs[i];
    if (t && i + PF_FAR < b->nrec) idx_prefetch(t->idx, &(idx_key){ b->recs[i + PF_FAR].hi, b->recs[i + PF_FAR].lo }, 0);
    if (t && i + PF_NEAR < b->nrec) idx_prefetch(t->idx, &(idx_key){ b->recs[i + PF_NEAR].hi, b->recs[i + PF_NEAR].lo }, 1);
    int tomb = loc_tomb(rr->old);
    uint64_t nw = loc_make(out, rr->off, rr->size, tomb);
    if (t && seg_seq_of(&e->sm, loc_seg(rr->old)) == rr->src_seq && idx_cas(t->idx, &(idx_key){ rr->hi, rr->lo }, rr->old, nw)) {
      seg_account(&e->sm, rr->old, -1);
      seg_account(&e->sm, nw, +1);
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
  eng_hook(e, "flush:relocated");
  buf_retire(c, b);
  return LS_OK;
}

/* Write every buffer (of table, or all when 0); keeps going past LS_FULL
** and returns the first error. */
static int flush_all(ls_cleaner *c, uint32_t table) {
  int first = LS_OK;
  for (uint32_t h = 0; h < NHASH; h++) {
    cl_buf *b = c->hash[h];
    while (b) {
      cl_buf *next = b->next;
      if (!table || b->table == table) {
        int rc = buf_flush(c, b);
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
static int flush_aged(ls_cleaner *c) {
  ls_engine *e = c->e;
  uint64_t limit = seg_count(&e->sm) / 20;
  if (limit < 8) limit = 8;
  for (uint32_t h = 0; h < NHASH; h++) {
    cl_buf *b = c->hash[h];
    while (b) {
      cl_buf *next = b->next;
      if (b->oldest != UINT64_MAX && c->ordinal - b->oldest > limit) {
        int rc = buf_flush(c, b);
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
  for (cl_buf *b = c->hash[hslot(table, group)]; b; b = b->next)
    if (b->table == table && b->group == group) { *out = b; return LS_OK; }
  if (!c->spare && c->nbufs >= c->maxbufs) {
    cl_buf *victim = NULL;
    for (uint32_t h = 0; h < NHASH; h++)
      for (cl_buf *b = c->hash[h]; b; b = b->next)
        if (!victim || b->oldest < victim->oldest || (b->oldest == victim->oldest && b->len > victim->len))
          victim = b;
    int rc = buf_flush(c, victim);
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
  b->next = c->hash[hslot(table, group)];
  c->hash[hslot(table, group)] = b;
  atomic_fetch_add(&c->inuse, 1);
  *out = b;
  return LS_OK;
}

/* ---- tombstone floor (C3) ------------------------------------------------ */

/* The smallest floor of every segment but exclude, and of the copies
** waiting to be written (buffers, a compaction step's staged records). */
static uint64_t tomb_floor(ls_cleaner *c, uint32_t exclude) {
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
static int read_back(ls_cleaner *c, uint32_t s, uint32_t *used, uint64_t *seq, uint32_t *kind) {
  ls_engine *e = c->e;
  pthread_mutex_lock(&e->sm.lock);
  ls_seg *d = seg_get(&e->sm, s);
  *used = d->used;
  *seq = d->seq;
  *kind = d->kind;
  pthread_mutex_unlock(&e->sm.lock);
  if (!*used) return LS_OK;
  ssize_t r = e->io->m->read(e->io, seg_fd(&e->sm, s), c->img, *used, seg_base(&e->sm, s));
  if (r < 0) return ls_err_io((int)r, "cleaner: read of segment %u", s);
  if ((uint32_t)r != *used) return ls_corrupt("cleaner: segment %u is cut short by the end of its file", s);
  return LS_OK;
}

/* Append it to the array *v of *n items (capacity *cap). */
static int item_append(cl_item **v, uint32_t *n, uint32_t *cap, const cl_item *it) {
  if (*n == *cap) {
    uint32_t ncap = *cap ? 2 * *cap : 1024;
    cl_item *p = realloc(*v, ncap * sizeof *p);
    if (!p) return ls_err(LS_NOMEM, "cleaner: out of memory");
    *v = p;
    *cap = ncap;
  }
  (*v)[(*n)++] = *it;
  return LS_OK;
}

/* Append the record it (bytes at p) to its group's buffer, writing the
** buffer first if it is full.  ordinal: of its mixed segment, 0 for
** compaction. */
static int push_rec(ls_cleaner *c, const cl_item *it, const uint8_t *p, uint64_t ordinal) {
  ls_engine *e = c->e;
  cl_buf *b;
  int rc = buf_get(c, it->table, it->group, it->gset, &b);
  if (!rc && b->len + it->size > e->seg_size) {
    rc = buf_flush(c, b);
    if (!rc) rc = buf_get(c, it->table, it->group, it->gset, &b);
  }
  if (!rc && b->nrec == b->caprec) {
    cl_rec *q = realloc(b->recs, 2 * b->caprec * sizeof *q);
    if (!q) return ls_err(LS_NOMEM, "cleaner: out of memory");
    b->recs = q;
    b->caprec *= 2;
  }
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

static int item_by_seq(const void *a, const void *b) {
  const cl_item *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Copy the live records of segment s (CLEANING) into the relocation
** buffers; drop the tombstones rule C3 allows.  ordinal > 0 for a mixed
** segment (the separator), 0 for compaction.  On LS_FULL the caller puts s
** back where it was; records already copied are harmless (C1). */
static int relocate_img(ls_cleaner *c, uint32_t s, uint32_t used, uint64_t sseq, uint32_t kind, uint64_t ordinal) {
  ls_engine *e = c->e;
  int rc;
  c->nitems = 0;
  ls_walk w;
  ls_walk_init(&w, c->img, used, sseq, kind);
  ls_rec r;
  uint32_t off;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) > 0) {
    if (r.type != LS_REC_PUT && r.type != LS_REC_DELETE) continue;
    uint8_t dg[20];
    ls_digest(r.key, r.key_len, dg);
    idx_key key;
    idx_key_from_digest(&key, dg);
    int tomb = r.type == LS_REC_DELETE;
    cl_item it = { key.hi, key.lo, loc_make(s, off, r.size, tomb), r.seq, sseq, r.table, off, r.size, 0, 0,
                   (uint8_t)tomb, 0 };
    rc = item_append(&c->items, &c->nitems, &c->capitems, &it);
    if (rc) return rc;
  }
  if (k < 0) {
    seg_flags(&e->sm, s, SEGF_DAMAGED, 0);
    return ls_corrupt("segment %u: damaged %s at offset %u found by the cleaner; its records stay where they are",
                      s, w.why, w.pos);
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
    ls_table *t = eng_table(e, c->items[i].table);
    if (t) pthread_rwlock_rdlock(&t->lock);
    for (; j < c->nitems && c->items[j].table == c->items[i].table; j++) {
      cl_item *it = &c->items[j];
      if (t) {
        /* The keys are in no order: fetch the lookups ahead. */
        const cl_item *far = j + PF_FAR < c->nitems ? &c->items[j + PF_FAR] : NULL;
        const cl_item *near = j + PF_NEAR < c->nitems ? &c->items[j + PF_NEAR] : NULL;
        if (far && far->table == it->table) idx_prefetch(t->idx, &(idx_key){ far->hi, far->lo }, 0);
        if (near && near->table == it->table) idx_prefetch(t->idx, &(idx_key){ near->hi, near->lo }, 1);
      }
      uint64_t wd;
      if (!t || !idx_get(t->idx, &(idx_key){ it->hi, it->lo }, &wd) || wd != it->word) continue;
      it->live = 1;
      it->group = eng_group_of(it->hi, t->groups);
      it->gset = t->gsets[it->group];
      nlive++;
      ntomb += it->tomb;
    }
    if (t) pthread_rwlock_unlock(&t->lock);
    i = j;
  }
  ls_guard_leave(&e->guard, g);

  /* Tombstones nothing older can be found for (C3). */
  uint64_t dropped = 0;
  if (ntomb) {
    uint64_t floor = tomb_floor(c, s);
    g = ls_guard_enter(&e->guard);
    for (uint32_t i = 0; i < c->nitems; i++) {
      cl_item *it = &c->items[i];
      if (!it->live || !it->tomb || it->seq >= floor) continue;
      ls_table *t = eng_table(e, it->table);
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
    rc = c->staging ? stage_rec(c, it, c->img + it->off) : push_rec(c, it, c->img + it->off, ordinal);
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
static int relocate(ls_cleaner *c, uint32_t s, uint64_t ordinal) {
  uint32_t used, kind;
  uint64_t sseq;
  int rc = read_back(c, s, &used, &sseq, &kind);
  return rc ? rc : relocate_img(c, s, used, sseq, kind, ordinal);
}

/* ---- the separator ---------------------------------------------------------- */

static int want_compaction(ls_cleaner *c, int *urgent);

/* Bytes of live records of all tables. */
static uint64_t live_total(ls_engine *e) {
  uint64_t live = 0;
  unsigned g = ls_guard_enter(&e->guard);
  ls_catalog *cat = atomic_load(&e->catalog);
  for (uint32_t i = 0; i < cat->cap; i++)
    if (cat->t[i]) live += (uint64_t)atomic_load(&cat->t[i]->live_bytes);
  ls_guard_leave(&e->guard, g);
  return live;
}

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
  if (e->disk_size && 2 * live_total(e) > e->disk_size) return 0;
  ls_walk w;
  ls_walk_init(&w, c->img, used, sseq, LS_KIND_MIXED);
  ls_rec r;
  uint32_t off, table = 0, n = 0;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) > 0) {
    if (r.type != LS_REC_PUT && r.type != LS_REC_DELETE) continue;
    if (n++ && r.table != table) return 0;
    table = r.table;
  }
  if (k < 0 || !n) return 0;
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = eng_table(e, table);
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
static int separate(ls_cleaner *c, uint32_t max, uint32_t *done) {
  ls_engine *e = c->e;
  *done = 0;
  /* Segments a prepared transaction held: try them again. */
  uint32_t nd = c->deferred.len;
  for (uint32_t i = 0; i < nd; i++) {
    cl_ent x;
    ring_pop(&c->deferred, &x);
    pthread_mutex_lock(&c->qlock);
    if (ring_push(&c->mixed, x) == LS_OK) atomic_fetch_add(&c->backlog, 1);
    pthread_mutex_unlock(&c->qlock);
  }
  while (*done < max && !atomic_load(&e->failed)) {
    cl_ent x;
    pthread_mutex_lock(&c->qlock);
    int got = ring_pop(&c->mixed, &x);
    pthread_mutex_unlock(&c->qlock);
    if (!got) break;
    atomic_fetch_sub(&c->backlog, 1);
    pthread_mutex_lock(&e->sm.lock);
    ls_seg *d = seg_get(&e->sm, x.id);
    int ok = d->seq == x.seq && d->state == SEG_SEALED;
    int held = ok && d->holds > 0;
    if (ok && !held) d->state = SEG_CLEANING;
    pthread_mutex_unlock(&e->sm.lock);
    if (!ok) continue;                                /* freed meanwhile */
    if (held) { (void)ring_push(&c->deferred, x); continue; }
    uint32_t used, kind;
    uint64_t sseq;
    int rc = read_back(c, x.id, &used, &sseq, &kind);
    if (!rc && kind == LS_KIND_MIXED && adopt(c, x.id, used, sseq)) {
      (*done)++;
      continue;
    }
    if (!rc) rc = relocate_img(c, x.id, used, sseq, kind, ++c->ordinal);
    if (rc == LS_CORRUPT) {
      eng_problem(e, "%s", ls_errmsg());
    } else if (rc) {
      /* No segment or memory for a buffer now, or an I/O error: the
      ** segment goes back to the head of the queue (the records already
      ** copied are not copied again: see resume). */
      pthread_mutex_lock(&e->sm.lock);
      d->state = SEG_SEALED;
      pthread_mutex_unlock(&e->sm.lock);
      pthread_mutex_lock(&c->qlock);
      if (ring_push_front(&c->mixed, x) == LS_OK) atomic_fetch_add(&c->backlog, 1);
      pthread_mutex_unlock(&c->qlock);
      return rc;
    }
    (*done)++;
    /* The buffers written so far emptied their sources: short of space,
    ** free those now rather than after the whole backlog (whose copies
    ** would otherwise all need free segments first). */
    int urgent = 0;
    if (c->cand.n && (want_compaction(c, &urgent), urgent)) reclaim(c);
  }
  return LS_OK;
}

/* ---- settling directly written segments ------------------------------------ */

static int settle_all(ls_cleaner *c) {
  ls_engine *e = c->e;
  cl_ent x;
  int rc = LS_OK;
  c->ids.n = 0;
  while (!rc && !atomic_load(&e->failed)) {
    pthread_mutex_lock(&c->qlock);
    int got = ring_pop(&c->settle, &x);
    pthread_mutex_unlock(&c->qlock);
    if (!got) break;
    pthread_mutex_lock(&e->sm.lock);
    ls_seg *d = seg_get(&e->sm, x.id);
    int ok = d->seq == x.seq && (d->state == SEG_SEALED || d->state == SEG_CLEANING) && d->ndeps > 0;
    pthread_mutex_unlock(&e->sm.lock);
    if (!ok) continue;                 /* freed meanwhile, or nothing to settle */
    uint8_t hdr[LS_BUF_HDR];
    int fd = seg_fd(&e->sm, x.id);
    ssize_t n = e->io->m->read(e->io, fd, hdr, sizeof hdr, seg_base(&e->sm, x.id));
    ls_bufhdr h;
    if (n != (ssize_t)sizeof hdr || !ls_bufhdr_decode(hdr, &h) || h.seg_seq != x.seq || h.kind != LS_KIND_GROUP) {
      /* Left unsettled: it keeps its COMMIT record's segment (space, not
      ** data, is lost). */
      eng_problem(e, "segment %u: its header could not be read back to settle it", x.id);
      continue;
    }
    h.flags |= LS_BF_SETTLED;
    ls_bufhdr_encode(hdr, &h);
    int r = e->io->m->write(e->io, fd, hdr, sizeof hdr, seg_base(&e->sm, x.id));
    if (r) {
      rc = ls_err_io(r, "write of the header of segment %u", x.id);
      eng_fail(e, ls_errmsg());
      break;
    }
    atomic_fetch_add(&e->bytes_written, sizeof hdr);
    atomic_fetch_add(&e->marker_bytes, sizeof hdr);
    (void)seg_ids_push(&c->ids, x.id);
  }
  /* Durable before the COMMIT records they needed may go. */
  for (uint32_t i = 0; !rc && i < c->ids.n; i++) {
    int fd = seg_fd(&e->sm, c->ids.v[i]), seen = 0;
    for (uint32_t k = 0; k < i && !seen; k++) seen = seg_fd(&e->sm, c->ids.v[k]) == fd;
    if (seen) continue;
    int r = seg_sync(&e->sm, fd, 0);
    atomic_fetch_add(&e->syncs, 1);
    if (r) {
      rc = ls_err_io(r, "fdatasync after settling segments");
      eng_fail(e, ls_errmsg());
    }
  }
  if (!rc)
    for (uint32_t i = 0; i < c->ids.n; i++) seg_drop_deps(&e->sm, c->ids.v[i], &c->cand);
  c->ids.n = 0;
  return rc;
}

/* ---- compaction ---------------------------------------------------------- */

typedef struct cl_cand {
  uint32_t id;
  int64_t live, recs;
  double score;
} cl_cand;

/* Free segments, and those the files not made yet would add. */
static uint64_t room(ls_segmgr *m) {
  return seg_nfree(m) + (uint64_t)(m->max_files - atomic_load(&m->nfiles)) * m->segs_per_file;
}

/* Bytes of records a group segment can hold. */
static inline double seg_cap(ls_engine *e) { return (double)(e->seg_size - LS_BUF_HDR); }

/* Segments n candidates' live records need: by bytes, and by whole records
** of their average size (big rows do not fill a segment to the byte). */
static double needed(ls_engine *e, const cl_cand *cand, uint32_t n) {
  double bytes = 0, recs = 0, cap = seg_cap(e);
  for (uint32_t i = 0; i < n; i++) {
    bytes += (double)cand[i].live;
    recs += (double)cand[i].recs;
  }
  if (recs <= 0) return 0;
  double per = (double)(uint64_t)(cap / (bytes / recs));
  if (per < 1) per = 1;
  double by_recs = recs / per, by_bytes = bytes / cap;
  return by_recs > by_bytes ? by_recs : by_bytes;
}

/* cleaner_score: the score of a group segment under policy, higher first.
** u: its live fraction; u0: the fraction written into it; born: when that
** was (a write sequence); youngest: its youngest record's sequence; now:
** the next sequence.
**
** Greedy: -u.  LFS: benefit (1-u) times age (since the youngest record)
** over cost (1+u), reading the segment counted as a write.
**
** Cost-benefit (the default) asks how much waiting would still gain.  Rows
** of a segment die at some rate L, so u falls like u0 * exp(-L*T) over the
** time T since it was written, and L is estimated as ln(u0/u)/T.  A
** segment of fast-dying (hot) rows empties by itself if left alone; one
** of slow-dying (cold) rows never gets much emptier, so what it frees now
** is as good as it will be.  Score: freed per copied, (1-u)/u, times the
** square root of 1/L.  When every row dies at the same rate (uniform
** writes), L is alike for all segments and the order is greedy's; on
** skewed writes cold segments are taken at a higher u and hot ones at a
** lower.  The prior DECAY_PRIOR keeps a young segment with few deaths yet
** from looking frozen; the root (rather than 1/L itself) was the best of
** exponents 0.3..1 in `tool/bench clean`. */
#define DECAY_PRIOR 0.1
double cleaner_score(int policy, double u, double u0, uint64_t now, uint64_t born, uint64_t youngest) {
  if (policy == LS_POLICY_GREEDY) return -u;
  if (policy == LS_POLICY_LFS) return (1 - u) * (now > youngest ? (double)(now - youngest) : 1.0) / (1 + u);
  double t = now > born ? (double)(now - born) : 1.0;
  if (u0 < u) u0 = u;
  double decay = log((u0 + 1e-3) / (u + 1e-3)) + DECAY_PRIOR;
  return (1 - u) / (u + 1e-2) * sqrt(t / decay);
}

/* Choose the inputs of one compaction step from set gs: up to MAX_INPUTS
** segments whose live records fit in at least one segment fewer, best
** scores first (cleaner_score).  Returns the count (0: no step frees a
** segment) and the estimated gain. */
static uint32_t select_by(ls_cleaner *c, uint32_t gs, int policy, uint32_t *out, double *gain) {
  ls_engine *e = c->e;
  ls_segmgr *m = &e->sm;
  cl_cand cand[MAX_INPUTS] = { { 0, 0, 0, 0 } };   /* the best so far, best first */
  uint32_t nc = 0;
  double cap = seg_cap(e);
  uint64_t now = atomic_load(&e->next_seq);
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs && gs <= m->ngsets ? m->gsets[gs - 1] : NULL;
  /* Greedy walks the buckets from the emptiest and stops when it has
  ** enough; the others score the first MAX_INPUTS of every bucket (lists
  ** are in the order segments entered them).  Both are O(1) in the size of
  ** the set.  Nearly full segments are not worth a copy. */
  for (uint32_t b = 0; g && b < SEG_NBUCKETS - 2; b++) {
    if (policy == LS_POLICY_GREEDY && nc == MAX_INPUTS) break;
    uint32_t k = 0;
    for (uint32_t s = g->head[b]; s != SEG_NONE && (policy == LS_POLICY_GREEDY || k++ < MAX_INPUTS);
         s = seg_get(m, s)->hnext) {
      ls_seg *d = seg_get(m, s);
      int64_t live = atomic_load(&d->live_bytes);
      double u = (double)live / cap, u0 = (double)d->used / cap;
      if (u > 1) u = 1;
      if (u0 > 1) u0 = 1;
      uint64_t youngest = atomic_load(&d->max_seq), born = atomic_load(&d->born);
      double score = cleaner_score(policy, u, u0, now, born ? born : youngest, youngest);
      cl_cand x = { s, live, atomic_load(&d->live_records), score };
      if (nc == MAX_INPUTS && x.score <= cand[nc - 1].score) {
        if (policy == LS_POLICY_GREEDY) break;
        continue;
      }
      uint32_t i = nc < MAX_INPUTS ? nc++ : nc - 1;
      while (i > 0 && cand[i - 1].score < x.score) { cand[i] = cand[i - 1]; i--; }
      cand[i] = x;
    }
  }
  pthread_mutex_unlock(&m->hist_lock);
  uint32_t n = nc;
  /* The copies are written before any input is freed: they must fit in
  ** the free segments (the reserve included) with one to spare. */
  double avail = (double)room(&e->sm);
  while (n > 1 && needed(e, cand, n) + 2 > avail) n--;
  *gain = (double)n - needed(e, cand, n);
  if (*gain < 1.0) return 0;
  for (uint32_t i = 0; i < n; i++) out[i] = cand[i].id;
  return n;
}

/* Cost-benefit falls back to greedy when its best candidates together
** would not free a segment (old, nearly full ones on a full disk). */
static uint32_t select_inputs(ls_cleaner *c, uint32_t gs, int policy, uint32_t *out, double *gain) {
  uint32_t n = select_by(c, gs, policy, out, gain);
  if (!n && policy != LS_POLICY_GREEDY) n = select_by(c, gs, LS_POLICY_GREEDY, out, gain);
  return n;
}

/* Segments of set gs whose tombstones can all be dropped now and make up a
** quarter of them (greedy never picks segments that look full). */
static uint32_t select_tombs(ls_cleaner *c, uint32_t gs, uint32_t *out) {
  ls_engine *e = c->e;
  ls_segmgr *m = &e->sm;
  uint64_t floor = tomb_floor(c, SEG_NONE);
  uint32_t n = 0;
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs && gs <= m->ngsets ? m->gsets[gs - 1] : NULL;
  for (uint32_t b = 0; g && b < SEG_NBUCKETS && n < MAX_INPUTS; b++)
    for (uint32_t s = g->head[b]; s != SEG_NONE && n < MAX_INPUTS; s = seg_get(m, s)->hnext) {
      ls_seg *d = seg_get(m, s);
      int64_t tb = atomic_load(&d->tomb_bytes);
      if (tb > 0 && 4 * tb >= atomic_load(&d->live_bytes) && atomic_load(&d->max_seq) < floor) out[n++] = s;
    }
  pthread_mutex_unlock(&m->hist_lock);
  return n;
}

/* One compaction step on set gs.  *taken: inputs relocated (0: none worth
** it).  The live records of all inputs are written in sequence order --
** the age sort of LFS: records of about the same age (and so, likely, the
** same future) end up in the same segments, which cost-benefit then tells
** apart. */
static int compact_step(ls_cleaner *c, uint32_t gs, int policy, int tombs, uint32_t *taken) {
  ls_engine *e = c->e;
  uint32_t in[MAX_INPUTS];
  double gain = 0;
  uint32_t n = tombs ? select_tombs(c, gs, in) : select_inputs(c, gs, policy, in, &gain);
  *taken = 0;
  if (!n) return LS_OK;
  for (uint32_t i = 0; i < n; i++) seg_set_take(&e->sm, in[i]);
  eng_hook(e, "compact:selected");
  c->staging = 1;
  c->stage_len = c->nstaged = 0;
  int rc = LS_OK;
  for (uint32_t i = 0; i < n && !rc; i++) {
    rc = relocate(c, in[i], 0);
    if (rc == LS_CORRUPT) { eng_problem(e, "%s", ls_errmsg()); rc = LS_OK; }
  }
  c->staging = 0;
  if (!rc && c->nstaged) qsort(c->staged, c->nstaged, sizeof *c->staged, item_by_seq);
  for (uint32_t i = 0; !rc && i < c->nstaged; i++) rc = push_rec(c, &c->staged[i], c->stage + c->staged[i].off, 0);
  c->nstaged = c->stage_len = 0;
  c->resume_seg = SEG_NONE;
  if (rc) {
    /* All go back; whatever was copied already is harmless (C1). */
    for (uint32_t j = 0; j < n; j++) seg_set_add(&e->sm, in[j], gs);
    return rc;
  }
  atomic_fetch_add(&e->segments_compacted, n);
  *taken = n;
  return LS_OK;
}

/* The set with the best step under policy (0 if none frees a segment). */
static uint32_t pick_set(ls_cleaner *c, int policy) {
  ls_segmgr *m = &c->e->sm;
  uint32_t best = 0;
  double best_gain = 0;
  pthread_mutex_lock(&m->hist_lock);
  uint32_t n = m->ngsets;
  pthread_mutex_unlock(&m->hist_lock);
  for (uint32_t gs = 1; gs <= n; gs++) {
    uint32_t in[MAX_INPUTS];
    double gain = 0;
    if (select_inputs(c, gs, policy, in, &gain) && gain > best_gain) {
      best_gain = gain;
      best = gs;
    }
  }
  return best;
}

/* Write the buffer of set gs's group, if any. */
static int flush_set(ls_cleaner *c, uint32_t gs) {
  ls_segmgr *m = &c->e->sm;
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs && gs <= m->ngsets ? m->gsets[gs - 1] : NULL;
  uint32_t table = g ? g->table : 0, group = g ? g->group : 0;
  pthread_mutex_unlock(&m->hist_lock);
  if (!g) return LS_OK;
  for (cl_buf *b = c->hash[hslot(table, group)]; b; b = b->next)
    if (b->table == table && b->group == group) return buf_flush(c, b);
  return LS_OK;
}

/* ---- the controller ----------------------------------------------------------- */

/* Is space short enough to compact?  Bounded disks: when the free segments
** (and those more files would give) fall near the user reserve; unbounded
** ones: when the data files hold more than twice the live bytes. */
static int want_compaction(ls_cleaner *c, int *urgent) {
  ls_engine *e = c->e;
  ls_segmgr *m = &e->sm;
  uint32_t total = seg_count(m), nfree = seg_nfree(m);
  *urgent = 0;
  if (e->disk_size) {
    uint64_t all = (uint64_t)m->max_files * m->segs_per_file, avail = room(m);
    uint64_t low = m->reserve_clean + m->reserve_delete + 2 + all / 128;
    *urgent = avail < m->reserve_clean + m->reserve_delete + 2;
    return avail < low;
  }
  uint64_t live = live_total(e);
  uint64_t used = (uint64_t)(total - nfree) * e->seg_size;
  return total - nfree > 64 && used > 2 * live;
}

/* Compact while space is short and steps free segments.  Returns the
** segments freed. */
static uint64_t compact_round(ls_cleaner *c, int max_steps) {
  ls_engine *e = c->e;
  uint64_t freed = 0;
  for (int i = 0; i < max_steps && !atomic_load(&e->failed); i++) {
    int urgent;
    if (!want_compaction(c, &urgent)) break;
    uint32_t gs = pick_set(c, e->policy), taken = 0;
    if (!gs) break;
    uint64_t written = atomic_load(&e->cleaner_segments);
    int rc = compact_step(c, gs, e->policy, 0, &taken);
    if (!rc && urgent) rc = flush_set(c, gs);
    uint64_t f = reclaim(c);
    freed += f;
    written = atomic_load(&e->cleaner_segments) - written;
    if (f) c->ema = 0.8 * c->ema + 0.2 * ((double)written / (double)f);
    if (rc || !taken || (urgent && f <= written)) break;
  }
  return freed;
}

/* Settling costs a sync; a batch shares it.  Unsettled segments only pin
** the mixed segments holding their COMMIT records, so they wait for a
** batch unless space is short. */
static int settle_due(ls_cleaner *c) {
  pthread_mutex_lock(&c->qlock);
  uint32_t n = c->settle.len;
  pthread_mutex_unlock(&c->qlock);
  int urgent;
  return n >= SETTLE_BATCH || (n && want_compaction(c, &urgent));
}

static void background_round(ls_cleaner *c) {
  ls_engine *e = c->e;
  uint64_t progress = reclaim(c);
  if (settle_due(c)) settle_all(c);
  uint32_t done = 0;
  int rc = separate(c, SEP_BATCH, &done);
  progress += done;
  if (!rc) flush_aged(c);
  progress += reclaim(c);
  int urgent;
  if (want_compaction(c, &urgent)) {
    /* Harder as space runs out and as each freed segment costs more. */
    int steps = urgent ? 64 : 4 + (int)(4 * c->ema);
    progress += compact_round(c, steps);
    if (want_compaction(c, &urgent)) {
      /* Still short: the output buffers' inputs are freed once written. */
      flush_all(c, 0);
      progress += reclaim(c);
    }
  }
  /* Space nobody needs soon goes back to the file system. */
  seg_punch_excess(&e->sm);
  /* More to do: another round -- unless this one got nowhere (the disk is
  ** full); then the next hand-off or a writer needing room wakes us. */
  pthread_mutex_lock(&c->qlock);
  if (progress && (c->mixed.len || c->empty.n || c->settle.len >= SETTLE_BATCH)) c->kicked = 1;
  pthread_mutex_unlock(&c->qlock);
}

static void *cleaner_main(void *arg) {
  ls_cleaner *c = arg;
  pthread_mutex_lock(&c->qlock);
  for (;;) {
    while (!c->stop && !c->kicked) pthread_cond_wait(&c->qcond, &c->qlock);
    if (c->stop) break;
    c->kicked = 0;
    pthread_mutex_unlock(&c->qlock);
    pthread_mutex_lock(&c->lock);
    if (!atomic_load(&c->e->failed)) background_round(c);
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&c->qlock);
  }
  pthread_mutex_unlock(&c->qlock);
  ls_thread_cleanup();
  return NULL;
}

/* ---- entry points --------------------------------------------------------------- */

int cleaner_alloc(ls_engine *e, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *id) {
  ls_cleaner *c = e->cleaner;
  if (!c) return ls_err(LS_FULL, "no space left");
  char msg[256];
  snprintf(msg, sizeof msg, "%s", ls_errmsg());
  pthread_mutex_lock(&c->lock);
  for (int iter = 0; iter < 64 && !seg_can_alloc(&e->sm, purpose) && !atomic_load(&e->failed); iter++) {
    if (seg_npunched(&e->sm) && seg_unpunch(&e->sm) == LS_OK) continue;   /* a hole, zeroed */
    settle_all(c);                    /* unpins mixed segments */
    uint64_t freed = reclaim(c);
    if (seg_can_alloc(&e->sm, purpose)) break;
    uint32_t done = 0;
    separate(c, UINT32_MAX, &done);
    flush_all(c, 0);
    freed += reclaim(c);
    if (seg_can_alloc(&e->sm, purpose)) break;
    uint32_t gs = pick_set(c, e->policy), taken = 0;
    if (gs) {
      compact_step(c, gs, e->policy, 0, &taken);
      flush_set(c, gs);
      freed += reclaim(c);
    }
    if (!freed && !done && !taken) break;
  }
  /* Taken before the lock goes: the background cleaner's own copies can
  ** not use up the room first. */
  int rc = seg_can_alloc(&e->sm, purpose) ? seg_alloc(&e->sm, kind, table, group, purpose, id) : LS_FULL;
  pthread_mutex_unlock(&c->lock);
  if (atomic_load(&e->failed)) return ls_err(LS_READONLY, "%s", e->fail_msg);
  return rc == LS_FULL ? ls_err(LS_FULL, "%s", msg) : rc;
}

void cleaner_reclaim_now(ls_engine *e) {
  ls_cleaner *c = e->cleaner;
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  reclaim(c);
  pthread_mutex_unlock(&c->lock);
}

uint64_t cleaner_delay_us(ls_engine *e) {
  ls_cleaner *c = e->cleaner;
  if (!c || e->manual_cleaning) return 0;
  double pool = (double)atomic_load(&c->inuse) / (double)c->maxbufs;
  uint32_t limit = c->maxbufs > 32 ? c->maxbufs : 32;
  double backlog = (double)atomic_load(&c->backlog) / (double)limit;
  double x = pool > backlog ? pool : backlog;
  if (x <= 0.5) return 0;
  if (x > 1) x = 1;
  double r = (x - 0.5) / 0.5;
  return (uint64_t)(r * r * r * DELAY_CAP_US);
}

/* Seal the writer's active segment so that everything committed is in a
** sealed segment the separator can take. */
static int seal_active(ls_engine *e) { return writer_seal(e); }

int ls_flush(ls_engine *e, uint32_t table, uint64_t *freed) {
  ls_cleaner *c = e->cleaner;
  *freed = 0;
  if (table && !ls_table_exists(e, table)) return ls_err(LS_NOTABLE, "no table with id %u", table);
  if (atomic_load(&e->failed)) return ls_err(LS_READONLY, "%s", e->fail_msg);
  int rc = seal_active(e);
  if (rc) return rc;
  pthread_mutex_lock(&c->lock);
  uint64_t before = atomic_load(&e->segments_freed);
  uint32_t done;
  settle_all(c);
  rc = separate(c, UINT32_MAX, &done);
  if (!rc) rc = flush_all(c, 0);
  reclaim(c);
  *freed = atomic_load(&e->segments_freed) - before;
  pthread_mutex_unlock(&c->lock);
  if (!rc && atomic_load(&e->failed)) rc = ls_err(LS_READONLY, "%s", e->fail_msg);
  return rc;
}

int ls_compact(ls_engine *e, uint32_t table, uint64_t *freed) {
  ls_cleaner *c = e->cleaner;
  *freed = 0;
  uint64_t before = atomic_load(&e->segments_freed), f;
  int rc = ls_flush(e, table, &f);
  if (rc) return rc;
  /* The table's sets. */
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = eng_table(e, table);
  uint32_t n = t ? t->groups : 0;
  uint32_t *sets = n ? malloc(n * sizeof *sets) : NULL;
  if (t && sets) memcpy(sets, t->gsets, n * sizeof *sets);
  ls_guard_leave(&e->guard, g);
  if (!t) return ls_err(LS_NOTABLE, "no table with id %u", table);
  if (!sets) return ls_err(LS_NOMEM, "out of memory");
  pthread_mutex_lock(&c->lock);
  for (uint32_t i = 0; !rc && i < n; i++) {
    for (int tombs = 0; tombs < 2 && !rc; tombs++) {
      uint32_t taken;
      uint64_t net;
      do {
        uint64_t w0 = atomic_load(&e->cleaner_segments), f0 = atomic_load(&e->segments_freed);
        rc = compact_step(c, sets[i], e->policy, tombs, &taken);
        if (!rc) rc = flush_set(c, sets[i]);
        reclaim(c);
        /* A step that frees no more than it writes ends it (the estimate
        ** can be wrong; never loop on it). */
        uint64_t fr = atomic_load(&e->segments_freed) - f0, wr = atomic_load(&e->cleaner_segments) - w0;
        net = fr > wr ? fr - wr : 0;
      } while (!rc && taken && (net || tombs));
    }
  }
  reclaim(c);
  seg_punch_excess(&e->sm);
  *freed = atomic_load(&e->segments_freed) - before;
  pthread_mutex_unlock(&c->lock);
  free(sets);
  if (!rc && atomic_load(&e->failed)) rc = ls_err(LS_READONLY, "%s", e->fail_msg);
  return rc;
}

int ls_clean_step(ls_engine *e, int what, uint64_t *count) {
  ls_cleaner *c = e->cleaner;
  int rc = LS_OK;
  uint64_t n = 0;
  pthread_mutex_lock(&c->lock);
  switch (what) {
  case LS_CLEAN_RECLAIM: n = reclaim(c); break;
  case LS_CLEAN_SETTLE: rc = settle_all(c); break;
  case LS_CLEAN_SEPARATE: { uint32_t d; rc = separate(c, 1, &d); n = d; break; }
  case LS_CLEAN_FLUSH: rc = flush_all(c, 0); break;
  case LS_CLEAN_COMPACT: {
    uint32_t gs = pick_set(c, e->policy), taken = 0;
    if (gs) rc = compact_step(c, gs, e->policy, 0, &taken);
    n = taken;
    break;
  }
  default: rc = ls_err(LS_INVALID, "unknown cleaning step %d", what);
  }
  pthread_mutex_unlock(&c->lock);
  if (count) *count = n;
  return rc;
}

void ls_set_hook(ls_engine *e, void (*fn)(void *arg, const char *point), void *arg) {
  e->hook_arg = arg;
  e->hook = fn;
}

void cleaner_lock(ls_engine *e) { if (e->cleaner) pthread_mutex_lock(&e->cleaner->lock); }
void cleaner_unlock(ls_engine *e) { if (e->cleaner) pthread_mutex_unlock(&e->cleaner->lock); }

uint32_t cleaner_buffers_in_use(ls_engine *e) { return e->cleaner ? atomic_load(&e->cleaner->inuse) : 0; }

int cleaner_start(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties) {
  ls_cleaner *c = calloc(1, sizeof *c);
  if (!c) return ls_err(LS_NOMEM, "cleaner: out of memory");
  c->e = e;
  pthread_mutex_init(&c->lock, NULL);
  pthread_mutex_init(&c->qlock, NULL);
  pthread_cond_init(&c->qcond, NULL);
  uint64_t mem = e->separator_memory ? e->separator_memory : LS_DEFAULT_SEPARATOR_MEMORY;
  c->resume_seg = SEG_NONE;
  c->maxbufs = (uint32_t)(mem / e->seg_size);
  if (c->maxbufs < 4) c->maxbufs = 4;
  c->img = ls_alloc_aligned(e->seg_size);
  c->sorted = ls_alloc_aligned(e->seg_size);
  c->stage = malloc((size_t)MAX_INPUTS * e->seg_size);
  e->cleaner = c;
  if (!c->img || !c->sorted || !c->stage) return ls_err(LS_NOMEM, "cleaner: out of memory");
  cleaner_mixed_ready(e, mixed->v, mixed->n);
  cleaner_settle(e, settle->v, settle->n);
  cleaner_note_empty(e, empties->v, empties->n);
  if (!e->manual_cleaning) {
    if (pthread_create(&c->thread, NULL, cleaner_main, c)) return ls_err(LS_NOMEM, "cannot start the cleaner thread");
    c->started = 1;
  }
  return LS_OK;
}

void cleaner_stop(ls_engine *e) {
  ls_cleaner *c = e->cleaner;
  if (!c) return;
  if (c->started) {
    pthread_mutex_lock(&c->qlock);
    c->stop = 1;
    pthread_cond_signal(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
    pthread_join(c->thread, NULL);
  }
  if (!atomic_load(&e->failed) && c->img && c->sorted && c->stage) {
    /* Leave the copies made so far on disk: the next open need not
    ** separate their mixed segments again. */
    pthread_mutex_lock(&c->lock);
    settle_all(c);
    flush_all(c, 0);
    reclaim(c);
    pthread_mutex_unlock(&c->lock);
  }
  for (uint32_t h = 0; h < NHASH; h++)
    while (c->hash[h]) { cl_buf *b = c->hash[h]; c->hash[h] = b->next; free(b->mem); free(b->recs); free(b); }
  while (c->spare) { cl_buf *b = c->spare; c->spare = b->next; free(b->mem); free(b->recs); free(b); }
  free(c->mixed.v);
  free(c->settle.v);
  free(c->deferred.v);
  free(c->empty.v);
  free(c->cand.v);
  free(c->ids.v);
  free(c->items);
  free(c->img);
  free(c->sorted);
  free(c->stage);
  free(c->staged);
  pthread_mutex_destroy(&c->lock);
  pthread_mutex_destroy(&c->qlock);
  pthread_cond_destroy(&c->qcond);
  free(c);
  e->cleaner = NULL;
}
