/*
** commit.c -- the end of a transaction, in the writer module: validating
** it against what others committed (write conflicts), installing it, the
** two phases of prepare / publish / unprepare, and the public entry points
** (ls_txn_commit, _prepare, _publish, _unprepare, _free).  The rules W1-W9
** are at the top of writer.c.
**
** Validation.  A transaction's observations (txn.h) must still hold when
** it commits: the key still absent, or still at the very record seen (same
** location in the same segment incarnation, or a relocated copy with the
** same write sequence).  Tables not changed since the transaction first
** read them need no check.  A transaction that touches a key of a prepared
** transaction (of an earlier group, or accepted before it in this one)
** conflicts: it could not have seen those records, and its newer records
** must not be installed before them.
*/
#include "writer_int.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- key set ------------------------------------------------------------ */

int commit_test_keyset_nomem;      /* tests: the key set can not be sized */

static int ks_reset(keyset *s, uint32_t want) {
  if (commit_test_keyset_nomem) return LS_NOMEM;
  uint32_t cap = 64;
  while (cap < want * 2) cap *= 2;
  if (cap > s->cap) {
    void *p = realloc(s->slots, cap * sizeof *s->slots);
    if (!p) return LS_NOMEM;
    s->slots = p;
    s->cap = cap;
  }
  memset(s->slots, 0, s->cap * sizeof *s->slots);
  s->n = 0;
  return LS_OK;
}

static uint32_t ks_find(const keyset *s, uint32_t table, uint64_t hi, uint64_t lo) {
  uint32_t i = (uint32_t)(lo ^ (hi >> 17) ^ table) & (s->cap - 1);
  while (s->slots[i].table && !(s->slots[i].table == table && s->slots[i].hi == hi && s->slots[i].lo == lo))
    i = (i + 1) & (s->cap - 1);
  return i;
}

static int ks_has(const keyset *s, uint32_t table, uint64_t hi, uint64_t lo) {
  return s->cap && s->slots[ks_find(s, table, hi, lo)].table != 0;
}

/* Add; the set was sized for every key of the group by ks_reset. */
static void ks_add(keyset *s, uint32_t table, uint64_t hi, uint64_t lo) {
  uint32_t i = ks_find(s, table, hi, lo);
  if (!s->slots[i].table) {
    s->slots[i].table = table;
    s->slots[i].hi = hi;
    s->slots[i].lo = lo;
    s->n++;
  }
}

/* ---- validation --------------------------------------------------------- */

/* Is observation o still true?  1 yes, 0 conflict, < 0 error. */
static int obs_holds(ls_engine *e, const txn_obs *o) {
  idx_key k = { o->hi, o->lo };
  unsigned g = ls_guard_enter(&e->guard);
  uint64_t word = 0;
  int rc = cat_lookup(e, o->table, &k, NULL, &word);
  int ok;
  if (rc) {
    ok = rc;
  } else if (!o->present) {
    ok = word == 0 || loc_tomb(word);
  } else if (word == 0 || loc_tomb(word)) {
    ok = 0;
  } else if (loc_same(word, o->word) && seg_seq_of_word(&e->sm, word) == o->segseq) {
    ok = 1;                        /* the very record seen */
  } else if (o->seq == 0) {
    ok = 0;                        /* located, never read: moved or changed */
  } else {
    /* Moved: a relocated copy keeps its sequence, a new version does not. */
    ls_value v = {0};
    rc = read_record(e, word, o->table, NULL, &v);
    ok = rc ? rc : v.seq == o->seq;
    ls_value_free(&v);
  }
  ls_guard_leave(&e->guard, g);
  return ok;
}

void writer_finish(commit_req *q, int rc, const ls_error *err) {
  q->rc = rc;
  if (rc) q->err = *err;
  sem_post(&q->done);
}

