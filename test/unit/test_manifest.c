/*
** test_manifest.c -- unit tests of the manifest (manifest.c).
**
** Text: ls_manifest_format -> ls_manifest_parse round trips (0, 1 and 100
** tables; names with spaces, '%', non-ASCII bytes, empty and 127-byte
** names; extreme numbers), and refusal of everything FORMAT.md refuses: a
** bad CRC, any changed byte, any truncation, unknown lines, missing items,
** table ids out of order or not below next_table, zero groups, bad
** %-escapes, another format version (LS_FORMAT), no final newline.  Texts
** are parsed from malloc'ed buffers of exactly their length so that ASan
** reports a parser reading past it.
**
** Files: ls_manifest_write / ls_manifest_read through the POSIX backend in
** a unit_tmpdir().
*/
#include "manifest.h"
#include "format.h"
#include "io.h"
#include "ls_int.h"
#include "unit.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Parse a copy of text[0..len) held in a buffer of exactly len bytes. */
static int parse_exact(const char *text, size_t len, ls_manifest *m) {
  char *c = unit_xmalloc(len);
  memcpy(c, text, len);
  int rc = ls_manifest_parse(c, len, m);
  free(c);
  return rc;
}

static int parse_str(const char *text, ls_manifest *m) { return parse_exact(text, strlen(text), m); }

/* A manifest with n tables whose names come from rng (any byte but NUL,
** lengths 0..127), ids increasing with gaps, next_table above them. */
static ls_manifest make_manifest(uint32_t n, uint64_t *rng) {
  ls_manifest m;
  memset(&m, 0, sizeof m);
  m.version = LS_FORMAT_VERSION;
  m.segment_size = 128u << 10;
  m.file_size = 32u << 20;
  m.disk_size = unit_rand(rng) % 2 ? 0 : unit_rand(rng);
  m.seq_floor = unit_rand(rng) >> (unit_rand(rng) % 64);
  m.seg_seq_floor = unit_rand(rng) >> (unit_rand(rng) % 64);
  m.files = (uint32_t)(unit_rand(rng) % 70000);
  /* Half the time a last file shorter than file_size (whole segments). */
  if (m.files && unit_rand(rng) % 2) m.last_file_size = (1 + unit_rand(rng) % 255) * m.segment_size;
  m.ndamaged = (uint32_t)(unit_rand(rng) % 4);
  m.damaged = m.ndamaged ? calloc(m.ndamaged, sizeof *m.damaged) : NULL;
  for (uint32_t i = 0; i < m.ndamaged; i++)
    m.damaged[i] = (ls_mdamage){ (uint32_t)unit_rand(rng), unit_rand(rng) >> (unit_rand(rng) % 64),
                                 (uint32_t)unit_rand(rng), (uint32_t)unit_rand(rng) };
  m.ntables = n;
  m.tables = n ? calloc(n, sizeof *m.tables) : NULL;
  uint32_t id = 0;
  for (uint32_t i = 0; i < n; i++) {
    ls_mtable *t = &m.tables[i];
    id += 1 + (uint32_t)(unit_rand(rng) % 3);
    t->id = id;
    t->groups = 1 + (uint32_t)(unit_rand(rng) % 64);
    t->trunc_seq = unit_rand(rng) % 3 ? 0 : unit_rand(rng);
    size_t len = unit_rand(rng) % (LS_NAME_MAX + 1);
    int plain = unit_rand(rng) % 2;                /* half: name characters only */
    for (size_t j = 0; j < len; j++) {
      uint8_t c = (uint8_t)(1 + unit_rand(rng) % 255);
      if (plain) c = (uint8_t)("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"[c % 65]);
      t->name[j] = (char)c;
    }
    t->name[len] = 0;
  }
  m.next_table = id + 1 + (uint32_t)(unit_rand(rng) % 5);
  return m;
}

