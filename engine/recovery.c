/*
** recovery.c -- rebuild the indexes and the segment states by scanning the
** data files at open, and find the damage (FORMAT.md, "Recovery" and
** "Damage").
**
** The file set first (fileset.h): the manifest counts the data files and
** the length of the last; one missing or shorter than it says is damage.
**
** For every segment (read in batches, several requests at once), with the
** segment walker of format.c:
**   1. Offset 0 fixes the segment: a free marker means free; a valid header
**      gives the incarnation (sequence, kind) and, if SEALED, where its data
**      ends.  No valid header at 0 is damage (nothing the engine writes
**      leaves it so); the walk then resynchronises on the youngest
**      incarnation with a buffer further on.
**   2. Buffers of the incarnation follow at 4 KiB boundaries and records
**      within each buffer's data_size, each with the segment's CRC seed.  A
**      bad spot is a gap: the walk goes on at the next 4 KiB boundary with a
**      valid header of the incarnation, so the rows after it are kept.
**   3. A gap is damage unless it is the tail of an unsealed segment: a
**      crash can only cut the last writes, which lie after every byte of
**      the segment that was durable when it was sealed, and no write is
**      ever followed by a later buffer in the same segment before a sync.
**      A tail of an unsealed segment is where its data ends (zeros, bytes
**      of an older incarnation, or a torn last write): not damage.
**   4. Records of one-buffer transactions are applied when the
**      transaction's END record is reached; those still pending when the
**      buffer ends (or a gap starts) are discarded.  CONT records are kept
**      aside and applied after the scan if a COMMIT record covering their
**      sequence was found anywhere (the writer makes every CONT record
**      durable before it writes the COMMIT record).
**   5. Records of tables not in the catalog (dropped) or below their table's
**      truncation point are ignored.  For each key the highest write
**      sequence wins, whatever order segments are read in; an equal sequence
**      is the same version (a relocated copy): the copy in the younger
**      segment incarnation wins (FORMAT.md, "Relocation").
**   6. ABORT records name the sequence range of a prepared transaction that
**      must not count.  If the scan found any, it is run again with them
**      known, skipping the aborted records (aborts are rare: SQLite failed
**      to commit after the engine had prepared).
**   Committed records are collected in batches of up to BATCH entries, each
**   sorted by key and then applied to the indexes in key order: inserting
**   in order walks each index sequentially instead of missing the cache on
**   every insert (about 3x faster), and memory stays bounded by the batch.
**   A CONT record in a buffer with the SETTLED flag is committed by itself
**   (its transaction's COMMIT record may be gone).
** Afterwards the live counts of every segment are rebuilt from the final
** indexes, segments without live records are free, and the sequences
** continue above everything seen.  Group segments rejoin their group's
** set; mixed segments that still hold live records go to the separator,
** oldest first; group segments still depending on a COMMIT record are
** settled by the cleaner.  Each segment's dead_floor is the smallest
** sequence of a put in it that lost to a newer version (tombstone floors,
** segment.h); a segment freed here keeps it as its stale_floor.
**
** Then the damage found decides (ls_options.on_damage): the default fails
** the open unless every damaged range was accepted by an earlier salvage;
** salvage makes missing and short files again and records the ranges as
** accepted in the manifest; report changes nothing.  Where the open goes
** on writable, every segment kept is sealed at the end recovery found, so
** a later open can tell damage in it from a torn tail.
*/
#include "recovery.h"
#include "checkpoint.h"
#include "fileset.h"

#include <stdarg.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#define READ_BATCH 8
#define BATCH (1u << 20)           /* records sorted and applied together */

typedef struct pend {
  uint64_t hi, lo, word, seq;
  uint32_t table;
} pend;

typedef struct range { uint64_t first, last; uint32_t seg; } range;

/* A PREPARE record (W11): its transaction's range, decision and segment;
** verdict once known: DOUBT_* */
typedef struct prep { uint64_t first, last, id; uint32_t seg; int verdict; } prep;
enum { DOUBT_UNKNOWN, DOUBT_SETTLED, DOUBT_COMMIT, DOUBT_DROP };

