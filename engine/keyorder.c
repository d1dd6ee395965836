/*
** keyorder.c -- the order and positions of typed keys (keyorder.h).
*/
#include "keyorder.h"
#include "ls_int.h"
#include "logstor.h"

#include <math.h>
#include <string.h>

#define TAG_INT  1
#define TAG_REAL 2
#define TAG_TEXT 3
#define TAG_BLOB 4

enum { CLASS_NUMBER, CLASS_TEXT, CLASS_BLOB, CLASS_OTHER };

static int class_of(const uint8_t *k, uint32_t len) {
  if (len == 9 && (k[0] == TAG_INT || k[0] == TAG_REAL)) return CLASS_NUMBER;
  if (len >= 1 && k[0] == TAG_TEXT) return CLASS_TEXT;
  if (len >= 1 && k[0] == TAG_BLOB) return CLASS_BLOB;
  return CLASS_OTHER;
}

static double real_of(const uint8_t *k) {
  uint64_t bits = ls_getbe64(k + 1);
  double d;
  memcpy(&d, &bits, 8);
  return d;
}

/* Compare an integer with a double by value (SQLite's order; NaN, which
** SQLite never stores, is below every number). */
static int int_real_cmp(int64_t i, double d) {
  if (isnan(d)) return 1;
  if (d < -9223372036854775808.0) return 1;
  if (d >= 9223372036854775808.0) return -1;
  int64_t t = (int64_t)d;          /* truncation toward zero, exact in range */
  if (i != t) return i < t ? -1 : 1;
  double frac = d - (double)t;
  return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int real_cmp(double a, double b) {
  if (isnan(a)) return isnan(b) ? 0 : -1;
  if (isnan(b)) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

static int number_cmp(const uint8_t *a, const uint8_t *b) {
  if (a[0] == TAG_INT && b[0] == TAG_INT) {
    int64_t x = (int64_t)ls_getbe64(a + 1), y = (int64_t)ls_getbe64(b + 1);
    return x < y ? -1 : x > y;
  }
  if (a[0] == TAG_INT) return int_real_cmp((int64_t)ls_getbe64(a + 1), real_of(b));
  if (b[0] == TAG_INT) return -int_real_cmp((int64_t)ls_getbe64(b + 1), real_of(a));
  return real_cmp(real_of(a), real_of(b));
}

static int bytes_cmp(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen) {
  int c = memcmp(a, b, alen < blen ? alen : blen);
  if (c) return c < 0 ? -1 : 1;
  return alen < blen ? -1 : alen > blen;
}

int ko_compare(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen) {
  int ca = class_of(a, alen), cb = class_of(b, blen);
  if (ca != cb) return ca < cb ? -1 : 1;
  if (ca == CLASS_NUMBER) {
    int c = number_cmp(a, b);
    if (c) return c;               /* equal values: by the bytes below */
  }
  return bytes_cmp(a, alen, b, blen);
}

/* The first 8 bytes after the tag, zero-padded, big-endian. */
static uint64_t prefix64(const uint8_t *k, uint32_t len) {
  uint8_t p[8] = {0};
  memcpy(p, k + 1, len - 1 < 8 ? len - 1 : 8);
  return ls_getbe64(p);
}

/* Positions (keyorder.h):
**   [0, 2^60)              integers below -2^62, four to a position
**   [2^60, 0xD000...)      integers from -2^62 up, one each (2^60 + v + 2^62)
**   [0xD000.., 0xE000..)   TEXT by its first 60 bits
**   [0xE000.., 0xF000..)   BLOB by its first 60 bits
**   [0xF000.., 2^64)       other keys by their first 60 bits
** A REAL has the position of its floor (reals beyond the 64-bit range that
** of the smallest or largest integer). */
#define EXACT_LO (-(1ll << 62))
#define POS_TEXT  0xD000000000000000ull
#define POS_BLOB  0xE000000000000000ull
#define POS_OTHER 0xF000000000000000ull

static uint64_t int_position(int64_t v) {
  if (v < EXACT_LO) return ((uint64_t)v ^ (1ull << 63)) >> 2;
  return (1ull << 60) + (uint64_t)(v - EXACT_LO);
}

uint64_t ko_position(const uint8_t *key, uint32_t len) {
  switch (class_of(key, len)) {
  case CLASS_NUMBER:
    if (key[0] == TAG_INT) return int_position((int64_t)ls_getbe64(key + 1));
    double d = floor(real_of(key));
    if (isnan(d) || d < -9223372036854775808.0) return 0;
    if (d >= 9223372036854775808.0) return int_position(INT64_MAX);
    return int_position((int64_t)d);
  case CLASS_TEXT:
    return POS_TEXT | prefix64(key, len) >> 4;
  case CLASS_BLOB:
    return POS_BLOB | prefix64(key, len) >> 4;
  default: {
    uint8_t p[8] = {0};
    memcpy(p, key, len < 8 ? len : 8);
    return POS_OTHER | ls_getbe64(p) >> 4;
  }
  }
}

int64_t ls_key_position(const void *data, uint32_t len) { return idx_key_token(ko_position(data, len)); }

int ls_key_compare(const void *a, uint32_t alen, const void *b, uint32_t blen) { return ko_compare(a, alen, b, blen); }

void idx_key_of(idx_key *k, int order, const void *key, uint32_t len, const uint8_t digest[20]) {
  if (order != KO_KEY) {
    idx_key_from_digest(k, digest);
    return;
  }
  k->hi = ko_position(key, len);
  k->lo = ls_getbe64(digest);
}
