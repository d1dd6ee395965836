/*
** test_index.c -- unit tests of the in-memory index (index.c).
**
** The index is checked only through its public API: every test keeps a
** reference (a sorted array of the keys it inserted, or a per-key model)
** and compares lookups, ordered ranges and full iterations against it.
** idx_check (index.c, -DLS_DEBUG_INDEX) is not used: the library this test
** links against is built without it.
**
** Keys are random unless a test is about adversarial ones: many keys that
** share a long prefix of hi, or the same hi with different lo, and the
** extreme keys hi == 0 and hi == UINT64_MAX.
*/
#include "index.h"
#include "ls_int.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
  return p;
}

static int key_cmp(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo) {
  if (ahi != bhi) return ahi < bhi ? -1 : 1;
  if (alo != blo) return alo < blo ? -1 : 1;
  return 0;
}

static int entry_cmp(const void *a, const void *b) {
  const idx_entry *x = a, *y = b;
  return key_cmp(x->hi, x->lo, y->hi, y->lo);
}

/* Sort e[0..n) by key and drop duplicate keys; returns the new count. */
static size_t sort_unique(idx_entry *e, size_t n) {
  qsort(e, n, sizeof *e, entry_cmp);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (m == 0 || entry_cmp(&e[m - 1], &e[i]) != 0) e[m++] = e[i];
  return m;
}

/* n random entries (sorted, unique); words are random. */
static idx_entry *random_entries(size_t n, uint64_t *rng, size_t *got) {
  idx_entry *e = xmalloc(n * sizeof *e);
  for (size_t i = 0; i < n; i++) {
    e[i].hi = unit_rand(rng);
    e[i].lo = unit_rand(rng);
    e[i].word = unit_rand(rng);
  }
  *got = sort_unique(e, n);
  return e;
}

static idx_key key_of(const idx_entry *e) {
  idx_key k = {e->hi, e->lo};
  return k;
}

/* Insert e[0..n) in a random order. */
static void insert_shuffled(ls_index *ix, const idx_entry *e, size_t n, uint64_t *rng) {
  size_t *order = xmalloc(n * sizeof *order);
  for (size_t i = 0; i < n; i++) order[i] = i;
  for (size_t i = n; i > 1; i--) {
    size_t j = unit_rand(rng) % i, t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    idx_key k = key_of(&e[order[i]]);
    int rc = idx_put(ix, &k, e[order[i]].word, NULL);
    if (rc != 0 && bad++ < 5) unit_fail(__FILE__, __LINE__, "idx_put of a new key returned %d", rc);
  }
  free(order);
}

/* The whole index equals want[0..n) (keys and words, in order), checked
** through idx_range in batches of `batch` (continuing with after=1 from
** the last key, or after=0 from its successor) and idx_get. */
static void check_range_all(const ls_index *ix, const idx_entry *want, size_t n, size_t batch, int after) {
  idx_entry *out = xmalloc((batch + 1) * sizeof *out);
  idx_key from = {0, 0};
  size_t pos = 0, calls = 0;
  int first = 1, bad = 0;
  for (;;) {
    /* Sentinel after the batch: idx_range must not write past max. */
    out[batch].hi = 0xDEAD; out[batch].lo = 0xBEEF; out[batch].word = 0xF00D;
    size_t got = idx_range(ix, &from, first ? 0 : after, out, batch);
    calls++;
    if (out[batch].hi != 0xDEAD || out[batch].lo != 0xBEEF || out[batch].word != 0xF00D) {
      unit_fail(__FILE__, __LINE__, "idx_range wrote past max (%zu)", batch);
      break;
    }
    if (got > batch) { unit_fail(__FILE__, __LINE__, "idx_range returned %zu > max %zu", got, batch); break; }
    for (size_t i = 0; i < got; i++, pos++) {
      if (pos >= n) {
        if (bad++ < 5) unit_fail(__FILE__, __LINE__, "batch %zu after %d: extra entry %zu", batch, after, pos);
        continue;
      }
      if ((out[i].hi != want[pos].hi || out[i].lo != want[pos].lo || out[i].word != want[pos].word) && bad++ < 5)
        unit_fail(__FILE__, __LINE__,
                  "batch %zu after %d: entry %zu: expected (%016" PRIx64 ",%016" PRIx64 ")=%" PRIx64
                  ", got (%016" PRIx64 ",%016" PRIx64 ")=%" PRIx64,
                  batch, after, pos, want[pos].hi, want[pos].lo, want[pos].word, out[i].hi, out[i].lo, out[i].word);
    }
    if (got < batch) break;
    first = 0;
    from.hi = out[got - 1].hi;
    from.lo = out[got - 1].lo;
    if (!after) {                  /* the successor of the last key */
      if (++from.lo == 0 && ++from.hi == 0) break;   /* past (max, max) */
    }
    if (calls > n + 2) { unit_fail(__FILE__, __LINE__, "idx_range does not advance"); break; }
  }
  if (pos != n) unit_fail(__FILE__, __LINE__, "batch %zu after %d: expected %zu entries, got %zu", batch, after, n, pos);
  free(out);
}

typedef struct foreach_state {
  const idx_entry *want;
  size_t n, pos;
  int bad;
  size_t stop_at;                  /* return 1 at this position (SIZE_MAX: never) */
  const uint64_t *want_seq;        /* expected sequences, or NULL */
} foreach_state;

static int foreach_fn(void *arg, const idx_entry *e, uint64_t seq) {
  foreach_state *st = arg;
  size_t i = st->pos++;
  if (i >= st->n) { st->bad++; return 0; }
  if (e->hi != st->want[i].hi || e->lo != st->want[i].lo || e->word != st->want[i].word) {
    if (st->bad++ < 5)
      unit_fail(__FILE__, __LINE__, "idx_foreach entry %zu: expected (%016" PRIx64 ",%016" PRIx64 "), got (%016"
                PRIx64 ",%016" PRIx64 ")", i, st->want[i].hi, st->want[i].lo, e->hi, e->lo);
  }
  if (st->want_seq && seq != st->want_seq[i] && st->bad++ < 5)
    unit_fail(__FILE__, __LINE__, "idx_foreach entry %zu: expected seq %" PRIu64 ", got %" PRIu64, i,
              st->want_seq[i], seq);
  return i == st->stop_at ? 7 : 0;
}