/* got equals want in every field; reports the first difference. */
static void check_manifest_equal(const ls_manifest *got, const ls_manifest *want) {
  CHECK_U64(got->version, want->version);
  CHECK_U64(got->segment_size, want->segment_size);
  CHECK_U64(got->file_size, want->file_size);
  CHECK_U64(got->disk_size, want->disk_size);
  CHECK_U64(got->next_table, want->next_table);
  CHECK_U64(got->seq_floor, want->seq_floor);
  CHECK_U64(got->seg_seq_floor, want->seg_seq_floor);
  CHECK_U64(got->files, want->files);
  CHECK_U64(got->last_file_size, want->last_file_size);
  CHECK_U64(got->ndamaged, want->ndamaged);
  for (uint32_t i = 0; got->ndamaged == want->ndamaged && i < want->ndamaged; i++) {
    const ls_mdamage *g = &got->damaged[i], *w = &want->damaged[i];
    if (g->segment != w->segment || g->seg_seq != w->seg_seq || g->offset != w->offset || g->length != w->length)
      unit_fail(__FILE__, __LINE__, "damaged %u differs", i);
  }
  CHECK_U64(got->ntables, want->ntables);
  if (got->ntables != want->ntables) return;
  for (uint32_t i = 0; i < got->ntables; i++) {
    const ls_mtable *g = &got->tables[i], *w = &want->tables[i];
    if (g->id != w->id || g->groups != w->groups || g->trunc_seq != w->trunc_seq || strcmp(g->name, w->name)) {
      unit_fail(__FILE__, __LINE__, "table %u: expected %u %u %" PRIu64 " \"%s\", got %u %u %" PRIu64 " \"%s\"", i,
                w->id, w->groups, w->trunc_seq, w->name, g->id, g->groups, g->trunc_seq, g->name);
      return;
    }
  }
}

static int manifest_equal(const ls_manifest *a, const ls_manifest *b) {
  if (a->version != b->version || a->segment_size != b->segment_size || a->file_size != b->file_size ||
      a->disk_size != b->disk_size || a->next_table != b->next_table || a->seq_floor != b->seq_floor ||
      a->seg_seq_floor != b->seg_seq_floor || a->files != b->files ||
      a->last_file_size != b->last_file_size || a->ndamaged != b->ndamaged ||
      a->ntables != b->ntables)
    return 0;
  for (uint32_t i = 0; i < a->ndamaged; i++) {
    const ls_mdamage *x = &a->damaged[i], *y = &b->damaged[i];
    if (x->segment != y->segment || x->seg_seq != y->seg_seq || x->offset != y->offset || x->length != y->length)
      return 0;
  }
  for (uint32_t i = 0; i < a->ntables; i++) {
    const ls_mtable *x = &a->tables[i], *y = &b->tables[i];
    if (x->id != y->id || x->groups != y->groups || x->trunc_seq != y->trunc_seq || strcmp(x->name, y->name))
      return 0;
  }
  return 1;
}

/* Format m, parse it back, compare; the text must be plain printable
** ASCII lines, and formatting the parsed copy gives the same bytes. */
static void roundtrip(const ls_manifest *m) {
  size_t len = 0;
  char *text = ls_manifest_format(m, &len);
  CHECK(text != NULL);
  if (!text) return;
  CHECK(len > 0 && text[len - 1] == '\n');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c != '\n' && (c < 0x20 || c > 0x7E)) {
      unit_fail(__FILE__, __LINE__, "byte %zu of the text is 0x%02x", i, c);
      break;
    }
  }
  ls_manifest p;
  CHECK_RC(parse_exact(text, len, &p), LS_OK);
  check_manifest_equal(&p, m);
  size_t len2 = 0;
  char *text2 = ls_manifest_format(&p, &len2);
  CHECK_U64(len2, len);
  if (len2 == len) CHECK_MEM(text2, text, len);
  free(text2);
  ls_manifest_free(&p);
  CHECK(p.tables == NULL && p.ntables == 0);
  free(text);
}

/* Body lines + "crc32c <crc of body>\n", malloc'ed. */
static char *with_crc(const char *body, size_t *len) {
  size_t bl = strlen(body);
  char *s = unit_xmalloc(bl + 32);
  memcpy(s, body, bl);
  *len = bl + (size_t)snprintf(s + bl, 32, "crc32c %u\n", ls_crc32c(0, body, bl));
  return s;
}

/* Parse body (given a correct CRC line) and expect rc. */
#define CHECK_BODY(body, want) do { size_t l_; char *t_ = with_crc((body), &l_); ls_manifest m_; \
  int r_ = parse_exact(t_, l_, &m_); \
  if (r_ != (want)) unit_fail(__FILE__, __LINE__, "parse of\n%s: expected %d (%s), got %d (%s)", t_, (want), \
                              ls_strerror(want), r_, ls_strerror(r_)); \
  if (r_ == LS_OK) ls_manifest_free(&m_); \
  else if (m_.tables != NULL || m_.ntables != 0) unit_fail(__FILE__, __LINE__, "failed parse left tables"); \
  free(t_); } while (0)

#define HEAD "logstor-manifest 2\nsegment_size 131072\nfile_size 33554432\ndisk_size 0\nnext_table 3\nseq_floor 1027\n" \
             "segment_seq_floor 2048\nfiles 1\n"

/* ------------------------------------------------------------------------
** Text round trips.
*/

