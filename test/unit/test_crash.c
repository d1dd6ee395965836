/*
** test_crash.c -- kill the writer at random points; nothing acknowledged is
** lost, nothing partial appears.
**
** A child process opens the data directory and commits a deterministic
** stream of transactions (puts and deletes over a small key space, now and
** then one larger than a segment, which is streamed with CONT records), and
** writes the number of each acknowledged transaction to a pipe.  The parent
** kills it with SIGKILL after a random number of acknowledgements -- or lets
** the fault backend tear one of its writes (write only a prefix, then exit)
** at a sector boundary -- reads the acknowledgements that made it out, reopens the directory and
** compares every key with a model: the state must be exactly that after
** the last acknowledged transaction A, or after A+1 (the one in flight).
** Iterations continue on the same directory, so recovery of recovered
** directories is exercised too.  Seeds are printed.
*/
#include "unit.h"
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYS 64
#define ITERATIONS 24
#define MAXVAL 1200

typedef struct model { char *val[KEYS]; int len[KEYS]; } model;

static uint64_t g_seed;

/* The rows of transaction i: calls fn for each (key, value or NULL). */
typedef void (*row_fn)(void *arg, int key, const char *val, int len);

static void txn_rows(uint64_t i, row_fn fn, void *arg) {
  uint64_t r = g_seed ^ (i * 0x9E3779B97F4A7C15ULL);
  if (!r) r = 1;
  int big = i % 13 == 7;
  int rows = big ? 40 : 1 + (int)(unit_rand(&r) % 6);
  char val[MAXVAL];
  for (int j = 0; j < rows; j++) {
    int key = (int)(unit_rand(&r) % KEYS);
    if (!big && unit_rand(&r) % 10 == 0) {
      fn(arg, key, NULL, 0);
      continue;
    }
    int len = big ? 700 : 8 + (int)(unit_rand(&r) % 300);
    int n = snprintf(val, sizeof val, "txn %llu row %d ", (unsigned long long)i, j);
    for (int b = n; b < len; b++) val[b] = (char)('a' + (i + (uint64_t)b) % 26);
    fn(arg, key, val, len);
  }
}

static void model_row(void *arg, int key, const char *val, int len) {
  model *m = arg;
  free(m->val[key]);
  m->val[key] = NULL;
  if (val) {
    m->val[key] = malloc((size_t)len);
    memcpy(m->val[key], val, (size_t)len);
  }
  m->len[key] = len;
}

static void model_copy(model *dst, const model *src) {
  for (int k = 0; k < KEYS; k++) {
    dst->len[k] = src->len[k];
    dst->val[k] = NULL;
    if (src->val[k]) {
      dst->val[k] = malloc((size_t)src->len[k]);
      memcpy(dst->val[k], src->val[k], (size_t)src->len[k]);
    }
  }
}

static void model_free(model *m) {
  for (int k = 0; k < KEYS; k++) free(m->val[k]);
  memset(m, 0, sizeof *m);
}

static void key_name(int k, char *buf) { snprintf(buf, 16, "key%03d", k); }

typedef struct child_ctx { ls_txn *x; uint32_t t; int rc; } child_ctx;

static void child_row(void *arg, int key, const char *val, int len) {
  child_ctx *c = arg;
  if (c->rc) return;
  char kb[16];
  key_name(key, kb);
  ls_key k;
  ls_key_set(&k, kb, (uint32_t)strlen(kb));
  c->rc = val ? ls_txn_put(c->x, c->t, &k, val, (uint32_t)len) : ls_txn_delete(c->x, c->t, &k);
}

/* Child: commit transactions from `first` on, acknowledging each. */
static void child_main(const char *dir, uint32_t t, uint64_t first, int fd, const char *fault) {
  ls_options o;
  ls_options_init(&o);
  o.fault = fault;
  ls_engine *e;
  if (ls_open(dir, &o, &e)) _exit(3);
  for (uint64_t i = first;; i++) {
    child_ctx c = { NULL, t, 0 };
    if (ls_txn_begin(e, &c.x)) _exit(4);
    txn_rows(i, child_row, &c);
    if (!c.rc) c.rc = ls_txn_commit(c.x);
    ls_txn_free(c.x);
    if (c.rc) _exit(5);
    if (write(fd, &i, sizeof i) != sizeof i) _exit(6);
  }
}

