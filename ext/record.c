/*
** record.c -- how SQLite values become engine keys and values.
**
** Affinity.  Column types follow SQLite's rules (INT -> INTEGER; CHAR,
** CLOB, TEXT -> TEXT; BLOB or no type -> BLOB; REAL, FLOA, DOUB -> REAL;
** anything else NUMERIC), and each value is converted as a native table
** would convert it on INSERT: '5' into an INTEGER column is the integer 5.
**
** Keys.  The key column's value, after affinity, is encoded canonically so
** that values SQLite considers equal are the same key:
**     0x01 + 8-byte big-endian integer   INTEGER, and REAL values that are
**                                        integers within 64 bits (1.0, -0.0)
**     0x02 + 8-byte big-endian IEEE-754  other REAL values
**     0x03 + bytes                       TEXT (UTF-8)
**     0x04 + bytes                       BLOB
** NULL is not a key.  The token is computed from these bytes.
**
** Rows.  The engine value of a row is a record of all declared columns:
**     uvarint(header bytes) uvarint(type)... payload...
** with unsigned LEB128 varints and SQLite's serial types (0 NULL, 1-6
** big-endian integers of 1, 2, 3, 4, 6, 8 bytes, 7 REAL, 8 and 9 the
** integers 0 and 1, 12+2n a BLOB of n bytes, 13+2n a TEXT of n bytes), plus
** type 10: "the key column; read it from the key".  The key column is
** stored explicitly only when decoding the key would not give back the
** exact value (a REAL 1.0 in an untyped column, -0.0 in a REAL column).
*/
#include "logstor_int.h"

#include <math.h>
#include <string.h>

#define TAG_INT 1
#define TAG_REAL 2
#define TAG_TEXT 3
#define TAG_BLOB 4
#define ST_KEY 10

int lsx_buf_reserve(lsx_buf *b, size_t more) {
  if (b->n + more <= b->cap) return SQLITE_OK;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->n + more) cap *= 2;
  uint8_t *p = sqlite3_realloc64(b->p, cap);
  if (!p) return SQLITE_NOMEM;
  b->p = p;
  b->cap = cap;
  return SQLITE_OK;
}

void lsx_buf_free(lsx_buf *b) {
  sqlite3_free(b->p);
  memset(b, 0, sizeof *b);
}

static int has(const char *type, const char *sub) {
  size_t n = strlen(sub);
  for (const char *p = type; *p; p++)
    if (!sqlite3_strnicmp(p, sub, (int)n)) return 1;
  return 0;
}

int lsx_affinity(const char *type) {
  if (has(type, "INT")) return AFF_INTEGER;
  if (has(type, "CHAR") || has(type, "CLOB") || has(type, "TEXT")) return AFF_TEXT;
  if (!*type || has(type, "BLOB")) return AFF_BLOB;
  if (has(type, "REAL") || has(type, "FLOA") || has(type, "DOUB")) return AFF_REAL;
  return AFF_NUMERIC;
}

/* An integral double within 64-bit range: its integer. */
static int real_as_int(double d, sqlite3_int64 *out) {
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return 0;
  sqlite3_int64 i = (sqlite3_int64)d;
  if ((double)i != d) return 0;
  *out = i;
  return 1;
}

/* The value v as a column of affinity aff stores it: returns its type and
** fills the matching output.  *tmp receives a value to free (or NULL). */
typedef struct aval {
  int type;
  sqlite3_int64 i;
  double d;
  const uint8_t *p;
  int n;
  sqlite3_value *tmp;
} aval;

