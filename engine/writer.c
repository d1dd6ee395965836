/*
** writer.c -- the write path: one thread group-commits the transactions of
** every caller into the active (mixed) segment.
**
** A commit group is everything queued when the writer wakes up.  For each
** group the writer
**   1. validates every transaction's observed versions (write conflicts),
**   2. serialises the surviving transactions' records into the open buffer,
**      assigning write sequences, switching segments when one fills,
**   3. writes the buffer(s) and fdatasyncs each file written (one sync per
**      file per group; the sync is issued after the write completed),
**   4. installs every record in its table's index and frees the old
**      locations' bytes in the segment accounting,
**   5. releases the callers.
**
** Rules of the write path (the crash argument is in FORMAT.md):
**
**  (W1) A transaction is acknowledged only after all its records and its
**       commit mark are durable (step 3 returned success) and installed.
**       A prepared transaction (WRITE_PREPARE) is durable but installed
**       only when published; until then transactions touching its keys
**       conflict.  Unpreparing it writes an ABORT record (durably) naming
**       its sequence range, which recovery honours.
**  (W2) A transaction that fits the rest of the active segment goes into
**       one buffer; its last record carries END and recovery applies its
**       records only when the END record is valid.  A larger transaction
**       is streamed through as many buffers and segments as it needs with
**       CONT on every record, followed by a COMMIT record naming its first
**       sequence; recovery applies CONT records only if that COMMIT is
**       found.  So a transaction is atomic at recovery either way, and
**       streaming needs no second copy of its bytes in memory.
**  (W3) Small commits share blocks: a group is appended to the open buffer
**       when the buffer then still fits one block, and that block is
**       rewritten (header and earlier records byte-identical, plus the new
**       records).  Otherwise the open buffer is sealed and the group starts
**       a new buffer at the next 4 KiB boundary; a buffer that grew past one
**       block is sealed after its group.  Every write is one contiguous
**       range starting at the open buffer's first block.
**  (W4) After a failed write or sync the engine is failed: the group's
**       transactions get the error, and every later commit LS_READONLY
**       until the engine is reopened.  A sync is never retried.
**  (W5) Sequences are assigned here, in write order; every buffer header
**       records the highest sequence assigned so far, so sequences never
**       go backwards across a restart.
**  (W6) Segments sealed during a group are "in flight" until the group
**       installed: they may hold records not yet in the index, so nothing
**       frees or separates them.  After the install they go to the cleaner
**       (mixed ones to the separator), with every segment an install may
**       have left without live records; the cleaner frees those.
**  (W7) A streamed transaction whose records for one compaction group fill
**       at least three quarters of a segment writes them straight into
**       group segments (CONT records, one buffer per segment) instead of
**       the mixed segment, so they need no copy by the separator.  They
**       count only with the transaction's COMMIT record, which pins them
**       until the cleaner settles their buffer (FORMAT.md).
**  (W8) An allocation that would dip into the cleaner's reserve first asks
**       the cleaner for room (on this thread); a transaction of deletes
**       only may go deeper, so that space can be freed on a full disk.
**  (W9) A transaction that does not fit the rest of the active segment but
**       fits a fresh one goes into a fresh one when less than an eighth of
**       the active segment is left: then no segment's records need a COMMIT
**       record in the next, and the separator can adopt a segment of one
**       table whole (cleaner.c) instead of copying it.
*/
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct writer_callreq {
  int (*fn)(ls_engine *e, void *arg);
  void *arg;
  int rc;
  char msg[256];
  sem_t done;
  struct writer_callreq *next;
} writer_callreq;

/* Keys written by the transactions already accepted in the current group:
** a later transaction of the same group that read one of them read the
** version before it, so it conflicts. */
typedef struct keyset {
  struct ks_slot { uint64_t hi, lo; uint32_t table; } *slots;
  uint32_t cap, n;
} keyset;

struct ls_writer {
  ls_engine *e;
  pthread_t thread;
  int started;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  ls_txn *head, *tail;             /* queued commits */
  writer_callreq *calls;           /* queued calls */
  int stop;

  /* Writer-thread state: the active segment and its open buffer. */
  uint32_t seg;                    /* active segment, or TXN_NONE */
  uint8_t *buf;                    /* open buffer (segment-sized, aligned) */
  uint32_t buf_start;              /* offset of the open buffer in the segment */
  uint32_t buf_len;                /* header + records in buf */
  uint32_t buf_nrec;
  uint32_t buf_written;            /* buf_len as last written (0: never) */

  int io_error;                    /* a write or sync of this group failed */
  int sync_fds[8];                 /* files written in this group */
  int nsync;
  seg_ids empties;                 /* segments that may have no live record */
  seg_ids sealed;                  /* mixed segments sealed in this group */
  seg_ids direct;                  /* group segments written in this group */
  uint32_t *tsegs;                 /* segments a streamed transaction used */
  uint32_t ntsegs, captsegs;
  uint8_t *dbuf;                   /* a directly written group segment */
  uint32_t *grp;                   /* compaction group of each record (W7) */
  uint32_t capgrp;
  ls_txn *prepared;                /* durable, not yet published or aborted */
  keyset ks;
};

/* ---- key set ------------------------------------------------------------ */

