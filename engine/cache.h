/*
** cache.h -- the record cache: recently read records, in memory, shared by
** every connection of an engine.
**
** Layer: the bottom, with index and guard (engine/README.md).  Calls: libc
** and pthreads only.
**
** What goes in: records read by key, records written by commits (from the
** writer's buffer, as written), and the copy of a cached record that the
** cleaner relocates takes the old one's place.
**
** Keys.  An entry is the image of one record (header, key and value, as on
** disk) under the location bits of its index word (segment, offset, size)
** and the incarnation sequence of its segment at the time it was read.
** The bytes at a location never change within one incarnation, and a
** segment reused gets a new, never repeated incarnation; so an entry can
** never be stale: a record relocated by the separator or compaction lives
** at another location (the old entry is simply never asked for again), and
** a freed and reused segment has another incarnation.  Nothing has to be
** invalidated; dead entries age out.  Incarnation 0 (a free segment) is
** never cached.
**
** Policy: S3-FIFO (Yang et al., SOSP 2023), per shard.  A new record goes
** into a small FIFO (a tenth of the bytes); one that was hit while there
** moves on to the main FIFO when it reaches the end of the small one, the
** others leave and leave their fingerprint in a ghost table; a record whose
** fingerprint is still there goes straight into main.  Main is a FIFO with
** reinsertion: an entry hit since it last passed the end goes round again.
** A scan that reads every row once therefore only churns the small FIFO.
**
** Bounds.  Each of CACHE_SHARDS shards holds at most capacity / CACHE_SHARDS
** bytes (entries with their headers, and the shard's hash table); a record
** larger than an eighth of that is not cached.
**
** Threads: every function is thread-safe; a hit takes one shard mutex and
** copies the record out (no system call).
*/
#ifndef LS_CACHE_H
#define LS_CACHE_H

#include <stdint.h>

typedef struct ls_cache ls_cache;

typedef struct ls_cache_stats {
  uint64_t hits, misses;
  uint64_t bytes;                  /* memory held, within the capacity */
  uint64_t entries;
} ls_cache_stats;

/* A cache of capacity bytes; NULL (no memory, or capacity 0: no cache). */
ls_cache *cache_new(uint64_t capacity);
void cache_free(ls_cache *c);

/* Copy the record of word (its location bits) in incarnation segseq into
** dst (size bytes, the word's record size) if cached: 1, else 0 (counted
** as a miss). */
int cache_get(ls_cache *c, uint64_t word, uint64_t segseq, uint8_t *dst, uint32_t size);

/* The records written by a commit group, copied while their images are at
** hand (cache_batch_add) and put in at once before the group's committers
** are released (cache_batch_insert): each shard is locked once, not once
** per record.  They are put in without looking for an entry at the same
** place first: nothing can be cached there yet -- no reader has seen a
** location before its install, and a location is written once per
** incarnation of its segment. */
typedef struct cache_ent cache_ent;
typedef struct cache_batch { cache_ent *first; uint64_t bytes; } cache_batch;
void cache_batch_add(ls_cache *c, cache_batch *b, uint64_t word, uint64_t segseq, const uint8_t *src,
                     uint32_t size);
void cache_batch_insert(ls_cache *c, cache_batch *b);    /* and empty it */
void cache_batch_discard(cache_batch *b);
/* The bytes a batch may hold before it is put in (a large transaction's
** records go in a piece at a time: the same rule holds for each piece, and
** the cache would evict most of them anyway). */
uint64_t cache_batch_limit(const ls_cache *c);

/* cache_get for n records at once (dsts[i] holds sizes[i] bytes): hits[i]
** says which were copied; returns how many.  Cheaper than n calls: each
** shard is locked once and the lookups' memory is prefetched. */
int cache_get_many(ls_cache *c, int n, const uint64_t *words, const uint64_t *segseqs, uint8_t *const *dsts,
                   const uint32_t *sizes, uint8_t *hits);

/* Remember the verified record image src (size bytes) of word in
** incarnation segseq.  May evict others; does nothing if it is too large or
** memory runs out. */
void cache_put(ls_cache *c, uint64_t word, uint64_t segseq, const uint8_t *src, uint32_t size);

/* The record of old (incarnation oldseq) was copied to word (incarnation
** segseq; image src): if the old one is cached, the copy takes its place. */
void cache_move(ls_cache *c, uint64_t old, uint64_t oldseq, uint64_t word, uint64_t segseq, const uint8_t *src,
                uint32_t size);

void cache_stats(ls_cache *c, ls_cache_stats *s);

#endif /* LS_CACHE_H */
