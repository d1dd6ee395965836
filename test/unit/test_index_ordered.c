/*
** test_index_ordered.c -- unit tests of the range-partitioned index of
** key-ordered tables (idx_new_ordered, index_range.c), and of descending
** ranges (idx_range_desc) on both kinds of index.
**
** As in test_index.c, the index is checked through its public API against
** a reference (UNIT_INDEX helpers of unit.h).  The keys here are what a
** key-ordered table produces: sequential positions (hi = n, lo random),
** long runs of one hi, descending loads, plus random keys.  idx_check
** is in the API and used here: it is rng_check for this index, compiled
** in every build.
*/
#define UNIT_INDEX
#include "ls_int.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

/* Entries with hi = base + i * step, lo random (sorted when step > 0). */
static idx_entry *sequential(size_t n, uint64_t base, uint64_t step, uint64_t *rng) {
  idx_entry *e = unit_xmalloc(n * sizeof *e);
  for (size_t i = 0; i < n; i++) e[i] = (idx_entry){ base + i * step, unit_rand(rng), i };
  return e;
}

/* Descending walk of the whole index from the top, in batches, equals
** want[0..n) reversed. */
static void check_desc_all(const ls_index *ix, const idx_entry *want, size_t n, size_t batch) {
  idx_entry *out = unit_xmalloc(batch * sizeof *out);
  idx_key from = {UINT64_MAX, UINT64_MAX};
  int before = 0, bad = 0;
  size_t pos = n;
  for (;;) {
    size_t got = idx_range_desc(ix, &from, before, out, batch);
    for (size_t i = 0; i < got; i++) {
      if (pos == 0) { if (bad++ < 5) unit_fail(__FILE__, __LINE__, "desc: extra entry"); continue; }
      pos--;
      if ((out[i].hi != want[pos].hi || out[i].lo != want[pos].lo || out[i].word != want[pos].word) && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "desc batch %zu: entry %zu: expected %016" PRIx64 "/%016" PRIx64 ", got %016" PRIx64
                  "/%016" PRIx64, batch, pos, want[pos].hi, want[pos].lo, out[i].hi, out[i].lo);
    }
    if (got < batch) break;
    from = (idx_key){ out[got - 1].hi, out[got - 1].lo };
    before = 1;
  }
  if (pos != 0) unit_fail(__FILE__, __LINE__, "desc batch %zu: %zu entries missing", batch, pos);
  free(out);
}

/* Lookups, both directions, at random starting points, against want. */
static void check_starts(const ls_index *ix, const idx_entry *want, size_t n, uint64_t *rng) {
  idx_entry out[16];
  int bad = 0;
  for (int t = 0; t < 200 && n; t++) {
    size_t p = unit_rand(rng) % n;
    idx_key k = key_of(&want[p]);
    int strict = (int)(unit_rand(rng) & 1);
    size_t got = idx_range(ix, &k, strict, out, 16);
    size_t at = p + (size_t)strict;
    for (size_t i = 0; i < got; i++, at++)
      if ((at >= n || out[i].hi != want[at].hi || out[i].lo != want[at].lo) && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "range from entry %zu (strict %d): position %zu differs", p, strict, i);
    if (got != (n - p - (size_t)strict < 16 ? n - p - (size_t)strict : 16) && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "range from entry %zu: %zu entries", p, got);
    got = idx_range_desc(ix, &k, strict, out, 16);
    size_t expect = (strict ? p : p + 1) < 16 ? (strict ? p : p + 1) : 16;
    if (got != expect && bad++ < 5) unit_fail(__FILE__, __LINE__, "desc from entry %zu: %zu entries, expected %zu", p, got, expect);
    for (size_t i = 0; i < got; i++) {
      size_t w = (strict ? p - 1 : p) - i;
      if ((out[i].hi != want[w].hi || out[i].lo != want[w].lo) && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "desc from entry %zu (strict %d): position %zu differs", p, strict, i);
    }
  }
}

static void t_sequential(void) {
  uint64_t rng = unit_seed("ordered sequential");
  const size_t n = 100000;
  /* Ascending, descending and random insertion of sequential positions. */
  for (int how = 0; how < 3; how++) {
    idx_entry *e = sequential(n, 1ull << 62, 1, &rng);
    ls_index *ix = idx_new_ordered();
    CHECK(ix && idx_is_ordered(ix));
    if (how == 2) {
      insert_shuffled(ix, e, n, &rng);
    } else {
      for (size_t i = 0; i < n; i++) {
        size_t j = how == 0 ? i : n - 1 - i;
        idx_key k = key_of(&e[j]);
        CHECK_INT(idx_put(ix, &k, e[j].word, NULL), IDX_INSERTED);
      }
    }
    CHECK_U64(idx_count(ix), n);
    CHECK_INT(idx_check(ix), 0);
    check_gets(ix, e, n);
    check_range_all(ix, e, n, 64, 1);
    check_range_all(ix, e, n, 1000, 0);
    check_desc_all(ix, e, n, 64);
    check_starts(ix, e, n, &rng);
    idx_free(ix);
    free(e);
  }
}