typedef struct rstate {
  ls_engine *e;
  pend *batch;                     /* committed records not yet applied */
  pend *sorted;                    /* scratch for sorting the batch */
  uint64_t capsorted;
  uint32_t *count;                 /* counting-sort table */
  uint64_t nbatch, capbatch;
  pend *local;                     /* records of the current one-buffer txn */
  uint32_t nlocal, caplocal;
  pend *cont;                      /* CONT records awaiting their COMMIT */
  uint64_t ncont, capcont;
  range *commits;
  uint64_t ncommits, capcommits;
  range *aborts;                   /* sorted once known */
  uint64_t naborts, capaborts;
  int aborts_known;                /* second pass: skip aborted records */
  prep *preps;                     /* PREPARE records (first pass) */
  uint64_t npreps, cappreps;
  uint32_t (*deps)[3];             /* segment -> segment holding its COMMIT or
                                   ** ABORT record, 1 for an ABORT */
  uint64_t ndeps, capdeps;
  uint64_t max_seq;                /* highest write sequence seen */
  uint64_t max_seg_seq;            /* highest segment sequence seen */
  uint64_t records;
  char *problems;
  size_t problems_len;
  ls_fileset fs;                   /* the data files (fileset.h) */
  uint8_t *sf;                     /* per segment: SF_* (fs.sf) */
} rstate;

#define SF_LOST    FS_LOST         /* not on disk: missing file, or past its end */
#define SF_HEAD    0x02            /* a valid header at offset 0 */
#define SF_SEALED  0x04            /* sealed: its data end is known */
#define SF_DAMAGED 0x08            /* a damaged range in it */
#define SF_MARKER  0x10            /* a free marker at offset 0 */

/* Grow array a (capacity cap) to hold need elements. */
#define GROW(a, cap, need) (LS_GROW(a, cap, need, 256) ? ls_err(LS_NOMEM, "recovery: out of memory") : LS_OK)

static void problem(rstate *rs, const char *fmt, ...) LS_PRINTF(2, 3);
static void problem(rstate *rs, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ls_vappend_line(&rs->problems, &rs->problems_len, fmt, ap);
  va_end(ap);
}

/* Apply the batch to the indexes: sort by key (a counting sort on the top
** 16 bits, then insertion sort inside each run; keys are uniform hash
** values, so runs are short), then insert in order.  Newest sequence wins. */
static int flush_batch(rstate *rs) {
  ls_engine *e = rs->e;
  uint64_t n = rs->nbatch;
  if (!n) return LS_OK;
  /* As large as the batch grew (a small directory never needs BATCH). */
  if (rs->capsorted < rs->capbatch) {
    free(rs->sorted);
    rs->sorted = malloc(rs->capbatch * sizeof(pend));
    if (!rs->sorted) { rs->capsorted = 0; return ls_err(LS_NOMEM, "recovery: out of memory"); }
    rs->capsorted = rs->capbatch;
  }
  if (!rs->count) {
    rs->count = malloc(65537 * sizeof(uint32_t));
    if (!rs->count) return ls_err(LS_NOMEM, "recovery: out of memory");
  }
  uint32_t *count = rs->count;
  memset(count, 0, 65537 * sizeof(uint32_t));
  for (uint64_t i = 0; i < n; i++) count[(rs->batch[i].hi >> 48) + 1]++;
  for (uint32_t b = 1; b <= 65536; b++) count[b] += count[b - 1];
  for (uint64_t i = 0; i < n; i++) rs->sorted[count[rs->batch[i].hi >> 48]++] = rs->batch[i];
  /* count[b] is now the end of run b; sort each run. */
  uint64_t start = 0;
  for (uint32_t b = 0; b < 65536; b++) {
    uint64_t end = count[b];
    for (uint64_t i = start + 1; i < end; i++) {
      pend x = rs->sorted[i];
      uint64_t j = i;
      while (j > start && (rs->sorted[j - 1].hi > x.hi || (rs->sorted[j - 1].hi == x.hi && rs->sorted[j - 1].lo > x.lo))) {
        rs->sorted[j] = rs->sorted[j - 1];
        j--;
      }
      rs->sorted[j] = x;
    }
    start = end;
  }
  ls_table *t = NULL;
  for (uint64_t i = 0; i < n; i++) {
    const pend *p = &rs->sorted[i];
    if (!t || t->id != p->table) t = cat_table(e, p->table);
    if (!t || p->seq < t->trunc_seq) { t = NULL; continue; }
    idx_key k = { p->hi, p->lo };
    uint64_t old, old_seq;
    int how = idx_put_newer(t->idx, &k, p->word, p->seq, &old, &old_seq);
    if (how < 0) return ls_err(LS_NOMEM, "recovery: out of memory building the index of table %u", p->table);
    /* Two copies of one version (a relocation, and its source not yet
    ** overwritten): the copy in the younger segment incarnation wins, so
    ** a source freed before the restart stays free. */
    if (how == IDX_KEPT && old_seq == p->seq &&
        seg_get(&e->sm, loc_seg(p->word))->seq > seg_get(&e->sm, loc_seg(old))->seq) {
      idx_cas(t->idx, &k, old, p->word);
      how = IDX_REPLACED;
    }
    /* The copy or version that lost is a dead record: an older version for
    ** the tombstone floors (unless it is a delete). */
    if (how == IDX_REPLACED && !loc_tomb(old))
      seg_lower_floor(&seg_get(&e->sm, loc_seg(old))->dead_floor, old_seq);
    else if (how == IDX_KEPT && !loc_tomb(p->word))
      seg_lower_floor(&seg_get(&e->sm, loc_seg(p->word))->dead_floor, p->seq);
  }
  rs->nbatch = 0;
  return LS_OK;
}

