/*
** cleaner_int.h -- what the files of the cleaner module share; no other
** module includes it (they use cleaner.h).
**
**   cleaner.c   hand-offs, the background thread and its controller, the
**               entry points (cleaner.h) and the rules C1-C4;
**   relocate.c  relocation buffers: copying live records into a group's
**               buffer, writing it as a group segment, moving the index
**               entries (C1), the tombstone floor (C3);
**   separate.c  the separator: mixed segments into their groups, adoption;
**   compact.c   compaction: choosing segments (scores), a compaction step;
**   reclaim.c   freeing empty segments, free markers, settling directly
**               written segments (C2).
**
** Everything here runs under c->lock, one step at a time.
*/
#ifndef LS_CLEANER_INT_H
#define LS_CLEANER_INT_H

#include "cleaner.h"
#include "read.h"

#define MAX_INPUTS 16         /* segments one compaction step takes */
#define SEP_BATCH 16          /* mixed segments separated per background round */
#define NHASH 64              /* relocation buffer hash chains */
#define DELAY_CAP_US 50000    /* most flow-control delay per commit */
#define SETTLE_BATCH 16       /* direct segments settled together (one sync per file) */

/* A record copied into a relocation buffer. */
typedef struct cl_rec {
  uint64_t hi, lo;
  uint64_t old;                    /* index word of the source */
  uint64_t src_seq;                /* incarnation of the source segment */
  uint64_t seq;                    /* the record's write sequence */
  uint32_t off, size;              /* in the buffer */
} cl_rec;

typedef struct cl_buf {
  uint32_t table, group, gset;
  uint8_t *mem;                    /* segment image: header, then records */
  uint32_t len;
  cl_rec *recs;
  uint32_t nrec, caprec;
  uint64_t min_put;                /* smallest sequence of a put in it */
  uint64_t oldest;                 /* oldest separator ordinal of a source */
  uint64_t sep_bytes, comp_bytes;  /* record bytes by kind of source */
  struct cl_buf *next;
} cl_buf;

/* A record of the segment being relocated. */
typedef struct cl_item {
  uint64_t hi, lo, word, seq;
  uint64_t src_seq;                /* incarnation of its segment (staged) */
  uint32_t table, off, size, group, gset;
  uint8_t tomb, live;
} cl_item;

struct ls_cleaner {
  ls_engine *e;
  pthread_t thread;
  int started;
  pthread_mutex_t lock;            /* one step at a time */

  pthread_mutex_t qlock;           /* hand-off queues, wake-up */
  pthread_cond_t qcond;
  int kicked, stop;
  seg_fifo mixed;                  /* sealed mixed segments, oldest first */
  seg_fifo settle;                 /* directly written group segments */
  seg_ids empty;                   /* segments that may be empty */
  _Atomic uint32_t backlog;        /* mixed segments waiting */

  /* Under lock. */
  seg_ids cand;                    /* free candidates being processed */
  seg_ids ids;                     /* scratch */
  seg_fifo deferred;               /* mixed segments held by a prepared txn */
  cl_buf *hash[NHASH];
  cl_buf *spare;
  uint32_t nbufs, maxbufs;
  _Atomic uint32_t inuse;          /* buffers holding records */
  uint64_t ordinal;                /* mixed segments separated so far */
  uint32_t resume_seg;             /* a relocation stopped part-way: in this */
  uint64_t resume_seq;             /* incarnation, the records before */
  uint32_t resume_at;              /* item resume_at are in buffers already */
  uint8_t *img;                    /* a segment read back */
  uint8_t *sorted;                 /* a buffer's records in sequence order */
  cl_item *items;
  uint32_t nitems, capitems;
  int staging;                     /* compaction: collect live records first */
  uint8_t *stage;                  /* their bytes (MAX_INPUTS segments) */
  uint32_t stage_len;
  cl_item *staged;
  uint32_t nstaged, capstaged;
  double ema;                      /* segments written per segment freed */
};


static inline uint32_t cl_hslot(uint32_t table, uint32_t group) { return (table * 31u + group) % NHASH; }

/* ---- cleaner.c ---------------------------------------------------------- */

/* Is space short enough to compact?  *urgent: very short. */
int cl_want_compaction(ls_cleaner *c, int *urgent);

/* ---- relocate.c --------------------------------------------------------- */

/* Write b as a new group segment and move its records' index entries (C1).
** LS_OK (b is retired), LS_FULL (no segment: b is kept), or an I/O error
** (the engine is failed). */
int cl_buf_flush(ls_cleaner *c, cl_buf *b);
/* Write every buffer (of table, or all when 0); keeps going past LS_FULL
** and returns the first error. */
int cl_flush_all(ls_cleaner *c, uint32_t table);
/* Write the buffers holding records of mixed segments separated long ago. */
int cl_flush_aged(ls_cleaner *c);
/* Write the buffer of set gs's group, if any. */
int cl_flush_set(ls_cleaner *c, uint32_t gs);
/* The smallest tombstone floor of every segment but exclude and of the
** copies waiting to be written (C3). */
uint64_t cl_tomb_floor(ls_cleaner *c, uint32_t exclude);
/* Damage in segment s (incarnation sseq of kind), bytes [start, end),
** found by the cleaner: listed, and the segment flagged SEGF_DAMAGED. */
void cl_note_damage(ls_cleaner *c, uint32_t s, uint64_t sseq, uint32_t kind, uint32_t start, uint32_t end,
                    const char *why);
/* Read segment s back into c->img: its used bytes, incarnation and kind. */
int cl_read_back(ls_cleaner *c, uint32_t s, uint32_t *used, uint64_t *seq, uint32_t *kind);
/* Copy the live records of segment s (CLEANING, read back into c->img)
** into the relocation buffers (or aside, when c->staging); drop the
** tombstones C3 allows.  ordinal > 0 for a mixed segment, 0 for
** compaction.  cl_relocate reads s back first. */
int cl_relocate_img(ls_cleaner *c, uint32_t s, uint32_t used, uint64_t sseq, uint32_t kind, uint64_t ordinal);
int cl_relocate(ls_cleaner *c, uint32_t s, uint64_t ordinal);
/* Append a record (bytes at p) to its group's buffer, writing the buffer
** first if it is full. */
int cl_push_rec(ls_cleaner *c, const cl_item *it, const uint8_t *p, uint64_t ordinal);
/* qsort order of items by write sequence. */
int cl_item_by_seq(const void *a, const void *b);

/* ---- separate.c --------------------------------------------------------- */

/* Separate up to max ready mixed segments (*done: how many).  LS_FULL: no
** segment for a buffer now (the segment went back to the queue). */
int cl_separate(ls_cleaner *c, uint32_t max, uint32_t *done);

/* ---- compact.c ---------------------------------------------------------- */

/* One compaction step on set gs (tombs: take the segments whose
** tombstones can go).  *taken: inputs relocated (0: none worth it). */
int cl_compact_step(ls_cleaner *c, uint32_t gs, int policy, int tombs, uint32_t *taken);
/* The set with the best step under policy (0 if none frees a segment). */
uint32_t cl_pick_set(ls_cleaner *c, int policy);

/* ---- reclaim.c ---------------------------------------------------------- */

/* Free every noted segment that is empty (C2).  Returns how many. */
uint64_t cl_reclaim(ls_cleaner *c);
/* Settle the queued directly written segments (one sync per file). */
int cl_settle_all(ls_cleaner *c);

#endif