static void t_roundtrip_counts(void) {
  uint64_t rng = unit_seed("manifest");
  for (int rep = 0; rep < 20; rep++) {
    ls_manifest m = make_manifest(0, &rng);
    roundtrip(&m);
    ls_manifest_free(&m);
    m = make_manifest(1, &rng);
    roundtrip(&m);
    ls_manifest_free(&m);
    m = make_manifest(100, &rng);
    roundtrip(&m);
    ls_manifest_free(&m);
  }
  /* FORMAT.md's example, byte for byte. */
  ls_mtable t[2] = {{1, 1, 0, "kv", 0}, {2, 4, 1003, "events log", 0}};
  ls_manifest ex = {LS_FORMAT_VERSION, 131072, 33554432, 0, 3, 1027, 2048, 1, 2, t, 0, NULL, 0};
  size_t len;
  char *text = ls_manifest_format(&ex, &len);
  const char *want_body = HEAD "table 1 1 0 kv\ntable 2 4 1003 events%20log\n";
  size_t wl;
  char *want = with_crc(want_body, &wl);
  CHECK_U64(len, wl);
  if (len == wl) CHECK_MEM(text, want, len);
  free(want);
  free(text);
  roundtrip(&ex);
}

static void t_roundtrip_names(void) {
  static const char *names[] = {
    "", "kv", "with space", " leading", "trailing ", "100%", "%", "%%", "%41", "%-", "-", ".", "_",
    "a.b-c_d", "tab\there", "new\nline", "\r", "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80", "\x01", "\xff",
    "crc32c 1", "table 1 1 0 x", "#", "\\", "\"quoted\"", "/slash/",
  };
  size_t nn = sizeof names / sizeof names[0];
  ls_manifest m = {LS_FORMAT_VERSION, 8192, 8192, 1u << 30, 0, 0, 0, 0, 0, NULL, 0, NULL, 0};
  m.tables = calloc(nn + 260, sizeof *m.tables);
  uint32_t n = 0;
  for (size_t i = 0; i < nn; i++, n++) {
    m.tables[n].id = n + 1; m.tables[n].groups = 1;
    strcpy(m.tables[n].name, names[i]);
  }
  /* 127-byte names: all plain, all escaped, mixed. */
  memset(m.tables[n].name, 'x', LS_NAME_MAX); m.tables[n].name[LS_NAME_MAX] = 0;
  m.tables[n].id = n + 1; m.tables[n].groups = 1; n++;
  memset(m.tables[n].name, '\xff', LS_NAME_MAX); m.tables[n].name[LS_NAME_MAX] = 0;
  m.tables[n].id = n + 1; m.tables[n].groups = 1; n++;
  for (int j = 0; j < LS_NAME_MAX; j++) m.tables[n].name[j] = j % 2 ? '%' : 'a';
  m.tables[n].id = n + 1; m.tables[n].groups = 1; n++;
  /* Every byte 1..255, one per name, and all of them in 127-byte names. */
  for (int c = 1; c < 256; c++, n++) {
    m.tables[n].id = n + 1; m.tables[n].groups = (uint32_t)c;
    m.tables[n].name[0] = (char)c; m.tables[n].name[1] = (char)c; m.tables[n].name[2] = 0;
  }
  m.ntables = n;
  m.next_table = n + 1;
  roundtrip(&m);
  /* Extreme numbers. */
  m.segment_size = UINT64_MAX; m.file_size = UINT64_MAX; m.disk_size = UINT64_MAX; m.seq_floor = UINT64_MAX;
  m.next_table = UINT32_MAX;
  m.tables[n - 1].id = UINT32_MAX - 1;
  m.tables[n - 1].groups = UINT32_MAX;
  m.tables[n - 1].trunc_seq = UINT64_MAX;
  roundtrip(&m);
  ls_manifest_free(&m);

  /* Escapes are case-insensitive on input; "%-" only means empty alone. */
  ls_manifest p;
  CHECK_BODY(HEAD "table 1 1 0 a%2fb%2Fc\n", LS_OK);
  size_t len;
  char *t = with_crc(HEAD "table 1 1 0 a%2fb%2Fc\ntable 2 1 0 %-\n", &len);
  CHECK_RC(parse_exact(t, len, &p), LS_OK);
  if (p.ntables == 2) {
    CHECK(strcmp(p.tables[0].name, "a/b/c") == 0);
    CHECK(strcmp(p.tables[1].name, "") == 0);
  }
  ls_manifest_free(&p);
  free(t);
}