/* Queue one committed record for the indexes. */
static int apply(rstate *rs, const pend *p) {
  if (rs->nbatch == rs->capbatch) {
    if (rs->capbatch == BATCH) {
      int rc = flush_batch(rs);
      if (rc) return rc;
    } else {
      int rc = GROW(rs->batch, rs->capbatch, rs->nbatch + 1);
      if (rc) return rc;
      if (rs->capbatch > BATCH) rs->capbatch = BATCH;
    }
  }
  rs->batch[rs->nbatch++] = *p;
  return LS_OK;
}

static int add_dep(rstate *rs, uint32_t x, uint32_t y, uint32_t abort) {
  if ((x == y && !abort) ||
      (rs->ndeps && rs->deps[rs->ndeps - 1][0] == x && rs->deps[rs->ndeps - 1][1] == y)) return LS_OK;
  int rc = GROW(rs->deps, rs->capdeps, rs->ndeps + 1);
  if (rc) return rc;
  rs->deps[rs->ndeps][0] = x;
  rs->deps[rs->ndeps][1] = y;
  rs->deps[rs->ndeps][2] = abort;
  rs->ndeps++;
  return LS_OK;
}

/* The range holding seq in sorted, non-overlapping ranges (last inclusive
** when incl), or NULL. */
static const range *find_range(const range *r, uint64_t n, uint64_t seq, int incl) {
  uint64_t l = 0, h = n;
  while (l < h) {
    uint64_t m = (l + h) / 2;
    if (r[m].first <= seq) l = m + 1; else h = m;
  }
  if (l == 0) return NULL;
  const range *c = &r[l - 1];
  return seq >= c->first && (seq < c->last || (incl && seq == c->last)) ? c : NULL;
}

/* Note damage in segment id of the incarnation being read: bytes [start,
** end) of it. */
static void seg_damage(rstate *rs, uint32_t id, uint32_t start, uint32_t end, const char *why) {
  ls_engine *e = rs->e;
  ls_seg *d = seg_get(&e->sm, id);
  ls_damage x = {
    .file = id / e->sm.segs_per_file, .offset = seg_base(&e->sm, id) + start, .length = end - start,
    .segment = id, .seg_seq = d->seq, .kind = d->kind, .table = d->kind == LS_KIND_GROUP ? d->table : 0,
    .group = d->kind == LS_KIND_GROUP ? d->group : 0, .why = why,
  };
  rs->sf[id] |= SF_DAMAGED;
  cat_damage_add(e, &x);
}

/* Apply one record of segment id at roff (see the rules at the top). */
static int scan_record(rstate *rs, uint32_t id, const ls_rec *r, uint32_t roff, int settled) {
  ls_seg *d = seg_get(&rs->e->sm, id);
  rs->records++;
  if (r->seq > rs->max_seq) rs->max_seq = r->seq;
  seg_note_rec(d, roff, r->seq);
  if (rs->aborts_known) {
    const range *a = find_range(rs->aborts, rs->naborts, r->seq, 1);
    if (a) return add_dep(rs, id, a->seg, 1);      /* a record of an aborted transaction */
  }
  if (r->type == LS_REC_ABORT) {
    if (!rs->aborts_known) {
      int rc = GROW(rs->aborts, rs->capaborts, rs->naborts + 1);
      if (rc) return rc;
      rs->aborts[rs->naborts].first = ls_get64(r->val);
      rs->aborts[rs->naborts].last = ls_get64(r->val + 8);
      rs->aborts[rs->naborts].seg = id;
      rs->naborts++;
    }
  } else if (r->type == LS_REC_PREPARE) {
    if (!rs->aborts_known) {
      int rc = GROW(rs->preps, rs->cappreps, rs->npreps + 1);
      if (rc) return rc;
      rs->preps[rs->npreps++] = (prep){ ls_get64(r->val), r->seq, ls_get64(r->val + 8), id, DOUBT_UNKNOWN };
    }
  } else if (r->type == LS_REC_COMMIT) {
    int rc = GROW(rs->commits, rs->capcommits, rs->ncommits + 1);
    if (rc) return rc;
    rs->commits[rs->ncommits].first = ls_get64(r->val);
    /* Its own sequence ends the range, or (settling a PREPARE) the value. */
    rs->commits[rs->ncommits].last = r->val_len == 16 ? ls_get64(r->val + 8) : r->seq;
    rs->commits[rs->ncommits].seg = id;
    rs->ncommits++;
  } else {
    uint8_t dg[20];
    ls_digest(r->key, r->key_len, dg);
    idx_key k;
    idx_key_of(&k, cat_order(rs->e, r->table), r->key, r->key_len, dg);
    pend pd = { k.hi, k.lo, loc_make(id, roff, r->size, r->type == LS_REC_DELETE), r->seq, r->table };
    if ((r->flags & LS_RF_CONT) && settled) {
      int rc = apply(rs, &pd);             /* committed, and settled as such */
      if (rc) return rc;
    } else if (r->flags & LS_RF_CONT) {
      int rc = GROW(rs->cont, rs->capcont, rs->ncont + 1);
      if (rc) return rc;
      rs->cont[rs->ncont++] = pd;
    } else {
      int rc = GROW(rs->local, rs->caplocal, rs->nlocal + 1);
      if (rc) return rc;
      rs->local[rs->nlocal++] = pd;
    }
  }
  if (r->flags & LS_RF_END) {
    for (uint32_t i = 0; i < rs->nlocal; i++) {
      int rc = apply(rs, &rs->local[i]);
      if (rc) return rc;
    }
    rs->nlocal = 0;
  }
  return LS_OK;
}

