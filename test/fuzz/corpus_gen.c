/*
** corpus_gen.c -- writes the seed corpus of fuzz_recovery.c (make corpus:
** test/fuzz/corpus).  Every seed is made by the engine itself, so the
** fuzzer starts from bytes recovery accepts and mutates them into bytes it
** must refuse:
**   m-*  manifests (mode 0) of the directories below, and a version 1 one
**   b-*  buffer headers and records (mode 1)
**   w-*  segment images (mode 2): mixed, group, directly written, sealed
**        and not, free markers
**   r-*  whole directories (mode 3): writes only; overwrites, deletes, a
**        streamed and a direct transaction, separation and compaction;
**        the same left open (unsealed, as a crash leaves it); and with a
**        flipped bit (damage), for the report and the salvage open
*/
#include "format.h"
#include "ls_int.h"
#include "logstor.h"
#include "unit.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG 8192u
#define FILE_SZ 32768u
#define MAXFILES 4

static const char *out;
static int nseeds;

static void seed(const char *name, const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", out, name);
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(1); }
  fwrite(a, 1, an, f);
  if (bn) fwrite(b, 1, bn, f);
  fclose(f);
  nseeds++;
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long l = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc(l > 0 ? (size_t)l : 1);
  *n = p ? fread(p, 1, (size_t)l, f) : 0;
  fclose(f);
  return p;
}

/* Seeds of every mode from directory dir (label: the seed names). */
static void seeds_of(const char *dir, const char *label, int flags) {
  char path[4200], name[128];
  size_t mn;
  snprintf(path, sizeof path, "%s/MANIFEST", dir);
  uint8_t *man = slurp(path, &mn);
  if (!man) return;
  uint8_t mode0 = 0;
  snprintf(name, sizeof name, "m-%s", label);
  seed(name, &mode0, 1, man, mn);
  /* Mode 3: the directory, its first files. */
  size_t total = 4 + mn;
  uint8_t *buf = malloc(total + MAXFILES * FILE_SZ);
  buf[0] = 3;
  buf[1] = (uint8_t)flags;
  buf[2] = (uint8_t)mn;
  buf[3] = (uint8_t)(mn >> 8);
  memcpy(buf + 4, man, mn);
  for (int f = 0; f < MAXFILES; f++) {
    size_t fn;
    snprintf(path, sizeof path, "%s/data-%06d.ls", dir, f);
    uint8_t *data = slurp(path, &fn);
    if (!data) break;
    memcpy(buf + total, data, fn < FILE_SZ ? fn : FILE_SZ);
    total += fn < FILE_SZ ? fn : FILE_SZ;
    /* Mode 2 and 1: its segments that hold something. */
    for (uint32_t s = 0; f == 0 && s < FILE_SZ / SEG; s++) {
      ls_bufhdr h;
      if (!ls_bufhdr_decode(data + s * SEG, &h) || (h.kind == LS_KIND_FREE && s)) continue;
      uint8_t w[2] = { 2, (uint8_t)(s % 2 ? 8 : 0) };
      snprintf(name, sizeof name, "w-%s-%u", label, s);
      seed(name, w, 2, data + s * SEG, SEG);
      uint8_t one = 1;
      snprintf(name, sizeof name, "b-%s-%u", label, s);
      seed(name, &one, 1, data + s * SEG, 512);
    }
    free(data);
  }
  snprintf(name, sizeof name, "r-%s", label);
  seed(name, buf, total, NULL, 0);
  free(buf);
  free(man);
}

static void put(ls_engine *e, uint32_t t, int k, const char *v) {
  char kb[16];
  snprintf(kb, sizeof kb, "key%d", k);
  ls_key key;
  ls_key_set(&key, kb, (uint32_t)strlen(kb));
  ls_txn *tx;
  ls_txn_begin(e, &tx);
  if (v) ls_txn_put(tx, t, &key, v, (uint32_t)strlen(v));
  else ls_txn_delete(tx, t, &key);
  ls_txn_commit(tx);
  ls_txn_free(tx);
}

static void big_txn(ls_engine *e, uint32_t t, int first, int n, size_t len) {
  char *v = malloc(len + 1);
  memset(v, 'v', len);
  v[len] = 0;
  ls_txn *tx;
  ls_txn_begin(e, &tx);
  for (int i = 0; i < n; i++) {
    char kb[16];
    snprintf(kb, sizeof kb, "big%d", first + i);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    ls_txn_put(tx, t, &key, v, (uint32_t)len);
  }
  ls_txn_commit(tx);
  ls_txn_free(tx);
  free(v);
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: corpus_gen OUTDIR WORKDIR\n"); return 2; }
  out = argv[1];
  mkdir(out, 0755);
  char d1[2048], d2[2048], d3[2048];
  snprintf(d1, sizeof d1, "%s/simple", argv[2]);
  snprintf(d2, sizeof d2, "%s/cleaned", argv[2]);
  snprintf(d3, sizeof d3, "%s/open", argv[2]);
  ls_engine *e = unit_open(d1, SEG, FILE_SZ, 0, 1, 0);
  if (!e) return 1;
  uint32_t t1, t2;
  ls_table_create(e, "plain", 1, &t1);
  for (int i = 0; i < 20; i++) put(e, t1, i, "a simple value");
  ls_close(e);
  seeds_of(d1, "simple", 0);

  if (!(e = unit_open(d2, SEG, FILE_SZ, 0, 1, 0))) return 1;
  ls_table_create(e, "kv", 2, &t1);
  ls_table_create(e, "events log", 1, &t2);
  for (int i = 0; i < 40; i++) put(e, i % 2 ? t1 : t2, i % 13, i % 5 ? "value of some length" : NULL);
  big_txn(e, t1, 0, 6, 1800);                     /* streamed across segments */
  big_txn(e, t2, 10, 5, 1300);                    /* directly into a group segment */
  uint64_t freed;
  ls_flush(e, 0, &freed);
  for (int i = 0; i < 30; i++) put(e, t1, i % 7, "overwritten");
  ls_compact(e, t1, &freed);
  for (int i = 0; i < 10; i++) put(e, t2, i, "after compaction");
  unit_copy_dir(d2, d3);                          /* as a crash leaves it: not sealed */
  ls_close(e);
  seeds_of(d2, "cleaned", 0);
  seeds_of(d3, "open", 1);
  /* Damage: a flipped bit in the first data file's second segment. */
  char path[4200];
  snprintf(path, sizeof path, "%s/data-000000.ls", d3);
  int fd = open(path, O_RDWR);
  uint8_t b = 0;
  if (fd >= 0 && pread(fd, &b, 1, SEG + 100) == 1) {
    b ^= 0x10;
    if (pwrite(fd, &b, 1, SEG + 100) != 1) perror(path);
  }
  if (fd >= 0) close(fd);
  seeds_of(d3, "damaged-report", 0);
  seeds_of(d3, "damaged-salvage", 1);
  /* A version 1 manifest, and text that is no manifest. */
  static const char v1[] = "\0logstor-manifest 1\nsegment_size 8192\nfile_size 32768\ndisk_size 0\nnext_table 1\n"
                           "seq_floor 0\nsegment_seq_floor 0\ncrc32c 0\n";
  seed("m-version1", (const uint8_t *)v1, sizeof v1 - 1, NULL, 0);
  static const char junk[] = "\0table 1 1 0 x\n%%%\n";
  seed("m-junk", (const uint8_t *)junk, sizeof junk - 1, NULL, 0);
  ls_thread_cleanup();
  printf("%d seeds in %s\n", nseeds, out);
  return 0;
}
