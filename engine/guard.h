/*
** guard.h -- reader protection: nothing a reader may still be looking at
** is freed or reused under it.
**
** A reader brackets every access to index-derived state (a location read
** from an index, a table struct found in the catalog) with
** ls_guard_enter() / ls_guard_leave().  A thread that unpublishes such state
** (relocates index entries away from a segment, removes a table from the
** catalog) calls ls_guard_wait() afterwards: it returns once every reader
** that entered before the call has left, so the old state can be freed.
**
** Two phase counters: readers count themselves in the current phase; a
** waiter flips the phase and waits for the old phase's count to reach zero.
** Waits are serialised.  Entering and leaving are a few atomic operations;
** a reader never blocks.
*/
#ifndef LS_GUARD_H
#define LS_GUARD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct ls_guard {
  _Atomic uint64_t phase;          /* readers enter phase & 1 */
  _Atomic uint64_t count[2];       /* readers inside each phase */
  _Atomic int waiters;             /* a wait is blocked on the condition */
  pthread_mutex_t wait_lock;       /* serialises ls_guard_wait */
  pthread_mutex_t lock;            /* protects cond */
  pthread_cond_t cond;
} ls_guard;

void ls_guard_init(ls_guard *g);
void ls_guard_destroy(ls_guard *g);
/* Returns the token to pass to ls_guard_leave. */
unsigned ls_guard_enter(ls_guard *g);
void ls_guard_leave(ls_guard *g, unsigned token);
/* Wait until every reader that entered before this call has left. */
void ls_guard_wait(ls_guard *g);

#endif
