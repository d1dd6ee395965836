/*
** snapshot.c -- stamps, active snapshots and the versions they need (the
** rules are in snapshot.h).
**
** Versions live in a hash table by (table, key) for lookups and in one list
** in stamp order for dropping, oldest first.  Lock order: a table's lock ->
** vlock -> the store lock or the segment manager's lock; the store lock is
** never held while taking vlock.
*/
#include "snapshot.h"
#include "ls_int.h"

#include <assert.h>
#include <stdlib.h>

struct snap_ver {
  uint64_t hi, lo;                 /* index key */
  uint64_t word;                   /* the version (0: no row) */
  uint64_t until;                  /* superseded by the install of this stamp */
  uint32_t table;
  snap_ver *hnext, *hprev;         /* hash chain */
  snap_ver *next;                  /* stamp order */
};

void snap_init(snap_store *st, ls_segmgr *sm, uint64_t max_versions, uint64_t max_bytes) {
  memset(st, 0, sizeof *st);
  st->sm = sm;
  st->max_versions = max_versions;
  st->max_bytes = max_bytes;
  pthread_mutex_init(&st->lock, NULL);
  pthread_cond_init(&st->cond, NULL);
  pthread_rwlock_init(&st->vlock, NULL);
}

void snap_destroy(snap_store *st) {
  for (snap_ver *v = st->first, *n; v; v = n) {
    n = v->next;
    free(v);
  }
  free(st->buckets);
  /* Snapshots still active belong to their transactions. */
  pthread_mutex_destroy(&st->lock);
  pthread_cond_destroy(&st->cond);
  pthread_rwlock_destroy(&st->vlock);
}

static inline uint32_t bucket_of(const snap_store *st, uint32_t table, uint64_t hi, uint64_t lo) {
  uint64_t h = (hi ^ (lo * 0x9e3779b97f4a7c15ull) ^ table) * 0xff51afd7ed558ccdull;
  return (uint32_t)(h >> 32) & (st->nbuckets - 1);
}

static void chain_add(snap_store *st, snap_ver *v) {
  snap_ver **b = &st->buckets[bucket_of(st, v->table, v->hi, v->lo)];
  v->hprev = NULL;
  v->hnext = *b;
  if (*b) (*b)->hprev = v;
  *b = v;
}

/* Room in the hash table for one more version (doubles it at two per
** bucket).  vlock held for writing. */
static int grow(snap_store *st) {
  uint64_t n = atomic_load(&st->nversions) + 1;
  if (st->nbuckets && n <= 2ull * st->nbuckets) return LS_OK;
  uint32_t nb = st->nbuckets ? st->nbuckets * 2 : 1024;
  snap_ver **b = calloc(nb, sizeof *b);
  if (!b) return st->nbuckets ? LS_OK : LS_NOMEM;   /* longer chains will do */
  free(st->buckets);
  st->buckets = b;
  st->nbuckets = nb;
  for (snap_ver *v = st->first; v; v = v->next) chain_add(st, v);
  return LS_OK;
}

/* Drop the versions superseded at or before bound (no active snapshot
** needs them); their segments go to *rel.  vlock held for writing. */
static void drop_upto(snap_store *st, uint64_t bound, seg_ids *rel) {
  while (st->first && st->first->until <= bound) {
    snap_ver *v = st->first;
    st->first = v->next;
    if (!st->first) st->last = NULL;
    if (v->hprev) v->hprev->hnext = v->hnext;
    else st->buckets[bucket_of(st, v->table, v->hi, v->lo)] = v->hnext;
    if (v->hnext) v->hnext->hprev = v->hprev;
    if (v->word) {
      seg_retain(st->sm, loc_seg(v->word), -1);
      atomic_fetch_sub(&st->bytes, loc_size(v->word));
      (void)seg_ids_push(rel, loc_seg(v->word));   /* if lost: freed later */
    }
    atomic_fetch_sub(&st->nversions, 1);
    free(v);
  }
}

/* The stamp below which no version is needed: the oldest active
** snapshot's.  Store lock held. */
static uint64_t bound_locked(const snap_store *st) {
  return st->oldest ? st->oldest->stamp : UINT64_MAX;
}

static void release(snap_store *st, seg_ids *rel) {
  if (rel->n && st->released) st->released(st->released_arg, rel->v, rel->n);
  free(rel->v);
}

/* Drop what no snapshot needs any more.  The bound is read under vlock:
** read before it, with no snapshot active (no bound), it would let a
** snapshot begun meanwhile lose the versions an install records for it
** before this drop runs. */
static void collect(snap_store *st) {
  if (!atomic_load(&st->nversions)) return;
  if (st->test_collect_hook) st->test_collect_hook(st->test_collect_arg);
  seg_ids rel = { 0 };
  pthread_rwlock_wrlock(&st->vlock);
  pthread_mutex_lock(&st->lock);
  uint64_t bound = bound_locked(st);
  pthread_mutex_unlock(&st->lock);
  drop_upto(st, bound, &rel);
  pthread_rwlock_unlock(&st->vlock);
  release(st, &rel);
}

void snap_begin(snap_store *st, ls_snapshot *s) {
  s->newer = NULL;
  atomic_store(&s->expired, 0);
  pthread_mutex_lock(&st->lock);
  while (st->installing) pthread_cond_wait(&st->cond, &st->lock);   /* S2 */
  s->stamp = st->stamp;
  s->older = st->newest;
  if (st->newest) st->newest->newer = s; else st->oldest = s;
  st->newest = s;
  atomic_fetch_add(&st->nactive, 1);
  pthread_mutex_unlock(&st->lock);
}

