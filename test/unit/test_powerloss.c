/*
** test_powerloss.c -- the power-loss simulator (reliability plan R06).
**
** kill -9 never loses the page cache; a power cut does.  A workload runs on
** a fresh data directory through the recording I/O backend (io_record.c),
** which logs every write, sync and names operation.  Afterwards the states
** a power cut could have left are rebuilt from the log -- after any logged
** event, any subset of the writes not yet covered by a completed sync of
** their file, each whole, lost, or torn at a 512-byte sector, and a prefix
** of the names operations not yet covered by a directory sync -- and each
** is recovered with the default open (damage is an error: a crash must
** never look like damage) and checked:
**   - every acknowledged commit is there, nothing partial: the rows equal
**     the state after the last acknowledged commit, or after the one commit
**     in flight at the cut (all of it);
**   - so no deleted row is back and no older version reads;
**   - ls_check says "ok" (it reads every segment: no damage anywhere, and
**     the indexes and accounting agree);
**   - now and then, a second recovery of the same state gives the same.
** With synchronous=normal (writer.c N1-N2) commits return before they are
** durable, so the rows may be those after any earlier commit -- a prefix
** of the commits, each whole -- but never older than the last state that
** was all synced, and still no damage.
** States with equal bytes and equal expectations are recovered once.
** The recorded runs end with a clean close, which writes a checkpoint
** (checkpoint.c): the cuts after it open from the checkpoint, the others
** (also those while it is written) scan.
**
** Small workloads (up to 4 commits, cleaning driven by the workload) are
** enumerated exhaustively: every cut, every variant.  A larger workload
** with the background cleaner separating and compacting is sampled at
** random cuts and choices until that many distinct states were recovered.
** LOGSTOR_SEED reproduces a random run; LOGSTOR_POWERLOSS_STATES sets how
** many distinct random states (default 300).
*/
#include "catalog.h"
#include "io.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define KB 1024u
#define NTAB 2
#define NKEY 24
#define MAXSTEP 128

/* The logical state: each table's keys' values (NULL: absent). */
typedef struct model { char *v[NTAB][NKEY]; } model;

static void model_free(model *m) {
  for (int t = 0; t < NTAB; t++)
    for (int k = 0; k < NKEY; k++) { free(m->v[t][k]); m->v[t][k] = NULL; }
}

static void model_copy(model *dst, const model *src) {
  for (int t = 0; t < NTAB; t++)
    for (int k = 0; k < NKEY; k++) dst->v[t][k] = src->v[t][k] ? strdup(src->v[t][k]) : NULL;
}

/* One write of a transaction: a put (val) or a delete (val NULL). */
typedef struct wr { int table, key; char *val; } wr;

enum { STEP_COMMIT = 1, STEP_FLUSH, STEP_COMPACT, STEP_SEPARATE, STEP_DECIDED };

typedef struct step {
  int kind;
  wr *w;
  int nw;
} step;

/* What the recorded run left: the log, the events around each commit, and
** the state after each. */
typedef struct run {
  ls_iolog *log;
  uint64_t events;
  int ncommit;
  uint64_t start[MAXSTEP], ack[MAXSTEP];   /* events before / after commit i
                                           ** (a decided one: after its prepare,
                                           ** when the host commits) */
  uint64_t decision[MAXSTEP];              /* decided commit i's id (0: plain) */
  model after[MAXSTEP + 1];                /* [0]: empty; [i+1]: after commit i */
  uint64_t tables_at;                      /* events once the tables existed */
  ls_stats stats;                          /* of the recorded run, at its end */
  int sync;                                /* LS_SYNC_* of the recorded run */
} run;

static uint32_t table_ids[NTAB];

static void key_name(int k, char *buf, size_t cap) { snprintf(buf, cap, "key%02d", k); }

