/*
** read.c -- the read path: point reads, batched reads and cursors.
**
** Every read runs inside the guard (guard.h) from the index probe to the
** end of the disk read, so the segment it reads can not be freed and
** reused meanwhile.  A record read from disk is trusted only after its CRC
** (seeded with its segment's incarnation) checks, its size equals the size
** the index holds, and its table and key equal the ones asked for.
**
** Cursors fetch the index in batches of CURSOR_BATCH entries (under the
** table's read lock, released before any I/O), read the batch's records
** with one submit() so that a cold scan keeps several reads in flight, and
** resume after the last key fetched.  A transaction's own writes are merged
** in key order; its deletes hide committed rows.
**
** A cursor walks the index between two positions (hi of the index key:
** the token), up or down (ls_cursor_range); the bounds cut the walk, not
** the reads.  On a key-ordered table keys may share a position (keyorder.h):
** such a run of rows, committed and the transaction's own, is gathered
** (copied out of the batch, which a refill overwrites) and sorted by the
** full key before it is returned; a row alone at its position is returned
** from the batch as on a token-ordered table.
*/
#include "read.h"

#include <errno.h>
#include <stdlib.h>

#define CURSOR_BATCH 64
#define GET_MANY_STACK 128          /* ls_get_many: keys served from stack arrays */

void ls_value_free(ls_value *v) {
  free(v->mem);
  memset(v, 0, sizeof *v);
}

static int value_reserve(ls_value *v, size_t size) {
  if (v->cap >= size) return LS_OK;
  uint8_t *m = realloc(v->mem, size);
  if (!m) return ls_err(LS_NOMEM, "out of memory");
  v->mem = m;
  v->cap = size;
  return LS_OK;
}

static const char *table_name(ls_engine *e, uint32_t table) {
  ls_table *t = cat_table(e, table);
  return t && t->name[0] ? t->name : "?";
}

/* Verify the record image p (size bytes) read for word from a segment whose
** CRC seed was seed (taken inside the guard); fill v's pointers. */
static int check_record(ls_engine *e, uint64_t word, uint32_t seed, uint32_t table, const ls_key *k,
                        const uint8_t *p, ls_value *v) {
  uint32_t s = loc_seg(word), size = loc_size(word);
  ls_rec r;
  if (!ls_rec_decode(p, size, seed, &r) || r.size != size)
    return ls_corrupt("%s: segment %u offset %u: record checksum mismatch", table_name(e, table), s,
                      loc_off(word));
  if (r.table != table || r.type > LS_REC_DELETE || (r.type == LS_REC_DELETE) != loc_tomb(word))
    return ls_corrupt("%s: segment %u offset %u: record belongs to another table or has the wrong type",
                      table_name(e, table), s, loc_off(word));
  if (k && (r.key_len != k->len || memcmp(r.key, k->data, k->len) != 0))
    return ls_corrupt("%s: segment %u offset %u: record holds another key", table_name(e, table), s,
                      loc_off(word));
  v->key = r.key;
  v->key_len = r.key_len;
  v->data = r.val;
  v->len = r.val_len;
  v->seq = r.seq;
  if (k) v->token = cat_order(e, table) == KO_KEY ? ls_key_position(k->data, k->len) : ls_key_token(k);
  return LS_OK;
}

/* Read the record at word from disk into v (reserved) and verify it; with
** use_cache, remember it in the cache once verified. */
static int read_disk(ls_engine *e, uint64_t word, uint64_t segseq, uint32_t table, const ls_key *k, ls_value *v,
                     int use_cache) {
  uint32_t s = loc_seg(word), size = loc_size(word);
  ssize_t n = e->io->m->read(e->io, seg_fd(&e->sm, s), v->mem, size, seg_base(&e->sm, s) + loc_off(word));
  atomic_fetch_add_explicit(&e->reads, 1, memory_order_relaxed);
  if (n < 0) return ls_err_io((int)n, LS_CAUSE_READ, "%s: read of segment %u", table_name(e, table), s);
  if ((uint32_t)n != size)
    return ls_corrupt("%s: segment %u offset %u: record cut short by the end of the file",
                      table_name(e, table), s, loc_off(word));
  int rc = check_record(e, word, seg_get(&e->sm, s)->seed, table, k, v->mem, v);
  if (!rc && use_cache && e->cache) cache_put(e->cache, word, segseq, v->mem, size);
  return rc;
}

