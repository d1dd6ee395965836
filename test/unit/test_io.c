/*
** test_io.c -- unit tests of the I/O backends (io.c, io_posix.c,
** io_uring.c, io_fault.c).
**
** Most tests run once per backend (the _posix and _uring variants); the
** io_uring variants print a note and pass without checking anything when
** this machine cannot set up a ring.  Files live in unit_tmpdir()
** directories.  Crash tests fork a child that writes through the fault
** backend and check its exit status and the bytes it left in the file.
*/
#include "io.h"
#include "ls_int.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLK 4096

/* A check in a forked child: says what failed, then exits with status 2
** for the parent to see. */
#define CHILD_CHECK(expr) do { if (!(expr)) { \
  printf("! child: %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr); \
  fflush(stdout); _exit(2); } } while (0)

/* Run fn once per backend kind. */
#define BOTH(fn) \
  static void fn##_posix(void) { fn(LS_IO_POSIX); } \
  static void fn##_uring(void) { fn(LS_IO_URING); }

/* Backend of the given kind (wrapped in the fault backend if spec is not
** NULL), or NULL after a note if io_uring is unavailable. */
static ls_io *make_io(int kind, const char *spec) {
  ls_io *io = NULL;
  int rc = ls_io_create(kind, spec, &io);
  if (rc == LS_IOERR && kind == LS_IO_URING) {
    printf("     note: io_uring unavailable, skipped: %s\n", ls_errmsg());
    return NULL;
  }
  CHECK_RC(rc, LS_OK);
  return io;
}

/* Keep the first failure of a series of calls in *err. */
static void keep_first(int *err, int rc) {
  if (rc && !*err) *err = rc;
}

/* A fresh directory's fd. */
static int tmp_dirfd(void) {
  const char *dir = unit_tmpdir();
  int fd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  return fd;
}

static int open_file(ls_io *io, int dirfd, const char *name) {
  int fd = io->m->open(io, dirfd, name, O_RDWR | O_CREAT, 0644);
  CHECK(fd >= 0);
  return fd;
}

static off_t file_size(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_size : -1;
}

/* 1 if bytes [off, off+len) of fd equal block `tag` (tag < 0: zeros). */
static int file_has(int fd, uint64_t off, size_t len, long tag) {
  uint8_t *want = malloc(len), *got = malloc(len);
  if (tag < 0) memset(want, 0, len); else unit_fill_bytes(want, len, (uint64_t)tag);
  int ok = pread(fd, got, len, (off_t)off) == (ssize_t)len && memcmp(got, want, len) == 0;
  free(want);
  free(got);
  return ok;
}

/* ------------------------------------------------------------------------
** Both backends.
*/

static void t_roundtrip(int kind) {
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  size_t big = 1u << 20;
  uint8_t *w = malloc(big), *r = malloc(big);

  unit_fill_bytes(w, BLK, 1);
  CHECK_INT(io->m->write(io, fd, w, BLK, 0), 0);
  CHECK_INT(io->m->read(io, fd, r, BLK, 0), BLK);
  CHECK_MEM(r, w, BLK);
  unit_fill_bytes(w, 1000, 2);                           /* unaligned length and offset */
  CHECK_INT(io->m->write(io, fd, w, 1000, 5000), 0);
  CHECK_INT(io->m->read(io, fd, r, 1000, 5000), 1000);
  CHECK_MEM(r, w, 1000);
  CHECK(file_has(fd, BLK, 5000 - BLK, -1));   /* the hole reads as zeros */
  unit_fill_bytes(w, big, 3);
  CHECK_INT(io->m->write(io, fd, w, big, big), 0);
  CHECK_INT(io->m->read(io, fd, r, big, big), (long long)big);
  CHECK_MEM(r, w, big);
  CHECK_INT(file_size(fd), 2 * big);
  CHECK_INT(io->m->write(io, fd, w, 0, 0), 0);
  CHECK_INT(io->m->read(io, fd, r, 0, 0), 0);
  CHECK(file_has(fd, 0, BLK, 1));

  free(w);
  free(r);
  CHECK_INT(io->m->close(io, fd), 0);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_roundtrip)

/* One batch of more requests than a ring holds, mixing reads (of earlier
** blocks, across end of file, past it) and writes; every result checked. */
static void t_submit_many(int kind) {
  enum { NW = 200, NEW = 100 };
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a"), small = open_file(io, dirfd, "s");
  uint8_t *mem = malloc((size_t)(NW + NEW + 2) * BLK);
  ls_io_req *q = calloc(NW + NEW + 2, sizeof *q);

  for (int i = 0; i < NW; i++) {
    unit_fill_bytes(mem + (size_t)i * BLK, BLK, 100 + (uint64_t)i);
    q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = mem + (size_t)i * BLK,
                        .len = BLK, .off = (uint64_t)i * BLK, .res = -1 };
  }
  CHECK_INT(io->m->submit(io, q, NW), 0);
  for (int i = 0; i < NW; i++) CHECK_INT(q[i].res, BLK);
  CHECK_INT(io->m->write(io, small, mem, 3000, 0), 0);

  memset(mem, 0xee, (size_t)(NW + NEW + 2) * BLK);
  int n = 0;
  for (int i = NW - 1; i >= 0; i--, n++)      /* reads, in reverse order */
    q[n] = (ls_io_req){ .op = LS_IOOP_READ, .fd = fd, .buf = mem + (size_t)n * BLK,
                        .len = BLK, .off = (uint64_t)i * BLK, .res = -1 };
  for (int i = 0; i < NEW; i++, n++) {        /* writes of new blocks */
    unit_fill_bytes(mem + (size_t)n * BLK, BLK, 1000 + (uint64_t)i);
    q[n] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = mem + (size_t)n * BLK,
                        .len = BLK, .off = (uint64_t)(NW + i) * BLK, .res = -1 };
  }
  q[n++] = (ls_io_req){ .op = LS_IOOP_READ, .fd = small, .buf = mem + (size_t)(NW + NEW) * BLK,
                        .len = BLK, .off = 0, .res = -1 };
  q[n++] = (ls_io_req){ .op = LS_IOOP_READ, .fd = small, .buf = mem + (size_t)(NW + NEW + 1) * BLK,
                        .len = BLK, .off = 5000, .res = -1 };
  CHECK_INT(io->m->submit(io, q, n), 0);
  for (int i = 0; i < NW; i++) {
    uint8_t want[BLK];
    unit_fill_bytes(want, BLK, 100 + (uint64_t)(NW - 1 - i));
    CHECK_INT(q[i].res, BLK);
    CHECK_MEM(mem + (size_t)i * BLK, want, BLK);
  }
  for (int i = 0; i < NEW; i++) {
    CHECK_INT(q[NW + i].res, BLK);
    CHECK(file_has(fd, (uint64_t)(NW + i) * BLK, BLK, 1000 + i));
  }
  CHECK_INT(q[NW + NEW].res, 3000);           /* across end of file */
  CHECK_INT(q[NW + NEW + 1].res, 0);          /* past it */
  CHECK_INT(io->m->submit(io, q, 0), 0);

  free(q);
  free(mem);
  io->m->close(io, fd);
  io->m->close(io, small);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_submit_many)

