/*
** catalog.c -- the table catalog: tables and their indexes, the manifest
** that makes catalog changes durable, installing durable records with
** their accounting, and the failure state (see catalog.h).
**
** Catalog changes are made durable in the manifest first, then published
** to readers as a new catalog array; the old array and any dropped table
** are freed after ls_guard_wait.  Drop and truncate are called in the
** writer's role (writer.c) so they are ordered with every commit.
**
** Accounting.  A table's rows and live_bytes, and its records' segments'
** live counts (segment.h, seg_account), change together with its index,
** under the table's lock: in cat_install, cat_drop and cat_truncate here,
** and by the cleaner when it moves an entry or drops a tombstone.
*/
#include "catalog.h"

#include <stdio.h>
#include <stdlib.h>

uint32_t ls_max_value(ls_engine *e, uint32_t key_len) {
  uint32_t m = ls_max_record(e->seg_size);
  return key_len + LS_REC_HDR >= m ? 0 : m - LS_REC_HDR - key_len;
}

ls_table *cat_table(ls_engine *e, uint32_t id) {
  ls_catalog *c = atomic_load(&e->catalog);
  return id < c->cap ? c->t[id] : NULL;
}

int cat_order(ls_engine *e, uint32_t table) {
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = cat_table(e, table);
  int order = t ? t->order : KO_TOKEN;
  ls_guard_leave(&e->guard, g);
  return order;
}

void cat_key(ls_engine *e, uint32_t table, const ls_key *k, idx_key *out) {
  idx_key_of(out, cat_order(e, table), k->data, k->len, k->digest);
}

int cat_lookup(ls_engine *e, uint32_t table, const idx_key *key, const ls_snapshot *snap, uint64_t *word) {
  ls_table *t = cat_table(e, table);
  if (!t) return ls_err(LS_NOTABLE, "no table with id %u", table);
  pthread_rwlock_rdlock(&t->lock);
  if (!idx_get(t->idx, key, word)) *word = 0;
  int rc = snap ? snap_lookup(&e->snaps, snap, table, key, word) : LS_OK;
  pthread_rwlock_unlock(&t->lock);
  return rc;
}

uint64_t cat_live_bytes(ls_engine *e) {
  uint64_t live = 0;
  unsigned g = ls_guard_enter(&e->guard);
  ls_catalog *c = atomic_load(&e->catalog);
  for (uint32_t i = 0; i < c->cap; i++)
    if (c->t[i]) live += (uint64_t)atomic_load(&c->t[i]->live_bytes);
  ls_guard_leave(&e->guard, g);
  return live;
}

int cat_install(ls_engine *e, ls_table *t, const idx_key *key, uint64_t word, uint64_t *old) {
  uint64_t prev = 0;
  int had;
  assert(word != 0);
  if (loc_tomb(word)) {
    if (!idx_get(t->idx, key, &prev)) return INSTALL_DEAD;
    idx_put(t->idx, key, word, NULL);            /* replaces: never allocates */
    had = 1;
  } else {
    had = idx_put(t->idx, key, word, &prev);
    if (had < 0 && e->reserve) {
      /* Out of memory after the data is durable and acknowledged: give
      ** back the memory kept for this and try again, and refuse writes
      ** from now on (the next failure would have no reserve). */
      free(e->reserve);
      e->reserve = NULL;
      cat_fail(e, "out of memory installing a committed transaction");
      had = idx_put(t->idx, key, word, &prev);
    }
    /* Still out of memory: the row is on disk and a restart finds it.
    ** Leave the old entry; count the new record dead (the engine refuses
    ** writes already). */
    if (had < 0) return INSTALL_DEAD;
  }
  seg_account(&e->sm, word, +1);
  atomic_fetch_add(&t->live_bytes, loc_size(word));
  if (!loc_tomb(word)) atomic_fetch_add(&t->rows, 1);
  if (!had) return INSTALL_NEW;
  assert(!loc_same(prev, word));
  seg_account(&e->sm, prev, -1);
  atomic_fetch_sub(&t->live_bytes, loc_size(prev));
  if (!loc_tomb(prev)) atomic_fetch_sub(&t->rows, 1);
  assert(atomic_load(&t->live_bytes) >= 0 && atomic_load(&t->rows) >= 0);
  *old = prev;
  return INSTALL_REPLACED;
}

void cat_problem(ls_engine *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&e->problems_lock);
  size_t len = e->problems ? strlen(e->problems) : 0;
  ls_vappend_line(&e->problems, &len, fmt, ap);
  pthread_mutex_unlock(&e->problems_lock);
  va_end(ap);
}

