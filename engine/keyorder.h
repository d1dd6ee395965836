/*
** keyorder.h -- the order of keys in a key-ordered table (order='key').
**
** A key-ordered table's keys are typed keys, the bytes the SQLite module
** makes of a key value (ext/record.c):
**     0x01 + 8-byte big-endian two's complement   INTEGER
**     0x02 + 8-byte big-endian IEEE-754            REAL
**     0x03 + bytes                                 TEXT
**     0x04 + bytes                                 BLOB
** ordered as SQLite orders them: numbers (INTEGER and REAL compared by
** value) before TEXT before BLOB, TEXT and BLOB by memcmp then length.
** Any other byte string is a key too, after all typed keys, by its bytes:
** the order is total and two different byte strings never compare equal.
**
** A key's position (ko_position: the hi of its index key, idx_key_of) is
** a 64-bit summary of it that never contradicts the order: a < b implies
** position(a) <= position(b).  Integers from -2^62 up (to INT64_MAX: random
** positive 63-bit keys, sequences) have positions of their own, those below
** share one among four; a REAL shares the position of its floor; TEXT and
** BLOB keys share a position when their first 60 bits of bytes agree.  Keys
** that share a position are ordered by ko_compare where order matters (the
** cursor).
**
** Layer: the bottom (engine/README.md); calls index.h for idx_key.
*/
#ifndef LS_KEYORDER_H
#define LS_KEYORDER_H

#include <stdint.h>

#include "index.h"

/* Table orders (ls_table.order, the manifest). */
#define KO_TOKEN 0                 /* by the digest's token (hash order) */
#define KO_KEY   1                 /* by the key (above) */

uint64_t ko_position(const uint8_t *key, uint32_t len);
/* <0, 0, >0 as a is before, equal to, after b. */
int ko_compare(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);

/* The index key of a key of a table of this order: token order, hi and lo
** from the digest (idx_key_from_digest); key order, hi the position and lo
** the first 8 digest bytes (the digest still tells keys apart). */
void idx_key_of(idx_key *k, int order, const void *key, uint32_t len, const uint8_t digest[20]);

#endif /* LS_KEYORDER_H */