/* A bad request fails alone: the others of the batch still complete. */
static void t_submit_errors(int kind) {
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  uint8_t b[4][BLK];
  ls_io_req q[4];
  for (int i = 0; i < 4; i++) {
    unit_fill_bytes(b[i], BLK, (uint64_t)i);
    q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = b[i], .len = BLK,
                        .off = (uint64_t)i * BLK, .res = 12345 };
  }
  q[1].fd = 999;                              /* not open */
  q[3].op = 77;                               /* not an opcode */
  CHECK_INT(io->m->submit(io, q, 4), -EBADF);
  CHECK_INT(q[0].res, BLK);
  CHECK_INT(q[1].res, -EBADF);
  CHECK_INT(q[2].res, BLK);
  CHECK_INT(q[3].res, -EINVAL);
  CHECK(file_has(fd, 0, BLK, 0) && file_has(fd, 2 * BLK, BLK, 2));
  CHECK_INT(io->m->write(io, 999, b[0], BLK, 0), -EBADF);
  CHECK_INT(io->m->sync(io, 999), -EBADF);
  CHECK_INT(io->m->read(io, 999, b[0], BLK, 0), -EBADF);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_submit_errors)

static void t_read_eof(int kind) {
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  uint8_t w[1000], r[3][BLK];
  unit_fill_bytes(w, sizeof w, 9);
  CHECK_INT(io->m->write(io, fd, w, sizeof w, 0), 0);
  CHECK_INT(io->m->read(io, fd, r[0], BLK, 0), 1000);
  CHECK_MEM(r[0], w, 1000);
  CHECK_INT(io->m->read(io, fd, r[0], BLK, 1000), 0);
  CHECK_INT(io->m->read(io, fd, r[0], 1000, 500), 500);
  CHECK_MEM(r[0], w + 500, 500);
  ls_io_req q[3] = {
    { .op = LS_IOOP_READ, .fd = fd, .buf = r[0], .len = BLK, .off = 0 },
    { .op = LS_IOOP_READ, .fd = fd, .buf = r[1], .len = BLK, .off = 1 << 20 },
    { .op = LS_IOOP_READ, .fd = fd, .buf = r[2], .len = 1000, .off = 700 },
  };
  CHECK_INT(io->m->submit(io, q, 3), 0);
  CHECK_INT(q[0].res, 1000);
  CHECK_INT(q[1].res, 0);
  CHECK_INT(q[2].res, 300);
  CHECK_MEM(r[2], w + 700, 300);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_read_eof)