/* Does t read or write a key written by a prepared transaction -- of an
** earlier group, or accepted before t in this one (acc)?  (Its records are
** durable but not installed: t could not have seen them, and t's newer
** records must not be installed before them.) */
static int prepared_conflict(ls_writer *w, ls_txn *t, commit_req *acc) {
  ls_txn *p = w->prepared;
  int in_group = 0;
  for (;; p = in_group ? (acc = acc->next, acc ? acc->t : NULL) : p->next_prepared) {
    if (!p && !in_group) { in_group = 1; p = acc ? acc->t : NULL; }
    if (!p) break;
    if (p == t || (in_group && acc->mode != WRITE_PREPARE)) continue;
    for (uint32_t m = 0; m < t->nmaps; m++) {
      ls_index *mine = t->maps[m].idx, *theirs = txn_overlay(p, t->maps[m].table);
      if (!theirs) continue;
      idx_entry batch[64];
      idx_key from = { 0, 0 };
      int after = 0;
      for (;;) {
        size_t n = idx_range(mine, &from, after, batch, 64);
        for (size_t i = 0; i < n; i++) {
          idx_key k = { batch[i].hi, batch[i].lo };
          uint64_t w2;
          if (idx_get(theirs, &k, &w2) && (uint32_t)w2) return 1;
        }
        if (n < 64) break;
        from.hi = batch[n - 1].hi;
        from.lo = batch[n - 1].lo;
        after = 1;
      }
    }
  }
  return 0;
}

/* Did a transaction accepted earlier in this group (acc) write the key of
** o?  Without the key set (it could not be sized): their overlays. */
static int group_wrote(commit_req *acc, const txn_obs *o) {
  idx_key k = { o->hi, o->lo };
  for (commit_req *a = acc; a; a = a->next) {
    ls_index *ov = txn_overlay(a->t, o->table);
    uint64_t w2;
    if (ov && idx_get(ov, &k, &w2) && (uint32_t)w2) return 1;
  }
  return 0;
}

/* Check every transaction of the group; returns the accepted list. */
commit_req *writer_validate(ls_writer *w, commit_req *group) {
  ls_engine *e = w->e;
  commit_req *acc = NULL, **tailp = &acc;
  uint32_t nkeys = 0, ntx = 0;
  for (commit_req *q = group; q; q = q->next) { nkeys += q->t->live_recs; ntx++; }
  int use_set = ntx > 1 && ks_reset(&w->ks, nkeys) == LS_OK;
  for (commit_req *q = group, *next; q; q = next) {
    next = q->next;
    ls_txn *t = q->t;
    int rc = LS_OK;
    const char *msg = NULL;
    unsigned g = ls_guard_enter(&e->guard);
    for (uint32_t i = 0; i < t->nmaps && !rc; i++) {
      ls_table *tb = cat_table(e, t->maps[i].table);
      if (!tb) { rc = LS_NOTABLE; msg = "the table was dropped before the commit"; }
    }
    ls_guard_leave(&e->guard, g);
    if (!rc && prepared_conflict(w, t, acc)) {
      rc = LS_CONFLICT;
      msg = "another transaction holding one of its rows is committing; nothing was written";
      atomic_fetch_add(&e->conflicts, 1);
    }
    /* Tables changed since this transaction first read them. */
    uint32_t stale[16];
    int nstale = 0, all_stale = 0;
    g = ls_guard_enter(&e->guard);
    for (uint32_t i = 0; i < t->nmaps && !rc; i++) {
      ls_table *tb = cat_table(e, t->maps[i].table);
      /* Unchanged: no install since its snapshot (the reads saw that state)
      ** nor since its first read. */
      if (!t->maps[i].observed || !tb ||
          (atomic_load(&tb->changes) == t->maps[i].changes && atomic_load(&tb->last_install) <= t->snap->stamp))
        continue;
      if (nstale < 16) stale[nstale++] = t->maps[i].table; else all_stale = 1;
    }
    ls_guard_leave(&e->guard, g);
    for (uint32_t i = 0; i < t->nobs && !rc && (nstale || acc); i++) {
      const txn_obs *o = &t->obs[i];
      if (!o->table) continue;                     /* forgotten */
      /* Written by a transaction accepted before it in this group: it read
      ** the version before that one. */
      int in_group = acc && (use_set ? ks_has(&w->ks, o->table, o->hi, o->lo) : group_wrote(acc, o));
      int check = all_stale || in_group;
      for (int s = 0; s < nstale && !check; s++) check = stale[s] == o->table;
      if (!check) continue;
      int ok = in_group ? 0 : obs_holds(e, o);
      if (ok < 0) { rc = ok; msg = NULL; }        /* this thread's error */
      else if (!ok) {
        rc = LS_CONFLICT;
        msg = "another transaction changed a row this transaction read; nothing was written";
        atomic_fetch_add(&e->conflicts, 1);
      }
    }
    if (rc) {
      ls_error err;
      if (msg) { err.cause = LS_CAUSE_NONE; snprintf(err.msg, sizeof err.msg, "%s", msg); }
      else ls_err_save(&err);
      writer_finish(q, rc, &err);
      continue;
    }
    if (use_set)
      for (uint32_t i = 0; i < t->nrec; i++)
        if (!t->recs[i].dead) ks_add(&w->ks, t->recs[i].table, t->recs[i].hi, t->recs[i].lo);
    q->next = NULL;
    *tailp = q;
    tailp = &q->next;
  }
  return acc;
}

