/*
** test_decided.c -- transactions prepared for a host that decides their
** outcome (ls_txn_prepare_decided, writer rule W11): a crash between the
** prepare and the publish leaves them in doubt, and the next open asks
** ls_options.decide.  A crash is a copy of the data directory taken while
** the engine is open (every acknowledged write is durable by then).
*/
#include "unit.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The host: its answer, and what it was asked. */
typedef struct host { int answer; int asked; uint64_t last; } host;

static int host_decide(void *arg, uint64_t id) {
  host *h = arg;
  h->asked++;
  h->last = id;
  return h->answer;
}

static ls_engine *open_with(const char *dir, host *h, int *rc) {
  ls_options o;
  ls_options_init(&o);
  o.segment_size = 64 * 1024;
  o.file_size = 1024 * 1024;
  if (h) {
    o.decide = host_decide;
    o.decide_arg = h;
  }
  ls_engine *e = NULL;
  *rc = ls_open(dir, &o, &e);
  return e;
}

/* An engine with table 1 holding "k0" = "old", and a transaction that
** writes k0..k(n-1) = "new", prepared with decision 77 and left so. */
static ls_engine *prepared_state(const char *dir, uint32_t n, ls_txn **out) {
  int rc;
  ls_engine *e = open_with(dir, NULL, &rc);
  CHECK_RC(rc, LS_OK);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_INT(t, 1);
  CHECK_RC(unit_puts(e, t, "k0", "old"), LS_OK);
  ls_txn *x;
  CHECK_RC(ls_txn_begin(e, &x), LS_OK);
  for (uint32_t i = 0; i < n; i++) {
    char kb[16];
    int kl = snprintf(kb, sizeof kb, "k%u", i);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)kl);
    CHECK_RC(ls_txn_put(x, t, &k, "new", 3), LS_OK);
  }
  CHECK_RC(ls_txn_prepare_decided(x, 77), LS_OK);
  CHECK_INT(ls_decision_pending(e, 77), 1);
  CHECK_INT(ls_decision_pending(e, 78), 0);
  *out = x;
  return e;
}

/* A crash of open engine e: its directory copied to copy (cap bytes),
** e closed, the copy opened without a host. */
static ls_engine *crash_and_open(const char *dir, ls_engine *e, char *copy, size_t cap) {
  snprintf(copy, cap, "%s.copy", dir);
  unit_copy_dir(dir, copy);
  ls_close(e);
  int rc;
  e = open_with(copy, NULL, &rc);
  CHECK_RC(rc, LS_OK);
  return e;
}

/* The copy's rows k0..k(n-1): how many read "new"; k0 reads old or new. */
static uint32_t count_new(ls_engine *e, uint32_t n) {
  uint32_t got = 0;
  for (uint32_t i = 0; i < n; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "k%u", i);
    const char *v = unit_gets(e, 1, kb);
    if (v && !strcmp(v, "new")) got++;
    else if (!(i == 0 ? v && !strcmp(v, "old") : !v || !*v)) unit_fail(__FILE__, __LINE__, "k%u reads %s", i, v ? v : "nothing");
  }
  return got;
}