static void t_file_ops(int kind) {
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  uint8_t b[BLK];
  unit_fill_bytes(b, BLK, 5);
  CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  CHECK_INT(io->m->write(io, fd, b, BLK, 0), 0);
  CHECK_INT(io->m->sync(io, fd), 0);
  CHECK_INT(io->m->fsync(io, fd), 0);
  CHECK_INT(io->m->fsync(io, dirfd), 0);
  CHECK_INT(io->m->fallocate(io, fd, 0, 0, 1 << 20), 0);
  CHECK_INT(file_size(fd), 1 << 20);
  CHECK(file_has(fd, 0, BLK, 5));
  CHECK_INT(io->m->close(io, fd), 0);
  CHECK_INT(io->m->rename(io, dirfd, "a", "b"), 0);
  CHECK_INT(io->m->open(io, dirfd, "a", O_RDONLY, 0), -ENOENT);
  fd = io->m->open(io, dirfd, "b", O_RDONLY, 0);
  CHECK(fd >= 0 && file_has(fd, 0, BLK, 5));
  io->m->close(io, fd);
  CHECK_INT(symlinkat("b", dirfd, "link"), 0);
  CHECK_INT(io->m->open(io, dirfd, "link", O_RDONLY, 0), -ELOOP);   /* O_NOFOLLOW */
  CHECK_INT(io->m->unlink(io, dirfd, "b"), 0);
  CHECK_INT(io->m->unlink(io, dirfd, "b"), -ENOENT);
  CHECK_INT(io->m->rename(io, dirfd, "b", "c"), -ENOENT);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_file_ops)

/* A file-size limit makes the kernel write only part of a request: the
** backend must go on with the rest and so report the limit's EFBIG, never
** success.  Runs in a child, which alone gets the limit. */
static void t_short_write_fsize(int kind) {
  ls_io *probe = make_io(kind, NULL);
  if (!probe) return;
  ls_io_destroy(probe);
  const char *dir = unit_tmpdir();
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    static uint8_t b[2 * BLK];
    struct rlimit lim = { 5000, 5000 };
    ls_io *io = NULL;
    int dirfd = open(dir, O_DIRECTORY | O_RDONLY);
    CHILD_CHECK(dirfd >= 0 && ls_io_create(kind, NULL, &io) == LS_OK);
    int fd = io->m->open(io, dirfd, "a", O_RDWR | O_CREAT, 0644);
    int fd2 = io->m->open(io, dirfd, "b", O_RDWR | O_CREAT, 0644);
    signal(SIGXFSZ, SIG_IGN);
    CHILD_CHECK(fd >= 0 && fd2 >= 0 && setrlimit(RLIMIT_FSIZE, &lim) == 0);
    unit_fill_bytes(b, sizeof b, 60);
    CHILD_CHECK(io->m->write(io, fd, b, sizeof b, 0) == -EFBIG);
    CHILD_CHECK(file_size(fd) == 5000);
    ls_io_req q[2] = {
      { .op = LS_IOOP_WRITE, .fd = fd2, .buf = b, .len = BLK, .off = 0 },
      { .op = LS_IOOP_WRITE, .fd = fd2, .buf = b, .len = BLK, .off = 3000 },
    };
    CHILD_CHECK(io->m->submit(io, q, 2) == -EFBIG);
    CHILD_CHECK(q[0].res == BLK && q[1].res == -EFBIG);
    CHILD_CHECK(file_size(fd2) == 5000);
    _exit(0);
  }
  int status = -1;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK_INT(WEXITSTATUS(status), 0);
  char path[4096];
  snprintf(path, sizeof path, "%s/a", dir);
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0 && file_has(fd, 0, 5000, 60));   /* the part before the limit */
  close(fd);
}
BOTH(t_short_write_fsize)

