/*
** index_range.c -- the range-partitioned index of key-ordered tables
** (index.h, idx_new_ordered; index.c dispatches here).
**
** The extendible-hashing directory of index.c splits on the top bits of hi
** and stays balanced only because tokens are uniform.  The positions of a
** key-ordered table are not (sequential integers share all but their low
** bits), so this index partitions by range instead:
**
**   fence[0..nb)   sorted keys: bucket i holds the keys k with
**                  fence[i] <= k < fence[i+1] (bucket 0 also every key
**                  below fence[1]: its fence is never compared)
**   b[0..nb)       the buckets, each a sorted array of 24-byte entries
**
** Invariants (rng_check):
**   1. nb >= 1; fences strictly increasing from fence[1];
**   2. every entry of bucket i lies in its range; entries strictly
**      increasing within a bucket; a bucket other than the only one is
**      not empty;
**   3. count == the sum of the bucket sizes; with tracking, seq[j] belongs
**      to e[j].
**
** Growth.  A bucket that reaches RSPLIT entries splits before an insert:
** at the insert position when that is one end of the bucket (ascending or
** descending loads then leave full buckets behind, 24 bytes a key), else at
** the median.  A bucket left with fewer than RSPLIT/8 entries by an erase
** merges with a neighbour when both fit in 3/4 of RSPLIT.  Memory: the
** entries (24 bytes), array slack of at most GROW entries, and per bucket a
** header and a directory slot (40 bytes): 25-27 bytes a key for random
** loads.  A split moves the directory's tail (16+8 bytes a bucket, about
** one bucket per 200 keys): fine to tens of millions of keys.
*/
#include "index_int.h"
#include "ls_int.h"

#include <stdlib.h>

#define RSPLIT 256u                /* entries that make a bucket split */
#define RGROW  8u                  /* entry-array growth step */

typedef struct rng_bucket {
  uint32_t n, cap;                 /* entries used / allocated */
  uint64_t *seq;                   /* sequences beside e (tracking only) */
  idx_entry e[];                   /* sorted entries */
} rng_bucket;

struct idx_rng {
  idx_key *fence;                  /* [capb] first key of each bucket */
  rng_bucket **b;                  /* [capb] */
  size_t nb, capb;                 /* buckets used / allocated */
  int track;                       /* sequences kept beside entries */
  uint64_t count;
  size_t mem;
};

static inline int key_lt(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo) {
  return ahi < bhi || (ahi == bhi && alo < blo);
}

static size_t rbucket_bytes(uint32_t cap) { return sizeof(rng_bucket) + cap * sizeof(idx_entry); }

/* Index of the bucket whose range holds k. */
static size_t find_bucket(const idx_rng *r, uint64_t hi, uint64_t lo) {
  size_t l = 1, h = r->nb;         /* the answer is the last fence <= k, or 0 */
  while (l < h) {
    size_t m = (l + h) / 2;
    if (key_lt(hi, lo, r->fence[m].hi, r->fence[m].lo)) h = m; else l = m + 1;
  }
  return l - 1;
}

/* First position in b whose entry is >= (hi, lo). */
static uint32_t rlower(const rng_bucket *b, uint64_t hi, uint64_t lo) {
  uint32_t l = 0, h = b->n;
  while (l < h) {
    uint32_t m = (l + h) / 2;
    if (key_lt(b->e[m].hi, b->e[m].lo, hi, lo)) l = m + 1; else h = m;
  }
  return l;
}

static rng_bucket *rbucket_new(idx_rng *r, uint32_t cap) {
  if (idx_growth_fails()) return NULL;
  rng_bucket *b = malloc(rbucket_bytes(cap));
  if (!b) return NULL;
  b->n = 0;
  b->cap = cap;
  b->seq = NULL;
  if (r->track && cap) {
    b->seq = malloc(cap * sizeof(uint64_t));
    if (!b->seq) { free(b); return NULL; }
  }
  r->mem += rbucket_bytes(cap);
  return b;
}

static void rbucket_free(idx_rng *r, rng_bucket *b) {
  r->mem -= rbucket_bytes(b->cap);
  free(b->seq);
  free(b);
}