int read_record(ls_engine *e, uint64_t word, uint32_t table, const ls_key *k, ls_value *v) {
  uint32_t s = loc_seg(word), size = loc_size(word);
  int rc = value_reserve(v, size);
  if (rc) return rc;
  /* The incarnation, read inside the guard: the segment can not be freed
  ** and reused before the guard is left, so the cached image and the disk
  ** agree (cache.h). */
  uint64_t segseq = seg_seq_of(&e->sm, s);
  if (e->cache && segseq && cache_get(e->cache, word, segseq, v->mem, size))
    return check_record(e, word, seg_get(&e->sm, s)->seed, table, k, v->mem, v);
  return read_disk(e, word, segseq, table, k, v, 1);
}

int read_record_disk(ls_engine *e, uint64_t word, uint32_t table, const ls_key *k, ls_value *v) {
  int rc = value_reserve(v, loc_size(word));
  return rc ? rc : read_disk(e, word, 0, table, k, v, 0);
}

int ls_get(ls_engine *e, uint32_t table, const ls_key *k, ls_value *v) {
  idx_key key;
  cat_key(e, table, k, &key);
  unsigned g = ls_guard_enter(&e->guard);
  uint64_t word = 0;
  int rc = cat_lookup(e, table, &key, NULL, &word);
  if (!rc) rc = (!word || loc_tomb(word)) ? LS_NOTFOUND : read_record(e, word, table, k, v);
  ls_guard_leave(&e->guard, g);
  return rc;
}

/* ls_locate: where is 0 for a row written by the transaction itself. */
int ls_locate(ls_engine *e, ls_txn *txn, uint32_t table, const ls_key *k, uint64_t *where) {
  idx_key key;
  cat_key(e, table, k, &key);
  *where = 0;
  if (txn) {
    int own = txn_own(txn, table, &key, NULL);
    if (own <= 0) return own;
    int rc = txn_before_read(txn, table);
    if (rc) return rc;
  }
  unsigned g = ls_guard_enter(&e->guard);
  uint64_t word = 0;
  int rc = cat_lookup(e, table, &key, txn ? txn->snap : NULL, &word);
  uint64_t segseq = rc ? 0 : seg_seq_of_word(&e->sm, word);
  ls_guard_leave(&e->guard, g);
  if (rc) return rc;
  int present = word && !loc_tomb(word);
  /* The sequence is not known without a read: 0, filled in by ls_get_at. */
  if (txn) rc = txn_observe(txn, table, &key, present ? word : 0, 0, segseq, present);
  if (rc) return rc;
  *where = word;
  return present ? LS_OK : LS_NOTFOUND;
}

int ls_get_at(ls_engine *e, ls_txn *txn, uint32_t table, const ls_key *k, uint64_t where, ls_value *v) {
  if (!where) return txn ? ls_txn_get(txn, table, k, v) : ls_get(e, table, k, v);
  unsigned g = ls_guard_enter(&e->guard);
  int rc = read_record(e, where, table, k, v);
  ls_guard_leave(&e->guard, g);
  if (rc == LS_CORRUPT) {
    /* Moved since located (its segment may even hold other data now): the
    ** lookup decides; a record really damaged is reported by that read. */
    return txn ? ls_txn_get(txn, table, k, v) : ls_get(e, table, k, v);
  }
  if (!rc && txn) {
    idx_key key;
    cat_key(e, table, k, &key);
    txn_observe_seq(txn, table, &key, where, v->seq);
  }
  return rc;
}