/* Signals without SA_RESTART hit the main thread while it waits on the
** kernel: EINTR must be retried and every result stay right. */
static atomic_int sig_count, sig_stop;
static void on_sigusr1(int sig) { (void)sig; atomic_fetch_add(&sig_count, 1); }
static void *signal_thread(void *arg) {
  pthread_t target = *(pthread_t *)arg;
  struct timespec ts = { 0, 50000 };
  while (!atomic_load(&sig_stop)) {
    pthread_kill(target, SIGUSR1);
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void t_signals(int kind) {
  enum { N = 100, ITERS = 40 };
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a"), err = 0, mismatches = 0;
  uint8_t *w = malloc((size_t)N * BLK), *r = malloc((size_t)N * BLK);
  ls_io_req q[N];
  struct sigaction sa = { .sa_handler = on_sigusr1 }, old;
  pthread_t self = pthread_self(), th;

  sigaction(SIGUSR1, &sa, &old);
  atomic_store(&sig_count, 0);
  atomic_store(&sig_stop, 0);
  pthread_create(&th, NULL, signal_thread, &self);
  for (int it = 0; it < ITERS; it++) {
    for (int i = 0; i < N; i++) {
      unit_fill_bytes(w + (size_t)i * BLK, BLK, (uint64_t)(it * N + i));
      q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = w + (size_t)i * BLK,
                          .len = BLK, .off = (uint64_t)i * BLK };
    }
    keep_first(&err, io->m->submit(io, q, N));
    keep_first(&err, io->m->sync(io, fd));
    for (int i = 0; i < N; i++)
      q[i] = (ls_io_req){ .op = LS_IOOP_READ, .fd = fd, .buf = r + (size_t)i * BLK,
                          .len = BLK, .off = (uint64_t)i * BLK };
    keep_first(&err, io->m->submit(io, q, N));
    mismatches += memcmp(w, r, (size_t)N * BLK) != 0;
  }
  atomic_store(&sig_stop, 1);
  pthread_join(th, NULL);
  sigaction(SIGUSR1, &old, NULL);
  CHECK_INT(err, 0);
  CHECK_INT(mismatches, 0);
  CHECK(atomic_load(&sig_count) > 0);
  free(w);
  free(r);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_signals)

/* Four threads submit batches at once, each to its own region. */
typedef struct thread_arg {
  ls_io *io;
  int fd, id;
  int err;                         /* first failure, -errno */
  int errors;                      /* failed calls or wrong results */
} thread_arg;

enum { TH_N = 100, TH_ITERS = 15 };

static void *batch_thread(void *p) {
  thread_arg *a = p;
  uint8_t *w = malloc((size_t)TH_N * BLK), *r = malloc((size_t)TH_N * BLK);
  ls_io_req q[TH_N];
  uint64_t base = (uint64_t)a->id * TH_N * BLK;
  for (int it = 0; it < TH_ITERS; it++) {
    for (int i = 0; i < TH_N; i++) {
      unit_fill_bytes(w + (size_t)i * BLK, BLK, (uint64_t)(a->id * 1000000 + it * TH_N + i));
      q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = a->fd, .buf = w + (size_t)i * BLK,
                          .len = BLK, .off = base + (uint64_t)i * BLK };
    }
    keep_first(&a->err, a->io->m->submit(a->io, q, TH_N));
    for (int i = 0; i < TH_N; i++) a->errors += q[i].res != BLK;
    keep_first(&a->err, a->io->m->sync(a->io, a->fd));
    for (int i = 0; i < TH_N; i++)
      q[i] = (ls_io_req){ .op = LS_IOOP_READ, .fd = a->fd, .buf = r + (size_t)i * BLK,
                          .len = BLK, .off = base + (uint64_t)i * BLK };
    keep_first(&a->err, a->io->m->submit(a->io, q, TH_N));
    a->errors += memcmp(w, r, (size_t)TH_N * BLK) != 0;
  }
  free(w);
  free(r);
  return NULL;
}

static void t_threads(int kind) {
  ls_io *io = make_io(kind, NULL);
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  thread_arg a[4];
  pthread_t th[4];
  for (int t = 0; t < 4; t++) {
    a[t] = (thread_arg){ .io = io, .fd = fd, .id = t };
    pthread_create(&th[t], NULL, batch_thread, &a[t]);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    CHECK_INT(a[t].err, 0);
    CHECK_INT(a[t].errors, 0);
  }
  for (int t = 0; t < 4; t++)                 /* the last iteration's data */
    for (int i = 0; i < TH_N; i += 33)
      CHECK(file_has(fd, ((uint64_t)t * TH_N + (uint64_t)i) * BLK, BLK,
                     t * 1000000 + (TH_ITERS - 1) * TH_N + i));
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_threads)

static void t_names(void) {
  ls_io *io = NULL;
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  CHECK(!strcmp(ls_io_name(io), "posix"));
  ls_io_destroy(io);
  CHECK_RC(ls_io_create(LS_IO_POSIX, "write=1:EIO", &io), LS_OK);
  CHECK(!strcmp(ls_io_name(io), "posix+fault"));
  ls_io_destroy(io);
  CHECK_RC(ls_io_create(LS_IO_AUTO, "", &io), LS_OK);
  CHECK(!strcmp(ls_io_name(io), "io_uring") || !strcmp(ls_io_name(io), "posix"));
  ls_io_destroy(io);
  CHECK_RC(ls_io_create(7, NULL, &io), LS_INVALID);
  CHECK(io == NULL);
  if (ls_io_create(LS_IO_URING, NULL, &io) != LS_OK) {
    printf("     note: io_uring unavailable: %s\n", ls_errmsg());
    return;
  }
  CHECK(!strcmp(ls_io_name(io), "io_uring"));
  ls_io_destroy(io);
  CHECK_RC(ls_io_create(LS_IO_URING, "sync=1:EIO", &io), LS_OK);
  CHECK(!strcmp(ls_io_name(io), "io_uring+fault"));
  ls_io_destroy(io);
}

