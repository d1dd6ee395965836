/*
** writer.h -- the write path: one writer at a time group-commits the
** transactions of every caller (writer.c has the rules W1-W11), and runs
** the calls that must be ordered with every commit.  The writer is a role:
** its thread holds it, or a committing caller while the writer is idle.  The public entry points of a
** transaction's end (ls_txn_commit, _prepare, _publish, _unprepare,
** _free) are in commit.c.
**
** Layer: cleaner -> writer -> engine (engine/README.md).  Calls: cleaner,
** read, txn, catalog, segment, format, io, index, guard.
*/
#ifndef LS_WRITER_H
#define LS_WRITER_H

#include "catalog.h"

/* Start / stop the writer thread (engine.c): it runs what is queued while
** a caller holds the role, and the background syncs (N1). */
int writer_start(ls_engine *e);
void writer_stop(ls_engine *e);

/* Run fn(e, arg) in the writer's role between commit groups, so that it
** is ordered with every commit (catalog changes: drop, truncate; the
** consistency check).  Blocks; returns fn's result with its error. */
int writer_call(ls_engine *e, int (*fn)(ls_engine *e, void *arg), void *arg);

/* Seal the active segment and hand it to the separator (ls_flush). */
int writer_seal(ls_engine *e);

/* In the writer's role (inside writer_call): note that the record at word
** is dead, so that its segment is freed if it is sealed and now empty;
** then writer_free_empty() frees the noted segments once readers drained.
** (writer_note_dead's e is an ls_engine: it is cat_drop's callback.) */
void writer_note_dead(void *e, uint64_t word);
void writer_free_empty(ls_engine *e);

/* Keep decision id pending (a transaction recovery found in doubt and
** committed on the host's word: its PREPARE record still decides, W11). */
int writer_decision_keep(ls_engine *e, uint64_t id);

#endif