static int ks_reset(keyset *s, uint32_t want) {
  uint32_t cap = 64;
  while (cap < want * 2) cap *= 2;
  if (cap > s->cap) {
    void *p = realloc(s->slots, cap * sizeof *s->slots);
    if (!p) return LS_NOMEM;
    s->slots = p;
    s->cap = cap;
  }
  memset(s->slots, 0, s->cap * sizeof *s->slots);
  s->n = 0;
  return LS_OK;
}

static uint32_t ks_find(const keyset *s, uint32_t table, uint64_t hi, uint64_t lo) {
  uint32_t i = (uint32_t)(lo ^ (hi >> 17) ^ table) & (s->cap - 1);
  while (s->slots[i].table && !(s->slots[i].table == table && s->slots[i].hi == hi && s->slots[i].lo == lo))
    i = (i + 1) & (s->cap - 1);
  return i;
}

static int ks_has(const keyset *s, uint32_t table, uint64_t hi, uint64_t lo) {
  return s->cap && s->slots[ks_find(s, table, hi, lo)].table != 0;
}

/* Add; the set was sized for every key of the group by ks_reset. */
static void ks_add(keyset *s, uint32_t table, uint64_t hi, uint64_t lo) {
  uint32_t i = ks_find(s, table, hi, lo);
  if (!s->slots[i].table) {
    s->slots[i].table = table;
    s->slots[i].hi = hi;
    s->slots[i].lo = lo;
    s->n++;
  }
}

/* ---- buffer and segment handling ---------------------------------------- */

/* Start a new open buffer at offset off of the active segment. */
static void buf_open_at(ls_writer *w, uint32_t off) {
  w->buf_start = off;
  w->buf_len = LS_BUF_HDR;
  w->buf_nrec = 0;
  w->buf_written = 0;
}

static int note_sync_fd(ls_writer *w, int fd) {
  for (int i = 0; i < w->nsync; i++)
    if (w->sync_fds[i] == fd) return LS_OK;
  if (w->nsync == (int)(sizeof w->sync_fds / sizeof w->sync_fds[0])) return 1;
  w->sync_fds[w->nsync++] = fd;
  return LS_OK;
}

/* The first buffer of s is durable: what earlier incarnations of its slot
** left can no longer be read back. */
static void first_durable(ls_engine *e, uint32_t s) {
  ls_seg *d = seg_get(&e->sm, s);
  if (d->used) atomic_store(&d->stale_floor, SEG_NOFLOOR);
}

/* Sync every file written since the last sync.  final: the end of a
** group (or call); with the syncs before it, everything written so far is
** durable, so the segments written have their first buffers on disk. */
static int sync_files(ls_writer *w, int final) {
  ls_engine *e = w->e;
  for (int i = 0; i < w->nsync; i++) {
    int r = seg_sync(&e->sm, w->sync_fds[i], 0);
    atomic_fetch_add(&e->syncs, 1);
    if (r) {
      w->nsync = 0;
      w->io_error = 1;
      return ls_err_io(r, "fdatasync of a data file");
    }
  }
  w->nsync = 0;
  /* A write or sync failure elsewhere (the cleaner) fails this too. */
  if (atomic_load(&e->failed)) {
    w->io_error = 1;
    return ls_err(LS_READONLY, "%s", e->fail_msg);
  }
  if (final) {
    if (w->seg != TXN_NONE) first_durable(e, w->seg);
    for (uint32_t i = 0; i < w->sealed.n; i++) first_durable(e, w->sealed.v[i]);
    for (uint32_t i = 0; i < w->direct.n; i++) first_durable(e, w->direct.v[i]);
  }
  return LS_OK;
}

/* Write the open buffer's unwritten part: from its first block to the end
** of its last block (rule W3).  The header is re-encoded first. */
static int buf_write(ls_writer *w) {
  ls_engine *e = w->e;
  if (w->seg == TXN_NONE || w->buf_len == w->buf_written || w->buf_nrec == 0) return LS_OK;
  ls_seg *d = seg_get(&e->sm, w->seg);
  ls_bufhdr h = {
    .kind = LS_KIND_MIXED, .flags = 0, .seg_seq = d->seq,
    .max_seq = atomic_load(&e->next_seq) - 1,
    .data_size = w->buf_len - LS_BUF_HDR, .nrecords = w->buf_nrec,
  };
  ls_bufhdr_encode(w->buf, &h);
  uint32_t len = (uint32_t)ls_align_up(w->buf_len, LS_BLOCK);
  int fd = seg_fd(&e->sm, w->seg);
  int r = e->io->m->write(e->io, fd, w->buf, len, seg_base(&e->sm, w->seg) + w->buf_start);
  if (r) {
    w->io_error = 1;
    return ls_err_io(r, "write of segment %u at offset %u", w->seg, w->buf_start);
  }
  atomic_fetch_add(&e->bytes_written, len);
  w->buf_written = w->buf_len;
  d->used = w->buf_start + len;
  if (note_sync_fd(w, fd)) {
    /* More files than slots in one group: sync what we have now. */
    int rc = sync_files(w, 0);
    if (rc) return rc;
    note_sync_fd(w, fd);
  }
  return LS_OK;
}