/* ---- install ------------------------------------------------------------ */

void writer_install(ls_writer *w, ls_txn *t) {
  ls_engine *e = w->e;
  assert(w->syncs.n == 0);         /* W1: everything written was synced */
  int record;
  uint64_t stamp = snap_install_begin(&e->snaps, t->snap, &record);
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *tb = NULL;
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    if (r->dead) continue;
    assert(r->word != 0);          /* W1: installed only once durable */
    if (!tb || tb->id != r->table) {
      if (tb) pthread_rwlock_unlock(&tb->lock);
      /* Present for a commit (drops and truncations run on this thread); a
      ** prepared transaction's table may have been dropped before its
      ** publish: its records are dead. */
      tb = cat_table(e, r->table);
      /* A prepared transaction's records are dead if its table was
      ** truncated since: recovery ignores them (below the truncation
      ** point), so they must not be visible now either. */
      if (tb && t->first_seq < tb->trunc_seq) tb = NULL;
      if (!tb) { writer_note_empty(w, loc_seg(r->word)); continue; }
      pthread_rwlock_wrlock(&tb->lock);
      atomic_fetch_add(&tb->changes, 1);
      atomic_store(&tb->last_install, stamp);
    }
    /* The keys are in no order: fetch the lookups ahead. */
    const txn_rec *far = i + IDX_PF_FAR < t->nrec ? &t->recs[i + IDX_PF_FAR] : NULL;
    const txn_rec *near = i + IDX_PF_NEAR < t->nrec ? &t->recs[i + IDX_PF_NEAR] : NULL;
    if (far && far->table == r->table) idx_prefetch(tb->idx, &(idx_key){ far->hi, far->lo }, 0);
    if (near && near->table == r->table) idx_prefetch(tb->idx, &(idx_key){ near->hi, near->lo }, 1);
    idx_key k = { r->hi, r->lo };
    if (record) {
      /* The version it replaces, for the snapshots before it (S1). */
      uint64_t cur;
      if (!idx_get(tb->idx, &k, &cur)) cur = 0;
      if (cur || !loc_tomb(r->word)) snap_record(&e->snaps, tb->id, &k, cur, stamp);
    }
    uint64_t old = 0;
    int how = cat_install(e, tb, &k, r->word, &old);
    /* A segment left without live records goes to the cleaner (W6). */
    uint64_t gone = how == INSTALL_REPLACED ? old : how == INSTALL_DEAD ? r->word : 0;
    if (gone) writer_note_empty(w, loc_seg(gone));
  }
  if (tb) pthread_rwlock_unlock(&tb->lock);
  snap_install_end(&e->snaps, stamp);
  /* Segments written for one group join its set; their buffers can be
  ** settled now that the transaction counts (W7). */
  for (uint32_t i = 0; i < t->ndirect; i++) {
    ls_seg *d = seg_get(&e->sm, t->direct[i]);
    ls_table *dt = cat_table(e, d->table);
    seg_set_add(&e->sm, t->direct[i], dt ? dt->gsets[d->group] : 0);
    writer_note_empty(w, t->direct[i]);
  }
  ls_guard_leave(&e->guard, g);
  cleaner_settle(e, t->direct, t->ndirect);
  atomic_fetch_add(&e->commits, 1);
  atomic_fetch_add(&e->user_bytes_written, t->live_bytes);
}

