/*
** admin.c -- the engine layer's maintenance calls: statistics, table and
** segment listings, dropping and truncating tables (ordered with every
** commit in the writer's role), ls_flush and ls_compact (which seal the
** writer's active segment, then run the cleaner), and the consistency
** check (ls_check).
**
** Layer: the top, beside engine.c (engine/README.md).  Calls: writer,
** cleaner, read, catalog, segment.
**
** ls_check runs in the writer's role (writer_call) with the cleaner held
** still, so no commit installs and no relocation moves entries while it
** compares the indexes with the segment accounting.  First it scrubs: it
** reads every segment of every data file and walks it as recovery would
** (a segment in use up to the bytes written, a free one as the next open
** will read it), so damage anywhere is found, not only where the index
** points, and adds what it finds to the engine's list of damaged ranges.
** For every index entry it reads the record and verifies that the record's
** checksum holds, that it belongs to the table, and that the digest of its
** key is the entry's key; then it recomputes the live bytes and records of
** every segment from all indexes and compares them with the descriptors.
*/
#include "cleaner.h"
#include "read.h"
#include "writer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>


void ls_stats_get(ls_engine *e, ls_stats *s) {
  memset(s, 0, sizeof *s);
  s->bytes_written = atomic_load(&e->bytes_written) + atomic_load(&e->sm.format_bytes);
  s->user_bytes_written = atomic_load(&e->user_bytes_written);
  unsigned g = ls_guard_enter(&e->guard);
  ls_catalog *c = atomic_load(&e->catalog);
  for (uint32_t i = 0; i < c->cap; i++) {
    ls_table *t = c->t[i];
    if (!t) continue;
    pthread_rwlock_rdlock(&t->lock);
    s->records_live += idx_count(t->idx);
    s->index_bytes += idx_memory(t->idx);
    pthread_rwlock_unlock(&t->lock);
    s->bytes_live += (uint64_t)atomic_load(&t->live_bytes);
    s->rows += (uint64_t)atomic_load(&t->rows);
  }
  ls_guard_leave(&e->guard, g);
  s->segments_total = seg_count(&e->sm);
  s->segments_free = seg_nfree(&e->sm);
  s->segments_used = s->segments_total - s->segments_free;
  s->data_file_bytes = (uint64_t)seg_count(&e->sm) * e->seg_size;
  s->commits = atomic_load(&e->commits);
  s->commit_groups = atomic_load(&e->commit_groups);
  s->writer_handoffs = atomic_load(&e->writer_handoffs);
  s->syncs = atomic_load(&e->syncs);
  s->conflicts = atomic_load(&e->conflicts);
  s->reads = atomic_load(&e->reads);
  s->recovery_ms = e->recovery_ms;
  s->recovery_records = e->recovery_records;
  s->doubts_resolved = e->doubts_resolved;
  s->recovery_segments = e->recovery_segments;
  s->recovery_checkpoint = (uint64_t)e->recovery_checkpoint;
  s->write_seq = atomic_load(&e->next_seq);
  s->segment_size = e->seg_size;
  s->file_size = e->file_size;
  s->disk_size = e->disk_size;
  s->io_backend = ls_io_name(e->io);
  s->failed = atomic_load(&e->failed);
  s->synchronous = atomic_load(&e->sync_mode);
  s->space_target = atomic_load(&e->space_target) / 1000.0;
  s->segments_compacted = atomic_load(&e->segments_compacted);
  s->compaction_bytes_written = atomic_load(&e->compaction_bytes);
  s->compaction_records_relocated = atomic_load(&e->compaction_relocated);
  s->compaction_records_dropped = atomic_load(&e->compaction_dropped);
  s->tombstones_dropped = atomic_load(&e->tombstones_dropped);
  s->separator_bytes_written = atomic_load(&e->separator_bytes);
  s->separator_records_relocated = atomic_load(&e->separator_relocated);
  s->separator_segments_adopted = atomic_load(&e->separator_adopted);
  s->separator_buffers_in_use = cleaner_buffers_in_use(e);
  s->separator_delay_us = atomic_load(&e->delay_us);
  s->separator_delay_now_us = atomic_load(&e->delay_now_us);
  s->segments_freed_by_separator = atomic_load(&e->separator_freed);
  s->segments_freed = atomic_load(&e->segments_freed);
  s->format_bytes_written = atomic_load(&e->sm.format_bytes);
  s->meta_bytes_written = atomic_load(&e->marker_bytes);
  cat_damage_count(e, 0, &s->damaged_ranges, &s->damaged_bytes);
  s->snapshots_active = atomic_load(&e->snaps.nactive);
  s->snapshot_versions = atomic_load(&e->snaps.nversions);
  s->snapshot_bytes = atomic_load(&e->snaps.bytes);
  s->snapshots_expired = atomic_load(&e->snaps.expired);
  ls_cache_stats cs;
  cache_stats(e->cache, &cs);
  s->cache_size = e->cache_size;
  s->cache_bytes = cs.bytes;
  s->cache_entries = cs.entries;
  s->cache_hits = cs.hits;
  s->cache_misses = cs.misses;
  uint32_t n = seg_count(&e->sm);
  pthread_mutex_lock(&e->sm.lock);
  for (uint32_t i = 0; i < n; i++) {
    ls_seg *d = seg_get(&e->sm, i);
    s->mixed_segments += d->state != SEG_FREE && d->kind == LS_KIND_MIXED && !(d->flags & SEGF_ADOPTED);
  }
  pthread_mutex_unlock(&e->sm.lock);
  uint64_t data = s->bytes_written - s->format_bytes_written;
  s->write_amplification = s->user_bytes_written ? (double)data / (double)s->user_bytes_written : 0;
  s->space_amplification = s->bytes_live ? (double)s->segments_used * e->seg_size / (double)s->bytes_live : 0;
}