/* Does the engine hold exactly model m?  verbose: print every difference. */
static int matches(ls_engine *e, uint32_t t, const model *m, int verbose) {
  ls_value v = {0};
  int bad = 0;
  for (int k = 0; k < KEYS && (verbose || !bad); k++) {
    char kb[16];
    key_name(k, kb);
    ls_key key;
    ls_key_set(&key, kb, (uint32_t)strlen(kb));
    int rc = ls_get(e, t, &key, &v);
    int ok = m->val[k] ? rc == LS_OK && v.len == (uint32_t)m->len[k] && !memcmp(v.data, m->val[k], v.len)
                       : rc == LS_NOTFOUND;
    if (!ok) {
      bad++;
      if (verbose)
        printf("     %s: engine %s len %u (%.12s), model %s len %d (%.12s)\n", kb, rc ? "absent" : "row",
               rc ? 0 : v.len, rc ? "" : (const char *)v.data, m->val[k] ? "row" : "absent", m->len[k],
               m->val[k] ? m->val[k] : "");
    }
  }
  ls_value_free(&v);
  return !bad;
}

static void test_kill_loop(void) {
  g_seed = unit_seed("crash workload");
  uint64_t rs = g_seed * 31 + 7;
  const char *dir = unit_tmpdir();
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = 16384;
  o.file_size = 131072;
  ls_engine *e;
  CHECK_RC(ls_open(dir, &o, &e), LS_OK);
  uint32_t t;
  CHECK_RC(ls_table_create(e, "crash", 1, &t), LS_OK);
  ls_close(e);

  model m;                          /* state after every transaction < next */
  memset(&m, 0, sizeof m);
  uint64_t next = 0, total_acks = 0;
  int torn = 0, killed = 0;
  for (int it = 0; it < ITERATIONS && !unit_failed_checks; it++) {
    int p[2];
    CHECK(pipe(p) == 0);
    char fault[64] = "";
    int use_torn = it % 3 == 2;
    /* Tears fall on 512-byte sector boundaries: a sector is written whole
    ** or not at all (the device assumption FORMAT.md states). */
    if (use_torn)
      snprintf(fault, sizeof fault, "write=%d:torn=%d", 1 + (int)(unit_rand(&rs) % 25),
               512 * (int)(unit_rand(&rs) % 16));
    int kill_after = (int)(unit_rand(&rs) % 40);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      child_main(dir, t, next, p[1], fault[0] ? fault : NULL);
    }
    close(p[1]);
    uint64_t last = UINT64_MAX, a;
    int acks = 0;
    while ((use_torn || acks < kill_after) && read(p[0], &a, sizeof a) == sizeof a) { last = a; acks++; }
    if (!use_torn) { kill(pid, SIGKILL); killed++; }
    while (read(p[0], &a, sizeof a) == sizeof a) { last = a; acks++; }
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    if (use_torn) {
      /* The child either tore a write or never reached that write count
      ** before... it always does: it runs until a fault stops it. */
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == LS_FAULT_CRASH_EXIT);
      torn++;
    } else {
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    }
    total_acks += (uint64_t)acks;
    /* Advance the model to the last acknowledged transaction. */
    if (acks) {
      CHECK(last == next + (uint64_t)acks - 1);
      for (uint64_t i = next; i <= last; i++) txn_rows(i, model_row, &m);
      next = last + 1;
    }
    model m1;
    model_copy(&m1, &m);
    txn_rows(next, model_row, &m1);
    CHECK_RC(ls_open(dir, NULL, &e), LS_OK);
    if (!e) { model_free(&m1); break; }
    if (matches(e, t, &m, 0)) {
      /* the transaction in flight did not land */
    } else if (matches(e, t, &m1, 0)) {
      model_free(&m);
      m = m1;
      memset(&m1, 0, sizeof m1);
      next++;
    } else {
      unit_fail(__FILE__, __LINE__, "iteration %d: state is neither after transaction %llu nor after %llu%s%s",
                it, (unsigned long long)next - 1, (unsigned long long)next, fault[0] ? " with fault " : "", fault);
      matches(e, t, &m, 1);
      printf("     against the state after %llu:\n", (unsigned long long)next);
      matches(e, t, &m1, 1);
      printf("     directory: %s\n", dir);
    }
    model_free(&m1);
    char *rep = NULL;
    CHECK_RC(ls_check(e, 0, &rep), LS_OK);
    if (rep && strcmp(rep, "ok")) unit_fail(__FILE__, __LINE__, "iteration %d: ls_check: %s", it, rep);
    free(rep);
    ls_close(e);
  }
  printf("     %d iterations (%d SIGKILL, %d torn writes), %llu acknowledged transactions\n", ITERATIONS,
         killed, torn, (unsigned long long)total_acks);
  CHECK(total_acks > 50);
  model_free(&m);
}

int main(void) {
  RUN(test_kill_loop);
  return unit_finish();
}
