/*
** test_prepare.c -- two-phase commit through the public API: prepare
** (durable, invisible), publish, unprepare, and a crash between prepare
** and publish.  (Decided transactions are in test_decided.c.)
*/
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Two-phase commit: prepare (durable, invisible), publish, unprepare. */
static void test_prepare_publish(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "k", "old"), LS_OK);
  ls_txn *x;
  ls_key k, j;
  ls_key_set(&k, "k", 1);
  ls_key_set(&j, "j", 1);
  ls_value v = {0};
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &k, "new", 3), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &j, "jj", 2), LS_OK);
  CHECK_RC(ls_txn_prepare(x), LS_OK);
  CHECK_INT(ls_txn_prepared(x), 1);
  /* Durable but not visible; its own reads see it; writes are refused. */
  CHECK(!strcmp(unit_gets(e, t, "k"), "old"));
  CHECK(!strcmp(unit_gets(e, t, "j"), ""));
  CHECK_RC(ls_txn_get(x, t, &k, &v), LS_OK);
  CHECK(v.len == 3 && !memcmp(v.data, "new", 3));
  CHECK_RC(ls_txn_put(x, t, &k, "x", 1), LS_INVALID);
  /* Another transaction touching its keys conflicts; others pass. */
  CHECK_RC(unit_puts(e, t, "k", "other"), LS_CONFLICT);
  CHECK_RC(unit_puts(e, t, "unrelated", "ok"), LS_OK);
  ls_txn_publish(x);
  CHECK_INT(ls_txn_prepared(x), 0);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "k"), "new"));
  CHECK(!strcmp(unit_gets(e, t, "j"), "jj"));
  CHECK_RC(unit_puts(e, t, "k", "after"), LS_OK);
  ls_close(e);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "k"), "after"));
  CHECK(!strcmp(unit_gets(e, t, "j"), "jj"));
  unit_check_ok(e);
  ls_close(e);
  ls_value_free(&v);
}

static void test_prepare_unprepare(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "k", "old"), LS_OK);
  ls_txn *x;
  ls_key k, j;
  ls_key_set(&k, "k", 1);
  ls_key_set(&j, "j", 1);
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &k, "aborted", 7), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &j, "aborted", 7), LS_OK);
  CHECK_RC(ls_txn_prepare(x), LS_OK);
  CHECK_RC(ls_txn_unprepare(x), LS_OK);
  CHECK_INT(ls_txn_prepared(x), 0);
  CHECK(!strcmp(unit_gets(e, t, "k"), "old"));
  /* Others may write the keys again. */
  CHECK_RC(unit_puts(e, t, "j", "mine"), LS_OK);
  ls_txn_free(x);
  ls_close(e);
  /* The ABORT record keeps the prepared writes out after a restart. */
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "k"), "old"));
  CHECK(!strcmp(unit_gets(e, t, "j"), "mine"));
  unit_check_ok(e);
  /* Unprepare, change, prepare again, publish. */
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &k, "first", 5), LS_OK);
  CHECK_RC(ls_txn_prepare(x), LS_OK);
  CHECK_RC(ls_txn_unprepare(x), LS_OK);
  CHECK_RC(ls_txn_put(x, t, &k, "second", 6), LS_OK);
  CHECK_RC(ls_txn_prepare(x), LS_OK);
  ls_txn_publish(x);
  ls_txn_free(x);
  CHECK(!strcmp(unit_gets(e, t, "k"), "second"));
  /* Churn well past the disk so the segments of the aborted records are
  ** reused: the aborted values must stay gone. */
  char kb[32], vb[200];
  memset(vb, 'c', sizeof vb);
  vb[sizeof vb - 1] = 0;
  for (int i = 0; i < 3000; i++) {
    snprintf(kb, sizeof kb, "churn%d", i % 20);
    CHECK_RC(unit_puts(e, t, kb, vb), LS_OK);
  }
  ls_close(e);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "k"), "second"));
  CHECK(!strcmp(unit_gets(e, t, "j"), "mine"));
  unit_check_ok(e);
  ls_close(e);
}

/* A crash after prepare and before publish: the transaction counts. */
static void test_prepare_crash(void) {
  const char *d = unit_tmpdir();
  ls_engine *e = unit_open(d, 8192, 32768, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  ls_close(e);
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    ls_engine *c = NULL;
    if (ls_open(d, NULL, &c)) _exit(2);
    ls_txn *x;
    ls_key k;
    ls_key_set(&k, "k", 1);
    if (ls_txn_begin(c, &x) || ls_txn_put(x, t, &k, "prepared", 8) || ls_txn_prepare(x)) _exit(3);
    _exit(0);                      /* no publish, no close */
  }
  int st = 0;
  waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  e = unit_reopen(d);
  CHECK(!strcmp(unit_gets(e, t, "k"), "prepared"));
  unit_check_ok(e);
  ls_close(e);
}

int main(void) {
  RUN(test_prepare_publish);
  RUN(test_prepare_unprepare);
  RUN(test_prepare_crash);
  return unit_finish();
}
