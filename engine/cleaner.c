/*
** cleaner.c -- space reclamation: the separator, compaction, freeing
** (cleaner.h; the module's files are listed in cleaner_int.h).  This file:
** the hand-offs, the background thread and its controller, the entry
** points, and the rules.
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
** in the background, in the writer's role when a commit needs space
** (cleaner_alloc), on a caller's thread for flush and compact.  The
** lock is taken with no other engine lock held, and while holding it the
** cleaner never waits for the writer, so neither can deadlock.
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
**  (C3) Tombstones are dropped only by the rule FORMAT.md states
**       ("Cleaning: Tombstones"), its one statement.  Here it reads: a
**       live tombstone of sequence s goes if every other segment's
**       dead_floor and stale_floor (segment.h) and the smallest put
**       sequence still in a buffer are above s; its own segment gets a
**       durable free marker before the slot is reused.  The floors are read
**       after the tombstone was seen live (under the table lock), so every
**       older version had died and lowered its segment's floor before.
**  (C4) Some free segments are reserved for the cleaner (segment.h), so it
**       can always write the copies that free space.
*/
#include "cleaner_int.h"

#include <stdio.h>
#include <stdlib.h>

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
    if (seg_fifo_push(&c->mixed, (seg_ref){ segs[i], seg_seq_of(&e->sm, segs[i]) }) == LS_OK)
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
  for (uint32_t i = 0; i < n; i++) (void)seg_fifo_push(&c->settle, (seg_ref){ segs[i], seg_seq_of(&e->sm, segs[i]) });
  wake(c);
  pthread_mutex_unlock(&c->qlock);
}

/* ---- the controller ----------------------------------------------------------- */

/* Is space short enough to compact?  Bounded disks: when the free segments
** (and those more files would give) fall near the user reserve; unbounded
** ones: when the segments in use hold more than space_target times the
** live bytes (and more than 64 segments: tiny stores are left alone), or
** when the file system had no room for the last growth step and the free
** segments are near the user reserve. */
int cl_want_compaction(ls_cleaner *c, int *urgent) {
  ls_engine *e = c->e;
  ls_segmgr *m = &e->sm;
  uint32_t total = seg_count(m), nfree = seg_nfree(m);
  *urgent = 0;
  if (e->disk_size) {
    uint64_t all = (uint64_t)m->max_files * m->segs_per_file, avail = seg_headroom(m);
    uint64_t low = m->reserve_clean + m->reserve_delete + 2 + all / 128;
    *urgent = avail < m->reserve_clean + m->reserve_delete + 2;
    return avail < low;
  }
  uint64_t live = cat_live_bytes(e);
  uint64_t used = (uint64_t)(total - nfree) * e->seg_size;
  if (atomic_load(&m->grow_failed)) {
    /* Holes need room the file system does not have: zeroed ones count. */
    pthread_mutex_lock(&m->lock);
    uint32_t reserve = m->reserve_clean + m->reserve_delete, zeroed = m->free.len;
    pthread_mutex_unlock(&m->lock);
    *urgent = zeroed <= reserve;
    if (zeroed < reserve + 2 && used > live) return 1;
  }
  return total - nfree > 64 && used * 1000 > (uint64_t)atomic_load(&e->space_target) * live;
}