/* Look k up as t sees it and fill v (with want_value).  Returns LS_OK
** (present), LS_NOTFOUND or an error.  Without want_value, a key already
** observed is answered from the observation, with no read. */
static int txn_read(ls_txn *t, uint32_t table, const ls_key *k, ls_value *v, int want_value) {
  ls_engine *e = t->e;
  idx_key key;
  cat_key(e, table, k, &key);
  int rc = txn_own(t, table, &key, want_value ? v : NULL);
  if (rc <= 0) return rc;
  int seen = want_value ? -1 : txn_seen(t, table, &key);
  if (seen >= 0) return seen ? LS_OK : LS_NOTFOUND;
  /* Not written here: read the committed version and remember it. */
  rc = txn_before_read(t, table);
  if (rc) return rc;
  unsigned g = ls_guard_enter(&e->guard);
  uint64_t word = 0;
  rc = cat_lookup(e, table, &key, t->snap, &word);
  int present = 0;
  uint64_t seq = 0, segseq = 0;
  if (!rc && word && !loc_tomb(word)) {
    rc = read_record(e, word, table, k, v);
    if (!rc) { present = 1; seq = v->seq; segseq = seg_seq_of_word(&e->sm, word); }
  }
  ls_guard_leave(&e->guard, g);
  if (rc) return rc;
  rc = txn_observe(t, table, &key, present ? word : 0, seq, segseq, present);
  if (rc) return rc;
  return present ? LS_OK : LS_NOTFOUND;
}

int ls_txn_get(ls_txn *t, uint32_t table, const ls_key *k, ls_value *v) {
  return txn_read(t, table, k, v, 1);
}

int ls_txn_exists(ls_txn *t, uint32_t table, const ls_key *k) {
  ls_value v = {0};
  int rc = txn_read(t, table, k, &v, 0);
  ls_value_free(&v);
  if (rc == LS_OK) return 1;
  if (rc == LS_NOTFOUND) return 0;
  return rc;
}

/* The scratch arrays of one ls_get_many batch. */
typedef struct many_buf {
  ls_io_req *req;
  int *which;                      /* req j reads the record of key which[j] */
  uint64_t *words, *segseqs;       /* per key: index word, its incarnation */
  int *pend;                       /* keys whose record is to be read */
  uint8_t **dsts;                  /* ... into these buffers */
  uint32_t *sizes;
  uint8_t *hits;                   /* ... found in the cache */
} many_buf;

static int get_many(ls_engine *e, ls_txn *txn, uint32_t table, int n, const ls_key *keys, ls_value *vals,
                    int *rcs, many_buf *b);

int ls_get_many(ls_engine *e, ls_txn *txn, uint32_t table, int n, const ls_key *keys, ls_value *vals,
                int *rcs) {
  if (n <= 0) return LS_OK;
  /* A batch of up to GET_MANY_STACK keys needs no allocation. */
  ls_io_req req[GET_MANY_STACK];
  int which[GET_MANY_STACK], pend[GET_MANY_STACK];
  uint64_t words[2 * GET_MANY_STACK];
  uint8_t *dsts[GET_MANY_STACK];
  uint32_t sizes[GET_MANY_STACK];
  uint8_t hits[GET_MANY_STACK];
  many_buf b = { req, which, words, words + GET_MANY_STACK, pend, dsts, sizes, hits };
  if (n <= GET_MANY_STACK) return get_many(e, txn, table, n, keys, vals, rcs, &b);
  size_t per = sizeof(ls_io_req) + 2 * sizeof(int) + 2 * sizeof(uint64_t) + sizeof(uint8_t *) + sizeof(uint32_t) + 1;
  ls_io_req *mem = malloc((size_t)n * per);
  if (!mem) return ls_err(LS_NOMEM, "out of memory");
  b.req = mem;
  b.words = (uint64_t *)(b.req + n);
  b.segseqs = b.words + n;
  b.dsts = (uint8_t **)(b.segseqs + n);
  b.which = (int *)(b.dsts + n);
  b.pend = b.which + n;
  b.sizes = (uint32_t *)(b.pend + n);
  b.hits = (uint8_t *)(b.sizes + n);
  int rc = get_many(e, txn, table, n, keys, vals, rcs, &b);
  free(mem);
  return rc;
}