/* Begin a transaction writing step s's rows into *t.  LS_OK or an error
** (*t is set either way, to be freed). */
static int txn_of(ls_engine *e, const step *s, ls_txn **t) {
  *t = NULL;
  int rc = ls_txn_begin(e, t);
  for (int i = 0; !rc && i < s->nw; i++) {
    char kb[16];
    key_name(s->w[i].key, kb, sizeof kb);
    ls_key k;
    ls_key_set(&k, kb, (uint32_t)strlen(kb));
    uint32_t tid = table_ids[s->w[i].table];
    rc = s->w[i].val ? ls_txn_put(*t, tid, &k, s->w[i].val, (uint32_t)strlen(s->w[i].val))
                     : ls_txn_delete(*t, tid, &k);
  }
  return rc;
}

/* A decided commit (W11): the host commits once the prepare returned (the
** event logged then is its acknowledgement), and the engine publishes. */
static int do_decided(ls_engine *e, const step *s, uint64_t id, ls_iolog *log, uint64_t *ack) {
  ls_txn *t;
  int rc = txn_of(e, s, &t);
  if (!rc) rc = ls_txn_prepare_decided(t, id);
  *ack = ls_iolog_events(log);
  if (!rc) ls_txn_publish(t);
  ls_txn_free(t);
  return rc;
}

/* The host recovery asks about a transaction in doubt: it committed the
** decided commit whose prepare returned at or before the cut. */
static const run *host_run;
static uint64_t host_cut;
static int host_decide(void *arg, uint64_t id) {
  (void)arg;
  for (int i = 0; host_run && i < host_run->ncommit; i++)
    if (host_run->decision[i] == id) return host_run->ack[i] <= host_cut;
  return 0;
}

static int do_commit(ls_engine *e, const step *s) {
  ls_txn *t;
  int rc = txn_of(e, s, &t);
  if (!rc) rc = ls_txn_commit(t);
  ls_txn_free(t);
  return rc;
}

/* Run the steps on a fresh directory through the recording backend. */
static int record(const step *steps, int n, int background, uint64_t disk, int sync, run *r) {
  memset(r, 0, sizeof *r);
  r->sync = sync;
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = 8 * KB;
  o.file_size = 64 * KB;
  o.io = LS_IO_POSIX;
  o.record_io = 1;
  o.manual_cleaning = !background;
  o.disk_size = disk;
  o.synchronous = sync;
  o.sync_interval_ms = LS_MAX_SYNC_INTERVAL_MS;   /* only the syncs the log's structure needs */
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  if (!e) return 0;
  r->log = ls_io_record_log(e->io);
  CHECK(r->log != NULL);
  if (!r->log) { ls_close(e); return 0; }
  CHECK_RC(ls_table_create(e, "t1", 2, &table_ids[0]), LS_OK);
  CHECK_RC(ls_table_create(e, "t2", 1, &table_ids[1]), LS_OK);
  r->tables_at = ls_iolog_events(r->log);
  model cur;
  memset(&cur, 0, sizeof cur);
  for (int i = 0; i < n; i++) {
    const step *s = &steps[i];
    if (s->kind == STEP_COMMIT || s->kind == STEP_DECIDED) {
      r->start[r->ncommit] = ls_iolog_events(r->log);
      if (s->kind == STEP_DECIDED) {
        r->decision[r->ncommit] = 1000 + (uint64_t)r->ncommit;
        CHECK_RC(do_decided(e, s, r->decision[r->ncommit], r->log, &r->ack[r->ncommit]), LS_OK);
      } else {
        CHECK_RC(do_commit(e, s), LS_OK);
        r->ack[r->ncommit] = ls_iolog_events(r->log);
      }
      for (int j = 0; j < s->nw; j++) {
        free(cur.v[s->w[j].table][s->w[j].key]);
        cur.v[s->w[j].table][s->w[j].key] = s->w[j].val ? strdup(s->w[j].val) : NULL;
      }
      model_copy(&r->after[++r->ncommit], &cur);
    } else if (s->kind == STEP_SEPARATE) {
      /* The cleaner alone (no seal of the active segment, no sync by the
      ** writer): separate the sealed mixed segments, write the buffers. */
      uint64_t got = 1;
      while (got) CHECK_RC(ls_clean_step(e, LS_CLEAN_SEPARATE, &got), LS_OK);
      CHECK_RC(ls_clean_step(e, LS_CLEAN_FLUSH, &got), LS_OK);
    } else {
      uint64_t freed;
      for (int t = 0; t < NTAB; t++)
        CHECK_RC(s->kind == STEP_FLUSH ? ls_flush(e, table_ids[t], &freed) : ls_compact(e, table_ids[t], &freed),
                 LS_OK);
    }
  }
  model_free(&cur);
  ls_stats_get(e, &r->stats);
  ls_close(e);                       /* its writes (seals, flushes) are cut too */
  r->events = ls_iolog_events(r->log);
  return !unit_failed_checks;
}