static void fill_info(ls_table *t, ls_table_info *info) {
  memset(info, 0, sizeof *info);
  info->id = t->id;
  info->groups = t->groups;
  info->order = t->order == KO_KEY ? LS_ORDER_KEY : LS_ORDER_TOKEN;
  snprintf(info->name, sizeof info->name, "%s", t->name);
  info->rows = (uint64_t)atomic_load(&t->rows);
  info->live_bytes = (uint64_t)atomic_load(&t->live_bytes);
  pthread_rwlock_rdlock(&t->lock);
  info->records_live = idx_count(t->idx);
  info->index_bytes = idx_memory(t->idx);
  pthread_rwlock_unlock(&t->lock);
}

int ls_table_info_get(ls_engine *e, uint32_t id, ls_table_info *info) {
  pthread_mutex_lock(&e->cat_lock);            /* the name is stable */
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = cat_table(e, id);
  int rc = t ? LS_OK : ls_err(LS_NOTABLE, "no table with id %u", id);
  if (t) fill_info(t, info);
  ls_guard_leave(&e->guard, g);
  pthread_mutex_unlock(&e->cat_lock);
  return rc;
}

int ls_table_foreach(ls_engine *e, int (*fn)(void *arg, const ls_table_info *), void *arg) {
  uint32_t id = 0;
  for (;;) {
    ls_table_info info;
    int found = 0;
    pthread_mutex_lock(&e->cat_lock);
    unsigned g = ls_guard_enter(&e->guard);
    ls_catalog *c = atomic_load(&e->catalog);
    for (; id < c->cap; id++)
      if (c->t[id]) { fill_info(c->t[id], &info); found = 1; id++; break; }
    ls_guard_leave(&e->guard, g);
    pthread_mutex_unlock(&e->cat_lock);
    if (!found) return LS_OK;
    int r = fn(arg, &info);
    if (r) return r;
  }
}

