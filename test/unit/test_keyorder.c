/*
** test_keyorder.c -- key-ordered tables (LS_ORDER_KEY): the order and
** positions of typed keys (keyorder.c), the table option kept in the
** manifest, and cursors with bounds and a direction (read.c) against a
** model: committed rows, a transaction's own writes, its snapshot, rows
** that share a position, after compaction, a checkpoint and a scan.
*/
#include "ls_int.h"
#include "keyorder.h"
#include "manifest.h"
#include "format.h"
#include "unit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
** Typed keys.
*/

typedef struct tkey {
  uint8_t b[24];
  uint32_t n;
} tkey;

static tkey k_int(int64_t v) {
  tkey k = { {1}, 9 };
  for (int i = 0; i < 8; i++) k.b[1 + i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
  return k;
}
static tkey k_real(double d) {
  uint64_t bits;
  memcpy(&bits, &d, 8);
  tkey k = k_int((int64_t)bits);
  k.b[0] = 2;
  return k;
}
static tkey k_str(int tag, const char *s, uint32_t n) {
  tkey k = { {(uint8_t)tag}, n + 1 };
  memcpy(k.b + 1, s, n);
  return k;
}

static int cmp_tkey(const void *a, const void *b) {
  const tkey *x = a, *y = b;
  return ko_compare(x->b, x->n, y->b, y->n);
}

/* A random typed key: integers (small, near the position limits, the
** extremes), reals (fractions, huge, infinite), TEXT and BLOB sharing long
** prefixes, and now and then an untyped byte string. */
static tkey random_key(uint64_t *rng) {
  uint64_t r = unit_rand(rng);
  static const char *pre[] = { "", "a", "user0000", "user0000x", "\xff\xff\xff\xff\xff\xff\xff\xff" };
  char s[16];
  switch (r % 9) {
  case 0: case 1: return k_int((int64_t)(unit_rand(rng) % 2001) - 1000);
  case 2: {
    int64_t edge[] = { INT64_MIN, INT64_MIN + 1, -(1ll << 62) - 1, -(1ll << 62), (1ll << 62) - 1, 1ll << 62, INT64_MAX };
    return k_int(edge[unit_rand(rng) % 7]);
  }
  case 3: return k_real(((double)(int64_t)(unit_rand(rng) % 4001) - 2000) / 4 + 0.125);
  case 4: {
    double big[] = { 1e300, -1e300, INFINITY, -INFINITY, 4.7e18, -4.7e18, 9.3e18, -9.3e18, 0.5, -0.5 };
    return k_real(big[unit_rand(rng) % 10]);
  }
  case 5: case 6: case 7: {
    const char *p = pre[unit_rand(rng) % 5];
    size_t lp = strlen(p), extra = unit_rand(rng) % 4;
    memcpy(s, p, lp);
    for (size_t i = 0; i < extra; i++) s[lp + i] = "ab\0\xff"[unit_rand(rng) % 4];
    return k_str(r % 9 == 7 ? 4 : 3, s, (uint32_t)(lp + extra));
  }
  default: {
    tkey k = { {0}, (uint32_t)(unit_rand(rng) % 5) };
    for (uint32_t i = 0; i < k.n; i++) k.b[i] = (uint8_t)(unit_rand(rng) % 7);
    return k;
  }
  }
}

static void t_order(void) {
  /* SQLite's order on a few values. */
  tkey seq[] = { k_real(-INFINITY), k_real(-1e300), k_int(INT64_MIN), k_real(-1.5), k_int(-1), k_real(-0.5),
                 k_int(0), k_real(0.5), k_int(1), k_real(1.5), k_int(2), k_int(INT64_MAX), k_real(1e300),
                 k_real(INFINITY), k_str(3, "", 0), k_str(3, "\0", 1), k_str(3, "a", 1), k_str(3, "a\0", 2),
                 k_str(3, "ab", 2), k_str(3, "b", 1), k_str(4, "", 0), k_str(4, "a", 1), k_str(0, "", 0) };
  int n = (int)(sizeof seq / sizeof seq[0]);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      int c = ko_compare(seq[i].b, seq[i].n, seq[j].b, seq[j].n), want = i < j ? -1 : i > j;
      if ((c > 0) - (c < 0) != want) unit_fail(__FILE__, __LINE__, "compare %d with %d: %d, expected %d", i, j, c, want);
      if (i < j && ko_position(seq[i].b, seq[i].n) > ko_position(seq[j].b, seq[j].n))
        unit_fail(__FILE__, __LINE__, "position of %d above that of %d", i, j);
    }
  /* Integers from -2^62 up have positions of their own (consecutive);
  ** below, four share one. */
  int64_t own[] = { -(1ll << 62), -5, 0, 7, (1ll << 62) - 1, 1ll << 62, INT64_MAX - 1 };
  for (int i = 0; i < 7; i++) {
    tkey a = k_int(own[i]), b = k_int(own[i] + 1);
    CHECK(ko_position(b.b, b.n) == ko_position(a.b, a.n) + 1);
  }
  tkey lo0 = k_int(INT64_MIN), lo3 = k_int(INT64_MIN + 3), lo4 = k_int(INT64_MIN + 4);
  tkey below = k_int(-(1ll << 62) - 1), at = k_int(-(1ll << 62));
  CHECK(ko_position(lo0.b, 9) == ko_position(lo3.b, 9) && ko_position(lo3.b, 9) + 1 == ko_position(lo4.b, 9));
  CHECK(ko_position(below.b, 9) < ko_position(at.b, 9));
  tkey two = k_int(2), m3 = k_int(-3), top = k_int(INT64_MAX), bot = k_int(INT64_MIN);
  CHECK(ko_position(k_real(2.5).b, 9) == ko_position(two.b, 9));
  CHECK(ko_position(k_real(-2.5).b, 9) == ko_position(m3.b, 9));
  CHECK(ko_position(k_real(1e300).b, 9) == ko_position(top.b, 9));
  CHECK(ko_position(k_real(-1e300).b, 9) == ko_position(bot.b, 9));

  /* Random keys: sorted by ko_compare, the order is strict between
  ** different keys (a total order) and positions never go down. */
  uint64_t rng = unit_seed("key order");
  const int m = 4000;
  tkey *k = unit_xmalloc(m * sizeof *k);
  for (int i = 0; i < m; i++) k[i] = random_key(&rng);
  qsort(k, (size_t)m, sizeof *k, cmp_tkey);
  int bad = 0;
  for (int i = 1; i < m; i++) {
    int same = k[i].n == k[i - 1].n && !memcmp(k[i].b, k[i - 1].b, k[i].n);
    int c = ko_compare(k[i - 1].b, k[i - 1].n, k[i].b, k[i].n);
    if ((same ? c != 0 : c >= 0) && bad++ < 5) unit_fail(__FILE__, __LINE__, "keys %d and %d: compare %d", i - 1, i, c);
    if (ko_compare(k[i].b, k[i].n, k[i - 1].b, k[i - 1].n) != -c && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "keys %d and %d: not antisymmetric", i - 1, i);
    if (ko_position(k[i - 1].b, k[i - 1].n) > ko_position(k[i].b, k[i].n) && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "keys %d and %d: position goes down", i - 1, i);
  }
  for (int t = 0; t < 20000; t++) {          /* transitivity, sampled */
    int i = (int)(unit_rand(&rng) % m), j = (int)(unit_rand(&rng) % m);
    int c = ko_compare(k[i].b, k[i].n, k[j].b, k[j].n);
    int want = i == j ? 0 : i < j ? -1 : 1;
    int same = k[i].n == k[j].n && !memcmp(k[i].b, k[j].b, k[i].n);
    if (!same && (c > 0) - (c < 0) != want && bad++ < 5) unit_fail(__FILE__, __LINE__, "keys %d, %d: compare %d", i, j, c);
  }
  free(k);
}