static int apply_affinity(sqlite3_value *v, int aff, aval *a) {
  memset(a, 0, sizeof *a);
  int t = sqlite3_value_type(v);
  if (t == SQLITE_TEXT && (aff == AFF_INTEGER || aff == AFF_NUMERIC || aff == AFF_REAL)) {
    /* Numeric affinity converts text that looks like a number. */
    a->tmp = sqlite3_value_dup(v);
    if (!a->tmp) return SQLITE_NOMEM;
    t = sqlite3_value_numeric_type(a->tmp);
    v = a->tmp;
  }
  if ((t == SQLITE_INTEGER || t == SQLITE_FLOAT) && aff == AFF_TEXT) {
    a->type = SQLITE_TEXT;
    a->p = sqlite3_value_text(v);
    a->n = sqlite3_value_bytes(v);
    if (!a->p) return SQLITE_NOMEM;
    return SQLITE_OK;
  }
  switch (t) {
    case SQLITE_INTEGER:
      a->i = sqlite3_value_int64(v);
      if (aff == AFF_REAL) { a->type = SQLITE_FLOAT; a->d = (double)a->i; }
      else a->type = SQLITE_INTEGER;
      break;
    case SQLITE_FLOAT:
      a->d = sqlite3_value_double(v);
      a->type = SQLITE_FLOAT;
      /* As SQLite: only reals strictly inside the 64-bit range become
      ** integers (-2^63 stays REAL). */
      if ((aff == AFF_INTEGER || aff == AFF_NUMERIC) && a->d > -9223372036854775808.0 && real_as_int(a->d, &a->i))
        a->type = SQLITE_INTEGER;
      break;
    case SQLITE_TEXT:
      a->type = SQLITE_TEXT;
      a->p = sqlite3_value_text(v);
      a->n = sqlite3_value_bytes(v);
      if (!a->p) return SQLITE_NOMEM;
      break;
    case SQLITE_BLOB:
      a->type = SQLITE_BLOB;
      a->p = sqlite3_value_blob(v);
      a->n = sqlite3_value_bytes(v);
      break;
    default:
      a->type = SQLITE_NULL;
  }
  return SQLITE_OK;
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}

static uint64_t get_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

int lsx_key_encode(sqlite3_value *v, int aff, lsx_buf *out) {
  aval a;
  out->n = 0;
  int rc = apply_affinity(v, aff, &a);
  if (rc) return rc;
  sqlite3_int64 i;
  switch (a.type) {
    case SQLITE_NULL:
      rc = SQLITE_CONSTRAINT_NOTNULL;
      break;
    case SQLITE_FLOAT:
      if (real_as_int(a.d, &i)) { a.type = SQLITE_INTEGER; a.i = i; }
      /* fall through */
    case SQLITE_INTEGER:
      if (!(rc = lsx_buf_reserve(out, 9))) {
        uint64_t bits;
        if (a.type == SQLITE_INTEGER) { out->p[0] = TAG_INT; bits = (uint64_t)a.i; }
        else { out->p[0] = TAG_REAL; memcpy(&bits, &a.d, 8); }
        put_be64(out->p + 1, bits);
        out->n = 9;
      }
      break;
    default:
      if ((size_t)a.n + 1 > LS_MAX_KEY) { rc = SQLITE_TOOBIG; break; }
      if (!(rc = lsx_buf_reserve(out, (size_t)a.n + 1))) {
        out->p[0] = a.type == SQLITE_TEXT ? TAG_TEXT : TAG_BLOB;
        if (a.n) memcpy(out->p + 1, a.p, (size_t)a.n);
        out->n = (size_t)a.n + 1;
      }
  }
  sqlite3_value_free(a.tmp);
  return rc;
}

int lsx_key_exact(int aff, const uint8_t *key, uint32_t len) {
  if (aff == AFF_TEXT) return 1;
  if (aff != AFF_INTEGER && aff != AFF_NUMERIC) return 0;
  /* The integer key -2^63 is also the key of the REAL -9223372036854775808.0,
  ** which the column keeps as a REAL (SQLite converts only reals strictly
  ** inside the 64-bit range): only the row knows which one was stored. */
  return !(len == 9 && key[0] == TAG_INT && key[1] == 0x80 && !memcmp(key + 2, "\0\0\0\0\0\0\0", 7));
}

int64_t lsx_token(const ls_vtab *t, const ls_key *k) {
  return t->keyed ? ls_key_position(k->data, k->len) : ls_key_token(k);
}

void lsx_key_set(ls_vtab *t, const uint8_t *key, uint32_t len, ls_key *k) {
  if (len && len == t->last_len && !memcmp(key, t->last_key, len)) {
    k->data = key;
    k->len = len;
    memcpy(k->digest, t->last_digest, 20);
    return;
  }
  ls_key_set(k, key, len);
  if (len <= sizeof t->last_key) {
    memcpy(t->last_key, key, len);
    memcpy(t->last_digest, k->digest, 20);
    t->last_len = len;
  }
}

