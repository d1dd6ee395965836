/*
** test_segment.c -- the segment manager alone (segment.h): data files,
** allocation and the reserve, state changes, freeing, the FIFO of
** segments, syncing each file once, and making segments ahead of need.
*/
#include "unit.h"
#include "segment.h"
#include "format.h"
#include "ls_int.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG 8192u
#define FILESZ (8u * SEG)                 /* 8 segments per file */

typedef struct mgr { ls_segmgr m; ls_io *io; int dirfd; } mgr;

static void mgr_open(mgr *g, uint64_t disk) {
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &g->io), LS_OK);
  g->dirfd = open(unit_tmpdir(), O_RDONLY | O_DIRECTORY);
  CHECK(g->dirfd >= 0);
  CHECK_RC(seg_init(&g->m, g->io, g->dirfd, SEG, FILESZ, disk), LS_OK);
}

static void mgr_close(mgr *g) {
  seg_shutdown(&g->m);
  ls_io_destroy(g->io);
  close(g->dirfd);
}

/* Two threads that both found too few free segments grow once, not twice:
** the one that waited for the other's step checks again.  (The background
** thread used to format a second file ahead of need this way, and its
** writes took the fault test_writer injected for the writer.) */
typedef struct adder { ls_segmgr *m; int rc; } adder;

static void *grow_below_2(void *p) {
  adder *a = p;
  a->rc = seg_grow(a->m, 2);
  ls_thread_cleanup();
  return NULL;
}

static uint64_t file_len(mgr *g, uint32_t f) {
  struct stat st;
  CHECK(fstat(g->m.fds[f], &st) == 0);
  return (uint64_t)st.st_size;
}

static void test_grow_once(void) {
  mgr g;
  mgr_open(&g, 0);
  /* Another thread is growing: the grower waits for it. */
  pthread_mutex_lock(&g.m.lock);
  g.m.formatting = 1;
  pthread_mutex_unlock(&g.m.lock);
  adder a = { &g.m, -100 };
  pthread_t th;
  pthread_create(&th, NULL, grow_below_2, &a);
  usleep(20000);                          /* let it wait (either order is correct) */
  pthread_mutex_lock(&g.m.lock);
  g.m.formatting = 0;                     /* "the other thread" now grows for real */
  pthread_mutex_unlock(&g.m.lock);
  CHECK_RC(seg_grow(&g.m, 1), LS_OK);
  pthread_join(th, NULL);
  CHECK_RC(a.rc, LS_OK);
  CHECK_INT(atomic_load(&g.m.nfiles), 1);
  CHECK_INT(seg_count(&g.m), 2);          /* one step of 2, not two */
  CHECK_INT(seg_nfree(&g.m), 2);
  CHECK_U64(file_len(&g, 0), 2 * SEG);
  mgr_close(&g);
}

/* A small store is a few segments; steps grow with it, fill the last
** file before the next one starts, and the ahead thread keeps the user
** reserve (and, for a larger store, an eighth more) formatted. */
static void test_growth_steps(void) {
  mgr g;
  mgr_open(&g, 0);
  seg_prepare_ahead(&g.m);
  CHECK_INT(g.m.reserve_clean, 2);
  CHECK_INT(g.m.reserve_delete, 1);
  CHECK_INT(seg_count(&g.m), 3);          /* the user reserve: 2 + 1 */
  CHECK_U64(file_len(&g, 0), 3 * SEG);
  uint32_t s, prev = seg_count(&g.m);
  for (int i = 0; i < 40; i++) {
    CHECK_RC(seg_alloc(&g.m, LS_KIND_MIXED, 0, 0, SEG_FOR_USER, &s), LS_OK);
    seg_prepare_ahead(&g.m);
    uint32_t n = seg_count(&g.m), nf = atomic_load(&g.m.nfiles);
    CHECK(n - prev <= 3);                 /* steps: at most a quarter file (2), or the reserve's need */
    CHECK_INT(nf, (n + 7) / 8);
    for (uint32_t f = 0; f + 1 < nf; f++) CHECK_U64(file_len(&g, f), FILESZ);
    CHECK_U64(file_len(&g, nf - 1), (uint64_t)(n - (nf - 1) * 8) * SEG);
    CHECK(seg_nfree(&g.m) >= g.m.reserve_clean + g.m.reserve_delete);
    prev = n;
  }
  CHECK(seg_count(&g.m) >= 41);
  CHECK(seg_count(&g.m) <= 41 + 3 + 2 + 41 / 8);
  mgr_close(&g);
}