int ls_segment_foreach(ls_engine *e, int (*fn)(void *arg, const ls_segment_info *), void *arg) {
  static const char *states[] = { "free", "active", "sealed", "sealed" };
  uint32_t n = seg_count(&e->sm);
  for (uint32_t id = 0; id < n; id++) {
    ls_segment_info si;
    pthread_mutex_lock(&e->sm.lock);
    ls_seg *d = seg_get(&e->sm, id);
    si.id = id;
    si.kind = d->kind == LS_KIND_GROUP || (d->flags & SEGF_ADOPTED) ? "group" : "mixed";
    si.state = states[d->state <= SEG_CLEANING ? d->state : 0];
    si.table = d->table;
    si.group = d->group;
    si.seq = d->seq;
    si.live_bytes = (uint64_t)atomic_load(&d->live_bytes);
    si.live_records = (uint64_t)atomic_load(&d->live_records);
    pthread_mutex_unlock(&e->sm.lock);
    int r = fn(arg, &si);
    if (r) return r;
  }
  return LS_OK;
}

/* ---- ls_check --------------------------------------------------------------- */

typedef struct check_ctx {
  ls_engine *e;
  ls_table *t;
  char *out;
  size_t len;
  uint64_t problems;
  int64_t *seg_bytes;              /* recomputed live bytes per segment */
  int64_t *seg_recs;
  int verify;                      /* read and verify records */
  ls_value v;
} check_ctx;

static void report(check_ctx *x, const char *fmt, ...) LS_PRINTF(2, 3);
static void report(check_ctx *x, const char *fmt, ...) {
  x->problems++;
  if (x->problems > 100) return;                /* enough to act on */
  va_list ap;
  va_start(ap, fmt);
  ls_vappend_line(&x->out, &x->len, fmt, ap);
  va_end(ap);
}

static int check_entry(void *arg, const idx_entry *en, uint64_t seq) {
  check_ctx *x = arg;
  ls_engine *e = x->e;
  LS_UNUSED(seq);
  uint32_t s = loc_seg(en->word);
  if (s >= seg_count(&e->sm) || seg_get(&e->sm, s)->state == SEG_FREE) {
    report(x, "%s: an index entry points into segment %u, which is %s", x->t->name, s,
           s >= seg_count(&e->sm) ? "beyond the data files" : "free");
    return 0;
  }
  if (loc_off(en->word) + loc_size(en->word) > e->seg_size) {
    report(x, "%s: an index entry points past the end of segment %u", x->t->name, s);
    return 0;
  }
  x->seg_bytes[s] += loc_size(en->word);
  x->seg_recs[s]++;
  if (!x->verify) return 0;
  int rc = read_record_disk(e, en->word, x->t->id, NULL, &x->v);
  if (rc) {
    report(x, "%s", ls_errmsg());
    return 0;
  }
  uint8_t dg[20];
  ls_digest(x->v.key, x->v.key_len, dg);
  idx_key k;
  idx_key_of(&k, x->t->order, x->v.key, x->v.key_len, dg);
  if (k.hi != en->hi || k.lo != en->lo)
    report(x, "%s: segment %u offset %u: the record's key does not hash to its index entry", x->t->name, s,
           loc_off(en->word));
  return 0;
}

typedef struct check_arg {
  uint32_t table;
  char **report;
  void (*progress)(void *arg, uint64_t done, uint64_t total);
  void *parg;
} check_arg;

/* A damaged range of segment s found by the scrub. */
static void scrub_damage(ls_engine *e, uint32_t s, uint64_t seq, uint32_t kind, uint32_t table, uint32_t group,
                         uint32_t start, uint32_t end, const char *why) {
  ls_damage x = {
    .file = s / e->sm.segs_per_file, .offset = seg_base(&e->sm, s) + start, .length = end - start,
    .segment = s, .seg_seq = seq, .kind = (uint8_t)kind, .runtime = 1,
    .table = kind == LS_KIND_GROUP ? table : 0, .group = kind == LS_KIND_GROUP ? group : 0, .why = why,
  };
  cat_damage_add(e, &x);
}

