/*
** segment.h -- the segment manager: data files, segment descriptors, the
** free list, the reserve, per-segment accounting and the compaction-group
** histograms.
**
** Layer: format, io, index, guard -> segment -> catalog (engine/README.md).
** Calls: io, format; the manifest only through the lease callback.
**
** Data files are named data-NNNNNN.ls (N counted from 0), created strictly
** in order and zero-filled before use so that commits sync into blocks that
** were written once before (an fdatasync into fresh or unwritten extents
** also has to commit file-system metadata and costs about twice as much).
** Segment id s lives in file s / segs_per_file at byte
** (s % segs_per_file) * segment_size.
**
** Growth.  The segments that exist are 0 .. nsegs-1: every file but the
** last holds file_size bytes, the last one as many segments as have been
** formatted so far.  Space comes a step at a time (seg_grow): the last
** file is lengthened, or the next file created, by a step that is a
** quarter of the segments in existence (at least 2, at most a quarter
** file), so a small store costs a few segments of disk and a large one
** still formats ahead of its writes in large pieces.  The manifest counts
** a step (and the reserve below is sized from nsegs) before any segment of
** it is used.
**
** Segment states:
**
**     FREE --seg_alloc--> ACTIVE --seg_seal--> SEALED --(cleaner)--> CLEANING
**       ^                                         |                      |
**       +------------- seg_free_many -------------+----------------------+
**
** ACTIVE: being written (the writer's mixed segment, a segment the writer
** fills directly for one group of a large transaction, or a cleaner
** output).  SEALED: complete; a group segment then sits in its group's
** histogram, a mixed one waits for the separator.  CLEANING: the cleaner
** copied its live records into relocation buffers; it empties when those
** are written and the index entries move, and is freed then.
**
** A descriptor's seq is the incarnation sequence stamped into every buffer
** written while the segment is ACTIVE; it is unique over the life of the
** directory and every record's CRC is seeded with it.  Uniqueness can not
** rest on seeing the sequences on disk (a torn first write may leave an
** incarnation's records without its header), so sequences are leased: one
** is handed out only below a floor already durable in the manifest
** (the lease callback raises it, LEASE_STEP at a time).
**
** Accounting.  live_bytes and live_records count the records that index
** entries point at (tombstones included; live_tombs / tomb_bytes count
** those separately); they change only together with the index
** (seg_account).  A segment is freed only when no index entry points into
** it, it is not pinned or held, and no reader can still be reading it (the
** caller has done ls_guard_wait).
**
** Tombstone floors (the bounds the rule of FORMAT.md, "Tombstones", is
** checked with; cleaner.c C3).  Older versions of a key are dead puts.
** dead_floor is a lower bound of the write
** sequence of every dead put in the segment's current incarnation
** (UINT64_MAX: none): at run time a death lowers it to the smallest
** sequence of a record starting in the dead record's 4 KiB block (its own
** sequence is not known without a read; the cleaner writes records in
** sequence order, so a block rarely mixes old and new ones); recovery sets
** it exactly.  When a segment
** is freed its old records stay readable on disk until the next
** incarnation's first write is durable (or a free marker is), so the floor
** moves to stale_floor and is cleared only then.  The cleaner drops a
** tombstone of sequence s only if every other segment's floors are above s.
**
** Reserve.  Some free segments are kept for the cleaner, so that it can
** always write the copies that free space: user writes get LS_FULL while
** no more than reserve_clean + reserve_delete segments are free (after
** trying to grow), transactions of deletes only while no more than
** reserve_clean are, the cleaner only when none is.  On a bounded disk the
** reserve is fixed by disk_size; on an unbounded one (where only a full
** file system makes growing fail) it grows with the store, from 2 + 1
** segments to 8 + 4 at 128 segments.
**
** Histograms.  Sealed group segments are kept in their group set's
** histogram: NBUCKETS lists by live bytes, so the emptiest are found in
** O(1).  Lists are linked through the descriptors (hprev/hnext); a
** segment moves when its live bytes cross a bucket boundary (seg_account
** notices).  hist_lock guards the sets.
*/
#ifndef LS_SEGMENT_H
#define LS_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "io.h"
#include "loc.h"

