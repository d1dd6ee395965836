/*
** txn.c -- transactions as containers: buffered writes with
** read-your-writes, savepoints and write-conflict observations (txn.h).
**
** A transaction keeps, in the order made:
**   recs[]   one entry per put or delete; the encoded record itself (header,
**            key, value) sits in chunks[] and is what the writer copies
**            into the segment, so a row is held in memory once;
**   maps[]   per table, an index from key to the newest write of that key
**            (low 32 bits: ordinal + 1) and to the key's observation (high
**            32 bits: obs index + 1);
**   obs[]    the committed version of a key as first seen through the
**            transaction, validated by the writer at commit.
**
** Rolling back to a savepoint undoes writes newest first: each write
** remembers the previous write of its key in this transaction (prev), which
** becomes the newest again.  Observations are kept (they only make the
** commit check stricter).
*/
#include "txn.h"

#include <stdlib.h>

#define CHUNK_MIN (16u << 10)
#define CHUNK_MAX (1u << 20)

static int begin(ls_engine *e, int readonly, ls_txn **out) {
  ls_txn *t = calloc(1, sizeof *t);
  if (!t) return ls_err(LS_NOMEM, "out of memory");
  t->e = e;
  t->readonly = readonly;
  t->snap = &t->snap_mem;
  snap_begin(&e->snaps, t->snap);
  *out = t;
  return LS_OK;
}

int ls_txn_begin(ls_engine *e, ls_txn **out) { return begin(e, 0, out); }
int ls_txn_begin_read(ls_engine *e, ls_txn **out) { return begin(e, 1, out); }

/* A read transaction holds nothing but its snapshot (its reads are not
** recorded), so ending and restarting it is all a new one would do. */
void ls_txn_end_read(ls_txn *t) {
  assert(t->readonly);
  if (t->snap) snap_end(&t->e->snaps, t->snap);
  t->snap = NULL;
}

void ls_txn_restart_read(ls_txn *t) {
  assert(t->readonly);
  if (t->snap) snap_end(&t->e->snaps, t->snap);
  t->snap = &t->snap_mem;
  snap_begin(&t->e->snaps, t->snap);
}

void txn_destroy(ls_txn *t) {
  if (!t) return;
  assert(t->state != TXN_PREPARED);
  snap_end(&t->e->snaps, t->snap);
  for (uint32_t i = 0; i < t->nchunks; i++) free(t->chunks[i]);
  for (uint32_t i = 0; i < t->nmaps; i++) idx_free(t->maps[i].idx);
  free(t->chunks);
  free(t->chunk_len);
  free(t->chunk_cap);
  free(t->recs);
  free(t->direct);
  free(t->obs);
  free(t->maps);
  free(t);
}

uint64_t ls_txn_size(ls_txn *t) { return t->live_recs; }

int ls_txn_writes(ls_txn *t, uint32_t table) {
  for (uint32_t i = 0; i < t->nrec; i++)
    if (!t->recs[i].dead && t->recs[i].table == table) return 1;
  return 0;
}

static txn_map *find_map(ls_txn *t, uint32_t table, int create) {
  for (uint32_t i = 0; i < t->nmaps; i++)
    if (t->maps[i].table == table) return &t->maps[i];
  if (!create) return NULL;
  txn_map *m = realloc(t->maps, (t->nmaps + 1) * sizeof *m);
  if (!m) return NULL;
  t->maps = m;
  m = &t->maps[t->nmaps];
  m->table = table;
  m->changes = 0;
  m->observed = 0;
  m->order = cat_order(t->e, table);
  m->idx = m->order == KO_KEY ? idx_new_ordered() : idx_new();
  if (!m->idx) return NULL;
  t->nmaps++;
  return m;
}

static inline uint32_t map_rec(uint64_t w) { return (uint32_t)w; }            /* ordinal+1, 0 none */
static inline uint32_t map_obs(uint64_t w) { return (uint32_t)(w >> 32); }    /* obs+1, 0 none */
static inline uint64_t map_word(uint32_t rec1, uint32_t obs1) { return ((uint64_t)obs1 << 32) | rec1; }