/* With io_uring_setup refused (as seccomp profiles in containers do),
** LS_IO_URING fails with LS_IOERR and a message, and LS_IO_AUTO quietly
** gives POSIX.  Runs in a child, which alone gets the filter. */
static void t_uring_refused(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    ls_io *io = NULL;
    CHILD_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHILD_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
    CHILD_CHECK(ls_io_create(LS_IO_URING, NULL, &io) == LS_IOERR && io == NULL);
    CHILD_CHECK(strstr(ls_errmsg(), "io_uring_queue_init") != NULL);
    CHILD_CHECK(ls_io_create(LS_IO_AUTO, "write=1:EIO", &io) == LS_OK);
    CHILD_CHECK(strcmp(ls_io_name(io), "posix+fault") == 0);
    ls_io_destroy(io);
    _exit(0);
  }
  int status = -1;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK_INT(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------------------------
** The fault backend.
*/

/* Write block `tag` at block number blk through write(). */
static int write_blk(ls_io *io, int fd, int blk, long tag) {
  uint8_t b[BLK];
  unit_fill_bytes(b, BLK, (uint64_t)tag);
  return io->m->write(io, fd, b, BLK, (uint64_t)blk * BLK);
}

static void t_fault_write_once(int kind) {
  ls_io *io = make_io(kind, "write=3:EIO");
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  CHECK_INT(write_blk(io, fd, 0, 10), 0);
  CHECK_INT(write_blk(io, fd, 1, 11), 0);
  CHECK_INT(write_blk(io, fd, 2, 12), -EIO);
  CHECK_INT(write_blk(io, fd, 3, 13), 0);
  CHECK_INT(write_blk(io, fd, 2, 12), 0);        /* once only */
  CHECK_U64(ls_io_fault_count(io, "write"), 5);
  CHECK_U64(ls_io_fault_injected(io), 1);
  CHECK(file_has(fd, 0, BLK, 10) && file_has(fd, BLK, BLK, 11));
  CHECK(file_has(fd, 2 * BLK, BLK, 12) && file_has(fd, 3 * BLK, BLK, 13));
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_fault_write_once)

static void t_fault_persist(void) {
  ls_io *io = make_io(LS_IO_POSIX, "write=2:EIO:persist");
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  CHECK_INT(write_blk(io, fd, 0, 1), 0);
  for (int i = 1; i < 5; i++) CHECK_INT(write_blk(io, fd, i, 1), -EIO);
  CHECK_INT(io->m->sync(io, fd), 0);             /* other kinds unaffected */
  CHECK_U64(ls_io_fault_injected(io), 4);
  CHECK_INT(file_size(fd), BLK);                 /* failed writes wrote nothing */
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}

static void t_fault_enospc(void) {
  ls_io *io = make_io(LS_IO_POSIX, "write=1:ENOSPC,fallocate=1:ENOSPC");
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  int rc = write_blk(io, fd, 0, 1);
  CHECK_INT(rc, -ENOSPC);
  CHECK_RC(ls_err_io(rc, LS_CAUSE_WRITE, "write"), LS_FULL);
  CHECK_INT(ls_errcause(), LS_CAUSE_WRITE);
  CHECK_INT(io->m->fallocate(io, fd, 0, 0, 1 << 20), -ENOSPC);
  CHECK_INT(file_size(fd), 0);
  CHECK_INT(io->m->fallocate(io, fd, 0, 0, 1 << 20), 0);
  CHECK_INT(file_size(fd), 1 << 20);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}

/* A short write is completed by the wrapper: success and complete data,
** through write() and inside a batch. */
static void t_fault_short(int kind) {
  ls_io *io = make_io(kind, "write=1:short=100,write=3:short=0");
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  uint8_t b[3][2 * BLK];
  CHECK_INT(write_blk(io, fd, 0, 20), 0);
  CHECK_INT(write_blk(io, fd, 1, 21), 0);
  CHECK_INT(write_blk(io, fd, 2, 22), 0);
  CHECK_U64(ls_io_fault_injected(io), 2);
  CHECK(file_has(fd, 0, BLK, 20) && file_has(fd, BLK, BLK, 21) && file_has(fd, 2 * BLK, BLK, 22));
  CHECK_RC(ls_io_fault_set(io, "write=2:short=4000"), LS_OK);
  ls_io_req q[3];
  for (int i = 0; i < 3; i++) {
    unit_fill_bytes(b[i], sizeof b[i], 30 + (uint64_t)i);
    q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = b[i], .len = sizeof b[i],
                        .off = (uint64_t)(4 + 2 * i) * BLK };
  }
  CHECK_INT(io->m->submit(io, q, 3), 0);
  for (int i = 0; i < 3; i++) {
    CHECK_INT(q[i].res, 2 * BLK);
    CHECK(file_has(fd, (uint64_t)(4 + 2 * i) * BLK, 2 * BLK, 30 + i));
  }
  CHECK_U64(ls_io_fault_injected(io), 1);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_fault_short)