/* Walk one segment image (see the rules at the top). */
static int scan_segment(rstate *rs, uint32_t id, const uint8_t *img) {
  ls_engine *e = rs->e;
  ls_seg *d = seg_get(&e->sm, id);
  uint32_t size = e->seg_size;
  ls_seghead hd;
  ls_seg_head(img, size, &hd);
  if (hd.state != LS_HEAD_DAMAGED) {
    if (hd.hdr.seg_seq > rs->max_seg_seq) rs->max_seg_seq = hd.hdr.seg_seq;
    if (hd.hdr.max_seq > rs->max_seq) rs->max_seq = hd.hdr.max_seq;
  }
  if (hd.state == LS_HEAD_FREE) {
    rs->sf[id] |= SF_MARKER;
    return LS_OK;
  }
  if (hd.seg_seq > rs->max_seg_seq) rs->max_seg_seq = hd.seg_seq;
  d->seq = hd.seg_seq;
  d->kind = (uint8_t)hd.kind;
  d->table = hd.state == LS_HEAD_DATA ? hd.hdr.table : 0;
  d->group = hd.state == LS_HEAD_DATA ? hd.hdr.group : 0;
  if (hd.state == LS_HEAD_DAMAGED && !hd.seg_seq) {
    /* Nothing of it can be read. */
    seg_damage(rs, id, 0, size, "no buffer header in the segment is valid");
    d->seq = 0;
    return LS_OK;
  }
  d->seed = ls_rec_seed(hd.seg_seq);
  d->state = SEG_SEALED;
  d->used = 0;
  if (hd.state == LS_HEAD_DATA) rs->sf[id] |= SF_HEAD;
  if (hd.sealed) rs->sf[id] |= SF_SEALED;
  ls_walk w;
  ls_walk_init(&w, img, size, hd.limit, hd.seg_seq, hd.kind);
  w.durable = hd.sealed;
  int settled = 0, tables = hd.state == LS_HEAD_DATA;
  rs->nlocal = 0;
  for (;;) {
    ls_rec r;
    uint32_t roff;
    int k = ls_walk_next(&w, &r, &roff);
    if (k == LS_WALK_END) {
      d->used = w.next < hd.limit ? w.next : hd.limit;
      break;
    }
    if (k == LS_WALK_BUFFER) {
      rs->nlocal = 0;              /* a transaction without END is discarded */
      if (w.hdr.max_seq > rs->max_seq) rs->max_seq = w.hdr.max_seq;
      settled = (w.hdr.flags & LS_BF_SETTLED) != 0;
      if (!tables) {               /* the owner, when offset 0 is gone */
        d->table = w.hdr.table;
        d->group = w.hdr.group;
        tables = 1;
      }
      continue;
    }
    if (k == LS_WALK_GAP) {
      /* Rule 3: only the tail of an unsealed segment can be a crash's. */
      int torn = w.gap_tail && !hd.sealed && !w.gap_certain;
      if (torn) {
        rs->nlocal = 0;            /* a transaction the crash cut */
        d->used = w.gap_start;
        break;
      }
      /* Damage in durable data: the transaction being read was committed
      ** (its END is in the damaged range); its rows read so far count. */
      for (uint32_t i = 0; i < rs->nlocal; i++) {
        int rc = apply(rs, &rs->local[i]);
        if (rc) return rc;
      }
      rs->nlocal = 0;
      seg_damage(rs, id, w.gap_start, w.gap_end, w.why);
      if (w.gap_tail) {
        d->used = hd.limit;
        break;
      }
      continue;
    }
    int rc = scan_record(rs, id, &r, roff, settled);
    if (rc) return rc;
  }
  rs->nlocal = 0;
  return LS_OK;
}

