/*
** test_damage.c -- the damage matrix: damage is never silent.
**
** A fixed template directory is built through the engine (two tables, one
** of two compaction groups; rows written, overwritten and deleted in many
** transactions, one streamed across segments and one written directly into
** a group segment; separated and compacted; more writes after), and the
** last committed value of every key is kept as the oracle, with every value
** each key ever had.  Then, for each seeded trial, a copy of the template is
** damaged -- bit flips, zeroed 4 KiB blocks, zeroed ranges, random bytes,
** zeroed segments, a truncated data file, a deleted first, middle or last
** data file, a damaged, cut or deleted manifest -- and opened:
**
**   error at open     the default open refuses it with LS_CORRUPT (or
**                     LS_FORMAT for the manifest) and a message; then a
**                     salvage open (where the manifest is readable) must
**                     succeed, list the damage, and read only values the
**                     key once had; a default open after it must succeed
**                     (the damage is accepted) and read the same;
**   damage reported   the default open succeeds, every key reads its last
**                     value or fails with LS_CORRUPT, and ls_check lists
**                     damage;
**   intact            the default open succeeds, every key reads its last
**                     value and ls_check says ok (the damage hit bytes that
**                     hold nothing: free space, stale bytes);
**   silent loss / silent older version / wrong value
**                     the default open succeeded and a key read absent,
**                     an older value, or a value it never had: a failure.
**
** LOGSTOR_SEED reproduces a run; LOGSTOR_DAMAGE_TRIALS sets the number of
** trials (default 240).  The last line says how the trials ended.
*/
#include "format.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KB 1024u
#define SEG (16 * KB)
#define FILE_SZ (128 * KB)
#define NTAB 2
#define NKEY 300
#define MAXVER 16

/* The oracle: for each key, its values in commit order (NULL: deleted). */
typedef struct hist { char *v[MAXVER]; int n; } hist;
static hist oracle[NTAB][NKEY];
static uint32_t tid[NTAB];
static char template_dir[4200];

static void key_of(int k, char *buf, size_t cap) { snprintf(buf, cap, "row-%04d", k); }

static const char *last_value(int t, int k) { return oracle[t][k].n ? oracle[t][k].v[oracle[t][k].n - 1] : NULL; }

static void note(int t, int k, const char *v) {
  hist *h = &oracle[t][k];
  if (h->n == MAXVER) {                         /* keep the first and the newest */
    free(h->v[1]);
    memmove(h->v + 1, h->v + 2, (MAXVER - 2) * sizeof h->v[0]);
    h->n--;
  }
  h->v[h->n++] = v ? strdup(v) : NULL;
}

/* Commit n writes of random keys of table t (vlen 0: deletes). */
static void commit_rows(ls_engine *e, uint64_t *rng, int n, int t, size_t minlen, size_t maxlen, int del_pct) {
  ls_txn *tx = NULL;
  CHECK_RC(ls_txn_begin(e, &tx), LS_OK);
  int keys[64], vals = 0;
  char *v[64];
  for (int i = 0; i < n && i < 64; i++) {
    int k = (int)(unit_rand(rng) % NKEY), dup = 0;
    for (int j = 0; j < vals; j++) dup |= keys[j] == k;
    if (dup) continue;
    char kb[16];
    key_of(k, kb, sizeof kb);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    if ((int)(unit_rand(rng) % 100) < del_pct) {
      v[vals] = NULL;
      CHECK_RC(ls_txn_delete(tx, tid[t], &key), LS_OK);
    } else {
      size_t len = minlen + (size_t)(unit_rand(rng) % (maxlen - minlen + 1));
      v[vals] = malloc(len + 1);
      int p = snprintf(v[vals], len + 1, "%s:%llu:", kb, (unsigned long long)unit_rand(rng));
      for (size_t j = (size_t)p; j < len; j++) v[vals][j] = (char)('a' + (j * 7 + (size_t)k) % 26);
      v[vals][len] = 0;
      CHECK_RC(ls_txn_put(tx, tid[t], &key, v[vals], (uint32_t)len), LS_OK);
    }
    keys[vals++] = k;
  }
  CHECK_RC(ls_txn_commit(tx), LS_OK);
  ls_txn_free(tx);
  for (int i = 0; i < vals; i++) {
    note(t, keys[i], v[i]);
    free(v[i]);
  }
}