static void t_fault_sync(int kind) {
  ls_io *io = make_io(kind, "sync=2:EIO");
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  CHECK_INT(io->m->sync(io, fd), 0);
  CHECK_INT(io->m->sync(io, fd), -EIO);
  CHECK_INT(io->m->sync(io, fd), 0);
  CHECK_INT(io->m->fsync(io, fd), 0);            /* fsync counts apart */
  CHECK_U64(ls_io_fault_count(io, "sync"), 3);
  CHECK_U64(ls_io_fault_count(io, "fsync"), 1);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_fault_sync)

static void t_fault_file_ops(void) {
  ls_io *io = make_io(LS_IO_POSIX, "open=1:EACCES,rename=1:EIO,unlink=1:EROFS,fsync=1:EIO,"
                                   "fallocate=2:EDQUOT");
  int dirfd = tmp_dirfd(), fd;
  CHECK_INT(io->m->open(io, dirfd, "a", O_RDWR | O_CREAT, 0644), -EACCES);
  CHECK_INT(faccessat(dirfd, "a", F_OK, 0), -1); /* not created */
  fd = open_file(io, dirfd, "a");
  CHECK_INT(io->m->fsync(io, dirfd), -EIO);
  CHECK_INT(io->m->fsync(io, dirfd), 0);
  CHECK_INT(io->m->fallocate(io, fd, 0, 0, BLK), 0);
  CHECK_INT(io->m->fallocate(io, fd, 0, 0, 2 * BLK), -EDQUOT);
  CHECK_INT(file_size(fd), BLK);
  CHECK_INT(io->m->rename(io, dirfd, "a", "b"), -EIO);
  CHECK_INT(faccessat(dirfd, "a", F_OK, 0), 0);  /* still there */
  CHECK_INT(io->m->rename(io, dirfd, "a", "b"), 0);
  CHECK_INT(io->m->unlink(io, dirfd, "b"), -EROFS);
  CHECK_INT(faccessat(dirfd, "b", F_OK, 0), 0);
  CHECK_INT(io->m->unlink(io, dirfd, "b"), 0);
  CHECK_U64(ls_io_fault_count(io, "open"), 2);
  CHECK_U64(ls_io_fault_injected(io), 5);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}

static void t_fault_counts_and_clear(void) {
  ls_io *io = make_io(LS_IO_POSIX, "sync=100:EIO");
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  uint8_t b[3][BLK];
  ls_io_req q[3];
  memset(b, 7, sizeof b);
  CHECK_INT(write_blk(io, fd, 0, 1), 0);
  CHECK_INT(write_blk(io, fd, 1, 1), 0);
  for (int i = 0; i < 3; i++)
    q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = b[i], .len = BLK, .off = 0 };
  CHECK_INT(io->m->submit(io, q, 3), 0);
  q[0].op = LS_IOOP_READ;
  CHECK_INT(io->m->submit(io, q, 1), 0);
  CHECK_INT(io->m->read(io, fd, b[0], BLK, 0), BLK);
  CHECK_INT(io->m->sync(io, fd), 0);
  CHECK_U64(ls_io_fault_count(io, "write"), 5);
  CHECK_U64(ls_io_fault_count(io, "read"), 2);
  CHECK_U64(ls_io_fault_count(io, "sync"), 1);
  CHECK_U64(ls_io_fault_count(io, "open"), 1);
  CHECK_U64(ls_io_fault_count(io, "bogus"), 0);
  CHECK_U64(ls_io_fault_injected(io), 0);
  CHECK_RC(ls_io_fault_set(io, "write=1:EIO"), LS_OK);   /* counting restarts */
  CHECK_U64(ls_io_fault_count(io, "write"), 0);
  CHECK_INT(write_blk(io, fd, 0, 1), -EIO);
  CHECK_RC(ls_io_fault_set(io, ""), LS_OK);
  CHECK_U64(ls_io_fault_injected(io), 0);
  CHECK_INT(write_blk(io, fd, 0, 1), 0);
  CHECK_RC(ls_io_fault_set(io, NULL), LS_OK);
  CHECK_INT(write_blk(io, fd, 0, 1), 0);
  CHECK_U64(ls_io_fault_count(io, "write"), 1);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}