/* idx_foreach visits want[0..n) in order (with sequences if want_seq). */
static void check_foreach(const ls_index *ix, const idx_entry *want, size_t n, const uint64_t *want_seq) {
  foreach_state st = {want, n, 0, 0, SIZE_MAX, want_seq};
  CHECK_INT(idx_foreach(ix, foreach_fn, &st), 0);
  CHECK_U64(st.pos, n);
  CHECK_INT(st.bad, 0);
}

/* Every key of want is found with its word. */
static void check_gets(const ls_index *ix, const idx_entry *want, size_t n) {
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    idx_key k = key_of(&want[i]);
    uint64_t w = ~want[i].word;
    if ((!idx_get(ix, &k, &w) || w != want[i].word) && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "key %zu (%016" PRIx64 ",%016" PRIx64 "): expected word %" PRIx64 ", got %" PRIx64,
                i, want[i].hi, want[i].lo, want[i].word, w);
  }
  CHECK_U64(idx_count(ix), n);
}

/* ------------------------------------------------------------------------
** Basic operations.
*/

static void t_basic(void) {
  ls_index *ix = idx_new();
  CHECK(ix != NULL);
  size_t fresh_mem = idx_memory(ix);
  CHECK(fresh_mem > 0);
  CHECK_U64(idx_count(ix), 0);

  idx_key a = {0x1234, 0x5678}, b = {0x1234, 0x5679}, c = {UINT64_MAX, 0};
  uint64_t w = 99, old = 0;
  CHECK_INT(idx_get(ix, &a, &w), 0);
  CHECK_U64(w, 99);                                /* untouched when absent */
  CHECK_INT(idx_put(ix, &a, 10, &old), 0);
  CHECK_INT(idx_get(ix, &a, &w), 1);
  CHECK_U64(w, 10);
  CHECK_INT(idx_get(ix, &a, NULL), 1);
  CHECK_INT(idx_get(ix, &b, &w), 0);
  CHECK_U64(idx_count(ix), 1);
  /* Replace returns the old word. */
  CHECK_INT(idx_put(ix, &a, 11, &old), 1);
  CHECK_U64(old, 10);
  CHECK_INT(idx_put(ix, &a, 12, NULL), 1);
  CHECK_INT(idx_get(ix, &a, &w), 1);
  CHECK_U64(w, 12);
  CHECK_U64(idx_count(ix), 1);
  CHECK_INT(idx_put(ix, &b, 20, NULL), 0);
  CHECK_INT(idx_put(ix, &c, 30, NULL), 0);
  CHECK_U64(idx_count(ix), 3);
  CHECK(idx_memory(ix) > 0);

  /* Compare-and-swap. */
  CHECK_INT(idx_cas(ix, &a, 11, 13), 0);           /* wrong expected word */
  CHECK_INT(idx_get(ix, &a, &w), 1);
  CHECK_U64(w, 12);
  CHECK_INT(idx_cas(ix, &a, 12, 13), 1);
  CHECK_INT(idx_get(ix, &a, &w), 1);
  CHECK_U64(w, 13);
  idx_key absent = {0x1234, 0x5677};
  CHECK_INT(idx_cas(ix, &absent, 0, 1), 0);        /* absent key: not inserted */
  CHECK_INT(idx_get(ix, &absent, &w), 0);
  CHECK_U64(idx_count(ix), 3);

  /* Erase. */
  CHECK_INT(idx_erase(ix, &absent, &old), 0);
  old = 777;
  CHECK_INT(idx_erase(ix, &b, &old), 1);
  CHECK_U64(old, 20);
  CHECK_INT(idx_get(ix, &b, &w), 0);
  CHECK_INT(idx_erase(ix, &b, &old), 0);
  CHECK_U64(idx_count(ix), 2);
  CHECK_INT(idx_erase_if(ix, &c, 31), 0);          /* wrong word */
  CHECK_INT(idx_get(ix, &c, &w), 1);
  CHECK_INT(idx_erase_if(ix, &absent, 0), 0);
  CHECK_INT(idx_erase_if(ix, &c, 30), 1);
  CHECK_INT(idx_get(ix, &c, &w), 0);
  CHECK_INT(idx_erase_if(ix, &c, 30), 0);
  CHECK_U64(idx_count(ix), 1);
  CHECK_INT(idx_erase(ix, &a, NULL), 1);
  CHECK_U64(idx_count(ix), 0);
  /* A word of 0 and of all ones are ordinary values. */
  CHECK_INT(idx_put(ix, &a, 0, NULL), 0);
  CHECK_INT(idx_cas(ix, &a, 0, UINT64_MAX), 1);
  CHECK_INT(idx_get(ix, &a, &w), 1);
  CHECK_U64(w, UINT64_MAX);
  CHECK_INT(idx_erase_if(ix, &a, UINT64_MAX), 1);

  /* Clear: many keys, then nothing; memory back to that of a new index. */
  uint64_t rng = 42;
  size_t n;
  idx_entry *e = random_entries(20000, &rng, &n);
  insert_shuffled(ix, e, n, &rng);
  CHECK_U64(idx_count(ix), n);
  size_t big_mem = idx_memory(ix);
  CHECK(big_mem > fresh_mem + n * sizeof(idx_entry) / 2);
  idx_clear(ix);
  CHECK_U64(idx_count(ix), 0);
  CHECK_U64(idx_memory(ix), fresh_mem);
  idx_key k0 = key_of(&e[0]);
  CHECK_INT(idx_get(ix, &k0, &w), 0);
  idx_entry out[4];
  idx_key zero = {0, 0};
  CHECK_U64(idx_range(ix, &zero, 0, out, 4), 0);
  check_foreach(ix, e, 0, NULL);
  /* Usable after clear. */
  insert_shuffled(ix, e, n, &rng);
  check_gets(ix, e, n);
  check_range_all(ix, e, n, 100, 1);
  idx_clear(ix);
  idx_clear(ix);                                   /* clearing an empty index */
  CHECK_U64(idx_count(ix), 0);
  CHECK_U64(idx_memory(ix), fresh_mem);
  free(e);
  idx_free(ix);
  idx_free(NULL);
}