/* Room for an encoded record of size bytes; returns its chunk/offset. */
static int chunk_alloc(ls_txn *t, uint32_t size, uint32_t *chunk, uint32_t *off) {
  if (t->nchunks) {
    uint32_t c = t->nchunks - 1;
    if (t->chunk_cap[c] - t->chunk_len[c] >= size) {
      *chunk = c;
      *off = t->chunk_len[c];
      t->chunk_len[c] += size;
      return LS_OK;
    }
  }
  uint32_t cap = t->nchunks ? t->chunk_cap[t->nchunks - 1] * 2 : CHUNK_MIN;
  if (cap > CHUNK_MAX) cap = CHUNK_MAX;
  if (cap < size) cap = size;
  uint8_t **c = realloc(t->chunks, (t->nchunks + 1) * sizeof *c);
  if (c) t->chunks = c;
  uint32_t *l = realloc(t->chunk_len, (t->nchunks + 1) * sizeof *l);
  if (l) t->chunk_len = l;
  uint32_t *k = realloc(t->chunk_cap, (t->nchunks + 1) * sizeof *k);
  if (k) t->chunk_cap = k;
  uint8_t *mem = (c && l && k) ? malloc(cap) : NULL;
  if (!mem) return ls_err(LS_NOMEM, "out of memory buffering a transaction");
  t->chunks[t->nchunks] = mem;
  t->chunk_len[t->nchunks] = size;
  t->chunk_cap[t->nchunks] = cap;
  *chunk = t->nchunks++;
  *off = 0;
  return LS_OK;
}

static int write_rec(ls_txn *t, uint32_t type, uint32_t table, const ls_key *k,
                     const void *val, uint32_t vlen) {
  ls_engine *e = t->e;
  if (t->state != TXN_OPEN)
    return ls_err(LS_INVALID, t->state == TXN_PREPARED ? "transaction is prepared: unprepare it to write"
                                                       : "transaction already committed");
  if (t->readonly) return ls_err(LS_INVALID, "a read transaction takes no writes");
  if (k->len > LS_MAX_KEY)
    return ls_err(LS_TOOBIG, "key of %u bytes is larger than the limit of %u bytes", k->len, LS_MAX_KEY);
  if (ls_max_value(e, k->len) == 0 && ls_rec_size(k->len, 0) > ls_max_record(e->seg_size))
    return ls_err(LS_TOOBIG, "key of %u bytes does not fit one record with segment_size %u", k->len,
                  e->seg_size);
  if (vlen > ls_max_record(e->seg_size) ||
      ls_rec_size(k->len, vlen) > ls_max_record(e->seg_size))
    return ls_err(LS_TOOBIG, "row of %u bytes does not fit one record (at most %u bytes of value "
                  "for this key with segment_size %u)", vlen, ls_max_value(e, k->len), e->seg_size);
  if (table == 0) return ls_err(LS_NOTABLE, "no table with id 0");
  txn_map *m = find_map(t, table, 1);
  if (!m) return ls_err(LS_NOMEM, "out of memory buffering a transaction");
  if (LS_GROW(t->recs, t->caprec, t->nrec + 1, 64)) return ls_err(LS_NOMEM, "out of memory buffering a transaction");
  uint32_t size = ls_rec_size(k->len, vlen);
  uint32_t chunk = 0, off = 0;
  int rc = chunk_alloc(t, size, &chunk, &off);
  if (rc) return rc;
  idx_key key;
  idx_key_of(&key, m->order, k->data, k->len, k->digest);
  uint64_t w = 0;
  idx_get(m->idx, &key, &w);
  uint32_t ord = t->nrec;
  rc = idx_put(m->idx, &key, map_word(ord + 1, map_obs(w)), NULL);
  if (rc < 0) { t->chunk_len[chunk] -= size; return ls_err(LS_NOMEM, "out of memory buffering a transaction"); }
  txn_rec *r = &t->recs[ord];
  r->hi = key.hi;
  r->lo = key.lo;
  r->word = 0;
  r->table = table;
  r->chunk = chunk;
  r->off = off;
  r->size = size;
  r->prev = map_rec(w) ? map_rec(w) - 1 : TXN_NONE;
  r->type = (uint8_t)type;
  r->dead = 0;
  ls_rec_encode(t->chunks[chunk] + off, type, table, k->data, k->len, val, vlen);
  if (r->prev != TXN_NONE) {
    txn_rec *p = &t->recs[r->prev];
    p->dead = 1;
    t->live_bytes -= p->size;
    t->live_recs--;
  }
  t->live_bytes += size;
  t->live_recs++;
  t->nrec++;
  return LS_OK;
}