/* ------------------------------------------------------------------------
** Tables.
*/

#define NK 1500                    /* key space of the table tests */

typedef struct tmodel {
  tkey key[NK];                    /* sorted, unique */
  int nkeys;
  int present[NK];
  uint32_t val[NK];                /* the value is these 4 bytes (version) */
} tmodel;

static void model_keys(tmodel *md, uint64_t *rng) {
  tkey *k = unit_xmalloc(NK * 2 * sizeof *k);
  for (int i = 0; i < NK * 2; i++) k[i] = random_key(rng);
  qsort(k, NK * 2, sizeof *k, cmp_tkey);
  int n = 0;
  for (int i = 0; i < NK * 2 && n < NK; i++)
    if (!n || cmp_tkey(&k[i], &md->key[n - 1])) md->key[n++] = k[i];
  md->nkeys = n;
  free(k);
}

static int put_key(ls_txn *t, uint32_t table, const tkey *k, uint32_t v) {
  ls_key lk;
  ls_key_set(&lk, k->b, k->n);
  return ls_txn_put(t, table, &lk, &v, 4);
}

static int del_key(ls_txn *t, uint32_t table, const tkey *k) {
  ls_key lk;
  ls_key_set(&lk, k->b, k->n);
  return ls_txn_delete(t, table, &lk);
}