static uint32_t damage_slot(const ls_damage *d, uint32_t cap) {
  uint64_t h = ((uint64_t)d->file * 0x9e3779b97f4a7c15ull) ^ (d->offset * 0xc2b2ae3d27d4eb4full) ^
               (d->length * 0x165667b19e3779f9ull) ^ d->seg_seq;
  return (uint32_t)((h ^ (h >> 29)) & (cap - 1));
}

static int damage_same(const ls_damage *x, const ls_damage *d) {
  return x->file == d->file && x->offset == d->offset && x->length == d->length && x->seg_seq == d->seg_seq;
}

/* Rebuild the hash of the damage list at cap slots (a power of two).
** Caller holds problems_lock. */
static int damage_rehash(ls_engine *e, uint32_t cap) {
  uint32_t *h = calloc(cap, sizeof *h);
  if (!h) return LS_NOMEM;
  for (uint32_t i = 0; i < e->ndamage; i++) {
    uint32_t s = damage_slot(&e->damage[i], cap);
    while (h[s]) s = (s + 1) & (cap - 1);
    h[s] = i + 1;
  }
  free(e->damage_hash);
  e->damage_hash = h;
  e->capdamage_hash = cap;
  return LS_OK;
}

int cat_damage_add(ls_engine *e, const ls_damage *d) {
  pthread_mutex_lock(&e->problems_lock);
  int added = 0;
  if (2 * (e->ndamage + 1) > e->capdamage_hash &&
      damage_rehash(e, e->capdamage_hash ? 2 * e->capdamage_hash : 64)) goto out;
  uint32_t s = damage_slot(d, e->capdamage_hash);
  for (; e->damage_hash[s]; s = (s + 1) & (e->capdamage_hash - 1))
    if (damage_same(&e->damage[e->damage_hash[s] - 1], d)) goto out;
  if (LS_GROW(e->damage, e->capdamage, e->ndamage + 1, 16)) goto out;
  e->damage[e->ndamage++] = *d;
  e->damage_hash[s] = e->ndamage;
  added = 1;
out:
  pthread_mutex_unlock(&e->problems_lock);
  return added;
}

void cat_damage_forget_segments(ls_engine *e) {
  pthread_mutex_lock(&e->problems_lock);
  uint32_t k = 0;
  for (uint32_t i = 0; i < e->ndamage; i++)
    if (e->damage[i].segment == SEG_NONE) e->damage[k++] = e->damage[i];
  e->ndamage = k;
  if (e->capdamage_hash && damage_rehash(e, e->capdamage_hash)) {
    free(e->damage_hash);                  /* rebuilt by the next add */
    e->damage_hash = NULL;
    e->capdamage_hash = 0;
  }
  pthread_mutex_unlock(&e->problems_lock);
}

void cat_damage_count(ls_engine *e, uint32_t table, uint64_t *ranges, uint64_t *bytes) {
  *ranges = *bytes = 0;
  pthread_mutex_lock(&e->problems_lock);
  for (uint32_t i = 0; i < e->ndamage; i++)
    if (cat_damage_of(&e->damage[i], table)) {
      (*ranges)++;
      *bytes += e->damage[i].length;
    }
  pthread_mutex_unlock(&e->problems_lock);
}

void cat_damage_line(ls_engine *e, const ls_damage *d, char *buf, size_t cap) {
  char owner[200];
  uint64_t spf = e->sm.segs_per_file;
  if (d->segment == SEG_NONE) {
    uint64_t first = d->file * spf + d->offset / e->seg_size;
    uint64_t last = d->file * spf + (d->offset + (d->length ? d->length - 1 : 0)) / e->seg_size;
    if (first == last) snprintf(owner, sizeof owner, "segment %llu (rows of any table)", (unsigned long long)first);
    else snprintf(owner, sizeof owner, "segments %llu..%llu (rows of any table)", (unsigned long long)first,
                  (unsigned long long)last);
  } else if (d->kind == LS_KIND_GROUP) {
    unsigned g = ls_guard_enter(&e->guard);
    ls_table *t = atomic_load(&e->catalog) ? cat_table(e, d->table) : NULL;
    if (t) snprintf(owner, sizeof owner, "segment %u (table %s, group %u)", d->segment, t->name, d->group);
    else snprintf(owner, sizeof owner, "segment %u (table id %u, group %u)", d->segment, d->table, d->group);
    ls_guard_leave(&e->guard, g);
  } else {
    snprintf(owner, sizeof owner, "segment %u (%srows of any table)", d->segment,
             d->kind == LS_KIND_MIXED ? "mixed, " : "");
  }
  snprintf(buf, cap, "data-%06u.ls offset %llu length %llu, %s: %s%s. Rows in this range are lost or may "
           "read as an older version.", d->file, (unsigned long long)d->offset, (unsigned long long)d->length,
           owner, d->why, d->accepted ? " (accepted by an earlier open with on_damage=salvage)" : "");
}