int ls_txn_put(ls_txn *t, uint32_t table, const ls_key *k, const void *val, uint32_t vlen) {
  return write_rec(t, LS_REC_PUT, table, k, val, vlen);
}

int ls_txn_delete(ls_txn *t, uint32_t table, const ls_key *k) {
  return write_rec(t, LS_REC_DELETE, table, k, NULL, 0);
}

int ls_txn_savepoint(ls_txn *t) { return (int)t->nrec; }

int ls_txn_forget_table(ls_txn *t, uint32_t table) {
  if (t->state != TXN_OPEN) return ls_err(LS_INVALID, "transaction already committed or prepared");
  /* Records keep their place (savepoint marks are record counts) with
  ** table 0: dead, never revived by a rollback. */
  for (uint32_t i = 0; i < t->nrec; i++) {
    txn_rec *r = &t->recs[i];
    if (r->table != table) continue;
    if (!r->dead) {
      r->dead = 1;
      t->live_bytes -= r->size;
      t->live_recs--;
    }
    r->table = 0;
  }
  for (uint32_t i = 0; i < t->nobs; i++)
    if (t->obs[i].table == table) t->obs[i].table = 0;   /* not checked at commit */
  for (uint32_t i = 0; i < t->nmaps; i++)
    if (t->maps[i].table == table) {
      idx_free(t->maps[i].idx);
      t->maps[i] = t->maps[--t->nmaps];
      break;
    }
  return LS_OK;
}

int ls_txn_rollback_to(ls_txn *t, int mark) {
  if (mark < 0 || (uint32_t)mark > t->nrec) return ls_err(LS_INVALID, "no such savepoint");
  if (t->state != TXN_OPEN)
    return ls_err(LS_INVALID, t->state == TXN_PREPARED ? "transaction is prepared: unprepare it first"
                                                       : "transaction already committed");
  while (t->nrec > (uint32_t)mark) {
    txn_rec *r = &t->recs[t->nrec - 1];
    if (r->table) {                /* 0: a forgotten table's record, dead */
      txn_map *m = find_map(t, r->table, 0);
      idx_key key = { r->hi, r->lo };
      uint64_t w = 0;
      idx_get(m->idx, &key, &w);
      /* Replacing an existing entry never allocates. */
      idx_put(m->idx, &key, map_word(r->prev == TXN_NONE ? 0 : r->prev + 1, map_obs(w)), NULL);
      if (r->prev != TXN_NONE) {
        txn_rec *p = &t->recs[r->prev];
        p->dead = 0;
        t->live_bytes += p->size;
        t->live_recs++;
      }
      t->live_bytes -= r->size;
      t->live_recs--;
    }
    t->chunk_len[r->chunk] = r->off;
    t->nrec--;
  }
  return LS_OK;
}

/* The table's change count, taken before the first read of it through t:
** every read after it is validated only if the table changed since. */
static void note_first_read(ls_txn *t, txn_map *m);

/* A prepared transaction is frozen: the writer reads its maps (prepared
** conflicts) while the owner may still read through it (SQLite's COMMIT
** failed after xSync and the transaction goes on), so nothing is recorded
** until it is open again. */
int txn_before_read(ls_txn *t, uint32_t table) {
  if (t->state != TXN_OPEN || t->readonly) return LS_OK;
  txn_map *m = find_map(t, table, 1);
  if (!m) return ls_err(LS_NOMEM, "out of memory");
  note_first_read(t, m);
  return LS_OK;
}

static void note_first_read(ls_txn *t, txn_map *m) {
  if (m->observed) return;
  unsigned g = ls_guard_enter(&t->e->guard);
  ls_table *tb = cat_table(t->e, m->table);
  m->changes = tb ? atomic_load(&tb->changes) : 0;
  ls_guard_leave(&t->e->guard, g);
  m->observed = 1;
}

