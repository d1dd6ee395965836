/*
** writer.c -- the write path: one writer at a time group-commits the
** transactions of every caller into the active (mixed) segment (writer.h;
** validation, install and the two-phase entry points are in commit.c).
**
** The writer is a role, held by one thread at a time (w->busy, w->owner):
** a committing caller that finds the writer idle and nothing queued takes
** it and runs its own commit (or call) on its own thread -- no hand-off,
** no wake-up of another thread, which for one connection committing
** statement by statement was most of a commit's time; otherwise it queues
** its request for the writer thread, which takes the role whenever it is
** free and something waits, and times the background syncs (N1).  Every
** rule below holds for whoever holds the role.
**
** A commit group is everything queued when the writer thread takes the
** role, or the one commit of a caller that took it.  For each group the
** writer
**   1. validates every transaction's observed versions (write conflicts),
**   2. serialises the surviving transactions' records into the open buffer,
**      assigning write sequences, switching segments when one fills,
**   3. writes the buffer(s) and fdatasyncs each file written (one sync per
**      file per group; the sync is issued after the write completed),
**   4. installs every record in its table's index and frees the old
**      locations' bytes in the segment accounting,
**   5. releases the callers.
**
** Rules of the write path (the crash argument is in FORMAT.md; asserts
** check them where they can be seen):
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
**       streaming needs no second copy of its bytes in memory.  Writes to
**       different segments reach the disk in any order when power fails,
**       so the CONT records outside the open buffer are synced before the
**       COMMIT record is appended to it (those in it precede it in its
**       write): a COMMIT record found at recovery means all of its
**       transaction is there.
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
**       only may go deeper, so that space can be freed on a full disk, and
**       the control record ending a prepared transaction (commit.c) deeper
**       still: an outcome that can not be written is left to chance.
**  (W9) A transaction that does not fit the rest of the active segment but
**       fits a fresh one goes into a fresh one when less than an eighth of
**       the active segment is left: then no segment's records need a COMMIT
**       record in the next, and the separator can adopt a segment of one
**       table whole (cleaner.c) instead of copying it.
** (W10) A mixed segment is sealed (its first header rewritten with its end)
**       only after the group that wrote its last buffer is durable; the
**       active segment is sealed when the engine closes.
** (W11) A decided transaction (ls_txn_prepare_decided) is streamed, and its
**       PREPARE record takes the place of the COMMIT record: durable, it
**       leaves the transaction in doubt, for the host's decision at the
**       next open.  Publishing it writes a COMMIT record naming its whole
**       sequence range (segments holding its records pinned to it, like
**       W2's) and installs it.  The record need not be durable first -- the
**       host's decision is, and commits the transaction at any open -- so
**       it becomes durable as a synchronous=normal group's records do (N1:
**       the next sync of the writer's files; the cleaner syncs them before
**       it frees a segment, so the PREPARE record's can not go first), and
**       only then is the decision no longer pending (the host may forget
**       it).  The segment of the PREPARE record is held with the others
**       while the transaction is prepared.
**
** Durability modes (ls_options.synchronous, ls_txn_synchronous; a group
** syncs as its strictest transaction asks).  W1's "durable" is full's;
** the rules below keep the crash argument of FORMAT.md true for the
** others.
**  (N1) synchronous=normal: a group's transactions are acknowledged once
**       written; their files join the pending set (segment.h) and are
**       synced by the writer at most sync_interval after the first
**       unsynced group, and at close.  Before the writer writes any buffer
**       other than the one it wrote last, it syncs: so, as in full mode,
**       only the open buffer's block is ever unsynced, each rewrite of it
**       extends the one before byte for byte, and a power cut leaves a
**       prefix of its records -- a prefix of the commits, each whole, and
**       a torn tail, not damage.  The cleaner syncs the pending set before
**       it frees a segment (reclaim.c), so no record dies on disk before
**       what replaced it is durable.
**  (N2) A normal group that seals a segment (W10 needs its data durable
**       first), writes group segments directly or streams a transaction
**       (its COMMIT record is installed, so the separator may copy its CONT
**       records as committed) syncs at its end, as in full mode.
**  (N3) synchronous=off: the group never syncs (not even W2's sync before
**       a COMMIT record); its files join the pending set for the next sync
**       of anyone.  Only a process crash is covered: the page cache keeps
**       every write, in order.
*/
#include "writer_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- buffer and segment handling ---------------------------------------- */