/* idx_key_from_digest and the token mapping agree with the engine's key
** tokens: unsigned order of hi is signed order of the token. */
static void t_key_token(void) {
  CHECK_U64(idx_hi_of_token(INT64_MIN), 0);
  CHECK_U64(idx_hi_of_token(INT64_MAX), UINT64_MAX);
  CHECK_U64(idx_hi_of_token(0), 1ull << 63);
  CHECK_U64(idx_hi_of_token(-1), (1ull << 63) - 1);
  CHECK(idx_key_token(0) == INT64_MIN);
  CHECK(idx_key_token(UINT64_MAX) == INT64_MAX);
  uint8_t d[20];
  for (int i = 0; i < 20; i++) d[i] = (uint8_t)(i + 1);
  idx_key k;
  idx_key_from_digest(&k, d);
  CHECK_U64(k.hi, 0x0102030405060708ull ^ (1ull << 63));
  CHECK_U64(k.lo, 0x090A0B0C0D0E0F10ull);
  CHECK(idx_key_token(k.hi) == 0x0102030405060708ll);
  uint64_t prev_hi = 0;
  int64_t prev_tok = INT64_MIN;
  int first = 1;
  /* Sorted by hi, tokens of real keys are ascending too. */
  idx_entry *e = xmalloc(1000 * sizeof *e);
  for (int i = 0; i < 1000; i++) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "key-%d", i);
    ls_key lk;
    ls_key_set(&lk, buf, (uint32_t)len);
    idx_key_from_digest(&k, lk.digest);
    if (idx_key_token(k.hi) != ls_key_token(&lk) && i < 5)
      unit_fail(__FILE__, __LINE__, "token of %s: index %" PRId64 ", engine %" PRId64, buf,
                idx_key_token(k.hi), ls_key_token(&lk));
    CHECK_U64(idx_hi_of_token(ls_key_token(&lk)), k.hi);
    e[i].hi = k.hi; e[i].lo = k.lo; e[i].word = (uint64_t)i;
  }
  qsort(e, 1000, sizeof *e, entry_cmp);
  for (int i = 0; i < 1000; i++) {
    int64_t tok = idx_key_token(e[i].hi);
    if (!first && (e[i].hi < prev_hi || tok < prev_tok)) unit_fail(__FILE__, __LINE__, "token order broken at %d", i);
    prev_hi = e[i].hi; prev_tok = tok; first = 0;
  }
  free(e);
}

/* ------------------------------------------------------------------------
** Ordered iteration.
*/

/* N random keys: idx_range from the start in batches of 1, 7, 64, 1000
** with after = 0 and 1, and idx_foreach, all return every key once in
** order. */
static void t_range_sizes(void) {
  static const size_t sizes[] = {1, 127, 128, 129, 10000, 300000};
  static const size_t batches[] = {1, 7, 64, 1000};
  uint64_t rng = unit_seed("range sizes");
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n;
    idx_entry *e = random_entries(sizes[s], &rng, &n);
    CHECK_U64(n, sizes[s]);                        /* 128-bit collisions: none */
    ls_index *ix = idx_new();
    insert_shuffled(ix, e, n, &rng);
    check_gets(ix, e, n);
    int before = unit_failed_checks;
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
      for (int after = 0; after <= 1; after++) check_range_all(ix, e, n, batches[b], after);
    check_foreach(ix, e, n, NULL);
    /* One batch larger than the whole index. */
    check_range_all(ix, e, n, n + 5, 0);
    if (unit_failed_checks != before) printf("     (with %zu keys)\n", n);
    idx_free(ix);
    free(e);
  }
}

/* Reference: index of the first entry >= (hi, lo), or > with after. */
static size_t ref_lower(const idx_entry *e, size_t n, uint64_t hi, uint64_t lo, int after) {
  size_t l = 0, r = n;
  while (l < r) {
    size_t m = (l + r) / 2;
    int c = key_cmp(e[m].hi, e[m].lo, hi, lo);
    if (c < 0 || (after && c == 0)) l = m + 1; else r = m;
  }
  return l;
}

/* One idx_range call from (hi, lo) compared with the reference. */
static int check_range_from(const ls_index *ix, const idx_entry *e, size_t n, uint64_t hi, uint64_t lo,
                            int after, size_t max) {
  idx_entry out[128];
  idx_key from = {hi, lo};
  if (max > 128) max = 128;
  size_t got = idx_range(ix, &from, after, out, max);
  size_t start = ref_lower(e, n, hi, lo, after);
  size_t want = n - start < max ? n - start : max;
  if (got != want) {
    unit_fail(__FILE__, __LINE__, "range from (%016" PRIx64 ",%016" PRIx64 ") after %d max %zu: expected %zu entries, got %zu",
              hi, lo, after, max, want, got);
    return 1;
  }
  for (size_t i = 0; i < got; i++) {
    const idx_entry *w = &e[start + i];
    if (out[i].hi != w->hi || out[i].lo != w->lo || out[i].word != w->word) {
      unit_fail(__FILE__, __LINE__, "range from (%016" PRIx64 ",%016" PRIx64 ") after %d: entry %zu: expected (%016"
                PRIx64 ",%016" PRIx64 "), got (%016" PRIx64 ",%016" PRIx64 ")",
                hi, lo, after, i, w->hi, w->lo, out[i].hi, out[i].lo);
      return 1;
    }
  }
  return 0;
}