static void run_free(run *r) {
  for (int i = 0; i <= r->ncommit; i++) model_free(&r->after[i]);
  ls_iolog_release(r->log);
}

/* Rows of the recovered engine against model m: 1 if equal. */
static int rows_equal(ls_engine *e, const model *m, char *why, size_t cap) {
  for (int t = 0; t < NTAB; t++) {
    int want = 0;
    for (int k = 0; k < NKEY; k++) want += m->v[t][k] != NULL;
    if (!ls_table_exists(e, table_ids[t])) {
      if (want) { snprintf(why, cap, "table %d is missing", t + 1); return 0; }
      continue;
    }
    int present = 0;
    for (int k = 0; k < NKEY; k++) {
      char kb[16];
      key_name(k, kb, sizeof kb);
      const char *got = unit_gets(e, table_ids[t], kb), *w = m->v[t][k];
      if (strcmp(got, w ? w : "")) {
        snprintf(why, cap, "table %d %s: expected %.20s, got %.60s", t + 1, kb, w ? w : "(absent)",
                 *got ? got : "(absent)");
        return 0;
      }
      present += w != NULL;
    }
    ls_cursor *c = NULL;                   /* and nothing else: a scan counts */
    int n = 0, rc = ls_cursor_open(e, NULL, table_ids[t], &c);
    for (rc = rc ? rc : ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) n++;
    ls_cursor_close(c);
    if (rc || n != present) {
      snprintf(why, cap, "table %d: a scan finds %d rows, expected %d", t + 1, n, present);
      return 0;
    }
  }
  return 1;
}

typedef struct seen { uint64_t *h; size_t n, cap; } seen;

static int seen_add(seen *s, uint64_t h) {
  for (size_t i = 0; i < s->n; i++)
    if (s->h[i] == h) return 0;
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->h = realloc(s->h, s->cap * sizeof *s->h);
  }
  s->h[s->n++] = h;
  return 1;
}

typedef struct tally { uint64_t states, recovered, failed, ckpt; } tally;

