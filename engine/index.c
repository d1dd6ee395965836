/*
** index.c -- ordered in-memory index (see index.h for the contract).
**
** Layout.  dir[] has 2^gdepth slots.  Slot i covers the keys whose top
** gdepth bits of hi equal i.  A bucket has a local depth d <= gdepth: all
** its keys share their top d bits, and it is referenced by the 2^(gdepth-d)
** consecutive slots that share those bits.  Entries inside a bucket are
** sorted by (hi, lo).
**
** Invariants (checked by idx_check in debug builds):
**   1. every slot points at a bucket; the slots of a bucket are contiguous
**      and aligned to 2^(gdepth - depth);
**   2. all keys of a bucket have the bucket's prefix; entries are strictly
**      increasing;
**   3. count == sum of bucket sizes; with tracking, seq[i] belongs to e[i].
**
** Growth.  A bucket that reaches SPLIT entries splits on bit (63 - d),
** doubling the directory first if d == gdepth.  The directory doubles only
** while it has fewer slots than count / 4 + 1: keys that share an unusually
** long prefix (only an attacker can produce them, tokens are hash values)
** then make a larger sorted bucket instead of an unbounded directory.
** Entry arrays grow in steps of GROW entries to keep slack small.
*/
#include "index_int.h"
#include "ls_int.h"

#include <stdatomic.h>
#include <stdlib.h>

#define SPLIT 128u                 /* entries that make a bucket split */
#define GROW  8u                   /* entry-array growth step */

/* A bucket is one allocation: this header, then the entries, so that a
** probe touches the header and the first entries in the same cache line. */
typedef struct idx_bucket {
  uint32_t n, cap;                 /* entries used / allocated */
  uint32_t depth;                  /* local depth: bits of prefix shared */
  uint32_t pad;
  uint64_t *seq;                   /* sequences beside e (tracking only) */
  idx_entry e[];                   /* sorted entries */
} idx_bucket;

struct ls_index {
  idx_rng *rng;                    /* key-ordered: the range index does it all */
  idx_bucket **dir;                /* 2^gdepth slots */
  uint32_t gdepth;                 /* global depth */
  int track;                       /* sequences kept beside entries */
  uint64_t count;                  /* entries */
  uint64_t nbuckets;
  size_t mem;                      /* bytes allocated, by our own count */
};

static inline int key_cmp(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo) {
  if (ahi != bhi) return ahi < bhi ? -1 : 1;
  if (alo != blo) return alo < blo ? -1 : 1;
  return 0;
}

static inline int entry_lt(const idx_entry *e, uint64_t hi, uint64_t lo) {
  return e->hi < hi || (e->hi == hi && e->lo < lo);
}

static inline size_t slot_of(const ls_index *ix, uint64_t hi) {
  return ix->gdepth ? (size_t)(hi >> (64 - ix->gdepth)) : 0;
}

/* Where a key of this hi would be among b's n entries if they were spread
** evenly below the bucket's prefix (they are hash values): in [0, n). */
static inline uint32_t first_guess(const idx_bucket *b, uint64_t hi) {
  uint64_t rel = b->depth == 0 ? hi : b->depth >= 64 ? 0 : hi << b->depth;
  return (uint32_t)(((rel >> 32) * (uint64_t)b->n) >> 32);
}

/* Position of the first entry >= (hi, lo) in b.  Keys are hash values,
** uniform below the bucket's prefix, so the position is first estimated by
** interpolation, then bracketed by galloping and finished by bisection:
** typically one or two cache lines instead of log2(n) scattered probes. */
static uint32_t lower_bound(const idx_bucket *b, uint64_t hi, uint64_t lo) {
  uint32_t n = b->n;
  if (n == 0) return 0;
  uint32_t est = first_guess(b, hi);
  uint32_t l, r;                   /* answer in [l, r] */
  if (entry_lt(&b->e[est], hi, lo)) {
    uint32_t step = 1;
    l = est + 1;
    for (;;) {
      uint32_t j = l + step - 1;
      if (j >= n) { r = n; break; }
      if (!entry_lt(&b->e[j], hi, lo)) { r = j; break; }
      l = j + 1;
      step *= 2;
    }
  } else {
    uint32_t step = 1;
    r = est;
    for (;;) {
      if (r < step) { l = 0; break; }
      uint32_t j = r - step;
      if (entry_lt(&b->e[j], hi, lo)) { l = j + 1; break; }
      r = j;
      step *= 2;
    }
  }
  while (l < r) {
    uint32_t m = (l + r) / 2;
    if (entry_lt(&b->e[m], hi, lo)) l = m + 1; else r = m;
  }
  return l;
}