/* ls_manifest_copy and ls_manifest_table. */
static void t_copy_lookup(void) {
  uint64_t rng = 3;
  ls_manifest m = make_manifest(50, &rng), c;
  CHECK_RC(ls_manifest_copy(&c, &m), LS_OK);
  check_manifest_equal(&c, &m);
  CHECK(c.tables != m.tables);
  c.tables[0].groups++;
  CHECK(m.tables[0].groups != c.tables[0].groups);  /* deep copy */
  for (uint32_t i = 0; i < m.ntables; i++) {
    ls_mtable *t = ls_manifest_table(&m, m.tables[i].id);
    CHECK(t == &m.tables[i]);
  }
  CHECK(ls_manifest_table(&m, 0) == NULL);
  CHECK(ls_manifest_table(&m, m.next_table) == NULL);
  ls_manifest_free(&c);
  ls_manifest e = make_manifest(0, &rng), ec;
  CHECK_RC(ls_manifest_copy(&ec, &e), LS_OK);
  CHECK_U64(ec.ntables, 0);
  CHECK(ls_manifest_table(&ec, 1) == NULL);
  ls_manifest_free(&ec);
  ls_manifest_free(&e);
  ls_manifest_free(&m);
}

/* ------------------------------------------------------------------------
** Refusals.
*/

static void t_reject_crc(void) {
  size_t len;
  char *t = with_crc(HEAD "table 1 1 0 kv\n", &len);
  ls_manifest m;
  CHECK_RC(parse_exact(t, len, &m), LS_OK);
  ls_manifest_free(&m);
  /* The stored CRC plus or minus one, zero, another number. */
  const char *body = HEAD "table 1 1 0 kv\n";
  uint32_t crc = ls_crc32c(0, body, strlen(body));
  uint32_t wrong[] = {crc + 1, crc - 1, 0, crc ^ 0x80000000u, ~crc};
  for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "%scrc32c %u\n", body, wrong[i]);
    CHECK_RC(parse_exact(buf, (size_t)n, &m), LS_CORRUPT);
  }
  /* No CRC line, or a malformed one. */
  CHECK_RC(parse_str(body, &m), LS_CORRUPT);
  char buf[512];
  snprintf(buf, sizeof buf, "%scrc32c\n", body);
  CHECK_RC(parse_str(buf, &m), LS_CORRUPT);
  snprintf(buf, sizeof buf, "%scrc %u\n", body, crc);
  CHECK_RC(parse_str(buf, &m), LS_CORRUPT);
  snprintf(buf, sizeof buf, "%scrc32c %u\ncrc32c %u\n", body, crc, crc);   /* CRC line not last */
  CHECK_RC(parse_str(buf, &m), LS_CORRUPT);
  /* Empty and tiny texts. */
  CHECK_RC(parse_exact("", 0, &m), LS_CORRUPT);
  CHECK_RC(parse_exact("\n", 1, &m), LS_CORRUPT);
  CHECK_RC(parse_exact("\n\n", 2, &m), LS_CORRUPT);
  CHECK_RC(parse_str("crc32c 0\n", &m), LS_CORRUPT);      /* CRC of nothing: no items */
  free(t);
}

/* Every byte of a small manifest replaced by each other value: the parse
** fails, or (a whitespace variant of the CRC line) gives the same result. */
static void t_reject_changed_bytes(void) {
  ls_mtable tb[2] = {{1, 2, 5, "a b", 0}, {4, 1, 0, "kv", 0}};
  ls_manifest m = {LS_FORMAT_VERSION, 131072, 1u << 25, 0, 7, 99, 123, 3, 2, tb, 0, NULL, 0};
  size_t len;
  char *text = ls_manifest_format(&m, &len);
  char *buf = unit_xmalloc(len);
  long accepted_same = 0, accepted_diff = 0, tried = 0;
  for (size_t pos = 0; pos < len; pos++) {
    for (int v = 0; v < 256; v++) {
      if (v == (unsigned char)text[pos]) continue;
      memcpy(buf, text, len);
      buf[pos] = (char)v;
      ls_manifest p;
      int rc = ls_manifest_parse(buf, len, &p);
      tried++;
      if (rc == LS_OK) {
        if (manifest_equal(&p, &m)) accepted_same++;
        else if (accepted_diff++ < 5)
          unit_fail(__FILE__, __LINE__, "byte %zu changed from 0x%02x to 0x%02x: parsed to a different manifest",
                    pos, (unsigned char)text[pos], v);
        ls_manifest_free(&p);
      } else if (rc != LS_CORRUPT && rc != LS_FORMAT) {
        unit_fail(__FILE__, __LINE__, "byte %zu changed: rc %d", pos, rc);
      } else if (p.tables != NULL || p.ntables != 0) {
        unit_fail(__FILE__, __LINE__, "byte %zu changed: failed parse left tables", pos);
      }
    }
  }
  printf("     %ld changed texts, %ld accepted as the same manifest\n", tried, accepted_same);
  CHECK_INT(accepted_diff, 0);
  /* Single-bit flips are a subset of the above; they never give LS_OK with
  ** another manifest and most fail: at least every bit before the CRC line. */
  size_t crc_line = len - 1;
  while (crc_line > 0 && text[crc_line - 1] != '\n') crc_line--;
  for (size_t pos = 0; pos < crc_line; pos++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(buf, text, len);
      buf[pos] ^= (char)(1 << bit);
      ls_manifest p;
      int rc = ls_manifest_parse(buf, len, &p);
      if (rc == LS_OK) {
        unit_fail(__FILE__, __LINE__, "flip of bit %d of byte %zu accepted", bit, pos);
        ls_manifest_free(&p);
      }
    }
  free(buf);
  free(text);
}