/* Recover one state and check it (see the top).  Returns 1 if it passed. */
static int check_state(const run *r, uint64_t cut, uint64_t variant, uint64_t *rng, const char *base, seen *done,
                       tally *tl, const char *what) {
  /* What may be found: the last acknowledged commit's state, or that of
  ** the one commit in flight at the cut. */
  int acked = 0, flight = -1;
  for (int i = 0; i < r->ncommit; i++) {
    if (r->ack[i] <= cut) acked = i + 1;
    else if (r->start[i] < cut) flight = i + 1;
  }
  /* synchronous=normal: any state from the last one all synced (no write
  ** pending at that event) to the newest. */
  int lo = acked, hi = flight > 0 ? flight : acked;
  if (r->sync == LS_SYNC_NORMAL) {
    uint64_t c = cut;
    while (c > 0 && ls_iolog_variants(r->log, c) > 1) c--;
    lo = 0;
    for (int i = 0; i < r->ncommit; i++)
      if (r->ack[i] <= c) lo = i + 1;
  }
  uint64_t rngcopy = rng ? *rng : 0, h = 0;
  if (ls_iolog_materialize(r->log, cut, variant, rng ? &rngcopy : NULL, NULL, &h)) {
    unit_fail(__FILE__, __LINE__, "materialize: %s", ls_errmsg());
    return 0;
  }
  tl->states++;
  if (!seen_add(done, h ^ ((uint64_t)acked << 40) ^ ((uint64_t)(flight + 1) << 48) ^ ((uint64_t)lo << 56))) {
    if (rng) *rng = rngcopy;
    return 1;
  }
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/s", base);
  unit_rmtree(dir);
  mkdir(dir, 0700);
  rngcopy = rng ? *rng : 0;
  if (ls_iolog_materialize(r->log, cut, variant, rng ? &rngcopy : NULL, dir, NULL)) {
    unit_fail(__FILE__, __LINE__, "materialize: %s", ls_errmsg());
    return 0;
  }
  if (rng) *rng = rngcopy;
  tl->recovered++;
  int ok = 1;
  char why[800] = "";
  for (int pass = 0; ok && pass < (tl->recovered % 8 == 0 ? 2 : 1); pass++) {
    ls_options o;
    ls_options_init(&o);
    o.io = LS_IO_POSIX;
    o.manual_cleaning = 1;
    o.decide = host_decide;
    host_run = r;
    host_cut = cut;
    ls_engine *e = NULL;
    int rc = ls_open(dir, &o, &e);
    if (rc) {
      snprintf(why, sizeof why, "recovery failed: %s", ls_errmsg());
      ok = 0;
      break;
    }
    if (unit_stats(e).recovery_checkpoint) tl->ckpt++;   /* opened from the close's checkpoint */
    char w1[200] = "", w2[200] = "";
    if (r->sync == LS_SYNC_NORMAL) {
      int match = 0;
      for (int j = hi; j >= lo && !match; j--) match = rows_equal(e, &r->after[j], w1, sizeof w1);
      if (!match) {
        snprintf(why, sizeof why, "rows are not those after any commit from %d to %d (against %d: %s)", lo, hi, lo,
                 w1);
        ok = 0;
      }
    } else {
      int match = rows_equal(e, &r->after[acked], w1, sizeof w1) ||
                  (flight > 0 && rows_equal(e, &r->after[flight], w2, sizeof w2));
      if (!match) {
        snprintf(why, sizeof why, "rows are neither commit %d's (%s) nor in-flight commit %d's (%s)", acked, w1,
                 flight, flight > 0 ? w2 : "none");
        ok = 0;
      }
    }
    char *rep = NULL;
    if (ok && (rc = ls_check(e, 0, &rep)) != LS_OK) {
      snprintf(why, sizeof why, "ls_check: %s", ls_errmsg());
      ok = 0;
    } else if (ok && strcmp(rep, "ok")) {
      snprintf(why, sizeof why, "ls_check: %.300s", rep);
      ok = 0;
    }
    free(rep);
    ls_close(e);
  }
  if (!ok) {
    tl->failed++;
    if (tl->failed <= 5)
      unit_fail(__FILE__, __LINE__, "%s: power cut after event %llu of %llu, variant %llu%s: %s", what,
                (unsigned long long)cut, (unsigned long long)r->events, (unsigned long long)variant,
                rng ? " (random)" : "", why);
  }
  return ok;
}

static const char *scratch(void) {
  static const char *base;
  if (!base) base = unit_tmpdir();
  return base;
}