/* Ranges from keys in the middle, from tokens (lo = 0), with keys that
** share a hi and the extreme keys. */
static void t_range_from(void) {
  uint64_t rng = unit_seed("range from");
  size_t nrand;
  idx_entry *r = random_entries(20000, &rng, &nrand);
  size_t cap = nrand + 1000, n = 0;
  idx_entry *e = xmalloc(cap * sizeof *e);
  memcpy(e, r, nrand * sizeof *e);
  n = nrand;
  free(r);
  /* Extremes. */
  uint64_t ext_hi[] = {0, 0, 0, 1, UINT64_MAX, UINT64_MAX, UINT64_MAX - 1, 1ull << 63, (1ull << 63) - 1};
  uint64_t ext_lo[] = {0, 1, UINT64_MAX, 0, 0, UINT64_MAX, UINT64_MAX, 0, UINT64_MAX};
  for (size_t i = 0; i < sizeof ext_hi / sizeof ext_hi[0]; i++) {
    e[n].hi = ext_hi[i]; e[n].lo = ext_lo[i]; e[n].word = unit_rand(&rng); n++;
  }
  /* Groups of keys with one hi: 300 keys with hi = H (spanning more than
  ** a bucket), and 5 keys sharing each of a few random hi. */
  uint64_t H = unit_rand(&rng);
  for (int i = 0; i < 300; i++) { e[n].hi = H; e[n].lo = unit_rand(&rng) >> (i % 3 ? 0 : 60); e[n].word = unit_rand(&rng); n++; }
  for (int g = 0; g < 20; g++) {
    uint64_t h = unit_rand(&rng);
    for (int i = 0; i < 5; i++) { e[n].hi = h; e[n].lo = (uint64_t)i * 1000; e[n].word = unit_rand(&rng); n++; }
  }
  n = sort_unique(e, n);
  ls_index *ix = idx_new();
  insert_shuffled(ix, e, n, &rng);
  check_gets(ix, e, n);
  check_range_all(ix, e, n, 64, 1);
  check_foreach(ix, e, n, NULL);

  int bad = 0;
  static const size_t maxes[] = {1, 2, 7, 64, 128};
  /* From every kind of point. */
  for (int i = 0; i < 20000 && bad < 10; i++) {
    uint64_t hi, lo;
    size_t j = unit_rand(&rng) % n;
    switch (i % 5) {
    case 0: hi = e[j].hi; lo = e[j].lo; break;                   /* an existing key */
    case 1: hi = e[j].hi; lo = 0; break;                         /* its token */
    case 2: hi = unit_rand(&rng); lo = unit_rand(&rng); break;   /* anywhere */
    case 3: hi = idx_hi_of_token((int64_t)unit_rand(&rng)); lo = 0; break;
    default: hi = e[j].hi; lo = e[j].lo + 1; break;              /* just after a key */
    }
    bad += check_range_from(ix, e, n, hi, lo, (i / 5) & 1, maxes[i % 5]);
  }
  /* Edges. */
  for (int after = 0; after <= 1; after++) {
    bad += check_range_from(ix, e, n, 0, 0, after, 128);
    bad += check_range_from(ix, e, n, UINT64_MAX, UINT64_MAX, after, 128);
    bad += check_range_from(ix, e, n, UINT64_MAX, 0, after, 128);
    bad += check_range_from(ix, e, n, idx_hi_of_token(INT64_MIN), 0, after, 128);
    bad += check_range_from(ix, e, n, idx_hi_of_token(INT64_MAX), 0, after, 128);
    bad += check_range_from(ix, e, n, idx_hi_of_token(0), 0, after, 128);
    bad += check_range_from(ix, e, n, H, 0, after, 128);
    bad += check_range_from(ix, e, n, H, UINT64_MAX, after, 128);
    bad += check_range_from(ix, e, n, H - 1, UINT64_MAX, after, 128);
  }
  /* The token of H: all 300 keys of H come first, lowest lo first. */
  idx_entry out[128];
  idx_key from = {idx_hi_of_token(idx_key_token(H)), 0};
  CHECK_U64(idx_range(ix, &from, 0, out, 128), 128);
  size_t start = ref_lower(e, n, H, 0, 0);
  CHECK_U64(out[0].hi, H);
  CHECK_U64(out[0].lo, e[start].lo);
  /* From the last key with after: nothing; from (max,max) without: one. */
  idx_key last = {UINT64_MAX, UINT64_MAX};
  CHECK_U64(idx_range(ix, &last, 1, out, 10), 0);
  CHECK_U64(idx_range(ix, &last, 0, out, 10), 1);
  /* max 0 copies nothing. */
  idx_key zero = {0, 0};
  CHECK_U64(idx_range(ix, &zero, 0, out, 0), 0);
  /* Ranges through every key that shares a hi, entry by entry. */
  for (size_t i = start; i < n && e[i].hi == H; i++) {
    bad += check_range_from(ix, e, n, e[i].hi, e[i].lo, 1, 1);
    if (bad > 10) break;
  }
  /* idx_foreach stops when fn returns non-zero and returns that value. */
  foreach_state st = {e, n, 0, 0, 99, NULL};
  CHECK_INT(idx_foreach(ix, foreach_fn, &st), 7);
  CHECK_U64(st.pos, 100);
  CHECK_INT(bad, 0);
  idx_free(ix);
  free(e);
}

/* ------------------------------------------------------------------------
** Adversarial keys.
*/