void idx_key_from_digest(idx_key *k, const uint8_t digest[20]) {
  k->hi = ls_getbe64(digest) ^ (1ull << 63);
  k->lo = ls_getbe64(digest + 8);
}

static size_t bucket_bytes(uint32_t cap) { return sizeof(idx_bucket) + cap * sizeof(idx_entry); }

/* Tests: the next n growths of any index fail as if out of memory. */
static _Atomic int fail_growths;
void idx_test_fail_growths(int n) { atomic_store(&fail_growths, n); }
int idx_growth_fails(void) {
  int n = atomic_load(&fail_growths);
  while (n > 0 && !atomic_compare_exchange_weak(&fail_growths, &n, n - 1)) {}
  return n > 0;
}

static idx_bucket *bucket_new(ls_index *ix, uint32_t depth, uint32_t cap) {
  idx_bucket *b = idx_growth_fails() ? NULL : malloc(bucket_bytes(cap));
  if (!b) return NULL;
  b->n = 0;
  b->cap = cap;
  b->depth = depth;
  b->pad = 0;
  b->seq = NULL;
  if (ix->track && cap) {
    b->seq = malloc(cap * sizeof(uint64_t));
    if (!b->seq) { free(b); return NULL; }
  }
  ix->nbuckets++;
  ix->mem += bucket_bytes(cap);
  return b;
}

static void bucket_free(ls_index *ix, idx_bucket *b) {
  ix->mem -= bucket_bytes(b->cap);
  ix->nbuckets--;
  free(b->seq);
  free(b);
}

/* Point the directory slots of the bucket that slot s belongs to at b. */
static void dir_repoint(ls_index *ix, size_t s, idx_bucket *b) {
  size_t span = (size_t)1 << (ix->gdepth - b->depth);
  size_t start = s & ~(span - 1);
  for (size_t i = start; i < start + span; i++) ix->dir[i] = b;
}

/* Set the capacity of the bucket at slot s to cap (>= n); it may move.
** Growing can fail (LS_NOMEM, bucket unchanged); a failed shrink keeps the
** larger bucket and is not an error. */
static int bucket_resize(ls_index *ix, size_t s, uint32_t cap) {
  idx_bucket *b = ix->dir[s];
  if (cap == b->cap) return LS_OK;
  if (cap > b->cap && idx_growth_fails()) return LS_NOMEM;
  uint32_t oldcap = b->cap;
  if (ix->track) {
    uint64_t *q = cap ? realloc(b->seq, cap * sizeof(uint64_t)) : NULL;
    if (cap && !q) return cap > oldcap ? LS_NOMEM : LS_OK;
    if (!cap) free(b->seq);
    b->seq = q;
  }
  idx_bucket *nb = realloc(b, bucket_bytes(cap));
  if (!nb) return cap > oldcap ? LS_NOMEM : LS_OK;   /* a grown seq array is harmless */
  nb->cap = cap;
  ix->mem = ix->mem - bucket_bytes(oldcap) + bucket_bytes(cap);
  if (nb != b) dir_repoint(ix, s, nb);
  return LS_OK;
}

ls_index *idx_new(void) {
  ls_index *ix = calloc(1, sizeof *ix);
  if (!ix) return NULL;
  ix->dir = malloc(sizeof(idx_bucket *));
  if (!ix->dir) { free(ix); return NULL; }
  ix->dir[0] = bucket_new(ix, 0, 0);
  if (!ix->dir[0]) { free(ix->dir); free(ix); return NULL; }
  ix->mem += sizeof *ix + sizeof(idx_bucket *);
  return ix;
}