/* Every cut, every variant. */
static void exhaustive_sync(const char *what, const step *steps, int n, int sync) {
  run r;
  if (!record(steps, n, 0, 0, sync, &r)) { if (r.log) run_free(&r); return; }
  seen done = {0};
  tally tl = {0};
  time_t t0 = time(NULL);
  uint64_t capped = 0;
  for (uint64_t cut = 0; cut <= r.events && tl.failed < 5; cut++) {
    uint64_t nv = ls_iolog_variants(r.log, cut);
    if (nv > 200000) { capped++; nv = 200000; }    /* (never reached by these workloads) */
    for (uint64_t v = 0; v < nv && tl.failed < 5; v++) check_state(&r, cut, v, NULL, scratch(), &done, &tl, what);
  }
  CHECK_U64(capped, 0);
  /* The cuts after the close's checkpoint was renamed into place open from
  ** it; the others scan. */
  CHECK(tl.ckpt > 0 && tl.ckpt < tl.recovered);
  printf("     %s: %d commits, %llu events, %llu crash states, %llu distinct recovered (%llu from a checkpoint), "
         "%ld s\n", what, r.ncommit, (unsigned long long)r.events, (unsigned long long)tl.states,
         (unsigned long long)tl.recovered, (unsigned long long)tl.ckpt, (long)(time(NULL) - t0));
  free(done.h);
  run_free(&r);
}

static void exhaustive(const char *what, const step *steps, int n) { exhaustive_sync(what, steps, n, LS_SYNC_FULL); }

/* ---- the workloads -------------------------------------------------------------- */

#define W(t, k, v) { (t), (k), (char *)(v) }
#define COMMIT(ws) { STEP_COMMIT, ws, (int)(sizeof ws / sizeof ws[0]) }
#define DECIDED(ws) { STEP_DECIDED, ws, (int)(sizeof ws / sizeof ws[0]) }

/* Four single-row commits: a put, another, an overwrite, a delete. */
static void test_exhaustive_rows(void) {
  static wr a[] = { W(0, 1, "one") }, b[] = { W(1, 2, "two") }, c[] = { W(0, 1, "one-again") },
            d[] = { W(1, 2, NULL) };
  step s[] = { COMMIT(a), COMMIT(b), COMMIT(c), COMMIT(d) };
  exhaustive("rows", s, 4);
}

/* A value of n bytes made from tag. */
static char *val_of(const char *tag, size_t n) {
  char *v = malloc(n + 1);
  for (size_t i = 0; i < n; i++) v[i] = tag[i % strlen(tag)];
  v[n] = 0;
  return v;
}

/* Transactions of several rows: one that shares a block, one streamed
** across segments (CONT records and a COMMIT record), and one that
** fills a group segment directly (W7). */
static void test_exhaustive_transactions(void) {
  static wr a[3], b[7], c[6];
  for (int i = 0; i < 3; i++) a[i] = (wr){ i % 2, i, val_of("small", 40) };
  for (int i = 0; i < 7; i++) b[i] = (wr){ i % 2, 3 + i, val_of("streamed", 1800) };   /* > one segment */
  for (int i = 0; i < 6; i++) c[i] = (wr){ 1, 10 + i, val_of("direct", 1200) };        /* one group */
  static wr d[] = { W(0, 0, NULL), W(1, 4, "replaced") };
  step s[] = { COMMIT(a), COMMIT(b), COMMIT(c), COMMIT(d) };
  exhaustive("transactions", s, 4);
  for (int i = 0; i < 3; i++) free(a[i].val);
  for (int i = 0; i < 7; i++) free(b[i].val);
  for (int i = 0; i < 6; i++) free(c[i].val);
}

/* Decided commits (W11, SQL's explicit transactions): the host's decision
** commits them once their prepare returned, their COMMIT record becomes
** durable only with a later sync -- here the next decided commit's
** prepare, a flush, and the close -- and a cut anywhere after the prepare
** must find them whole, one before it not at all (with a host that answers
** "no" cuts after the prepare find them missing: checked by hand). */
static void test_exhaustive_decided(void) {
  static wr a[] = { W(0, 1, "one"), W(1, 2, "two") };
  static wr b[] = { W(0, 1, "one-again"), W(0, 3, "three") };
  static wr c[] = { W(1, 2, NULL), W(0, 4, "four") };
  step s[] = { DECIDED(a), DECIDED(b), { STEP_FLUSH, NULL, 0 }, DECIDED(c) };
  exhaustive("decided", s, 4);
}