static void t_adversarial(void) {
  uint64_t rng = unit_seed("adversarial");
  size_t cap = 200000, n = 0;
  idx_entry *e = xmalloc(cap * sizeof *e);
  /* 5000 keys sharing the top 40 bits of hi. */
  uint64_t prefix = unit_rand(&rng) & ~((1ull << 24) - 1);
  for (int i = 0; i < 5000; i++) {
    e[n].hi = prefix | (unit_rand(&rng) & ((1ull << 24) - 1));
    e[n].lo = unit_rand(&rng);
    e[n].word = unit_rand(&rng);
    n++;
  }
  /* 5000 keys with one hi. */
  uint64_t same = unit_rand(&rng);
  for (int i = 0; i < 5000; i++) { e[n].hi = same; e[n].lo = unit_rand(&rng); e[n].word = unit_rand(&rng); n++; }
  /* 2000 keys with hi 0 and 2000 with hi UINT64_MAX. */
  for (int i = 0; i < 2000; i++) { e[n].hi = 0; e[n].lo = unit_rand(&rng); e[n].word = unit_rand(&rng); n++; }
  for (int i = 0; i < 2000; i++) { e[n].hi = UINT64_MAX; e[n].lo = unit_rand(&rng); e[n].word = unit_rand(&rng); n++; }
  /* 2000 sequential hi: only the lowest bits differ. */
  for (int i = 0; i < 2000; i++) { e[n].hi = (1ull << 62) + (uint64_t)i; e[n].lo = 0; e[n].word = (uint64_t)i; n++; }
  n = sort_unique(e, n);
  size_t nadv = n;

  ls_index *ix = idx_new();
  insert_shuffled(ix, e, n, &rng);
  check_gets(ix, e, n);
  check_range_all(ix, e, n, 1000, 1);
  check_range_all(ix, e, n, 7, 0);
  check_foreach(ix, e, n, NULL);
  size_t mem = idx_memory(ix);
  printf("     %zu adversarial keys: %zu bytes (%.1f B/key)\n", n, mem, (double)mem / (double)n);
  CHECK(mem < 10u << 20);

  /* Then 150,000 uniform keys on top: the directory grows with them. */
  for (size_t i = 0; i < 150000; i++) {
    e[n].hi = unit_rand(&rng); e[n].lo = unit_rand(&rng); e[n].word = unit_rand(&rng); n++;
  }
  for (size_t i = nadv; i < n; i++) {
    idx_key k = key_of(&e[i]);
    idx_put(ix, &k, e[i].word, NULL);
  }
  n = sort_unique(e, n);
  check_gets(ix, e, n);
  check_range_all(ix, e, n, 64, 1);
  mem = idx_memory(ix);
  printf("     with uniform keys: %zu keys, %zu bytes (%.1f B/key)\n", n, mem, (double)mem / (double)n);
  CHECK(mem < 20u << 20);

  /* Erase every adversarial key (those whose hi is one of the patterns). */
  size_t m = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    int adv = (e[i].hi & ~((1ull << 24) - 1)) == prefix || e[i].hi == same || e[i].hi == 0 ||
              e[i].hi == UINT64_MAX || (e[i].hi >= (1ull << 62) && e[i].hi < (1ull << 62) + 2000);
    idx_key k = key_of(&e[i]);
    if (adv) {
      uint64_t old = 0;
      if ((idx_erase(ix, &k, &old) != 1 || old != e[i].word) && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "erase of adversarial key %zu failed", i);
    } else {
      e[m++] = e[i];
    }
  }
  CHECK_INT(bad, 0);
  check_gets(ix, e, m);
  check_range_all(ix, e, m, 1000, 0);
  idx_free(ix);

  /* The worst case alone: 20,000 keys with identical hi. */
  ix = idx_new();
  n = 0;
  for (int i = 0; i < 20000; i++) { e[n].hi = same; e[n].lo = unit_rand(&rng); e[n].word = (uint64_t)i; n++; }
  n = sort_unique(e, n);
  insert_shuffled(ix, e, n, &rng);
  check_gets(ix, e, n);
  check_range_all(ix, e, n, 64, 1);
  mem = idx_memory(ix);
  printf("     %zu keys with one hi: %zu bytes\n", n, mem);
  CHECK(mem < 10u << 20);
  idx_free(ix);
  free(e);
}

/* ------------------------------------------------------------------------
** Model-based random test.
*/

typedef struct model {
  idx_entry *keys;                 /* key space, sorted */
  size_t n;
  uint8_t *present;
  uint64_t *word;
  uint64_t *seq;                   /* tracking runs only */
  uint64_t count;
} model;

/* A key space of n keys: mostly random, plus groups that share a hi and
** keys that share the top 40 bits of hi. */
static void model_init(model *md, size_t n, uint64_t *rng) {
  md->keys = xmalloc(n * sizeof *md->keys);
  size_t k = 0;
  uint64_t same = unit_rand(rng), prefix = unit_rand(rng) & ~((1ull << 24) - 1);
  for (; k < n; k++) {
    uint64_t r = unit_rand(rng);
    switch (k % 10) {
    case 0: md->keys[k].hi = same; break;
    case 1: md->keys[k].hi = prefix | (r & 0xFFFFFF); break;
    case 2: md->keys[k].hi = k % 20 == 2 ? 0 : UINT64_MAX; break;
    default: md->keys[k].hi = r; break;
    }
    md->keys[k].lo = unit_rand(rng);
    md->keys[k].word = 0;
  }
  md->n = sort_unique(md->keys, n);
  md->present = calloc(md->n, 1);
  md->word = calloc(md->n, sizeof *md->word);
  md->seq = calloc(md->n, sizeof *md->seq);
  md->count = 0;
}

static void model_free(model *md) {
  free(md->keys); free(md->present); free(md->word); free(md->seq);
}

/* The index holds exactly the model's present keys, in order. */
static void model_check_all(const ls_index *ix, const model *md, int with_seq) {
  idx_entry *want = xmalloc((md->count + 1) * sizeof *want);
  uint64_t *want_seq = xmalloc((md->count + 1) * sizeof *want_seq);
  size_t m = 0;
  for (size_t i = 0; i < md->n; i++)
    if (md->present[i]) {
      want[m] = md->keys[i];
      want[m].word = md->word[i];
      want_seq[m] = md->seq[i];
      m++;
    }
  CHECK_U64(m, md->count);
  CHECK_U64(idx_count(ix), m);
  check_range_all(ix, want, m, 64, 1);
  check_foreach(ix, want, m, with_seq ? want_seq : NULL);
  if (with_seq) {
    int bad = 0;
    for (size_t i = 0; i < m; i++) {
      idx_key k = key_of(&want[i]);
      uint64_t s = idx_get_seq(ix, &k);
      if (s != want_seq[i] && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "idx_get_seq of entry %zu: expected %" PRIu64 ", got %" PRIu64, i, want_seq[i], s);
    }
  }
  free(want);
  free(want_seq);
}

/* Random words from a small set, so that cas / erase_if sometimes expect a
** word that an other key holds. */
static uint64_t some_word(uint64_t *rng) {
  uint64_t r = unit_rand(rng);
  return r % 4 == 0 ? r % 16 : r;
}

