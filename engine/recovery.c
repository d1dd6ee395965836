/*
** recovery.c -- rebuild the indexes and the segment states by scanning the
** data files at open.
**
** For every segment (read in batches, several requests at once):
**   1. The buffer at offset 0 fixes the segment: if its header is not valid
**      the segment is free (never written, or its first write was torn).
**      A FREE marker also means free.  Otherwise its sequence and kind hold
**      for the whole segment.
**   2. Buffers follow at 4 KiB boundaries.  A buffer is accepted only if its
**      header is valid (magic, version, CRC) with the segment's sequence and
**      kind; the first buffer that is not ends the segment (unwritten zeros,
**      a torn write, or stale data of an older incarnation of the slot).
**   3. Records are walked within the buffer's data_size; each must decode
**      with the segment's CRC seed.  The first bad record ends the segment
**      (a torn tail).
**   4. Records of one-buffer transactions are applied when the transaction's
**      END record is reached; those still pending when the buffer ends are
**      discarded.  CONT records are kept aside and applied after the scan if
**      a COMMIT record covering their sequence was found anywhere.
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
** Damage that a crash can not produce -- a valid buffer of the segment's
** own incarnation after a bad one -- is reported as a problem (ls_check
** shows it); the records after the damage are not used.
*/
#include "recovery.h"

#include <dirent.h>
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

typedef struct rstate {
  ls_engine *e;
  pend *batch;                     /* committed records not yet applied */
  pend *sorted;                    /* scratch for sorting the batch */
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
  uint32_t (*deps)[3];             /* segment -> segment holding its COMMIT or
                                   ** ABORT record, 1 for an ABORT */
  uint64_t ndeps, capdeps;
  uint64_t max_seq;                /* highest write sequence seen */
  uint64_t max_seg_seq;            /* highest segment sequence seen */
  uint64_t records;
  char *problems;
  size_t problems_len;
} rstate;

