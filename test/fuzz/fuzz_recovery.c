/*
** fuzz_recovery.c -- a libFuzzer target over everything that parses disk
** bytes (reliability plan S01): the manifest parser, the buffer header and
** record decoders, the segment walker, and recovery of a whole data
** directory.
**
** The first input byte chooses what the rest is:
**   0  a manifest's text: parsed; if valid, formatted and parsed again to
**      the same fields;
**   1  bytes decoded as a buffer header and as records at every 8-byte
**      offset, with the decoders' bounds checked;
**   2  a segment image (the next byte: its size class and the walk's
**      limit and durability): ls_seg_head, then the walker to the end,
**      with its promises checked (progress, bounds, gaps inside limit);
**   3  a data directory: [flags][manifest length, 2 bytes LE][manifest]
**      [data files, file_size bytes each]; opened with on_damage=report or
**      salvage (flags), every row of every table read and checked against
**      its key, ls_check run; after a salvage, a row written and the
**      directory opened again with the default.
** A first byte of 0xCC instead makes the rest a checkpoint file (after one
** byte choosing the segment count): checkpoint.c's parser, its promises
** checked on what it accepts.
** A broken promise aborts (libFuzzer reports it); ASan and UBSan catch the
** rest.  Manifests asking for files over 1 MiB are skipped: their memory,
** not their parsing, would be under test.
**
** Built two ways: with clang's libFuzzer (make fuzz: build/fuzz/fuzz_recovery)
** and, with any compiler, into the replay program test/fuzz/replay.c runs
** over the seed corpus (test/fuzz/corpus) in every `make check`.
*/
#include "format.h"
#include "ls_int.h"
#include "manifest.h"
#include "checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PROMISE(x) do { if (!(x)) { fprintf(stderr, "fuzz_recovery: broken promise: %s (%s:%d)\n", #x, \
                                             __FILE__, __LINE__); abort(); } } while (0)

/* ---- 0: the manifest ----------------------------------------------------------- */

static void fuzz_manifest(const uint8_t *p, size_t n) {
  char *text = malloc(n ? n : 1);
  if (!text) return;
  memcpy(text, p, n);
  ls_manifest m;
  if (ls_manifest_parse(text, n, &m) == LS_OK) {
    size_t len;
    char *again = ls_manifest_format(&m, &len);
    ls_manifest m2;
    PROMISE(again && ls_manifest_parse(again, len, &m2) == LS_OK);
    PROMISE(m2.files == m.files && m2.ntables == m.ntables && m2.ndamaged == m.ndamaged &&
            m2.next_table == m.next_table && m2.seq_floor == m.seq_floor);
    for (uint32_t i = 0; i < m.ntables; i++) PROMISE(!strcmp(m.tables[i].name, m2.tables[i].name));
    ls_manifest_free(&m2);
    free(again);
    ls_manifest_free(&m);
  }
  free(text);
}

/* ---- 1: the decoders -------------------------------------------------------------- */

static void fuzz_decoders(const uint8_t *p, size_t n) {
  ls_bufhdr h;
  if (n >= LS_BUF_HDR && ls_bufhdr_decode(p, &h)) {
    PROMISE(h.kind >= LS_KIND_MIXED && h.kind <= LS_KIND_FREE && h.data_size % 8 == 0);
    uint8_t again[LS_BUF_HDR];
    ls_bufhdr_encode(again, &h);
    PROMISE(!memcmp(again, p, LS_BUF_HDR));       /* every byte is a field */
  }
  uint32_t seed = n >= 4 ? ls_get32(p) : 0;
  for (size_t o = 0; o + LS_REC_HDR <= n; o += 8) {
    ls_rec r;
    /* A copy of exactly the bytes left: any read past them is ASan's. */
    size_t left = n - o;
    uint8_t *c = malloc(left);
    if (!c) return;
    memcpy(c, p + o, left);
    for (int s = 0; s < 2; s++) {
      uint32_t sd = s ? seed : ls_crc32c(0, c, 4);
      if (ls_rec_decode(c, left, sd, &r)) {
        PROMISE(r.size <= left && r.size >= LS_REC_HDR && r.size % 8 == 0);
        PROMISE(r.key == c + LS_REC_HDR && r.val == r.key + r.key_len);
        PROMISE(LS_REC_HDR + (size_t)r.key_len + r.val_len <= r.size);
      }
    }
    free(c);
  }
}

