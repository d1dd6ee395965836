/*
** test_concurrency.c -- several threads at once (also run under TSan).
**
**  - readers of stable keys always get their exact value while writer
**    threads overwrite other keys hard enough that segments are freed and
**    reused under them (the guard must keep a segment alive while a reader
**    reads it);
**  - a scanner sees every stable key exactly once per scan, in token order;
**  - read-modify-write increments of shared counters from several threads,
**    retried on LS_CONFLICT: the final counts equal the number of
**    successful commits (no lost update, no double count);
**  - catalog changes (create / drop of other tables) while all that runs.
** Work is bounded by operation counts, never by time.
*/
#include "unit.h"
#include "catalog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define STABLE 200
#define CHURN_KEYS 50
#define CHURN_OPS 3000
#define COUNTERS 4
#define INCREMENTS 150

typedef struct shared {
  ls_engine *e;
  uint32_t t;
  _Atomic int writers_left;
  _Atomic int errors;
  _Atomic long successes[COUNTERS];
  _Atomic long conflicts;
} shared;

static void stable_val(int i, char *buf, size_t cap) { snprintf(buf, cap, "stable value %d xxxxxxxxxxxxxxxx", i); }

static void note_error(shared *s, const char *what, int rc) {
  if (atomic_fetch_add(&s->errors, 1) < 5) printf("     %s: %d %s\n", what, rc, ls_errmsg());
}

static void *churn_writer(void *p) {
  shared *s = p;
  char kb[32], vb[200];
  memset(vb, 'w', sizeof vb);
  for (int i = 0; i < CHURN_OPS; i++) {
    ls_txn *x;
    int rc = ls_txn_begin(s->e, &x);
    int kl = snprintf(kb, sizeof kb, "churn%d", (int)(((unsigned)i * 2654435761u) % CHURN_KEYS));
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    if (!rc) rc = ls_txn_put(x, s->t, &k, vb, sizeof vb);
    if (!rc) rc = ls_txn_commit(x);
    ls_txn_free(x);
    if (rc) { note_error(s, "churn commit", rc); break; }
  }
  atomic_fetch_sub(&s->writers_left, 1);
  ls_thread_cleanup();
  return NULL;
}

static void *stable_reader(void *p) {
  shared *s = p;
  char kb[32], want[64];
  ls_value v = {0};
  unsigned r = 12345;
  long reads = 0;
  while (atomic_load(&s->writers_left) > 0 || reads < 2000) {
    r = r * 1103515245u + 12345u;
    int i = (int)((r >> 8) % STABLE);
    int kl = snprintf(kb, sizeof kb, "stable%d", i);
    stable_val(i, want, sizeof want);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    int rc = ls_get(s->e, s->t, &k, &v);
    if (rc || v.len != strlen(want) || memcmp(v.data, want, v.len)) {
      note_error(s, "stable read", rc);
      break;
    }
    reads++;
  }
  ls_value_free(&v);
  ls_thread_cleanup();
  return NULL;
}

static void *scanner(void *p) {
  shared *s = p;
  int scans = 0;
  while (atomic_load(&s->writers_left) > 0 || scans < 3) {
    ls_cursor *c;
    int rc = ls_cursor_open(s->e, NULL, s->t, &c);
    if (!rc) rc = ls_cursor_seek(c, INT64_MIN);
    int stable = 0;
    int64_t prev = INT64_MIN;
    while (!rc && ls_cursor_valid(c)) {
      const ls_value *v = ls_cursor_row(c);
      if (v->token < prev) { note_error(s, "scan order", 0); break; }
      prev = v->token;
      if (v->key_len > 6 && !memcmp(v->key, "stable", 6)) {
        char want[64];
        stable_val(atoi((const char *)v->key + 6), want, sizeof want);
        if (v->len != strlen(want) || memcmp(v->data, want, v->len)) note_error(s, "scan value", 0);
        stable++;
      }
      rc = ls_cursor_next(c);
    }
    ls_cursor_close(c);
    if (rc) { note_error(s, "scan", rc); break; }
    if (stable != STABLE) { printf("     scan saw %d stable rows\n", stable); note_error(s, "scan count", 0); break; }
    scans++;
  }
  ls_thread_cleanup();
  return NULL;
}

/* Increment counter keys with read-modify-write transactions. */
static void *incrementer(void *p) {
  shared *s = p;
  ls_value v = {0};
  for (int i = 0; i < INCREMENTS; i++) {
    int which = i % COUNTERS;
    char kb[16];
    int kl = snprintf(kb, sizeof kb, "counter%d", which);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    for (int attempt = 0; attempt < 1000; attempt++) {
      ls_txn *x;
      int rc = ls_txn_begin(s->e, &x);
      long n = 0;
      if (!rc) {
        rc = ls_txn_get(x, s->t, &k, &v);
        if (rc == LS_OK) memcpy(&n, v.data, sizeof n);
        if (rc == LS_NOTFOUND) rc = LS_OK;
      }
      n++;
      if (!rc) rc = ls_txn_put(x, s->t, &k, &n, sizeof n);
      if (!rc) rc = ls_txn_commit(x);
      ls_txn_free(x);
      if (rc == LS_OK) { atomic_fetch_add(&s->successes[which], 1); break; }
      if (rc != LS_CONFLICT) { note_error(s, "increment", rc); goto out; }
      atomic_fetch_add(&s->conflicts, 1);
    }
  }
out:
  ls_value_free(&v);
  atomic_fetch_sub(&s->writers_left, 1);
  ls_thread_cleanup();
  return NULL;
}