/* Compact while space is short and steps free segments.  Returns the
** segments freed. */
static uint64_t compact_round(ls_cleaner *c, int max_steps) {
  ls_engine *e = c->e;
  uint64_t freed = 0;
  for (int i = 0; i < max_steps && !atomic_load(&e->failed); i++) {
    int urgent;
    if (!cl_want_compaction(c, &urgent)) break;
    uint32_t gs = cl_pick_set(c, e->policy), taken = 0;
    if (!gs) break;
    uint64_t written = atomic_load(&e->cleaner_segments);
    int rc = cl_compact_step(c, gs, e->policy, 0, &taken);
    if (!rc && urgent) rc = cl_flush_set(c, gs);
    uint64_t f = cl_reclaim(c);
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
  return n >= SETTLE_BATCH || (n && cl_want_compaction(c, &urgent));
}

static void background_round(ls_cleaner *c) {
  ls_engine *e = c->e;
  uint64_t progress = cl_reclaim(c);
  if (settle_due(c)) cl_settle_all(c);
  uint32_t done = 0;
  int rc = cl_separate(c, SEP_BATCH, &done);
  progress += done;
  if (!rc) cl_flush_aged(c);
  progress += cl_reclaim(c);
  int urgent;
  if (cl_want_compaction(c, &urgent)) {
    /* Harder as space runs out and as each freed segment costs more. */
    int steps = urgent ? 64 : 4 + (int)(4 * c->ema);
    progress += compact_round(c, steps);
    if (cl_want_compaction(c, &urgent)) {
      /* Still short: the output buffers' inputs are freed once written. */
      cl_flush_all(c, 0);
      progress += cl_reclaim(c);
    }
  }
  /* Space nobody needs soon goes back to the file system. */
  seg_punch_excess(&e->sm);
  if (seg_sync_failed(&e->sm)) cat_fail(e, "writing free markers before punching holes failed");
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
  ls_error full;                   /* seg_alloc's LS_FULL */
  ls_err_save(&full);
  pthread_mutex_lock(&c->lock);
  for (int iter = 0; iter < 64 && !seg_can_alloc(&e->sm, purpose) && !atomic_load(&e->failed); iter++) {
    if (seg_npunched(&e->sm) && seg_unpunch(&e->sm) == LS_OK) continue;   /* a hole, zeroed */
    cl_settle_all(c);                    /* unpins mixed segments */
    uint64_t freed = cl_reclaim(c);
    if (seg_can_alloc(&e->sm, purpose)) break;
    uint32_t done = 0;
    cl_separate(c, UINT32_MAX, &done);
    cl_flush_all(c, 0);
    freed += cl_reclaim(c);
    if (seg_can_alloc(&e->sm, purpose)) break;
    uint32_t gs = cl_pick_set(c, e->policy), taken = 0;
    if (gs) {
      cl_compact_step(c, gs, e->policy, 0, &taken);
      cl_flush_set(c, gs);
      freed += cl_reclaim(c);
    }
    if (!freed && !done && !taken) {
      /* Old versions kept for snapshots are in the way: those snapshots
      ** expire (snapshot.h, bounds), and the segments they retained can go. */
      if (!snap_expire_all(&e->snaps)) break;
    }
  }
  /* Taken before the lock goes: the background cleaner's own copies can
  ** not use up the room first. */
  int rc = seg_can_alloc(&e->sm, purpose) ? seg_alloc(&e->sm, kind, table, group, purpose, id) : LS_FULL;
  pthread_mutex_unlock(&c->lock);
  if (atomic_load(&e->failed)) return cat_check_failed(e);
  return rc == LS_FULL ? ls_err_restore(LS_FULL, &full) : rc;
}

void cleaner_reclaim_now(ls_engine *e) {
  ls_cleaner *c = e->cleaner;
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  cl_reclaim(c);
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

int cleaner_flush(ls_engine *e, uint64_t *freed) {
  ls_cleaner *c = e->cleaner;
  pthread_mutex_lock(&c->lock);
  uint64_t before = atomic_load(&e->segments_freed);
  uint32_t done;
  cl_settle_all(c);
  int rc = cl_separate(c, UINT32_MAX, &done);
  if (!rc) rc = cl_flush_all(c, 0);
  cl_reclaim(c);
  *freed = atomic_load(&e->segments_freed) - before;
  pthread_mutex_unlock(&c->lock);
  return rc;
}

int cleaner_compact(ls_engine *e, const uint32_t *sets, uint32_t n, uint64_t before, uint64_t *freed) {
  ls_cleaner *c = e->cleaner;
  int rc = LS_OK;
  pthread_mutex_lock(&c->lock);
  for (uint32_t i = 0; !rc && i < n; i++) {
    for (int tombs = 0; tombs < 2 && !rc; tombs++) {
      uint32_t taken;
      uint64_t net;
      uint64_t dropped;
      do {
        uint64_t w0 = atomic_load(&e->cleaner_segments), f0 = atomic_load(&e->segments_freed);
        uint64_t d0 = atomic_load(&e->tombstones_dropped);
        rc = cl_compact_step(c, sets[i], e->policy, tombs, &taken);
        if (!rc) rc = cl_flush_set(c, sets[i]);
        cl_reclaim(c);
        /* A step that frees no more than it writes ends it (the estimate
        ** can be wrong; never loop on it); in the tombstone pass, so does a
        ** step that drops no tombstone either (a snapshot may keep every
        ** tombstone and old version it takes: it would take them forever). */
        uint64_t fr = atomic_load(&e->segments_freed) - f0, wr = atomic_load(&e->cleaner_segments) - w0;
        net = fr > wr ? fr - wr : 0;
        dropped = atomic_load(&e->tombstones_dropped) - d0;
      } while (!rc && taken && (net || (tombs && dropped)));
    }
  }
  cl_reclaim(c);
  seg_punch_excess(&e->sm);
  if (seg_sync_failed(&e->sm)) {
    cat_fail(e, "writing free markers before punching holes failed");
    if (!rc) rc = cat_check_failed(e);
  }
  *freed = atomic_load(&e->segments_freed) - before;
  pthread_mutex_unlock(&c->lock);
  return rc;
}

int ls_clean_step(ls_engine *e, int what, uint64_t *count) {
  ls_cleaner *c = e->cleaner;
  int rc = LS_OK;
  uint64_t n = 0;
  pthread_mutex_lock(&c->lock);
  switch (what) {
  case LS_CLEAN_RECLAIM: n = cl_reclaim(c); break;
  case LS_CLEAN_SETTLE: rc = cl_settle_all(c); break;
  case LS_CLEAN_SEPARATE: { uint32_t d; rc = cl_separate(c, 1, &d); n = d; break; }
  case LS_CLEAN_FLUSH: rc = cl_flush_all(c, 0); break;
  case LS_CLEAN_COMPACT: {
    uint32_t gs = cl_pick_set(c, e->policy), taken = 0;
    if (gs) rc = cl_compact_step(c, gs, e->policy, 0, &taken);
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
  if (!atomic_load(&e->failed) && c->started) {
    /* A clean close finishes what the background thread would have done
    ** next, so that its timing does not decide whether the close writes a
    ** checkpoint (checkpoint.c K1: nothing pinned, nothing in flight):
    ** settle what waits for a batch (it pins the segments holding the
    ** COMMIT records), separate the mixed segments (those with CONT
    ** records depend on others) and write the copies out. */
    pthread_mutex_lock(&c->lock);
    uint32_t done = 0;
    int rc = cl_settle_all(c);
    if (!rc) rc = cl_separate(c, UINT32_MAX, &done);
    if (!rc) cl_flush_all(c, 0);
    cl_reclaim(c);
    pthread_mutex_unlock(&c->lock);
  } else if (!atomic_load(&e->failed) && c->img && c->sorted && c->stage) {
    /* Leave the copies made so far on disk: the next open need not
    ** separate their mixed segments again. */
    pthread_mutex_lock(&c->lock);
    cl_settle_all(c);
    cl_flush_all(c, 0);
    cl_reclaim(c);
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