/* Record the committed version of key seen now (first time only). */
static int observe(ls_txn *t, txn_map *m, const idx_key *key, uint64_t w, uint32_t table,
                   uint64_t word, uint64_t seq, uint64_t segseq, int present) {
  if (map_obs(w)) return LS_OK;
  if (LS_GROW(t->obs, t->capobs, t->nobs + 1, 32)) return ls_err(LS_NOMEM, "out of memory");
  txn_obs *o = &t->obs[t->nobs];
  o->hi = key->hi;
  o->lo = key->lo;
  o->word = word;
  o->seq = seq;
  o->segseq = word ? segseq : 0;
  o->table = table;
  o->present = (uint8_t)present;
  if (idx_put(m->idx, key, map_word(map_rec(w), t->nobs + 1), NULL) < 0)
    return ls_err(LS_NOMEM, "out of memory");
  t->nobs++;
  return LS_OK;
}

/* Fill v from an encoded record of this transaction. */
static int value_from_rec(ls_txn *t, const txn_rec *r, ls_value *v) {
  const uint8_t *p = txn_rec_ptr(t, r);
  if (v->cap < r->size) {
    uint8_t *m = realloc(v->mem, r->size);
    if (!m) return ls_err(LS_NOMEM, "out of memory");
    v->mem = m;
    v->cap = r->size;
  }
  memcpy(v->mem, p, r->size);
  uint32_t klen = ls_get16(v->mem + 6), vlen = ls_get32(v->mem + 8);
  v->key = v->mem + LS_REC_HDR;
  v->key_len = klen;
  v->data = v->mem + LS_REC_HDR + klen;
  v->len = vlen;
  v->token = idx_key_token(r->hi);
  v->seq = 0;
  return LS_OK;
}

int txn_own(ls_txn *t, uint32_t table, const idx_key *key, ls_value *v) {
  txn_map *m = find_map(t, table, 0);
  uint64_t w = 0;
  if (!m || !idx_get(m->idx, key, &w) || !map_rec(w)) return 1;
  const txn_rec *r = &t->recs[map_rec(w) - 1];
  if (r->type == LS_REC_DELETE) return LS_NOTFOUND;
  return v ? value_from_rec(t, r, v) : LS_OK;
}

int txn_seen(ls_txn *t, uint32_t table, const idx_key *key) {
  txn_map *m = find_map(t, table, 0);
  uint64_t w = 0;
  if (!m || !idx_get(m->idx, key, &w) || !map_obs(w)) return -1;
  return t->obs[map_obs(w) - 1].present;
}

void txn_observe_seq(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq) {
  if (t->state != TXN_OPEN || t->readonly) return;   /* frozen (txn_before_read) */
  txn_map *m = find_map(t, table, 0);
  uint64_t w = 0;
  if (!m || !idx_get(m->idx, key, &w) || !map_obs(w)) return;
  txn_obs *o = &t->obs[map_obs(w) - 1];
  if (o->seq == 0 && o->present && loc_same(o->word, word)) o->seq = seq;
}

int txn_observe(ls_txn *t, uint32_t table, const idx_key *key, uint64_t word, uint64_t seq, uint64_t segseq,
                int present) {
  if (t->state != TXN_OPEN || t->readonly) return LS_OK;   /* frozen (txn_before_read) */
  txn_map *m = find_map(t, table, 1);
  if (!m) return ls_err(LS_NOMEM, "out of memory");
  uint64_t w = 0;
  idx_get(m->idx, key, &w);
  return observe(t, m, key, w, table, present ? word : 0, seq, segseq, present);
}

ls_index *txn_overlay(ls_txn *t, uint32_t table) {
  txn_map *m = find_map(t, table, 0);
  return m ? m->idx : NULL;
}

int txn_value(ls_txn *t, uint32_t ord, ls_value *v) { return value_from_rec(t, &t->recs[ord], v); }

int ls_txn_prepared(ls_txn *t) { return t->state == TXN_PREPARED; }

int txn_add_direct(ls_txn *t, uint32_t s) {
  if (LS_GROW(t->direct, t->capdirect, t->ndirect + 1, 8)) return LS_NOMEM;
  t->direct[t->ndirect++] = s;
  return LS_OK;
}