/* Walk segment image img of segment s: in use (incarnation seq of kind, data
** up to used), or free (then as the next open reads it: FORMAT.md,
** "Recovery"). */
static void scrub_segment(ls_engine *e, uint32_t s, const uint8_t *img, int in_use, uint64_t seq, uint32_t kind,
                          uint32_t used) {
  ls_seghead hd;
  ls_seg_head(img, e->seg_size, &hd);
  uint32_t limit = used, table = 0, group = 0;
  int tail_ok = 0;
  if (!in_use) {
    if (hd.state == LS_HEAD_FREE) return;
    if (hd.state == LS_HEAD_DAMAGED && !hd.seg_seq) {
      scrub_damage(e, s, 0, 0, 0, 0, 0, e->seg_size, "no buffer header in the segment is valid");
      return;
    }
    seq = hd.seg_seq;
    kind = hd.kind;
    limit = hd.limit;
    tail_ok = !hd.sealed;          /* where an unsealed segment's data ends */
  }
  if (hd.state == LS_HEAD_DATA) {
    table = hd.hdr.table;
    group = hd.hdr.group;
  }
  ls_walk w;
  ls_walk_init(&w, img, e->seg_size, limit, seq, kind);
  w.durable = in_use || hd.sealed;
  ls_rec r;
  uint32_t off;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END) {
    if (k == LS_WALK_BUFFER && hd.state != LS_HEAD_DATA) {
      table = w.hdr.table;
      group = w.hdr.group;
    }
    if (k != LS_WALK_GAP) continue;
    if (w.gap_tail && tail_ok && !w.gap_certain) break;
    scrub_damage(e, s, seq, kind, table, group, w.gap_start, w.gap_end, w.why);
  }
}

/* Read and walk every segment (see the top).  I/O errors end it. */
static int scrub(ls_engine *e, check_arg *a) {
  uint32_t nseg = seg_count(&e->sm), seg = e->seg_size;
  uint8_t *img = ls_alloc_aligned(seg);
  uint8_t *punched = calloc(nseg + 1, 1);
  int rc = LS_OK;
  if (!img || !punched) { free(img); free(punched); return ls_err(LS_NOMEM, "out of memory"); }
  pthread_mutex_lock(&e->sm.lock);
  for (uint32_t i = 0; i < e->sm.punched.n; i++)
    if (e->sm.punched.v[i] < nseg) punched[e->sm.punched.v[i]] = 1;
  pthread_mutex_unlock(&e->sm.lock);
  for (uint32_t s = 0; !rc && s < nseg; s++) {
    if (a->progress) a->progress(a->parg, s, nseg);
    int fd = seg_fd(&e->sm, s);
    if (fd < 0 || punched[s]) continue;        /* a missing file is listed already */
    pthread_mutex_lock(&e->sm.lock);
    ls_seg *d = seg_get(&e->sm, s);
    int in_use = d->state != SEG_FREE;
    uint64_t seq = d->seq;
    uint32_t kind = d->kind, used = d->used;
    pthread_mutex_unlock(&e->sm.lock);
    ssize_t n = e->io->m->read(e->io, fd, img, seg, seg_base(&e->sm, s));
    if (n < 0) {
      rc = ls_err_io((int)n, LS_CAUSE_READ, "check: read of segment %u", s);
      break;
    }
    if ((size_t)n < seg) {
      /* Past the end of a short file (listed with the file). */
      if (n == 0) continue;
      memset(img + n, 0, seg - (size_t)n);
    }
    scrub_segment(e, s, img, in_use, seq, kind, used);
  }
  if (!rc && a->progress) a->progress(a->parg, nseg, nseg);
  free(img);
  free(punched);
  return rc;
}

static int do_check_locked(ls_engine *e, check_arg *a);

static int do_check(ls_engine *e, void *arg) {
  cleaner_lock(e);
  int rc = do_check_locked(e, arg);
  cleaner_unlock(e);
  return rc;
}

