/*
** test_guard.c -- reader protection alone (guard.h): a wait returns only
** once every reader that entered before it has left, and never waits for
** readers that entered after it.
*/
#include "unit.h"
#include "guard.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct waiter { ls_guard *g; _Atomic int done; } waiter;

static void *wait_main(void *p) {
  waiter *w = p;
  ls_guard_wait(w->g);
  atomic_store(&w->done, 1);
  return NULL;
}

static void test_wait_for_readers(void) {
  ls_guard g;
  ls_guard_init(&g);
  ls_guard_wait(&g);                       /* no reader: returns at once */
  unsigned a = ls_guard_enter(&g), b = ls_guard_enter(&g);
  CHECK_INT(a, b);                         /* same phase */
  waiter w = { &g, 0 };
  pthread_t th;
  pthread_create(&th, NULL, wait_main, &w);
  usleep(20000);
  CHECK_INT(atomic_load(&w.done), 0);      /* two readers inside */
  ls_guard_leave(&g, a);
  usleep(20000);
  CHECK_INT(atomic_load(&w.done), 0);      /* one still inside */
  ls_guard_leave(&g, b);
  pthread_join(th, NULL);
  CHECK_INT(atomic_load(&w.done), 1);
  ls_guard_destroy(&g);
}

/* A reader that enters after a wait flipped the phase does not hold it. */
static void test_new_readers_do_not_block(void) {
  ls_guard g;
  ls_guard_init(&g);
  unsigned old = ls_guard_enter(&g);
  waiter w = { &g, 0 };
  pthread_t th;
  pthread_create(&th, NULL, wait_main, &w);
  /* Wait for the flip: a new reader then lands in the other phase. */
  unsigned late = old;
  for (int i = 0; i < 1000 && late == old; i++) {
    late = ls_guard_enter(&g);
    if (late == old) { ls_guard_leave(&g, late); usleep(1000); }
  }
  CHECK(late != old);
  ls_guard_leave(&g, old);                 /* the wait may return now */
  pthread_join(th, NULL);
  CHECK_INT(atomic_load(&w.done), 1);
  ls_guard_leave(&g, late);
  ls_guard_wait(&g);
  ls_guard_destroy(&g);
}

int main(void) {
  RUN(test_wait_for_readers);
  RUN(test_new_readers_do_not_block);
  return unit_finish();
}