/* Every proper prefix of a manifest is refused. */
static void t_reject_truncated(void) {
  uint64_t rng = 11;
  ls_manifest m = make_manifest(5, &rng);
  size_t len;
  char *text = ls_manifest_format(&m, &len);
  int bad = 0;
  for (size_t l = 0; l < len; l++) {
    ls_manifest p;
    int rc = parse_exact(text, l, &p);
    if (rc != LS_CORRUPT && bad++ < 5)
      unit_fail(__FILE__, __LINE__, "prefix of %zu/%zu bytes: expected LS_CORRUPT, got %d", l, len, rc);
    if (rc == LS_OK) ls_manifest_free(&p);
  }
  ls_manifest p;
  CHECK_RC(parse_exact(text, len, &p), LS_OK);
  ls_manifest_free(&p);
  /* Trailing bytes after the CRC line are refused too. */
  char *more = unit_xmalloc(len + 16);
  memcpy(more, text, len);
  memcpy(more + len, "x\n", 2);
  CHECK_RC(parse_exact(more, len + 2, &p), LS_CORRUPT);
  memcpy(more + len, "\n", 1);
  CHECK_RC(parse_exact(more, len + 1, &p), LS_CORRUPT);
  free(more);
  /* No final newline. */
  CHECK_RC(parse_exact(text, len - 1, &p), LS_CORRUPT);
  free(text);
  ls_manifest_free(&m);
}

/* Structure broken with a correct CRC. */
static void t_reject_structure(void) {
  CHECK_BODY(HEAD, LS_OK);
  CHECK_BODY(HEAD "table 1 1 0 kv\ntable 2 4 1003 events%20log\n", LS_OK);
  /* Unknown lines. */
  CHECK_BODY(HEAD "bogus 1\n", LS_CORRUPT);
  CHECK_BODY(HEAD "\n", LS_CORRUPT);
  CHECK_BODY(HEAD " \n", LS_CORRUPT);
  CHECK_BODY(HEAD "tables 1 1 0 kv\n", LS_CORRUPT);
  CHECK_BODY(HEAD "TABLE 1 1 0 kv\n", LS_CORRUPT);
  CHECK_BODY(HEAD "segment_sizes 1\n", LS_CORRUPT);
  CHECK_BODY("# comment\n" HEAD, LS_CORRUPT);
  /* Each item missing in turn. */
  static const char *items[] = {"logstor-manifest 2\n", "segment_size 131072\n", "file_size 33554432\n",
                                "disk_size 0\n", "next_table 3\n", "seq_floor 1027\n",
                                "segment_seq_floor 2048\nfiles 1\n"};
  for (int skip = 0; skip < 6; skip++) {
    char body[512] = "";
    for (int i = 0; i < 6; i++)
      if (i != skip) strcat(body, items[i]);
    strcat(body, "table 1 1 0 kv\n");
    CHECK_BODY(body, LS_CORRUPT);
  }
  /* Items without their numbers. */
  CHECK_BODY("logstor-manifest 2\nsegment_size\nfile_size 33554432\ndisk_size 0\nnext_table 3\nseq_floor 1\n",
             LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\nfile_size 33554432\ndisk_size 0\nnext_table x\nseq_floor 1\n",
             LS_CORRUPT);
  /* Table ids: increasing, non-zero, below next_table. */
  CHECK_BODY(HEAD "table 2 1 0 a\ntable 1 1 0 b\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a\ntable 1 1 0 b\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 0 1 0 a\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 3 1 0 a\n", LS_CORRUPT);           /* next_table is 3 */
  CHECK_BODY(HEAD "table 1 1 0 a\ntable 4 1 0 b\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 2 1 0 a\n", LS_OK);
  /* Groups 0. */
  CHECK_BODY(HEAD "table 1 0 0 a\n", LS_CORRUPT);
  /* Table lines with missing fields. */
  CHECK_BODY(HEAD "table 1 1 0\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 \n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table x 1 0 a\n", LS_CORRUPT);
  /* Names: bad escapes, raw bytes outside the name set, too long. */
  CHECK_BODY(HEAD "table 1 1 0 %G1\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 %1G\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a%\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a%4\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 %\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 %00\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a%00b\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 %-x\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 x%-\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a b\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a\tb\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 caf\xc3\xa9\n", LS_CORRUPT);
  CHECK_BODY(HEAD "table 1 1 0 a/b\n", LS_CORRUPT);
  char body[1024];
  char name[LS_NAME_MAX + 2];
  memset(name, 'n', LS_NAME_MAX);
  name[LS_NAME_MAX] = 0;
  snprintf(body, sizeof body, HEAD "table 1 1 0 %s\n", name);
  CHECK_BODY(body, LS_OK);                                   /* 127 bytes */
  name[LS_NAME_MAX] = 'n'; name[LS_NAME_MAX + 1] = 0;
  snprintf(body, sizeof body, HEAD "table 1 1 0 %s\n", name);
  CHECK_BODY(body, LS_CORRUPT);                              /* 128 bytes */
  char esc[3 * (LS_NAME_MAX + 1) + 1];
  for (int i = 0; i < LS_NAME_MAX + 1; i++) memcpy(esc + 3 * i, "%7E", 3);
  esc[3 * (LS_NAME_MAX + 1)] = 0;
  snprintf(body, sizeof body, HEAD "table 1 1 0 %s\n", esc);
  CHECK_BODY(body, LS_CORRUPT);                              /* 128 escaped bytes */
  esc[3 * LS_NAME_MAX] = 0;
  snprintf(body, sizeof body, HEAD "table 1 1 0 %s\n", esc);
  CHECK_BODY(body, LS_OK);                                   /* 127 escaped bytes */
  /* An over-long line. */
  char longline[2048];
  snprintf(longline, sizeof longline, HEAD "table 1 1 0 %0600d\n", 1);
  CHECK_BODY(longline, LS_CORRUPT);
}