/* A cursor over [lo, hi] in direction desc (through txn, may be NULL)
** returns exactly the model's rows whose position is in range, in order. */
static int check_range(ls_engine *e, ls_txn *txn, uint32_t table, const tmodel *md, int64_t lo, int64_t hi,
                       int desc, const char *what) {
  int rows = 0;
  ls_cursor *c;
  CHECK_RC(ls_cursor_open(e, txn, table, &c), LS_OK);
  int rc = ls_cursor_range(c, lo, hi, desc), bad = 0;
  int i = desc ? md->nkeys - 1 : 0, step = desc ? -1 : 1;
  for (; rc == LS_OK && ls_cursor_valid(c); rc = ls_cursor_next(c)) {
    const ls_value *v = ls_cursor_row(c);
    for (; i >= 0 && i < md->nkeys; i += step) {
      int64_t p = ls_key_position(md->key[i].b, md->key[i].n);
      if (md->present[i] && p >= lo && p <= hi) break;
    }
    if (i < 0 || i >= md->nkeys) {
      if (bad++ < 3) unit_fail(__FILE__, __LINE__, "%s [%" PRId64 ", %" PRId64 "] desc %d: an extra row", what, lo, hi, desc);
      continue;
    }
    uint32_t val = 0;
    if (v->len == 4) memcpy(&val, v->data, 4);
    if ((v->key_len != md->key[i].n || memcmp(v->key, md->key[i].b, v->key_len) || v->len != 4 || val != md->val[i] ||
         v->token != ls_key_position(v->key, v->key_len)) && bad++ < 3)
      unit_fail(__FILE__, __LINE__, "%s [%" PRId64 ", %" PRId64 "] desc %d: row for model key %d differs (value %u, want %u)",
                what, lo, hi, desc, i, val, md->val[i]);
    i += step;
    rows++;
  }
  CHECK_RC(rc, LS_OK);
  for (; i >= 0 && i < md->nkeys; i += step) {
    int64_t p = ls_key_position(md->key[i].b, md->key[i].n);
    if (md->present[i] && p >= lo && p <= hi && bad++ < 3)
      unit_fail(__FILE__, __LINE__, "%s [%" PRId64 ", %" PRId64 "] desc %d: model key %d missing", what, lo, hi, desc, i);
  }
  ls_cursor_close(c);
  return rows;
}

