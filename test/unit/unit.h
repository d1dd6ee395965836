/*
** unit.h -- a tiny harness for the engine's C unit tests.
**
** A test program defines test functions and calls RUN(fn) for each from
** main(), then returns unit_finish().  A test fails when any CHECK in it
** fails; a failing CHECK prints the file, line, what was expected and what
** was got.  unit_finish() prints the closing line "N passed, N failed"
** (counting test functions) and returns the exit status.
**
** Tests that need a directory call unit_tmpdir(), which makes a fresh one
** (removed by unit_finish() unless LOGSTOR_KEEP_TMP is set).
*/
#ifndef LS_UNIT_H
#define LS_UNIT_H

#include <stdint.h>
#include <stdio.h>
#include <inttypes.h>

extern int unit_failed_checks;      /* failed checks in the current test */

void unit_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void unit_run(const char *name, void (*fn)(void));
int unit_finish(void);

/* Fresh empty directory for this test; path valid until unit_finish(). */
const char *unit_tmpdir(void);
/* rm -rf path (no symlink following). */
void unit_rmtree(const char *path);
/* Copy the files of directory from into directory to (made if needed),
** except LOCK; a failed CHECK if one can not be copied. */
void unit_copy_dir(const char *from, const char *to);

/* Engine helpers shared by the test programs. */
#include "logstor.h"
/* ls_check of every table: a failed check unless it reports "ok". */
void unit_check_ok(ls_engine *e);
/* The engine's counters now. */
ls_stats unit_stats(ls_engine *e);
/* Open (creating) dir with these sizes (0: default), manual_cleaning and
** compaction policy (0: default); a failed CHECK when it does not open. */
ls_engine *unit_open(const char *dir, uint64_t seg, uint64_t file, uint64_t disk, int manual, int policy);
/* Put key -> val of len bytes (val NULL: delete key) in its own
** transaction; unit_puts takes a string.  The commit's result. */
int unit_put(ls_engine *e, uint32_t table, const char *key, const void *val, uint32_t len);
int unit_puts(ls_engine *e, uint32_t table, const char *key, const char *val);
/* The committed value of key as a string: "" if absent, "ERROR ..." on
** an error (a static buffer, valid until the next call). */
const char *unit_gets(ls_engine *e, uint32_t table, const char *key);
/* Seed from $LOGSTOR_SEED or the clock; printed so a failure can be rerun. */
uint64_t unit_seed(const char *what);
/* xorshift64* generator. */
uint64_t unit_rand(uint64_t *state);

#define RUN(fn) unit_run(#fn, fn)

#define CHECK(expr) do { if (!(expr)) \
  unit_fail(__FILE__, __LINE__, "CHECK(%s) failed", #expr); } while (0)

#define CHECK_INT(got, want) do { long long g_ = (long long)(got), w_ = (long long)(want); \
  if (g_ != w_) unit_fail(__FILE__, __LINE__, "%s: expected %lld, got %lld", #got, w_, g_); } while (0)

#define CHECK_U64(got, want) do { uint64_t g_ = (uint64_t)(got), w_ = (uint64_t)(want); \
  if (g_ != w_) unit_fail(__FILE__, __LINE__, "%s: expected %" PRIu64 ", got %" PRIu64, #got, w_, g_); } while (0)

/* An LS_* result code, printed with its message when it differs. */
#define CHECK_RC(got, want) do { int g_ = (got), w_ = (want); \
  if (g_ != w_) unit_fail(__FILE__, __LINE__, "%s: expected %d (%s), got %d (%s): %s", #got, \
                          w_, ls_strerror(w_), g_, ls_strerror(g_), ls_errmsg()); } while (0)

#define CHECK_MEM(got, want, n) do { if (memcmp((got), (want), (n)) != 0) \
  unit_fail(__FILE__, __LINE__, "%s differs from %s over %zu bytes", #got, #want, (size_t)(n)); } while (0)

#endif