/* Hold (+1) or release (-1) the segments of a prepared t's records. */
void writer_hold_segments(ls_writer *w, ls_txn *t, int delta) {
  uint32_t last = SEG_NONE;
  for (uint32_t i = 0; i < t->nrec; i++) {
    const txn_rec *r = &t->recs[i];
    if (r->dead || !r->word || loc_seg(r->word) == last) continue;
    last = loc_seg(r->word);
    seg_hold(&w->e->sm, last, delta);
    if (delta < 0) writer_note_empty(w, last);
  }
  if (t->decision && t->prep_seg != SEG_NONE) {
    seg_hold(&w->e->sm, t->prep_seg, delta);      /* W11 */
    if (delta < 0) writer_note_empty(w, t->prep_seg);
  }
}

/* ---- decisions in doubt (W11) ------------------------------------------- */

static int decision_add(ls_writer *w, uint64_t id) {
  pthread_mutex_lock(&w->lock);
  int rc = LS_GROW(w->decisions, w->capdecisions, w->ndecisions + 1, 8);
  if (!rc) w->decisions[w->ndecisions++] = id;
  pthread_mutex_unlock(&w->lock);
  return rc ? ls_err(LS_NOMEM, "writer: out of memory") : LS_OK;
}

static void decision_remove(ls_writer *w, uint64_t id) {
  pthread_mutex_lock(&w->lock);
  for (uint32_t i = 0; i < w->ndecisions; i++)
    if (w->decisions[i] == id) {
      w->decisions[i] = w->decisions[--w->ndecisions];
      break;
    }
  pthread_mutex_unlock(&w->lock);
}

/* A published decision: pending until its COMMIT record is durable (the
** next sync of the writer's files). */
static int decision_settle(ls_writer *w, uint64_t id) {
  if (!w->deferred) {
    decision_remove(w, id);
    return LS_OK;
  }
  if (LS_GROW(w->settling, w->capsettling, w->nsettling + 1, 8)) return ls_err(LS_NOMEM, "writer: out of memory");
  w->settling[w->nsettling++] = id;
  return LS_OK;
}

void writer_decisions_durable(ls_writer *w) {
  for (uint32_t i = 0; i < w->nsettling; i++) decision_remove(w, w->settling[i]);
  w->nsettling = 0;
}

int ls_decision_pending(ls_engine *e, uint64_t id) {
  ls_writer *w = e->writer;
  int found = 0;
  pthread_mutex_lock(&w->lock);
  for (uint32_t i = 0; i < w->ndecisions && !found; i++) found = w->decisions[i] == id;
  pthread_mutex_unlock(&w->lock);
  return found;
}

int ls_wait_unprepared(ls_engine *e, uint32_t timeout_ms) {
  ls_writer *w = e->writer;
  if (!w || !atomic_load(&w->nprepared)) return LS_OK;     /* the common case: one load */
  uint64_t end = ls_now_ns() + (uint64_t)timeout_ms * 1000000u;
  for (int i = 0; atomic_load(&w->nprepared); i++) {
    /* A prepared transaction's host is between its own commit and the
    ** publish (SQLite: between the file's commit and xCommit): soon. */
    if (ls_now_ns() >= end) return ls_err(LS_BUSY, "a prepared transaction was not published within %u ms", timeout_ms);
    if (i < 64) {
      sched_yield();
    } else {
      struct timespec ts = { 0, 50000 };
      nanosleep(&ts, NULL);
    }
  }
  return LS_OK;
}

int writer_decision_keep(ls_engine *e, uint64_t id) { return decision_add(e->writer, id); }