/* Set the capacity of bucket i to cap (>= n).  Growing can fail (LS_NOMEM,
** unchanged); a failed shrink keeps the larger array. */
static int rbucket_resize(idx_rng *r, size_t i, uint32_t cap) {
  rng_bucket *b = r->b[i];
  if (cap == b->cap) return LS_OK;
  if (cap > b->cap && idx_growth_fails()) return LS_NOMEM;
  uint32_t oldcap = b->cap;
  if (r->track) {
    uint64_t *q = cap ? realloc(b->seq, cap * sizeof(uint64_t)) : NULL;
    if (cap && !q) return cap > oldcap ? LS_NOMEM : LS_OK;
    if (!cap) free(b->seq);
    b->seq = q;
  }
  rng_bucket *nb = realloc(b, rbucket_bytes(cap));
  if (!nb) return cap > oldcap ? LS_NOMEM : LS_OK;
  nb->cap = cap;
  r->mem = r->mem - rbucket_bytes(oldcap) + rbucket_bytes(cap);
  r->b[i] = nb;
  return LS_OK;
}

idx_rng *rng_new(void) {
  idx_rng *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->capb = 4;
  r->fence = calloc(r->capb, sizeof *r->fence);
  r->b = calloc(r->capb, sizeof *r->b);
  if (!r->fence || !r->b || !(r->b[0] = rbucket_new(r, 0))) {
    free(r->fence);
    free(r->b);
    free(r);
    return NULL;
  }
  r->nb = 1;
  r->mem += sizeof *r + r->capb * (sizeof *r->fence + sizeof *r->b);
  return r;
}

void rng_free(idx_rng *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nb; i++) rbucket_free(r, r->b[i]);
  free(r->fence);
  free(r->b);
  free(r);
}

void rng_clear(idx_rng *r) {
  for (size_t i = 1; i < r->nb; i++) rbucket_free(r, r->b[i]);
  r->nb = 1;
  r->b[0]->n = 0;
  rbucket_resize(r, 0, 0);
  r->count = 0;
}

uint64_t rng_count(const idx_rng *r) { return r->count; }
size_t rng_memory(const idx_rng *r) { return r->mem; }

void rng_prefetch(const idx_rng *r, const idx_key *k, int stage) {
  /* The directory search is the cost; warm the bucket it leads to. */
  if (stage == 0) __builtin_prefetch(r->b[find_bucket(r, k->hi, k->lo)]);
}

/* Position of k: bucket *bi, entry index returned; 1 in *found if present. */
static uint32_t locate(const idx_rng *r, const idx_key *k, size_t *bi, int *found) {
  size_t i = find_bucket(r, k->hi, k->lo);
  const rng_bucket *b = r->b[i];
  uint32_t j = rlower(b, k->hi, k->lo);
  *bi = i;
  *found = j < b->n && b->e[j].hi == k->hi && b->e[j].lo == k->lo;
  return j;
}

int rng_get(const idx_rng *r, const idx_key *k, uint64_t *word) {
  size_t i;
  int found;
  uint32_t j = locate(r, k, &i, &found);
  if (found && word) *word = r->b[i]->e[j].word;
  return found;
}

uint64_t rng_get_seq(const idx_rng *r, const idx_key *k) {
  size_t i;
  int found;
  uint32_t j = locate(r, k, &i, &found);
  return found && r->track ? r->b[i]->seq[j] : 0;
}

/* Make room for one more directory slot.  LS_OK or LS_NOMEM. */
static int dir_reserve(idx_rng *r) {
  if (r->nb < r->capb) return LS_OK;
  if (idx_growth_fails()) return LS_NOMEM;
  size_t cap = r->capb * 2;
  idx_key *f = realloc(r->fence, cap * sizeof *f);
  if (!f) return LS_NOMEM;
  r->fence = f;
  rng_bucket **b = realloc(r->b, cap * sizeof *b);
  if (!b) return LS_NOMEM;
  r->b = b;
  r->mem += (cap - r->capb) * (sizeof *f + sizeof *b);
  r->capb = cap;
  return LS_OK;
}

/* Split bucket i at entry m (0 <= m <= n): entries [m, n) move to a new
** bucket i+1 whose fence is e[m], or k when m == n.  LS_OK or LS_NOMEM. */
static int split(idx_rng *r, size_t i, uint32_t m, const idx_key *k) {
  int rc = dir_reserve(r);
  if (rc) return rc;
  rng_bucket *b = r->b[i];
  uint32_t nhigh = b->n - m;
  rng_bucket *h = rbucket_new(r, (uint32_t)ls_align_up(nhigh + 1, RGROW));
  if (!h) return LS_NOMEM;
  idx_key f = m < b->n ? (idx_key){ b->e[m].hi, b->e[m].lo } : *k;
  memcpy(h->e, b->e + m, nhigh * sizeof(idx_entry));
  if (r->track) memcpy(h->seq, b->seq + m, nhigh * sizeof(uint64_t));
  h->n = nhigh;
  b->n = m;
  memmove(r->fence + i + 2, r->fence + i + 1, (r->nb - i - 1) * sizeof *r->fence);
  memmove(r->b + i + 2, r->b + i + 1, (r->nb - i - 1) * sizeof *r->b);
  r->fence[i + 1] = f;
  r->b[i + 1] = h;
  r->nb++;
  uint32_t want = (uint32_t)ls_align_up(b->n + 1, RGROW);
  if (want < b->cap) rbucket_resize(r, i, want);                /* give back slack */
  return LS_OK;
}