#ifndef NDEBUG
/* For asserts: s's flags, read under the segment manager's lock. */
static uint8_t seg_flags_now(ls_engine *e, uint32_t s) {
  pthread_mutex_lock(&e->sm.lock);
  uint8_t f = seg_get(&e->sm, s)->flags;
  pthread_mutex_unlock(&e->sm.lock);
  return f;
}
#endif

/* Start a new open buffer at offset off of the active segment. */
static void buf_open_at(ls_writer *w, uint32_t off) {
  w->buf_start = off;
  w->buf_len = LS_BUF_HDR;
  w->buf_nrec = 0;
  w->buf_written = 0;
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
int writer_sync_files(ls_writer *w, int final) {
  ls_engine *e = w->e;
  int r;
  if (w->nosync) {
    r = seg_pending_add(&e->sm, &w->syncs, &e->syncs);    /* N3 */
  } else {
    /* The group's files join the pending ones (N1, and a decided
    ** transaction's COMMIT record, W11): each file is synced once. */
    r = seg_pending_add(&e->sm, &w->syncs, &e->syncs);
    if (!r) r = seg_pending_sync(&e->sm, &e->syncs);
    if (!r) {
      w->deferred = 0;
      writer_decisions_durable(w);
    }
  }
  if (r) {
    /* W4: a failed sync is never retried: the files it covered left the
    ** set (and a pending-set failure is kept, segment.c). */
    assert(w->syncs.n == 0);
    w->io_error = 1;
    return ls_err_io(r, LS_CAUSE_SYNC, "fdatasync of a data file");
  }
  /* A write or sync failure elsewhere (the cleaner) fails this too. */
  if (atomic_load(&e->failed)) {
    w->io_error = 1;
    return cat_check_failed(e);
  }
  if (final) {
    if (w->seg != SEG_NONE) first_durable(e, w->seg);
    for (uint32_t i = 0; i < w->sealed.n; i++) first_durable(e, w->sealed.v[i]);
    for (uint32_t i = 0; i < w->direct.n; i++) first_durable(e, w->direct.v[i]);
  }
  return LS_OK;
}

/* Write the open buffer's unwritten part: from its first block to the end
** of its last block (rule W3).  The header is re-encoded first. */
int writer_buf_write(ls_writer *w) {
  ls_engine *e = w->e;
  if (w->seg == SEG_NONE || w->buf_len == w->buf_written || w->buf_nrec == 0) return LS_OK;
  if (w->deferred && (w->seg != w->last_seg || w->buf_start != w->last_start)) {
    /* N1: the buffer written last is durable before another one is written. */
    int ns = w->nosync;
    w->nosync = 0;
    int rc = writer_sync_files(w, 1);
    w->nosync = ns;
    if (rc) return rc;
  }
  ls_seg *d = seg_get(&e->sm, w->seg);
  ls_bufhdr h = {
    .kind = LS_KIND_MIXED, .flags = 0, .seg_seq = d->seq,
    .max_seq = atomic_load(&e->next_seq) - 1,
    .data_size = w->buf_len - LS_BUF_HDR, .nrecords = w->buf_nrec,
  };
  /* W5: the header records a sequence at least every record's in it. */
  assert(h.max_seq >= atomic_load_explicit(&d->max_seq, memory_order_relaxed));
  ls_bufhdr_encode(w->buf, &h);
  uint32_t len = (uint32_t)ls_align_up(w->buf_len, LS_BLOCK);
  int fd = seg_fd(&e->sm, w->seg);
  int r = e->io->m->write(e->io, fd, w->buf, len, seg_base(&e->sm, w->seg) + w->buf_start);
  if (r) {
    w->io_error = 1;
    return ls_err_io(r, LS_CAUSE_WRITE, "write of segment %u at offset %u", w->seg, w->buf_start);
  }
  atomic_fetch_add(&e->bytes_written, len);
  w->buf_written = w->buf_len;
  w->last_seg = w->seg;
  w->last_start = w->buf_start;
  d->used = w->buf_start + len;
  if (seg_sync_note(&w->syncs, fd)) {
    /* More files than slots in one group: sync what we have now. */
    int rc = writer_sync_files(w, 0);
    if (rc) return rc;
    seg_sync_note(&w->syncs, fd);
  }
  return LS_OK;
}

/* Segment s may have no live record left: the cleaner checks and frees
** it (the hint is cheap; the check is not). */
void writer_note_empty(ls_writer *w, uint32_t s) {
  if (atomic_load_explicit(&seg_get(&w->e->sm, s)->live_records, memory_order_relaxed) == 0)
    (void)seg_ids_push(&w->empties, s);   /* if lost: freed at the next open */
}

/* Seal the active segment (after its buffer was written); it stays in
** flight until its group installed (W6). */
static void seal_active(ls_writer *w) {
  ls_engine *e = w->e;
  if (w->seg == SEG_NONE) return;
  assert(!(seg_flags_now(e, w->seg) & SEGF_INFLIGHT));   /* W6: in flight once, from here */
  seg_flags(&e->sm, w->seg, SEGF_INFLIGHT, 0);
  seg_seal(&e->sm, w->seg);
  if (seg_ids_push(&w->sealed, w->seg)) seg_flags(&e->sm, w->seg, 0, SEGF_INFLIGHT);
  w->seg = SEG_NONE;
}

/* A segment for purpose, asking the cleaner for room when the reserve is
** reached (W8). */
static int alloc_segment(ls_writer *w, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *s) {
  ls_engine *e = w->e;
  /* W8: the cleaner is asked in the writer's role, by its holder (it
  ** never waits for the cleaner thread); only the control records of a transaction's
  ** end (commit.c, write_range_record) may take the cleaner's own
  ** reserve, and they go to the mixed segment. */
  assert(pthread_equal(pthread_self(), w->owner));
  assert(purpose != SEG_FOR_CLEANER || kind == LS_KIND_MIXED);
  int rc = seg_alloc(&e->sm, kind, table, group, purpose, s);
  if (rc == LS_FULL) rc = cleaner_alloc(e, kind, table, group, purpose, s);
  if (!rc) seg_ahead_kick(&e->sm);
  return rc;
}

/* Make sure an active segment with an open buffer exists. */
int writer_ensure_segment(ls_writer *w, int purpose) {
  ls_engine *e = w->e;
  if (w->seg != SEG_NONE) return LS_OK;
  uint32_t s;
  int rc = alloc_segment(w, LS_KIND_MIXED, 0, 0, purpose, &s);
  if (rc) return rc;
  w->seg = s;
  memset(w->buf, 0, e->seg_size);
  buf_open_at(w, 0);
  return LS_OK;
}

/* The active segment is full: write its buffer, seal it, start the next. */
int writer_switch_segment(ls_writer *w, int purpose) {
  int rc = writer_buf_write(w);
  if (rc) return rc;
  seal_active(w);
  return writer_ensure_segment(w, purpose);
}

/* At the start of a group of group_bytes: keep appending to the open
** buffer only if it then still fits one block; otherwise seal it and open
** the next buffer at the next 4 KiB boundary (W3). */
void writer_group_start(ls_writer *w, uint64_t group_bytes) {
  ls_engine *e = w->e;
  if (w->seg == SEG_NONE || w->buf_nrec == 0) return;
  if (w->buf_len <= LS_BLOCK && w->buf_len + group_bytes <= LS_BLOCK) return;
  uint32_t next = w->buf_start + (uint32_t)ls_align_up(w->buf_len, LS_BLOCK);
  memset(w->buf, 0, ls_align_up(w->buf_len, LS_BLOCK));
  if (next + LS_BUF_HDR + LS_REC_HDR > e->seg_size) {
    seal_active(w);
    return;
  }
  buf_open_at(w, next);
}

uint32_t writer_room(const ls_writer *w) {
  return w->e->seg_size - w->buf_start - w->buf_len;
}

/* Remember the record just sealed at word (image p, as it goes to disk) for
** the record cache: copied now, put in with the rest of the group before
** its committers are released (process_group; cache_batch).  Safe before
** it is durable: nothing else is ever written at that location in this
** incarnation of the segment, and no reader looks there before the install
** (cache.h) -- so a big group's records go in a piece at a time, each piece
** as soon as it reaches the batch limit (holding a million-row
** transaction's copies until its install cost a tenth of its load time). */
static void cache_written(ls_writer *w, uint64_t word, const uint8_t *p) {
  ls_engine *e = w->e;
  if (!e->cache) return;
  cache_batch_add(e->cache, &w->written, word, seg_seq_of(&e->sm, loc_seg(word)), p, loc_size(word));
  if (w->written.bytes >= cache_batch_limit(e->cache)) cache_batch_insert(e->cache, &w->written);
}

/* Append one encoded record (already holding type, table, key, value) and
** seal it with the next sequence.  The caller ensured it fits. */
uint64_t writer_append(ls_writer *w, const uint8_t *rec, uint32_t size, uint32_t flags, int tomb) {
  ls_engine *e = w->e;
  /* W2/W3: the caller made room; a record never straddles segments. */
  assert(w->seg != SEG_NONE && size <= writer_room(w));
  assert((flags & LS_RF_CONT) == 0 || (flags & LS_RF_END) == 0);
  uint8_t *p = w->buf + w->buf_len;
  memcpy(p, rec, size);
  uint64_t seq = atomic_fetch_add(&e->next_seq, 1);
  ls_seg *d = seg_get(&e->sm, w->seg);
  /* W5: assigned here, in write order: above every record of the segment. */
  assert(pthread_equal(pthread_self(), w->owner));
  assert(seq > atomic_load_explicit(&d->max_seq, memory_order_relaxed));
  ls_rec_seal(p, seq, flags, d->seed);
  seg_note_rec(d, w->buf_start + w->buf_len, seq);
  uint64_t word = loc_make(w->seg, w->buf_start + w->buf_len, size, tomb);
  w->buf_len += size;
  w->buf_nrec++;
  return word;
}

static int note_tseg(ls_writer *w, uint32_t s) {
  if (LS_GROW(w->tsegs, w->captsegs, w->ntsegs + 1, 16)) return ls_err(LS_NOMEM, "writer: out of memory");
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
  assert(h.max_seq >= atomic_load_explicit(&d->max_seq, memory_order_relaxed));   /* W5 */
  /* W7: one buffer of CONT records in a fresh group segment of its own. */
  assert(d->used == 0 && d->kind == LS_KIND_GROUP && nrec > 0 && len <= e->seg_size);
  ls_bufhdr_encode(w->dbuf, &h);
  uint32_t alen = (uint32_t)ls_align_up(len, LS_BLOCK);
  memset(w->dbuf + len, 0, alen - len);
  int fd = seg_fd(&e->sm, s);
  int r = e->io->m->write(e->io, fd, w->dbuf, alen, seg_base(&e->sm, s));
  if (r) {
    w->io_error = 1;
    return ls_err_io(r, LS_CAUSE_WRITE, "write of segment %u", s);
  }
  atomic_fetch_add(&e->bytes_written, alen);
  d->used = alen;
  seg_flags(&e->sm, s, SEGF_INFLIGHT, 0);
  seg_seal(&e->sm, s);
  int rc = seg_ids_push(&w->direct, s);     /* room made before it was taken */
  assert(!rc);
  if (!rc) rc = txn_add_direct(t, s);
  if (!rc) rc = note_tseg(w, s);
  if (rc) return ls_err(LS_NOMEM, "writer: out of memory");
  if (seg_sync_note(&w->syncs, fd)) {
    rc = writer_sync_files(w, 0);
    if (rc) return rc;
    seg_sync_note(&w->syncs, fd);
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
  if (LS_GROW(w->grp, w->capgrp, t->nrec, 64)) return LS_OK;   /* everything goes mixed */
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *tb = NULL;
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    w->grp[i] = UINT32_MAX;
    if (r->dead) continue;
    if (!tb || tb->id != r->table) tb = cat_table(e, r->table);
    if (!tb) continue;
    uint32_t grp = cat_group_of(r->hi, tb->groups), k = 0;
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
    if (gb[k].bytes < (uint64_t)cap * 3 / 4) continue;   /* W7 */
    assert(t->live_bytes >= gb[k].bytes);
    if (!w->dbuf) {
      w->dbuf = ls_alloc_aligned(e->seg_size);
      if (!w->dbuf) return LS_OK;
    }
    uint64_t left = gb[k].bytes;
    uint32_t s = SEG_NONE, len = 0, nrec = 0;
    for (uint32_t i = 0; i < t->nrec; i++) {
      txn_rec *r = &t->recs[i];
      if (w->grp[i] != k) continue;
      if (s != SEG_NONE && len + r->size > e->seg_size) {
        int rc = direct_write(w, t, s, len, nrec);
        if (rc) return rc;
        s = SEG_NONE;
      }
      if (s == SEG_NONE) {
        if (left < (uint64_t)cap * 3 / 4) break;  /* the tail goes mixed */
        /* Room to list it first: once direct_write marks it in flight it
        ** must be in w->direct, which clears the mark (W6); a failed push
        ** there left it marked, its space lost until the next open. */
        if (LS_GROW(w->direct.v, w->direct.cap, w->direct.n + 1, 16)) return ls_err(LS_NOMEM, "writer: out of memory");
        int rc = alloc_segment(w, LS_KIND_GROUP, gb[k].table, gb[k].group, purpose, &s);
        if (rc) return rc;
        len = LS_BUF_HDR;
        nrec = 0;
      }
      ls_seg *d = seg_get(&e->sm, s);
      uint8_t *p = w->dbuf + len;
      memcpy(p, txn_rec_ptr(t, r), r->size);
      uint64_t seq = atomic_fetch_add(&e->next_seq, 1);
      assert(seq > atomic_load_explicit(&d->max_seq, memory_order_relaxed));   /* W5 */
      ls_rec_seal(p, seq, LS_RF_CONT, d->seed);
      seg_note_rec(d, len, seq);
      r->word = loc_make(s, len, r->size, r->type == LS_REC_DELETE);
      if (r->type == LS_REC_PUT) cache_written(w, r->word, p);
      len += r->size;
      nrec++;
      left -= r->size;
    }
    if (s != SEG_NONE) {
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
  int rc = writer_ensure_segment(w, purpose);
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
  /* A decided transaction is always streamed: its records count only
  ** with a COMMIT record, written at publish. */
  int multi = t->decision || t->ndirect > 0 || rest > writer_room(w);
  if (multi && !t->ndirect && rest <= e->seg_size - LS_BUF_HDR && writer_room(w) < e->seg_size / 8) {
    /* W9: a fresh segment holds it whole. */
    assert(writer_room(w) < e->seg_size / 8 && rest <= e->seg_size - LS_BUF_HDR);
    rc = writer_switch_segment(w, purpose);
    if (rc) return rc;
    multi = rest > writer_room(w);
  }
  uint32_t last = TXN_NONE;
  for (uint32_t i = 0; i < t->nrec; i++)
    if (!t->recs[i].dead && !t->recs[i].word) last = i;
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    if (r->dead || r->word) continue;
    if (r->size > writer_room(w)) {
      rc = writer_switch_segment(w, purpose);   /* only reachable when multi */
      if (rc) return rc;
    }
    if (multi && (!w->ntsegs || w->tsegs[w->ntsegs - 1] != w->seg)) {
      rc = note_tseg(w, w->seg);
      if (rc) return rc;
    }
    uint32_t flags = multi ? LS_RF_CONT : (i == last ? LS_RF_END : 0);
    assert(flags == LS_RF_CONT || !multi);   /* W2: streamed records are all CONT */
    r->word = writer_append(w, txn_rec_ptr(t, r), r->size, flags, r->type == LS_REC_DELETE);
    if (r->type == LS_REC_PUT) cache_written(w, r->word, w->buf + w->buf_len - r->size);
  }
  if (multi) {
    w->structural = 1;             /* N2 */
    /* A COMMIT record naming the first sequence; for a decided one a
    ** PREPARE record naming it and the decision (W11). */
    uint8_t rec[LS_REC_HDR + 16];
    uint8_t val[16];
    uint32_t vlen = t->decision ? 16 : 8, size = ls_rec_size(0, vlen);
    ls_put64(val, t->first_seq);
    ls_put64(val + 8, t->decision);
    ls_rec_encode(rec, t->decision ? LS_REC_PREPARE : LS_REC_COMMIT, 0, NULL, 0, val, vlen);
    if (size > writer_room(w)) {
      rc = writer_switch_segment(w, purpose);
      if (rc) return rc;
    }
    /* W2: every CONT record written so far (direct segments, segments
    ** switched away from) is durable before the COMMIT record can be.
    ** Those in the open buffer reach the disk in the COMMIT record's own
    ** write, before it: recovery reads a buffer's records in order and
    ** stops at the first a crash cut, so it never sees the COMMIT record
    ** without them.  With none written elsewhere there is nothing to sync
    ** (the pending set of earlier groups is not W2's: N1 keeps its own
    ** rule, and syncing it here cost a decided transaction the sync its
    ** deferred COMMIT record saved). */
    if (w->syncs.n) rc = writer_sync_files(w, 0);
    if (rc) return rc;
    /* Every segment holding CONT records of t needs the COMMIT record in
    ** this one.  Pin first: if that fails, no COMMIT is written. */
    for (uint32_t i = 0; i < w->ntsegs; i++) {
      rc = seg_add_dep(&e->sm, w->tsegs[i], w->seg);
      if (rc) return rc;
    }
    t->prep_seg = w->seg;
    writer_append(w, rec, size, LS_RF_END, 0);
  }
  t->last_seq = atomic_load(&e->next_seq) - 1;
  return LS_OK;
}

/* Give the cleaner what this group left it (W6): the segments sealed
** during it, now installed, and those that may be empty. */
void writer_hand_off(ls_writer *w) {
  ls_engine *e = w->e;
  /* (W10) Everything written so far is durable: the mixed segments sealed
  ** meanwhile get their end in their first header (FORMAT.md, "Sealing").
  ** The seal becomes durable whenever its file is synced next (it is not
  ** among the writes W1 waits for); until then the segment only counts as
  ** unsealed.  A failed write fails the engine (W4), though the group,
  ** durable already, is acknowledged. */
  for (uint32_t i = 0; i < w->sealed.n && !atomic_load(&e->failed); i++) {
    ls_seg *d = seg_get(&e->sm, w->sealed.v[i]);
    int fd;
    if (d->used >= LS_BUF_HDR && seg_seal_header(&e->sm, w->sealed.v[i], d->seq, d->used, &fd))
      cat_fail(e, ls_errmsg());
  }
  for (uint32_t i = 0; i < w->sealed.n; i++) {
    /* W6: in flight from its seal until now, its group installed. */
    assert(seg_flags_now(e, w->sealed.v[i]) & SEGF_INFLIGHT);
    assert(w->sealed.v[i] != w->seg);
    seg_flags(&e->sm, w->sealed.v[i], 0, SEGF_INFLIGHT);
  }
  for (uint32_t i = 0; i < w->direct.n; i++) {
    assert(seg_flags_now(e, w->direct.v[i]) & SEGF_INFLIGHT);   /* W6 */
    seg_flags(&e->sm, w->direct.v[i], 0, SEGF_INFLIGHT);
    writer_note_empty(w, w->direct.v[i]);
  }
  for (uint32_t i = 0; i < w->sealed.n; i++) writer_note_empty(w, w->sealed.v[i]);
  cleaner_mixed_ready(e, w->sealed.v, w->sealed.n);
  cleaner_note_empty(e, w->empties.v, w->empties.n);
  w->sealed.n = w->direct.n = w->empties.n = 0;
}

void writer_free_empty(ls_engine *e) {
  writer_hand_off(e->writer);
  cleaner_reclaim_now(e);
}

/* Seal the active segment so that the separator can take it. */
static int do_seal(ls_engine *e, void *arg) {
  ls_writer *w = e->writer;
  LS_UNUSED(arg);
  /* W4: after a failed write or sync, nothing more is written (the open
  ** buffer may hold what that write failed to put on disk). */
  if (atomic_load(&e->failed)) return cat_check_failed(e);
  if (w->seg != SEG_NONE) {
    int rc = writer_buf_write(w);
    if (!rc) rc = writer_sync_files(w, 1);
    if (rc) {
      cat_fail(e, ls_errmsg());
      return rc;
    }
    seal_active(w);
  }
  writer_hand_off(w);
  return LS_OK;
}

int writer_seal(ls_engine *e) { return writer_call(e, do_seal, NULL); }

static void fail_list(commit_req *list, int rc, const ls_error *err) {
  for (commit_req *q = list, *next; q; q = next) {
    next = q->next;
    writer_finish(q, rc, err);
  }
}

/* The end of a group: sync as its strictest transaction asks (N1-N3). */
int writer_group_sync(ls_writer *w, int mode) {
  ls_engine *e = w->e;
  if (mode == LS_SYNC_NORMAL && !w->sealed.n && !w->direct.n && !w->structural) {
    int r = seg_pending_add(&e->sm, &w->syncs, &e->syncs);
    if (r) {
      w->io_error = 1;
      return ls_err_io(r, LS_CAUSE_SYNC, "fdatasync of a data file");
    }
    uint64_t now = ls_now_ns();
    if (!w->deferred) {
      w->deferred = 1;
      w->sync_due = now + atomic_load(&e->sync_interval_ns);
    }
    if (now < w->sync_due) return LS_OK;
  }
  return writer_sync_files(w, 1);
}

/* N1: the background sync of normal groups (by the writer thread, between
** groups; at close).  A failure fails the engine (W4). */
static void deferred_sync(ls_writer *w) {
  ls_engine *e = w->e;
  w->nosync = 0;
  if (!atomic_load(&e->failed) && writer_sync_files(w, 1)) cat_fail(e, ls_errmsg());
  w->deferred = 0;
}

static void process_group(ls_writer *w, commit_req *group) {
  ls_engine *e = w->e;
  ls_error err;
  if (atomic_load(&e->failed)) {
    cat_check_failed(e);
    ls_err_save(&err);
    fail_list(group, LS_READONLY, &err);
    return;
  }
  commit_req *acc = writer_validate(w, group);
  if (!acc) return;
  uint64_t group_bytes = 0;
  int mode = LS_SYNC_OFF;          /* the strictest asked for */
  for (commit_req *q = acc; q; q = q->next) {
    group_bytes += q->t->live_bytes;
    int m = q->t->sync_mode ? q->t->sync_mode : atomic_load(&e->sync_mode);
    if (m < mode) mode = m;
  }
  w->nosync = mode == LS_SYNC_OFF;
  w->structural = 0;
  writer_group_start(w, group_bytes);
  commit_req *ok = NULL, **okp = &ok;
  int rc = LS_OK;
  w->io_error = 0;
  for (commit_req *q = acc, *next; q; q = next) {
    next = q->next;
    q->next = NULL;
    rc = serialize(w, q->t);
    ls_err_save(&err);
    if (rc && !w->io_error) {
      /* No segment for it (the disk is full, or a new data file could not
      ** be made): this transaction fails alone.  A streamed prefix of it is
      ** dead without its COMMIT record. */
      q->t->ndirect = 0;
      writer_finish(q, rc, &err);
      rc = LS_OK;
      continue;
    }
    if (rc) {                      /* a write failed: nothing is durable */
      writer_finish(q, rc, &err);
      fail_list(next, rc, &err);
      break;
    }
    *okp = q;
    okp = &q->next;
  }
  if (!rc) rc = writer_buf_write(w);
  if (!rc) rc = writer_group_sync(w, mode);       /* with any earlier ones: all of the group */
  w->nosync = 0;
  if (rc) {
    ls_err_save(&err);
    cat_fail(e, err.msg);          /* (W4) */
    assert(atomic_load(&e->failed));   /* W4: every later commit gets LS_READONLY */
    /* Retire the active segment: its tail is in an unknown state. */
    if (w->seg != SEG_NONE) { seg_seal(&e->sm, w->seg); w->seg = SEG_NONE; }
    fail_list(ok, rc, &err);
    cache_batch_discard(&w->written);
    return;
  }
  /* W4: nothing of a group whose write or sync failed is acknowledged
  ** (a failure that reached no transaction would be swallowed). */
  assert(!w->io_error);
  if (ok) atomic_fetch_add(&e->commit_groups, 1);
  /* The group's records go into the cache before the install makes them
  ** visible (so no reader can have put them in first) and before the
  ** committers return (read-your-writes hit).  A transaction that failed
  ** alone may leave records there too, at locations no index word names. */
  if (e->cache) cache_batch_insert(e->cache, &w->written);
  for (commit_req *q = ok; q; q = q->next) {
    if (q->mode == WRITE_COMMIT) {
      writer_install(w, q->t);     /* (W1): durable, now installed */
    } else {
      /* Durable, not installed: its segments must stay until it is. */
      writer_hold_segments(w, q->t, +1);
      q->t->next_prepared = w->prepared;
      w->prepared = q->t;
      atomic_fetch_add(&w->nprepared, 1);
    }
  }
  writer_hand_off(w);
  for (commit_req *q = ok, *next; q; q = next) {
    next = q->next;
    writer_finish(q, LS_OK, NULL);
  }
}

/* ---- thread and public entry points ------------------------------------ */

/* Take the writer's role (w->lock held, and released here). */
static void writer_take(ls_writer *w) {
  assert(!w->busy);
  w->busy = 1;
  w->owner = pthread_self();
  pthread_mutex_unlock(&w->lock);
}

/* Give it back (returns with w->lock held). */
static void writer_give(ls_writer *w) {
  pthread_mutex_lock(&w->lock);
  w->busy = 0;
}

int writer_inline(ls_writer *w, commit_req *q, writer_callreq *c) {
  pthread_mutex_lock(&w->lock);
  /* Queued work goes first (in order), and so does a stop. */
  if (w->busy || w->head || w->calls || w->stop || !w->started) {
    pthread_mutex_unlock(&w->lock);
    return 0;
  }
  int was_deferred = w->deferred;
  writer_take(w);
  if (q) {
    q->next = NULL;
    process_group(w, q);           /* posts q->done: nobody waits on it */
  } else {
    c->rc = c->fn(w->e, c->arg);
    if (c->rc) ls_err_save(&c->err);
  }
  writer_give(w);
  /* Wake the thread only for what it must do now: work queued meanwhile,
  ** or a background sync (N1) to time that this group started. */
  if (w->head || w->calls || (w->deferred && !was_deferred)) pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  return 1;
}

static void *writer_main(void *arg) {
  ls_writer *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    if (w->busy) {                 /* a caller holds the role */
      pthread_cond_wait(&w->cond, &w->lock);
      continue;
    }
    if (w->calls) {
      writer_callreq *c = w->calls;
      w->calls = c->next;
      writer_take(w);
      c->rc = c->fn(w->e, c->arg);
      if (c->rc) ls_err_save(&c->err);
      sem_post(&c->done);
      writer_give(w);
      continue;
    }
    if (w->head) {
      commit_req *group = w->head;
      w->head = w->tail = NULL;
      writer_take(w);
      process_group(w, group);
      writer_give(w);
      continue;
    }
    if (w->deferred && ls_now_ns() >= w->sync_due) {
      writer_take(w);
      deferred_sync(w);
      writer_give(w);
      continue;
    }
    if (w->stop) break;
    if (w->deferred) {
      struct timespec ts = { (time_t)(w->sync_due / 1000000000u), (long)(w->sync_due % 1000000000u) };
      pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    } else {
      pthread_cond_wait(&w->cond, &w->lock);
    }
  }
  pthread_mutex_unlock(&w->lock);
  ls_thread_cleanup();
  return NULL;
}

int writer_start(ls_engine *e) {
  ls_writer *w = calloc(1, sizeof *w);
  if (!w) return ls_err(LS_NOMEM, "writer: out of memory");
  w->e = e;
  w->seg = SEG_NONE;
  w->buf = ls_alloc_aligned(e->seg_size);
  if (!w->buf) { free(w); return ls_err(LS_NOMEM, "writer: out of memory"); }
  memset(w->buf, 0, e->seg_size);
  pthread_mutex_init(&w->lock, NULL);
  pthread_condattr_t ca;          /* sync_due is on the monotonic clock */
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &ca);
  pthread_condattr_destroy(&ca);
  w->last_seg = SEG_NONE;
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
  /* N1, N3: what normal and off groups wrote is synced at close, before
  ** the seal (W10). */
  if (w->started) deferred_sync(w);
  /* W10: the active segment, durable up to its end, is sealed; if the
  ** engine failed, the next open's recovery finds where it ends. */
  if (w->seg != SEG_NONE && !atomic_load(&e->failed)) {
    ls_seg *d = seg_get(&e->sm, w->seg);
    int fd;
    if (d->used >= LS_BUF_HDR && (w->buf_nrec == 0 || w->buf_written == w->buf_len) &&
        seg_seal_header(&e->sm, w->seg, d->seq, d->used, &fd) == LS_OK)
      (void)seg_sync(&e->sm, fd, 0);
  }
  cache_batch_discard(&w->written);   /* empty: process_group puts its own in */
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
  free(w->decisions);
  free(w->settling);
  free(w);
  e->writer = NULL;
}

int writer_call(ls_engine *e, int (*fn)(ls_engine *e, void *arg), void *arg) {
  ls_writer *w = e->writer;
  writer_callreq c = { .fn = fn, .arg = arg };
  sem_init(&c.done, 0, 0);
  if (writer_inline(w, NULL, &c)) {
    sem_destroy(&c.done);
    return c.rc ? ls_err_restore(c.rc, &c.err) : LS_OK;
  }
  pthread_mutex_lock(&w->lock);
  writer_callreq **pp = &w->calls;
  while (*pp) pp = &(*pp)->next;
  *pp = &c;
  atomic_fetch_add(&e->writer_handoffs, 1);
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  while (sem_wait(&c.done) && errno == EINTR) {}
  sem_destroy(&c.done);
  if (c.rc) return ls_err_restore(c.rc, &c.err);
  return LS_OK;
}