ls_index *idx_new_ordered(void) {
  ls_index *ix = calloc(1, sizeof *ix);
  if (!ix) return NULL;
  if (!(ix->rng = rng_new())) { free(ix); return NULL; }
  return ix;
}

int idx_is_ordered(const ls_index *ix) { return ix->rng != NULL; }

/* Free every bucket once (a bucket appears in several slots). */
static void free_buckets(ls_index *ix) {
  size_t nslots = (size_t)1 << ix->gdepth;
  for (size_t i = 0; i < nslots;) {
    idx_bucket *b = ix->dir[i];
    size_t span = (size_t)1 << (ix->gdepth - b->depth);
    bucket_free(ix, b);
    i += span;
  }
}

void idx_free(ls_index *ix) {
  if (!ix) return;
  if (ix->rng) {
    assert(rng_check(ix->rng) == 0);
    rng_free(ix->rng);
    free(ix);
    return;
  }
  assert(idx_check(ix) == 0);
  free_buckets(ix);
  free(ix->dir);
  free(ix);
}

void idx_clear(ls_index *ix) {
  if (ix->rng) { rng_clear(ix->rng); return; }
  idx_bucket *fresh = bucket_new(ix, 0, 0);
  if (!fresh) {
    /* Out of memory: empty every bucket in place, which is a valid index. */
    size_t nslots = (size_t)1 << ix->gdepth;
    for (size_t s = 0; s < nslots;) {
      idx_bucket *b = ix->dir[s];
      b->n = 0;
      s += (size_t)1 << (ix->gdepth - b->depth);
    }
    ix->count = 0;
    return;
  }
  free_buckets(ix);
  idx_bucket **d = realloc(ix->dir, sizeof(idx_bucket *));
  if (d) ix->dir = d;
  ix->gdepth = 0;
  ix->count = 0;
  ix->mem = sizeof *ix + sizeof(idx_bucket *) + sizeof *fresh;
  ix->nbuckets = 1;
  ix->dir[0] = fresh;
}

uint64_t idx_count(const ls_index *ix) { return ix->rng ? rng_count(ix->rng) : ix->count; }
size_t idx_memory(const ls_index *ix) { return ix->rng ? sizeof *ix + rng_memory(ix->rng) : ix->mem; }

void idx_prefetch(const ls_index *ix, const idx_key *k, int stage) {
  if (ix->rng) { rng_prefetch(ix->rng, k, stage); return; }
  const idx_bucket *b = ix->dir[slot_of(ix, k->hi)];
  if (stage == 0) {
    __builtin_prefetch(b);
    return;
  }
  if (!b->n) return;
  /* lower_bound's first guess, and the line after it (galloping). */
  const idx_entry *at = &b->e[first_guess(b, k->hi)];
  __builtin_prefetch(at);
  __builtin_prefetch((const char *)at + 64);
}

int idx_get(const ls_index *ix, const idx_key *k, uint64_t *word) {
  if (ix->rng) return rng_get(ix->rng, k, word);
  const idx_bucket *b = ix->dir[slot_of(ix, k->hi)];
  uint32_t i = lower_bound(b, k->hi, k->lo);
  if (i < b->n && b->e[i].hi == k->hi && b->e[i].lo == k->lo) {
    if (word) *word = b->e[i].word;
    return 1;
  }
  return 0;
}

uint64_t idx_get_seq(const ls_index *ix, const idx_key *k) {
  if (ix->rng) return rng_get_seq(ix->rng, k);
  if (!ix->track) return 0;
  const idx_bucket *b = ix->dir[slot_of(ix, k->hi)];
  uint32_t i = lower_bound(b, k->hi, k->lo);
  if (i < b->n && b->e[i].hi == k->hi && b->e[i].lo == k->lo) return b->seq[i];
  return 0;
}

/* Double the directory.  LS_OK or LS_NOMEM. */
static int dir_double(ls_index *ix) {
  size_t n = (size_t)1 << ix->gdepth;
  idx_bucket **d = malloc(2 * n * sizeof *d);
  if (!d) return LS_NOMEM;
  for (size_t i = 0; i < n; i++) d[2 * i] = d[2 * i + 1] = ix->dir[i];
  free(ix->dir);
  ix->dir = d;
  ix->gdepth++;
  ix->mem += n * sizeof *d;
  return LS_OK;
}