/* Segment s may have no live record left: the cleaner checks and frees
** it (the hint is cheap; the check is not). */
static void note_empty(ls_writer *w, uint32_t s) {
  if (atomic_load_explicit(&seg_get(&w->e->sm, s)->live_records, memory_order_relaxed) == 0)
    (void)seg_ids_push(&w->empties, s);   /* if lost: freed at the next open */
}

/* Seal the active segment (after its buffer was written); it stays in
** flight until its group installed (W6). */
static void seal_active(ls_writer *w) {
  ls_engine *e = w->e;
  if (w->seg == TXN_NONE) return;
  seg_flags(&e->sm, w->seg, SEGF_INFLIGHT, 0);
  seg_seal(&e->sm, w->seg);
  if (seg_ids_push(&w->sealed, w->seg)) seg_flags(&e->sm, w->seg, 0, SEGF_INFLIGHT);
  w->seg = TXN_NONE;
}

/* A segment for purpose, asking the cleaner for room when the reserve is
** reached (W8). */
static int alloc_segment(ls_writer *w, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *s) {
  ls_engine *e = w->e;
  int rc = seg_alloc(&e->sm, kind, table, group, purpose, s);
  if (rc == LS_FULL) rc = cleaner_alloc(e, kind, table, group, purpose, s);
  if (!rc) eng_kick_bg(e);
  return rc;
}

/* Make sure an active segment with an open buffer exists. */
static int ensure_segment(ls_writer *w, int purpose) {
  ls_engine *e = w->e;
  if (w->seg != TXN_NONE) return LS_OK;
  uint32_t s;
  int rc = alloc_segment(w, LS_KIND_MIXED, 0, 0, purpose, &s);
  if (rc) return rc;
  w->seg = s;
  memset(w->buf, 0, e->seg_size);
  buf_open_at(w, 0);
  return LS_OK;
}

/* The active segment is full: write its buffer, seal it, start the next. */
static int switch_segment(ls_writer *w, int purpose) {
  int rc = buf_write(w);
  if (rc) return rc;
  seal_active(w);
  return ensure_segment(w, purpose);
}

/* At the start of a group of group_bytes: keep appending to the open
** buffer only if it then still fits one block; otherwise seal it and open
** the next buffer at the next 4 KiB boundary (W3). */
static void group_start(ls_writer *w, uint64_t group_bytes) {
  ls_engine *e = w->e;
  if (w->seg == TXN_NONE || w->buf_nrec == 0) return;
  if (w->buf_len <= LS_BLOCK && w->buf_len + group_bytes <= LS_BLOCK) return;
  uint32_t next = w->buf_start + (uint32_t)ls_align_up(w->buf_len, LS_BLOCK);
  memset(w->buf, 0, ls_align_up(w->buf_len, LS_BLOCK));
  if (next + LS_BUF_HDR + LS_REC_HDR > e->seg_size) {
    seal_active(w);
    return;
  }
  buf_open_at(w, next);
}

static inline uint32_t room(ls_writer *w) {
  return w->e->seg_size - w->buf_start - w->buf_len;
}

/* Append one encoded record (already holding type, table, key, value) and
** seal it with the next sequence.  The caller ensured it fits. */
static uint64_t append(ls_writer *w, const uint8_t *rec, uint32_t size, uint32_t flags, int tomb) {
  ls_engine *e = w->e;
  uint8_t *p = w->buf + w->buf_len;
  memcpy(p, rec, size);
  uint64_t seq = atomic_fetch_add(&e->next_seq, 1);
  ls_seg *d = seg_get(&e->sm, w->seg);
  ls_rec_seal(p, seq, flags, d->seed);
  seg_note_rec(d, w->buf_start + w->buf_len, seq);
  uint64_t word = loc_make(w->seg, w->buf_start + w->buf_len, size, tomb);
  w->buf_len += size;
  w->buf_nrec++;
  return word;
}

static int note_tseg(ls_writer *w, uint32_t s) {
  if (w->ntsegs == w->captsegs) {
    uint32_t ncap = w->captsegs ? 2 * w->captsegs : 16;
    uint32_t *p = realloc(w->tsegs, ncap * sizeof *p);
    if (!p) return ls_err(LS_NOMEM, "writer: out of memory");
    w->tsegs = p;
    w->captsegs = ncap;
  }
  w->tsegs[w->ntsegs++] = s;
  return LS_OK;
}

/* Write one directly filled group segment (W7): a single buffer. */
static int direct_write(ls_writer *w, ls_txn *t, uint32_t s, uint32_t len, uint32_t nrec) {
  ls_engine *e = w->e;
  ls_seg *d = seg_get(&e->sm, s);
  ls_bufhdr h = {
    .kind = LS_KIND_GROUP, .seg_seq = d->seq, .max_seq = atomic_load(&e->next_seq) - 1,
    .data_size = len - LS_BUF_HDR, .nrecords = nrec, .table = d->table, .group = d->group,
  };
  ls_bufhdr_encode(w->dbuf, &h);
  uint32_t alen = (uint32_t)ls_align_up(len, LS_BLOCK);
  memset(w->dbuf + len, 0, alen - len);
  int fd = seg_fd(&e->sm, s);
  int r = e->io->m->write(e->io, fd, w->dbuf, alen, seg_base(&e->sm, s));
  if (r) {
    w->io_error = 1;
    return ls_err_io(r, "write of segment %u", s);
  }
  atomic_fetch_add(&e->bytes_written, alen);
  d->used = alen;
  seg_flags(&e->sm, s, SEGF_INFLIGHT, 0);
  seg_seal(&e->sm, s);
  int rc = seg_ids_push(&w->direct, s);
  if (!rc) rc = txn_add_direct(t, s);
  if (!rc) rc = note_tseg(w, s);
  if (rc) return ls_err(LS_NOMEM, "writer: out of memory");
  if (note_sync_fd(w, fd)) {
    rc = sync_files(w, 0);
    if (rc) return rc;
    note_sync_fd(w, fd);
  }
  return LS_OK;
}