/* ls_get_many with its scratch arrays: the index first (every key, under
** the table's read lock, prefetching ahead), then the cache (every record
** at once, cache_get_many), then one submit for the records it lacks. */
static int get_many(ls_engine *e, ls_txn *txn, uint32_t table, int n, const ls_key *keys, ls_value *vals,
                    int *rcs, many_buf *b) {
  uint64_t *words = b->words, *segseqs = b->segseqs;
  int rc = txn ? txn_before_read(txn, table) : LS_OK, nreq = 0, npend = 0;
  if (rc) return rc;
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = cat_table(e, table);
  if (!t) rc = ls_err(LS_NOTABLE, "no table with id %u", table);
  if (!rc) pthread_rwlock_rdlock(&t->lock);
  int order = t ? t->order : KO_TOKEN;
  for (int i = 0; !rc && i < n; i++) {
    idx_key key, ahead;
    if (i + IDX_PF_FAR < n) {
      idx_key_of(&ahead, order, keys[i + IDX_PF_FAR].data, keys[i + IDX_PF_FAR].len, keys[i + IDX_PF_FAR].digest);
      idx_prefetch(t->idx, &ahead, 0);
    }
    if (i + IDX_PF_NEAR < n) {
      idx_key_of(&ahead, order, keys[i + IDX_PF_NEAR].data, keys[i + IDX_PF_NEAR].len, keys[i + IDX_PF_NEAR].digest);
      idx_prefetch(t->idx, &ahead, 1);
    }
    idx_key_of(&key, order, keys[i].data, keys[i].len, keys[i].digest);
    words[i] = segseqs[i] = 0;
    if (txn) {
      int own = txn_own(txn, table, &key, &vals[i]);
      if (own <= 0) { rcs[i] = own; continue; }
    }
    if (!idx_get(t->idx, &key, &words[i])) words[i] = 0;
    if (txn && (rc = snap_lookup(&e->snaps, txn->snap, table, &key, &words[i]))) break;
    segseqs[i] = seg_seq_of_word(&e->sm, words[i]);   /* its incarnation (in the guard) */
    if (!words[i] || loc_tomb(words[i])) {
      rcs[i] = LS_NOTFOUND;
      continue;
    }
    int r = value_reserve(&vals[i], loc_size(words[i]));
    if (r) { rcs[i] = r; continue; }
    b->pend[npend] = i;
    b->dsts[npend] = vals[i].mem;
    b->sizes[npend] = loc_size(words[i]);
    b->hits[npend++] = 0;
  }
  if (t) pthread_rwlock_unlock(&t->lock);
  if (!rc && npend && e->cache) {
    /* Incarnation 0 (a free segment) is never cached: cache_get_many
    ** counts it as a miss. */
    uint64_t w[GET_MANY_STACK], q[GET_MANY_STACK];
    for (int j0 = 0; j0 < npend; j0 += GET_MANY_STACK) {
      int m = npend - j0 < GET_MANY_STACK ? npend - j0 : GET_MANY_STACK;
      for (int j = 0; j < m; j++) {
        w[j] = words[b->pend[j0 + j]];
        q[j] = segseqs[b->pend[j0 + j]];
      }
      (void)cache_get_many(e->cache, m, w, q, b->dsts + j0, b->sizes + j0, b->hits + j0);
    }
  }
  for (int j = 0; !rc && j < npend; j++) {
    int i = b->pend[j];
    uint32_t s = loc_seg(words[i]);
    if (b->hits[j]) {
      rcs[i] = check_record(e, words[i], seg_get(&e->sm, s)->seed, table, &keys[i], vals[i].mem, &vals[i]);
      continue;
    }
    b->req[nreq] = (ls_io_req){ LS_IOOP_READ, seg_fd(&e->sm, s), vals[i].mem, loc_size(words[i]),
                                seg_base(&e->sm, s) + loc_off(words[i]), 0 };
    b->which[nreq++] = i;
  }
  if (!rc && nreq) {
    ls_io_req *req = b->req;
    int r = e->io->m->submit(e->io, req, nreq);
    atomic_fetch_add_explicit(&e->reads, (uint64_t)nreq, memory_order_relaxed);
    for (int j = 0; j < nreq; j++) {
      int i = b->which[j];
      if (req[j].res < 0 || r < 0)
        rcs[i] = ls_err_io(req[j].res < 0 ? (int)req[j].res : r, LS_CAUSE_READ, "%s: read", table_name(e, table));
      else if ((size_t)req[j].res != req[j].len)
        rcs[i] = ls_corrupt("%s: record cut short by the end of the file", table_name(e, table));
      else {
        rcs[i] = check_record(e, words[i], seg_get(&e->sm, loc_seg(words[i]))->seed, table, &keys[i],
                              vals[i].mem, &vals[i]);
        if (!rcs[i] && e->cache) cache_put(e->cache, words[i], segseqs[i], vals[i].mem, (uint32_t)req[j].len);
      }
    }
  }
  ls_guard_leave(&e->guard, g);
  /* Remember what the transaction saw (for its commit check). */
  for (int i = 0; !rc && txn && i < n; i++) {
    if (!words[i] && rcs[i] != LS_NOTFOUND) continue;   /* served by the txn */
    idx_key key;
    idx_key_of(&key, order, keys[i].data, keys[i].len, keys[i].digest);
    int present = rcs[i] == LS_OK;
    if (rcs[i] == LS_OK || rcs[i] == LS_NOTFOUND)
      rc = txn_observe(txn, table, &key, words[i], present ? vals[i].seq : 0, segseqs[i], present);
  }
  return rc;
}