/* ---- 2: the walker ------------------------------------------------------------------- */

static void fuzz_walk(const uint8_t *p, size_t n) {
  if (n < 1) return;
  static const uint32_t sizes[4] = { 8192, 16384, 32768, 65536 };
  uint32_t size = sizes[p[0] & 3], flags = p[0];
  uint8_t *img = calloc(1, size);
  if (!img) return;
  memcpy(img, p + 1, n - 1 < size ? n - 1 : size);
  ls_seghead hd;
  ls_seg_head(img, size, &hd);
  PROMISE(hd.limit <= size);
  if (hd.state == LS_HEAD_FREE) { free(img); return; }
  uint64_t seq = hd.seg_seq ? hd.seg_seq : 1;
  uint32_t kind = hd.kind ? hd.kind : LS_KIND_MIXED;
  /* The limit: as the head says, or bytes "known written" from the input. */
  uint32_t limit = (flags & 4) ? (uint32_t)((ls_get32(img + 8) % (size + 1)) & ~7u) : hd.limit;
  ls_walk w;
  ls_walk_init(&w, img, size, limit, seq, kind);
  w.durable = (flags & 8) != 0;
  ls_rec r;
  uint32_t off, last = 0, steps = 0;
  int k;
  while ((k = ls_walk_next(&w, &r, &off)) != LS_WALK_END) {
    PROMISE(++steps <= size);                    /* it ends */
    if (k == LS_WALK_RECORD) {
      PROMISE(off >= last && off + r.size <= w.limit && r.size >= LS_REC_HDR);
      last = off + r.size;
    } else if (k == LS_WALK_GAP) {
      PROMISE(w.gap_start >= last && w.gap_start < w.gap_end && w.gap_end <= w.limit);
      last = w.gap_end;
    } else {
      PROMISE(w.buf_off >= last && w.buf_off % LS_BLOCK == 0 && w.buf_off + LS_BUF_HDR <= w.limit);
      last = w.buf_off + LS_BUF_HDR;
    }
  }
  free(img);
}

/* ---- 3: a data directory ---------------------------------------------------------------- */

static char fuzz_dir[4096];

static void clear_dir(void) {
  DIR *d = opendir(fuzz_dir);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, de->d_name);
    unlink(path);
  }
  if (d) closedir(d);
}

static void remove_dir(void) {
  clear_dir();
  rmdir(fuzz_dir);
}

static int put_file(const char *name, const uint8_t *p, size_t n) {
  char path[8192];
  snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  int ok = n == 0 || write(fd, p, n) == (ssize_t)n;
  close(fd);
  return ok ? 0 : -1;
}

/* Read every row of every table: each must be readable or damaged, and be
** found again by its key. */
typedef struct scan_arg { ls_engine *e; uint32_t first; } scan_arg;

static int scan_table(void *arg, const ls_table_info *t) {
  scan_arg *a = arg;
  if (!a->first) a->first = t->id;
  ls_cursor *c = NULL;
  if (ls_cursor_open(a->e, NULL, t->id, &c)) return 0;
  int rc;
  for (rc = ls_cursor_seek(c, INT64_MIN); !rc && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
    const ls_value *v = ls_cursor_row(c);
    ls_key k;
    ls_key_set(&k, v->key, v->key_len);
    ls_value got;
    memset(&got, 0, sizeof got);
    int g = ls_get(a->e, t->id, &k, &got);
    PROMISE(g == LS_OK || g == LS_CORRUPT);
    if (g == LS_OK) PROMISE(got.len == v->len && !memcmp(got.data, v->data, v->len));
    ls_value_free(&got);
  }
  PROMISE(rc == LS_OK || rc == LS_CORRUPT || rc == LS_IOERR);
  ls_cursor_close(c);
  return 0;
}

static void scan_all(ls_engine *e, uint32_t *first) {
  scan_arg a = { e, 0 };
  ls_table_foreach(e, scan_table, &a);
  char *rep = NULL;
  if (ls_check(e, 0, &rep) == LS_OK) free(rep);
  *first = a.first;
}