static void t_model(void) {
  uint64_t rng = unit_seed("model");
  model md;
  model_init(&md, 5000, &rng);
  ls_index *ix = idx_new();
  int bad = 0;
  const int nops = 200000;
  for (int op = 0; op < nops && bad < 10; op++) {
    size_t i = unit_rand(&rng) % md.n;
    idx_key k = key_of(&md.keys[i]);
    uint64_t r = unit_rand(&rng) % 100, w, got_w = 0xABCD;
    int rc, want;
    /* Bias toward a full or empty index in phases, so that buckets both
    ** split and drain. */
    int phase = (op / 25000) % 2;
    if (r < (phase ? 25u : 40u)) {                 /* put */
      w = some_word(&rng);
      rc = idx_put(ix, &k, w, &got_w);
      want = md.present[i];
      if (rc != want || (want && got_w != md.word[i])) {
        unit_fail(__FILE__, __LINE__, "op %d put key %zu: expected rc %d old %" PRIx64 ", got rc %d old %" PRIx64,
                  op, i, want, md.word[i], rc, got_w);
        bad++;
      }
      if (!md.present[i]) md.count++;
      md.present[i] = 1;
      md.word[i] = w;
    } else if (r < 50) {                           /* erase */
      rc = idx_erase(ix, &k, &got_w);
      want = md.present[i];
      if (rc != want || (want && got_w != md.word[i])) {
        unit_fail(__FILE__, __LINE__, "op %d erase key %zu: expected rc %d old %" PRIx64 ", got rc %d old %" PRIx64,
                  op, i, want, md.word[i], rc, got_w);
        bad++;
      }
      if (md.present[i]) md.count--;
      md.present[i] = 0;
    } else if (r < 60) {                           /* erase_if */
      uint64_t expect = unit_rand(&rng) % 2 ? md.word[i] : some_word(&rng);
      rc = idx_erase_if(ix, &k, expect);
      want = md.present[i] && md.word[i] == expect;
      if (rc != want) {
        unit_fail(__FILE__, __LINE__, "op %d erase_if key %zu: expected %d, got %d", op, i, want, rc);
        bad++;
      }
      if (want) { md.present[i] = 0; md.count--; }
    } else if (r < 75) {                           /* cas */
      uint64_t expect = unit_rand(&rng) % 2 ? md.word[i] : some_word(&rng);
      w = some_word(&rng);
      rc = idx_cas(ix, &k, expect, w);
      want = md.present[i] && md.word[i] == expect;
      if (rc != want) {
        unit_fail(__FILE__, __LINE__, "op %d cas key %zu: expected %d, got %d", op, i, want, rc);
        bad++;
      }
      if (want) md.word[i] = w;
    } else {                                       /* get */
      rc = idx_get(ix, &k, &got_w);
      if (rc != md.present[i] || (rc && got_w != md.word[i])) {
        unit_fail(__FILE__, __LINE__, "op %d get key %zu: expected %d/%" PRIx64 ", got %d/%" PRIx64,
                  op, i, md.present[i], md.word[i], rc, got_w);
        bad++;
      }
    }
    if (idx_count(ix) != md.count) {
      unit_fail(__FILE__, __LINE__, "op %d: count %" PRIu64 ", model %" PRIu64, op, idx_count(ix), md.count);
      bad++;
    }
    if (op % 20000 == 19999) model_check_all(ix, &md, 0);
  }
  model_check_all(ix, &md, 0);
  CHECK(idx_memory(ix) > 0);
  idx_free(ix);
  model_free(&md);
}

/* ------------------------------------------------------------------------
** Recovery tracking.
*/

static void t_track_required(void) {
  ls_index *ix = idx_new();
  idx_key k = {1, 2};
  uint64_t old = 5;
  CHECK_INT(idx_put_newer(ix, &k, 10, 3, &old, NULL), LS_INVALID);
  CHECK_U64(idx_count(ix), 0);
  CHECK_INT(idx_get(ix, &k, NULL), 0);
  CHECK_U64(old, 5);
  CHECK_INT(idx_put(ix, &k, 10, NULL), 0);
  CHECK_INT(idx_put_newer(ix, &k, 11, 3, &old, NULL), LS_INVALID);
  uint64_t w;
  CHECK_INT(idx_get(ix, &k, &w), 1);
  CHECK_U64(w, 10);
  CHECK_U64(idx_get_seq(ix, &k), 0);
  /* On, then off: put_newer refused again. */
  CHECK_RC(idx_track_seq(ix, 1), LS_OK);
  CHECK_RC(idx_track_seq(ix, 1), LS_OK);           /* idempotent */
  CHECK_INT(idx_put_newer(ix, &k, 12, 3, &old, NULL), IDX_REPLACED);
  CHECK_U64(old, 10);
  CHECK_U64(idx_get_seq(ix, &k), 3);
  CHECK_RC(idx_track_seq(ix, 0), LS_OK);
  CHECK_U64(idx_get_seq(ix, &k), 0);
  CHECK_INT(idx_put_newer(ix, &k, 13, 4, &old, NULL), LS_INVALID);
  CHECK_INT(idx_get(ix, &k, &w), 1);
  CHECK_U64(w, 12);
  idx_free(ix);
}