/* W7: write the records of t's big compaction groups straight into group
** segments; they get r->word set, the rest is left for the mixed segment. */
static int serialize_direct(ls_writer *w, ls_txn *t, int purpose) {
  ls_engine *e = w->e;
  uint32_t cap = e->seg_size - LS_BUF_HDR;
  struct { uint32_t table, group; uint64_t bytes; } gb[16];
  uint32_t ngb = 0;
  if (t->nrec > w->capgrp) {
    uint32_t *p = realloc(w->grp, t->nrec * sizeof *p);
    if (!p) return LS_OK;                     /* everything goes mixed */
    w->grp = p;
    w->capgrp = t->nrec;
  }
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *tb = NULL;
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    w->grp[i] = UINT32_MAX;
    if (r->dead) continue;
    if (!tb || tb->id != r->table) tb = eng_table(e, r->table);
    if (!tb) continue;
    uint32_t grp = eng_group_of(r->hi, tb->groups), k = 0;
    while (k < ngb && !(gb[k].table == r->table && gb[k].group == grp)) k++;
    if (k == ngb) {
      if (ngb == 16) continue;
      gb[ngb].table = r->table;
      gb[ngb].group = grp;
      gb[ngb++].bytes = 0;
    }
    gb[k].bytes += r->size;
    w->grp[i] = k;
  }
  ls_guard_leave(&e->guard, g);
  for (uint32_t k = 0; k < ngb; k++) {
    if (gb[k].bytes < (uint64_t)cap * 3 / 4) continue;
    if (!w->dbuf) {
      w->dbuf = ls_alloc_aligned(e->seg_size);
      if (!w->dbuf) return LS_OK;
    }
    uint64_t left = gb[k].bytes;
    uint32_t s = TXN_NONE, len = 0, nrec = 0;
    for (uint32_t i = 0; i < t->nrec; i++) {
      txn_rec *r = &t->recs[i];
      if (w->grp[i] != k) continue;
      if (s != TXN_NONE && len + r->size > e->seg_size) {
        int rc = direct_write(w, t, s, len, nrec);
        if (rc) return rc;
        s = TXN_NONE;
      }
      if (s == TXN_NONE) {
        if (left < (uint64_t)cap * 3 / 4) break;  /* the tail goes mixed */
        int rc = alloc_segment(w, LS_KIND_GROUP, gb[k].table, gb[k].group, purpose, &s);
        if (rc) return rc;
        len = LS_BUF_HDR;
        nrec = 0;
      }
      ls_seg *d = seg_get(&e->sm, s);
      uint8_t *p = w->dbuf + len;
      memcpy(p, txn_rec_ptr(t, r), r->size);
      uint64_t seq = atomic_fetch_add(&e->next_seq, 1);
      ls_rec_seal(p, seq, LS_RF_CONT, d->seed);
      seg_note_rec(d, len, seq);
      r->word = loc_make(s, len, r->size, r->type == LS_REC_DELETE);
      len += r->size;
      nrec++;
      left -= r->size;
    }
    if (s != TXN_NONE) {
      int rc = direct_write(w, t, s, len, nrec);
      if (rc) return rc;
    }
  }
  return LS_OK;
}

/* Serialise t's live records (rule W2).  On LS_FULL nothing of t is
** committed (a streamed prefix without its COMMIT record is dead). */
static int serialize(ls_writer *w, ls_txn *t) {
  ls_engine *e = w->e;
  int purpose = SEG_FOR_DELETE;
  for (uint32_t i = 0; i < t->nrec; i++) {
    t->recs[i].word = 0;
    if (!t->recs[i].dead && t->recs[i].type != LS_REC_DELETE) purpose = SEG_FOR_USER;
  }
  t->ndirect = 0;
  int rc = ensure_segment(w, purpose);
  if (rc) return rc;
  t->first_seq = atomic_load(&e->next_seq);
  w->ntsegs = 0;
  if (t->live_bytes >= (e->seg_size - LS_BUF_HDR) * 3 / 4) {
    rc = serialize_direct(w, t, purpose);
    if (rc) return rc;
  }
  uint64_t rest = 0;
  for (uint32_t i = 0; i < t->nrec; i++)
    if (!t->recs[i].dead && !t->recs[i].word) rest += t->recs[i].size;
  int multi = t->ndirect > 0 || rest > room(w);
  if (multi && !t->ndirect && rest <= e->seg_size - LS_BUF_HDR && room(w) < e->seg_size / 8) {
    /* W9: a fresh segment holds it whole. */
    rc = switch_segment(w, purpose);
    if (rc) return rc;
    multi = rest > room(w);
  }
  uint32_t last = TXN_NONE;
  for (uint32_t i = 0; i < t->nrec; i++)
    if (!t->recs[i].dead && !t->recs[i].word) last = i;
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    if (r->dead || r->word) continue;
    if (r->size > room(w)) {
      rc = switch_segment(w, purpose);   /* only reachable when multi */
      if (rc) return rc;
    }
    if (multi && (!w->ntsegs || w->tsegs[w->ntsegs - 1] != w->seg)) {
      rc = note_tseg(w, w->seg);
      if (rc) return rc;
    }
    uint32_t flags = multi ? LS_RF_CONT : (i == last ? LS_RF_END : 0);
    r->word = append(w, txn_rec_ptr(t, r), r->size, flags, r->type == LS_REC_DELETE);
  }
  if (multi) {
    uint8_t rec[LS_REC_HDR + 8];
    uint8_t first[8];
    ls_put64(first, t->first_seq);
    ls_rec_encode(rec, LS_REC_COMMIT, 0, NULL, 0, first, 8);
    if (sizeof rec > room(w)) {
      rc = switch_segment(w, purpose);
      if (rc) return rc;
    }
    /* Every segment holding CONT records of t needs the COMMIT record in
    ** this one.  Pin first: if that fails, no COMMIT is written. */
    for (uint32_t i = 0; i < w->ntsegs; i++) {
      rc = seg_add_dep(&e->sm, w->tsegs[i], w->seg);
      if (rc) return rc;
    }
    append(w, rec, sizeof rec, LS_RF_END, 0);
  }
  t->last_seq = atomic_load(&e->next_seq) - 1;
  return LS_OK;
}