enum { SEG_FREE = 0, SEG_ACTIVE = 1, SEG_SEALED = 2, SEG_CLEANING = 3 };

/* Allocation purposes (how deep into the reserve an allocation may go). */
enum { SEG_FOR_USER = 0, SEG_FOR_DELETE = 1, SEG_FOR_CLEANER = 2 };

/* Descriptor flags (under the manager lock). */
#define SEGF_MARK     0x01   /* a tombstone was dropped from it: write a free
                             ** marker before the slot is reused */
#define SEGF_INFLIGHT 0x02   /* sealed by the writer in a group not yet
                             ** installed: never free it */
#define SEGF_DAMAGED  0x04   /* damaged ranges are known in it (recovery, or
                             ** the cleaner found them): walks pass over them */
#define SEGF_ADOPTED  0x08   /* a mixed segment that joined a group as it
                             ** is (cleaner.c); its bytes still say mixed */

#define SEG_NBUCKETS 64
#define SEG_NONE UINT32_MAX
#define SEG_NOFLOOR UINT64_MAX

typedef struct ls_seg {
  _Atomic uint64_t seq;            /* incarnation sequence; 0 when free */
  _Atomic int64_t live_bytes;      /* bytes of records the index points at */
  _Atomic int64_t live_records;    /* records the index points at */
  _Atomic int64_t live_tombs;      /* of those, tombstones */
  _Atomic int64_t tomb_bytes;
  _Atomic uint64_t dead_floor;     /* see "Tombstone floors" */
  _Atomic uint64_t stale_floor;
  _Atomic uint64_t min_seq;        /* smallest / largest record sequence */
  _Atomic uint64_t max_seq;        /* of this incarnation (0: none yet) */
  _Atomic uint64_t born;           /* write sequence when the cleaner wrote
                                   ** it (0: not known; max_seq stands in) */
  _Atomic uint64_t *blkmin;        /* smallest sequence of a record starting
                                   ** in each 4 KiB block (0: none) */
  _Atomic uint32_t gset;           /* 1 + index of its group set, 0 if in none */
  uint32_t seed;                   /* CRC seed of its records (from seq) */
  uint32_t used;                   /* bytes written: end of the last buffer */
  uint32_t hprev, hnext;           /* histogram list (hist_lock) */
  uint8_t hbucket;                 /* bucket it is listed in (hist_lock) */
  uint8_t state;                   /* SEG_FREE .. SEG_CLEANING */
  uint8_t kind;                    /* LS_KIND_MIXED / LS_KIND_GROUP */
  uint8_t flags;                   /* SEGF_* */
  uint32_t table, group;           /* owner of a group (or adopted) segment */
  uint32_t pins;                   /* segments whose records need a COMMIT
                                   ** record in this one (lock) */
  uint32_t holds;                  /* prepared transactions with records
                                   ** here, not yet installed (lock) */
  uint32_t retains;                /* old versions snapshots may still read
                                   ** here (snapshot.h; lock) */
  uint32_t ndeps, capdeps;         /* segments holding the COMMIT records */
  uint32_t *deps;                  /* this one's CONT records need (lock) */
} ls_seg;

/* A compaction group's set of sealed segments. */
typedef struct ls_gset {
  uint32_t table, group;
  uint32_t head[SEG_NBUCKETS];     /* oldest first in each bucket */
  uint32_t tail[SEG_NBUCKETS];
  uint32_t count;                  /* segments in the set */
  uint8_t alive;                   /* its table exists */
} ls_gset;

/* A growable list of segment ids. */
typedef struct seg_ids {
  uint32_t *v;
  uint32_t n, cap;
} seg_ids;

/* Append id (unless already last).  LS_OK or LS_NOMEM. */
int seg_ids_push(seg_ids *s, uint32_t id);

/* A FIFO of segments, each with the incarnation it had when queued (0
** where that does not matter): the free list here, the cleaner's queues. */
typedef struct seg_ref {
  uint32_t id;
  uint64_t seq;
} seg_ref;

typedef struct seg_fifo {
  seg_ref *v;                      /* ring of cap entries */
  uint32_t head, len, cap;
} seg_fifo;

