/*
** ls_int.h -- definitions shared by the engine's modules.
**
** Error reporting: a failing function sets a message with ls_err() and
** returns the code; the message is kept per thread and read back with
** ls_errmsg().  An I/O failure also records its cause (LS_CAUSE_*, read
** back with ls_errcause()), so that callers map codes from causes, never
** from the words of a message.  Corruption goes through ls_corrupt() so
** that one breakpoint catches every detected case (like SQLite's
** SQLITE_CORRUPT_BKPT).
**
** Asserts (assert.h) check state transitions and invariants; they are
** compiled into the test builds (ASan, TSan) and out of the release build
** (-DNDEBUG).
*/
#ifndef LS_INT_H
#define LS_INT_H

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include "logstor.h"

#define LS_UNUSED(x) ((void)(x))

#if defined(__GNUC__)
# define LS_PRINTF(a, b) __attribute__((format(printf, a, b)))
# define LS_LIKELY(x)   __builtin_expect(!!(x), 1)
# define LS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
# define LS_PRINTF(a, b)
# define LS_LIKELY(x)   (x)
# define LS_UNLIKELY(x) (x)
#endif

/* Set this thread's error message (cause LS_CAUSE_NONE) and return rc. */
int ls_err(int rc, const char *fmt, ...) LS_PRINTF(2, 3);
/* Prefix the current message with "prefix: " (keeps rc). */
int ls_err_prefix(int rc, const char *fmt, ...) LS_PRINTF(2, 3);
/* Report corruption: sets the message and returns LS_CORRUPT.  Set a
** breakpoint on ls_corrupt_bkpt to stop at every detected corruption. */
int ls_corrupt_bkpt(int line, const char *fmt, ...) LS_PRINTF(2, 3);
#define ls_corrupt(...) ls_corrupt_bkpt(__LINE__, __VA_ARGS__)
/* Map -errno from an I/O call to LS_IOERR / LS_FULL / LS_NOMEM with a
** message "what: strerror" and the cause (LS_CAUSE_*) of the failure. */
int ls_err_io(int neg_errno, int cause, const char *fmt, ...) LS_PRINTF(3, 4);

/* A thread's error (message and cause), carried to another thread: the
** writer fails a caller's commit with the error it met itself. */
typedef struct ls_error {
  int cause;                       /* LS_CAUSE_* */
  char msg[256];
} ls_error;
/* Copy this thread's error into *to. */
void ls_err_save(ls_error *to);
/* Make *from this thread's error; returns rc. */
int ls_err_restore(int rc, const ls_error *from);

/* Make room for need elements of elem bytes in the array *arr of *cap
** elements: the capacity doubles, starting at first.  LS_OK, or LS_NOMEM
** with *arr and *cap unchanged (no message: the caller says what failed).
** LS_GROW works for a capacity of any unsigned type. */
int ls_grow(void **arr, uint64_t *cap, uint64_t need, size_t elem, uint64_t first);
#define LS_GROW(arr, cap, need, first) __extension__({                     \
    uint64_t cap_ = (cap);                                                 \
    int rc_ = ls_grow((void **)&(arr), &cap_, (need), sizeof *(arr), (first)); \
    (cap) = (__typeof__(cap))cap_;                                         \
    rc_; })

/* CRC32C (Castagnoli), hardware-accelerated where the CPU allows. */
uint32_t ls_crc32c(uint32_t crc, const void *data, size_t len);

/* RIPEMD-160 of data (libgcrypt, initialised once, thread-safely). */
void ls_digest(const void *data, size_t len, uint8_t out[20]);
/* Initialise libgcrypt if nobody has; safe to call repeatedly. */
void ls_hash_init(void);

/* Little-endian load/store for on-disk integers. */
static inline void ls_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void ls_put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline void ls_put64(uint8_t *p, uint64_t v) { ls_put32(p, (uint32_t)v); ls_put32(p + 4, (uint32_t)(v >> 32)); }
static inline uint16_t ls_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ls_get32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ls_get64(const uint8_t *p) { return (uint64_t)ls_get32(p) | ((uint64_t)ls_get32(p + 4) << 32); }
static inline uint64_t ls_getbe64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static inline uint64_t ls_align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

/* Monotonic clock in nanoseconds. */
uint64_t ls_now_ns(void);

/* Allocation of I/O buffers aligned to 4096 bytes. */
void *ls_alloc_aligned(size_t size);

/* Append one formatted line (at most 767 bytes, newline added) to the
** heap string *text of *len bytes.  On out of memory the line is lost. */
void ls_vappend_line(char **text, size_t *len, const char *fmt, va_list ap) LS_PRINTF(3, 0);

#endif /* LS_INT_H */