static void fuzz_directory(const uint8_t *p, size_t n) {
  if (n < 3) return;
  uint32_t flags = p[0], mlen = (uint32_t)p[1] | ((uint32_t)p[2] << 8);
  p += 3;
  n -= 3;
  if (mlen > n) mlen = (uint32_t)n;
  ls_manifest m;
  int parsed = ls_manifest_parse((const char *)p, mlen, &m) == LS_OK;
  uint64_t file_size = parsed ? m.file_size : 0;
  if (parsed) ls_manifest_free(&m);
  if (parsed && (file_size == 0 || file_size > (1u << 20))) return;
  if (!fuzz_dir[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/logstor-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fuzz_dir)) { fuzz_dir[0] = 0; return; }
    atexit(remove_dir);
  }
  clear_dir();
  if (put_file("MANIFEST", p, mlen)) return;
  const uint8_t *d = p + mlen;
  size_t dn = n - mlen;
  for (uint32_t f = 0; dn && file_size && f < 16; f++) {
    size_t take = dn < file_size ? dn : (size_t)file_size;
    char name[32];
    snprintf(name, sizeof name, "data-%06u.ls", f);
    if (put_file(name, d, take)) return;
    d += take;
    dn -= take;
  }
  ls_options o;
  ls_options_init(&o);
  o.io = LS_IO_POSIX;
  o.manual_cleaning = 1;
  o.on_damage = (flags & 1) ? LS_ON_DAMAGE_SALVAGE : LS_ON_DAMAGE_REPORT;
  ls_engine *e = NULL;
  if (ls_open(fuzz_dir, &o, &e) != LS_OK) return;
  uint32_t first = 0;
  scan_all(e, &first);
  if (o.on_damage == LS_ON_DAMAGE_SALVAGE && first) {
    ls_txn *t = NULL;
    ls_key k;
    ls_key_set(&k, "fuzz", 4);
    if (ls_txn_begin(e, &t) == LS_OK) {
      if (ls_txn_put(t, first, &k, "written after salvage", 21) == LS_OK) (void)ls_txn_commit(t);
      ls_txn_free(t);
    }
  }
  ls_close(e);
  if (o.on_damage == LS_ON_DAMAGE_SALVAGE) {
    /* What the salvage accepted opens with the default. */
    o.on_damage = LS_ON_DAMAGE_ERROR;
    if (ls_open(fuzz_dir, &o, &e) == LS_OK) {
      scan_all(e, &first);
      ls_close(e);
    }
  }
}

/* ---- 0xCC: a checkpoint file ------------------------------------------------- */

static void fuzz_checkpoint(const uint8_t *p, size_t n) {
  if (n < 1) return;
  uint32_t nseg = 1 + p[0] % 64, seg_size = 8192;
  ckpt_view v;
  if (!ckpt_parse(p + 1, n - 1, seg_size, nseg, &v)) return;
  PROMISE(v.seg_size == seg_size && v.nsegs <= nseg);
  uint64_t total = 0;
  const uint8_t *t = v.tables;
  for (uint32_t i = 0; i < v.ntables; i++) {
    uint64_t cnt = ls_get64(t + 16);
    const uint8_t *e = t + 24;
    for (uint64_t k = 0; k < cnt; k++, e += 24) {
      uint64_t word = ls_get64(e + 16);
      int found = 0;
      for (uint32_t j = 0; j < v.nsegs && !found; j++) {
        const uint8_t *sg = v.segs + (size_t)j * 64;
        found = ls_get32(sg) == loc_seg(word) && (uint64_t)loc_off(word) + loc_size(word) <= ls_get32(sg + 4);
      }
      PROMISE(found && loc_seg(word) < nseg);
    }
    total += cnt;
    t = e;
  }
  PROMISE(total == v.nentries && t + 4 == p + n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] == 0xCC) {
    fuzz_checkpoint(data + 1, size - 1);
    ls_thread_cleanup();
    return 0;
  }
  switch (data[0] % 4) {
  case 0: fuzz_manifest(data + 1, size - 1); break;
  case 1: fuzz_decoders(data + 1, size - 1); break;
  case 2: fuzz_walk(data + 1, size - 1); break;
  default: fuzz_directory(data + 1, size - 1); break;
  }
  ls_thread_cleanup();
  return 0;
}