/* Append x at the tail / put it back at the head.  LS_OK or LS_NOMEM. */
int seg_fifo_push(seg_fifo *q, seg_ref x);
int seg_fifo_push_front(seg_fifo *q, seg_ref x);
/* Take the head into *x: 1, or 0 when empty. */
int seg_fifo_pop(seg_fifo *q, seg_ref *x);

/* The data files written since their last sync, each to be synced once
** (a commit group, a batch of free markers or settled headers). */
#define SEG_SYNCSET_MAX 16
typedef struct seg_syncset {
  int fd[SEG_SYNCSET_MAX];
  int n;
} seg_syncset;

typedef struct ls_segmgr {
  ls_io *io;
  int dirfd;
  uint32_t seg_size;
  uint32_t segs_per_file;
  uint64_t file_size;
  uint32_t max_files;              /* from disk_size and the id space */
  uint64_t disk_size;              /* 0: unbounded */
  int readonly;                    /* files opened read-only (a read-only
                                   ** engine: nothing is written) */
  _Atomic uint32_t nfiles;         /* files usable */
  _Atomic uint32_t nsegs;          /* segments that exist (see "Growth") */
  int *fds;                        /* [max_files] */
  ls_seg **files;                  /* [max_files] descriptor arrays */
  uint32_t reserve_clean;          /* free segments only the cleaner takes */
  uint32_t reserve_delete;         /* and those deletes may take too */

  pthread_mutex_t lock;            /* free list, states, formatting */
  pthread_cond_t cond;             /* a segment freed / a file formatted */
  seg_fifo free;                   /* free segments (zeroed, not holes) */
  seg_ids punched;                 /* free segments whose space went back to
                                   ** the file system (holes) */
  int no_punch;                    /* the file system can not punch holes */
  uint64_t next_seq;               /* next incarnation sequence */
  uint64_t lease_end;              /* sequences below it are durably leased */
  int (*lease)(void *arg, uint64_t end);   /* make `end` the durable floor */
  int (*grown)(void *arg, uint32_t nsegs);   /* the manifest counts nsegs segments */
  void *lease_arg;                 /* argument of both */
  int formatting;                  /* a step is being formatted */
  _Atomic int grow_failed;         /* the last step found the file system
                                   ** full (the cleaner then compacts
                                   ** whatever the space target says) */
  _Atomic uint64_t format_bytes;   /* bytes written to format files */

  pthread_mutex_t ahead_lock;      /* preparing segments ahead of need */
  pthread_cond_t ahead_cond;       /* (seg_ahead_*) */
  int ahead_kick, ahead_stop;
  int ahead_running, ahead_held;   /* preparing now; held still (tests) */

  pthread_mutex_t sync_lock;       /* one data-file sync at a time */
  int sync_err;                    /* a sync of a data file failed (-errno):
                                   ** every later one fails too */
  seg_syncset pending;             /* files the writer wrote and left
                                   ** unsynced (synchronous normal / off;
                                   ** sync_lock) */

  pthread_mutex_t hist_lock;       /* group sets and their lists */
  ls_gset **gsets;
  uint32_t ngsets, capgsets;
  uint32_t hist_div;               /* live bytes per histogram bucket */
} ls_segmgr;

int seg_init(ls_segmgr *m, ls_io *io, int dirfd, uint32_t seg_size, uint64_t file_size,
             uint64_t disk_size);
void seg_shutdown(ls_segmgr *m);

