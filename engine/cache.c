/*
** cache.c -- the record cache (the rules are in cache.h).
**
** A shard: a chained hash table of entries, two FIFOs threaded through the
** entries (doubly linked: the cleaner's relocation takes one out) and a
** direct-mapped ghost table of 64-bit fingerprints (a later fingerprint in
** the same slot pushes out the earlier: the ghost forgets oldest-ish first
** without a list of its own).  Everything in a shard is under its mutex.
*/
#include "cache.h"
#include "loc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SHARDS 16
#define CACHE_SMALL_DIV 10         /* the small FIFO: a tenth of the bytes */
#define CACHE_FREQ_MAX 3
#define CACHE_GHOST_PER 256        /* ghost slots: one per this many bytes of a shard */
#define CACHE_BATCH 128            /* cache_get_many: keys sorted by shard at once */

typedef struct cache_ent cache_ent;
struct cache_ent {
  uint64_t loc;                    /* location bits of the word */
  uint64_t segseq;                 /* incarnation of its segment */
  cache_ent *hnext;                /* hash chain */
  cache_ent *qnext, *qprev;        /* next newer and older entry of its FIFO */
  uint32_t size;                   /* record bytes */
  uint8_t freq;                    /* hits since inserted or last passed, up to 3 */
  uint8_t main;                    /* in the main FIFO (else the small one) */
  uint8_t data[];                  /* the record image */
};

typedef struct cache_fifo {
  cache_ent *oldest, *newest;
  uint64_t bytes;
} cache_fifo;

typedef struct cache_shard {
  pthread_mutex_t lock;
  cache_ent **buckets;
  uint32_t nbuckets, n;
  cache_fifo small, main;
  uint64_t *ghost;                 /* fingerprints (0: empty) */
  uint32_t nghost;
  uint64_t cap;                    /* bytes this shard may hold */
  uint64_t bytes;                  /* entries + buckets + ghost */
  uint64_t hits, misses;
  char pad[64];                    /* shards on their own cache lines */
} cache_shard;

struct ls_cache {
  cache_shard shard[CACHE_SHARDS];
};

static inline uint64_t ent_bytes(uint32_t size) { return sizeof(cache_ent) + size; }