/* The memory promise (issue 14: at most 32 bytes a key): sequential
** integer positions in either direction, and random keys. */
static void t_bytes_per_key(void) {
  uint64_t rng = unit_seed("ordered bytes per key");
  const size_t n = 1000000;
  const char *what[] = { "ascending", "descending", "random" };
  for (int how = 0; how < 3; how++) {
    ls_index *ix = idx_new_ordered();
    for (size_t i = 0; i < n; i++) {
      idx_key k = how == 0 ? (idx_key){ (1ull << 62) + i, unit_rand(&rng) }
                : how == 1 ? (idx_key){ (1ull << 62) - i, unit_rand(&rng) }
                           : (idx_key){ unit_rand(&rng), unit_rand(&rng) };
      CHECK_INT(idx_put(ix, &k, i, NULL), IDX_INSERTED);
    }
    CHECK_U64(idx_count(ix), n);
    double bpk = (double)idx_memory(ix) / (double)idx_count(ix);
    printf("     %s, %zu keys: %zu bytes, %.2f bytes/key\n", what[how], n, idx_memory(ix), bpk);
    CHECK(bpk <= 32.0);
    CHECK(bpk >= (double)sizeof(idx_entry));
    CHECK_INT(idx_check(ix), 0);
    idx_free(ix);
  }
}

/* Erasing most keys merges buckets: memory follows the keys down. */
static void t_drain(void) {
  uint64_t rng = unit_seed("ordered drain");
  const size_t n = 200000;
  idx_entry *e = sequential(n, 1000, 3, &rng);
  ls_index *ix = idx_new_ordered();
  insert_shuffled(ix, e, n, &rng);
  size_t full = idx_memory(ix), m = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (unit_rand(&rng) % 10) {
      idx_key k = key_of(&e[i]);
      uint64_t old = 0;
      if ((idx_erase(ix, &k, &old) != 1 || old != e[i].word) && bad++ < 5)
        unit_fail(__FILE__, __LINE__, "erase of entry %zu failed", i);
    } else {
      e[m++] = e[i];
    }
  }
  CHECK_INT(bad, 0);
  CHECK_INT(idx_check(ix), 0);
  CHECK_U64(idx_count(ix), m);
  check_gets(ix, e, m);
  check_range_all(ix, e, m, 64, 1);
  check_desc_all(ix, e, m, 100);
  double bpk = (double)idx_memory(ix) / (double)m;
  printf("     %zu of %zu keys left: %zu bytes (full: %zu), %.2f bytes/key\n", m, n, idx_memory(ix), full, bpk);
  CHECK(bpk <= 48.0);
  /* Everything out, then in again. */
  for (size_t i = 0; i < m; i++) { idx_key k = key_of(&e[i]); CHECK_INT(idx_erase(ix, &k, NULL), 1); }
  CHECK_U64(idx_count(ix), 0);
  CHECK_INT(idx_check(ix), 0);
  idx_entry none[1];
  CHECK_U64(idx_range(ix, &(idx_key){0, 0}, 0, none, 1), 0);
  CHECK_U64(idx_range_desc(ix, &(idx_key){UINT64_MAX, UINT64_MAX}, 0, none, 1), 0);
  insert_shuffled(ix, e, m, &rng);
  check_range_all(ix, e, m, 64, 1);
  idx_clear(ix);
  CHECK_U64(idx_count(ix), 0);
  CHECK_INT(idx_check(ix), 0);
  idx_free(ix);
  free(e);
}

