/*
** test_catalog.c -- the catalog alone (catalog.h): creating, renaming,
** dropping and truncating tables through the manifest, installing records
** with their accounting, and the failure state -- with a segment manager
** and a manifest but no writer, cleaner or recovery.
*/
#include "unit.h"
#include "catalog.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEG 8192u

static ls_engine *cat_engine(void) {
  ls_engine *e = calloc(1, sizeof *e);
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &e->io), LS_OK);
  e->dirfd = open(unit_tmpdir(), O_RDONLY | O_DIRECTORY);
  e->seg_size = SEG;
  e->file_size = 8 * SEG;
  ls_guard_init(&e->guard);
  pthread_mutex_init(&e->cat_lock, NULL);
  pthread_mutex_init(&e->problems_lock, NULL);
  e->man.version = LS_FORMAT_VERSION;
  e->man.segment_size = SEG;
  e->man.file_size = 8 * SEG;
  e->man.next_table = 1;
  CHECK_RC(ls_manifest_write(e->io, e->dirfd, &e->man), LS_OK);
  CHECK_RC(seg_init(&e->sm, e->io, e->dirfd, SEG, 8 * SEG, 0), LS_OK);
  e->sm.lease = cat_lease;
  e->sm.lease_arg = e;
  CHECK_RC(cat_load(e), LS_OK);
  return e;
}

static void cat_engine_free(ls_engine *e) {
  cat_free(e);
  seg_shutdown(&e->sm);
  ls_manifest_free(&e->man);
  ls_io_destroy(e->io);
  close(e->dirfd);
  ls_guard_destroy(&e->guard);
  pthread_mutex_destroy(&e->cat_lock);
  pthread_mutex_destroy(&e->problems_lock);
  free(e->problems);
  free(e);
}

static void test_create_rename_manifest(void) {
  ls_engine *e = cat_engine();
  uint32_t a, b;
  CHECK_RC(ls_table_create(e, "a", 1, &a), LS_OK);
  CHECK_RC(ls_table_create(e, "b", 4, &b), LS_OK);
  CHECK_INT(a, 1);
  CHECK_INT(b, 2);
  CHECK_RC(ls_table_create(e, "c", 0, &b), LS_INVALID);
  CHECK_INT(ls_table_exists(e, 2), 1);
  CHECK_INT(ls_table_exists(e, 3), 0);
  CHECK_RC(ls_table_rename(e, a, "renamed"), LS_OK);
  CHECK_RC(ls_table_rename(e, 9, "x"), LS_NOTABLE);
  ls_manifest m;
  CHECK_RC(ls_manifest_read(e->io, e->dirfd, &m), LS_OK);
  CHECK_INT(m.ntables, 2);
  CHECK_INT(m.next_table, 3);
  CHECK(!strcmp(ls_manifest_table(&m, 1)->name, "renamed"));
  CHECK_INT(ls_manifest_table(&m, 2)->groups, 4);
  ls_manifest_free(&m);
  cat_engine_free(e);
}

/* ls_table_create_id: a given id at or after the next free one (the ids
** between are skipped for ever), never one below it. */
static void test_create_with_id(void) {
  ls_engine *e = cat_engine();
  uint32_t a;
  CHECK_RC(ls_table_create_id(e, "five", 2, 5), LS_OK);
  CHECK_INT(ls_table_exists(e, 5), 1);
  CHECK_INT(ls_table_exists(e, 1), 0);
  CHECK_RC(ls_table_create_id(e, "again", 1, 5), LS_INVALID);
  CHECK_RC(ls_table_create_id(e, "below", 1, 3), LS_INVALID);
  CHECK_RC(ls_table_create_id(e, "zero", 1, 0), LS_INVALID);
  CHECK_RC(ls_table_create(e, "next", 1, &a), LS_OK);
  CHECK_INT(a, 6);
  CHECK_RC(ls_table_create_id(e, "nine", 1, 9), LS_OK);
  ls_table_info info;
  CHECK_RC(ls_table_info_get(e, 5, &info), LS_OK);
  CHECK_INT(info.groups, 2);
  CHECK(!strcmp(info.name, "five"));
  ls_manifest m;
  CHECK_RC(ls_manifest_read(e->io, e->dirfd, &m), LS_OK);
  CHECK_INT(m.ntables, 3);
  CHECK_INT(m.next_table, 10);
  ls_manifest_free(&m);
  cat_engine_free(e);
}