static void *catalog_churn(void *p) {
  shared *s = p;
  for (int i = 0; i < 20; i++) {
    uint32_t id;
    char name[16];
    snprintf(name, sizeof name, "tmp%d", i);
    int rc = ls_table_create(s->e, name, 1, &id);
    ls_txn *x = NULL;
    if (!rc) rc = ls_txn_begin(s->e, &x);
    ls_key k;
    ls_key_set(&k, "k", 1);
    if (!rc) rc = ls_txn_put(x, id, &k, "v", 1);
    if (!rc) rc = ls_txn_commit(x);
    ls_txn_free(x);
    if (!rc) rc = ls_table_drop(s->e, id);
    if (rc) { note_error(s, "catalog", rc); break; }
  }
  ls_thread_cleanup();
  return NULL;
}

static void test_everything_at_once(void) {
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = 8192;
  o.file_size = 65536;
  ls_engine *e;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  shared s;
  memset(&s, 0, sizeof s);
  s.e = e;
  CHECK_RC(ls_table_create(e, "t", 1, &s.t), LS_OK);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (int i = 0; i < STABLE; i++) {
    char kb[32], vb[64];
    int kl = snprintf(kb, sizeof kb, "stable%d", i);
    stable_val(i, vb, sizeof vb);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    CHECK_RC(ls_txn_put(x, s.t, &k, vb, (uint32_t)strlen(vb)), LS_OK);
  }
  CHECK_RC(ls_txn_commit(x), LS_OK);
  ls_txn_free(x);

  enum { NW = 2, NI = 3, NR = 2, NS = 1 };
  pthread_t th[NW + NI + NR + NS + 1];
  int n = 0;
  atomic_store(&s.writers_left, NW + NI);
  for (int i = 0; i < NW; i++) pthread_create(&th[n++], NULL, churn_writer, &s);
  for (int i = 0; i < NI; i++) pthread_create(&th[n++], NULL, incrementer, &s);
  for (int i = 0; i < NR; i++) pthread_create(&th[n++], NULL, stable_reader, &s);
  for (int i = 0; i < NS; i++) pthread_create(&th[n++], NULL, scanner, &s);
  pthread_create(&th[n++], NULL, catalog_churn, &s);
  for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
  CHECK_INT(atomic_load(&s.errors), 0);

  /* Every successful increment counted exactly once. */
  long total = 0;
  ls_value v = {0};
  for (int c = 0; c < COUNTERS; c++) {
    char kb[16];
    int kl = snprintf(kb, sizeof kb, "counter%d", c);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    long got = -1;
    CHECK_RC(ls_get(e, s.t, &k, &v), LS_OK);
    if (v.len == sizeof got) memcpy(&got, v.data, sizeof got);
    CHECK_INT(got, atomic_load(&s.successes[c]));
    total += got;
  }
  CHECK_INT(total, NI * INCREMENTS);
  printf("     %ld increments, %ld conflicts retried\n", total, (long)atomic_load(&s.conflicts));
  ls_stats st;
  ls_stats_get(e, &st);
  CHECK(st.segments_total > st.segments_free);
  char *rep = NULL;
  CHECK_RC(ls_check(e, 0, &rep), LS_OK);
  if (rep && strcmp(rep, "ok")) unit_fail(__FILE__, __LINE__, "ls_check: %s", rep);
  free(rep);
  ls_close(e);
  CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
  for (int c = 0; c < COUNTERS; c++) {
    char kb[16];
    int kl = snprintf(kb, sizeof kb, "counter%d", c);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    long got = -1;
    CHECK_RC(ls_get(e, s.t, &k, &v), LS_OK);
    if (v.len == sizeof got) memcpy(&got, v.data, sizeof got);
    CHECK_INT(got, atomic_load(&s.successes[c]));
  }
  ls_value_free(&v);
  ls_close(e);
}

/* Two threads open and close the same directory repeatedly: they share one
** engine while both have it open. */
typedef struct opener_arg { const char *dir; int rc; } opener_arg;

static void *opener(void *p) {
  opener_arg *a = p;
  for (int i = 0; i < 30 && !a->rc; i++) {
    ls_engine *e;
    a->rc = ls_open(a->dir, NULL, &e);
    if (a->rc) break;
    ls_stats s;
    ls_stats_get(e, &s);
    ls_close(e);
  }
  ls_thread_cleanup();
  return NULL;
}

static void test_open_close_race(void) {
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = 8192;
  o.file_size = 65536;
  ls_engine *e;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  ls_close(e);
  pthread_t a, b;
  opener_arg x = { dir, 0 }, y = { dir, 0 };
  pthread_create(&a, NULL, opener, &x);
  pthread_create(&b, NULL, opener, &y);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  CHECK_RC(x.rc, LS_OK);
  CHECK_RC(y.rc, LS_OK);
}

int main(void) {
  RUN(test_everything_at_once);
  RUN(test_open_close_race);
  return unit_finish();
}