/* Split bucket b (at slot s) on its next bit.  Returns LS_OK, LS_NOMEM, or
** 1 if the bucket may not split (directory limit or depth 64). */
static int bucket_split(ls_index *ix, idx_bucket *b, size_t s) {
  if (b->depth >= 64) return 1;
  if (b->depth == ix->gdepth) {
    if (((uint64_t)1 << ix->gdepth) > ix->count / 4 + 1 || ix->gdepth >= 40) return 1;
    int rc = dir_double(ix);
    if (rc) return rc;
    s = 2 * s;
  }
  uint32_t d = b->depth;
  uint64_t bit = 1ull << (63 - d);
  /* Entries are sorted and share d top bits: those with the next bit set
  ** form the tail. */
  uint32_t l = 0, r = b->n;
  while (l < r) {
    uint32_t m = (l + r) / 2;
    if (b->e[m].hi & bit) r = m; else l = m + 1;
  }
  uint32_t nhigh = b->n - l;
  idx_bucket *h = bucket_new(ix, d + 1, nhigh ? (uint32_t)ls_align_up(nhigh + 1, GROW) : 0);
  if (!h) return LS_NOMEM;
  if (nhigh) {
    memcpy(h->e, b->e + l, nhigh * sizeof(idx_entry));
    if (ix->track) memcpy(h->seq, b->seq + l, nhigh * sizeof(uint64_t));
  }
  h->n = nhigh;
  b->n = l;
  b->depth = d + 1;
  /* The slots of b: span 2^(gdepth-d) starting at s aligned down. */
  size_t span = (size_t)1 << (ix->gdepth - d);
  size_t start = s & ~(span - 1);
  for (size_t i = start + span / 2; i < start + span; i++) ix->dir[i] = h;
  /* Give back slack; failure to shrink is harmless. */
  bucket_resize(ix, start, b->n ? (uint32_t)ls_align_up(b->n + 1, GROW) : 0);
  return LS_OK;
}

/* Find the slot for k, making room for one more entry in its bucket.
** Returns the bucket via *out, or LS_NOMEM. */
static int bucket_for_insert(ls_index *ix, const idx_key *k, idx_bucket **out) {
  for (;;) {
    size_t s = slot_of(ix, k->hi);
    idx_bucket *b = ix->dir[s];
    if (b->n >= SPLIT) {
      int rc = bucket_split(ix, b, s);
      if (rc < 0) return rc;
      if (rc == 0) continue;       /* split: find the new home */
    }
    if (b->n == b->cap) {
      int rc = bucket_resize(ix, s, b->cap + GROW);
      if (rc) return rc;
      b = ix->dir[s];
    }
    *out = b;
    return LS_OK;
  }
}

static int put(ls_index *ix, const idx_key *k, uint64_t word, uint64_t seq, int newer, uint64_t *old,
               uint64_t *old_seq) {
  idx_bucket *b = ix->dir[slot_of(ix, k->hi)];
  uint32_t i = lower_bound(b, k->hi, k->lo);
  if (i < b->n && b->e[i].hi == k->hi && b->e[i].lo == k->lo) {
    if (newer && b->seq[i] >= seq) {
      if (old) *old = b->e[i].word;
      if (old_seq) *old_seq = b->seq[i];
      return IDX_KEPT;
    }
    if (old) *old = b->e[i].word;
    if (old_seq) *old_seq = ix->track ? b->seq[i] : 0;
    b->e[i].word = word;
    if (ix->track) b->seq[i] = seq;
    return IDX_REPLACED;
  }
  int rc = bucket_for_insert(ix, k, &b);
  if (rc) return rc;
  i = lower_bound(b, k->hi, k->lo);
  memmove(b->e + i + 1, b->e + i, (b->n - i) * sizeof(idx_entry));
  b->e[i].hi = k->hi;
  b->e[i].lo = k->lo;
  b->e[i].word = word;
  if (ix->track) {
    memmove(b->seq + i + 1, b->seq + i, (b->n - i) * sizeof(uint64_t));
    b->seq[i] = seq;
  }
  b->n++;
  ix->count++;
  /* Invariants (top of the file): sorted within the bucket, in its slots. */
  assert(i == 0 || key_cmp(b->e[i - 1].hi, b->e[i - 1].lo, k->hi, k->lo) < 0);
  assert(i + 1 == b->n || key_cmp(k->hi, k->lo, b->e[i + 1].hi, b->e[i + 1].lo) < 0);
  assert(ix->dir[slot_of(ix, k->hi)] == b);
  return IDX_INSERTED;
}