static inline ls_seg *seg_get(ls_segmgr *m, uint32_t id) {
  return &m->files[id / m->segs_per_file][id % m->segs_per_file];
}
/* Incarnation of segment id now (0: free), and of the segment of a
** location word (0 for no word).  Readers call these inside the guard. */
static inline uint64_t seg_seq_of(ls_segmgr *m, uint32_t id) { return atomic_load(&seg_get(m, id)->seq); }
static inline uint64_t seg_seq_of_word(ls_segmgr *m, uint64_t word) {
  return word ? seg_seq_of(m, loc_seg(word)) : 0;
}
static inline int seg_fd(ls_segmgr *m, uint32_t id) { return m->fds[id / m->segs_per_file]; }
static inline uint64_t seg_base(ls_segmgr *m, uint32_t id) {
  return (uint64_t)(id % m->segs_per_file) * m->seg_size;
}
static inline uint32_t seg_count(ls_segmgr *m) { return atomic_load(&m->nsegs); }
/* Data files and the segments of the last one for nsegs segments. */
static inline uint32_t seg_files_for(const ls_segmgr *m, uint32_t nsegs) {
  return (nsegs + m->segs_per_file - 1) / m->segs_per_file;
}
static inline uint32_t seg_tail_for(const ls_segmgr *m, uint32_t nsegs) {
  return nsegs ? nsegs - (seg_files_for(m, nsegs) - 1) * m->segs_per_file : 0;
}

/* fdatasync (full: fsync) a data file.  Every thread syncs data files
** through here: Linux reports a writeback error once per open file, so a
** failure one thread saw must fail every later sync (fsyncgate), or
** another thread would acknowledge writes that never reached the disk.
** 0 or -errno. */
int seg_sync(ls_segmgr *m, int fd, int full);

/* Note that fd was written: LS_OK, or 1 when s is full (sync it with
** seg_sync_all first, then note again). */
int seg_sync_note(seg_syncset *s, int fd);
/* fdatasync each file of s once (seg_sync), counting each in *syncs; s is
** emptied.  0 or the -errno of the first failure (the rest not synced). */
int seg_sync_all(ls_segmgr *m, seg_syncset *s, _Atomic uint64_t *syncs);

/* The log's writes left unsynced (synchronous normal / off, writer.c
** N1-N3): seg_pending_add moves the files of s into the pending set
** (syncing the set first if it is full); seg_pending_sync syncs every
** pending file (from any thread: the cleaner before it frees a segment).
** 0 or -errno as seg_sync_all. */
int seg_pending_add(ls_segmgr *m, seg_syncset *s, _Atomic uint64_t *syncs);
int seg_pending_sync(ls_segmgr *m, _Atomic uint64_t *syncs);

/* Name of data file n ("data-000012.ls"), into buf of at least 32 bytes. */
void seg_file_name(uint32_t n, char *buf);

/* Open the existing data files holding segments 0..nsegs-1 (recovery).
** Their descriptors start FREE; recovery sets them.  With missing
** non-NULL, a file that does not exist sets missing[i] and keeps
** descriptor -1 (recovery reports it).  LS_OK or an I/O error. */
int seg_open_files(ls_segmgr *m, uint32_t nsegs, uint8_t *missing);

/* Seal segment s (incarnation seq): rewrite its first header in place
** with SEALED and seg_end = end.  Only for data durable up to end (FORMAT.md,
** "Sealing").  *fd receives the file written (the caller syncs it, or not:
** a seal not yet durable only leaves the segment unsealed).  LS_OK,
** LS_CORRUPT (the header is not that incarnation's) or an I/O error. */
int seg_seal_header(ls_segmgr *m, uint32_t s, uint64_t seq, uint32_t end, int *fd);

/* Write zeros with a free marker at every segment start over [from, to) of
** data file fd.  0 or -errno. */
int seg_format_range(ls_segmgr *m, int fd, uint64_t from, uint64_t to);

/* Salvage: make missing data file n again (formatted, empty, as long as
** its segments among nsegs) and open it; its descriptors exist already.
** LS_OK or an I/O error. */
int seg_recreate_file(ls_segmgr *m, uint32_t n);

/* Bytes data file f holds when nsegs segments exist. */
uint64_t seg_file_len(const ls_segmgr *m, uint32_t f, uint32_t nsegs);

/* Grow by one step (see "Growth"): format more of the last data file, or
** create the next one, and add the new segments to the free list.  Waits
** while another thread grows, and then grows only if fewer than below
** segments are free (holes included): two threads that both saw too few
** free segments grow once, not twice.  LS_OK, LS_FULL when disk_size
** allows no more or the file system is full, or an I/O error. */
int seg_grow(ls_segmgr *m, uint32_t below);