/* Whole table both ways, and random ranges between model positions. */
static void check_all(ls_engine *e, ls_txn *txn, uint32_t table, const tmodel *md, uint64_t *rng, const char *what) {
  int present = 0;
  for (int i = 0; i < md->nkeys; i++) present += md->present[i];
  CHECK(present > 0);
  CHECK_INT(check_range(e, txn, table, md, INT64_MIN, INT64_MAX, 0, what), present);
  CHECK_INT(check_range(e, txn, table, md, INT64_MIN, INT64_MAX, 1, what), present);
  for (int t = 0; t < 30; t++) {
    const tkey *a = &md->key[unit_rand(rng) % md->nkeys], *b = &md->key[unit_rand(rng) % md->nkeys];
    int64_t lo = ls_key_position(a->b, a->n), hi = ls_key_position(b->b, b->n);
    check_range(e, txn, table, md, lo, hi, (int)(unit_rand(rng) & 1), what);
  }
}

static int manifest_has(const char *dir, const char *needle) {
  char path[512], buf[8192];
  snprintf(path, sizeof path, "%s/MANIFEST", dir);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return strstr(buf, needle) != NULL;
}

static void t_table(void) {
  uint64_t rng = unit_seed("key-ordered table");
  static tmodel md;
  memset(&md, 0, sizeof md);
  model_keys(&md, &rng);
  const char *dir = unit_tmpdir();
  ls_engine *e = unit_open(dir, 0, 0, 0, 1, 0);
  uint32_t tok, id;
  CHECK_RC(ls_table_create(e, "plain", 1, &tok), LS_OK);
  CHECK_RC(ls_table_create_ex(e, "ordered", 1, 7, 0, &id), LS_INVALID);
  CHECK_RC(ls_table_create_ex(e, "ordered", 1, LS_ORDER_KEY, 0, &id), LS_OK);
  ls_table_info ti;
  CHECK_RC(ls_table_info_get(e, id, &ti), LS_OK);
  CHECK_INT(ti.order, LS_ORDER_KEY);
  CHECK_RC(ls_table_info_get(e, tok, &ti), LS_OK);
  CHECK_INT(ti.order, LS_ORDER_TOKEN);
  CHECK(manifest_has(dir, "logstor-manifest 3\n") && manifest_has(dir, "\nkey_ordered 2\n"));

  /* Commits of random puts and deletes. */
  uint32_t version = 0;
  for (int round = 0; round < 40; round++) {
    ls_txn *t;
    CHECK_RC(ls_txn_begin(e, &t), LS_OK);
    for (int j = 0; j < 60; j++) {
      int i = (int)(unit_rand(&rng) % md.nkeys);
      if (unit_rand(&rng) % 5 == 0) {
        CHECK_RC(del_key(t, id, &md.key[i]), LS_OK);
        md.present[i] = 0;
      } else {
        CHECK_RC(put_key(t, id, &md.key[i], ++version), LS_OK);
        md.present[i] = 1;
        md.val[i] = version;
      }
    }
    CHECK_RC(ls_txn_commit(t), LS_OK);
    ls_txn_free(t);
  }
  check_all(e, NULL, id, &md, &rng, "committed");
  /* Point reads give the position as the token. */
  for (int i = 0; i < md.nkeys; i += 7) {
    ls_key lk;
    ls_value v = {0};
    ls_key_set(&lk, md.key[i].b, md.key[i].n);
    int rc = ls_get(e, id, &lk, &v);
    CHECK_RC(rc, md.present[i] ? LS_OK : LS_NOTFOUND);
    if (!rc) CHECK(v.token == ls_key_position(md.key[i].b, md.key[i].n));
    ls_value_free(&v);
  }

  /* A transaction's own writes merge in; its snapshot hides a later commit. */
  static tmodel mine;
  mine = md;
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  for (int j = 0; j < 300; j++) {
    int i = (int)(unit_rand(&rng) % md.nkeys);
    if (unit_rand(&rng) % 3 == 0) {
      CHECK_RC(del_key(t, id, &mine.key[i]), LS_OK);
      mine.present[i] = 0;
    } else {
      CHECK_RC(put_key(t, id, &mine.key[i], ++version), LS_OK);
      mine.present[i] = 1;
      mine.val[i] = version;
    }
  }
  check_all(e, t, id, &mine, &rng, "own writes");
  {
    ls_txn *other;
    CHECK_RC(ls_txn_begin(e, &other), LS_OK);
    for (int i = 0; i < md.nkeys; i += 3) {
      CHECK_RC(put_key(other, id, &md.key[i], ++version), LS_OK);
      md.present[i] = 1;
      md.val[i] = version;
    }
    CHECK_RC(ls_txn_commit(other), LS_OK);
    ls_txn_free(other);
  }
  check_all(e, t, id, &mine, &rng, "snapshot");
  check_all(e, NULL, id, &md, &rng, "after a commit");
  ls_txn_free(t);

  /* Compaction moves every row (the cleaner keys them as the table does). */
  uint64_t freed;
  CHECK_RC(ls_compact(e, id, &freed), LS_OK);
  check_all(e, NULL, id, &md, &rng, "compacted");
  unit_check_ok(e);

  /* Reopen from the checkpoint, then by a scan of the data files. */
  ls_close(e);
  e = unit_reopen(dir);
  CHECK_RC(ls_table_info_get(e, id, &ti), LS_OK);
  CHECK_INT(ti.order, LS_ORDER_KEY);
  CHECK_U64(unit_stats(e).recovery_checkpoint, 1);
  check_all(e, NULL, id, &md, &rng, "checkpoint");
  ls_close(e);
  char path[512];
  snprintf(path, sizeof path, "%s/CHECKPOINT", dir);
  unlink(path);
  e = unit_reopen(dir);
  CHECK_U64(unit_stats(e).recovery_checkpoint, 0);
  check_all(e, NULL, id, &md, &rng, "recovered");
  unit_check_ok(e);

  /* The manifest goes back to version 2 without key-ordered tables. */
  CHECK_RC(ls_table_drop(e, id), LS_OK);
  CHECK(manifest_has(dir, "logstor-manifest 2\n") && !manifest_has(dir, "key_ordered"));
  ls_close(e);
}