/* The failing request of a batch fails alone, counted in array order. */
static void t_fault_batch(int kind) {
  ls_io *io = make_io(kind, "write=2:EIO,read=3:EINTR");
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  uint8_t b[4][BLK], r[4][BLK];
  ls_io_req q[4];
  for (int i = 0; i < 4; i++) {
    unit_fill_bytes(b[i], BLK, 40 + (uint64_t)i);
    q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = b[i], .len = BLK,
                        .off = (uint64_t)i * BLK };
  }
  CHECK_INT(io->m->submit(io, q, 4), -EIO);
  CHECK_INT(q[0].res, BLK);
  CHECK_INT(q[1].res, -EIO);
  CHECK_INT(q[2].res, BLK);
  CHECK_INT(q[3].res, BLK);
  CHECK(file_has(fd, BLK, BLK, -1) && file_has(fd, 3 * BLK, BLK, 43));
  for (int i = 0; i < 4; i++)
    q[i] = (ls_io_req){ .op = LS_IOOP_READ, .fd = fd, .buf = r[i], .len = BLK,
                        .off = (uint64_t)i * BLK };
  CHECK_INT(io->m->submit(io, q, 4), -EINTR);
  CHECK_INT(q[2].res, -EINTR);
  CHECK_INT(q[3].res, BLK);
  CHECK_MEM(r[0], b[0], BLK);
  CHECK_MEM(r[3], b[3], BLK);
  CHECK_U64(ls_io_fault_count(io, "write"), 4);
  CHECK_U64(ls_io_fault_count(io, "read"), 4);
  CHECK_U64(ls_io_fault_injected(io), 2);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_fault_batch)

static void t_fault_invalid(void) {
  static const char *bad[] = {
    "write", "write=0:EIO", "write=x:EIO", "bogus=1:EIO", "write=1:EWHAT", "write=1",
    "write=1:", "write=1:EIO:forever", "read=1:short=10", "sync=1:torn=5", "write=1:short=",
    "write=1:short=10x", "write=1:crash-before", "write=99999999999999999999:EIO",
  };
  ls_io *io = NULL;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_RC(ls_io_create(LS_IO_POSIX, bad[i], &io), LS_INVALID);
    CHECK(io == NULL);
    if (!strstr(ls_errmsg(), bad[i])) unit_fail(__FILE__, __LINE__, "message for %s: %s", bad[i], ls_errmsg());
  }
  CHECK_RC(ls_io_create(LS_IO_POSIX, "write=1:EIO,,sync=1:EIO", &io), LS_INVALID);
  CHECK(strstr(ls_errmsg(), "empty rule") != NULL);

  /* A bad set leaves the rules as they were. */
  CHECK_RC(ls_io_create(LS_IO_POSIX, " write=1:EIO , sync=2:EIO:persist ", &io), LS_OK);
  CHECK_RC(ls_io_fault_set(io, "write=1:EWHAT"), LS_INVALID);
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a");
  CHECK_INT(write_blk(io, fd, 0, 1), -EIO);
  static const struct { const char *name; int err; } names[] = {
    { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EACCES", EACCES }, { "EPERM", EPERM },
    { "EINTR", EINTR }, { "EAGAIN", EAGAIN }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
    { "EFBIG", EFBIG }, { "ENOMEM", ENOMEM }, { "EBADF", EBADF }, { "EINVAL", EINVAL },
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char spec[64];
    snprintf(spec, sizeof spec, "write=1:%s", names[i].name);
    CHECK_RC(ls_io_fault_set(io, spec), LS_OK);
    CHECK_INT(write_blk(io, fd, 0, 1), -names[i].err);
  }
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);

  /* Not a fault backend: harmless refusals. */
  CHECK_RC(ls_io_create(LS_IO_POSIX, NULL, &io), LS_OK);
  CHECK_RC(ls_io_fault_set(io, "write=1:EIO"), LS_INVALID);
  CHECK_U64(ls_io_fault_count(io, "write"), 0);
  CHECK_U64(ls_io_fault_injected(io), 0);
  CHECK_RC(ls_io_fault_set(NULL, ""), LS_INVALID);
  ls_io_destroy(io);
}

/* Fork a child that writes blocks 0..3 (tags 50..53) through a fault
** backend with the given spec, by write() calls or in one batch.  Returns
** the child's exit status (-1 if it did not exit normally). */
static int crash_child(int kind, const char *dir, const char *spec, int batch) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    ls_io *io = NULL;
    static uint8_t b[4][BLK];
    ls_io_req q[4];
    int dirfd = open(dir, O_DIRECTORY | O_RDONLY);
    CHILD_CHECK(dirfd >= 0 && ls_io_create(kind, spec, &io) == LS_OK);
    int fd = io->m->open(io, dirfd, "a", O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHILD_CHECK(fd >= 0);
    for (int i = 0; i < 4; i++) {
      unit_fill_bytes(b[i], BLK, 50 + (uint64_t)i);
      q[i] = (ls_io_req){ .op = LS_IOOP_WRITE, .fd = fd, .buf = b[i], .len = BLK,
                          .off = (uint64_t)i * BLK };
      if (!batch) CHILD_CHECK(io->m->write(io, fd, b[i], BLK, q[i].off) == 0);
    }
    if (batch) CHILD_CHECK(io->m->submit(io, q, 4) == 0);
    _exit(0);
  }
  int status;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The child's file holds exactly `whole` blocks and then `part` bytes. */