static int cmp_range(const void *a, const void *b) {
  const range *x = a, *y = b;
  return x->first < y->first ? -1 : x->first > y->first;
}

/* A whole-file problem of data file n: bytes [off, end) of it are gone. */




static int set_tracking(ls_engine *e, int on) {
  ls_catalog *c = atomic_load(&e->catalog);
  for (uint32_t i = 0; i < c->cap; i++)
    if (c->t[i]) {
      int rc = idx_track_seq(c->t[i]->idx, on);
      if (rc) return ls_err(rc, "recovery: out of memory");
    }
  return LS_OK;
}


/* Transactions left in doubt (W11): a PREPARE record without a COMMIT
** record naming its first sequence and without an ABORT record covering
** it.  The host decides each once (the first pass); one it committed
** counts from its PREPARE record's segment, like a COMMIT record there,
** and its decision stays pending for the host; one it did not is dropped
** (its records never count).  Without a host to ask the open fails,
** except for a read-only report, which leaves them out. */
static int resolve_doubts(rstate *rs) {
  ls_engine *e = rs->e;
  uint32_t asked = 0;
  for (uint64_t i = 0; i < rs->npreps; i++) {
    prep *p = &rs->preps[i];
    if (p->verdict == DOUBT_UNKNOWN) {
      p->verdict = DOUBT_SETTLED;
      int settled = 0;
      for (uint64_t j = 0; j < rs->ncommits && !settled; j++) settled = rs->commits[j].first == p->first;
      for (uint64_t j = 0; j < rs->naborts && !settled; j++)
        settled = rs->aborts[j].first <= p->first && p->first <= rs->aborts[j].last;
      if (!settled) {
        int v;
        if (e->decide) {
          v = e->decide(e->decide_arg, p->id);
          if (v < 0) return ls_err(LS_BUSY, "data directory %s: the decision on a transaction left in doubt "
                                   "by a crash can not be read now", e->path);
        } else if (e->on_damage == LS_ON_DAMAGE_REPORT) {
          v = 0;
        } else {
          return ls_err(LS_BUSY, "data directory %s holds a transaction left in doubt by a crash; its "
                        "outcome is recorded in the SQLite database: open that with the logstor "
                        "extension first", e->path);
        }
        asked++;
        p->verdict = v ? DOUBT_COMMIT : DOUBT_DROP;
        if (v) {
          if (LS_GROW(e->kept, e->capkept, e->nkept + 1, 4)) return ls_err(LS_NOMEM, "recovery: out of memory");
          e->kept[e->nkept++] = p->id;
        }
      }
    }
    if (p->verdict == DOUBT_COMMIT) {
      int rc = GROW(rs->commits, rs->capcommits, rs->ncommits + 1);
      if (rc) return rc;
      rs->commits[rs->ncommits++] = (range){ p->first, p->last, p->seg };
    }
  }
  e->doubts_resolved += asked;
  return LS_OK;
}

/* One pass over every segment: scan, resolve streamed transactions, and
** apply everything committed to the indexes. */
static int scan_pass(rstate *rs, uint32_t nseg, uint8_t *bufs) {
  ls_engine *e = rs->e;
  int rc = LS_OK;
  for (uint32_t s = 0; !rc && s < nseg; s += READ_BATCH) {
    ls_io_req req[READ_BATCH];
    uint32_t ids[READ_BATCH];
    int n = 0;
    uint32_t i;
    for (i = s; i < nseg && i < s + READ_BATCH; i++) {
      if (rs->sf[i] & SF_LOST) continue;         /* reported with its file */
      ids[n] = i;
      req[n].op = LS_IOOP_READ;
      req[n].fd = seg_fd(&e->sm, i);
      req[n].buf = bufs + (size_t)n * e->seg_size;
      req[n].len = e->seg_size;
      req[n].off = seg_base(&e->sm, i);
      n++;
    }
    int r = n ? e->io->m->submit(e->io, req, n) : 0;
    if (r) return ls_err_io(r, LS_CAUSE_READ, "recovery: read of segments %u..%u", s, i - 1);
    for (int j = 0; j < n; j++)
      if (req[j].res < (ssize_t)e->seg_size)        /* past the end of a short file */
        memset((uint8_t *)req[j].buf + req[j].res, 0, e->seg_size - (size_t)req[j].res);
    for (int j = 0; !rc && j < n; j++) rc = scan_segment(rs, ids[j], req[j].buf);
  }
  if (!rc) rc = resolve_doubts(rs);
  /* Transactions written in several buffers: apply those that committed,
  ** and remember which segment's COMMIT record each segment relies on. */
  if (!rc && rs->ncont) {
    if (rs->ncommits) qsort(rs->commits, rs->ncommits, sizeof(range), cmp_range);
    for (uint64_t i = 0; !rc && i < rs->ncont; i++) {
      const range *c = find_range(rs->commits, rs->ncommits, rs->cont[i].seq, 0);
      if (!c) continue;
      rc = apply(rs, &rs->cont[i]);
      if (!rc) rc = add_dep(rs, loc_seg(rs->cont[i].word), c->seg, 0);
    }
  }
  if (!rc) rc = flush_batch(rs);
  return rc;
}

