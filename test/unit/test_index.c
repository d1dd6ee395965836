/*
** test_index.c -- unit tests of the in-memory index (index.c): lookups,
** ordered ranges, adversarial keys, a model-based random test.  Tracking
** of write sequences is in test_index_track.c.
**
** The index is checked only through its public API: every test keeps a
** reference (a sorted array of the keys it inserted, or a per-key model;
** the UNIT_INDEX helpers of unit.h) and compares lookups, ordered ranges
** and full iterations against it.
** idx_check (index.c, -DLS_DEBUG_INDEX) is not used: the library this test
** links against is built without it.
**
** Keys are random unless a test is about adversarial ones: many keys that
** share a long prefix of hi, or the same hi with different lo, and the
** extreme keys hi == 0 and hi == UINT64_MAX.
*/
#define UNIT_INDEX
#include "ls_int.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

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
  idx_entry *e = unit_xmalloc(1000 * sizeof *e);
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
  idx_entry *e = unit_xmalloc(cap * sizeof *e);
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
  idx_entry *e = unit_xmalloc(cap * sizeof *e);
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
  RUN(t_bytes_per_key);
  return unit_finish();
}