static int do_check_locked(ls_engine *e, check_arg *a) {
  check_ctx x;
  memset(&x, 0, sizeof x);
  x.e = e;
  if (a->table && !ls_table_exists(e, a->table)) return ls_err(LS_NOTABLE, "no table with id %u", a->table);
  int src = scrub(e, a);
  if (src) return src;
  uint32_t nseg = seg_count(&e->sm);
  x.seg_bytes = calloc(nseg + 1, sizeof(int64_t));
  x.seg_recs = calloc(nseg + 1, sizeof(int64_t));
  if (!x.seg_bytes || !x.seg_recs) {
    free(x.seg_bytes); free(x.seg_recs);
    return ls_err(LS_NOMEM, "out of memory");
  }
  /* Damaged ranges that may hold rows of the table first, then other
  ** problems found earlier. */
  pthread_mutex_lock(&e->problems_lock);
  uint32_t nd = e->ndamage;
  ls_damage *dmg = nd ? malloc(nd * sizeof *dmg) : NULL;
  if (dmg) memcpy(dmg, e->damage, nd * sizeof *dmg);
  else nd = 0;
  pthread_mutex_unlock(&e->problems_lock);
  for (uint32_t i = 0; i < nd; i++) {
    if (!cat_damage_of(&dmg[i], a->table)) continue;
    char line[600];
    cat_damage_line(e, &dmg[i], line, sizeof line);
    report(&x, "damage: %s", line);
  }
  free(dmg);
  pthread_mutex_lock(&e->problems_lock);
  if (e->problems) {
    for (const char *p = e->problems; *p; p++) x.problems += *p == '\n';
    size_t pl = strlen(e->problems);
    char *o = realloc(x.out, x.len + pl + 1);
    if (o) { memcpy(o + x.len, e->problems, pl + 1); x.out = o; x.len += pl; }
  }
  pthread_mutex_unlock(&e->problems_lock);
  unsigned g = ls_guard_enter(&e->guard);
  ls_catalog *c = atomic_load(&e->catalog);
  int rc = LS_OK;
  if (a->table && (a->table >= c->cap || !c->t[a->table]))
    rc = ls_err(LS_NOTABLE, "no table with id %u", a->table);
  for (uint32_t i = 0; !rc && i < c->cap; i++) {
    ls_table *t = c->t[i];
    if (!t) continue;
    x.t = t;
    /* Records are verified for the table asked about; the accounting
    ** comparison needs the entries of every table. */
    x.verify = !a->table || a->table == i;
    pthread_rwlock_rdlock(&t->lock);
    idx_foreach(t->idx, check_entry, &x);
    pthread_rwlock_unlock(&t->lock);
  }
  for (uint32_t s = 0; !rc && s < nseg; s++) {
    ls_seg *d = seg_get(&e->sm, s);
    int64_t b = atomic_load(&d->live_bytes), r = atomic_load(&d->live_records);
    if (b != x.seg_bytes[s] || r != x.seg_recs[s])
      report(&x, "segment %u: accounting says %lld live bytes in %lld records, the indexes point at "
                 "%lld bytes in %lld records", s, (long long)b, (long long)r, (long long)x.seg_bytes[s],
             (long long)x.seg_recs[s]);
  }
  ls_guard_leave(&e->guard, g);
  ls_value_free(&x.v);
  free(x.seg_bytes);
  free(x.seg_recs);
  if (rc) { free(x.out); return rc; }
  if (!x.problems) {
    free(x.out);
    x.out = strdup("ok");
  } else if (x.problems > 100) {
    char more[64];
    snprintf(more, sizeof more, "... and %llu more problems\n", (unsigned long long)(x.problems - 100));
    char *p = realloc(x.out, x.len + strlen(more) + 1);
    if (p) { strcpy(p + x.len, more); x.out = p; }
  }
  if (!x.out) return ls_err(LS_NOMEM, "out of memory");
  /* Drop the final newline. */
  size_t l = strlen(x.out);
  if (l && x.out[l - 1] == '\n') x.out[l - 1] = 0;
  *a->report = x.out;
  return LS_OK;
}

