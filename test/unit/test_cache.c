/*
** test_cache.c -- the record cache (engine/cache.h): hits only for the same
** location and incarnation, moves, the bound, scan resistance, threads.
*/
#include "unit.h"
#include "cache.h"
#include "loc.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A record image that names its location and incarnation in every byte. */
static void image(uint64_t word, uint64_t seq, uint8_t *p, uint32_t size) {
  uint64_t s = word * 31 + seq;
  for (uint32_t i = 0; i < size; i++) p[i] = (uint8_t)(s >> (8 * (i % 8))) ^ (uint8_t)i;
}

static int image_ok(uint64_t word, uint64_t seq, const uint8_t *p, uint32_t size) {
  uint8_t want[1024];
  image(word, seq, want, size);
  return memcmp(p, want, size) == 0;
}

static void test_keys(void) {
  ls_cache *c = cache_new(1 << 20);
  CHECK(c != NULL);
  uint8_t a[128], b[128];
  uint64_t w = loc_make(7, 4096, 128, 0);
  image(w, 5, a, 128);
  cache_put(c, w, 5, a, 128);
  CHECK(cache_get(c, w, 5, b, 128) == 1);
  CHECK(memcmp(a, b, 128) == 0);
  CHECK(cache_get(c, w, 6, b, 128) == 0);               /* segment reused: another incarnation */
  CHECK(cache_get(c, loc_make(7, 4096 + 128, 128, 0), 5, b, 128) == 0);   /* another offset */
  CHECK(cache_get(c, w | LOC_TOMB, 5, b, 128) == 1);    /* the tombstone bit is not location */
  cache_put(c, w, 0, a, 128);                           /* incarnation 0 (free): never cached */
  CHECK(cache_get(c, w, 0, b, 128) == 0);
  /* A move: the copy takes the old one's place. */
  uint64_t w2 = loc_make(9, 8192, 128, 0);
  image(w2, 11, a, 128);
  cache_move(c, w, 5, w2, 11, a, 128);
  CHECK(cache_get(c, w, 5, b, 128) == 0);
  CHECK(cache_get(c, w2, 11, b, 128) == 1 && image_ok(w2, 11, b, 128));
  /* A move of what is not cached caches nothing. */
  cache_move(c, loc_make(1, 0, 128, 0), 3, loc_make(2, 0, 128, 0), 4, a, 128);
  CHECK(cache_get(c, loc_make(2, 0, 128, 0), 4, b, 128) == 0);
  ls_cache_stats s;
  cache_stats(c, &s);
  CHECK(s.hits == 3 && s.entries == 1 && s.misses >= 4);
  cache_free(c);
  CHECK(cache_new(0) == NULL);
}

/* Within its bound whatever is put; a hot set read again and again survives
** a scan of many records read once (S3-FIFO's small queue takes the scan). */
static void test_bound_and_scan(void) {
  uint64_t cap = 4 << 20;
  ls_cache *c = cache_new(cap);
  uint8_t buf[256];
  uint32_t hot = 2000;
  for (int round = 0; round < 4; round++)
    for (uint32_t i = 0; i < hot; i++) {
      uint64_t w = loc_make(i / 100, (i % 100) * 256, 256, 0);
      if (!cache_get(c, w, 1, buf, 256)) { image(w, 1, buf, 256); cache_put(c, w, 1, buf, 256); }
      else CHECK(image_ok(w, 1, buf, 256));
    }
  ls_cache_stats s;
  for (uint32_t i = 0; i < 200000; i++) {   /* the scan: 50 MB, read once */
    uint64_t w = loc_make(1000 + i / 100, (i % 100) * 256, 256, 0);
    if (!cache_get(c, w, 1, buf, 256)) { image(w, 1, buf, 256); cache_put(c, w, 1, buf, 256); }
    if (i % 10000 == 0) { cache_stats(c, &s); CHECK(s.bytes <= cap); }
  }
  cache_stats(c, &s);
  CHECK(s.bytes <= cap);
  uint64_t h0 = s.hits, kept = 0;
  for (uint32_t i = 0; i < hot; i++) {
    uint64_t w = loc_make(i / 100, (i % 100) * 256, 256, 0);
    if (cache_get(c, w, 1, buf, 256)) { kept++; CHECK(image_ok(w, 1, buf, 256)); }
  }
  cache_stats(c, &s);
  CHECK(s.hits - h0 == kept);
  if (kept < hot * 9 / 10) unit_fail(__FILE__, __LINE__, "only %llu of %u hot records survived a scan",
                                     (unsigned long long)kept, hot);
  cache_free(c);
}