static void check_prefix(const char *dir, int whole, size_t part) {
  char path[4096];
  snprintf(path, sizeof path, "%s/a", dir);
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  CHECK_INT(file_size(fd), (long long)whole * BLK + (long long)part);
  for (int i = 0; i < whole; i++) CHECK(file_has(fd, (uint64_t)i * BLK, BLK, 50 + i));
  if (part) {
    uint8_t want[BLK], got[BLK];
    unit_fill_bytes(want, BLK, 50 + (uint64_t)whole);
    CHECK_INT(pread(fd, got, part, (off_t)whole * BLK), (long long)part);
    CHECK_MEM(got, want, part);
  }
  close(fd);
}

static void t_fault_crash(int kind) {
  ls_io *probe = make_io(kind, NULL);
  if (!probe) return;
  ls_io_destroy(probe);
  const char *d;
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "write=3:torn=100", 0), LS_FAULT_CRASH_EXIT);
  check_prefix(d, 2, 100);
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "write=3:crash", 0), LS_FAULT_CRASH_EXIT);
  check_prefix(d, 2, 0);
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "write=3:crash-after", 0), LS_FAULT_CRASH_EXIT);
  check_prefix(d, 3, 0);
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "write=2:torn=10", 1), LS_FAULT_CRASH_EXIT);
  check_prefix(d, 1, 10);
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "write=4:crash-after", 1), LS_FAULT_CRASH_EXIT);
  check_prefix(d, 4, 0);
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "write=5:crash,open=2:crash", 0), 0);   /* never reached */
  check_prefix(d, 4, 0);
  d = unit_tmpdir();
  CHECK_INT(crash_child(kind, d, "open=1:crash", 0), LS_FAULT_CRASH_EXIT);
  char path[4096];
  snprintf(path, sizeof path, "%s/a", d);
  CHECK(access(path, F_OK) != 0);             /* crashed before the open */
}
BOTH(t_fault_crash)

/* Counting is exact and exactly one write fails when threads race. */
static void *fault_thread(void *p) {
  thread_arg *a = p;
  for (int i = 0; i < 500; i++)
    a->errors += write_blk(a->io, a->fd, a->id * 500 + i, i) != 0;
  return NULL;
}

static void t_fault_threads(int kind) {
  ls_io *io = make_io(kind, "write=1000:ENOSPC");
  if (!io) return;
  int dirfd = tmp_dirfd(), fd = open_file(io, dirfd, "a"), failed = 0;
  thread_arg a[4];
  pthread_t th[4];
  for (int t = 0; t < 4; t++) {
    a[t] = (thread_arg){ .io = io, .fd = fd, .id = t };
    pthread_create(&th[t], NULL, fault_thread, &a[t]);
  }
  for (int t = 0; t < 4; t++) {
    pthread_join(th[t], NULL);
    failed += a[t].errors;
  }
  CHECK_INT(failed, 1);
  CHECK_U64(ls_io_fault_count(io, "write"), 2000);
  CHECK_U64(ls_io_fault_injected(io), 1);
  io->m->close(io, fd);
  close(dirfd);
  ls_io_destroy(io);
}
BOTH(t_fault_threads)

static void run_fault_tests(void) {
  RUN(t_fault_write_once_posix);
  RUN(t_fault_write_once_uring);
  RUN(t_fault_persist);
  RUN(t_fault_enospc);
  RUN(t_fault_short_posix);
  RUN(t_fault_short_uring);
  RUN(t_fault_sync_posix);
  RUN(t_fault_sync_uring);
  RUN(t_fault_file_ops);
  RUN(t_fault_counts_and_clear);
  RUN(t_fault_batch_posix);
  RUN(t_fault_batch_uring);
  RUN(t_fault_invalid);
  RUN(t_fault_crash_posix);
  RUN(t_fault_crash_uring);
  RUN(t_fault_threads_posix);
  RUN(t_fault_threads_uring);
}

int main(void) {
  RUN(t_names);
  RUN(t_uring_refused);
  RUN(t_roundtrip_posix);
  RUN(t_roundtrip_uring);
  RUN(t_submit_many_posix);
  RUN(t_submit_many_uring);
  RUN(t_submit_errors_posix);
  RUN(t_submit_errors_uring);
  RUN(t_read_eof_posix);
  RUN(t_read_eof_uring);
  RUN(t_file_ops_posix);
  RUN(t_file_ops_uring);
  RUN(t_short_write_fsize_posix);
  RUN(t_short_write_fsize_uring);
  RUN(t_signals_posix);
  RUN(t_signals_uring);
  RUN(t_threads_posix);
  RUN(t_threads_uring);
  run_fault_tests();
  return unit_finish();
}