/* Forget what a pass built, keeping the ABORT ranges it found. */
static void reset_pass(rstate *rs) {
  ls_catalog *c = atomic_load(&rs->e->catalog);
  for (uint32_t i = 0; i < c->cap; i++)
    if (c->t[i]) idx_clear(c->t[i]->idx);
  rs->nbatch = rs->nlocal = 0;
  rs->ncont = rs->ncommits = rs->ndeps = 0;
  rs->records = 0;
  uint32_t nseg = seg_count(&rs->e->sm);
  for (uint32_t s = 0; s < nseg; s++) {
    ls_seg *d = seg_get(&rs->e->sm, s);
    atomic_store(&d->dead_floor, SEG_NOFLOOR);
    atomic_store(&d->min_seq, 0);
    atomic_store(&d->max_seq, 0);
    for (uint32_t b = 0; b < rs->e->seg_size / LS_BLOCK; b++) atomic_store(&d->blkmin[b], 0);
  }
  free(rs->problems);
  rs->problems = NULL;
  rs->problems_len = 0;
  /* The damage of segments is found again; that of files stays. */
  cat_damage_forget_segments(rs->e);
  for (uint32_t s = 0; s < nseg; s++) rs->sf[s] &= SF_LOST;
}

static int cmp_by_seq(const void *a, const void *b, void *arg) {
  ls_engine *e = arg;
  uint64_t x = seg_get(&e->sm, *(const uint32_t *)a)->seq, y = seg_get(&e->sm, *(const uint32_t *)b)->seq;
  return x < y ? -1 : x > y;
}

/* Mark the damage an earlier salvage accepted; returns the new ranges. */
static uint32_t mark_accepted(ls_engine *e, uint64_t *new_bytes, uint32_t *first_new) {
  uint32_t n = 0;
  *new_bytes = 0;
  *first_new = UINT32_MAX;
  pthread_mutex_lock(&e->problems_lock);
  for (uint32_t i = 0; i < e->ndamage; i++) {
    ls_damage *x = &e->damage[i];
    for (uint32_t j = 0; x->segment != SEG_NONE && j < e->man.ndamaged; j++) {
      const ls_mdamage *a = &e->man.damaged[j];
      if (a->segment == x->segment && a->seg_seq == x->seg_seq &&
          a->offset == x->offset - seg_base(&e->sm, x->segment) && a->length == x->length)
        x->accepted = 1;
    }
    if (!x->accepted) {
      n++;
      *new_bytes += x->length;
      if (*first_new == UINT32_MAX) *first_new = i;
    }
  }
  pthread_mutex_unlock(&e->problems_lock);
  return n;
}



/* Write what recovery found into the segments (writable modes), then sync
** each file touched once:
**   - every segment kept whose end was not known is sealed at the end found,
**     so a later open tells damage in it from a torn tail;
**   - every free segment without a free marker at offset 0 (an incarnation
**     freed here, or unreadable) gets one, so that a torn first write of its
**     next incarnation can not leave an old header over new bytes. */
static int finish_disk(ls_engine *e, rstate *rs, uint32_t nseg) {
  seg_syncset sync = { .n = 0 };
  int rc = LS_OK, serr = 0;
  uint8_t marker[LS_BUF_HDR];
  ls_free_marker(marker, 0, atomic_load(&e->next_seq) - 1);
  for (uint32_t s = 0; !rc && !serr && s < nseg; s++) {
    ls_seg *d = seg_get(&e->sm, s);
    if (rs->sf[s] & SF_LOST) continue;
    int fd = seg_fd(&e->sm, s);
    if (d->state == SEG_FREE) {
      if (rs->sf[s] & SF_MARKER) continue;
      int r = e->io->m->write(e->io, fd, marker, sizeof marker, seg_base(&e->sm, s));
      if (r) rc = ls_err_io(r, LS_CAUSE_WRITE, "recovery: write of a free marker into segment %u", s);
      else atomic_store(&d->stale_floor, SEG_NOFLOOR);   /* durable with the sync below */
    } else {
      if ((rs->sf[s] & SF_SEALED) || !(rs->sf[s] & SF_HEAD)) continue;
      if (d->used < LS_BUF_HDR || d->used % LS_REC_ALIGN) continue;
      rc = seg_seal_header(&e->sm, s, d->seq, d->used, &fd);
    }
    if (!rc && seg_sync_note(&sync, fd)) {
      serr = seg_sync_all(&e->sm, &sync, &e->syncs);
      seg_sync_note(&sync, fd);
    }
  }
  if (!rc && !serr) serr = seg_sync_all(&e->sm, &sync, &e->syncs);
  if (!rc && serr) rc = ls_err_io(serr, LS_CAUSE_SYNC, "recovery: fdatasync after sealing segments");
  return rc;
}