static int put(idx_rng *r, const idx_key *k, uint64_t word, uint64_t seq, int newer, uint64_t *old,
               uint64_t *old_seq) {
  size_t i;
  int found;
  uint32_t j = locate(r, k, &i, &found);
  rng_bucket *b = r->b[i];
  if (found) {
    if (newer && b->seq[j] >= seq) {
      if (old) *old = b->e[j].word;
      if (old_seq) *old_seq = b->seq[j];
      return IDX_KEPT;
    }
    if (old) *old = b->e[j].word;
    if (old_seq) *old_seq = r->track ? b->seq[j] : 0;
    b->e[j].word = word;
    if (r->track) b->seq[j] = seq;
    return IDX_REPLACED;
  }
  if (b->n >= RSPLIT) {
    /* Split where the load goes: at an end, else in the middle.  A key
    ** below every key of bucket 0 splits it at 0 and stays in bucket 0. */
    uint32_t m = j == 0 || j == b->n ? j : b->n / 2;
    int rc = split(r, i, m, k);
    if (rc) return rc;
    j = locate(r, k, &i, &found);
    b = r->b[i];
  }
  if (b->n == b->cap) {
    int rc = rbucket_resize(r, i, b->cap + RGROW);
    if (rc) return rc;
    b = r->b[i];
  }
  memmove(b->e + j + 1, b->e + j, (b->n - j) * sizeof(idx_entry));
  b->e[j] = (idx_entry){ k->hi, k->lo, word };
  if (r->track) {
    memmove(b->seq + j + 1, b->seq + j, (b->n - j) * sizeof(uint64_t));
    b->seq[j] = seq;
  }
  b->n++;
  r->count++;
  return IDX_INSERTED;
}

int rng_put(idx_rng *r, const idx_key *k, uint64_t word, uint64_t *old) {
  return put(r, k, word, 0, 0, old, NULL);
}

int rng_put_newer(idx_rng *r, const idx_key *k, uint64_t word, uint64_t seq, uint64_t *old, uint64_t *old_seq) {
  if (!r->track) return LS_INVALID;
  return put(r, k, word, seq, 1, old, old_seq);
}

int rng_cas(idx_rng *r, const idx_key *k, uint64_t expect, uint64_t word) {
  size_t i;
  int found;
  uint32_t j = locate(r, k, &i, &found);
  if (!found || r->b[i]->e[j].word != expect) return 0;
  r->b[i]->e[j].word = word;
  return 1;
}

/* Remove bucket i (empty, or merged away) from the directory. */
static void dir_remove(idx_rng *r, size_t i) {
  rbucket_free(r, r->b[i]);
  memmove(r->fence + i, r->fence + i + 1, (r->nb - i - 1) * sizeof *r->fence);
  memmove(r->b + i, r->b + i + 1, (r->nb - i - 1) * sizeof *r->b);
  r->nb--;
}

/* Bucket i has become small: merge it into a neighbour that has room, or
** drop it when empty.  Failure to allocate leaves things as they are. */
static void shrink(idx_rng *r, size_t i) {
  rng_bucket *b = r->b[i];
  if (r->nb == 1) {
    if (b->cap >= 4 * RGROW && b->n + 2 * RGROW < b->cap)
      rbucket_resize(r, i, (uint32_t)ls_align_up(b->n + 1, RGROW));
    return;
  }
  if (b->n == 0) {
    /* Bucket 0's range also covers everything below: the next one takes it. */
    dir_remove(r, i);
    return;
  }
  /* Merge the right one of the pair (i-1, i) or (i, i+1) into the left. */
  size_t l = i > 0 && (i + 1 == r->nb || r->b[i - 1]->n <= r->b[i + 1]->n) ? i - 1 : i;
  rng_bucket *a = r->b[l], *c = r->b[l + 1];
  if (a->n + c->n > RSPLIT * 3 / 4) {
    if (b->cap >= 4 * RGROW && b->n + 2 * RGROW < b->cap)
      rbucket_resize(r, i, (uint32_t)ls_align_up(b->n + 1, RGROW));
    return;
  }
  if (a->cap < a->n + c->n && rbucket_resize(r, l, (uint32_t)ls_align_up(a->n + c->n + 1, RGROW))) return;
  a = r->b[l];
  memcpy(a->e + a->n, c->e, c->n * sizeof(idx_entry));
  if (r->track) memcpy(a->seq + a->n, c->seq, c->n * sizeof(uint64_t));
  a->n += c->n;
  dir_remove(r, l + 1);
}