/* Take s out of the active list.  Store lock held. */
static void unlink_locked(snap_store *st, ls_snapshot *s) {
  if (s->older) s->older->newer = s->newer; else st->oldest = s->newer;
  if (s->newer) s->newer->older = s->older; else st->newest = s->older;
  s->older = s->newer = NULL;
  atomic_fetch_sub(&st->nactive, 1);
}

void snap_end(snap_store *st, ls_snapshot *s) {
  if (!s) return;
  pthread_mutex_lock(&st->lock);
  if (!atomic_load(&s->expired)) unlink_locked(st, s);
  pthread_mutex_unlock(&st->lock);
  collect(st);
}

uint64_t snap_install_begin(snap_store *st, const ls_snapshot *own, int *record) {
  pthread_mutex_lock(&st->lock);
  assert(!st->installing);         /* installs run in the writer's role */
  st->installing = 1;
  /* The transaction's own snapshot needs no versions of its own writes. */
  st->newest_stamp = 0;
  for (ls_snapshot *s = st->oldest; s; s = s->newer)
    if (s != own && s->stamp > st->newest_stamp) st->newest_stamp = s->stamp;
  st->recording = st->oldest && (st->oldest != own || st->oldest->newer);
  *record = st->recording;
  uint64_t s = st->stamp + 1;
  pthread_mutex_unlock(&st->lock);
  return s;
}

void snap_install_end(snap_store *st, uint64_t stamp) {
  pthread_mutex_lock(&st->lock);
  st->stamp = stamp;
  st->installing = 0;
  st->recording = 0;
  pthread_cond_broadcast(&st->cond);
  pthread_mutex_unlock(&st->lock);
  collect(st);
}

/* Expire the oldest snapshot (the bounds), or every one.  vlock held for
** writing; versions no snapshot needs now are dropped into *rel. */
static uint32_t expire_locked(snap_store *st, int all, seg_ids *rel) {
  uint32_t n = 0;
  pthread_mutex_lock(&st->lock);
  while (st->oldest && (all || !n)) {
    ls_snapshot *s = st->oldest;
    unlink_locked(st, s);
    atomic_store(&s->expired, 1);  /* its owner's snap_end finds it unlinked */
    n++;
  }
  /* None left: a running install records no more (S2: none can start
  ** before it ends). */
  if (!st->oldest) st->recording = 0;
  uint64_t bound = bound_locked(st);
  pthread_mutex_unlock(&st->lock);
  atomic_fetch_add(&st->expired, n);
  drop_upto(st, bound, rel);
  return n;
}

void snap_record(snap_store *st, uint32_t table, const idx_key *key, uint64_t word, uint64_t until) {
  if (!atomic_load(&st->recording)) return;        /* every snapshot expired meanwhile */
  seg_ids rel = { 0 };
  pthread_rwlock_wrlock(&st->vlock);
  /* S4: the version being replaced was installed when the key's newest
  ** recorded version was superseded; after every snapshot, none sees it. */
  for (snap_ver *o = st->nbuckets ? st->buckets[bucket_of(st, table, key->hi, key->lo)] : NULL; o; o = o->hnext)
    if (o->hi == key->hi && o->lo == key->lo && o->table == table && o->until > st->newest_stamp) {
      pthread_rwlock_unlock(&st->vlock);
      return;
    }
  snap_ver *v = grow(st) == LS_OK ? malloc(sizeof *v) : NULL;
  if (!v) {
    /* The snapshots can not be served: they end (LS_EXPIRED). */
    (void)expire_locked(st, 1, &rel);
  } else {
    *v = (snap_ver){ .hi = key->hi, .lo = key->lo, .word = word, .until = until, .table = table };
    chain_add(st, v);
    if (st->last) st->last->next = v; else st->first = v;
    st->last = v;
    atomic_fetch_add(&st->nversions, 1);
    if (word) {
      seg_retain(st->sm, loc_seg(word), +1);
      atomic_fetch_add(&st->bytes, loc_size(word));
    }
    while ((atomic_load(&st->nversions) > st->max_versions || atomic_load(&st->bytes) > st->max_bytes) &&
           expire_locked(st, 0, &rel)) {}
  }
  pthread_rwlock_unlock(&st->vlock);
  release(st, &rel);
}

int snap_lookup(snap_store *st, const ls_snapshot *s, uint32_t table, const idx_key *key, uint64_t *word) {
  if (atomic_load(&s->expired))
    return ls_err(LS_EXPIRED, "the transaction's snapshot was released: it needed more old versions than "
                  "the engine keeps (or the disk was full); retry the transaction");
  if (!atomic_load(&st->nversions)) return LS_OK;
  pthread_rwlock_rdlock(&st->vlock);
  uint64_t best = UINT64_MAX, w = 0;
  for (snap_ver *v = st->nbuckets ? st->buckets[bucket_of(st, table, key->hi, key->lo)] : NULL; v; v = v->hnext)
    if (v->hi == key->hi && v->lo == key->lo && v->table == table && v->until > s->stamp && v->until < best) {
      best = v->until;
      w = v->word;
    }
  pthread_rwlock_unlock(&st->vlock);
  if (best != UINT64_MAX) *word = w;
  return LS_OK;
}

uint32_t snap_expire_all(snap_store *st) {
  if (!atomic_load(&st->nactive) && !atomic_load(&st->nversions)) return 0;
  seg_ids rel = { 0 };
  pthread_rwlock_wrlock(&st->vlock);
  uint32_t n = expire_locked(st, 1, &rel);
  pthread_rwlock_unlock(&st->vlock);
  release(st, &rel);
  return n;
}