static int grow(void **p, uint64_t *cap, uint64_t need, size_t elem) {
  if (need <= *cap) return LS_OK;
  uint64_t n = *cap ? *cap * 2 : 256;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * elem);
  if (!q) return ls_err(LS_NOMEM, "recovery: out of memory");
  *p = q;
  *cap = n;
  return LS_OK;
}

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
  if (!rs->sorted) {
    rs->sorted = malloc(BATCH * sizeof(pend));
    if (!rs->sorted) return ls_err(LS_NOMEM, "recovery: out of memory");
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
      int rc = grow((void **)&rs->batch, &rs->capbatch, rs->nbatch + 1, sizeof(pend));
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
  int rc = grow((void **)&rs->deps, &rs->capdeps, rs->ndeps + 1, sizeof *rs->deps);
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

/* Walk the buffers of one segment image (see the rules at the top). */
static int scan_segment(rstate *rs, uint32_t id, const uint8_t *img) {
  ls_engine *e = rs->e;
  ls_seg *d = seg_get(&e->sm, id);
  uint32_t size = e->seg_size;
  ls_bufhdr h;
  if (!ls_bufhdr_decode(img, &h)) return LS_OK;      /* free */
  if (h.seg_seq > rs->max_seg_seq) rs->max_seg_seq = h.seg_seq;
  if (h.max_seq > rs->max_seq) rs->max_seq = h.max_seq;
  if (h.kind == LS_KIND_FREE) return LS_OK;
  d->seq = h.seg_seq;
  d->seed = ls_rec_seed(h.seg_seq);
  d->kind = (uint8_t)h.kind;
  d->table = h.table;
  d->group = h.group;
  d->state = SEG_SEALED;
  uint64_t seq = h.seg_seq;
  uint32_t kind = h.kind;
  uint32_t off = 0, damage = 0;
  const char *why = NULL;
  d->used = 0;
  for (;;) {
    if (off > size - LS_BUF_HDR) break;
    if (!ls_bufhdr_decode(img + off, &h) || h.seg_seq != seq) { damage = off; why = "buffer header"; break; }
    if (h.kind != kind) { damage = off; why = "buffer kind"; break; }
    if (h.data_size > size - off - LS_BUF_HDR) { damage = off; why = "buffer length"; break; }
    if (h.max_seq > rs->max_seq) rs->max_seq = h.max_seq;
    const uint8_t *p = img + off + LS_BUF_HDR;
    uint32_t left = h.data_size, nrec = 0;
    int torn = 0, settled = (h.flags & LS_BF_SETTLED) != 0;
    rs->nlocal = 0;
    while (left) {
      ls_rec r;
      if (!ls_rec_decode(p, left, d->seed, &r)) { torn = 1; break; }
      nrec++;
      rs->records++;
      if (r.seq > rs->max_seq) rs->max_seq = r.seq;
      uint32_t roff = (uint32_t)(p - img);
      seg_note_rec(d, roff, r.seq);
      d->used = roff + r.size;
      if (rs->aborts_known) {
        const range *a = find_range(rs->aborts, rs->naborts, r.seq, 1);
        if (a) {                   /* a record of an aborted transaction */
          int rc = add_dep(rs, id, a->seg, 1);
          if (rc) return rc;
          p += r.size;
          left -= r.size;
          continue;
        }
      }
      if (r.type == LS_REC_ABORT) {
        if (!rs->aborts_known) {
          int rc = grow((void **)&rs->aborts, &rs->capaborts, rs->naborts + 1, sizeof(range));
          if (rc) return rc;
          rs->aborts[rs->naborts].first = ls_get64(r.val);
          rs->aborts[rs->naborts].last = ls_get64(r.val + 8);
          rs->aborts[rs->naborts].seg = id;
          rs->naborts++;
        }
      } else if (r.type == LS_REC_COMMIT) {
        int rc = grow((void **)&rs->commits, &rs->capcommits, rs->ncommits + 1, sizeof(range));
        if (rc) return rc;
        rs->commits[rs->ncommits].first = ls_get64(r.val);
        rs->commits[rs->ncommits].last = r.seq;
        rs->commits[rs->ncommits].seg = id;
        rs->ncommits++;
      } else {
        uint8_t dg[20];
        ls_digest(r.key, r.key_len, dg);
        idx_key k;
        idx_key_from_digest(&k, dg);
        pend pd = { k.hi, k.lo, loc_make(id, roff, r.size, r.type == LS_REC_DELETE), r.seq, r.table };
        if ((r.flags & LS_RF_CONT) && settled) {
          int rc = apply(rs, &pd);         /* committed, and settled as such */
          if (rc) return rc;
        } else if (r.flags & LS_RF_CONT) {
          int rc = grow((void **)&rs->cont, &rs->capcont, rs->ncont + 1, sizeof(pend));
          if (rc) return rc;
          rs->cont[rs->ncont++] = pd;
        } else {
          uint64_t cap = rs->caplocal;
          int rc = grow((void **)&rs->local, &cap, rs->nlocal + 1, sizeof(pend));
          if (rc) return rc;
          rs->caplocal = (uint32_t)cap;
          rs->local[rs->nlocal++] = pd;
        }
      }
      if (r.flags & LS_RF_END) {
        for (uint32_t i = 0; i < rs->nlocal; i++) {
          int rc = apply(rs, &rs->local[i]);
          if (rc) return rc;
        }
        rs->nlocal = 0;
      }
      p += r.size;
      left -= r.size;
    }
    rs->nlocal = 0;                /* a transaction without END is discarded */
    if (torn || nrec != h.nrecords) {
      /* The tail of the last write; anything after it is not ours. */
      damage = (uint32_t)(p - img);
      why = torn ? "record" : "record count";
      break;
    }
    off += (uint32_t)ls_align_up(LS_BUF_HDR + h.data_size, LS_BLOCK);
    d->used = off;
    if (off >= size) break;
  }
  if (why) {
    /* A crash only damages the last write.  A valid buffer of this
    ** incarnation further on means real damage. */
    for (uint32_t o = (uint32_t)ls_align_up(damage + 1, LS_BLOCK); o + LS_BUF_HDR <= size; o += LS_BLOCK) {
      ls_bufhdr h2;
      if (ls_bufhdr_decode(img + o, &h2) && h2.seg_seq == seq) {
        problem(rs, "segment %u: damaged %s at offset %u, valid data follows at offset %u "
                    "(records after the damage were not recovered)", id, why, damage, o);
        break;
      }
    }
  }
  return LS_OK;
}

static int cmp_range(const void *a, const void *b) {
  const range *x = a, *y = b;
  return x->first < y->first ? -1 : x->first > y->first;
}

/* List the data files: returns how many (data-000000.ls .. n-1), deleting
** leftover .tmp files of an interrupted format. */
static int list_files(ls_engine *e, uint32_t *nfiles) {
  int fd = openat(e->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ls_err_io(-errno, LS_CAUSE_OTHER, "open data directory %s", e->path);
  DIR *d = fdopendir(fd);
  if (!d) { close(fd); return ls_err_io(-errno, LS_CAUSE_READ, "read data directory %s", e->path); }
  uint32_t count = 0, maxn = 0;
  int any = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    unsigned n;
    char tail[8];
    if (sscanf(de->d_name, "data-%6u.%7s", &n, tail) == 2 && strlen(de->d_name) >= 13) {
      if (!strcmp(tail, "tmp")) {
        e->io->m->unlink(e->io, e->dirfd, de->d_name);
      } else if (!strcmp(tail, "ls")) {
        count++;
        if (!any || n > maxn) maxn = n;
        any = 1;
      }
    }
  }
  closedir(d);
  if (any && maxn + 1 != count)
    return ls_corrupt("data directory %s: data files are missing (found %u, highest is data-%06u.ls)",
                      e->path, count, maxn);
  *nfiles = count;
  return LS_OK;
}

static int check_sizes(ls_engine *e, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    struct stat st;
    if (fstat(e->sm.fds[i], &st)) return ls_err_io(-errno, LS_CAUSE_OTHER, "stat data file %u", i);
    if ((uint64_t)st.st_size != e->file_size)
      return ls_corrupt("data file data-%06u.ls has %lld bytes, expected file_size %llu", i,
                        (long long)st.st_size, (unsigned long long)e->file_size);
  }
  return LS_OK;
}