/* Item lines that are not of the grammar's form, with a correct CRC.
** FORMAT.md: "an unknown line or a missing item is refused".  Each of these
** lines is none of the grammar's lines, yet the sscanf-based parser takes a
** prefix of it, wraps out-of-range numbers (next_table 4294967299 reads as
** 3, groups 4294967297 as 1, seq -5 as 2^64-5) and lets a repeated item
** override the first. */
#define REST "file_size 33554432\ndisk_size 0\nnext_table 3\nseq_floor 5\nsegment_seq_floor 9\nfiles 0\n"
static void t_reject_strict_grammar(void) {
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\n" REST, LS_OK);
  /* Trailing text after a number, no separator. */
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072 junk\n" REST, LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072x\n" REST, LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size131072\n" REST, LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2x\nsegment_size 131072\n" REST, LS_CORRUPT);
  /* Negative and out-of-range numbers. */
  CHECK_BODY("logstor-manifest 2\nsegment_size -1\n" REST, LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 99999999999999999999999\n" REST, LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\nfile_size 33554432\ndisk_size 0\n"
             "next_table 4294967299\nseq_floor 5\n", LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\n" REST "table 1 4294967297 0 kv\n", LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\n" REST "table 1 1 -5 kv\n", LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\n" REST "table -4294967295 1 0 kv\n", LS_CORRUPT);
  /* An item given twice. */
  CHECK_BODY("logstor-manifest 2\nsegment_size 131072\nsegment_size 8192\n" REST, LS_CORRUPT);
  CHECK_BODY("logstor-manifest 2\nlogstor-manifest 2\nsegment_size 131072\n" REST, LS_CORRUPT);
}
#undef REST

/* last_file_size: optional; whole segments, 1 .. file_size, only with a
** file; and what the segment count says (segment.h, "Growth"). */
#define HEAD2 "logstor-manifest 2\nsegment_size 131072\nfile_size 1048576\ndisk_size 0\nnext_table 3\n" \
              "seq_floor 5\nsegment_seq_floor 9\n"