/* ---- validation --------------------------------------------------------- */

/* Is observation o still true?  1 yes, 0 conflict, < 0 error. */
static int obs_holds(ls_engine *e, const txn_obs *o) {
  idx_key k = { o->hi, o->lo };
  unsigned g = ls_guard_enter(&e->guard);
  uint64_t word = 0;
  int rc = eng_lookup(e, o->table, &k, &word);
  int ok;
  if (rc) {
    ok = rc;
  } else if (!o->present) {
    ok = word == 0 || loc_tomb(word);
  } else if (word == 0 || loc_tomb(word)) {
    ok = 0;
  } else if (loc_same(word, o->word) && eng_segseq(e, word) == o->segseq) {
    ok = 1;                        /* the very record seen */
  } else if (o->seq == 0) {
    ok = 0;                        /* located, never read: moved or changed */
  } else {
    /* Moved: a relocated copy keeps its sequence, a new version does not. */
    ls_value v = {0};
    rc = eng_read_record(e, word, o->table, NULL, &v);
    ok = rc ? rc : v.seq == o->seq;
    ls_value_free(&v);
  }
  ls_guard_leave(&e->guard, g);
  return ok;
}

static void txn_finish(ls_txn *t, int rc, const char *msg) {
  t->rc = rc;
  if (rc) snprintf(t->msg, sizeof t->msg, "%s", msg ? msg : ls_strerror(rc));
  sem_post(&t->done);
}

/* Does t read or write a key written by a prepared transaction -- of an
** earlier group, or accepted before t in this one (acc)?  (Its records are
** durable but not installed: t could not have seen them, and t's newer
** records must not be installed before them.) */
static int prepared_conflict(ls_writer *w, ls_txn *t, ls_txn *acc) {
  ls_txn *p = w->prepared;
  int in_group = 0;
  for (;; p = in_group ? p->next : p->next_prepared) {
    if (!p && !in_group) { p = acc; in_group = 1; }
    if (!p) break;
    if (p == t || (in_group && p->mode != WRITE_PREPARE)) continue;
    for (uint32_t m = 0; m < t->nmaps; m++) {
      ls_index *mine = t->maps[m].idx, *theirs = txn_overlay(p, t->maps[m].table);
      if (!theirs) continue;
      idx_entry batch[64];
      idx_key from = { 0, 0 };
      int after = 0;
      for (;;) {
        size_t n = idx_range(mine, &from, after, batch, 64);
        for (size_t i = 0; i < n; i++) {
          idx_key k = { batch[i].hi, batch[i].lo };
          uint64_t w2;
          if (idx_get(theirs, &k, &w2) && (uint32_t)w2) return 1;
        }
        if (n < 64) break;
        from.hi = batch[n - 1].hi;
        from.lo = batch[n - 1].lo;
        after = 1;
      }
    }
  }
  return 0;
}