/* Write one control record naming t's whole sequence range (a COMMIT
** settling a decided transaction, W11, or an ABORT) on its own and make
** it durable.  The segments holding t's records are pinned to it first:
** they keep it readable as long as they are in use.  For an ABORT they
** must also become unreadable (a free marker) before they let it go: a
** freed segment's records are read again by recovery until its slot is
** rewritten.  The reserve's last segments may serve: a record that can not
** be written would leave the transaction's outcome to chance. */
static int write_range_record(ls_writer *w, ls_txn *t, int type) {
  ls_engine *e = w->e;
  if (atomic_load(&e->failed)) return cat_check_failed(e);
  uint8_t rec[LS_REC_HDR + 16], range[16];
  ls_put64(range, t->first_seq);
  ls_put64(range + 8, t->last_seq);
  ls_rec_encode(rec, type, 0, NULL, 0, range, 16);
  w->io_error = 0;
  w->structural = 0;               /* N2 is the prepare group's */
  writer_group_start(w, sizeof rec);
  int rc = writer_ensure_segment(w, SEG_FOR_CLEANER);
  if (!rc && sizeof rec > writer_room(w)) rc = writer_switch_segment(w, SEG_FOR_CLEANER);
  uint32_t last = SEG_NONE;
  for (uint32_t i = 0; !rc && i < t->nrec; i++) {
    const txn_rec *r = &t->recs[i];
    if (r->dead || !r->word || loc_seg(r->word) == last) continue;
    last = loc_seg(r->word);
    rc = seg_add_dep(&e->sm, last, w->seg);
    if (type == LS_REC_ABORT) seg_flags(&e->sm, last, SEGF_MARK, 0);
  }
  if (!rc) {
    writer_append(w, rec, sizeof rec, LS_RF_END, 0);
    rc = writer_buf_write(w);
  }
  /* An ABORT is durable before it counts.  A COMMIT settling a decided
  ** transaction need not be (W11): the host's decision, durable already,
  ** commits the transaction at the next open as well; it goes as a
  ** synchronous=normal group's records do (N1: durable with the next sync
  ** of the writer's files), and the decision stays pending until then --
  ** or, where the transaction asked for no syncs at all, not even that
  ** (N3). */
  int m = t->sync_mode ? t->sync_mode : atomic_load(&e->sync_mode);
  if (type == LS_REC_COMMIT) {
    w->nosync = m == LS_SYNC_OFF;
    if (!rc) rc = writer_group_sync(w, m == LS_SYNC_OFF ? LS_SYNC_OFF : LS_SYNC_NORMAL);
  } else if (!rc) {
    rc = writer_sync_files(w, 1);
  }
  w->nosync = 0;
  return rc;
}

static void unlink_prepared(ls_writer *w, ls_txn *t) {
  for (ls_txn **pp = &w->prepared; *pp; pp = &(*pp)->next_prepared)
    if (*pp == t) { *pp = t->next_prepared; break; }
  t->next_prepared = NULL;
}

static int do_publish(ls_engine *e, void *arg) {
  ls_txn *t = arg;
  ls_writer *w = e->writer;
  unlink_prepared(w, t);
  if (t->decision) {
    /* The host committed: settle the doubt first (W11).  If that fails
    ** the engine is failed, and the host's record decides at the next
    ** open; the transaction is visible meanwhile, as the host says. */
    int rc = write_range_record(w, t, LS_REC_COMMIT);
    if (rc) {
      char msg[256];
      snprintf(msg, sizeof msg, "the commit record of a decided transaction could not be written: %s", ls_errmsg());
      cat_fail(e, msg);
      assert(atomic_load(&e->failed));      /* W4 */
    } else if (decision_settle(w, t->decision)) {
      /* No memory to wait for the next sync: sync now (W4 if it fails). */
      if (writer_sync_files(w, 1)) cat_fail(e, ls_errmsg());
      else decision_remove(w, t->decision);
    }
  }
  writer_install(w, t);
  writer_hold_segments(w, t, -1);
  writer_hand_off(w);
  atomic_fetch_sub(&w->nprepared, 1);   /* installed: waiters may read */
  return LS_OK;
}

/* Undo a prepare: an ABORT record, durable, and t's records dead. */
static int do_unprepare(ls_engine *e, void *arg) {
  ls_txn *t = arg;
  ls_writer *w = e->writer;
  unlink_prepared(w, t);
  if (atomic_load(&e->failed)) {
    atomic_fetch_sub(&w->nprepared, 1);
    return cat_check_failed(e);
  }
  int rc = write_range_record(w, t, LS_REC_ABORT);
  if (rc) {
    char msg[256];
    snprintf(msg, sizeof msg, "the rollback of a prepared transaction could not be written: %s", ls_errmsg());
    cat_fail(e, msg);
  }
  assert(!rc || atomic_load(&e->failed));   /* W4: a failed write fails the engine */
  if (!rc && t->decision) decision_remove(w, t->decision);
  /* t's records are dead either way: their segments may empty out. */
  writer_hold_segments(w, t, -1);
  for (uint32_t i = 0; i < t->nrec; i++) t->recs[i].word = 0;
  t->ndirect = 0;
  writer_hand_off(w);
  atomic_fetch_sub(&w->nprepared, 1);
  return rc;
}