static void erase_at(idx_rng *r, size_t i, uint32_t j) {
  rng_bucket *b = r->b[i];
  memmove(b->e + j, b->e + j + 1, (b->n - j - 1) * sizeof(idx_entry));
  if (r->track) memmove(b->seq + j, b->seq + j + 1, (b->n - j - 1) * sizeof(uint64_t));
  b->n--;
  r->count--;
  if (b->n < RSPLIT / 8) shrink(r, i);
}

int rng_erase(idx_rng *r, const idx_key *k, uint64_t *old) {
  size_t i;
  int found;
  uint32_t j = locate(r, k, &i, &found);
  if (!found) return 0;
  if (old) *old = r->b[i]->e[j].word;
  erase_at(r, i, j);
  return 1;
}

int rng_erase_if(idx_rng *r, const idx_key *k, uint64_t expect) {
  size_t i;
  int found;
  uint32_t j = locate(r, k, &i, &found);
  if (!found || r->b[i]->e[j].word != expect) return 0;
  erase_at(r, i, j);
  return 1;
}

size_t rng_range(const idx_rng *r, const idx_key *from, int after, idx_entry *out, size_t max) {
  size_t i, got = 0;
  int found;
  uint32_t j = locate(r, from, &i, &found);
  if (after && found) j++;
  for (; i < r->nb && got < max; i++, j = 0) {
    const rng_bucket *b = r->b[i];
    while (j < b->n && got < max) out[got++] = b->e[j++];
  }
  return got;
}

size_t rng_range_desc(const idx_rng *r, const idx_key *from, int before, idx_entry *out, size_t max) {
  size_t i, got = 0;
  int found;
  uint32_t j = locate(r, from, &i, &found);
  /* j: the first entry >= from; those below it come out, and from itself
  ** unless before. */
  if (found && !before) j++;
  for (;;) {
    const rng_bucket *b = r->b[i];
    while (j > 0 && got < max) out[got++] = b->e[--j];
    if (got == max || i == 0) break;
    i--;
    j = r->b[i]->n;
  }
  return got;
}

int rng_foreach(const idx_rng *r, int (*fn)(void *arg, const idx_entry *e, uint64_t seq), void *arg) {
  for (size_t i = 0; i < r->nb; i++) {
    const rng_bucket *b = r->b[i];
    for (uint32_t j = 0; j < b->n; j++) {
      int rc = fn(arg, &b->e[j], r->track ? b->seq[j] : 0);
      if (rc) return rc;
    }
  }
  return 0;
}

int rng_track_seq(idx_rng *r, int on) {
  if (!!on == r->track) return LS_OK;
  for (size_t i = 0; i < r->nb; i++) {
    rng_bucket *b = r->b[i];
    if (!on) {
      free(b->seq);
      b->seq = NULL;
    } else if (b->cap && !(b->seq = calloc(b->cap, sizeof(uint64_t)))) {
      for (size_t t = 0; t < i; t++) { free(r->b[t]->seq); r->b[t]->seq = NULL; }
      return LS_NOMEM;
    }
  }
  r->track = !!on;
  return LS_OK;
}

int rng_check(const idx_rng *r) {
  uint64_t total = 0;
  if (r->nb < 1) return 1;
  for (size_t i = 0; i < r->nb; i++) {
    const rng_bucket *b = r->b[i];
    if (i > 1 && !key_lt(r->fence[i - 1].hi, r->fence[i - 1].lo, r->fence[i].hi, r->fence[i].lo)) return 1;
    if (r->nb > 1 && b->n == 0) return 2;
    for (uint32_t j = 0; j < b->n; j++) {
      if (j && !key_lt(b->e[j - 1].hi, b->e[j - 1].lo, b->e[j].hi, b->e[j].lo)) return 3;
      if (i > 0 && key_lt(b->e[j].hi, b->e[j].lo, r->fence[i].hi, r->fence[i].lo)) return 4;
      if (i + 1 < r->nb && !key_lt(b->e[j].hi, b->e[j].lo, r->fence[i + 1].hi, r->fence[i + 1].lo)) return 4;
    }
    total += b->n;
  }
  return total == r->count ? 0 : 6;
}