/* Commits with separation and compaction between them: rows move, a
** segment is freed and reused, a tombstone may be dropped. */
static void test_exhaustive_cleaning(void) {
  static wr a[4], b[4];
  for (int i = 0; i < 4; i++) a[i] = (wr){ 0, i, val_of("first", 900) };
  for (int i = 0; i < 4; i++) b[i] = (wr){ 0, i, val_of("second", 900) };
  static wr c[] = { W(0, 0, NULL), W(0, 1, NULL) };
  static wr d[] = { W(1, 5, "after-compaction"), W(0, 2, "changed") };
  step s[] = { COMMIT(a), COMMIT(b), { STEP_FLUSH, NULL, 0 }, COMMIT(c), { STEP_COMPACT, NULL, 0 }, COMMIT(d) };
  exhaustive("cleaning", s, 6);
  for (int i = 0; i < 4; i++) { free(a[i].val); free(b[i].val); }
}

/* A longer workload with the background cleaner, sampled at random. */
static void random_states(int sync) {
  uint64_t rng = unit_seed(sync == LS_SYNC_NORMAL ? "power loss, synchronous=normal" : "power loss");
  const char *env = getenv("LOGSTOR_POWERLOSS_STATES");
  uint64_t want = env ? strtoull(env, NULL, 10) : 300;
  step s[MAXSTEP];
  int n = 0, ncommit = 0;
  while (n < MAXSTEP && ncommit < 80) {
    uint64_t x = unit_rand(&rng);
    if (x % 13 == 0) { s[n++] = (step){ STEP_FLUSH, NULL, 0 }; continue; }
    if (x % 17 == 0) { s[n++] = (step){ STEP_COMPACT, NULL, 0 }; continue; }
    int nw = 1 + (int)(unit_rand(&rng) % (x % 7 == 0 ? 10 : 3));
    wr *w = calloc((size_t)nw, sizeof *w);
    for (int i = 0; i < nw; i++) {
      uint64_t y = unit_rand(&rng);
      w[i].table = (int)(y % NTAB);
      w[i].key = (int)((y >> 8) % NKEY);
      char tag[32];
      snprintf(tag, sizeof tag, "c%d-%d:", ncommit, i);
      w[i].val = y % 5 == 0 ? NULL : val_of(tag, 20 + (size_t)((y >> 16) % 2000));
    }
    s[n++] = (step){ STEP_COMMIT, w, nw };
    ncommit++;
  }
  run r;
  /* A bounded disk (four files of eight segments): the cleaner separates,
  ** compacts and frees all along. */
  int recorded = record(s, n, 1, 4 * 64 * KB, sync, &r);
  if (recorded) {
    seen done = {0};
    tally tl = {0};
    time_t t0 = time(NULL);
    for (uint64_t i = 0; tl.recovered < want && i < 50 * want && tl.failed < 5; i++) {
      uint64_t cut = unit_rand(&rng) % (r.events + 1);
      check_state(&r, cut, 0, &rng, scratch(), &done, &tl, "random");
    }
    CHECK(tl.recovered >= want);
    /* The cleaner did work during the recorded run. */
    CHECK(r.stats.segments_freed > 0);
    CHECK(r.stats.separator_records_relocated + r.stats.separator_segments_adopted > 0);
    printf("     random: the cleaner separated %llu records (adopted %llu segments), compacted %llu segments, "
           "freed %llu\n", (unsigned long long)r.stats.separator_records_relocated,
           (unsigned long long)r.stats.separator_segments_adopted, (unsigned long long)r.stats.segments_compacted,
           (unsigned long long)r.stats.segments_freed);
    printf("     random: %d commits, %llu events, %llu crash states, %llu distinct recovered, %ld s\n", r.ncommit,
           (unsigned long long)r.events, (unsigned long long)tl.states, (unsigned long long)tl.recovered,
           (long)(time(NULL) - t0));
    free(done.h);
  }
  if (r.log) run_free(&r);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < s[i].nw; j++) free(s[i].w[j].val);
    free(s[i].w);
  }
}

