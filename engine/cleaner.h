/*
** cleaner.h -- space reclamation: the separator, compaction, freeing,
** settling (cleaner.c has the rules C1-C4; cleaner_int.h the module's
** files).
**
** Layer: read -> cleaner -> writer (engine/README.md).  Calls: read,
** catalog, segment, format, io, index, guard.  Never the writer: the
** writer hands it segments, and the engine layer (admin.c) seals the
** writer's active segment before it asks for a flush.
*/
#ifndef LS_CLEANER_H
#define LS_CLEANER_H

#include "catalog.h"

/* Start cleaning (a thread unless manual_cleaning); mixed, settle and
** empties are what recovery left for it. */
int cleaner_start(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties);
/* Write what the relocation buffers hold (unless failed) and stop. */
void cleaner_stop(ls_engine *e);
void cleaner_kick(ls_engine *e);

/* Hand-offs from the writer (after the group that wrote them installed):
** sealed mixed segments for the separator, segments that may have no live
** record left, and segments written directly for one group whose buffer
** can be settled (their CONT records are committed). */
void cleaner_mixed_ready(ls_engine *e, const uint32_t *segs, uint32_t n);
void cleaner_note_empty(ls_engine *e, const uint32_t *segs, uint32_t n);
void cleaner_settle(ls_engine *e, const uint32_t *segs, uint32_t n);

/* seg_alloc for a writer that found no segment: run the cleaner now, on
** the calling thread, until an allocation for purpose can succeed or
** nothing more can be reclaimed, and allocate under the cleaner's lock.
** LS_OK, LS_FULL or an error.  The caller holds no engine lock. */
int cleaner_alloc(ls_engine *e, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *id);
/* Free the noted empty segments now (drop, truncate). */
void cleaner_reclaim_now(ls_engine *e);

/* ls_flush's part: separate every sealed mixed segment, write every
** buffer, free what emptied.  *freed: segments freed meanwhile. */
int cleaner_flush(ls_engine *e, uint64_t *freed);
/* ls_compact's part: compact the n group sets until no step frees a
** segment, then drop the tombstones that can go.  *freed: segments freed
** since the counter stood at before. */
int cleaner_compact(ls_engine *e, const uint32_t *sets, uint32_t n, uint64_t before, uint64_t *freed);

/* Microseconds a committing writer should wait (flow control). */
uint64_t cleaner_delay_us(ls_engine *e);
/* Relocation buffers holding records. */
uint32_t cleaner_buffers_in_use(ls_engine *e);

/* The score a compaction candidate gets under policy (higher is taken
** first; compact.c).  Exposed for tests. */
double cleaner_score(int policy, double u, double u0, uint64_t now, uint64_t born, uint64_t youngest);
/* Keep the cleaner still (ls_check compares indexes and accounting). */
void cleaner_lock(ls_engine *e);
void cleaner_unlock(ls_engine *e);

#endif