int idx_put(ls_index *ix, const idx_key *k, uint64_t word, uint64_t *old) {
  if (ix->rng) return rng_put(ix->rng, k, word, old);
  return put(ix, k, word, 0, 0, old, NULL);
}

int idx_put_newer(ls_index *ix, const idx_key *k, uint64_t word, uint64_t seq, uint64_t *old,
                  uint64_t *old_seq) {
  if (ix->rng) return rng_put_newer(ix->rng, k, word, seq, old, old_seq);
  if (!ix->track) return LS_INVALID;
  return put(ix, k, word, seq, 1, old, old_seq);
}

int idx_cas(ls_index *ix, const idx_key *k, uint64_t expect, uint64_t word) {
  if (ix->rng) return rng_cas(ix->rng, k, expect, word);
  idx_bucket *b = ix->dir[slot_of(ix, k->hi)];
  uint32_t i = lower_bound(b, k->hi, k->lo);
  if (i < b->n && b->e[i].hi == k->hi && b->e[i].lo == k->lo && b->e[i].word == expect) {
    b->e[i].word = word;
    return 1;
  }
  return 0;
}

static void erase_at(ls_index *ix, size_t s, idx_bucket *b, uint32_t i) {
  memmove(b->e + i, b->e + i + 1, (b->n - i - 1) * sizeof(idx_entry));
  if (ix->track) memmove(b->seq + i, b->seq + i + 1, (b->n - i - 1) * sizeof(uint64_t));
  b->n--;
  ix->count--;
  /* Return memory when a bucket has become mostly empty. */
  if (b->cap >= 4 * GROW && b->n + 2 * GROW < b->cap)
    bucket_resize(ix, s, (uint32_t)ls_align_up(b->n + 1, GROW));
}

int idx_erase(ls_index *ix, const idx_key *k, uint64_t *old) {
  if (ix->rng) return rng_erase(ix->rng, k, old);
  size_t s = slot_of(ix, k->hi);
  idx_bucket *b = ix->dir[s];
  uint32_t i = lower_bound(b, k->hi, k->lo);
  if (i < b->n && b->e[i].hi == k->hi && b->e[i].lo == k->lo) {
    if (old) *old = b->e[i].word;
    erase_at(ix, s, b, i);
    return 1;
  }
  return 0;
}

int idx_erase_if(ls_index *ix, const idx_key *k, uint64_t expect) {
  if (ix->rng) return rng_erase_if(ix->rng, k, expect);
  size_t s = slot_of(ix, k->hi);
  idx_bucket *b = ix->dir[s];
  uint32_t i = lower_bound(b, k->hi, k->lo);
  if (i < b->n && b->e[i].hi == k->hi && b->e[i].lo == k->lo && b->e[i].word == expect) {
    erase_at(ix, s, b, i);
    return 1;
  }
  return 0;
}

size_t idx_range(const ls_index *ix, const idx_key *from, int after, idx_entry *out, size_t max) {
  if (ix->rng) return rng_range(ix->rng, from, after, out, max);
  size_t got = 0, nslots = (size_t)1 << ix->gdepth;
  size_t s = slot_of(ix, from->hi);
  const idx_bucket *b = ix->dir[s];
  uint32_t i = lower_bound(b, from->hi, from->lo);
  if (after && i < b->n && b->e[i].hi == from->hi && b->e[i].lo == from->lo) i++;
  for (;;) {
    while (i < b->n && got < max) out[got++] = b->e[i++];
    if (got == max) break;
    /* Next bucket: skip the remaining slots of this one. */
    size_t span = (size_t)1 << (ix->gdepth - b->depth);
    s = (s & ~(span - 1)) + span;
    if (s >= nslots) break;
    b = ix->dir[s];
    i = 0;
  }
  return got;
}

