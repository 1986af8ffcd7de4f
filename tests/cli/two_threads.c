/* Two threads of one process, each spinning for a bounded time: the
   program `exmem trace record --sched` is tested around (trace_test.cpp). */
#include <pthread.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *spin(void *arg) {
  volatile unsigned long sink = 0;
  const double end = now() + 0.2;
  (void)arg;
  while (now() < end)
    for (unsigned i = 0; i < 10000; ++i) sink += i;
  return 0;
}

int main(void) {
  pthread_t t[2];
  for (int i = 0; i < 2; ++i)
    if (pthread_create(&t[i], 0, spin, 0) != 0) return 1;
  for (int i = 0; i < 2; ++i) pthread_join(t[i], 0);
  return 0;
}