/* The template (see the top); deterministic for a seed. */
static void build_template(void) {
  snprintf(template_dir, sizeof template_dir, "%s", unit_tmpdir());
  uint64_t rng = 0x5eed0fdaaa9eull;
  ls_engine *e = unit_open(template_dir, SEG, FILE_SZ, 0, 1, 0);
  if (!e) return;
  CHECK_RC(ls_table_create(e, "alpha", 2, &tid[0]), LS_OK);
  CHECK_RC(ls_table_create(e, "beta", 1, &tid[1]), LS_OK);
  for (int i = 0; i < 120; i++) commit_rows(e, &rng, 1 + (int)(unit_rand(&rng) % 8), i % 2, 30, 400, 0);
  for (int i = 0; i < 80; i++) commit_rows(e, &rng, 1 + (int)(unit_rand(&rng) % 6), i % 2, 30, 600, 15);
  uint64_t freed;
  CHECK_RC(ls_flush(e, 0, &freed), LS_OK);       /* into group segments, then overwrite most */
  for (int i = 0; i < 200; i++) commit_rows(e, &rng, 1 + (int)(unit_rand(&rng) % 8), i % 2, 30, 600, 10);
  commit_rows(e, &rng, 40, 0, 900, 1000, 0);      /* streamed across segments */
  commit_rows(e, &rng, 18, 1, 800, 900, 0);       /* directly into a group segment */
  CHECK_RC(ls_compact(e, tid[0], &freed), LS_OK);
  CHECK_RC(ls_compact(e, tid[1], &freed), LS_OK);
  for (int i = 0; i < 60; i++) commit_rows(e, &rng, 1 + (int)(unit_rand(&rng) % 6), i % 2, 30, 500, 20);
  CHECK_RC(ls_flush(e, tid[1], &freed), LS_OK);   /* some separated, some left mixed */
  for (int i = 0; i < 30; i++) commit_rows(e, &rng, 1 + (int)(unit_rand(&rng) % 4), i % 2, 30, 300, 10);
  unit_check_ok(e);
  ls_stats s = unit_stats(e);
  printf("     template: %llu segments used of %llu, %llu rows and tombstones, %llu compacted, %llu separated\n",
         (unsigned long long)s.segments_used, (unsigned long long)s.segments_total,
         (unsigned long long)s.records_live, (unsigned long long)s.segments_compacted,
         (unsigned long long)s.separator_records_relocated);
  CHECK(s.segments_compacted > 0);
  ls_close(e);
}

/* ---- copying and damaging ------------------------------------------------------ */

static int nfiles_in(const char *dir) {
  int n = 0;
  char p[8400];
  for (;; n++) {
    snprintf(p, sizeof p, "%s/data-%06d.ls", dir, n);
    if (access(p, F_OK)) return n;
  }
}

/* A random 512-byte sector of the data files that holds a non-zero byte
** (damage where something is), as (file, offset). */
static void pick_sector(const char *dir, uint64_t *rng, int *file, uint64_t *off) {
  int nf = nfiles_in(dir);
  for (int tries = 0; tries < 10000; tries++) {
    *file = (int)(unit_rand(rng) % (uint64_t)nf);
    *off = (unit_rand(rng) % (FILE_SZ / LS_SECTOR)) * LS_SECTOR;
    char p[8400];
    snprintf(p, sizeof p, "%s/data-%06d.ls", dir, *file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    uint8_t buf[LS_SECTOR];
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf, (off_t)*off) : -1;
    if (fd >= 0) close(fd);
    for (ssize_t i = 0; i < n; i++)
      if (buf[i]) return;
  }
}

/* Flip a random bit of the byte at off of file path. */
static void flip_bit(const char *path, uint64_t off, uint64_t *rng) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  uint8_t b = 0;
  CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1);
  b ^= (uint8_t)(1u << (unit_rand(rng) % 8));
  CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
  if (fd >= 0) close(fd);
}

static void write_at(const char *dir, int file, uint64_t off, const void *p, size_t len) {
  char path[8400];
  snprintf(path, sizeof path, "%s/data-%06d.ls", dir, file);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  CHECK(fd >= 0 && pwrite(fd, p, len, (off_t)off) == (ssize_t)len);
  if (fd >= 0) close(fd);
}