static void t_last_file_size(void) {
  CHECK_BODY(HEAD2 "files 2\nlast_file_size 262144\n", LS_OK);
  CHECK_BODY(HEAD2 "files 2\nlast_file_size 1048576\n", LS_OK);
  CHECK_BODY(HEAD2 "files 2\nlast_file_size 0\n", LS_CORRUPT);
  CHECK_BODY(HEAD2 "files 2\nlast_file_size 262145\n", LS_CORRUPT);
  CHECK_BODY(HEAD2 "files 2\nlast_file_size 2097152\n", LS_CORRUPT);
  CHECK_BODY(HEAD2 "files 0\nlast_file_size 262144\n", LS_CORRUPT);
  CHECK_BODY(HEAD2 "files 2\nlast_file_size 262144\nlast_file_size 262144\n", LS_CORRUPT);
  ls_manifest m;
  const char *body = HEAD2 "files 2\nlast_file_size 262144\n";
  size_t len;
  char *text = with_crc(body, &len);
  CHECK_RC(ls_manifest_parse(text, len, &m), LS_OK);
  free(text);
  CHECK_INT(ls_manifest_segments(&m), 8 + 2);
  for (uint32_t n = 0; n < 40; n++) {
    ls_manifest_set_segments(&m, n);
    CHECK_INT(ls_manifest_segments(&m), n);
    CHECK_INT(m.files, (n + 7) / 8);
    CHECK_U64(m.last_file_size, n % 8 ? (uint64_t)(n % 8) * 131072 : 0);   /* 0: a full file */
  }
  ls_manifest_free(&m);
}
#undef HEAD2

/* Another format version is LS_FORMAT (with a correct CRC), not corrupt. */
static void t_reject_version(void) {
  uint64_t rng = 5;
  ls_manifest m = make_manifest(3, &rng);
  for (uint32_t v = 0; v < 6; v++) {
    /* Version 3 is version 2 with key_ordered lines (test_keyorder.c). */
    if (v == LS_MANIFEST_VERSION_KEY) continue;
    m.version = v;
    size_t len;
    char *text = ls_manifest_format(&m, &len);
    ls_manifest p;
    int rc = parse_exact(text, len, &p);
    if (v == LS_FORMAT_VERSION) {
      CHECK_RC(rc, LS_OK);
      ls_manifest_free(&p);
    } else {
      CHECK_RC(rc, LS_FORMAT);
      CHECK(p.tables == NULL && p.ntables == 0);
    }
    free(text);
  }
  CHECK_BODY("logstor-manifest 4\nsegment_size 131072\nfile_size 33554432\ndisk_size 0\nnext_table 3\nseq_floor 1\n",
             LS_FORMAT);
  /* The version line is the format's magic: anywhere but first, the file
  ** is not a manifest at all. */
  CHECK_BODY("segment_size 131072\nfile_size 33554432\ndisk_size 0\nnext_table 3\nseq_floor 1\n"
             "table 1 1 0 a\nlogstor-manifest 3\n", LS_CORRUPT);
  CHECK_BODY("logstor-manifest 4294967295\nsegment_size 131072\nfile_size 33554432\ndisk_size 0\n"
             "next_table 3\nseq_floor 1\n", LS_FORMAT);
  /* A bad CRC is reported as corruption even with another version. */
  CHECK_RC(parse_str("logstor-manifest 2\ncrc32c 1\n", &(ls_manifest){0}), LS_CORRUPT);
  ls_manifest_free(&m);
}

/* ------------------------------------------------------------------------
** Files.
*/

static int open_dir(const char *path) {
  int fd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  return fd;
}

/* Write bytes to dir/name (plain POSIX, for setting up bad files). */
static void put_file(const char *dir, const char *name, const void *data, size_t len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK_U64(write(fd, data, len), len);
  close(fd);
}

/* Contents of dir/name (malloc'ed, *len set) or NULL. */
static char *get_file(const char *dir, const char *name, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return NULL;
  struct stat st;
  fstat(fd, &st);
  char *buf = unit_xmalloc((size_t)st.st_size);
  *len = (size_t)read(fd, buf, (size_t)st.st_size);
  close(fd);
  return buf;
}

static int file_exists(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  struct stat st;
  return lstat(path, &st) == 0;
}

static void t_file_roundtrip(void) {
  const char *dir = unit_tmpdir();
  int dfd = open_dir(dir);
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  if (!io) return;
  ls_manifest m;
  memset(&m, 0, sizeof m);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_NOTFOUND);     /* none yet */

  uint64_t rng = unit_seed("manifest file");
  ls_manifest a = make_manifest(10, &rng), b = make_manifest(100, &rng);
  CHECK_RC(ls_manifest_write(io, dfd, &a), LS_OK);
  CHECK(!file_exists(dir, "MANIFEST.tmp"));
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  /* The file holds exactly the formatted text. */
  size_t flen = 0, tlen = 0;
  char *file = get_file(dir, "MANIFEST", &flen);
  char *text = ls_manifest_format(&a, &tlen);
  CHECK(file != NULL);
  CHECK_U64(flen, tlen);
  if (file && flen == tlen) CHECK_MEM(file, text, tlen);
  free(file);
  free(text);

  /* Overwrite with a larger, then a smaller manifest. */
  CHECK_RC(ls_manifest_write(io, dfd, &b), LS_OK);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &b);
  ls_manifest_free(&m);
  CHECK_RC(ls_manifest_write(io, dfd, &a), LS_OK);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  /* Repeated writes of the same manifest. */
  for (int i = 0; i < 20; i++) {
    a.seq_floor = (uint64_t)i * 1000;
    CHECK_RC(ls_manifest_write(io, dfd, &a), LS_OK);
  }
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  CHECK(!file_exists(dir, "MANIFEST.tmp"));

  ls_manifest_free(&a);
  ls_manifest_free(&b);
  ls_io_destroy(io);
  close(dfd);
}