/* ---- cursors -------------------------------------------------------------- */

struct ls_cursor {
  ls_engine *e;
  ls_txn *txn;
  uint32_t table;
  int rc;                          /* sticky error */

  /* Committed rows: a fetched batch and its records. */
  idx_entry batch[CURSOR_BATCH];
  uint32_t nbatch, pos;
  uint8_t *rbuf;                   /* records of the batch, back to back */
  size_t rcap;
  uint32_t roff[CURSOR_BATCH];     /* offset of each record in rbuf */
  uint32_t seed[CURSOR_BATCH];     /* CRC seed of each record's segment */
  idx_key from;                    /* resume point */
  int after;                       /* resume after from (not at it) */
  int done;                        /* no more committed entries */

  /* The transaction's own writes, same scheme (no I/O). */
  idx_entry tbatch[CURSOR_BATCH];
  uint32_t ntb, tpos;
  idx_key tfrom;
  int tafter, tdone;

  int valid;
  ls_value row;                    /* current row (points into rbuf, own or run) */
  ls_value own;                    /* storage for a transaction's row */

  /* Bounds and direction (ls_cursor_range). */
  uint64_t lo_hi, hi_hi;           /* positions (index hi) walked, inclusive */
  int desc;                        /* walk downwards */
  int keyed;                       /* key-ordered table: runs sorted by key */

  /* A run of rows that share a position, sorted (keyed tables only). */
  struct run_row {
    uint64_t lo;                   /* the index key's lo: which key */
    size_t key_off, data_off;      /* in arena */
    uint32_t key_len, data_len;
    uint64_t seq;
    int hidden;                    /* a committed row the transaction rewrote */
    const uint8_t *key;            /* set once the arena stops moving */
  } *run;
  uint32_t nrun, rpos, caprun;
  uint64_t run_hi;
  uint8_t *arena;
  size_t narena, caparena;
};

int ls_cursor_open(ls_engine *e, ls_txn *txn, uint32_t table, ls_cursor **out) {
  ls_cursor *c = calloc(1, sizeof *c);
  if (!c) return ls_err(LS_NOMEM, "out of memory");
  c->e = e;
  c->txn = txn;
  c->table = table;
  c->done = c->tdone = 1;
  c->hi_hi = UINT64_MAX;
  *out = c;
  return LS_OK;
}

void ls_cursor_detach(ls_cursor *c) {
  c->txn = NULL;
  c->tdone = 1;
  c->ntb = c->tpos = 0;
}

void ls_cursor_close(ls_cursor *c) {
  if (!c) return;
  free(c->rbuf);
  free(c->run);
  free(c->arena);
  ls_value_free(&c->own);
  free(c);
}

/* Up to max entries of ix from the resume point in the cursor's direction,
** none beyond its far bound (fewer than max: the walk is over). */
static size_t walk(const ls_cursor *c, const ls_index *ix, const idx_key *from, int after, idx_entry *out,
                   size_t max) {
  size_t n = c->desc ? idx_range_desc(ix, from, after, out, max) : idx_range(ix, from, after, out, max);
  size_t keep = n;
  if (c->desc) while (keep && out[keep - 1].hi < c->lo_hi) keep--;
  else while (keep && out[keep - 1].hi > c->hi_hi) keep--;
  return keep;
}