enum { D_FLIP, D_FLIPS, D_ZERO_BLOCK, D_ZERO_RANGE, D_RANDOM_RANGE, D_ZERO_SEGMENT, D_TRUNCATE,
       D_DEL_FIRST, D_DEL_MIDDLE, D_DEL_LAST, D_MANIFEST_FLIP, D_MANIFEST_CUT, D_MANIFEST_DEL, D_KINDS };
static const char *kind_name[D_KINDS] = {
  "bit flip", "bit flips", "zeroed block", "zeroed range", "random bytes", "zeroed segment", "truncated file",
  "deleted first file", "deleted middle file", "deleted last file", "manifest bit flip", "manifest cut",
  "manifest deleted",
};

/* Damage dir as kind says; describe it in what. */
static void damage(const char *dir, int kind, uint64_t *rng, char *what, size_t cap) {
  int f;
  uint64_t off;
  char path[8400];
  int nf = nfiles_in(dir);
  uint8_t buf[65536];
  switch (kind) {
  case D_FLIP:
  case D_FLIPS: {
    int n = kind == D_FLIP ? 1 : 2 + (int)(unit_rand(rng) % 6);
    size_t w = 0;
    for (int i = 0; i < n; i++) {
      pick_sector(dir, rng, &f, &off);
      off += unit_rand(rng) % LS_SECTOR;
      snprintf(path, sizeof path, "%s/data-%06d.ls", dir, f);
      flip_bit(path, off, rng);
      w += (size_t)snprintf(what + w, cap - w, "%sdata-%06d.ls@%llu", i ? " " : "", f, (unsigned long long)off);
      if (w >= cap) break;
    }
    break;
  }
  case D_ZERO_BLOCK:
    pick_sector(dir, rng, &f, &off);
    off &= ~(uint64_t)(LS_BLOCK - 1);
    memset(buf, 0, LS_BLOCK);
    write_at(dir, f, off, buf, LS_BLOCK);
    snprintf(what, cap, "data-%06d.ls@%llu+4096", f, (unsigned long long)off);
    break;
  case D_ZERO_RANGE:
  case D_RANDOM_RANGE: {
    pick_sector(dir, rng, &f, &off);
    off += unit_rand(rng) % LS_SECTOR;
    uint64_t len = 1 + unit_rand(rng) % (unit_rand(rng) % 2 ? 64 : 20000);
    if (off + len > FILE_SZ) len = FILE_SZ - off;
    for (uint64_t i = 0; i < len; i++) buf[i] = kind == D_ZERO_RANGE ? 0 : (uint8_t)unit_rand(rng);
    write_at(dir, f, off, buf, (size_t)len);
    snprintf(what, cap, "data-%06d.ls@%llu+%llu", f, (unsigned long long)off, (unsigned long long)len);
    break;
  }
  case D_ZERO_SEGMENT:
    pick_sector(dir, rng, &f, &off);
    off -= off % SEG;
    memset(buf, 0, SEG);
    write_at(dir, f, off, buf, SEG);
    snprintf(what, cap, "segment %llu", (unsigned long long)(f * (FILE_SZ / SEG) + off / SEG));
    break;
  case D_TRUNCATE:
    f = (int)(unit_rand(rng) % (uint64_t)nf);
    off = unit_rand(rng) % FILE_SZ;
    snprintf(path, sizeof path, "%s/data-%06d.ls", dir, f);
    CHECK(truncate(path, (off_t)off) == 0);
    snprintf(what, cap, "data-%06d.ls cut to %llu", f, (unsigned long long)off);
    break;
  case D_DEL_FIRST:
  case D_DEL_MIDDLE:
  case D_DEL_LAST:
    f = kind == D_DEL_FIRST ? 0 : kind == D_DEL_LAST ? nf - 1 : 1 + (int)(unit_rand(rng) % (uint64_t)(nf - 2));
    snprintf(path, sizeof path, "%s/data-%06d.ls", dir, f);
    CHECK(unlink(path) == 0);
    snprintf(what, cap, "data-%06d.ls deleted", f);
    break;
  case D_MANIFEST_FLIP:
  case D_MANIFEST_CUT: {
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    off = unit_rand(rng) % (uint64_t)st.st_size;
    if (kind == D_MANIFEST_CUT) {
      CHECK(truncate(path, (off_t)off) == 0);
      snprintf(what, cap, "MANIFEST cut to %llu", (unsigned long long)off);
    } else {
      flip_bit(path, off, rng);
      snprintf(what, cap, "MANIFEST@%llu", (unsigned long long)off);
    }
    break;
  }
  case D_MANIFEST_DEL:
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    CHECK(unlink(path) == 0);
    snprintf(what, cap, "MANIFEST deleted");
    break;
  }
}

