/*
** index_int.h -- private to index.c and index_range.c: the range-
** partitioned index of key-ordered tables behind the idx_* API.
** Each rng_* function does what its idx_* namesake (index.h) says.
*/
#ifndef LS_INDEX_INT_H
#define LS_INDEX_INT_H

#include "index.h"

typedef struct idx_rng idx_rng;

/* Tests' injected allocation failures (idx_test_fail_growths). */
int idx_growth_fails(void);

idx_rng *rng_new(void);
void rng_free(idx_rng *r);
void rng_clear(idx_rng *r);
uint64_t rng_count(const idx_rng *r);
size_t rng_memory(const idx_rng *r);
void rng_prefetch(const idx_rng *r, const idx_key *k, int stage);
int rng_get(const idx_rng *r, const idx_key *k, uint64_t *word);
uint64_t rng_get_seq(const idx_rng *r, const idx_key *k);
int rng_put(idx_rng *r, const idx_key *k, uint64_t word, uint64_t *old);
int rng_put_newer(idx_rng *r, const idx_key *k, uint64_t word, uint64_t seq, uint64_t *old, uint64_t *old_seq);
int rng_cas(idx_rng *r, const idx_key *k, uint64_t expect, uint64_t word);
int rng_erase(idx_rng *r, const idx_key *k, uint64_t *old);
int rng_erase_if(idx_rng *r, const idx_key *k, uint64_t expect);
size_t rng_range(const idx_rng *r, const idx_key *from, int after, idx_entry *out, size_t max);
size_t rng_range_desc(const idx_rng *r, const idx_key *from, int before, idx_entry *out, size_t max);
int rng_foreach(const idx_rng *r, int (*fn)(void *arg, const idx_entry *e, uint64_t seq), void *arg);
int rng_track_seq(idx_rng *r, int on);
int rng_check(const idx_rng *r);

#endif /* LS_INDEX_INT_H */