static void count_dead(void *arg, uint64_t word) {
  LS_UNUSED(word);
  (*(int *)arg)++;
}

static void test_install_and_drop(void) {
  ls_engine *e = cat_engine();
  uint32_t id, s;
  CHECK_RC(ls_table_create(e, "t", 1, &id), LS_OK);
  CHECK_RC(seg_alloc(&e->sm, LS_KIND_MIXED, 0, 0, SEG_FOR_USER, &s), LS_OK);
  ls_table *t = cat_table(e, id);
  idx_key k1 = { 1, 1 }, k2 = { 2, 2 }, k3 = { 3, 3 };
  uint64_t w1 = loc_make(s, 48, 64, 0), w2 = loc_make(s, 112, 32, 0), old = 0;
  pthread_rwlock_wrlock(&t->lock);
  CHECK_INT(cat_install(e, t, &k1, w1, &old), INSTALL_NEW);
  CHECK_INT(cat_install(e, t, &k1, w2, &old), INSTALL_REPLACED);
  CHECK_U64(old, w1);
  CHECK_INT(cat_install(e, t, &k2, w1, &old), INSTALL_NEW);
  /* A tombstone for an absent key is dead at once. */
  CHECK_INT(cat_install(e, t, &k3, loc_make(s, 144, 24, 1), &old), INSTALL_DEAD);
  pthread_rwlock_unlock(&t->lock);
  CHECK_INT(atomic_load(&t->rows), 2);
  CHECK_INT(atomic_load(&t->live_bytes), 96);
  CHECK_INT(atomic_load(&seg_get(&e->sm, s)->live_records), 2);
  CHECK_INT(atomic_load(&seg_get(&e->sm, s)->live_bytes), 96);
  CHECK_U64(cat_live_bytes(e), 96);
  uint64_t w = 0;
  CHECK_RC(cat_lookup(e, id, &k1, NULL, &w), LS_OK);
  CHECK_U64(w, w2);
  CHECK_RC(cat_lookup(e, id + 1, &k1, NULL, &w), LS_NOTABLE);
  /* Truncate, then drop: every entry leaves the accounting. */
  int dead = 0;
  CHECK_RC(cat_truncate(e, id, 100, count_dead, &dead), LS_OK);
  CHECK_INT(dead, 2);
  CHECK_INT(atomic_load(&seg_get(&e->sm, s)->live_records), 0);
  CHECK_U64(t->trunc_seq, 100);
  CHECK_U64(e->man.seq_floor, 100);
  pthread_rwlock_wrlock(&t->lock);
  CHECK_INT(cat_install(e, t, &k1, w1, &old), INSTALL_NEW);
  pthread_rwlock_unlock(&t->lock);
  dead = 0;
  CHECK_RC(cat_drop(e, id, count_dead, &dead), LS_OK);
  CHECK_INT(dead, 1);
  CHECK_INT(ls_table_exists(e, id), 0);
  CHECK_RC(cat_drop(e, id, count_dead, &dead), LS_NOTABLE);
  CHECK_INT(e->man.ntables, 0);
  cat_engine_free(e);
}

static void test_failure_state(void) {
  ls_engine *e = cat_engine();
  CHECK_RC(cat_check_failed(e), LS_OK);
  cat_fail(e, "first");
  cat_fail(e, "second");
  CHECK_RC(cat_check_failed(e), LS_READONLY);
  CHECK(strstr(ls_errmsg(), "first") != NULL);
  CHECK(strstr(ls_errmsg(), "second") == NULL);
  cat_problem(e, "damage %d", 1);
  CHECK(e->problems && strstr(e->problems, "damage 1"));
  cat_engine_free(e);
}

int main(void) {
  RUN(test_create_rename_manifest);
  RUN(test_create_with_id);
  RUN(test_install_and_drop);
  RUN(test_failure_state);
  return unit_finish();
}
