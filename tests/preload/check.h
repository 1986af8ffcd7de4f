/* What the drop-in's test programs share: checks that end the program with a
 * message, where an address lives (/proc/self/maps), whether memfd_secret works
 * here, whether the drop-in is loaded, children, and stderr captured.
 * The programs are written to each crypto library's documented API; they know
 * of exmem only through dlsym (or dropin.h for the link-time opt-in). */
#ifndef EXMEM_TESTS_PRELOAD_CHECK_H
#define EXMEM_TESTS_PRELOAD_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) check_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);           \
  } while (0)

static inline void check_fail(const char* file, int line, const char* expr, const char* fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
static inline void check_fail(const char* file, int line, const char* expr, const char* fmt, ...) {
  va_list ap;
  fprintf(stderr, "FAIL %s:%d: %s: ", file, line, expr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  _exit(1);
}

/* The mapping of /proc/self/maps that holds p: its path (possibly empty) in
 * path; 0 when p is not mapped. */
static inline int mapping_of(const void* p, char* path, size_t pathlen) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    int off = 0;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s%n", &lo, &hi, &off) < 2) continue;
    if ((uintptr_t)p >= lo && (uintptr_t)p < hi) {
      const char* rest = line + off;
      while (*rest == ' ') ++rest;
      snprintf(path, pathlen, "%s", rest);
      path[strcspn(path, "\n")] = 0;
      found = 1;
      break;
    }
  }
  fclose(f);
  return found;
}

/* Whether p lies in a memfd_secret mapping ("/secretmem (deleted)"). */
static inline int in_secretmem(const void* p) {
  char path[256] = "";
  return mapping_of(p, path, sizeof path) && strstr(path, "/secretmem") != NULL;
}

/* These tests exercise the memfd_secret backend: without it they fail and say
 * why (as REQUIRE_MEMFD_SECRET does in tests/lib). */
static inline void require_memfd_secret(void) {
#ifdef SYS_memfd_secret
  long fd = syscall(SYS_memfd_secret, 0);
  if (fd >= 0) {
    close((int)fd);
    return;
  }
  fprintf(stderr,
          "FAIL: memfd_secret(2) is not usable on this machine (%s). The drop-in's tests check that secure "
          "allocations land in memfd_secret memory and cannot stand in for it with locked memory: run them on "
          "Linux >= 5.14 built with CONFIG_SECRETMEM=y, not booted with secretmem.enable=0, outside any seccomp "
          "policy that blocks the call.\n",
          strerror(errno));
#else
  fprintf(stderr, "FAIL: this build's headers do not know memfd_secret's system call number\n");
#endif
  exit(1);
}

/* Whether libexmem-preload is loaded (LD_PRELOAD or linked). */
static inline int dropin_loaded(void) { return dlsym(RTLD_DEFAULT, "exmem_dropin") != NULL; }

/* The mode the program was asked to check, and that it matches reality. */
static inline int preloaded_mode(int argc, char** argv, const char* usage) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s %s\n", argv[0], usage);
    exit(2);
  }
  int native = strcmp(argv[1], "native") == 0;
  CHECK(dropin_loaded() == !native, "mode %s but the drop-in is %sloaded", argv[1], dropin_loaded() ? "" : "not ");
  if (!native) require_memfd_secret();
  return !native;
}

/* Runs fn(arg) in a child; returns its wait status. */
static inline int in_child(int (*fn)(void*), void* arg) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) _exit(fn(arg));
  int status = 0;
  CHECK(pid > 0, "fork: %s", strerror(errno));
  CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
  return status;
}

static inline int killed_by(int status, int sig) { return WIFSIGNALED(status) && WTERMSIG(status) == sig; }
static inline int exited_ok(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

/* stderr into a temporary file, and back. */
static int g_saved_stderr = -1;
static FILE* g_capture = NULL;
static inline void capture_stderr(void) {
  fflush(stderr);
  g_capture = tmpfile();
  CHECK(g_capture != NULL, "tmpfile: %s", strerror(errno));
  g_saved_stderr = dup(2);
  dup2(fileno(g_capture), 2);
}
static inline char* captured_stderr(void) {
  static char buf[8192];
  fflush(stderr);
  dup2(g_saved_stderr, 2);
  close(g_saved_stderr);
  rewind(g_capture);
  size_t n = fread(buf, 1, sizeof buf - 1, g_capture);
  buf[n] = 0;
  fclose(g_capture);
  fputs(buf, stderr); /* shown when the test fails */
  return buf;
}

/* Bytes read through a volatile pointer (they may belong to a freed object). */
static inline int all_bytes(const void* p, size_t n, unsigned char v) {
  const volatile unsigned char* q = (const volatile unsigned char*)p;
  for (size_t i = 0; i < n; ++i)
    if (q[i] != v) return 0;
  return 1;
}

static inline void fill(void* p, size_t n, unsigned seed) {
  unsigned char* q = (unsigned char*)p;
  for (size_t i = 0; i < n; ++i) q[i] = (unsigned char)(seed * 131u + i * 7u + 1u);
}
static inline int filled(const void* p, size_t n, unsigned seed) {
  const unsigned char* q = (const unsigned char*)p;
  for (size_t i = 0; i < n; ++i)
    if (q[i] != (unsigned char)(seed * 131u + i * 7u + 1u)) return 0;
  return 1;
}

#endif