/* Versions of each key arrive in a random order: the highest sequence
** wins, equal sequences keep the existing word, return codes and *old
** follow index.h. */
static void t_track_versions(void) {
  uint64_t rng = unit_seed("track versions");
  size_t nkeys;
  idx_entry *keys = random_entries(30000, &rng, &nkeys);
  /* 1..4 versions per key plus sometimes a duplicate sequence. */
  typedef struct ver { uint32_t key; uint64_t seq, word; } ver;
  size_t nv = 0;
  ver *v = xmalloc(nkeys * 6 * sizeof *v);
  for (size_t i = 0; i < nkeys; i++) {
    int nver = 1 + (int)(unit_rand(&rng) % 4);
    for (int j = 0; j < nver; j++) {
      v[nv].key = (uint32_t)i;
      v[nv].seq = 1 + unit_rand(&rng) % 1000000;
      v[nv].word = unit_rand(&rng);
      nv++;
    }
    if (unit_rand(&rng) % 3 == 0) {                /* same seq, another word (a relocated copy) */
      v[nv] = v[nv - 1];
      v[nv].word ^= 0x5555;
      nv++;
    }
  }
  for (size_t i = nv; i > 1; i--) {
    size_t j = unit_rand(&rng) % i;
    ver t = v[i - 1]; v[i - 1] = v[j]; v[j] = t;
  }
  ls_index *ix = idx_new();
  CHECK_RC(idx_track_seq(ix, 1), LS_OK);
  uint8_t *present = calloc(nkeys, 1);
  uint64_t *cur_seq = calloc(nkeys, sizeof *cur_seq), *cur_word = calloc(nkeys, sizeof *cur_word);
  int bad = 0;
  for (size_t i = 0; i < nv && bad < 10; i++) {
    size_t ki = v[i].key;
    idx_key k = key_of(&keys[ki]);
    uint64_t old = 0xABCDEF;
    int rc = idx_put_newer(ix, &k, v[i].word, v[i].seq, &old, NULL);
    int want;
    uint64_t want_old = 0xABCDEF;
    if (!present[ki]) want = IDX_INSERTED;
    else if (cur_seq[ki] < v[i].seq) { want = IDX_REPLACED; want_old = cur_word[ki]; }
    else { want = IDX_KEPT; want_old = cur_word[ki]; }
    if (rc != want || old != want_old) {
      unit_fail(__FILE__, __LINE__, "version %zu (seq %" PRIu64 ", current %" PRIu64 "): expected rc %d old %" PRIx64
                ", got rc %d old %" PRIx64, i, v[i].seq, cur_seq[ki], want, want_old, rc, old);
      bad++;
    }
    if (want != IDX_KEPT) { present[ki] = 1; cur_seq[ki] = v[i].seq; cur_word[ki] = v[i].word; }
  }
  /* Final state: every key holds its newest version. */
  for (size_t i = 0; i < nkeys; i++) keys[i].word = cur_word[i];
  check_gets(ix, keys, nkeys);
  check_foreach(ix, keys, nkeys, cur_seq);
  for (size_t i = 0; i < nkeys && bad < 10; i++) {
    idx_key k = key_of(&keys[i]);
    if (idx_get_seq(ix, &k) != cur_seq[i]) {
      unit_fail(__FILE__, __LINE__, "key %zu: seq expected %" PRIu64 ", got %" PRIu64, i, cur_seq[i], idx_get_seq(ix, &k));
      bad++;
    }
  }
  /* Explicit cases on one key. */
  idx_key k = {7, 7};
  uint64_t old = 0;
  CHECK_INT(idx_put_newer(ix, &k, 100, 50, &old, NULL), IDX_INSERTED);
  CHECK_INT(idx_put_newer(ix, &k, 101, 50, &old, NULL), IDX_KEPT);      /* equal: existing kept */
  CHECK_U64(old, 100);
  CHECK_INT(idx_put_newer(ix, &k, 102, 49, &old, NULL), IDX_KEPT);      /* older */
  CHECK_U64(old, 100);
  CHECK_INT(idx_put_newer(ix, &k, 103, 51, &old, NULL), IDX_REPLACED);
  CHECK_U64(old, 100);
  CHECK_INT(idx_put_newer(ix, &k, 104, 51, NULL, NULL), IDX_KEPT);
  CHECK_INT(idx_put_newer(ix, &k, 105, UINT64_MAX, NULL, NULL), IDX_REPLACED);
  CHECK_INT(idx_put_newer(ix, &k, 106, UINT64_MAX, NULL, NULL), IDX_KEPT);
  uint64_t w;
  CHECK_INT(idx_get(ix, &k, &w), 1);
  CHECK_U64(w, 105);
  CHECK_U64(idx_get_seq(ix, &k), UINT64_MAX);
  CHECK_U64(idx_get_seq(ix, &(idx_key){7, 8}), 0);              /* absent */
  CHECK_INT(bad, 0);
  idx_free(ix);
  free(present); free(cur_seq); free(cur_word); free(v); free(keys);
}

/* Sequences stay beside their entries: entries from before tracking (seq
** 0), many inserts with splits while tracking, erases (entries move, arrays
** shrink), clear, tracking off and on again. */
static void t_track_alignment(void) {
  uint64_t rng = unit_seed("track alignment");
  model md;
  model_init(&md, 60000, &rng);
  ls_index *ix = idx_new();
  /* 3000 entries before tracking. */
  for (size_t i = 0; i < md.n; i += 20) {
    idx_key k = key_of(&md.keys[i]);
    md.word[i] = unit_rand(&rng);
    CHECK_INT(idx_put(ix, &k, md.word[i], NULL), 0);
    md.present[i] = 1; md.count++;
  }
  CHECK_RC(idx_track_seq(ix, 1), LS_OK);
  model_check_all(ix, &md, 1);                     /* all seqs 0 */
  /* Inserts with random sequences: buckets split while tracking. */
  int bad = 0;
  for (size_t i = 0; i < md.n && bad < 10; i++) {
    if (md.present[i] && i % 40 != 0) continue;     /* half the old ones get newer versions */
    idx_key k = key_of(&md.keys[i]);
    uint64_t s = 1 + unit_rand(&rng) % (1ull << 40), w = unit_rand(&rng), old;
    int rc = idx_put_newer(ix, &k, w, s, &old, NULL);
    int want = md.present[i] ? IDX_REPLACED : IDX_INSERTED;
    if (rc != want) { unit_fail(__FILE__, __LINE__, "key %zu: expected %d, got %d", i, want, rc); bad++; }
    if (!md.present[i]) md.count++;
    md.present[i] = 1; md.word[i] = w; md.seq[i] = s;
  }
  model_check_all(ix, &md, 1);
  /* Erase a third (entries shift inside buckets, arrays shrink). */
  for (size_t i = 0; i < md.n; i++) {
    if (!md.present[i] || unit_rand(&rng) % 3) continue;
    idx_key k = key_of(&md.keys[i]);
    CHECK_INT(idx_erase(ix, &k, NULL), 1);
    md.present[i] = 0; md.count--;
  }
  model_check_all(ix, &md, 1);
  /* Erase most of the rest through erase_if, then re-insert. */
  for (size_t i = 0; i < md.n; i++) {
    if (!md.present[i] || unit_rand(&rng) % 8 == 0) continue;
    idx_key k = key_of(&md.keys[i]);
    CHECK_INT(idx_erase_if(ix, &k, md.word[i]), 1);
    md.present[i] = 0; md.count--;
  }
  model_check_all(ix, &md, 1);
  for (size_t i = 0; i < md.n; i += 3) {
    idx_key k = key_of(&md.keys[i]);
    uint64_t s = 1 + unit_rand(&rng) % 1000, w = unit_rand(&rng);
    int rc = idx_put_newer(ix, &k, w, s, NULL, NULL);
    if (!md.present[i] || md.seq[i] < s) {
      CHECK_INT(rc, md.present[i] ? IDX_REPLACED : IDX_INSERTED);
      if (!md.present[i]) md.count++;
      md.present[i] = 1; md.word[i] = w; md.seq[i] = s;
    } else {
      CHECK_INT(rc, IDX_KEPT);
    }
  }
  model_check_all(ix, &md, 1);
  /* CAS keeps the sequence (it changes where a version lives, not which). */
  for (size_t i = 0; i < md.n; i++) {
    if (!md.present[i]) continue;
    idx_key k = key_of(&md.keys[i]);
    CHECK_INT(idx_cas(ix, &k, md.word[i], md.word[i] + 1), 1);
    md.word[i]++;
  }
  model_check_all(ix, &md, 1);

  /* Tracking off: sequences gone, ordinary operations work. */
  CHECK_RC(idx_track_seq(ix, 0), LS_OK);
  for (size_t i = 0; i < md.n; i++) md.seq[i] = 0;
  model_check_all(ix, &md, 1);
  for (size_t i = 0; i < md.n; i++) {
    idx_key k = key_of(&md.keys[i]);
    if (i % 2) {
      uint64_t w = unit_rand(&rng), old = 0;
      int rc = idx_put(ix, &k, w, &old);
      if (rc != md.present[i] || (rc && old != md.word[i])) {
        if (bad++ < 10) unit_fail(__FILE__, __LINE__, "put key %zu after tracking: rc %d", i, rc);
      }
      if (!md.present[i]) md.count++;
      md.present[i] = 1; md.word[i] = w;
    } else if (md.present[i]) {
      CHECK_INT(idx_erase(ix, &k, NULL), 1);
      md.present[i] = 0; md.count--;
    }
  }
  model_check_all(ix, &md, 0);
  idx_key k0 = key_of(&md.keys[1]);
  CHECK_INT(idx_put_newer(ix, &k0, 1, 1, NULL, NULL), LS_INVALID);

  /* On again: every entry at seq 0; a newer version replaces it. */
  CHECK_RC(idx_track_seq(ix, 1), LS_OK);
  model_check_all(ix, &md, 1);
  uint64_t old = 0;
  CHECK_INT(idx_put_newer(ix, &k0, 12345, 1, &old, NULL), IDX_REPLACED);
  CHECK_U64(old, md.word[1]);
  md.word[1] = 12345; md.seq[1] = 1;
  model_check_all(ix, &md, 1);

  /* Clear while tracking, then rebuild with sequences. */
  idx_clear(ix);
  memset(md.present, 0, md.n);
  md.count = 0;
  for (size_t i = 0; i < md.n; i++) {
    idx_key k = key_of(&md.keys[i]);
    uint64_t s = 1 + unit_rand(&rng) % 100000, w = unit_rand(&rng);
    CHECK_INT(idx_put_newer(ix, &k, w, s, NULL, NULL), IDX_INSERTED);
    md.present[i] = 1; md.word[i] = w; md.seq[i] = s; md.count++;
  }
  model_check_all(ix, &md, 1);
  idx_free(ix);
  model_free(&md);
}