void cat_fail(ls_engine *e, const char *what) {
  if (atomic_load(&e->failed)) return;
  snprintf(e->fail_msg, sizeof e->fail_msg,
           "the engine is read-only after a failed write (%s); reopen the database to write again",
           what);
  atomic_store(&e->failed, 1);
}

int cat_check_failed(ls_engine *e) {
  return atomic_load(&e->failed) ? ls_err(LS_READONLY, "%s", e->fail_msg) : LS_OK;
}

/* ---- tables and the published catalog ------------------------------------ */

static void table_free(ls_engine *e, ls_table *t) {
  if (!t) return;
  for (uint32_t g = 0; t->gsets && g < t->groups; g++) seg_gset_release(&e->sm, t->gsets[g]);
  free(t->gsets);
  idx_free(t->idx);
  pthread_rwlock_destroy(&t->lock);
  free(t);
}

static ls_table *table_new(ls_engine *e, const ls_mtable *m) {
  ls_table *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->id = m->id;
  t->groups = m->groups;
  t->trunc_seq = m->trunc_seq;
  t->order = m->order == KO_KEY ? KO_KEY : KO_TOKEN;
  memcpy(t->name, m->name, sizeof t->name);
  pthread_rwlock_init(&t->lock, NULL);
  t->idx = t->order == KO_KEY ? idx_new_ordered() : idx_new();
  t->gsets = calloc(t->groups, sizeof *t->gsets);
  int ok = t->idx && t->gsets;
  for (uint32_t g = 0; ok && g < t->groups; g++) ok = (t->gsets[g] = seg_gset_new(&e->sm, t->id, g)) != 0;
  if (!ok) { table_free(e, t); return NULL; }
  return t;
}

/* Publish a catalog equal to the current one with id set to t (NULL to
** remove).  Caller holds cat_lock.  The old array is freed after readers
** drained.  LS_OK or LS_NOMEM. */
static int catalog_set(ls_engine *e, uint32_t id, ls_table *t) {
  ls_catalog *old = atomic_load(&e->catalog);
  uint32_t cap = old->cap > id ? old->cap : id + 1;
  ls_catalog *c = calloc(1, sizeof *c + cap * sizeof(ls_table *));
  if (!c) return ls_err(LS_NOMEM, "out of memory");
  c->cap = cap;
  memcpy(c->t, old->t, old->cap * sizeof(ls_table *));
  assert(!t || !c->t[id]);         /* ids are never reused */
  c->t[id] = t;
  atomic_store(&e->catalog, c);
  ls_guard_wait(&e->guard);
  free(old);
  return LS_OK;
}

int cat_load(ls_engine *e) {
  ls_catalog *c = calloc(1, sizeof *c + e->man.next_table * sizeof(ls_table *));
  if (!c) return ls_err(LS_NOMEM, "out of memory");
  c->cap = e->man.next_table;
  atomic_store(&e->catalog, c);
  for (uint32_t i = 0; i < e->man.ntables; i++) {
    ls_table *t = table_new(e, &e->man.tables[i]);
    if (!t) return ls_err(LS_NOMEM, "out of memory");
    c->t[t->id] = t;
  }
  return LS_OK;
}

void cat_free(ls_engine *e) {
  ls_catalog *c = atomic_load(&e->catalog);
  if (!c) return;
  for (uint32_t i = 0; i < c->cap; i++) table_free(e, c->t[i]);
  free(c);
  atomic_store(&e->catalog, NULL);
}

/* ---- the manifest ------------------------------------------------------- */

/* Make m the manifest, durably, and e->man (which it replaces).  Caller
** holds cat_lock.  On failure m is freed and e->man stays. */
static int manifest_commit(ls_engine *e, ls_manifest *m) {
  int rc = ls_manifest_write(e->io, e->dirfd, m);
  if (rc) { ls_manifest_free(m); return rc; }
  ls_manifest_free(&e->man);
  e->man = *m;
  return LS_OK;
}