static void test_random_states(void) { random_states(LS_SYNC_FULL); }

/* synchronous=normal: small commits share the open buffer unsynced (N1),
** then a streamed and a direct transaction (N2), then cleaning between
** unsynced commits (the cleaner syncs them before it frees). */
static void test_normal_rows(void) {
  static wr a[1], b[] = { W(1, 2, "two") }, c[1], d[] = { W(1, 2, NULL) };
  a[0] = (wr){ 0, 1, val_of("one", 1500) };
  c[0] = (wr){ 0, 3, val_of("three", 2500) };     /* the next block: N1 syncs first */
  step s[] = { COMMIT(a), COMMIT(b), COMMIT(c), COMMIT(d) };
  exhaustive_sync("normal rows", s, 4, LS_SYNC_NORMAL);
  free(a[0].val);
  free(c[0].val);
}

static void test_normal_transactions(void) {
  static wr a[3], b[7], c[6];
  for (int i = 0; i < 3; i++) a[i] = (wr){ i % 2, i, val_of("small", 40) };
  for (int i = 0; i < 7; i++) b[i] = (wr){ i % 2, 3 + i, val_of("streamed", 1800) };
  for (int i = 0; i < 6; i++) c[i] = (wr){ 1, 10 + i, val_of("direct", 1200) };
  static wr d[] = { W(0, 0, NULL), W(1, 4, "replaced") }, f[] = { W(0, 1, "last") };
  /* The separator copies the streamed transaction's first segment while
  ** its COMMIT record is in the active one (N2). */
  step s[] = { COMMIT(a), COMMIT(b), { STEP_SEPARATE, NULL, 0 }, COMMIT(c), COMMIT(d), COMMIT(f) };
  exhaustive_sync("normal transactions", s, 6, LS_SYNC_NORMAL);
  for (int i = 0; i < 3; i++) free(a[i].val);
  for (int i = 0; i < 7; i++) free(b[i].val);
  for (int i = 0; i < 6; i++) free(c[i].val);
}

static void test_normal_cleaning(void) {
  static wr a[4], b[4];
  for (int i = 0; i < 4; i++) a[i] = (wr){ 0, i, val_of("first", 900) };
  for (int i = 0; i < 4; i++) b[i] = (wr){ 0, i, val_of("second", 900) };
  static wr c[] = { W(0, 0, NULL), W(0, 1, NULL) }, c2[] = { W(0, 2, "unsynced") };
  static wr d[] = { W(1, 5, "after-compaction"), W(0, 2, "changed") };
  step s[] = { COMMIT(a), COMMIT(b), { STEP_FLUSH, NULL, 0 }, COMMIT(c), COMMIT(c2), { STEP_COMPACT, NULL, 0 },
               COMMIT(d) };
  exhaustive_sync("normal cleaning", s, 7, LS_SYNC_NORMAL);
  for (int i = 0; i < 4; i++) { free(a[i].val); free(b[i].val); }
}

static void test_normal_random_states(void) { random_states(LS_SYNC_NORMAL); }

int main(void) {
  RUN(test_exhaustive_rows);
  RUN(test_exhaustive_transactions);
  RUN(test_exhaustive_cleaning);
  RUN(test_exhaustive_decided);
  RUN(test_random_states);
  RUN(test_normal_rows);
  RUN(test_normal_transactions);
  RUN(test_normal_cleaning);
  RUN(test_normal_random_states);
  return unit_finish();
}