static void t_file_bad(void) {
  const char *dir = unit_tmpdir();
  int dfd = open_dir(dir);
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  if (!io) return;
  ls_manifest m;
  memset(&m, 0, sizeof m);
  /* Garbage, empty, truncated, wrong version. */
  put_file(dir, "MANIFEST", "garbage\x01\x02\n", 10);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_CORRUPT);
  put_file(dir, "MANIFEST", "", 0);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_CORRUPT);
  uint8_t junk[8192];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 7 + 3);
  put_file(dir, "MANIFEST", junk, sizeof junk);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_CORRUPT);
  uint64_t rng = 9;
  ls_manifest a = make_manifest(4, &rng);
  size_t len;
  char *text = ls_manifest_format(&a, &len);
  put_file(dir, "MANIFEST", text, len - 3);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_CORRUPT);
  put_file(dir, "MANIFEST", text, len);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  free(text);
  a.version = 4;
  text = ls_manifest_format(&a, &len);
  put_file(dir, "MANIFEST", text, len);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_FORMAT);
  free(text);
  a.version = LS_FORMAT_VERSION;
  /* A corrupt manifest is replaced by a write. */
  CHECK_RC(ls_manifest_write(io, dfd, &a), LS_OK);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  ls_manifest_free(&a);
  ls_io_destroy(io);
  close(dfd);
}

/* A MANIFEST.tmp left by a crash is ignored by reads and replaced by
** writes. */
static void t_file_leftover_tmp(void) {
  const char *dir = unit_tmpdir();
  int dfd = open_dir(dir);
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  if (!io) return;
  uint64_t rng = 21;
  ls_manifest a = make_manifest(3, &rng), b = make_manifest(7, &rng), m;
  memset(&m, 0, sizeof m);
  /* Only a tmp file: there is no manifest. */
  size_t blen;
  char *btext = ls_manifest_format(&b, &blen);
  put_file(dir, "MANIFEST.tmp", btext, blen);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_NOTFOUND);
  /* A write with a (valid) tmp left over. */
  CHECK_RC(ls_manifest_write(io, dfd, &a), LS_OK);
  CHECK(!file_exists(dir, "MANIFEST.tmp"));
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  /* A garbage tmp beside a good manifest: reads see the manifest. */
  put_file(dir, "MANIFEST.tmp", "half a manif", 12);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  /* A larger leftover tmp than the new manifest: no stale tail survives. */
  char big[65536];
  memset(big, 'z', sizeof big);
  put_file(dir, "MANIFEST.tmp", big, sizeof big);
  CHECK_RC(ls_manifest_write(io, dfd, &b), LS_OK);
  CHECK(!file_exists(dir, "MANIFEST.tmp"));
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &b);
  ls_manifest_free(&m);
  size_t flen = 0;
  char *file = get_file(dir, "MANIFEST", &flen);
  CHECK_U64(flen, blen);
  free(file);
  /* A read-only tmp left over (different owner mode) is replaced too. */
  put_file(dir, "MANIFEST.tmp", "x", 1);
  char path[4096];
  snprintf(path, sizeof path, "%s/MANIFEST.tmp", dir);
  chmod(path, 0400);
  CHECK_RC(ls_manifest_write(io, dfd, &a), LS_OK);
  CHECK_RC(ls_manifest_read(io, dfd, &m), LS_OK);
  check_manifest_equal(&m, &a);
  ls_manifest_free(&m);
  free(btext);
  ls_manifest_free(&a);
  ls_manifest_free(&b);
  ls_io_destroy(io);
  close(dfd);
}

int main(void) {
  RUN(t_roundtrip_counts);
  RUN(t_roundtrip_names);
  RUN(t_copy_lookup);
  RUN(t_reject_crc);
  RUN(t_reject_changed_bytes);
  RUN(t_reject_truncated);
  RUN(t_reject_structure);
  RUN(t_reject_version);
  RUN(t_reject_strict_grammar);
  RUN(t_last_file_size);
  RUN(t_file_roundtrip);
  RUN(t_file_bad);
  RUN(t_file_leftover_tmp);
  return unit_finish();
}