/* Write the manifest with table id removed (remove), or its truncation
** point and name changed (when given).  Caller holds cat_lock. */
static int manifest_update(ls_engine *e, uint32_t id, int remove, uint64_t trunc_seq, const char *name) {
  ls_manifest m;
  int rc = ls_manifest_copy(&m, &e->man);
  if (rc) return rc;
  ls_mtable *mt = ls_manifest_table(&m, id);
  if (!mt) { ls_manifest_free(&m); return ls_err(LS_NOTABLE, "no table with id %u", id); }
  if (remove) {
    uint32_t i = (uint32_t)(mt - m.tables);
    memmove(mt, mt + 1, (m.ntables - i - 1) * sizeof *mt);
    m.ntables--;
  } else {
    if (trunc_seq) mt->trunc_seq = trunc_seq;
    if (name) snprintf(mt->name, sizeof mt->name, "%s", name);
  }
  /* Keep the write sequence above every truncation point across restarts. */
  if (trunc_seq && trunc_seq > m.seq_floor) m.seq_floor = trunc_seq;
  return manifest_commit(e, &m);
}

/* Raise the manifest's segment sequence floor (FLOOR) or count of
** segments in data files (SEGMENTS) to v if it is below, durably. */
enum { RAISE_FLOOR, RAISE_SEGMENTS };
static int manifest_raise(ls_engine *e, int which, uint64_t v) {
  pthread_mutex_lock(&e->cat_lock);
  int rc = LS_OK;
  if ((which == RAISE_FLOOR ? e->man.seg_seq_floor : ls_manifest_segments(&e->man)) < v) {
    ls_manifest m;
    rc = ls_manifest_copy(&m, &e->man);
    if (!rc) {
      if (which == RAISE_FLOOR) m.seg_seq_floor = v;
      else ls_manifest_set_segments(&m, (uint32_t)v);
      rc = manifest_commit(e, &m);
    }
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

int cat_lease(void *arg, uint64_t end) { return manifest_raise(arg, RAISE_FLOOR, end); }
int cat_grown(void *arg, uint32_t nsegs) { return manifest_raise(arg, RAISE_SEGMENTS, nsegs); }

int cat_set_files(ls_engine *e, uint32_t nsegs, const ls_mdamage *dm, uint32_t n) {
  pthread_mutex_lock(&e->cat_lock);
  ls_manifest m;
  int rc = ls_manifest_copy(&m, &e->man);
  if (!rc) {
    ls_manifest_set_segments(&m, nsegs);
    free(m.damaged);
    m.damaged = NULL;
    m.ndamaged = 0;
    if (n) {
      m.damaged = malloc(n * sizeof *dm);
      if (!m.damaged) rc = ls_err(LS_NOMEM, "out of memory");
      else { memcpy(m.damaged, dm, n * sizeof *dm); m.ndamaged = n; }
    }
    if (!rc) rc = manifest_commit(e, &m);
    else ls_manifest_free(&m);
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

/* ---- catalog changes ---------------------------------------------------- */

/* Create a table: with the next id (want 0), or with id want if no table
** has had it or a later one (a copy keeping its source's ids). */
static int table_create(ls_engine *e, const char *name, uint32_t groups, int order, uint32_t want, uint32_t *id) {
  if (!name) name = "";
  if (order != LS_ORDER_TOKEN && order != LS_ORDER_KEY) return ls_err(LS_INVALID, "no table order %d", order);
  if (strlen(name) > LS_NAME_MAX) return ls_err(LS_INVALID, "table name longer than %d bytes", LS_NAME_MAX);
  if (groups < 1 || groups > 4096) return ls_err(LS_INVALID, "groups must be between 1 and 4096, not %u", groups);
  pthread_mutex_lock(&e->cat_lock);
  ls_manifest m;
  int rc = ls_manifest_copy(&m, &e->man);
  ls_mtable mt;
  memset(&mt, 0, sizeof mt);
  ls_table *t = NULL;
  if (!rc && want && want < m.next_table)
    rc = ls_err(LS_INVALID, "table id %u is taken (the next free one is %u)", want, m.next_table);
  if (!rc) {
    if (want) m.next_table = want;
    mt.id = m.next_table++;
    mt.groups = groups;
    mt.order = order == LS_ORDER_KEY ? KO_KEY : KO_TOKEN;
    /* Records of this id can not exist; the truncation point is moot. */
    mt.trunc_seq = 0;
    snprintf(mt.name, sizeof mt.name, "%s", name);
    ls_mtable *nt = realloc(m.tables, (m.ntables + 1) * sizeof *nt);
    if (!nt) rc = ls_err(LS_NOMEM, "out of memory");
    else { m.tables = nt; m.tables[m.ntables++] = mt; }
  }
  if (!rc) rc = ls_manifest_write(e->io, e->dirfd, &m);
  if (!rc) {
    t = table_new(e, &mt);
    if (!t) rc = ls_err(LS_NOMEM, "out of memory");
  }
  if (!rc) rc = catalog_set(e, mt.id, t);
  if (!rc) {
    ls_manifest_free(&e->man);
    e->man = m;
    *id = mt.id;
  } else {
    table_free(e, t);
    ls_manifest_free(&m);
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

int ls_table_create(ls_engine *e, const char *name, uint32_t groups, uint32_t *id) {
  return table_create(e, name, groups, LS_ORDER_TOKEN, 0, id);
}

int ls_table_create_ex(ls_engine *e, const char *name, uint32_t groups, int order, uint32_t want, uint32_t *id) {
  uint32_t got;
  int rc = table_create(e, name, groups, order, want, &got);
  if (!rc && id) *id = got;
  return rc;
}

int ls_table_create_id(ls_engine *e, const char *name, uint32_t groups, uint32_t id) {
  if (!id) return ls_err(LS_INVALID, "table id 0 is not an id");
  uint32_t got;
  return table_create(e, name, groups, LS_ORDER_TOKEN, id, &got);
}

/* Take every entry of t's index out of the accounting (the entries are
** going), telling dead about each. */
typedef struct unaccount_arg {
  ls_engine *e;
  void (*dead)(void *arg, uint64_t word);
  void *arg;
} unaccount_arg;

static int unaccount_entry(void *arg, const idx_entry *en, uint64_t seq) {
  unaccount_arg *u = arg;
  LS_UNUSED(seq);
  seg_account(&u->e->sm, en->word, -1);
  u->dead(u->arg, en->word);
  return 0;
}

int cat_drop(ls_engine *e, uint32_t id, void (*dead)(void *arg, uint64_t word), void *arg) {
  pthread_mutex_lock(&e->cat_lock);
  ls_table *t = cat_table(e, id);
  int rc = t ? manifest_update(e, id, 1, 0, NULL) : ls_err(LS_NOTABLE, "no table with id %u", id);
  if (!rc) rc = catalog_set(e, id, NULL);   /* waits for readers of t */
  pthread_mutex_unlock(&e->cat_lock);
  if (rc) return rc;
  unaccount_arg u = { e, dead, arg };
  idx_foreach(t->idx, unaccount_entry, &u);
  table_free(e, t);
  return LS_OK;
}

int cat_truncate(ls_engine *e, uint32_t id, uint64_t cut, void (*dead)(void *arg, uint64_t word), void *arg) {
  pthread_mutex_lock(&e->cat_lock);
  ls_table *t = cat_table(e, id);
  int rc = t ? manifest_update(e, id, 0, cut, NULL) : ls_err(LS_NOTABLE, "no table with id %u", id);
  pthread_mutex_unlock(&e->cat_lock);
  if (rc) return rc;
  pthread_rwlock_wrlock(&t->lock);
  assert(cut >= t->trunc_seq);
  t->trunc_seq = cut;
  atomic_fetch_add(&t->changes, 1);
  atomic_store(&t->last_install, UINT64_MAX);   /* no snapshot sees this */
  unaccount_arg u = { e, dead, arg };
  idx_foreach(t->idx, unaccount_entry, &u);
  idx_clear(t->idx);
  atomic_store(&t->rows, 0);
  atomic_store(&t->live_bytes, 0);
  pthread_rwlock_unlock(&t->lock);
  return LS_OK;
}

int ls_table_rename(ls_engine *e, uint32_t id, const char *name) {
  if (strlen(name) > LS_NAME_MAX) return ls_err(LS_INVALID, "table name longer than %d bytes", LS_NAME_MAX);
  pthread_mutex_lock(&e->cat_lock);
  ls_table *t = cat_table(e, id);
  int rc = t ? LS_OK : ls_err(LS_NOTABLE, "no table with id %u", id);
  if (!rc && strcmp(t->name, name) != 0) {
    rc = manifest_update(e, id, 0, 0, name);
    if (!rc) snprintf(t->name, sizeof t->name, "%s", name);
  }
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

int ls_table_exists(ls_engine *e, uint32_t id) {
  unsigned g = ls_guard_enter(&e->guard);
  int r = cat_table(e, id) != NULL;
  ls_guard_leave(&e->guard, g);
  return r;
}

int cat_account_entry(void *arg, const idx_entry *en, uint64_t seq) {
  ls_engine *e = ((void **)arg)[0];
  ls_table *t = ((void **)arg)[1];
  LS_UNUSED(seq);
  seg_account(&e->sm, en->word, +1);
  atomic_fetch_add(&t->live_bytes, loc_size(en->word));
  if (!loc_tomb(en->word)) atomic_fetch_add(&t->rows, 1);
  return 0;
}
