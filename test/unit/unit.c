/*
** unit.c -- implementation of the unit-test harness (see unit.h).
*/
#include "unit.h"
#include "logstor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int unit_failed_checks;
static int n_pass, n_fail;
static const char *cur_name = "?";
static char *tmpdirs[256];
static int n_tmpdirs;

void unit_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stdout, "! %s: %s:%d: ", cur_name, file, line);
  va_start(ap, fmt);
  vfprintf(stdout, fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  unit_failed_checks++;
}

void unit_run(const char *name, void (*fn)(void)) {
  const char *only = getenv("UNIT_ONLY");          /* run the tests whose name has this */
  if (only && !strstr(name, only)) return;
  cur_name = name;
  unit_failed_checks = 0;
  uint64_t t0 = (uint64_t)clock();
  fn();
  double ms = (double)((uint64_t)clock() - t0) * 1000.0 / CLOCKS_PER_SEC;
  if (unit_failed_checks) {
    n_fail++;
    printf("FAIL %s\n", name);
  } else {
    n_pass++;
    printf("ok   %s (%.0f ms cpu)\n", name, ms);
  }
  fflush(stdout);
}

void unit_rmtree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        unit_rmtree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

void unit_copy_dir(const char *from, const char *to) {
  mkdir(to, 0700);
  DIR *d = opendir(from);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || !strcmp(de->d_name, "LOCK")) continue;
    char a[8400], b[8400], buf[65536];
    snprintf(a, sizeof a, "%s/%s", from, de->d_name);
    snprintf(b, sizeof b, "%s/%s", to, de->d_name);
    int in = open(a, O_RDONLY | O_CLOEXEC), out = open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ok = in >= 0 && out >= 0;
    ssize_t n;
    while (ok && (n = read(in, buf, sizeof buf)) > 0) ok = write(out, buf, (size_t)n) == n;
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    if (!ok) unit_fail(__FILE__, __LINE__, "copy %s to %s: %s", a, b, strerror(errno));
  }
  if (d) closedir(d);
}

const char *unit_tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/logstor-unit-XXXXXX", base && *base ? base : "/tmp");
  char *p = mkdtemp(tmpl);
  if (!p) {
    fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
    exit(2);
  }
  p = strdup(p);
  if (n_tmpdirs < 256) tmpdirs[n_tmpdirs++] = p;
  return p;
}

uint64_t unit_seed(const char *what) {
  const char *s = getenv("LOGSTOR_SEED");
  uint64_t seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
  if (!seed) seed = 1;
  printf("     %s: seed %" PRIu64 " (rerun with LOGSTOR_SEED=%" PRIu64 ")\n", what, seed, seed);
  return seed;
}

uint64_t unit_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

int unit_finish(void) {
  if (!getenv("LOGSTOR_KEEP_TMP"))
    for (int i = 0; i < n_tmpdirs; i++) unit_rmtree(tmpdirs[i]);
  for (int i = 0; i < n_tmpdirs; i++) free(tmpdirs[i]);
  ls_thread_cleanup();
  printf("%d passed, %d failed\n", n_pass, n_fail);
  fflush(stdout);
  return n_fail ? 1 : 0;
}

void unit_check_ok(ls_engine *e) {
  char *rep = NULL;
  int rc = ls_check(e, 0, &rep);
  if (rc) unit_fail(__FILE__, __LINE__, "ls_check failed: %d %s", rc, ls_errmsg());
  else if (rep && strcmp(rep, "ok")) unit_fail(__FILE__, __LINE__, "ls_check: %s", rep);
  free(rep);
}

ls_stats unit_stats(ls_engine *e) {
  ls_stats s;
  ls_stats_get(e, &s);
  return s;
}

ls_engine *unit_open(const char *dir, uint64_t seg, uint64_t file, uint64_t disk, int manual, int policy) {
  ls_options o;
  ls_options_init(&o);
  o.create = 1;
  o.segment_size = seg;
  o.file_size = file;
  o.disk_size = disk;
  o.manual_cleaning = manual;
  o.compaction_policy = policy;
  ls_engine *e = NULL;
  int rc = ls_open(dir, &o, &e);
  if (rc) unit_fail(__FILE__, __LINE__, "ls_open(%s): %d (%s): %s", dir, rc, ls_strerror(rc), ls_errmsg());
  return e;
}

int unit_put(ls_engine *e, uint32_t table, const char *key, const void *val, uint32_t len) {
  ls_txn *x;
  int rc = ls_txn_begin(e, &x);
  if (rc) return rc;
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  rc = val ? ls_txn_put(x, table, &k, val, len) : ls_txn_delete(x, table, &k);
  if (!rc) rc = ls_txn_commit(x);
  ls_txn_free(x);
  return rc;
}

int unit_puts(ls_engine *e, uint32_t table, const char *key, const char *val) {
  return unit_put(e, table, key, val, val ? (uint32_t)strlen(val) : 0);
}

const char *unit_gets(ls_engine *e, uint32_t table, const char *key) {
  static char out[4096];
  ls_key k;
  ls_key_set(&k, key, (uint32_t)strlen(key));
  ls_value v = {0};
  int rc = ls_get(e, table, &k, &v);
  if (rc == LS_NOTFOUND) strcpy(out, "");
  else if (rc) snprintf(out, sizeof out, "ERROR %d %s", rc, ls_errmsg());
  else snprintf(out, sizeof out, "%.*s", (int)v.len, (const char *)v.data);
  ls_value_free(&v);
  return out;
}
