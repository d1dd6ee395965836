/*
** test_index_track.c -- unit tests of the index's tracking of write
** sequences (index.c): which indexes require it, versions, the alignment
** of sequences with entries, and a model-based random test with
** sequences.  Checked as test_index.c checks, against a reference (the
** UNIT_INDEX helpers of unit.h).
*/
#define UNIT_INDEX
#include "ls_int.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

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
  ver *v = unit_xmalloc(nkeys * 6 * sizeof *v);
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


int main(void) {
  RUN(t_track_required);
  RUN(t_track_versions);
  RUN(t_track_alignment);
  RUN(t_track_model);
  return unit_finish();
}