/* Threads getting, putting and moving over a small cache: every hit returns
** the image of exactly the location and incarnation asked for; the bound
** holds. */
typedef struct worker { ls_cache *c; uint64_t seed; int bad; } worker;

static void *work(void *arg) {
  worker *wk = arg;
  uint8_t buf[1024];
  for (int i = 0; i < 40000; i++) {
    uint64_t r = unit_rand(&wk->seed);
    uint32_t seg = (uint32_t)(r % 64), off = (uint32_t)((r >> 8) % 64) * 1024;
    uint32_t size = 64 + 8 * (uint32_t)((r >> 16) % 100);
    uint64_t seq = 1 + (r >> 24) % 3, w = loc_make(seg, off, size, 0);
    switch ((r >> 40) % 4) {
      case 0:
      case 1:
        if (cache_get(wk->c, w, seq, buf, size) && !image_ok(w, seq, buf, size)) wk->bad++;
        break;
      case 2:
        image(w, seq, buf, size);
        cache_put(wk->c, w, seq, buf, size);
        break;
      default: {
        uint64_t w2 = loc_make(seg + 64, off, size, 0);
        image(w2, seq, buf, size);
        cache_move(wk->c, w, seq, w2, seq, buf, size);
      }
    }
  }
  return NULL;
}

static void test_threads(void) {
  uint64_t cap = 1 << 20;
  ls_cache *c = cache_new(cap);
  uint64_t seed = unit_seed("test_cache threads");
  worker wk[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    wk[i] = (worker){ c, seed + (uint64_t)i * 7919, 0 };
    CHECK(pthread_create(&th[i], NULL, work, &wk[i]) == 0);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) CHECK(wk[i].bad == 0);
  ls_cache_stats s;
  cache_stats(c, &s);
  CHECK(s.bytes <= cap);
  CHECK(s.hits > 0);
  cache_free(c);
}

/* cache_get_many answers as cache_get does, key by key, for batches larger
** than one pass (CACHE_BATCH), keys repeated, incarnations wrong or 0, sizes
** that differ; and counts its hits and misses as cache_get. */
static void test_get_many(void) {
  ls_cache *c = cache_new(8 << 20);
  CHECK(c != NULL);
  enum { N = 300 };
  static uint8_t bufs[N][64], want[64];
  uint64_t words[N], seqs[N];
  uint32_t sizes[N];
  uint8_t *dsts[N], hits[N];
  for (int i = 0; i < N; i++) {
    words[i] = loc_make(1 + (uint32_t)(i % 37), (uint32_t)(i * 64), 64, 0);
    seqs[i] = 3 + (uint64_t)(i % 5);
    sizes[i] = 64;
    dsts[i] = bufs[i];
    if (i % 3 != 0) {                              /* two in three cached */
      image(words[i], seqs[i], want, 64);
      cache_put(c, words[i], seqs[i], want, 64);
    }
  }
  seqs[4] = 99;                                    /* another incarnation */
  seqs[5] = 0;                                     /* a free segment */
  sizes[7] = 56;                                   /* the size the index holds differs */
  words[10] = words[11];                           /* the same record twice */
  seqs[10] = seqs[11];
  ls_cache_stats s0, s1;
  cache_stats(c, &s0);
  memset(bufs, 0, sizeof bufs);
  int n = cache_get_many(c, N, words, seqs, dsts, sizes, hits);
  cache_stats(c, &s1);
  int expect = 0;
  for (int i = 0; i < N; i++) {
    uint8_t one[64];
    int h = cache_get(c, words[i], seqs[i], one, sizes[i]);
    CHECK_INT(hits[i], h);
    if (h) CHECK(image_ok(words[i], seqs[i], bufs[i], sizes[i]));
    expect += h;
  }
  CHECK_INT(n, expect);
  CHECK(n > N / 2 && n < N);
  CHECK_U64(s1.hits - s0.hits, (uint64_t)n);
  CHECK_U64(s1.misses - s0.misses, (uint64_t)(N - n));
  cache_free(c);
}