/* Segments ahead of need, for a background thread: seg_ahead_wait blocks
** until seg_ahead_kick (returns 1) or seg_ahead_stop (returns 0);
** seg_prepare_ahead then zeroes holes and grows while fewer free segments
** than the user reserve and a step are left.  Its failures are
** left for the allocation that needs the space to meet and report. */
void seg_ahead_kick(ls_segmgr *m);
void seg_ahead_stop(ls_segmgr *m);
int seg_ahead_wait(ls_segmgr *m);
/* Tests: hold the background thread still (hold 1: returns once it is
** idle; its kicks wait) or let it go again (0), so that the I/O of a test's
** workload is all its own -- an injected fault can not land in a
** formatting step the background thread happened to take. */
void seg_ahead_hold(ls_segmgr *m, int hold);
void seg_prepare_ahead(ls_segmgr *m);

/* Take a free segment for purpose (SEG_FOR_*) and make it ACTIVE with a
** new incarnation sequence, growing the files when allowed.  LS_OK or
** LS_FULL (the reserve for purpose is reached: the caller may ask the
** cleaner for room and try again). */
int seg_alloc(ls_segmgr *m, int kind, uint32_t table, uint32_t group, int purpose, uint32_t *id);

/* Could seg_alloc(purpose) succeed now without growing or zeroing a hole?
** (A hint.) */
int seg_can_alloc(ls_segmgr *m, int purpose);

void seg_seal(ls_segmgr *m, uint32_t id);

/* Return segments to the free list.  The caller guarantees that no index
** entry points into them, that they are not pinned, and that readers have
** drained.  Each leaves its group set; its dead_floor moves to stale_floor
** (unless SEGF_MARK: the caller wrote a durable free marker).  Segments
** whose last pin this releases are added to released.  Returns LS_OK. */
int seg_free_many(ls_segmgr *m, const uint32_t *ids, int n, seg_ids *released);

/* Segment x holds CONT records committed by a COMMIT record in segment y:
** pin y while x is in use.  LS_OK or LS_NOMEM. */
int seg_add_dep(ls_segmgr *m, uint32_t x, uint32_t y);

/* x no longer needs the COMMIT records it depended on (its buffer was
** settled).  Segments whose last pin this releases are added to released. */
void seg_drop_deps(ls_segmgr *m, uint32_t x, seg_ids *released);

/* A prepared transaction has records in s that are durable but not yet in
** the index: keep s (delta +1), or let it go (-1). */
void seg_hold(ls_segmgr *m, uint32_t s, int delta);

/* A snapshot may still read an old (dead) record in s: keep s (delta +1),
** or let it go (-1).  Unlike a hold, a retain does not keep the separator
** from taking s: it only keeps s from being freed. */
void seg_retain(ls_segmgr *m, uint32_t s, int delta);

/* May segment s be freed: sealed or cleaning, no live record, not pinned,
** held, retained or in flight?  (Under the lock; callers recheck after waiting.) */
int seg_is_empty(ls_segmgr *m, uint32_t s);

/* Set or clear flag bits of s (under the lock). */
void seg_flags(ls_segmgr *m, uint32_t s, uint8_t set, uint8_t clear);

/* Are damaged ranges known in s (SEGF_DAMAGED)? */
int seg_damaged(ls_segmgr *m, uint32_t s);

/* Put a recovered segment into the free list (recovery only). */
void seg_push_free(ls_segmgr *m, uint32_t id);

/* Free segments, holes included. */
uint32_t seg_nfree(ls_segmgr *m);
/* Free segments, and those the data files not made yet would add. */
uint64_t seg_headroom(ls_segmgr *m);
/* Of those, holes. */
uint32_t seg_npunched(ls_segmgr *m);