size_t idx_range_desc(const ls_index *ix, const idx_key *from, int before, idx_entry *out, size_t max) {
  if (ix->rng) return rng_range_desc(ix->rng, from, before, out, max);
  size_t got = 0, s = slot_of(ix, from->hi);
  const idx_bucket *b = ix->dir[s];
  uint32_t i = lower_bound(b, from->hi, from->lo);
  if (!before && i < b->n && b->e[i].hi == from->hi && b->e[i].lo == from->lo) i++;
  for (;;) {
    while (i > 0 && got < max) out[got++] = b->e[--i];
    if (got == max) break;
    /* Previous bucket: the slot before this one's first. */
    size_t span = (size_t)1 << (ix->gdepth - b->depth);
    size_t start = s & ~(span - 1);
    if (start == 0) break;
    s = start - 1;
    b = ix->dir[s];
    i = b->n;
  }
  return got;
}

int idx_foreach(const ls_index *ix, int (*fn)(void *arg, const idx_entry *e, uint64_t seq), void *arg) {
  if (ix->rng) return rng_foreach(ix->rng, fn, arg);
  assert(idx_check(ix) == 0);
  size_t nslots = (size_t)1 << ix->gdepth;
  for (size_t s = 0; s < nslots;) {
    const idx_bucket *b = ix->dir[s];
    for (uint32_t i = 0; i < b->n; i++) {
      int rc = fn(arg, &b->e[i], ix->track ? b->seq[i] : 0);
      if (rc) return rc;
    }
    s += (size_t)1 << (ix->gdepth - b->depth);
  }
  return 0;
}

int idx_track_seq(ls_index *ix, int on) {
  if (ix->rng) return rng_track_seq(ix->rng, on);
  assert(idx_check(ix) == 0);
  if (!!on == ix->track) return LS_OK;
  size_t nslots = (size_t)1 << ix->gdepth;
  for (size_t s = 0; s < nslots;) {
    idx_bucket *b = ix->dir[s];
    if (on) {
      if (b->cap) {
        b->seq = calloc(b->cap, sizeof(uint64_t));
        if (!b->seq) {
          /* Undo the buckets done so far. */
          for (size_t t = 0; t < s;) {
            idx_bucket *c = ix->dir[t];
            free(c->seq); c->seq = NULL;
            t += (size_t)1 << (ix->gdepth - c->depth);
          }
          return LS_NOMEM;
        }
      }
    } else {
      free(b->seq);
      b->seq = NULL;
    }
    s += (size_t)1 << (ix->gdepth - b->depth);
  }
  ix->track = !!on;
  return LS_OK;
}

/* Verify the invariants listed at the top of the file.  Returns 0 if ok.
** The test builds assert it whenever a whole index is walked anyway (a
** call costs a walk of the index; compiled in every build for the tests). */
int idx_check(const ls_index *ix) {
  if (ix->rng) return rng_check(ix->rng);
  size_t nslots = (size_t)1 << ix->gdepth;
  uint64_t total = 0;
  for (size_t s = 0; s < nslots;) {
    const idx_bucket *b = ix->dir[s];
    if (b->depth > ix->gdepth) return 1;
    size_t span = (size_t)1 << (ix->gdepth - b->depth);
    if (s & (span - 1)) return 2;
    for (size_t t = s; t < s + span; t++) if (ix->dir[t] != b) return 3;
    for (uint32_t i = 0; i < b->n; i++) {
      if (slot_of(ix, b->e[i].hi) < s || slot_of(ix, b->e[i].hi) >= s + span) return 4;
      if (i && key_cmp(b->e[i - 1].hi, b->e[i - 1].lo, b->e[i].hi, b->e[i].lo) >= 0) return 5;
    }
    total += b->n;
    s += span;
  }
  return total == ix->count ? 0 : 6;
}