static int set_tracking(ls_engine *e, int on) {
  ls_catalog *c = atomic_load(&e->catalog);
  for (uint32_t i = 0; i < c->cap; i++)
    if (c->t[i]) {
      int rc = idx_track_seq(c->t[i]->idx, on);
      if (rc) return ls_err(rc, "recovery: out of memory");
    }
  return LS_OK;
}

static int account_entry(void *arg, const idx_entry *en, uint64_t seq) {
  ls_engine *e = ((void **)arg)[0];
  ls_table *t = ((void **)arg)[1];
  LS_UNUSED(seq);
  seg_account(&e->sm, en->word, +1);
  atomic_fetch_add(&t->live_bytes, loc_size(en->word));
  if (!loc_tomb(en->word)) atomic_fetch_add(&t->rows, 1);
  return 0;
}

/* One pass over every segment: scan, resolve streamed transactions, and
** apply everything committed to the indexes. */
static int scan_pass(rstate *rs, uint32_t nseg, uint8_t *bufs) {
  ls_engine *e = rs->e;
  int rc = LS_OK;
  for (uint32_t s = 0; !rc && s < nseg; s += READ_BATCH) {
    ls_io_req req[READ_BATCH];
    int n = 0;
    for (uint32_t i = s; i < nseg && n < READ_BATCH; i++, n++) {
      req[n].op = LS_IOOP_READ;
      req[n].fd = seg_fd(&e->sm, i);
      req[n].buf = bufs + (size_t)n * e->seg_size;
      req[n].len = e->seg_size;
      req[n].off = seg_base(&e->sm, i);
    }
    int r = e->io->m->submit(e->io, req, n);
    for (int i = 0; !r && i < n; i++)
      if (req[i].res != (ssize_t)e->seg_size) r = -EIO;
    if (r) return ls_err_io(r, LS_CAUSE_READ, "recovery: read of segments %u..%u", s, s + n - 1);
    for (int i = 0; !rc && i < n; i++) rc = scan_segment(rs, s + (uint32_t)i, req[i].buf);
  }
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
}

static int cmp_by_seq(const void *a, const void *b, void *arg) {
  ls_engine *e = arg;
  uint64_t x = seg_get(&e->sm, *(const uint32_t *)a)->seq, y = seg_get(&e->sm, *(const uint32_t *)b)->seq;
  return x < y ? -1 : x > y;
}

int recover(ls_engine *e, seg_ids *mixed, seg_ids *settle, seg_ids *empties) {
  uint64_t t0 = ls_now_ns();
  rstate rs;
  memset(&rs, 0, sizeof rs);
  rs.e = e;
  uint32_t nfiles = 0;
  uint8_t *bufs = NULL;
  int rc = list_files(e, &nfiles);
  if (!rc) rc = seg_open_files(&e->sm, nfiles);
  if (!rc) rc = check_sizes(e, nfiles);
  if (!rc) rc = set_tracking(e, 1);
  uint32_t nseg = nfiles * e->sm.segs_per_file;
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
  if (!rc) {
    ls_catalog *c = atomic_load(&e->catalog);
    for (uint32_t i = 0; i < c->cap; i++)
      if (c->t[i]) {
        void *arg[2] = { e, c->t[i] };
        idx_foreach(c->t[i]->idx, account_entry, arg);
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
      if (d->state == SEG_FREE) {
        /* A hole punched earlier is zeroed again before use. */
        off_t base = (off_t)seg_base(&e->sm, s);
        off_t data = lseek(seg_fd(&e->sm, s), base, SEEK_DATA);
        if ((data < 0 && errno == ENXIO) || (data >= 0 && data >= base + (off_t)e->seg_size))
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
  free(rs.deps);
  free(rs.aborts);
  free(rs.batch);
  free(rs.sorted);
  free(rs.count);
  free(rs.local);
  free(rs.cont);
  free(rs.commits);
  free(rs.problems);
  e->recovery_ms = (ls_now_ns() - t0) / 1000000;
  return rc;
}
