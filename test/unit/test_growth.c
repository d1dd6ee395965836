/*
** test_growth.c -- data files grown a step at a time (segment.h, "Growth";
** FORMAT.md, "Data files"): a small store stays small, the manifest counts
** the length of the last file, and recovery tells an interrupted step
** (bytes past that length: not damage) from a cut file (damage) and takes
** in a file the manifest does not count yet.
*/
#include "unit.h"
#include "format.h"
#include "manifest.h"
#include "ls_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG 8192u
#define FILESZ (8u * SEG)

static uint64_t file_size_of(const char *dir, uint32_t n) {
  char p[512];
  snprintf(p, sizeof p, "%s/data-%06u.ls", dir, n);
  struct stat st;
  return stat(p, &st) ? UINT64_MAX : (uint64_t)st.st_size;
}

/* Bytes the files of dir take on disk (du). */
static uint64_t du(const char *dir) {
  static const char *names[] = { "MANIFEST", "MANIFEST.spare", "OWNER", "LOCK", "CHECKPOINT", "data-000000.ls",
                                 "data-000001.ls" };
  uint64_t sum = 0;
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    struct stat st;
    if (!stat(p, &st)) sum += (uint64_t)st.st_blocks * 512;
  }
  return sum;
}

static ls_manifest read_manifest(const char *dir) {
  ls_manifest m;
  memset(&m, 0, sizeof m);
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK_RC(ls_manifest_read(io, dirfd, &m), LS_OK);
  close(dirfd);
  ls_io_destroy(io);
  return m;
}

static void put_rows(ls_engine *e, uint32_t t, int from, int to, uint32_t len) {
  char *val = malloc(len);
  for (int i = from; i < to; i++) {
    char k[32];
    snprintf(k, sizeof k, "k%d", i);
    memset(val, 'a' + i % 26, len);
    CHECK_RC(unit_put(e, t, k, val, len), LS_OK);
  }
  free(val);
}

static void check_rows(ls_engine *e, uint32_t t, int from, int to, uint32_t len) {
  for (int i = from; i < to; i++) {
    char k[32];
    snprintf(k, sizeof k, "k%d", i);
    const char *v = unit_gets(e, t, k);
    if (!v || strlen(v) != len || v[0] != 'a' + i % 26) {
      unit_fail(__FILE__, __LINE__, "row %s: %s", k, v ? "wrong value" : "missing");
      return;
    }
  }
}

/* The manifest's count of segments is what the files hold. */
static void check_files_match(const char *dir) {
  ls_manifest m = read_manifest(dir);
  uint32_t segs = ls_manifest_segments(&m);
  uint64_t total = 0;
  for (uint32_t f = 0; f < m.files; f++) {
    uint64_t want = f + 1 < m.files ? m.file_size : m.last_file_size ? m.last_file_size : m.file_size;
    CHECK_U64(file_size_of(dir, f), want);
    total += want;
  }
  CHECK_U64(total, (uint64_t)segs * m.segment_size);
  CHECK_U64(file_size_of(dir, m.files), UINT64_MAX);    /* no file beyond */
  ls_manifest_free(&m);
}

/* Open dir (engine e, if open, is used and closed): rows 0..have are
** there; write have..more; check; close; the files are as the manifest
** says; reopen: rows 0..more are there. */
static void grow_on(const char *dir, ls_engine *e, uint32_t t, int have, int more) {
  if (!e) e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
  check_rows(e, t, 0, have, 1500);
  put_rows(e, t, have, more, 1500);
  unit_check_ok(e);
  ls_close(e);
  check_files_match(dir);
  e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
  check_rows(e, t, 0, more, 1500);
  unit_check_ok(e);
  ls_close(e);
}

/* One row with the default geometry (128 KiB segments, 32 MiB files):
** well under 1 MiB on disk, before and after a reopen. */
static void test_one_row_small(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 0, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  CHECK_RC(unit_puts(e, t, "one", "row"), LS_OK);
  ls_stats s = unit_stats(e);
  CHECK(s.data_file_bytes <= 8 * 128 * 1024);
  ls_close(e);
  uint64_t used = du(dir);
  CHECK(used < 1024 * 1024);
  if (used >= 1024 * 1024) fprintf(stderr, "    one row: %llu bytes on disk\n", (unsigned long long)used);
  check_files_match(dir);
  e = unit_open(dir, 0, 0, 0, 0, 0);
  { const char *v_ = unit_gets(e, t, "one"); CHECK(v_ && !strcmp(v_, "row")); }
  unit_check_ok(e);
  ls_close(e);
  CHECK(du(dir) < 1024 * 1024);
}

/* Growing through several files: every file but the last full, the last
** as long as the manifest says, across reopens and more writes. */
static void test_grow_across_files(void) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "t", 1, &t), LS_OK);
  put_rows(e, t, 0, 60, 1500);                   /* ~ 12 segments */
  ls_close(e);
  check_files_match(dir);
  ls_manifest m = read_manifest(dir);
  CHECK(m.files >= 2);
  ls_manifest_free(&m);
  grow_on(dir, NULL, t, 60, 120);
}

/* Opens a directory whose last file ends inside a file (a few rows). */
static const char *partial_dir(uint32_t *t) {
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
  CHECK_RC(ls_table_create(e, "t", 1, t), LS_OK);
  put_rows(e, *t, 0, 12, 1500);
  ls_close(e);
  ls_manifest m = read_manifest(dir);
  CHECK_INT(m.files, 1);
  CHECK(m.last_file_size > 0 && m.last_file_size < FILESZ);
  ls_manifest_free(&m);
  return dir;
}