/* Fetch the next batch of committed entries and read their records. */
static int fill_committed(ls_cursor *c) {
  ls_engine *e = c->e;
  c->nbatch = c->pos = 0;
  while (!c->done && c->nbatch == 0) {
    unsigned g = ls_guard_enter(&e->guard);
    ls_table *t = cat_table(e, c->table);
    if (!t) {
      ls_guard_leave(&e->guard, g);
      return ls_err(LS_NOTABLE, "table %u was dropped during the scan", c->table);
    }
    idx_entry got[CURSOR_BATCH];
    int rc = LS_OK;
    pthread_rwlock_rdlock(&t->lock);
    size_t n = walk(c, t->idx, &c->from, c->after, got, CURSOR_BATCH);
    /* The versions its snapshot sees (keys absent then become 0). */
    for (size_t i = 0; c->txn && !rc && i < n; i++)
      rc = snap_lookup(&e->snaps, c->txn->snap, c->table, &(idx_key){ got[i].hi, got[i].lo }, &got[i].word);
    pthread_rwlock_unlock(&t->lock);
    if (rc) {
      ls_guard_leave(&e->guard, g);
      return rc;
    }
    if (n < CURSOR_BATCH) c->done = 1;
    if (n) {
      c->from.hi = got[n - 1].hi;
      c->from.lo = got[n - 1].lo;
      c->after = 1;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
      if (got[i].word && !loc_tomb(got[i].word)) {
        c->batch[c->nbatch] = got[i];
        c->seed[c->nbatch] = seg_get(&e->sm, loc_seg(got[i].word))->seed;
        c->roff[c->nbatch++] = (uint32_t)total;
        total += loc_size(got[i].word);
      }
    if (c->nbatch) {
      if (c->rcap < total) {
        uint8_t *p = realloc(c->rbuf, total);
        if (!p) rc = ls_err(LS_NOMEM, "out of memory");
        else { c->rbuf = p; c->rcap = total; }
      }
      ls_io_req req[CURSOR_BATCH];
      for (uint32_t i = 0; !rc && i < c->nbatch; i++) {
        uint64_t w = c->batch[i].word;
        req[i] = (ls_io_req){ LS_IOOP_READ, seg_fd(&e->sm, loc_seg(w)), c->rbuf + c->roff[i], loc_size(w),
                              seg_base(&e->sm, loc_seg(w)) + loc_off(w), 0 };
      }
      if (!rc) {
        int r = e->io->m->submit(e->io, req, (int)c->nbatch);
        atomic_fetch_add_explicit(&e->reads, c->nbatch, memory_order_relaxed);
        for (uint32_t i = 0; !rc && i < c->nbatch; i++) {
          uint64_t w = c->batch[i].word;
          if (r < 0 || req[i].res < 0)
            rc = ls_err_io(req[i].res < 0 ? (int)req[i].res : r, LS_CAUSE_READ, "%s: read of segment %u", t->name, loc_seg(w));
          else if ((size_t)req[i].res != req[i].len)
            rc = ls_corrupt("%s: segment %u: record cut short by the end of the file", t->name, loc_seg(w));
          /* The record's checks run when step() returns it. */
        }
      }
    }
    ls_guard_leave(&e->guard, g);
    if (rc) return rc;
  }
  return LS_OK;
}

/* Fetch the next batch of the transaction's own entries that hold a write. */
static void fill_txn(ls_cursor *c) {
  c->ntb = c->tpos = 0;
  ls_index *ov = c->txn ? txn_overlay(c->txn, c->table) : NULL;
  while (!c->tdone && c->ntb == 0) {
    if (!ov) { c->tdone = 1; break; }
    idx_entry got[CURSOR_BATCH];
    size_t n = walk(c, ov, &c->tfrom, c->tafter, got, CURSOR_BATCH);
    if (n < CURSOR_BATCH) c->tdone = 1;
    if (n) {
      c->tfrom.hi = got[n - 1].hi;
      c->tfrom.lo = got[n - 1].lo;
      c->tafter = 1;
    }
    for (size_t i = 0; i < n; i++)
      if ((uint32_t)got[i].word) c->tbatch[c->ntb++] = got[i];
  }
}

static inline int entry_cmp(const idx_entry *a, const idx_entry *b) {
  if (a->hi != b->hi) return a->hi < b->hi ? -1 : 1;
  if (a->lo != b->lo) return a->lo < b->lo ? -1 : 1;
  return 0;
}

/* Refill whichever side has run out; the next entries of each (NULL: none). */
static int peek(ls_cursor *c, const idx_entry **ce, const idx_entry **te) {
  if (c->pos == c->nbatch && !c->done) {
    int rc = fill_committed(c);
    if (rc) return rc;
  }
  if (c->tpos == c->ntb && !c->tdone) fill_txn(c);
  *ce = c->pos < c->nbatch ? &c->batch[c->pos] : NULL;
  *te = c->tpos < c->ntb ? &c->tbatch[c->tpos] : NULL;
  return LS_OK;
}

/* The committed row at c->pos, checked, into *v (pointing into rbuf). */
static int committed_row(ls_cursor *c, ls_value *v) {
  const idx_entry *ce = &c->batch[c->pos];
  memset(v, 0, sizeof *v);
  unsigned g = ls_guard_enter(&c->e->guard);   /* for the table name of an error */
  int rc = check_record(c->e, ce->word, c->seed[c->pos], c->table, NULL, c->rbuf + c->roff[c->pos], v);
  ls_guard_leave(&c->e->guard, g);
  v->token = idx_key_token(ce->hi);
  return rc;
}

/* The entry e of a walk comes before f in the cursor's direction. */
static inline int walk_cmp(const ls_cursor *c, const idx_entry *e, const idx_entry *f) {
  return c->desc ? entry_cmp(f, e) : entry_cmp(e, f);
}

/* Append a copy of row v (lo: its index key's lo) to the run. */
static int run_push(ls_cursor *c, uint64_t lo, const ls_value *v) {
  if (LS_GROW(c->run, c->caprun, c->nrun + 1, 16) ||
      LS_GROW(c->arena, c->caparena, c->narena + v->key_len + v->len + 1, 4096))
    return ls_err(LS_NOMEM, "out of memory");
  struct run_row *r = &c->run[c->nrun++];
  *r = (struct run_row){ lo, c->narena, c->narena + v->key_len, v->key_len, v->len, v->seq, 0, NULL };
  if (v->key_len) memcpy(c->arena + c->narena, v->key, v->key_len);
  if (v->len) memcpy(c->arena + c->narena + v->key_len, v->data, v->len);
  c->narena += v->key_len + v->len;
  return LS_OK;
}

static int run_cmp_asc(const void *a, const void *b) {
  const struct run_row *x = a, *y = b;
  return ko_compare(x->key, x->key_len, y->key, y->key_len);
}
static int run_cmp_desc(const void *a, const void *b) { return run_cmp_asc(b, a); }

/* Gather every row at position h, committed and own, into the run, sorted
** in the cursor's direction; committed rows the transaction rewrote or
** deleted are hidden. */
static int gather_run(ls_cursor *c, uint64_t h) {
  const idx_entry *ce, *te;
  c->nrun = c->rpos = 0;
  c->narena = 0;
  c->run_hi = h;
  for (;;) {
    int rc = peek(c, &ce, &te);
    if (rc) return rc;
    if (!ce || ce->hi != h) break;
    ls_value v;
    if ((rc = committed_row(c, &v)) || (rc = run_push(c, ce->lo, &v))) return rc;
    c->pos++;
  }
  uint32_t ncommitted = c->nrun;
  for (;;) {
    int rc = peek(c, &ce, &te);
    if (rc) return rc;
    if (!te || te->hi != h) break;
    for (uint32_t i = 0; i < ncommitted; i++)
      if (c->run[i].lo == te->lo) c->run[i].hidden = 1;
    uint32_t ord = (uint32_t)te->word - 1;
    uint64_t lo = te->lo;
    c->tpos++;
    rc = txn_value(c->txn, ord, &c->own);
    if (rc == LS_NOTFOUND || (rc == LS_OK && c->txn->recs[ord].type == LS_REC_DELETE)) continue;
    if (rc || (rc = run_push(c, lo, &c->own))) return rc;
  }
  uint32_t n = 0;
  for (uint32_t i = 0; i < c->nrun; i++) {
    if (c->run[i].hidden) continue;
    c->run[n] = c->run[i];
    c->run[n].key = c->arena + c->run[n].key_off;
    n++;
  }
  c->nrun = n;
  if (n > 1) qsort(c->run, n, sizeof *c->run, c->desc ? run_cmp_desc : run_cmp_asc);
  return LS_OK;
}

/* Move to the next visible row (merge of committed and own writes). */
static int step(ls_cursor *c) {
  c->valid = 0;
  for (;;) {
    if (c->rpos < c->nrun) {
      const struct run_row *r = &c->run[c->rpos++];
      memset(&c->row, 0, sizeof c->row);
      c->row.key = r->key;
      c->row.key_len = r->key_len;
      c->row.data = c->arena + r->data_off;
      c->row.len = r->data_len;
      c->row.seq = r->seq;
      c->row.token = idx_key_token(c->run_hi);
      c->valid = 1;
      return LS_OK;
    }
    const idx_entry *ce, *te;
    int rc = peek(c, &ce, &te);
    if (rc) return rc;
    if (!ce && !te) return LS_OK;
    if (c->keyed) {
      /* Rows that share a position come out sorted by key: a row alone at
      ** its position (the next entry, in the batch or known absent, has
      ** another) goes the short way below. */
      uint64_t h = !ce ? te->hi : !te ? ce->hi : walk_cmp(c, ce, te) <= 0 ? ce->hi : te->hi;
      int cn = ce && ce->hi == h, tn = te && te->hi == h;
      int calone = cn && !tn && (c->pos + 1 < c->nbatch ? c->batch[c->pos + 1].hi != h : c->done);
      int talone = tn && !cn && (c->tpos + 1 < c->ntb ? c->tbatch[c->tpos + 1].hi != h : c->tdone);
      if (!calone && !talone) {
        if ((rc = gather_run(c, h))) return rc;
        continue;
      }
    }
    int cmp = !ce ? 1 : !te ? -1 : walk_cmp(c, ce, te);
    if (cmp >= 0) {
      /* The transaction's write of this key wins over the committed row. */
      uint32_t ord = (uint32_t)te->word - 1;
      c->tpos++;
      if (cmp == 0) c->pos++;
      rc = txn_value(c->txn, ord, &c->own);
      if (rc == LS_NOTFOUND || (rc == LS_OK && c->txn->recs[ord].type == LS_REC_DELETE)) continue;
      if (rc) return rc;
      c->row = c->own;
      c->row.token = idx_key_token(te->hi);
      c->valid = 1;
      return LS_OK;
    }
    ls_value tmp;
    if ((rc = committed_row(c, &tmp))) return rc;
    c->row = tmp;
    c->pos++;
    c->valid = 1;
    return LS_OK;
  }
}

int ls_cursor_range(ls_cursor *c, int64_t lo, int64_t hi, int desc) {
  c->lo_hi = idx_hi_of_token(lo);
  c->hi_hi = idx_hi_of_token(hi);
  c->desc = !!desc;
  c->keyed = cat_order(c->e, c->table) == KO_KEY;
  c->from.hi = c->tfrom.hi = desc ? c->hi_hi : c->lo_hi;
  c->from.lo = c->tfrom.lo = desc ? UINT64_MAX : 0;
  c->after = c->tafter = 0;
  c->done = c->lo_hi > c->hi_hi;
  c->tdone = c->txn && !c->done ? 0 : 1;
  c->nbatch = c->pos = c->ntb = c->tpos = 0;
  c->nrun = c->rpos = 0;
  c->rc = step(c);
  return c->rc;
}

int ls_cursor_seek(ls_cursor *c, int64_t lo) { return ls_cursor_range(c, lo, INT64_MAX, 0); }

int ls_cursor_valid(ls_cursor *c) { return c->valid; }

int ls_cursor_next(ls_cursor *c) {
  if (c->rc) return c->rc;
  c->rc = step(c);
  return c->rc;
}

const ls_value *ls_cursor_row(ls_cursor *c) { return c->valid ? &c->row : NULL; }
