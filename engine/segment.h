/*
** segment.h -- the segment manager: data files, segment descriptors, the
** free list and per-segment accounting.
**
** Data files are named data-NNNNNN.ls (N counted from 0), each file_size
** bytes, created strictly in order and zero-filled before use so that
** commits sync into blocks that were written once before (an fdatasync into
** fresh or unwritten extents also has to commit file-system metadata and
** costs about twice as much).  Segment id s lives in file s / segs_per_file
** at byte (s % segs_per_file) * segment_size.
**
** Segment states:
**
**     FREE --seg_alloc--> ACTIVE --seg_seal--> SEALED --seg_free_many--> FREE
**
** A descriptor's seq is the incarnation sequence stamped into every buffer
** written while the segment is ACTIVE; it is unique over the life of the
** directory and every record's CRC is seeded with it.  Uniqueness can not
** rest on seeing the sequences on disk (a torn first write may leave an
** incarnation's records without its header), so sequences are leased: one
** is handed out only below a floor already durable in the manifest
** (the lease callback raises it, LEASE_STEP at a time).  live_bytes and
** live_records count the records that index entries point at; they are
** changed only together with the index (seg_account).  A segment is freed
** only when no index entry points into it and no reader can still be
** reading it (the caller has done ls_guard_wait).
*/
#ifndef LS_SEGMENT_H
#define LS_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "io.h"
#include "loc.h"

enum { SEG_FREE = 0, SEG_ACTIVE = 1, SEG_SEALED = 2 };

typedef struct ls_seg {
  uint64_t seq;                    /* incarnation sequence; 0 when free */
  _Atomic int64_t live_bytes;      /* bytes of records the index points at */
  _Atomic int64_t live_records;    /* records the index points at */
  uint32_t seed;                   /* CRC seed of its records (from seq) */
  uint8_t state;                   /* SEG_FREE / SEG_ACTIVE / SEG_SEALED */
  uint8_t kind;                    /* LS_KIND_MIXED / LS_KIND_GROUP */
  uint32_t table, group;           /* owner of a group segment */
  uint32_t pins;                   /* segments whose records need a COMMIT
                                   ** record in this one (lock) */
  uint32_t holds;                  /* prepared transactions with records
                                   ** here, not yet installed (lock) */
  uint32_t ndeps, capdeps;         /* segments holding the COMMIT records */
  uint32_t *deps;                  /* this one's CONT records need (lock) */
} ls_seg;

typedef struct ls_segmgr {
  ls_io *io;
  int dirfd;
  uint32_t seg_size;
  uint32_t segs_per_file;
  uint64_t file_size;
  uint32_t max_files;              /* from disk_size and the id space */
  _Atomic uint32_t nfiles;         /* files usable */
  int *fds;                        /* [max_files] */
  ls_seg **files;                  /* [max_files] descriptor arrays */

  pthread_mutex_t lock;            /* free list, states, formatting */
  pthread_cond_t cond;             /* a segment freed / a file formatted */
  uint32_t *freeq;                 /* FIFO of free segment ids */
  uint32_t fq_head, fq_len, fq_cap;
  uint64_t next_seq;               /* next incarnation sequence */
  uint64_t lease_end;              /* sequences below it are durably leased */
  int (*lease)(void *arg, uint64_t end);   /* make `end` the durable floor */
  void *lease_arg;
  int formatting;                  /* a file is being formatted */
  _Atomic uint64_t format_bytes;   /* bytes written to format files */
} ls_segmgr;

int seg_init(ls_segmgr *m, ls_io *io, int dirfd, uint32_t seg_size, uint64_t file_size,
             uint64_t disk_size);
void seg_shutdown(ls_segmgr *m);

static inline ls_seg *seg_get(ls_segmgr *m, uint32_t id) {
  return &m->files[id / m->segs_per_file][id % m->segs_per_file];
}
static inline int seg_fd(ls_segmgr *m, uint32_t id) { return m->fds[id / m->segs_per_file]; }
static inline uint64_t seg_base(ls_segmgr *m, uint32_t id) {
  return (uint64_t)(id % m->segs_per_file) * m->seg_size;
}
static inline uint32_t seg_count(ls_segmgr *m) { return atomic_load(&m->nfiles) * m->segs_per_file; }

/* Name of data file n ("data-000012.ls"), into buf of at least 32 bytes. */
void seg_file_name(uint32_t n, char *buf);

/* Open the existing data files 0..n-1 (recovery).  Their descriptors start
** FREE; recovery sets them.  LS_OK, LS_CORRUPT (a file has the wrong size)
** or an I/O error. */
int seg_open_files(ls_segmgr *m, uint32_t n);

/* Create, zero-fill and add the next data file; its segments join the free
** list.  Blocks while another thread formats.  LS_OK, LS_FULL when
** disk_size allows no more files, or an I/O error. */
int seg_add_file(ls_segmgr *m);

/* Take a free segment and make it ACTIVE with a new incarnation sequence.
** With grow, a new file is formatted when none is free.  LS_OK, LS_FULL. */
int seg_alloc(ls_segmgr *m, int kind, uint32_t table, uint32_t group, int grow, uint32_t *id);

void seg_seal(ls_segmgr *m, uint32_t id);

/* Return segments to the free list.  The caller guarantees that no index
** entry points into them, that they are not pinned, and that readers have
** drained.  Segments whose last pin this releases are stored in released
** (up to cap); returns how many. */
int seg_free_many(ls_segmgr *m, const uint32_t *ids, int n, uint32_t *released, int cap);

/* Segment x holds CONT records committed by a COMMIT record in segment y:
** pin y while x is in use.  LS_OK or LS_NOMEM. */
int seg_add_dep(ls_segmgr *m, uint32_t x, uint32_t y);

/* A prepared transaction has records in s that are durable but not yet in
** the index: keep s (delta +1), or let it go (-1). */
void seg_hold(ls_segmgr *m, uint32_t s, int delta);

/* May segment s be freed: sealed, no live record, not pinned, not held?  (Reads
** without the lock: a hint the caller rechecks.) */
int seg_is_empty(ls_segmgr *m, uint32_t s);

/* Put a recovered segment into the free list (recovery only). */
void seg_push_free(ls_segmgr *m, uint32_t id);

uint32_t seg_nfree(ls_segmgr *m);

/* Add (sign > 0) or remove (sign < 0) the record at word from its
** segment's live counts. */
static inline void seg_account(ls_segmgr *m, uint64_t word, int sign) {
  ls_seg *s = seg_get(m, loc_seg(word));
  atomic_fetch_add_explicit(&s->live_bytes, sign * (int64_t)loc_size(word), memory_order_relaxed);
  atomic_fetch_add_explicit(&s->live_records, sign, memory_order_relaxed);
}

#endif
