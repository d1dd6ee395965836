/*
** compact.c -- compaction: choosing the group segments whose rewrite frees
** the most space per byte copied (cleaner_score) and a compaction step,
** which copies their live records, in write-sequence order, into the
** group's relocation buffer (relocate.c).
*/
#include "cleaner_int.h"

#include <math.h>
#include <stdlib.h>

typedef struct cl_cand {
  uint32_t id;
  int64_t live, recs;
  double score;
} cl_cand;

/* Bytes of records a group segment can hold. */
static inline double seg_cap(ls_engine *e) { return (double)(e->seg_size - LS_BUF_HDR); }

/* Segments n candidates' live records need: by bytes, and by whole records
** of their average size (big rows do not fill a segment to the byte). */
static double needed(ls_engine *e, const cl_cand *cand, uint32_t n) {
  double bytes = 0, recs = 0, cap = seg_cap(e);
  for (uint32_t i = 0; i < n; i++) {
    bytes += (double)cand[i].live;
    recs += (double)cand[i].recs;
  }
  if (recs <= 0) return 0;
  double per = (double)(uint64_t)(cap / (bytes / recs));
  if (per < 1) per = 1;
  double by_recs = recs / per, by_bytes = bytes / cap;
  return by_recs > by_bytes ? by_recs : by_bytes;
}

/* cleaner_score: the score of a group segment under policy, higher first.
** u: its live fraction; u0: the fraction written into it; born: when that
** was (a write sequence); youngest: its youngest record's sequence; now:
** the next sequence.
**
** Greedy: -u.  LFS: benefit (1-u) times age (since the youngest record)
** over cost (1+u), reading the segment counted as a write.
**
** Cost-benefit (the default) asks how much waiting would still gain.  Rows
** of a segment die at some rate L, so u falls like u0 * exp(-L*T) over the
** time T since it was written, and L is estimated as ln(u0/u)/T.  A
** segment of fast-dying (hot) rows empties by itself if left alone; one
** of slow-dying (cold) rows never gets much emptier, so what it frees now
** is as good as it will be.  Score: freed per copied, (1-u)/u, times the
** square root of 1/L.  When every row dies at the same rate (uniform
** writes), L is alike for all segments and the order is greedy's; on
** skewed writes cold segments are taken at a higher u and hot ones at a
** lower.  The prior DECAY_PRIOR keeps a young segment with few deaths yet
** from looking frozen; the root (rather than 1/L itself) was the best of
** exponents 0.3..1 in `tool/bench clean`. */
#define DECAY_PRIOR 0.1
double cleaner_score(int policy, double u, double u0, uint64_t now, uint64_t born, uint64_t youngest) {
  if (policy == LS_POLICY_GREEDY) return -u;
  if (policy == LS_POLICY_LFS) return (1 - u) * (now > youngest ? (double)(now - youngest) : 1.0) / (1 + u);
  double t = now > born ? (double)(now - born) : 1.0;
  if (u0 < u) u0 = u;
  double decay = log((u0 + 1e-3) / (u + 1e-3)) + DECAY_PRIOR;
  return (1 - u) / (u + 1e-2) * sqrt(t / decay);
}

/* Choose the inputs of one compaction step from set gs: up to MAX_INPUTS
** segments whose live records fit in at least one segment fewer, best
** scores first (cleaner_score).  Returns the count (0: no step frees a
** segment) and the estimated gain. */
static uint32_t select_by(ls_cleaner *c, uint32_t gs, int policy, uint32_t *out, double *gain) {
  ls_engine *e = c->e;
  ls_segmgr *m = &e->sm;
  cl_cand cand[MAX_INPUTS] = { { 0, 0, 0, 0 } };   /* the best so far, best first */
  uint32_t nc = 0;
  double cap = seg_cap(e);
  uint64_t now = atomic_load(&e->next_seq);
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs && gs <= m->ngsets ? m->gsets[gs - 1] : NULL;
  /* Greedy walks the buckets from the emptiest and stops when it has
  ** enough; the others score the first MAX_INPUTS of every bucket (lists
  ** are in the order segments entered them).  Both are O(1) in the size of
  ** the set.  Nearly full segments are not worth a copy. */
  for (uint32_t b = 0; g && b < SEG_NBUCKETS - 2; b++) {
    if (policy == LS_POLICY_GREEDY && nc == MAX_INPUTS) break;
    uint32_t k = 0;
    for (uint32_t s = g->head[b]; s != SEG_NONE && (policy == LS_POLICY_GREEDY || k++ < MAX_INPUTS);
         s = seg_get(m, s)->hnext) {
      ls_seg *d = seg_get(m, s);
      int64_t live = atomic_load(&d->live_bytes);
      double u = (double)live / cap, u0 = (double)d->used / cap;
      if (u > 1) u = 1;
      if (u0 > 1) u0 = 1;
      uint64_t youngest = atomic_load(&d->max_seq), born = atomic_load(&d->born);
      double score = cleaner_score(policy, u, u0, now, born ? born : youngest, youngest);
      cl_cand x = { s, live, atomic_load(&d->live_records), score };
      if (nc == MAX_INPUTS && x.score <= cand[nc - 1].score) {
        if (policy == LS_POLICY_GREEDY) break;
        continue;
      }
      uint32_t i = nc < MAX_INPUTS ? nc++ : nc - 1;
      while (i > 0 && cand[i - 1].score < x.score) { cand[i] = cand[i - 1]; i--; }
      cand[i] = x;
    }
  }
  pthread_mutex_unlock(&m->hist_lock);
  uint32_t n = nc;
  /* The copies are written before any input is freed: they must fit in
  ** the free segments (the reserve included) with one to spare. */
  double avail = (double)seg_headroom(&e->sm);
  while (n > 1 && needed(e, cand, n) + 2 > avail) n--;
  *gain = (double)n - needed(e, cand, n);
  if (*gain < 1.0) return 0;
  for (uint32_t i = 0; i < n; i++) out[i] = cand[i].id;
  return n;
}