/* Holes.  When a quarter of the segments are free, the free ones beyond
** what allocation keeps at hand go back to the file system
** (FALLOC_FL_PUNCH_HOLE, then fsync): the data files' disk usage follows
** the live data.  The first block of each keeps a free marker, written
** and synced before the rest is punched.  A failed write or sync of a
** marker counts as a failed sync (seg_sync_failed).  A hole is written with zeros again before it is used
** (commits keep syncing into blocks written before).  Returns how many
** were punched; stops at the first error (reported by ls_errmsg). */
uint32_t seg_punch_excess(ls_segmgr *m);
/* Did a sync of a data file fail (every later one fails too; the caller
** fails the engine)? */
int seg_sync_failed(ls_segmgr *m);
/* Zero one hole and return it to the free list.  LS_OK, LS_FULL (none, or
** the file system is full) or an I/O error; never fatal to the engine. */
int seg_unpunch(ls_segmgr *m);
/* Recovery: s (free) is a hole in its file. */
void seg_push_punched(ls_segmgr *m, uint32_t s);

/* ---- group sets (histograms) ------------------------------------------- */

/* A new set for (table, group): returns its handle (index + 1), 0 for
** LS_NOMEM. */
uint32_t seg_gset_new(ls_segmgr *m, uint32_t table, uint32_t group);
/* The table of gs is gone; the set is recycled once empty. */
void seg_gset_release(ls_segmgr *m, uint32_t gs);

/* Seal s (a group segment) into set gs at the bucket of its live bytes. */
void seg_set_add(ls_segmgr *m, uint32_t s, uint32_t gs);
/* Take s out of its set (if in one) and mark it CLEANING. */
void seg_set_take(ls_segmgr *m, uint32_t s);
/* Bucket of a live byte count. */
static inline uint32_t seg_bucket(const ls_segmgr *m, int64_t live) {
  if (live <= 0) return 0;
  uint64_t b = (uint64_t)live / m->hist_div;
  return b >= SEG_NBUCKETS ? SEG_NBUCKETS - 1 : (uint32_t)b;
}
void seg_hist_update(ls_segmgr *m, uint32_t s);

/* A record of sequence seq was written at offset off of d (keeps min_seq,
** max_seq and the block minimums).  One writer per segment at a time. */
static inline void seg_note_rec(ls_seg *d, uint32_t off, uint64_t seq) {
  uint64_t lo = atomic_load_explicit(&d->min_seq, memory_order_relaxed);
  if (lo == 0 || seq < lo) atomic_store_explicit(&d->min_seq, seq, memory_order_relaxed);
  if (seq > atomic_load_explicit(&d->max_seq, memory_order_relaxed))
    atomic_store_explicit(&d->max_seq, seq, memory_order_relaxed);
  _Atomic uint64_t *b = &d->blkmin[off >> 12];
  uint64_t bm = atomic_load_explicit(b, memory_order_relaxed);
  if (bm == 0 || seq < bm) atomic_store_explicit(b, seq, memory_order_relaxed);
}

/* Lower dead_floor of d to at most f. */
static inline void seg_lower_floor(_Atomic uint64_t *floor, uint64_t f) {
  uint64_t cur = atomic_load(floor);
  while (f < cur && !atomic_compare_exchange_weak(floor, &cur, f)) {}
}

/* Add (sign > 0) or remove (sign < 0) the record at word from its
** segment's live counts.  A put that dies lowers the segment's dead_floor;
** a segment in a histogram moves when its bucket changes. */
static inline void seg_account(ls_segmgr *m, uint64_t word, int sign) {
  uint32_t id = loc_seg(word);
  ls_seg *s = seg_get(m, id);
  int64_t sz = (int64_t)loc_size(word);
  int64_t before = atomic_fetch_add(&s->live_bytes, sign * sz);
  atomic_fetch_add_explicit(&s->live_records, sign, memory_order_relaxed);
  if (loc_tomb(word)) {
    atomic_fetch_add_explicit(&s->live_tombs, sign, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->tomb_bytes, sign * sz, memory_order_relaxed);
  } else if (sign < 0) {
    uint64_t lo = atomic_load_explicit(&s->blkmin[loc_off(word) >> 12], memory_order_relaxed);
    if (!lo) lo = atomic_load_explicit(&s->min_seq, memory_order_relaxed);
    seg_lower_floor(&s->dead_floor, lo ? lo : 1);
  }
  if (seg_bucket(m, before) != seg_bucket(m, before + sign * sz) && atomic_load(&s->gset))
    seg_hist_update(m, id);
}

#endif
