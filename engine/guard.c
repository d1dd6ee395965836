/*
** guard.c -- reader phases (see guard.h).
**
** Why the recheck in ls_guard_enter: a reader reads the phase p, then is
** delayed; a waiter flips the phase and sees count[p] == 0 and returns.  If
** the reader now incremented count[p] and went on, it would use state the
** waiter's caller is about to free.  After incrementing, the reader rereads
** the phase; if it moved, it backs out and retries in the new phase.  With
** sequentially consistent atomics either the waiter sees the increment or
** the reader sees the flip.
*/
#include "guard.h"

#include <assert.h>

void ls_guard_init(ls_guard *g) {
  atomic_init(&g->phase, 0);
  atomic_init(&g->count[0], 0);
  atomic_init(&g->count[1], 0);
  atomic_init(&g->waiters, 0);
  pthread_mutex_init(&g->wait_lock, NULL);
  pthread_mutex_init(&g->lock, NULL);
  pthread_cond_init(&g->cond, NULL);
}

void ls_guard_destroy(ls_guard *g) {
  pthread_mutex_destroy(&g->wait_lock);
  pthread_mutex_destroy(&g->lock);
  pthread_cond_destroy(&g->cond);
}

unsigned ls_guard_enter(ls_guard *g) {
  for (;;) {
    uint64_t p = atomic_load(&g->phase);
    unsigned i = (unsigned)(p & 1);
    atomic_fetch_add(&g->count[i], 1);
    if (atomic_load(&g->phase) == p) return i;
    ls_guard_leave(g, i);
  }
}

void ls_guard_leave(ls_guard *g, unsigned token) {
  uint64_t was = atomic_fetch_sub(&g->count[token], 1);
  assert(token < 2 && was > 0);      /* a leave matches an enter */
  if (was == 1 && atomic_load(&g->waiters)) {
    pthread_mutex_lock(&g->lock);
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
  }
}

void ls_guard_wait(ls_guard *g) {
  pthread_mutex_lock(&g->wait_lock);
  uint64_t p = atomic_fetch_add(&g->phase, 1);
  unsigned old = (unsigned)(p & 1);
  if (atomic_load(&g->count[old])) {
    pthread_mutex_lock(&g->lock);
    atomic_fetch_add(&g->waiters, 1);
    while (atomic_load(&g->count[old])) pthread_cond_wait(&g->cond, &g->lock);
    atomic_fetch_sub(&g->waiters, 1);
    pthread_mutex_unlock(&g->lock);
  }
  pthread_mutex_unlock(&g->wait_lock);
}