/* Many rows at one position: TEXT keys sharing their first 8 bytes, more
** than a cursor batch, committed and in a transaction. */
static void t_shared_position(void) {
  uint64_t rng = unit_seed("shared position");
  static tmodel md;
  memset(&md, 0, sizeof md);
  int n = 0;
  for (int i = 0; i < 300; i++) {
    char s[16];
    snprintf(s, sizeof s, "samepref%03d", (int)(unit_rand(&rng) % 1000));
    md.key[n++] = k_str(3, s, (uint32_t)strlen(s));
  }
  md.key[n++] = k_str(3, "samepre", 7);
  md.key[n++] = k_str(3, "samepref", 8);
  md.key[n++] = k_str(3, "samepreg", 8);
  qsort(md.key, (size_t)n, sizeof md.key[0], cmp_tkey);
  int m = 0;
  for (int i = 0; i < n; i++)
    if (!m || cmp_tkey(&md.key[i], &md.key[m - 1])) md.key[m++] = md.key[i];
  md.nkeys = m;
  ls_engine *e = unit_open(unit_tmpdir(), 0, 0, 0, 1, 0);
  uint32_t id;
  CHECK_RC(ls_table_create_ex(e, "same", 1, LS_ORDER_KEY, 0, &id), LS_OK);
  ls_txn *t;
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  for (int i = 0; i < m; i += 2) {
    CHECK_RC(put_key(t, id, &md.key[i], (uint32_t)i + 1), LS_OK);
    md.present[i] = 1;
    md.val[i] = (uint32_t)i + 1;
  }
  CHECK_RC(ls_txn_commit(t), LS_OK);
  ls_txn_free(t);
  check_all(e, NULL, id, &md, &rng, "committed");
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  for (int i = 0; i < m; i++) {
    if (i % 3 == 0) {
      CHECK_RC(put_key(t, id, &md.key[i], 5000u + (uint32_t)i), LS_OK);
      md.present[i] = 1;
      md.val[i] = 5000u + (uint32_t)i;
    } else if (i % 4 == 0) {
      CHECK_RC(del_key(t, id, &md.key[i]), LS_OK);
      md.present[i] = 0;
    }
  }
  check_all(e, t, id, &md, &rng, "own writes");
  /* Every row of the position deleted by the transaction: an empty run
  ** (the sort of no rows was undefined behaviour, found by UBSan). */
  for (int i = 0; i < m; i++)
    if (md.present[i]) { CHECK_RC(del_key(t, id, &md.key[i]), LS_OK); md.present[i] = 0; }
  CHECK_INT(check_range(e, t, id, &md, INT64_MIN, INT64_MAX, 0, "all deleted"), 0);
  CHECK_INT(check_range(e, t, id, &md, INT64_MIN, INT64_MAX, 1, "all deleted"), 0);
  CHECK_RC(ls_txn_commit(t), LS_OK);
  ls_txn_free(t);
  CHECK_INT(check_range(e, NULL, id, &md, INT64_MIN, INT64_MAX, 0, "all deleted, committed"), 0);
  /* A fresh cursor whose first run is only deletes of keys never written. */
  CHECK_RC(ls_txn_begin(e, &t), LS_OK);
  tkey z1 = k_str(3, "zzzzzzzz1", 9), z2 = k_str(3, "zzzzzzzz2", 9);
  CHECK_RC(del_key(t, id, &z1), LS_OK);
  CHECK_RC(del_key(t, id, &z2), LS_OK);
  CHECK_INT(check_range(e, t, id, &md, INT64_MIN, INT64_MAX, 0, "deletes only"), 0);
  ls_txn_free(t);
  ls_close(e);
}