/* ---- judging ---------------------------------------------------------------------- */

enum { J_OK, J_CORRUPT, J_LOST, J_OLDER, J_WRONG };

/* How key k of table t reads against the oracle. */
static int judge_key(ls_engine *e, int t, int k) {
  char kb[16];
  key_of(k, kb, sizeof kb);
  const char *got = unit_gets(e, tid[t], kb), *want = last_value(t, k);
  if (!strncmp(got, "ERROR ", 6)) return J_CORRUPT;
  if (!*got) return want ? J_LOST : J_OK;
  if (want && !strcmp(got, want)) return J_OK;
  for (int i = 0; i < oracle[t][k].n - 1; i++)
    if (oracle[t][k].v[i] && !strcmp(got, oracle[t][k].v[i])) return J_OLDER;
  return J_WRONG;
}

/* Judge every key; counts[J_*]. */
static void judge_all(ls_engine *e, int counts[5]) {
  memset(counts, 0, 5 * sizeof counts[0]);
  for (int t = 0; t < NTAB; t++)
    for (int k = 0; k < NKEY; k++) counts[judge_key(e, t, k)]++;
}

static int check_report(ls_engine *e, char **rep) {
  *rep = NULL;
  int rc = ls_check(e, 0, rep);
  if (rc) unit_fail(__FILE__, __LINE__, "ls_check: %d %s", rc, ls_errmsg());
  return rc == LS_OK && strcmp(*rep, "ok") != 0;
}

enum { O_ERROR_AT_OPEN, O_REPORTED, O_INTACT, O_SILENT_LOSS, O_SILENT_OLDER, O_WRONG, O_NOUTCOMES };
static const char *outcome_name[O_NOUTCOMES] = {
  "error at open", "damage reported", "intact", "silent loss", "silent older version", "wrong value",
};

static int run_trial(const char *dir, int kind, const char *what) {
  ls_options o;
  ls_options_init(&o);
  o.manual_cleaning = 1;
  o.io = LS_IO_POSIX;
  ls_engine *e = NULL;
  int rc = ls_open(dir, &o, &e);
  int counts[5];
  if (rc != LS_OK) {
    /* Refused: with a message that says why, and a clear code. */
    const char *msg = ls_errmsg();
    if (rc != LS_CORRUPT && rc != LS_FORMAT)
      unit_fail(__FILE__, __LINE__, "%s: %s: open failed with %d (%s), not LS_CORRUPT: %s", kind_name[kind], what,
                rc, ls_strerror(rc), msg);
    if (!msg || !*msg) unit_fail(__FILE__, __LINE__, "%s: %s: no message", kind_name[kind], what);
    if (kind < D_MANIFEST_FLIP && !strstr(msg, "Rows in this range are lost or may read as an older version"))
      unit_fail(__FILE__, __LINE__, "%s: %s: the message does not say what is lost: %s", kind_name[kind], what, msg);
    /* The way out: salvage opens with what is readable and keeps the report. */
    o.on_damage = LS_ON_DAMAGE_SALVAGE;
    rc = ls_open(dir, &o, &e);
    if (rc != LS_OK) {
      if (kind < D_MANIFEST_FLIP)
        unit_fail(__FILE__, __LINE__, "%s: %s: salvage open failed: %s", kind_name[kind], what, ls_errmsg());
      return O_ERROR_AT_OPEN;
    }
    char *rep;
    if (!check_report(e, &rep)) unit_fail(__FILE__, __LINE__, "%s: %s: salvage lists no damage", kind_name[kind], what);
    free(rep);
    judge_all(e, counts);
    if (counts[J_WRONG])
      unit_fail(__FILE__, __LINE__, "%s: %s: salvage reads %d values never committed", kind_name[kind], what,
                counts[J_WRONG]);
    int before[5];
    memcpy(before, counts, sizeof before);
    ls_close(e);
    /* Accepted: the default open works now and reads the same. */
    o.on_damage = LS_ON_DAMAGE_ERROR;
    rc = ls_open(dir, &o, &e);
    if (rc != LS_OK) {
      unit_fail(__FILE__, __LINE__, "%s: %s: open after salvage failed: %s", kind_name[kind], what, ls_errmsg());
      return O_ERROR_AT_OPEN;
    }
    judge_all(e, counts);
    if (memcmp(before, counts, sizeof before))
      unit_fail(__FILE__, __LINE__, "%s: %s: the open after salvage reads otherwise (ok %d/%d, lost %d/%d, older "
                "%d/%d)", kind_name[kind], what, before[J_OK], counts[J_OK], before[J_LOST], counts[J_LOST],
                before[J_OLDER], counts[J_OLDER]);
    ls_close(e);
    return O_ERROR_AT_OPEN;
  }
  judge_all(e, counts);
  char *rep;
  int reported = check_report(e, &rep) || counts[J_CORRUPT];
  ls_close(e);
  int out = counts[J_WRONG] ? O_WRONG : counts[J_LOST] ? O_SILENT_LOSS : counts[J_OLDER] ? O_SILENT_OLDER
          : reported ? O_REPORTED : O_INTACT;
  if (out >= O_SILENT_LOSS)
    unit_fail(__FILE__, __LINE__, "%s: %s: %s (%d lost, %d older, %d wrong) after an open that found nothing%s%.300s",
              kind_name[kind], what, outcome_name[out], counts[J_LOST], counts[J_OLDER], counts[J_WRONG],
              reported ? "; ls_check: " : "", reported ? rep : "");
  free(rep);
  return out;
}