int lsx_key_result(sqlite3_context *ctx, const uint8_t *key, uint32_t len, int aff) {
  if (len < 1) return SQLITE_CORRUPT_VTAB;
  switch (key[0]) {
    case TAG_INT:
      if (len != 9) return SQLITE_CORRUPT_VTAB;
      if (aff == AFF_REAL) sqlite3_result_double(ctx, (double)(sqlite3_int64)get_be(key + 1, 8));
      else sqlite3_result_int64(ctx, (sqlite3_int64)get_be(key + 1, 8));
      return SQLITE_OK;
    case TAG_REAL: {
      if (len != 9) return SQLITE_CORRUPT_VTAB;
      uint64_t bits = get_be(key + 1, 8);
      double d;
      memcpy(&d, &bits, 8);
      sqlite3_result_double(ctx, d);
      return SQLITE_OK;
    }
    case TAG_TEXT: sqlite3_result_text(ctx, (const char *)key + 1, (int)len - 1, SQLITE_TRANSIENT); return SQLITE_OK;
    case TAG_BLOB: sqlite3_result_blob(ctx, key + 1, (int)len - 1, SQLITE_TRANSIENT); return SQLITE_OK;
    default: return SQLITE_CORRUPT_VTAB;
  }
}

/* ---- rows ----------------------------------------------------------------- */

static int uvarint_len(uint64_t v) {
  int n = 1;
  while (v >= 0x80) { v >>= 7; n++; }
  return n;
}

static uint8_t *put_uvarint(uint8_t *p, uint64_t v) {
  while (v >= 0x80) { *p++ = (uint8_t)(v | 0x80); v >>= 7; }
  *p++ = (uint8_t)v;
  return p;
}

/* Read a varint from [p, end); NULL if malformed. */
static const uint8_t *get_uvarint(const uint8_t *p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    uint8_t b = *p++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *v = r; return p; }
  }
  return NULL;
}

/* Serial type and payload size of an integer. */
static uint64_t int_type(sqlite3_int64 i, int *size) {
  if (i == 0) { *size = 0; return 8; }
  if (i == 1) { *size = 0; return 9; }
  uint64_t u = i < 0 ? ~(uint64_t)i : (uint64_t)i;
  if (u <= 0x7f) { *size = 1; return 1; }
  if (u <= 0x7fff) { *size = 2; return 2; }
  if (u <= 0x7fffff) { *size = 3; return 3; }
  if (u <= 0x7fffffff) { *size = 4; return 4; }
  if (u <= 0x7fffffffffffLL) { *size = 6; return 5; }
  *size = 8;
  return 6;
}

static int payload_size(uint64_t st) {
  static const int sizes[] = { 0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0 };
  return st < 12 ? sizes[st] : (int)((st - 12) / 2);
}

/* Does decoding the key (with the column's affinity) give a back exactly? */
static int key_gives_back(const aval *a, int aff) {
  if (a->type == SQLITE_FLOAT) {
    sqlite3_int64 i;
    if (!real_as_int(a->d, &i)) return 1;          /* stored as REAL: exact */
    if (aff != AFF_REAL) return 0;                  /* comes back an INTEGER */
    return !(a->d == 0 && signbit(a->d));           /* -0.0 comes back 0.0 */
  }
  return 1;
}

/* Locate the columns of a row record: serial type and payload of each.
** Returns SQLITE_OK or SQLITE_CORRUPT_VTAB. */
static int row_parse(const uint8_t *row, uint32_t len, int ncol, uint64_t *types, const uint8_t **body) {
  const uint8_t *end = row + len;
  uint64_t hlen;
  const uint8_t *h = get_uvarint(row, end, &hlen);
  if (!h || hlen > len) return SQLITE_CORRUPT_VTAB;
  const uint8_t *hend = row + hlen, *b = hend;
  for (int c = 0; c < ncol; c++) {
    h = get_uvarint(h, hend, &types[c]);
    if (!h || types[c] == 11) return SQLITE_CORRUPT_VTAB;
    int size = payload_size(types[c]);
    if ((size_t)size > (size_t)(end - b)) return SQLITE_CORRUPT_VTAB;
    body[c] = b;
    b += size;
  }
  return SQLITE_OK;
}