/* The model-based random test of test_index.c on this index, with
** sequences tracked half of the time. */
static void t_model(void) {
  uint64_t rng = unit_seed("ordered model");
  for (int track = 0; track < 2; track++) {
    model md;
    model_init(&md, 3000, &rng);
    ls_index *ix = idx_new_ordered();
    if (track) CHECK_RC(idx_track_seq(ix, 1), LS_OK);
    int bad = 0;
    uint64_t seq = 0;
    for (int op = 0; op < 150000 && bad < 10; op++) {
      size_t i = unit_rand(&rng) % md.n;
      idx_key k = key_of(&md.keys[i]);
      uint64_t r = unit_rand(&rng) % 100, w = unit_rand(&rng), got_w = 0;
      int phase = (op / 20000) % 2, rc;
      if (r < (phase ? 25u : 45u)) {
        if (track) {
          uint64_t s = ++seq - (unit_rand(&rng) % 3 == 0 ? 2 : 0);
          rc = idx_put_newer(ix, &k, w, s, &got_w, NULL);
          int keep = md.present[i] && md.seq[i] >= s;
          int want = keep ? IDX_KEPT : md.present[i] ? IDX_REPLACED : IDX_INSERTED;
          if (rc != want && bad++ < 10) unit_fail(__FILE__, __LINE__, "op %d put_newer: %d, expected %d", op, rc, want);
          if (!keep) {
            if (!md.present[i]) md.count++;
            md.present[i] = 1;
            md.word[i] = w;
            md.seq[i] = s;
          }
        } else {
          rc = idx_put(ix, &k, w, &got_w);
          if ((rc != md.present[i] || (rc && got_w != md.word[i])) && bad++ < 10)
            unit_fail(__FILE__, __LINE__, "op %d put: rc %d", op, rc);
          if (!md.present[i]) md.count++;
          md.present[i] = 1;
          md.word[i] = w;
        }
      } else if (r < 55) {
        rc = idx_erase(ix, &k, &got_w);
        if ((rc != md.present[i] || (rc && got_w != md.word[i])) && bad++ < 10)
          unit_fail(__FILE__, __LINE__, "op %d erase: rc %d", op, rc);
        if (md.present[i]) md.count--;
        md.present[i] = 0;
      } else if (r < 65) {
        uint64_t expect = unit_rand(&rng) % 2 ? md.word[i] : w;
        rc = idx_cas(ix, &k, expect, w ^ 1);
        int want = md.present[i] && md.word[i] == expect;
        if (rc != want && bad++ < 10) unit_fail(__FILE__, __LINE__, "op %d cas: %d, expected %d", op, rc, want);
        if (want) md.word[i] = w ^ 1;
      } else if (r < 70) {
        uint64_t expect = unit_rand(&rng) % 2 ? md.word[i] : w;
        rc = idx_erase_if(ix, &k, expect);
        int want = md.present[i] && md.word[i] == expect;
        if (rc != want && bad++ < 10) unit_fail(__FILE__, __LINE__, "op %d erase_if: %d, expected %d", op, rc, want);
        if (want) { md.present[i] = 0; md.count--; }
      } else {
        rc = idx_get(ix, &k, &got_w);
        if ((rc != md.present[i] || (rc && got_w != md.word[i])) && bad++ < 10)
          unit_fail(__FILE__, __LINE__, "op %d get: %d, expected %d", op, rc, md.present[i]);
      }
      if (op % 15000 == 14999) {
        CHECK_INT(idx_check(ix), 0);
        model_check_all(ix, &md, track);
      }
    }
    CHECK_INT(idx_check(ix), 0);
    model_check_all(ix, &md, track);
    idx_free(ix);
    model_free(&md);
  }
}

/* Allocation failures: a put fails with LS_NOMEM and leaves a valid index
** holding everything inserted before. */
static void t_nomem(void) {
  uint64_t rng = unit_seed("ordered nomem");
  const size_t n = 20000;
  idx_entry *e = sequential(n, 5, 7, &rng);
  ls_index *ix = idx_new_ordered();
  size_t in = 0, fails = 0;
  for (size_t i = 0; i < n; i++) {
    if (unit_rand(&rng) % 50 == 0) idx_test_fail_growths(1);
    idx_key k = key_of(&e[i]);
    int rc = idx_put(ix, &k, e[i].word, NULL);
    idx_test_fail_growths(0);
    if (rc == LS_NOMEM) { fails++; continue; }
    CHECK_INT(rc, IDX_INSERTED);
    e[in++] = e[i];
  }
  printf("     %zu puts failed as out of memory\n", fails);
  CHECK(fails > 0);
  CHECK_INT(idx_check(ix), 0);
  CHECK_U64(idx_count(ix), in);
  check_range_all(ix, e, in, 64, 1);
  idx_free(ix);
  free(e);
}

/* idx_range_desc on the hashing index of token-ordered tables. */
static void t_desc_hashed(void) {
  uint64_t rng = unit_seed("hashed desc");
  size_t n;
  idx_entry *e = random_entries(50000, &rng, &n);
  ls_index *ix = idx_new();
  CHECK(!idx_is_ordered(ix));
  insert_shuffled(ix, e, n, &rng);
  check_desc_all(ix, e, n, 64);
  check_desc_all(ix, e, n, 7);
  check_starts(ix, e, n, &rng);
  idx_free(ix);
  free(e);
}

int main(void) {
  RUN(t_sequential);
  RUN(t_bytes_per_key);
  RUN(t_drain);
  RUN(t_model);
  RUN(t_nomem);
  RUN(t_desc_hashed);
  return unit_finish();
}