/* FREE -> ACTIVE -> SEALED -> CLEANING -> FREE, sequences unique, the
** reserve kept for the cleaner. */
static void test_states_and_reserve(void) {
  mgr g;
  mgr_open(&g, 2 * FILESZ);                 /* bounded: 16 segments */
  int steps = 0;
  while (seg_grow(&g.m, UINT32_MAX) == LS_OK) steps++;
  CHECK_INT(steps, 2);                      /* a file each: the reserve (4 + 2) asks for more than a step */
  CHECK_INT(seg_count(&g.m), 16);
  CHECK_RC(seg_grow(&g.m, UINT32_MAX), LS_FULL);
  uint32_t keep = g.m.reserve_clean + g.m.reserve_delete, s, prev = 0;
  uint64_t last_seq = 0;
  uint32_t n = 0;
  while (seg_can_alloc(&g.m, SEG_FOR_USER)) {
    CHECK_RC(seg_alloc(&g.m, LS_KIND_MIXED, 0, 0, SEG_FOR_USER, &s), LS_OK);
    ls_seg *d = seg_get(&g.m, s);
    CHECK_INT(d->state, SEG_ACTIVE);
    CHECK(d->seq > last_seq);
    last_seq = d->seq;
    prev = s;
    n++;
  }
  CHECK_INT(n, 16 - keep);
  CHECK_RC(seg_alloc(&g.m, LS_KIND_MIXED, 0, 0, SEG_FOR_USER, &s), LS_FULL);
  CHECK_RC(seg_alloc(&g.m, LS_KIND_MIXED, 0, 0, SEG_FOR_DELETE, &s), LS_OK);   /* deletes go deeper */
  seg_seal(&g.m, prev);
  CHECK_INT(seg_get(&g.m, prev)->state, SEG_SEALED);
  CHECK(seg_is_empty(&g.m, prev));
  seg_hold(&g.m, prev, +1);
  CHECK(!seg_is_empty(&g.m, prev));         /* held by a prepared transaction */
  seg_hold(&g.m, prev, -1);
  uint32_t gs = seg_gset_new(&g.m, 1, 0);
  CHECK(gs != 0);
  seg_set_add(&g.m, prev, gs);
  seg_set_take(&g.m, prev);
  CHECK_INT(seg_get(&g.m, prev)->state, SEG_CLEANING);
  uint32_t before = seg_nfree(&g.m);
  seg_ids rel = {0};
  CHECK_RC(seg_free_many(&g.m, &prev, 1, &rel), LS_OK);
  CHECK_INT(seg_get(&g.m, prev)->state, SEG_FREE);
  CHECK_U64(seg_get(&g.m, prev)->seq, 0);
  CHECK_INT(seg_nfree(&g.m), before + 1);
  CHECK_INT(rel.n, 0);
  free(rel.v);
  mgr_close(&g);
}

/* A dependency pins its target until the dependent is settled or freed. */
static void test_pins(void) {
  mgr g;
  mgr_open(&g, 0);
  uint32_t x, y;
  CHECK_RC(seg_alloc(&g.m, LS_KIND_GROUP, 1, 0, SEG_FOR_USER, &x), LS_OK);
  CHECK_RC(seg_alloc(&g.m, LS_KIND_MIXED, 0, 0, SEG_FOR_USER, &y), LS_OK);
  CHECK_RC(seg_add_dep(&g.m, x, y), LS_OK);
  CHECK_RC(seg_add_dep(&g.m, x, y), LS_OK);  /* once */
  seg_seal(&g.m, x);
  seg_seal(&g.m, y);
  CHECK_INT(seg_get(&g.m, y)->pins, 1);
  CHECK(!seg_is_empty(&g.m, y));
  seg_ids rel = {0};
  seg_drop_deps(&g.m, x, &rel);
  CHECK_INT(rel.n, 1);
  CHECK_INT(rel.v[0], y);
  CHECK(seg_is_empty(&g.m, y));
  free(rel.v);
  mgr_close(&g);
}

static void test_fifo(void) {
  seg_fifo q = {0};
  seg_ref x;
  CHECK_INT(seg_fifo_pop(&q, &x), 0);
  for (uint32_t i = 0; i < 200; i++) CHECK_RC(seg_fifo_push(&q, (seg_ref){ i, i + 1000 }), LS_OK);
  for (uint32_t i = 0; i < 50; i++) {
    CHECK_INT(seg_fifo_pop(&q, &x), 1);
    CHECK_INT(x.id, i);
    CHECK_U64(x.seq, i + 1000);
  }
  CHECK_RC(seg_fifo_push_front(&q, (seg_ref){ 7, 7 }), LS_OK);
  for (uint32_t i = 200; i < 300; i++) CHECK_RC(seg_fifo_push(&q, (seg_ref){ i, 0 }), LS_OK);   /* wraps, grows */
  CHECK_INT(seg_fifo_pop(&q, &x), 1);
  CHECK_INT(x.id, 7);
  for (uint32_t i = 50; i < 300; i++) {
    CHECK_INT(seg_fifo_pop(&q, &x), 1);
    CHECK_INT(x.id, i);
  }
  CHECK_INT(q.len, 0);
  free(q.v);
}

static void test_syncset(void) {
  mgr g;
  mgr_open(&g, 0);
  CHECK_RC(seg_grow(&g.m, 1), LS_OK);
  seg_syncset s = { .n = 0 };
  int fd = seg_fd(&g.m, 0);
  CHECK_RC(seg_sync_note(&s, fd), LS_OK);
  CHECK_RC(seg_sync_note(&s, fd), LS_OK);    /* each file once */
  CHECK_INT(s.n, 1);
  for (int i = 1; i < SEG_SYNCSET_MAX; i++) CHECK_RC(seg_sync_note(&s, 1000 + i), LS_OK);
  CHECK_INT(seg_sync_note(&s, 2000), 1);      /* full: sync first */
  s.n = 1;                                   /* only the real file */
  _Atomic uint64_t syncs = 0;
  CHECK_INT(seg_sync_all(&g.m, &s, &syncs), 0);
  CHECK_U64(atomic_load(&syncs), 1);
  CHECK_INT(s.n, 0);
  mgr_close(&g);
}

int main(void) {
  RUN(test_grow_once);
  RUN(test_growth_steps);
  RUN(test_states_and_reserve);
  RUN(test_pins);
  RUN(test_fifo);
  RUN(test_syncset);
  return unit_finish();
}