static inline uint64_t hash_of(uint64_t loc, uint64_t segseq) {
  uint64_t h = (loc ^ (segseq * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

static inline cache_shard *shard_of(ls_cache *c, uint64_t h) { return &c->shard[h >> 60]; }

ls_cache *cache_new(uint64_t capacity) {
  if (!capacity) return NULL;
  ls_cache *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  for (int i = 0; i < CACHE_SHARDS; i++) {
    cache_shard *s = &c->shard[i];
    pthread_mutex_init(&s->lock, NULL);
    s->cap = capacity / CACHE_SHARDS;
    uint32_t ng = 64;
    while (ng < (1u << 20) && (uint64_t)ng * 2 * CACHE_GHOST_PER <= s->cap) ng *= 2;
    if ((uint64_t)ng * sizeof(uint64_t) * 4 <= s->cap) s->ghost = calloc(ng, sizeof(uint64_t));
    if (s->ghost) {
      s->nghost = ng;
      s->bytes = (uint64_t)ng * sizeof(uint64_t);
    }
  }
  return c;
}

void cache_free(ls_cache *c) {
  if (!c) return;
  for (int i = 0; i < CACHE_SHARDS; i++) {
    cache_shard *s = &c->shard[i];
    for (cache_fifo *q = &s->small; q; q = q == &s->small ? &s->main : NULL)
      for (cache_ent *e = q->oldest, *n; e; e = n) {
        n = e->qnext;
        free(e);
      }
    free(s->buckets);
    free(s->ghost);
    pthread_mutex_destroy(&s->lock);
  }
  free(c);
}

static cache_ent **chain_of(cache_shard *s, uint64_t h) {
  return &s->buckets[(uint32_t)h & (s->nbuckets - 1)];
}

static cache_ent *find(cache_shard *s, uint64_t h, uint64_t loc, uint64_t segseq) {
  if (!s->nbuckets) return NULL;
  for (cache_ent *e = *chain_of(s, h); e; e = e->hnext)
    if (e->loc == loc && e->segseq == segseq) return e;
  return NULL;
}

static void unchain(cache_shard *s, cache_ent *x) {
  cache_ent **p = chain_of(s, hash_of(x->loc, x->segseq));
  while (*p != x) p = &(*p)->hnext;
  *p = x->hnext;
  s->n--;
}

static void fifo_push(cache_fifo *q, cache_ent *e) {
  e->qnext = NULL;
  e->qprev = q->newest;
  if (q->newest) q->newest->qnext = e; else q->oldest = e;
  q->newest = e;
  q->bytes += ent_bytes(e->size);
}

static cache_ent *fifo_pop(cache_fifo *q) {
  cache_ent *e = q->oldest;
  q->oldest = e->qnext;
  if (q->oldest) q->oldest->qprev = NULL; else q->newest = NULL;
  q->bytes -= ent_bytes(e->size);
  return e;
}

static void drop(cache_shard *s, cache_ent *e) {
  unchain(s, e);
  s->bytes -= ent_bytes(e->size);
  free(e);
}

/* Make room: evict until the shard is within its capacity. */
static void evict(cache_shard *s) {
  while (s->bytes > s->cap && (s->small.oldest || s->main.oldest)) {
    if (s->small.oldest && (s->small.bytes > s->cap / CACHE_SMALL_DIV || !s->main.oldest)) {
      cache_ent *e = fifo_pop(&s->small);
      if (e->freq) {               /* hit while in the small FIFO: keep it */
        e->freq = 0;
        e->main = 1;
        fifo_push(&s->main, e);
      } else {
        if (s->nghost) {
          uint64_t h = hash_of(e->loc, e->segseq);
          s->ghost[(h >> 20) & (s->nghost - 1)] = h | 1;
        }
        drop(s, e);
      }
    } else {
      cache_ent *e = fifo_pop(&s->main);
      if (e->freq) {               /* hit since it last passed: once more */
        e->freq--;
        fifo_push(&s->main, e);
      } else {
        drop(s, e);
      }
    }
  }
}

/* Double the hash table when it holds more entries than buckets (a failed
** allocation leaves longer chains). */
static void grow(cache_shard *s) {
  if (s->nbuckets && s->n < s->nbuckets) return;
  uint32_t nb = s->nbuckets ? s->nbuckets * 2 : 256;
  cache_ent **b = calloc(nb, sizeof *b);
  if (!b) return;
  for (uint32_t i = 0; i < s->nbuckets; i++)
    for (cache_ent *e = s->buckets[i], *n; e; e = n) {
      n = e->hnext;
      cache_ent **p = &b[(uint32_t)hash_of(e->loc, e->segseq) & (nb - 1)];
      e->hnext = *p;
      *p = e;
    }
  s->bytes += (uint64_t)(nb - s->nbuckets) * sizeof *b;
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

/* A hit: count it and copy the image out.  Shard lock held. */
static inline void hit(cache_shard *s, cache_ent *e, uint8_t *dst) {
  if (e->freq < CACHE_FREQ_MAX) e->freq++;
  memcpy(dst, e->data, e->size);
  s->hits++;
}

int cache_get(ls_cache *c, uint64_t word, uint64_t segseq, uint8_t *dst, uint32_t size) {
  uint64_t loc = word & LOC_MASK & ~LOC_TOMB;
  uint64_t h = hash_of(loc, segseq);
  cache_shard *s = shard_of(c, h);
  pthread_mutex_lock(&s->lock);
  cache_ent *e = segseq ? find(s, h, loc, segseq) : NULL;
  if (e && e->size == size) {
    hit(s, e, dst);
  } else {
    e = NULL;
    s->misses++;
  }
  pthread_mutex_unlock(&s->lock);
  return e != NULL;
}

int cache_get_many(ls_cache *c, int n, const uint64_t *words, const uint64_t *segseqs, uint8_t *const *dsts,
                   const uint32_t *sizes, uint8_t *hits) {
  /* The keys by shard (a counting sort): each shard is locked once, and
  ** the lookups of its keys run in three passes so that the memory of one
  ** is fetched while the others are looked at -- bucket slots, then the
  ** entries they lead to, then the finds and copies. */
  uint8_t order[CACHE_BATCH];
  uint64_t h[CACHE_BATCH];
  int count[CACHE_SHARDS + 1] = { 0 };
  int nhit = 0;
  if (n > CACHE_BATCH) {
    for (int i = 0; i < n; i += CACHE_BATCH)
      nhit += cache_get_many(c, n - i < CACHE_BATCH ? n - i : CACHE_BATCH, words + i, segseqs + i, dsts + i,
                             sizes + i, hits + i);
    return nhit;
  }
  for (int i = 0; i < n; i++) {
    h[i] = hash_of(words[i] & LOC_MASK & ~LOC_TOMB, segseqs[i]);
    count[(h[i] >> 60) + 1]++;
    hits[i] = 0;
  }
  for (int k = 0; k < CACHE_SHARDS; k++) count[k + 1] += count[k];
  int at[CACHE_SHARDS];
  memcpy(at, count, sizeof at);
  for (int i = 0; i < n; i++) order[at[h[i] >> 60]++] = (uint8_t)i;
  for (int k = 0; k < CACHE_SHARDS; k++) {
    int lo = count[k], hi = count[k + 1];
    if (lo == hi) continue;
    cache_shard *s = &c->shard[k];
    pthread_mutex_lock(&s->lock);
    if (s->nbuckets) {
      for (int j = lo; j < hi; j++) __builtin_prefetch(chain_of(s, h[order[j]]));
      for (int j = lo; j < hi; j++) {
        cache_ent *e = *chain_of(s, h[order[j]]);
        if (e) __builtin_prefetch(e);
      }
    }
    for (int j = lo; j < hi; j++) {
      int i = order[j];
      uint64_t loc = words[i] & LOC_MASK & ~LOC_TOMB;
      cache_ent *e = segseqs[i] ? find(s, h[i], loc, segseqs[i]) : NULL;
      if (e && e->size == sizes[i]) {
        hit(s, e, dsts[i]);
        hits[i] = 1;
        nhit++;
      } else {
        s->misses++;
      }
    }
    pthread_mutex_unlock(&s->lock);
  }
  return nhit;
}

/* Link entry e (filled) into shard s under hash h, without evicting.
** Shard lock held.  Returns 0 (e not linked: the caller frees it) when the
** hash table can not be allocated. */
static int link_locked(cache_shard *s, cache_ent *e, uint64_t h, int main) {
  grow(s);
  cache_ent **p = s->nbuckets ? chain_of(s, h) : NULL;
  if (!p) return 0;
  e->hnext = *p;
  *p = e;
  s->n++;
  s->bytes += ent_bytes(e->size);
  uint64_t *g = s->nghost ? &s->ghost[(h >> 20) & (s->nghost - 1)] : NULL;
  if (g && *g == (h | 1)) {        /* seen lately: straight into main */
    *g = 0;
    main = 1;
  }
  e->main = (uint8_t)main;
  fifo_push(main ? &s->main : &s->small, e);
  return 1;
}

/* A new entry holding a copy of src, or NULL (not cacheable, no memory). */
static cache_ent *entry_new(ls_cache *c, uint64_t word, uint64_t segseq, const uint8_t *src, uint32_t size,
                            uint8_t freq) {
  if (!segseq || ent_bytes(size) > c->shard[0].cap / 8) return NULL;
  cache_ent *e = malloc(ent_bytes(size));
  if (!e) return NULL;
  *e = (cache_ent){ .loc = word & LOC_MASK & ~LOC_TOMB, .segseq = segseq, .size = size, .freq = freq };
  memcpy(e->data, src, size);
  return e;
}

/* Insert a record image; main: straight into the main FIFO with freq. */
static void put(ls_cache *c, uint64_t word, uint64_t segseq, const uint8_t *src, uint32_t size, int main,
                uint8_t freq) {
  cache_ent *e = entry_new(c, word, segseq, src, size, freq);
  if (!e) return;
  uint64_t h = hash_of(e->loc, e->segseq);
  cache_shard *s = shard_of(c, h);
  pthread_mutex_lock(&s->lock);
  int linked = !find(s, h, e->loc, e->segseq) && link_locked(s, e, h, main);   /* else another reader was first */
  if (linked) evict(s);
  pthread_mutex_unlock(&s->lock);
  if (!linked) free(e);
}

void cache_put(ls_cache *c, uint64_t word, uint64_t segseq, const uint8_t *src, uint32_t size) {
  put(c, word, segseq, src, size, 0, 0);
}

void cache_batch_add(ls_cache *c, cache_batch *b, uint64_t word, uint64_t segseq, const uint8_t *src,
                     uint32_t size) {
  cache_ent *e = entry_new(c, word, segseq, src, size, 0);
  if (!e) return;
  e->hnext = b->first;             /* the batch's list until inserted */
  b->first = e;
  b->bytes += ent_bytes(size);
}

uint64_t cache_batch_limit(const ls_cache *c) { return c->shard[0].cap; }

void cache_batch_insert(ls_cache *c, cache_batch *b) {
  /* By shard: each locked once, its buckets prefetched, evicting once at
  ** the end.  No lookup first: see cache_batch (nothing can be cached at
  ** these locations yet). */
  cache_ent *by[CACHE_SHARDS] = { NULL };
  for (cache_ent *e = b->first, *n; e; e = n) {
    n = e->hnext;
    cache_ent **l = &by[hash_of(e->loc, e->segseq) >> 60];
    e->hnext = *l;
    *l = e;
  }
  b->first = NULL;
  b->bytes = 0;
  for (int k = 0; k < CACHE_SHARDS; k++) {
    if (!by[k]) continue;
    cache_shard *s = &c->shard[k];
    pthread_mutex_lock(&s->lock);
    for (cache_ent *e = by[k]; e; e = e->hnext)
      if (s->nbuckets) __builtin_prefetch(chain_of(s, hash_of(e->loc, e->segseq)), 1);
    for (cache_ent *e = by[k], *n; e; e = n) {
      n = e->hnext;
      if (!link_locked(s, e, hash_of(e->loc, e->segseq), 0)) free(e);
    }
    evict(s);
    pthread_mutex_unlock(&s->lock);
  }
}

void cache_batch_discard(cache_batch *b) {
  for (cache_ent *e = b->first, *n; e; e = n) {
    n = e->hnext;
    free(e);
  }
  b->first = NULL;
  b->bytes = 0;
}

static void fifo_remove(cache_fifo *q, cache_ent *e) {
  if (e->qprev) e->qprev->qnext = e->qnext; else q->oldest = e->qnext;
  if (e->qnext) e->qnext->qprev = e->qprev; else q->newest = e->qprev;
  q->bytes -= ent_bytes(e->size);
}

void cache_move(ls_cache *c, uint64_t old, uint64_t oldseq, uint64_t word, uint64_t segseq, const uint8_t *src,
                uint32_t size) {
  uint64_t loc = old & LOC_MASK & ~LOC_TOMB;
  uint64_t h = hash_of(loc, oldseq);
  cache_shard *s = shard_of(c, h);
  pthread_mutex_lock(&s->lock);
  cache_ent *e = oldseq ? find(s, h, loc, oldseq) : NULL;
  int main = 0;
  uint8_t freq = 0;
  if (e) {
    main = e->main;
    freq = e->freq;
    fifo_remove(main ? &s->main : &s->small, e);
    drop(s, e);
  }
  pthread_mutex_unlock(&s->lock);
  if (e) put(c, word, segseq, src, size, main, freq);
}

void cache_stats(ls_cache *c, ls_cache_stats *st) {
  memset(st, 0, sizeof *st);
  if (!c) return;
  for (int i = 0; i < CACHE_SHARDS; i++) {
    cache_shard *s = &c->shard[i];
    pthread_mutex_lock(&s->lock);
    st->hits += s->hits;
    st->misses += s->misses;
    st->bytes += s->bytes;
    st->entries += s->n;
    pthread_mutex_unlock(&s->lock);
  }
}