static void test_damage_matrix(void) {
  build_template();
  if (unit_failed_checks) return;
  uint64_t rng = unit_seed("damage matrix");
  const char *env = getenv("LOGSTOR_DAMAGE_TRIALS");
  int trials = env ? atoi(env) : 240;
  int total[O_NOUTCOMES] = {0}, bykind[D_KINDS][O_NOUTCOMES];
  memset(bykind, 0, sizeof bykind);
  const char *base = unit_tmpdir();
  for (int i = 0; i < trials; i++) {
    /* Kinds in turn, the data-file kinds more often than the others. */
    static const int order[] = { D_FLIP, D_ZERO_BLOCK, D_ZERO_RANGE, D_FLIPS, D_RANDOM_RANGE, D_FLIP, D_ZERO_BLOCK,
                                 D_ZERO_RANGE, D_ZERO_SEGMENT, D_TRUNCATE, D_DEL_FIRST, D_DEL_MIDDLE, D_DEL_LAST,
                                 D_MANIFEST_FLIP, D_MANIFEST_CUT, D_MANIFEST_DEL, D_FLIP, D_ZERO_RANGE, D_FLIPS,
                                 D_ZERO_BLOCK };
    int kind = order[i % (int)(sizeof order / sizeof order[0])];
    char dir[4300], what[300] = "";
    snprintf(dir, sizeof dir, "%s/trial", base);
    unit_rmtree(dir);
    unit_copy_dir(template_dir, dir);
    damage(dir, kind, &rng, what, sizeof what);
    int before = unit_failed_checks;
    int out = run_trial(dir, kind, what);
    total[out]++;
    bykind[kind][out]++;
    if (unit_failed_checks != before) printf("     (trial %d: %s: %s)\n", i, kind_name[kind], what);
  }
  for (int k = 0; k < D_KINDS; k++) {
    printf("     %-20s", kind_name[k]);
    for (int o = 0; o < O_NOUTCOMES; o++)
      if (bykind[k][o]) printf(" %s %d", outcome_name[o], bykind[k][o]);
    printf("\n");
  }
  printf("     damage matrix: %d trials:", trials);
  for (int o = 0; o < O_NOUTCOMES; o++) printf("%s %d %s", o ? "," : "", total[o], outcome_name[o]);
  printf("\n");
  CHECK_INT(total[O_SILENT_LOSS] + total[O_SILENT_OLDER] + total[O_WRONG], 0);
  for (int t = 0; t < NTAB; t++)
    for (int k = 0; k < NKEY; k++)
      for (int i = 0; i < oracle[t][k].n; i++) free(oracle[t][k].v[i]);
}

int main(void) {
  RUN(test_damage_matrix);
  return unit_finish();
}