/* Cost-benefit falls back to greedy when its best candidates together
** would not free a segment (old, nearly full ones on a full disk). */
static uint32_t select_inputs(ls_cleaner *c, uint32_t gs, int policy, uint32_t *out, double *gain) {
  uint32_t n = select_by(c, gs, policy, out, gain);
  if (!n && policy != LS_POLICY_GREEDY) n = select_by(c, gs, LS_POLICY_GREEDY, out, gain);
  return n;
}

/* Segments of set gs whose tombstones can all be dropped now and make up a
** quarter of them (greedy never picks segments that look full). */
static uint32_t select_tombs(ls_cleaner *c, uint32_t gs, uint32_t *out) {
  ls_engine *e = c->e;
  ls_segmgr *m = &e->sm;
  uint64_t floor = cl_tomb_floor(c, SEG_NONE);
  uint32_t n = 0;
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs && gs <= m->ngsets ? m->gsets[gs - 1] : NULL;
  for (uint32_t b = 0; g && b < SEG_NBUCKETS && n < MAX_INPUTS; b++)
    for (uint32_t s = g->head[b]; s != SEG_NONE && n < MAX_INPUTS; s = seg_get(m, s)->hnext) {
      ls_seg *d = seg_get(m, s);
      int64_t tb = atomic_load(&d->tomb_bytes);
      if (tb > 0 && 4 * tb >= atomic_load(&d->live_bytes) && atomic_load(&d->max_seq) < floor) out[n++] = s;
    }
  pthread_mutex_unlock(&m->hist_lock);
  return n;
}

/* One compaction step on set gs.  *taken: inputs relocated (0: none worth
** it).  The live records of all inputs are written in sequence order --
** the age sort of LFS: records of about the same age (and so, likely, the
** same future) end up in the same segments, which cost-benefit then tells
** apart. */
int cl_compact_step(ls_cleaner *c, uint32_t gs, int policy, int tombs, uint32_t *taken) {
  ls_engine *e = c->e;
  uint32_t in[MAX_INPUTS];
  double gain = 0;
  uint32_t n = tombs ? select_tombs(c, gs, in) : select_inputs(c, gs, policy, in, &gain);
  *taken = 0;
  if (!n) return LS_OK;
  for (uint32_t i = 0; i < n; i++) seg_set_take(&e->sm, in[i]);
  cat_hook(e, "compact:selected");
  c->staging = 1;
  c->stage_len = c->nstaged = 0;
  int rc = LS_OK;
  for (uint32_t i = 0; i < n && !rc; i++) {
    rc = cl_relocate(c, in[i], 0);
    if (rc == LS_CORRUPT) { cat_problem(e, "%s", ls_errmsg()); rc = LS_OK; }
  }
  c->staging = 0;
  if (!rc && c->nstaged) qsort(c->staged, c->nstaged, sizeof *c->staged, cl_item_by_seq);
  for (uint32_t i = 0; !rc && i < c->nstaged; i++) rc = cl_push_rec(c, &c->staged[i], c->stage + c->staged[i].off, 0);
  c->nstaged = c->stage_len = 0;
  c->resume_seg = SEG_NONE;
  if (rc) {
    /* All go back; whatever was copied already is harmless (C1). */
    for (uint32_t j = 0; j < n; j++) seg_set_add(&e->sm, in[j], gs);
    return rc;
  }
  atomic_fetch_add(&e->segments_compacted, n);
  *taken = n;
  return LS_OK;
}

/* The set with the best step under policy (0 if none frees a segment). */
uint32_t  cl_pick_set(ls_cleaner *c, int policy) {
  ls_segmgr *m = &c->e->sm;
  uint32_t best = 0;
  double best_gain = 0;
  pthread_mutex_lock(&m->hist_lock);
  uint32_t n = m->ngsets;
  pthread_mutex_unlock(&m->hist_lock);
  for (uint32_t gs = 1; gs <= n; gs++) {
    uint32_t in[MAX_INPUTS];
    double gain = 0;
    if (select_inputs(c, gs, policy, in, &gain) && gain > best_gain) {
      best_gain = gain;
      best = gs;
    }
  }
  return best;
}

/* Write the buffer of set gs's group, if any. */
int cl_flush_set(ls_cleaner *c, uint32_t gs) {
  ls_segmgr *m = &c->e->sm;
  pthread_mutex_lock(&m->hist_lock);
  ls_gset *g = gs && gs <= m->ngsets ? m->gsets[gs - 1] : NULL;
  uint32_t table = g ? g->table : 0, group = g ? g->group : 0;
  pthread_mutex_unlock(&m->hist_lock);
  if (!g) return LS_OK;
  for (cl_buf *b = c->hash[cl_hslot(table, group)]; b; b = b->next)
    if (b->table == table && b->group == group) return cl_buf_flush(c, b);
  return LS_OK;
}