/* Check every transaction of the group; returns the accepted list. */
static ls_txn *validate(ls_writer *w, ls_txn *group) {
  ls_engine *e = w->e;
  ls_txn *acc = NULL, **tailp = &acc;
  uint32_t nkeys = 0, ntx = 0;
  for (ls_txn *t = group; t; t = t->next) { nkeys += t->live_recs; ntx++; }
  int use_set = ntx > 1 && ks_reset(&w->ks, nkeys) == LS_OK;
  for (ls_txn *t = group, *next; t; t = next) {
    next = t->next;
    int rc = LS_OK;
    const char *msg = NULL;
    unsigned g = ls_guard_enter(&e->guard);
    for (uint32_t i = 0; i < t->nmaps && !rc; i++) {
      ls_table *tb = eng_table(e, t->maps[i].table);
      if (!tb) { rc = LS_NOTABLE; msg = "the table was dropped before the commit"; }
    }
    ls_guard_leave(&e->guard, g);
    if (!rc && prepared_conflict(w, t, acc)) {
      rc = LS_CONFLICT;
      msg = "another transaction holding one of its rows is committing; nothing was written";
      atomic_fetch_add(&e->conflicts, 1);
    }
    /* Tables changed since this transaction first read them. */
    uint32_t stale[16];
    int nstale = 0, all_stale = 0;
    g = ls_guard_enter(&e->guard);
    for (uint32_t i = 0; i < t->nmaps && !rc; i++) {
      ls_table *tb = eng_table(e, t->maps[i].table);
      if (!t->maps[i].observed || !tb || atomic_load(&tb->changes) == t->maps[i].changes) continue;
      if (nstale < 16) stale[nstale++] = t->maps[i].table; else all_stale = 1;
    }
    ls_guard_leave(&e->guard, g);
    for (uint32_t i = 0; i < t->nobs && !rc && (nstale || use_set); i++) {
      const txn_obs *o = &t->obs[i];
      if (!o->table) continue;                     /* forgotten */
      int check = all_stale || (use_set && ks_has(&w->ks, o->table, o->hi, o->lo));
      for (int s = 0; s < nstale && !check; s++) check = stale[s] == o->table;
      if (!check) continue;
      int ok = (use_set && ks_has(&w->ks, o->table, o->hi, o->lo)) ? 0 : obs_holds(e, o);
      if (ok < 0) { rc = ok; msg = ls_errmsg(); }
      else if (!ok) {
        rc = LS_CONFLICT;
        msg = "another transaction changed a row this transaction read; nothing was written";
        atomic_fetch_add(&e->conflicts, 1);
      }
    }
    if (rc) {
      txn_finish(t, rc, msg);
      continue;
    }
    if (use_set)
      for (uint32_t i = 0; i < t->nrec; i++)
        if (!t->recs[i].dead) ks_add(&w->ks, t->recs[i].table, t->recs[i].hi, t->recs[i].lo);
    t->next = NULL;
    *tailp = t;
    tailp = &t->next;
  }
  return acc;
}

/* ---- install ------------------------------------------------------------ */

static void install(ls_writer *w, ls_txn *t) {
  ls_engine *e = w->e;
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *tb = NULL;
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    if (r->dead) continue;
    if (!tb || tb->id != r->table) {
      if (tb) pthread_rwlock_unlock(&tb->lock);
      /* Present for a commit (drops run on this thread); a prepared
      ** transaction's table may have been dropped before its publish: its
      ** records are dead. */
      tb = eng_table(e, r->table);
      if (!tb) { note_empty(w, loc_seg(r->word)); continue; }
      pthread_rwlock_wrlock(&tb->lock);
      atomic_fetch_add(&tb->changes, 1);
    }
    /* The keys are in no order: fetch the lookups ahead. */
    const txn_rec *far = i + PF_FAR < t->nrec ? &t->recs[i + PF_FAR] : NULL;
    const txn_rec *near = i + PF_NEAR < t->nrec ? &t->recs[i + PF_NEAR] : NULL;
    if (far && far->table == r->table) idx_prefetch(tb->idx, &(idx_key){ far->hi, far->lo }, 0);
    if (near && near->table == r->table) idx_prefetch(tb->idx, &(idx_key){ near->hi, near->lo }, 1);
    idx_key k = { r->hi, r->lo };
    uint64_t old = 0;
    int how = eng_install(e, tb, &k, r->word, &old);
    /* A segment left without live records goes to the cleaner (W6). */
    uint64_t gone = how == INSTALL_REPLACED ? old : how == INSTALL_DEAD ? r->word : 0;
    if (gone) note_empty(w, loc_seg(gone));
  }
  if (tb) pthread_rwlock_unlock(&tb->lock);
  /* Segments written for one group join its set; their buffers can be
  ** settled now that the transaction counts (W7). */
  for (uint32_t i = 0; i < t->ndirect; i++) {
    ls_seg *d = seg_get(&e->sm, t->direct[i]);
    ls_table *dt = eng_table(e, d->table);
    seg_set_add(&e->sm, t->direct[i], dt ? dt->gsets[d->group] : 0);
    note_empty(w, t->direct[i]);
  }
  ls_guard_leave(&e->guard, g);
  cleaner_settle(e, t->direct, t->ndirect);
  atomic_fetch_add(&e->commits, 1);
  atomic_fetch_add(&e->user_bytes_written, t->live_bytes);
}

/* Give the cleaner what this group left it (W6): the segments sealed
** during it, now installed, and those that may be empty. */
static void hand_off(ls_writer *w) {
  ls_engine *e = w->e;
  for (uint32_t i = 0; i < w->sealed.n; i++) seg_flags(&e->sm, w->sealed.v[i], 0, SEGF_INFLIGHT);
  for (uint32_t i = 0; i < w->direct.n; i++) {
    seg_flags(&e->sm, w->direct.v[i], 0, SEGF_INFLIGHT);
    note_empty(w, w->direct.v[i]);
  }
  for (uint32_t i = 0; i < w->sealed.n; i++) note_empty(w, w->sealed.v[i]);
  cleaner_mixed_ready(e, w->sealed.v, w->sealed.n);
  cleaner_note_empty(e, w->empties.v, w->empties.n);
  w->sealed.n = w->direct.n = w->empties.n = 0;
}