/* In doubt: the host's answer decides, whole, and is asked once per open;
** without a host the open fails and says why. */
static void in_doubt(uint32_t n) {
  const char *dir = unit_tmpdir();
  char crash[512];
  snprintf(crash, sizeof crash, "%s.crash", dir);
  ls_txn *x;
  ls_engine *e = prepared_state(dir, n, &x);
  unit_copy_dir(dir, crash);
  ls_txn_free(x);                  /* unprepares: an ABORT record */
  ls_close(e);

  char copy[600];
  int rc;
  for (int answer = 1; answer >= 0; answer--) {
    snprintf(copy, sizeof copy, "%s.%d", dir, answer);
    unit_copy_dir(crash, copy);
    host h = { answer, 0, 0 };
    e = open_with(copy, &h, &rc);
    CHECK_RC(rc, LS_OK);
    CHECK_INT(h.asked, 1);
    CHECK_U64(h.last, 77);
    CHECK_U64(unit_stats(e).doubts_resolved, 1);
    CHECK_INT(count_new(e, n), answer ? n : 0);
    /* A commit on the host's word stays pending: its row must stay. */
    CHECK_INT(ls_decision_pending(e, 77), answer);
    unit_check_ok(e);
    /* Life goes on: a write, a compaction, a reopen asks again and gets
    ** the same answer. */
    CHECK_RC(unit_puts(e, 1, "other", "x"), LS_OK);
    uint64_t freed;
    CHECK_RC(ls_compact(e, 1, &freed), LS_OK);
    ls_close(e);
    h.asked = 0;
    e = open_with(copy, &h, &rc);
    CHECK_RC(rc, LS_OK);
    CHECK_INT(count_new(e, n), answer ? n : 0);
    CHECK(!strcmp(unit_gets(e, 1, "other"), "x"));
    unit_check_ok(e);
    ls_close(e);
    unit_rmtree(copy);
  }

  /* No host: the open fails, naming the way out; a host that can not
  ** read its decision fails it too. */
  snprintf(copy, sizeof copy, "%s.none", dir);
  unit_copy_dir(crash, copy);
  e = open_with(copy, NULL, &rc);
  CHECK_RC(rc, LS_BUSY);
  CHECK(e == NULL);
  CHECK(strstr(ls_errmsg(), "in doubt") != NULL);
  host h = { -1, 0, 0 };
  e = open_with(copy, &h, &rc);
  CHECK_RC(rc, LS_BUSY);
  CHECK_INT(h.asked, 1);
  /* A read-only report (tool/logstor) leaves it out. */
  ls_options o;
  ls_options_init(&o);
  o.on_damage = LS_ON_DAMAGE_REPORT;
  CHECK_RC(ls_open(copy, &o, &e), LS_OK);
  CHECK_INT(count_new(e, n), 0);
  ls_close(e);

  /* The ABORT record written after the copy settles it without asking. */
  h.answer = 1;
  h.asked = 0;
  e = open_with(dir, &h, &rc);
  CHECK_RC(rc, LS_OK);
  CHECK_INT(h.asked, 0);
  CHECK_INT(count_new(e, n), 0);
  ls_close(e);
  unit_rmtree(copy);
  unit_rmtree(crash);
}

static void test_in_doubt_small(void) { in_doubt(3); }

/* Larger than a segment: streamed across segments (and direct segments). */
static void test_in_doubt_large(void) { in_doubt(4000); }

/* Published: the COMMIT record naming the range settles it; the decision
** is no longer pending and no open asks. */
static void test_published(void) {
  const char *dir = unit_tmpdir();
  ls_txn *x;
  ls_engine *e = prepared_state(dir, 50, &x);
  ls_txn_publish(x);
  ls_txn_free(x);
  /* Its COMMIT record is durable with the next sync (here: the next
  ** commit's); until then the decision stays pending. */
  CHECK_INT(count_new(e, 50), 50);
  CHECK_INT(ls_decision_pending(e, 77), 1);
  CHECK_RC(unit_puts(e, 1, "after", "x"), LS_OK);
  CHECK_INT(ls_decision_pending(e, 77), 0);
  char copy[600];
  e = crash_and_open(dir, e, copy, sizeof copy);
  if (!e) return;
  CHECK_INT(count_new(e, 50), 50);
  CHECK_U64(unit_stats(e).doubts_resolved, 0);
  unit_check_ok(e);
  ls_close(e);
  unit_rmtree(copy);
}

/* With no commit after it, a published decision's COMMIT record is synced
** by the writer within sync_interval (README, "Transactions"), and the
** decision stops being pending then. */
static void test_published_idle(void) {
  const char *dir = unit_tmpdir();
  ls_txn *x;
  ls_engine *e = prepared_state(dir, 5, &x);
  ls_txn_publish(x);
  ls_txn_free(x);
  CHECK_INT(ls_decision_pending(e, 77), 1);
  /* The default interval is 100 ms: wait for the event, at most 10 s. */
  for (int i = 0; i < 10000 && ls_decision_pending(e, 77); i++) {
    struct timespec ts = { 0, 1000000 };
    nanosleep(&ts, NULL);
  }
  CHECK_INT(ls_decision_pending(e, 77), 0);
  ls_close(e);
}

/* A decided prepare undone and prepared again plainly: no PREPARE record
** form, no pending decision. */
static void test_unprepare_then_plain(void) {
  const char *dir = unit_tmpdir();
  ls_txn *x;
  ls_engine *e = prepared_state(dir, 5, &x);
  CHECK_RC(ls_txn_unprepare(x), LS_OK);
  CHECK_INT(ls_decision_pending(e, 77), 0);
  CHECK_RC(ls_txn_prepare(x), LS_OK);
  ls_txn_publish(x);
  ls_txn_free(x);
  char copy[600];
  e = crash_and_open(dir, e, copy, sizeof copy);
  if (!e) return;
  CHECK_INT(count_new(e, 5), 5);
  ls_close(e);
  unit_rmtree(copy);
}

int main(void) {
  RUN(test_in_doubt_small);
  RUN(test_in_doubt_large);
  RUN(test_published);
  RUN(test_published_idle);
  RUN(test_unprepare_then_plain);
  return unit_finish();
}