/* The manifest's key_ordered lines: round trip, and the malformed ones. */
static int parse_with(const char *body, int version, ls_manifest *out) {
  char text[1024];
  int n = snprintf(text, sizeof text,
                   "logstor-manifest %d\nsegment_size 16384\nfile_size 65536\ndisk_size 0\nnext_table 5\n"
                   "seq_floor 0\nsegment_seq_floor 0\nfiles 0\ntable 1 1 0 a\ntable 3 2 0 b\n%s", version, body);
  n += snprintf(text + n, sizeof text - (size_t)n, "crc32c %u\n", ls_crc32c(0, text, (size_t)n));
  memset(out, 0, sizeof *out);
  return ls_manifest_parse(text, (size_t)n, out);
}

static void t_manifest(void) {
  ls_manifest m;
  CHECK_RC(parse_with("key_ordered 3\n", 3, &m), LS_OK);
  CHECK_INT(m.tables[0].order, KO_TOKEN);
  CHECK_INT(m.tables[1].order, KO_KEY);
  size_t len;
  char *text = ls_manifest_format(&m, &len);
  CHECK(text && strstr(text, "logstor-manifest 3\n") && strstr(text, "\nkey_ordered 3\n"));
  ls_manifest back;
  CHECK_RC(ls_manifest_parse(text, len, &back), LS_OK);
  CHECK_INT(back.tables[1].order, KO_KEY);
  free(text);
  ls_manifest_free(&back);
  ls_manifest_free(&m);
  CHECK_RC(parse_with("", 2, &m), LS_OK);
  ls_manifest_free(&m);
  CHECK_RC(parse_with("key_ordered 3\n", 2, &m), LS_CORRUPT);        /* version 2 has no such line */
  CHECK_RC(parse_with("", 3, &m), LS_CORRUPT);                        /* version 3 lists one */
  CHECK_RC(parse_with("key_ordered 2\n", 3, &m), LS_CORRUPT);        /* no table 2 */
  CHECK_RC(parse_with("key_ordered 3\nkey_ordered 3\n", 3, &m), LS_CORRUPT);
  CHECK_RC(parse_with("key_ordered 3 \n", 3, &m), LS_CORRUPT);
  CHECK_RC(parse_with("key_ordered 3\n", 4, &m), LS_FORMAT);
}

int main(void) {
  RUN(t_order);
  RUN(t_manifest);
  RUN(t_table);
  RUN(t_shared_position);
  return unit_finish();
}