/* Hold (+1) or release (-1) the segments of a prepared t's records. */
static void hold_segments(ls_writer *w, ls_txn *t, int delta) {
  uint32_t last = TXN_NONE;
  for (uint32_t i = 0; i < t->nrec; i++) {
    const txn_rec *r = &t->recs[i];
    if (r->dead || !r->word || loc_seg(r->word) == last) continue;
    last = loc_seg(r->word);
    seg_hold(&w->e->sm, last, delta);
    if (delta < 0) note_empty(w, last);
  }
}

static void unlink_prepared(ls_writer *w, ls_txn *t) {
  for (ls_txn **pp = &w->prepared; *pp; pp = &(*pp)->next_prepared)
    if (*pp == t) { *pp = t->next_prepared; break; }
  t->next_prepared = NULL;
}

static int do_publish(ls_engine *e, void *arg) {
  ls_txn *t = arg;
  unlink_prepared(e->writer, t);
  install(e->writer, t);
  hold_segments(e->writer, t, -1);
  hand_off(e->writer);
  return LS_OK;
}

void writer_publish(ls_engine *e, ls_txn *t) { (void)writer_call(e, do_publish, t); }

/* Write one control record (ABORT) on its own and make it durable.  pin:
** the segments whose records it concerns depend on it. */
static int do_unprepare(ls_engine *e, void *arg) {
  ls_txn *t = arg;
  ls_writer *w = e->writer;
  unlink_prepared(w, t);
  if (atomic_load(&e->failed)) return ls_err(LS_READONLY, "%s", e->fail_msg);
  uint8_t rec[LS_REC_HDR + 16], range[16];
  ls_put64(range, t->first_seq);
  ls_put64(range + 8, t->last_seq);
  ls_rec_encode(rec, LS_REC_ABORT, 0, NULL, 0, range, 16);
  w->io_error = 0;
  group_start(w, sizeof rec);
  /* The reserve's last segments may serve: an ABORT record that can not
  ** be written would leave the transaction counting after a restart. */
  int rc = ensure_segment(w, SEG_FOR_CLEANER);
  if (!rc && sizeof rec > room(w)) rc = switch_segment(w, SEG_FOR_CLEANER);
  /* The segments holding t's records must keep this ABORT record readable
  ** as long as they are in use, and must themselves become unreadable (a
  ** free marker) before they let it go: a freed segment's records are
  ** read again by recovery until its slot is rewritten.  Pin before
  ** writing. */
  for (uint32_t i = 0; !rc && i < t->nrec; i++)
    if (!t->recs[i].dead && t->recs[i].word) {
      rc = seg_add_dep(&e->sm, loc_seg(t->recs[i].word), w->seg);
      seg_flags(&e->sm, loc_seg(t->recs[i].word), SEGF_MARK, 0);
    }
  if (!rc) {
    append(w, rec, sizeof rec, LS_RF_END, 0);
    rc = buf_write(w);
  }
  if (!rc) rc = sync_files(w, 1);
  if (rc) {
    char msg[256];
    snprintf(msg, sizeof msg, "the rollback of a prepared transaction could not be written: %s", ls_errmsg());
    eng_fail(e, msg);
  }
  /* t's records are dead either way: their segments may empty out. */
  hold_segments(w, t, -1);
  for (uint32_t i = 0; i < t->nrec; i++) t->recs[i].word = 0;
  t->ndirect = 0;
  hand_off(w);
  return rc;
}

int writer_unprepare(ls_engine *e, ls_txn *t) { return writer_call(e, do_unprepare, t); }

void writer_note_dead(ls_engine *e, uint64_t word) { note_empty(e->writer, loc_seg(word)); }

void writer_free_empty(ls_engine *e) {
  hand_off(e->writer);
  cleaner_reclaim_now(e);
}

/* Seal the active segment so that the separator can take it. */
static int do_seal(ls_engine *e, void *arg) {
  ls_writer *w = e->writer;
  LS_UNUSED(arg);
  if (w->seg != TXN_NONE) {
    int rc = buf_write(w);
    if (!rc) rc = sync_files(w, 1);
    if (rc) {
      eng_fail(e, ls_errmsg());
      return rc;
    }
    seal_active(w);
  }
  hand_off(w);
  return LS_OK;
}

int writer_seal(ls_engine *e) { return writer_call(e, do_seal, NULL); }

static void fail_list(ls_txn *list, int rc, const char *msg) {
  for (ls_txn *t = list, *next; t; t = next) {
    next = t->next;
    txn_finish(t, rc, msg);
  }
}