/* The open's verdict on the damage found (ls_options.on_damage). */
static int judge_damage(ls_engine *e, rstate *rs) {
  uint64_t new_bytes;
  uint32_t first;
  uint32_t nnew = mark_accepted(e, &new_bytes, &first);
  if (!nnew || e->on_damage != LS_ON_DAMAGE_ERROR) return LS_OK;
  char line[600];
  pthread_mutex_lock(&e->problems_lock);
  ls_damage x = e->damage[first];
  pthread_mutex_unlock(&e->problems_lock);
  cat_damage_line(e, &x, line, sizeof line);
  LS_UNUSED(rs);
  return ls_corrupt("data directory %s is damaged: %u damaged range%s (%llu bytes); the first: %s "
                    "tool/logstor check lists them all. To open it with what is readable, keeping this "
                    "report, open with on_damage=salvage (SQL: the URI parameter logstor_on_damage=salvage); or restore the directory from a backup",
                    e->path, nnew, nnew == 1 ? "" : "s", (unsigned long long)new_bytes, line);
}

int recover(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties) {
  uint64_t t0 = ls_now_ns();
  rstate rs;
  memset(&rs, 0, sizeof rs);
  rs.e = e;
  uint8_t *bufs = NULL;
  int writable = e->on_damage != LS_ON_DAMAGE_REPORT && !e->readonly;
  int rc = fs_find(e, &rs.fs);
  if (!rc) rc = seg_open_files(&e->sm, rs.fs.nsegs, rs.fs.missing);
  if (!rc) rc = fs_check(e, &rs.fs);
  rs.sf = rs.fs.sf;
  uint32_t nseg = rs.fs.nsegs;
  /* A checkpoint (checkpoint.h) stands for the scan when the files are all
  ** there and nothing asks to look for damage; a writable open consumes it
  ** either way. */
  int from_ckpt = 0;
  if (!rc && writable) {
    pthread_mutex_lock(&e->problems_lock);
    int files_ok = e->ndamage == 0;
    pthread_mutex_unlock(&e->problems_lock);
    int use = files_ok && e->on_damage == LS_ON_DAMAGE_ERROR && rs.fs.nsegs == ls_manifest_segments(&e->man);
    rc = use ? ckpt_load(e, nseg, mixed, empties, &from_ckpt) : ckpt_discard(e);
  }
  if (!rc && from_ckpt) {
    e->recovery_checkpoint = 1;
    e->recovery_records = 0;
    e->recovery_segments = nseg;
    goto out;
  }
  if (!rc) rc = set_tracking(e, 1);
  if (!rc && nseg) {
    bufs = ls_alloc_aligned((size_t)READ_BATCH * e->seg_size);
    if (!bufs) rc = ls_err(LS_NOMEM, "recovery: out of memory");
  }
  if (!rc) rc = scan_pass(&rs, nseg, bufs);
  if (!rc && rs.naborts) {
    /* Aborted transactions were applied like the others: start over with
    ** their ranges known. */
    qsort(rs.aborts, rs.naborts, sizeof(range), cmp_range);
    rs.aborts_known = 1;
    reset_pass(&rs);
    rc = scan_pass(&rs, nseg, bufs);
  }
  free(bufs);
  if (!rc) rc = set_tracking(e, 0);
  if (!rc) rc = judge_damage(e, &rs);
  if (!rc && writable && e->on_damage == LS_ON_DAMAGE_SALVAGE) rc = fs_repair(e, &rs.fs);
  if (!rc) {
    ls_catalog *c = atomic_load(&e->catalog);
    for (uint32_t i = 0; i < c->cap; i++)
      if (c->t[i]) {
        void *arg[2] = { e, c->t[i] };
        idx_foreach(c->t[i]->idx, cat_account_entry, arg);
      }
    /* A segment in use pins the segments with the COMMIT or ABORT records
    ** its records rely on; segments without live records and without pins
    ** are free. */
    for (uint64_t i = 0; !rc && i < rs.ndeps; i++) {
      uint32_t x = rs.deps[i][0], y = rs.deps[i][1];
      if (rs.deps[i][2]) {
        /* x holds records of an aborted transaction: it keeps the ABORT
        ** record readable until a free marker made x unreadable (the
        ** cleaner frees it, even if empty now). */
        seg_flags(&e->sm, x, SEGF_MARK, 0);
        rc = seg_add_dep(&e->sm, x, y);
        if (!rc && atomic_load(&seg_get(&e->sm, x)->live_records) == 0 && seg_ids_push(empties, x))
          rc = ls_err(LS_NOMEM, "recovery: out of memory");
      } else if (atomic_load(&seg_get(&e->sm, x)->live_records) > 0) {
        rc = seg_add_dep(&e->sm, x, y);
      }
    }
    for (uint32_t s = 0; !rc && s < nseg; s++) {
      ls_seg *d = seg_get(&e->sm, s);
      if (d->state != SEG_FREE && atomic_load(&d->live_records) == 0 && d->pins == 0 && !(d->flags & SEGF_MARK)) {
        /* Its records stay readable until the slot is written again. */
        atomic_store(&d->stale_floor, atomic_load(&d->dead_floor));
        atomic_store(&d->dead_floor, SEG_NOFLOOR);
        d->state = SEG_FREE;
        d->seq = 0;
        free(d->deps);
        d->deps = NULL;
        d->ndeps = d->capdeps = 0;
      }
      /* The cleaner reads around the damage it was told about. */
      if (rs.sf[s] & SF_DAMAGED) seg_flags(&e->sm, s, SEGF_DAMAGED, 0);
      if (d->state == SEG_FREE) {
        if (rs.sf[s] & SF_LOST) continue;     /* not on disk: never handed out */
        /* A hole punched earlier (all but its first block, which holds a
        ** free marker) is zeroed again before use. */
        off_t base = (off_t)seg_base(&e->sm, s) + LS_BLOCK;
        off_t data = lseek(seg_fd(&e->sm, s), base, SEEK_DATA);
        if ((data < 0 && errno == ENXIO) || (data >= 0 && data >= base + (off_t)e->seg_size - LS_BLOCK))
          seg_push_punched(&e->sm, s);
        else
          seg_push_free(&e->sm, s);
        continue;
      }
      if (atomic_load(&d->live_records) == 0) continue;   /* pinned, or to be marked */
      if (d->kind == LS_KIND_MIXED) {
        if (seg_ids_push(mixed, s)) rc = ls_err(LS_NOMEM, "recovery: out of memory");
        continue;
      }
      ls_table *t = cat_table(e, d->table);
      if (t && d->group < t->groups) seg_set_add(&e->sm, s, t->gsets[d->group]);
      else
        problem(&rs, "segment %u: group segment of table %u group %u, which does not exist, holds live records",
                s, d->table, d->group);
      if (d->ndeps && seg_ids_push(settle, s)) rc = ls_err(LS_NOMEM, "recovery: out of memory");
    }
    if (mixed->n) qsort_r(mixed->v, mixed->n, sizeof(uint32_t), cmp_by_seq, e);
    uint64_t next = rs.max_seq + 1;
    if (e->man.seq_floor + 1 > next) next = e->man.seq_floor + 1;
    for (uint32_t i = 0; i < e->man.ntables; i++)
      if (e->man.tables[i].trunc_seq > next) next = e->man.tables[i].trunc_seq;
    atomic_store(&e->next_seq, next);
    /* Segment sequences continue above every one ever handed out: the seen
    ** ones, and the leased floor (a torn first write can hide the header
    ** of an incarnation whose records are on disk). */
    e->sm.next_seq = rs.max_seg_seq + 1;
    if (e->man.seg_seq_floor + 1 > e->sm.next_seq) e->sm.next_seq = e->man.seg_seq_floor + 1;
    e->recovery_records = rs.records;
    e->recovery_segments = nseg;
    e->problems = rs.problems;
    rs.problems = NULL;
  }
  if (!rc && writable) rc = fs_record(e, &rs.fs, e->on_damage == LS_ON_DAMAGE_SALVAGE);
  if (!rc && writable) rc = finish_disk(e, &rs, nseg);
out:
  free(rs.deps);
  free(rs.aborts);
  free(rs.batch);
  free(rs.sorted);
  free(rs.count);
  free(rs.local);
  free(rs.cont);
  free(rs.commits);
  free(rs.preps);
  free(rs.problems);
  fs_free(&rs.fs);
  e->recovery_ms = (ls_now_ns() - t0) / 1000000;
  return rc;
}