static void append(const char *dir, uint32_t n, uint64_t len, int byte) {
  char p[512];
  snprintf(p, sizeof p, "%s/data-%06u.ls", dir, n);
  int fd = open(p, O_WRONLY | O_APPEND);
  CHECK(fd >= 0);
  uint8_t *b = malloc(len);
  memset(b, byte, len);
  CHECK(write(fd, b, len) == (ssize_t)len);
  free(b);
  close(fd);
}

/* Bytes past the counted length of the last file (a crash in the middle of
** a growth step, before the manifest counted it) are not damage; the next
** step formats them again. */
static void test_interrupted_step(void) {
  uint32_t t;
  const char *dir = partial_dir(&t);
  uint64_t counted = file_size_of(dir, 0), junk = SEG + SEG / 2;   /* a step and a half of junk */
  CHECK(counted < FILESZ);
  if (junk > FILESZ - counted) junk = FILESZ - counted - SEG / 2;
  append(dir, 0, junk, 0x5a);
  ls_engine *e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
  ls_stats s = unit_stats(e);
  CHECK_U64(s.damaged_ranges, 0);
  CHECK_U64(s.data_file_bytes, counted);
  grow_on(dir, e, t, 12, 40);                     /* grows over the junk */
}

/* A last file shorter than the manifest says is damage, named. */
static void test_cut_last_file(void) {
  uint32_t t;
  const char *dir = partial_dir(&t);
  char p[512];
  snprintf(p, sizeof p, "%s/data-000000.ls", dir);
  CHECK(truncate(p, (off_t)(file_size_of(dir, 0) - SEG)) == 0);
  ls_options o;
  ls_options_init(&o);
  ls_engine *e = NULL;
  CHECK_RC(ls_open(dir, &o, &e), LS_CORRUPT);
  CHECK(strstr(ls_errmsg(), "data-000000.ls") != NULL);
  CHECK(strstr(ls_errmsg(), "short") != NULL);
  if (e) ls_close(e);
}

/* A file the manifest does not count yet (a crash after it was renamed in)
** is taken in with the whole segments it has -- also a part of one. */
/* Formatted segments (zeros, a free marker at the start) appended to data
** file n up to its full size; the manifest then counts them. */
static void fill_last_file(const char *dir) {
  ls_manifest m = read_manifest(dir);
  uint32_t last = m.files - 1;
  uint64_t have = file_size_of(dir, last);
  uint8_t *b = calloc(1, SEG);
  ls_free_marker(b, 0, 0);
  char p[512];
  snprintf(p, sizeof p, "%s/data-%06u.ls", dir, last);
  int fd = open(p, O_WRONLY);
  CHECK(fd >= 0);
  for (uint64_t off = have; off < FILESZ; off += SEG) CHECK(pwrite(fd, b, SEG, (off_t)off) == SEG);
  close(fd);
  free(b);
  m.last_file_size = 0;                            /* full */
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK_RC(ls_manifest_write(io, dirfd, &m), LS_OK);
  close(dirfd);
  ls_io_destroy(io);
  ls_manifest_free(&m);
}

/* A file the manifest does not count yet (a crash after it was renamed in:
** the file before it is full) is taken in with the whole segments it has
** -- also a part of one. */
static void test_uncounted_file(void) {
  for (int odd = 0; odd < 2; odd++) {
    uint32_t t;
    const char *dir = partial_dir(&t);
    fill_last_file(dir);
    check_files_match(dir);
    /* The step a crash left: two formatted segments (and half a third). */
    char p[512];
    snprintf(p, sizeof p, "%s/data-000001.ls", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    uint8_t *b = calloc(1, 3 * SEG);
    ls_free_marker(b, 0, 0);
    ls_free_marker(b + SEG, 0, 0);
    ls_free_marker(b + 2 * SEG, 0, 0);
    size_t len = odd ? 2 * SEG + SEG / 2 : 2 * SEG;
    CHECK(write(fd, b, len) == (ssize_t)len);
    free(b);
    close(fd);
    ls_engine *e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
    ls_stats s = unit_stats(e);
    CHECK_U64(s.damaged_ranges, 0);
    CHECK(s.data_file_bytes >= FILESZ + 2 * SEG);
    grow_on(dir, e, t, 12, 40);
  }
}

/* A checkpoint written with a partial last file is used at the next open,
** and one whose segment count differs from the manifest's is not. */
static void test_checkpoint_partial(void) {
  uint32_t t;
  const char *dir = partial_dir(&t);
  ls_engine *e = NULL;
  int used = 0;
  for (int i = 0; i < 20 && !used; i++) {       /* a close may skip it (K1) */
    e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
    used = unit_stats(e).recovery_checkpoint != 0;
    ls_close(e);
  }
  CHECK(used);
  e = unit_open(dir, SEG, FILESZ, 0, 1, 0);
  check_rows(e, t, 0, 12, 1500);
  ls_close(e);
}

int main(void) {
  RUN(test_one_row_small);
  RUN(test_grow_across_files);
  RUN(test_interrupted_step);
  RUN(test_cut_last_file);
  RUN(test_uncounted_file);
  RUN(test_checkpoint_partial);
  return unit_finish();
}
