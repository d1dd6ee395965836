/*
** index.h -- the in-memory index of one table: key digest -> 64-bit word.
**
** Keys are the first 16 bytes of a key's RIPEMD-160 digest, as two 64-bit
** integers ordered like the token: hi is the first 8 digest bytes read
** big-endian with the top bit flipped (so unsigned order of hi equals signed
** order of the token), lo the next 8.  Iteration is in (hi, lo) order, that
** is token order.
**
** The word is opaque here (the engine stores a record location, see loc.h).
**
** Structure: an extendible-hashing directory on the top bits of hi pointing
** at buckets, each a sorted array of 24-byte entries.  Tokens are uniform,
** so buckets stay balanced; a full bucket splits on its next bit and the
** directory doubles when needed (copying pointers only).  Ordered iteration
** walks the directory.  About 26 bytes per key all-in.  Key-ordered tables
** (positions that are not uniform) use idx_new_ordered's range-partitioned
** index behind the same functions.
**
** Not thread-safe: the caller holds its table's lock (readers shared,
** writers exclusive).
**
** Layer: the bottom, with format, io and guard (engine/README.md).
*/
#ifndef LS_INDEX_H
#define LS_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct idx_key {
  uint64_t hi, lo;
} idx_key;

typedef struct idx_entry {
  uint64_t hi, lo;                 /* the key */
  uint64_t word;                   /* the value */
} idx_entry;

typedef struct ls_index ls_index;

/* Key from a 20-byte digest. */
void idx_key_from_digest(idx_key *k, const uint8_t digest[20]);
/* Token (signed) of an index key, and the smallest key with that token. */
static inline int64_t idx_key_token(uint64_t hi) { return (int64_t)(hi ^ (1ull << 63)); }
static inline uint64_t idx_hi_of_token(int64_t token) { return (uint64_t)token ^ (1ull << 63); }

ls_index *idx_new(void);
/* An index for a key-ordered table, where hi is not uniform (index_range.c:
** range-partitioned buckets instead of the hashing directory).  The same
** API and contract; about 25 bytes per key. */
ls_index *idx_new_ordered(void);
int idx_is_ordered(const ls_index *ix);
void idx_free(ls_index *ix);
/* Tests: the next n growths of any index (bucket allocations and
** enlargements) fail as if out of memory. */
void idx_test_fail_growths(int n);
/* Remove every entry (memory returned). */
void idx_clear(ls_index *ix);
uint64_t idx_count(const ls_index *ix);
/* Bytes allocated for the index (directory, buckets, entry arrays). */
size_t idx_memory(const ls_index *ix);

/* A hint that k will be looked up soon, for loops over many keys: stage 0
** fetches its bucket's header into the cache, stage 1 (a few keys later,
** once stage 0 had time) the entries around its place.  No effect on the
** index. */
void idx_prefetch(const ls_index *ix, const idx_key *k, int stage);
/* Loops over many lookups prefetch the key IDX_PF_FAR ahead to stage 0 and
** the key IDX_PF_NEAR ahead to stage 1. */
#define IDX_PF_FAR 8
#define IDX_PF_NEAR 4

/* 1 and *word if k is present, else 0. */
int idx_get(const ls_index *ix, const idx_key *k, uint64_t *word);

/* Insert or replace.  Returns 0 if inserted, 1 if replaced (*old = the
** previous word; old may be NULL), LS_NOMEM. */
int idx_put(ls_index *ix, const idx_key *k, uint64_t word, uint64_t *old);

/* Compare-and-swap: replace the word of k by word only if it is expect.
** Returns 1 if swapped, 0 if k is absent or holds another word. */
int idx_cas(ls_index *ix, const idx_key *k, uint64_t expect, uint64_t word);

/* Erase k.  Returns 1 (and *old) if it was present, else 0. */
int idx_erase(ls_index *ix, const idx_key *k, uint64_t *old);
/* Erase k only if its word is expect.  Returns 1 if erased. */
int idx_erase_if(ls_index *ix, const idx_key *k, uint64_t expect);

/* Copy up to max entries, in order, starting at the first key >= from
** (> from when after is non-zero) into out.  Returns the number copied;
** fewer than max means the end was reached. */
size_t idx_range(const ls_index *ix, const idx_key *from, int after, idx_entry *out, size_t max);

/* The same downwards: up to max entries in descending order, starting at
** the last key <= from (< from when before is non-zero). */
size_t idx_range_desc(const ls_index *ix, const idx_key *from, int before, idx_entry *out, size_t max);

/* Call fn on every entry in order (seq is the tracked sequence or 0).
** Stops when fn returns non-zero and returns that value. */
int idx_foreach(const ls_index *ix, int (*fn)(void *arg, const idx_entry *e, uint64_t seq), void *arg);

/* Recovery support: while tracking is on, every entry carries a write
** sequence beside it, and idx_put_newer() keeps the newest version.
** Turning tracking off frees the sequences.  Returns LS_OK or LS_NOMEM. */
int idx_track_seq(ls_index *ix, int on);

#define IDX_INSERTED 0   /* k was absent; inserted */
#define IDX_REPLACED 1   /* k held an older version; replaced, *old is it */
#define IDX_KEPT     2   /* k holds a version at least as new; unchanged, *old is the candidate's rival */

/* Insert k -> word with sequence seq unless k already holds a version with
** a sequence >= seq.  Equal sequences are the same version (a relocated
** copy): the existing entry is kept.  *old and *old_seq (either may be
** NULL) receive the entry that was replaced or kept.  Requires tracking.
** Returns IDX_INSERTED, IDX_REPLACED, IDX_KEPT or LS_NOMEM. */
int idx_put_newer(ls_index *ix, const idx_key *k, uint64_t word, uint64_t seq, uint64_t *old,
                  uint64_t *old_seq);

/* 0 if ix keeps the invariants listed in index.c (the test builds assert
** it where a whole index is walked anyway; not in the release build). */
int idx_check(const ls_index *ix);

/* Sequence tracked for k (0 if absent or not tracking). */
uint64_t idx_get_seq(const ls_index *ix, const idx_key *k);

#endif /* LS_INDEX_H */