int lsx_row_encode(ls_vtab *t, sqlite3_value **argv, const uint8_t *old, uint32_t oldlen, lsx_buf *out) {
  int n = t->ncol;
  /* Work arrays: the affinity-applied values, the types, and the old
  ** row's types and payloads. */
  if (!t->enc) t->enc = sqlite3_malloc(n * (int)(sizeof(aval) + 2 * sizeof(uint64_t) + sizeof(uint8_t *)));
  aval *a = t->enc;
  if (!a) return SQLITE_NOMEM;
  uint64_t *types = (uint64_t *)(a + n), *otypes = types + n;
  const uint8_t **obody = (const uint8_t **)(otypes + n);
  for (int c = 0; c < n; c++) a[c].tmp = NULL;
  int rc = old ? row_parse(old, oldlen, n, otypes, obody) : SQLITE_OK;
  size_t hdr = 0, body = 0;
  for (int c = 0; c < n && !rc; c++) {
    int size = 0;
    if (sqlite3_value_nochange(argv[c])) {
      if (!old) { rc = SQLITE_CORRUPT_VTAB; break; }
      types[c] = otypes[c];
      size = payload_size(types[c]);
      a[c].type = -1;                               /* copied from old */
    } else {
      rc = apply_affinity(argv[c], t->aff[c], &a[c]);
      if (rc) break;
      if (c == t->pk && key_gives_back(&a[c], t->aff[c])) {
        types[c] = ST_KEY;
      } else {
        switch (a[c].type) {
          case SQLITE_NULL: types[c] = 0; break;
          case SQLITE_INTEGER: types[c] = int_type(a[c].i, &size); break;
          case SQLITE_FLOAT: types[c] = 7; size = 8; break;
          case SQLITE_TEXT: types[c] = 13 + 2 * (uint64_t)a[c].n; size = a[c].n; break;
          default: types[c] = 12 + 2 * (uint64_t)a[c].n; size = a[c].n; break;
        }
      }
    }
    hdr += (size_t)uvarint_len(types[c]);
    body += (size_t)size;
  }
  if (!rc) {
    size_t hlen = hdr + 1;                   /* the header counts its own length */
    while (hdr + (size_t)uvarint_len(hlen) != hlen) hlen = hdr + (size_t)uvarint_len(hlen);
    out->n = 0;
    rc = lsx_buf_reserve(out, hlen + body + 10);
    if (!rc) {
      uint8_t *p = put_uvarint(out->p, hlen);
      for (int c = 0; c < n; c++) p = put_uvarint(p, types[c]);
      for (int c = 0; c < n; c++) {
        uint64_t st = types[c];
        int size = payload_size(st);
        if (a[c].type == -1) {
          if (size) memcpy(p, obody[c], (size_t)size);
          p += size;
        } else if (st >= 1 && st <= 6) {
          uint64_t v = (uint64_t)a[c].i;
          for (int b = size - 1; b >= 0; b--) { p[b] = (uint8_t)v; v >>= 8; }
          p += size;
        } else if (st == 7) {
          uint64_t bits;
          memcpy(&bits, &a[c].d, 8);
          put_be64(p, bits);
          p += 8;
        } else if (st >= 12) {
          if (a[c].n) memcpy(p, a[c].p, (size_t)a[c].n);
          p += a[c].n;
        }
      }
      out->n = (size_t)(p - out->p);
    }
  }
  for (int c = 0; c < n; c++) { sqlite3_value_free(a[c].tmp); a[c].tmp = NULL; }
  return rc;
}

int lsx_row_column(ls_vtab *t, const uint8_t *row, uint32_t len, const uint8_t *key, uint32_t klen,
                   int col, sqlite3_context *ctx) {
  const uint8_t *end = row + len;
  uint64_t hlen;
  const uint8_t *h = get_uvarint(row, end, &hlen);
  if (!h || hlen > len) return SQLITE_CORRUPT_VTAB;
  const uint8_t *hend = row + hlen, *body = hend;
  for (int c = 0; c < t->ncol; c++) {
    uint64_t st;
    h = get_uvarint(h, hend, &st);
    if (!h || st == 11) return SQLITE_CORRUPT_VTAB;
    int size = payload_size(st);
    if ((size_t)size > (size_t)(end - body)) return SQLITE_CORRUPT_VTAB;
    if (c == col) {
      if (st == ST_KEY) return lsx_key_result(ctx, key, klen, t->aff[c]);
      if (st == 0) { sqlite3_result_null(ctx); return SQLITE_OK; }
      if (st == 8 || st == 9) { sqlite3_result_int64(ctx, st == 9); return SQLITE_OK; }
      if (st <= 6) {
        uint64_t v = get_be(body, size);
        if (size < 8 && (v >> (size * 8 - 1)) & 1) v |= ~0ull << (size * 8);   /* sign-extend */
        sqlite3_result_int64(ctx, (sqlite3_int64)v);
        return SQLITE_OK;
      }
      if (st == 7) {
        uint64_t bits = get_be(body, 8);
        double d;
        memcpy(&d, &bits, 8);
        sqlite3_result_double(ctx, d);
        return SQLITE_OK;
      }
      if (st & 1) sqlite3_result_text(ctx, (const char *)body, size, SQLITE_TRANSIENT);
      else sqlite3_result_blob(ctx, body, size, SQLITE_TRANSIENT);
      return SQLITE_OK;
    }
    body += size;
  }
  return SQLITE_CORRUPT_VTAB;
}
