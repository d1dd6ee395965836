/*
** test_txn.c -- a transaction as a container alone (txn.h): its writes,
** read-your-writes, savepoints, forgetting a table, and observations --
** with no writer and no data files behind it.
*/
#include "unit.h"
#include "txn.h"

#include <stdlib.h>
#include <string.h>

/* The least of an engine a transaction needs: sizes, a guard, an empty
** catalog. */
static ls_engine *bare_engine(void) {
  ls_engine *e = calloc(1, sizeof *e);
  e->seg_size = 8192;
  ls_guard_init(&e->guard);
  atomic_store(&e->catalog, calloc(1, sizeof(ls_catalog)));
  return e;
}

static void bare_free(ls_engine *e) {
  free(atomic_load(&e->catalog));
  ls_guard_destroy(&e->guard);
  free(e);
}

static void key(ls_key *k, idx_key *ik, const char *s) {
  ls_key_set(k, s, (uint32_t)strlen(s));
  idx_key_from_digest(ik, k->digest);
}

/* txn_own as a string: the value, "<deleted>" or "<none>". */
static const char *own(ls_txn *t, uint32_t table, const char *s) {
  static char out[64];
  ls_key k;
  idx_key ik;
  key(&k, &ik, s);
  ls_value v = {0};
  int rc = txn_own(t, table, &ik, &v);
  if (rc == 1) strcpy(out, "<none>");
  else if (rc == LS_NOTFOUND) strcpy(out, "<deleted>");
  else snprintf(out, sizeof out, "%.*s", (int)v.len, (const char *)v.data);
  ls_value_free(&v);
  return out;
}

static void put(ls_txn *t, uint32_t table, const char *k, const char *v) {
  ls_key kk;
  ls_key_set(&kk, k, (uint32_t)strlen(k));
  CHECK_RC(v ? ls_txn_put(t, table, &kk, v, (uint32_t)strlen(v)) : ls_txn_delete(t, table, &kk), LS_OK);
}

static void test_writes_and_savepoints(void) {
  ls_engine *e = bare_engine();
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  put(t, 1, "a", "1");
  put(t, 1, "b", "2");
  CHECK_U64(ls_txn_size(t), 2);
  int sp = ls_txn_savepoint(t);
  put(t, 1, "a", "3");
  put(t, 1, "b", NULL);
  put(t, 2, "a", "other table");
  CHECK_U64(ls_txn_size(t), 3);           /* superseded writes do not count */
  CHECK(!strcmp(own(t, 1, "a"), "3"));
  CHECK(!strcmp(own(t, 1, "b"), "<deleted>"));
  CHECK(!strcmp(own(t, 2, "a"), "other table"));
  CHECK(!strcmp(own(t, 1, "c"), "<none>"));
  CHECK_RC(ls_txn_rollback_to(t, sp), LS_OK);
  CHECK(!strcmp(own(t, 1, "a"), "1"));
  CHECK(!strcmp(own(t, 1, "b"), "2"));
  CHECK(!strcmp(own(t, 2, "a"), "<none>"));
  CHECK_U64(ls_txn_size(t), 2);
  CHECK_RC(ls_txn_rollback_to(t, sp + 1), LS_INVALID);
  /* The overlay iterates the keys in token order, each with its write. */
  ls_index *ov = txn_overlay(t, 1);
  CHECK(ov != NULL);
  CHECK_U64(idx_count(ov), 2);
  CHECK(txn_overlay(t, 3) == NULL);
  ls_txn_free(t);
  bare_free(e);
}

static void test_forget_table(void) {
  ls_engine *e = bare_engine();
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  put(t, 1, "a", "1");
  int sp = ls_txn_savepoint(t);
  put(t, 2, "a", "2");
  put(t, 2, "b", "3");
  CHECK_RC(ls_txn_forget_table(t, 2), LS_OK);
  CHECK(!strcmp(own(t, 2, "a"), "<none>"));
  CHECK_U64(ls_txn_size(t), 1);
  CHECK_RC(ls_txn_rollback_to(t, sp), LS_OK);       /* savepoints stay usable */
  CHECK(!strcmp(own(t, 1, "a"), "1"));
  CHECK_U64(ls_txn_size(t), 1);
  ls_txn_free(t);
  bare_free(e);
}

static void test_observations(void) {
  ls_engine *e = bare_engine();
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  ls_key k;
  idx_key ik;
  key(&k, &ik, "seen");
  CHECK_INT(txn_seen(t, 1, &ik), -1);
  CHECK_RC(txn_before_read(t, 1), LS_OK);
  CHECK_RC(txn_observe(t, 1, &ik, loc_make(3, 4096, 64, 0), 0, 9, 1), LS_OK);
  CHECK_INT(txn_seen(t, 1, &ik), 1);
  /* The first version seen is the one kept. */
  CHECK_RC(txn_observe(t, 1, &ik, 0, 0, 0, 0), LS_OK);
  CHECK_INT(txn_seen(t, 1, &ik), 1);
  CHECK_INT(t->nobs, 1);
  txn_observe_seq(t, 1, &ik, loc_make(3, 4096, 64, 0), 77);
  CHECK_U64(t->obs[0].seq, 77);
  CHECK_U64(t->obs[0].segseq, 9);
  /* A write of an observed key keeps the observation for the commit check. */
  put(t, 1, "seen", "mine");
  CHECK(!strcmp(own(t, 1, "seen"), "mine"));
  CHECK_INT(txn_seen(t, 1, &ik), 1);
  ls_txn_free(t);
  bare_free(e);
}

/* Only an OPEN transaction takes writes. */
static void test_states(void) {
  ls_engine *e = bare_engine();
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  CHECK_INT(ls_txn_prepared(t), 0);
  ls_key k;
  ls_key_set(&k, "a", 1);
  t->state = TXN_DONE;
  CHECK_RC(ls_txn_put(t, 1, &k, "x", 1), LS_INVALID);
  CHECK_RC(ls_txn_rollback_to(t, 0), LS_INVALID);
  CHECK_RC(ls_txn_forget_table(t, 1), LS_INVALID);
  t->state = TXN_OPEN;
  CHECK_RC(ls_txn_put(t, 0, &k, "x", 1), LS_NOTABLE);
  char big[9000];
  memset(big, 'v', sizeof big);
  CHECK_RC(ls_txn_put(t, 1, &k, big, sizeof big), LS_TOOBIG);
  ls_txn_free(t);
  bare_free(e);
}

int main(void) {
  RUN(test_writes_and_savepoints);
  RUN(test_forget_table);
  RUN(test_observations);
  RUN(test_states);
  return unit_finish();
}