/* A writer's batch: nothing is cached until inserted, then everything is
** (within the bound: a batch larger than the cache keeps the cache within
** it), and a discarded batch leaves nothing. */
static void test_batch(void) {
  uint64_t cap = 1 << 20;
  ls_cache *c = cache_new(cap);
  CHECK(c != NULL);
  cache_batch b = { 0 };
  uint8_t img[200], out[200];
  for (uint32_t i = 0; i < 100; i++) {
    uint64_t w = loc_make(3 + i % 7, i * 256, 200, 0);
    image(w, 9, img, 200);
    cache_batch_add(c, &b, w, 9, img, 200);
  }
  cache_batch_add(c, &b, loc_make(1, 0, 200, 0), 0, img, 200);   /* incarnation 0: not taken */
  ls_cache_stats st;
  cache_stats(c, &st);
  CHECK_U64(st.entries, 0);
  CHECK(cache_get(c, loc_make(3, 0, 200, 0), 9, out, 200) == 0);
  CHECK(b.bytes >= 101 * 200);
  CHECK_U64(cache_batch_limit(c), cap / 16);
  cache_batch_insert(c, &b);
  CHECK(b.first == NULL);
  CHECK_U64(b.bytes, 0);
  cache_stats(c, &st);
  CHECK_U64(st.entries, 100);
  for (uint32_t i = 0; i < 100; i++) {
    uint64_t w = loc_make(3 + i % 7, i * 256, 200, 0);
    CHECK(cache_get(c, w, 9, out, 200) == 1 && image_ok(w, 9, out, 200));
  }
  for (uint32_t i = 0; i < 20000; i++) {            /* 4 MB through a 1 MB cache */
    uint64_t w = loc_make(100 + i / 500, (i % 500) * 256, 200, 0);
    image(w, 4, img, 200);
    cache_batch_add(c, &b, w, 4, img, 200);
    if (i % 1000 == 999) cache_batch_insert(c, &b);
  }
  cache_stats(c, &st);
  CHECK(st.bytes <= cap && st.entries > 1000);
  uint64_t w = loc_make(100 + 19999 / 500, (19999 % 500) * 256, 200, 0);
  CHECK(cache_get(c, w, 4, out, 200) == 1 && image_ok(w, 4, out, 200));   /* the newest stays */
  uint64_t before = st.entries;
  for (uint32_t i = 0; i < 50; i++) cache_batch_add(c, &b, loc_make(900, i * 256, 200, 0), 4, img, 200);
  cache_batch_discard(&b);
  cache_stats(c, &st);
  CHECK_U64(st.entries, before);
  CHECK(cache_get(c, loc_make(900, 0, 200, 0), 4, out, 200) == 0);
  cache_free(c);
}

/* A transaction far larger than the writer's batch limit (its records go
** into the cache a piece at a time, before the install): every row reads
** back right, the last ones from the cache, and the cache stays within its
** bound. */
static void test_big_transaction(void) {
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.cache_size = 256 * 1024;                       /* batch limit 16 KiB */
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  if (!e) return;
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  char kb[32], val[300];
  for (int i = 0; i < 5000; i++) {                 /* 1.5 MB */
    snprintf(kb, sizeof kb, "k%d", i);
    memset(val, 'a' + i % 26, sizeof val);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)strlen(kb));
    CHECK_RC(ls_txn_put(x, t, &k, val, sizeof val), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);
  ls_stats s0 = unit_stats(e);
  CHECK(s0.cache_bytes <= o.cache_size);
  CHECK(s0.cache_entries > 0);
  for (int i = 4999; i >= 0; i--) {
    snprintf(kb, sizeof kb, "k%d", i);
    const char *v = unit_gets(e, t, kb);
    if (!v || strlen(v) != sizeof val || v[0] != 'a' + i % 26 || v[sizeof val - 1] != 'a' + i % 26) {
      unit_fail(__FILE__, __LINE__, "row %s: %s", kb, v ? "wrong value" : "missing");
      break;
    }
  }
  ls_stats s1 = unit_stats(e);
  CHECK(s1.cache_hits > s0.cache_hits);             /* the newest rows were cached */
  CHECK(s1.cache_bytes <= o.cache_size);
  unit_check_ok(e);
  ls_close(e);
}

int main(void) {
  RUN(test_keys);
  RUN(test_bound_and_scan);
  RUN(test_threads);
  RUN(test_get_many);
  RUN(test_batch);
  RUN(test_big_transaction);
  return unit_finish();
}