static void process_group(ls_writer *w, ls_txn *group) {
  ls_engine *e = w->e;
  if (atomic_load(&e->failed)) {
    fail_list(group, LS_READONLY, e->fail_msg);
    return;
  }
  ls_txn *acc = validate(w, group);
  if (!acc) return;
  uint64_t group_bytes = 0;
  for (ls_txn *t = acc; t; t = t->next) group_bytes += t->live_bytes;
  group_start(w, group_bytes);
  ls_txn *ok = NULL, **okp = &ok;
  int rc = LS_OK;
  w->io_error = 0;
  for (ls_txn *t = acc, *next; t; t = next) {
    next = t->next;
    t->next = NULL;
    rc = serialize(w, t);
    if (rc && !w->io_error) {
      /* No segment for it (the disk is full, or a new data file could not
      ** be made): this transaction fails alone.  A streamed prefix of it is
      ** dead without its COMMIT record. */
      t->ndirect = 0;
      txn_finish(t, rc, ls_errmsg());
      rc = LS_OK;
      continue;
    }
    if (rc) {                      /* a write failed: nothing is durable */
      char msg[256];
      snprintf(msg, sizeof msg, "%s", ls_errmsg());
      txn_finish(t, rc, msg);
      fail_list(next, rc, msg);
      break;
    }
    *okp = t;
    okp = &t->next;
  }
  if (!rc) rc = buf_write(w);
  if (!rc) rc = sync_files(w, 1);   /* with any earlier ones: all of the group */
  if (rc) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", ls_errmsg());
    eng_fail(e, msg);
    /* Retire the active segment: its tail is in an unknown state. */
    if (w->seg != TXN_NONE) { seg_seal(&e->sm, w->seg); w->seg = TXN_NONE; }
    fail_list(ok, rc, msg);
    return;
  }
  if (ok) atomic_fetch_add(&e->commit_groups, 1);
  for (ls_txn *t = ok; t; t = t->next) {
    if (t->mode == WRITE_COMMIT) {
      install(w, t);
    } else {
      /* Durable, not installed: its segments must stay until it is. */
      hold_segments(w, t, +1);
      t->next_prepared = w->prepared;
      w->prepared = t;
    }
  }
  hand_off(w);
  for (ls_txn *t = ok, *next; t; t = next) {
    next = t->next;
    txn_finish(t, LS_OK, NULL);
  }
}

/* ---- thread and public entry points ------------------------------------ */

static void *writer_main(void *arg) {
  ls_writer *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    if (w->calls) {
      writer_callreq *c = w->calls;
      w->calls = c->next;
      pthread_mutex_unlock(&w->lock);
      c->rc = c->fn(w->e, c->arg);
      if (c->rc) snprintf(c->msg, sizeof c->msg, "%s", ls_errmsg());
      sem_post(&c->done);
      pthread_mutex_lock(&w->lock);
      continue;
    }
    if (w->head) {
      ls_txn *group = w->head;
      w->head = w->tail = NULL;
      pthread_mutex_unlock(&w->lock);
      process_group(w, group);
      pthread_mutex_lock(&w->lock);
      continue;
    }
    if (w->stop) break;
    pthread_cond_wait(&w->cond, &w->lock);
  }
  pthread_mutex_unlock(&w->lock);
  ls_thread_cleanup();
  return NULL;
}

int writer_start(ls_engine *e) {
  ls_writer *w = calloc(1, sizeof *w);
  if (!w) return ls_err(LS_NOMEM, "writer: out of memory");
  w->e = e;
  w->seg = TXN_NONE;
  w->buf = ls_alloc_aligned(e->seg_size);
  if (!w->buf) { free(w); return ls_err(LS_NOMEM, "writer: out of memory"); }
  memset(w->buf, 0, e->seg_size);
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  e->writer = w;
  if (pthread_create(&w->thread, NULL, writer_main, w)) {
    writer_stop(e);
    return ls_err(LS_NOMEM, "writer: cannot start thread");
  }
  w->started = 1;
  return LS_OK;
}

void writer_stop(ls_engine *e) {
  ls_writer *w = e->writer;
  if (!w) return;
  if (w->started) {
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
  }
  /* A partly filled active segment stays as it is: recovery seals it. */
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
  free(w->buf);
  free(w->dbuf);
  free(w->grp);
  free(w->empties.v);
  free(w->sealed.v);
  free(w->direct.v);
  free(w->tsegs);
  free(w->ks.slots);
  free(w);
  e->writer = NULL;
}

int writer_commit(ls_engine *e, ls_txn *t, int mode) {
  ls_writer *w = e->writer;
  /* Flow control: when the cleaner falls behind, writers slow down
  ** smoothly instead of filling the disk or its memory. */
  uint64_t delay = cleaner_delay_us(e);
  atomic_store(&e->delay_now_us, delay);
  if (delay) {
    struct timespec ts = { (time_t)(delay / 1000000), (long)(delay % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
    atomic_fetch_add(&e->delay_us, delay);
  }
  t->mode = mode;
  t->next = NULL;
  t->rc = LS_OK;
  t->msg[0] = 0;
  pthread_mutex_lock(&w->lock);
  if (w->tail) w->tail->next = t; else w->head = t;
  w->tail = t;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  while (sem_wait(&t->done) && errno == EINTR) {}
  if (t->rc) return ls_err(t->rc, "%s", t->msg);
  return LS_OK;
}

int writer_call(ls_engine *e, int (*fn)(ls_engine *e, void *arg), void *arg) {
  ls_writer *w = e->writer;
  writer_callreq c = { .fn = fn, .arg = arg };
  sem_init(&c.done, 0, 0);
  pthread_mutex_lock(&w->lock);
  writer_callreq **pp = &w->calls;
  while (*pp) pp = &(*pp)->next;
  *pp = &c;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  while (sem_wait(&c.done) && errno == EINTR) {}
  sem_destroy(&c.done);
  if (c.rc) return ls_err(c.rc, "%s", c.msg);
  return LS_OK;
}