/* A model test with tracking on throughout: put_newer, erase, cas, get. */
static void t_track_model(void) {
  uint64_t rng = unit_seed("track model");
  model md;
  model_init(&md, 3000, &rng);
  ls_index *ix = idx_new();
  CHECK_RC(idx_track_seq(ix, 1), LS_OK);
  int bad = 0;
  for (int op = 0; op < 100000 && bad < 10; op++) {
    size_t i = unit_rand(&rng) % md.n;
    idx_key k = key_of(&md.keys[i]);
    uint64_t r = unit_rand(&rng) % 10, old = 0;
    if (r < 5) {
      uint64_t s = 1 + unit_rand(&rng) % 50, w = unit_rand(&rng);
      int rc = idx_put_newer(ix, &k, w, s, &old, NULL);
      int want = !md.present[i] ? IDX_INSERTED : md.seq[i] < s ? IDX_REPLACED : IDX_KEPT;
      if (rc != want || (md.present[i] && old != md.word[i])) {
        unit_fail(__FILE__, __LINE__, "op %d put_newer: expected %d, got %d", op, want, rc);
        bad++;
      }
      if (want != IDX_KEPT) {
        if (!md.present[i]) md.count++;
        md.present[i] = 1; md.word[i] = w; md.seq[i] = s;
      }
    } else if (r < 8) {
      int rc = idx_erase(ix, &k, &old);
      if (rc != md.present[i]) { unit_fail(__FILE__, __LINE__, "op %d erase: expected %d, got %d", op, md.present[i], rc); bad++; }
      if (md.present[i]) md.count--;
      md.present[i] = 0;
    } else {
      uint64_t s = idx_get_seq(ix, &k);
      uint64_t want = md.present[i] ? md.seq[i] : 0;
      if (s != want) { unit_fail(__FILE__, __LINE__, "op %d get_seq: expected %" PRIu64 ", got %" PRIu64, op, want, s); bad++; }
    }
    if (op % 10000 == 9999) model_check_all(ix, &md, 1);
  }
  model_check_all(ix, &md, 1);
  idx_free(ix);
  model_free(&md);
}

/* ------------------------------------------------------------------------
** Memory.
*/

static void t_bytes_per_key(void) {
  uint64_t rng = unit_seed("bytes per key");
  ls_index *ix = idx_new();
  const size_t n = 1000000;
  for (size_t i = 0; i < n; i++) {
    idx_key k = {unit_rand(&rng), unit_rand(&rng)};
    idx_put(ix, &k, i, NULL);
  }
  CHECK_U64(idx_count(ix), n);
  double bpk = (double)idx_memory(ix) / (double)idx_count(ix);
  printf("     %" PRIu64 " keys: %zu bytes, %.2f bytes/key\n", idx_count(ix), idx_memory(ix), bpk);
  CHECK(bpk <= 32.0);
  CHECK(bpk >= (double)sizeof(idx_entry));         /* the count covers the entries */
  idx_free(ix);
}

int main(void) {
  RUN(t_basic);
  RUN(t_key_token);
  RUN(t_range_sizes);
  RUN(t_range_from);
  RUN(t_adversarial);
  RUN(t_model);
  RUN(t_track_required);
  RUN(t_track_versions);
  RUN(t_track_alignment);
  RUN(t_track_model);
  RUN(t_bytes_per_key);
  return unit_finish();
}