void writer_note_dead(void *e, uint64_t word) { writer_note_empty(((ls_engine *)e)->writer, loc_seg(word)); }

/* ---- entry points ------------------------------------------------------- */

/* Hand t to the writer and wait until it is durable (and installed for
** WRITE_COMMIT) or failed. */
static int writer_commit(ls_engine *e, ls_txn *t, int mode) {
  ls_writer *w = e->writer;
  /* Flow control: when the cleaner falls behind, writers slow down
  ** smoothly instead of filling the disk or its memory. */
  uint64_t delay = cleaner_delay_us(e);
  atomic_store(&e->delay_now_us, delay);
  if (delay) {
    struct timespec ts = { (time_t)(delay / 1000000), (long)(delay % 1000000) * 1000 };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
    atomic_fetch_add(&e->delay_us, delay);
  }
  commit_req q = { .t = t, .mode = mode, .rc = LS_OK };
  sem_init(&q.done, 0, 0);
  if (writer_inline(w, &q, NULL)) {
    sem_destroy(&q.done);
    return q.rc ? ls_err_restore(q.rc, &q.err) : LS_OK;
  }
  pthread_mutex_lock(&w->lock);
  if (w->tail) w->tail->next = &q; else w->head = &q;
  w->tail = &q;
  atomic_fetch_add(&e->writer_handoffs, 1);
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  while (sem_wait(&q.done) && errno == EINTR) {}
  sem_destroy(&q.done);
  return q.rc ? ls_err_restore(q.rc, &q.err) : LS_OK;
}

int ls_txn_commit(ls_txn *t) {
  if (t->state != TXN_OPEN) return ls_err(LS_INVALID, "transaction already committed or prepared");
  t->state = TXN_DONE;
  if (t->live_recs == 0) return LS_OK;        /* read-only: nothing to make durable */
  return writer_commit(t->e, t, WRITE_COMMIT);
}

int ls_txn_prepare(ls_txn *t) {
  if (t->state != TXN_OPEN) return ls_err(LS_INVALID, "transaction already committed or prepared");
  if (t->live_recs == 0) {
    t->state = TXN_PREPARED;                   /* nothing to write or undo */
    return LS_OK;
  }
  t->decision = 0;
  int rc = writer_commit(t->e, t, WRITE_PREPARE);
  t->state = rc ? TXN_DONE : TXN_PREPARED;
  return rc;
}

int ls_txn_prepare_decided(ls_txn *t, uint64_t decision) {
  if (t->state != TXN_OPEN) return ls_err(LS_INVALID, "transaction already committed or prepared");
  if (decision == 0) return ls_err(LS_INVALID, "a decision id is never 0");
  if (t->live_recs == 0) {
    t->state = TXN_PREPARED;                   /* nothing to write or undo */
    return LS_OK;
  }
  ls_writer *w = t->e->writer;
  int rc = decision_add(w, decision);
  if (rc) return rc;
  t->decision = decision;
  t->prep_seg = SEG_NONE;
  rc = writer_commit(t->e, t, WRITE_PREPARE);
  t->state = rc ? TXN_DONE : TXN_PREPARED;
  /* Failed: no PREPARE record is durable, or the engine is failed and the
  ** host, which will not record a decision, makes the next open drop it. */
  if (rc) decision_remove(w, decision);
  return rc;
}

void ls_txn_publish(ls_txn *t) {
  if (t->state != TXN_PREPARED) return;
  if (t->live_recs) (void)writer_call(t->e, do_publish, t);
  t->state = TXN_DONE;
}

int ls_txn_unprepare(ls_txn *t) {
  if (t->state != TXN_PREPARED) return ls_err(LS_INVALID, "transaction is not prepared");
  int rc = t->live_recs ? writer_call(t->e, do_unprepare, t) : LS_OK;
  t->state = TXN_OPEN;
  t->decision = 0;
  return rc;
}

int ls_txn_synchronous(ls_txn *t, int mode) {
  if (mode < LS_SYNC_DEFAULT || mode > LS_SYNC_OFF) return ls_err(LS_INVALID, "unknown synchronous choice %d", mode);
  t->sync_mode = mode;
  return LS_OK;
}

void ls_txn_free(ls_txn *t) {
  if (!t) return;
  if (t->state == TXN_PREPARED) (void)ls_txn_unprepare(t);
  txn_destroy(t);
}