int ls_check_progress(ls_engine *e, uint32_t table, void (*progress)(void *arg, uint64_t done, uint64_t total),
                      void *arg, char **report) {
  check_arg a = { table, report, progress, arg };
  *report = NULL;
  return writer_call(e, do_check, &a);
}

int ls_check(ls_engine *e, uint32_t table, char **report) {
  return ls_check_progress(e, table, NULL, NULL, report);
}

/* ---- dropping and truncating ---------------------------------------------- */

/* In the writer's role: ordered with every commit. */
static int do_drop(ls_engine *e, void *arg) {
  int rc = cat_drop(e, *(uint32_t *)arg, writer_note_dead, e);
  if (!rc) writer_free_empty(e);   /* waits for readers of the old entries */
  return rc;
}

static int do_truncate(ls_engine *e, void *arg) {
  /* In the writer's role no sequence is being assigned: every record of
  ** the table written so far is below next_seq. */
  int rc = cat_truncate(e, *(uint32_t *)arg, atomic_load(&e->next_seq), writer_note_dead, e);
  if (!rc) writer_free_empty(e);
  return rc;
}

int ls_table_drop(ls_engine *e, uint32_t id) { return writer_call(e, do_drop, &id); }
int ls_table_truncate(ls_engine *e, uint32_t id) { return writer_call(e, do_truncate, &id); }

/* ---- flush and compact ------------------------------------------------------ */

int ls_flush(ls_engine *e, uint32_t table, uint64_t *freed) {
  *freed = 0;
  if (table && !ls_table_exists(e, table)) return ls_err(LS_NOTABLE, "no table with id %u", table);
  int rc = cat_check_failed(e);
  /* Everything committed goes into a sealed segment the separator takes. */
  if (!rc) rc = writer_seal(e);
  if (!rc) rc = cleaner_flush(e, freed);
  if (!rc) rc = cat_check_failed(e);
  return rc;
}

int ls_compact(ls_engine *e, uint32_t table, uint64_t *freed) {
  *freed = 0;
  uint64_t before = atomic_load(&e->segments_freed), f;
  int rc = ls_flush(e, table, &f);
  if (rc) return rc;
  /* The table's sets. */
  unsigned g = ls_guard_enter(&e->guard);
  ls_table *t = cat_table(e, table);
  uint32_t n = t ? t->groups : 0;
  uint32_t *sets = n ? malloc(n * sizeof *sets) : NULL;
  if (t && sets) memcpy(sets, t->gsets, n * sizeof *sets);
  ls_guard_leave(&e->guard, g);
  if (!t) return ls_err(LS_NOTABLE, "no table with id %u", table);
  if (!sets) return ls_err(LS_NOMEM, "out of memory");
  rc = cleaner_compact(e, sets, n, before, freed);
  free(sets);
  if (!rc) rc = cat_check_failed(e);
  return rc;
}

int ls_synchronous(ls_engine *e, int mode, uint32_t interval_ms) {
  if (mode < LS_SYNC_DEFAULT || mode > LS_SYNC_OFF) return ls_err(LS_INVALID, "unknown synchronous choice %d", mode);
  if (interval_ms > LS_MAX_SYNC_INTERVAL_MS)
    return ls_err(LS_INVALID, "sync_interval must be between 1 and %u ms, not %u", LS_MAX_SYNC_INTERVAL_MS,
                  interval_ms);
  if (mode) atomic_store(&e->sync_mode, mode);
  if (interval_ms) atomic_store(&e->sync_interval_ns, (uint64_t)interval_ms * 1000000);
  return LS_OK;
}

int ls_space_target(ls_engine *e, double target) {
  if (target != 0 && !(target >= 1.1 && target <= 100))
    return ls_err(LS_INVALID, "space_target must be between 1.1 and 100, not %g", target);
  if (target != 0) atomic_store(&e->space_target, (uint32_t)(target * 1000 + 0.5));
  return LS_OK;
}
