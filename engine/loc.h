/*
** loc.h -- the 64-bit word an index entry holds: where a record is.
**
**   bits  0..23  segment id          (up to 2^24 segments)
**   bits 24..40  offset in segment / 8  (segments up to 1 MiB)
**   bits 41..57  record size / 8        (records up to 1 MiB)
**   bit  58      tombstone: the record is a delete
**   bits 59..63  reserved (0)
**
** A word of 0 is never a valid location (size is at least one header).
** Two words name the same record when their location bits are equal; the
** other bits are properties of the entry.
*/
#ifndef LS_LOC_H
#define LS_LOC_H

#include <stdint.h>

#define LOC_SEG_BITS   24
#define LOC_MAX_SEGS   (1u << LOC_SEG_BITS)
#define LOC_TOMB       (1ull << 58)
#define LOC_MASK       ((1ull << 58) - 1)

static inline uint64_t loc_make(uint32_t seg, uint32_t off, uint32_t size, int tomb) {
  return (uint64_t)seg | ((uint64_t)(off >> 3) << 24) | ((uint64_t)(size >> 3) << 41) |
         (tomb ? LOC_TOMB : 0);
}
static inline uint32_t loc_seg(uint64_t w) { return (uint32_t)(w & (LOC_MAX_SEGS - 1)); }
static inline uint32_t loc_off(uint64_t w) { return (uint32_t)((w >> 24) & 0x1ffff) << 3; }
static inline uint32_t loc_size(uint64_t w) { return (uint32_t)((w >> 41) & 0x1ffff) << 3; }
static inline int loc_tomb(uint64_t w) { return (w & LOC_TOMB) != 0; }
static inline int loc_same(uint64_t a, uint64_t b) { return (a & LOC_MASK) == (b & LOC_MASK); }

#endif
