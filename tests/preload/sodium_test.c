/* libsodium's guarded heap, written to libsodium's documented API
 * (sodium_malloc, sodium_allocarray, sodium_free, sodium_mprotect_*), run
 * natively and under libexmem-preload in both EXMEM_SODIUM modes.
 *
 *   sodium_test native   no drop-in: nothing lands in memfd_secret memory
 *   sodium_test packed   the default mode: exmem's heap; mprotect is ENOTSUP
 *   sodium_test pages    EXMEM_SODIUM=pages: own pages, mprotect honoured
 *   sodium_test bad      EXMEM_SODIUM is invalid: a message, allocations fail
 *   sodium_test report   3 allocations, 2 freed (for the exit report's test)
 *   sodium_test private  EXMEM_FORK=private overrides the drop-in's default:
 *                        a forked child cannot reach its parent's object
 *   sodium_test require  fails loudly when memfd_secret is unavailable */
#include "check.h"  /* first: it defines _GNU_SOURCE */
#include <sodium.h>


static unsigned char* g_obj;
static size_t g_len;

static int child_reads(void* arg) {
  (void)arg;
  volatile unsigned char c = g_obj[0];
  (void)c;
  return 0;
}
static int child_writes(void* arg) {
  (void)arg;
  /* The same value back: under the drop-in the child shares its parent's
   * pages (EXMEM_FORK_SHARE), where libsodium's would be copied on write. */
  volatile unsigned char* q = g_obj;
  q[0] = q[0];
  return 0;
}
static int child_overflows(void* arg) {
  (void)arg;
  ((volatile unsigned char*)g_obj)[g_len] = 1;  /* one byte past the object */
  return 0;
}
/* The gpg-agent pattern: allocate, then fork; the child goes on with the object. */
static int child_uses_and_frees(void* arg) {
  unsigned seed = *(unsigned*)arg;
  if (!filled(g_obj, g_len, seed)) return 3;
  sodium_free(g_obj); /* the child's free leaves the parent's object alone */
  unsigned char* again = sodium_malloc(g_len);
  if (!again) return 4;
  fill(again, g_len, seed + 1);
  sodium_free(again);
  return 0;
}

static void basics(int preloaded, const char* mode) {
  size_t len = 100;
  unsigned char* p = sodium_malloc(len);
  CHECK(p != NULL, "sodium_malloc(%zu): %s", len, strerror(errno));
  CHECK(in_secretmem(p) == preloaded, "%s: sodium_malloc's object %p %s in a /secretmem mapping", mode, (void*)p,
        preloaded ? "is not" : "is");
  CHECK(all_bytes(p, len, 0xdb), "a new object is filled with 0xdb, as libsodium documents");
  fill(p, len, 7);
  CHECK(filled(p, len, 7), "contents survive");

  /* sodium_allocarray: count * size overflow is ENOMEM. */
  errno = 0;
  CHECK(sodium_allocarray(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM, "allocarray overflow: errno %d", errno);
  unsigned char* a = sodium_allocarray(10, 12);
  CHECK(a != NULL && in_secretmem(a) == preloaded, "sodium_allocarray(10, 12)");
  sodium_free(a);
  sodium_free(NULL);

  if (strcmp(mode, "packed") == 0) {
    capture_stderr();
    errno = 0;
    int rc1 = sodium_mprotect_noaccess(p), e1 = errno;
    int rc2 = sodium_mprotect_readonly(p), e2 = errno;
    int rc3 = sodium_mprotect_readwrite(p), e3 = errno;
    const char* said = captured_stderr();
    CHECK(rc1 == -1 && e1 == ENOTSUP, "packed: sodium_mprotect_noaccess must refuse (-1, ENOTSUP), not pretend: "
          "got %d, errno %d", rc1, e1);
    CHECK(rc2 == -1 && e2 == ENOTSUP, "packed: sodium_mprotect_readonly");
    CHECK(rc3 == -1 && e3 == ENOTSUP, "packed: sodium_mprotect_readwrite");
    const char* hint = strstr(said, "EXMEM_SODIUM=pages");
    CHECK(hint && !strstr(hint + 1, "EXMEM_SODIUM=pages"), "said once on stderr, naming EXMEM_SODIUM=pages: '%s'",
          said);
    CHECK(filled(p, len, 7), "still readable and intact");
    sodium_free(p);
    /* The object stays mapped in exmem's heap: its bytes must be zero now. */
    CHECK(all_bytes(p, len, 0), "sodium_free wipes the object");
    return;
  }

  /* pages and native: the object ends where its pages end (guard page after). */
  long page = sysconf(_SC_PAGESIZE);
  CHECK(((uintptr_t)p + len) % (uintptr_t)page == 0, "the object ends at a page boundary, as libsodium places it");
  g_obj = p;
  g_len = len;
  CHECK(killed_by(in_child(child_overflows, NULL), SIGSEGV), "a write past the object hits the guard page");
  CHECK(sodium_mprotect_noaccess(p) == 0, "sodium_mprotect_noaccess: %s", strerror(errno));
  CHECK(killed_by(in_child(child_reads, NULL), SIGSEGV), "noaccess: a read faults");
  CHECK(sodium_mprotect_readonly(p) == 0, "sodium_mprotect_readonly");
  CHECK(exited_ok(in_child(child_reads, NULL)), "readonly: a read works");
  CHECK(killed_by(in_child(child_writes, NULL), SIGSEGV), "readonly: a write faults");
  CHECK(sodium_mprotect_readwrite(p) == 0, "sodium_mprotect_readwrite");
  CHECK(exited_ok(in_child(child_writes, NULL)), "readwrite: a write works");
  CHECK(filled(p, len, 7), "contents survive the protection changes");
  sodium_mprotect_noaccess(p);
  sodium_free(p); /* frees whatever the protection */
  if (preloaded) CHECK(!in_secretmem(p), "pages: sodium_free unmaps the object's pages");
}

static void fork_after_alloc(int preloaded) {
  unsigned seed = 42;
  g_len = 48;
  g_obj = sodium_malloc(g_len);
  CHECK(g_obj != NULL && in_secretmem(g_obj) == preloaded, "sodium_malloc before fork");
  fill(g_obj, g_len, seed);
  int st = in_child(child_uses_and_frees, &seed);
  CHECK(exited_ok(st), "the forked child reads its parent's object and frees it (status %d)", st);
  CHECK(filled(g_obj, g_len, seed), "the child's sodium_free left the parent's object intact");
  sodium_free(g_obj);
}

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "require") == 0) {
    require_memfd_secret();
    return 0;
  }
  int preloaded = preloaded_mode(argc, argv, "native|packed|pages|bad|report|private|require");
  CHECK(sodium_init() >= 0, "sodium_init");
  const char* mode = argv[1];
  const char* env = getenv("EXMEM_SODIUM");
  if (strcmp(mode, "bad") == 0) {
    capture_stderr();
    errno = 0;
    void* p = sodium_malloc(32);
    int e = errno;
    const char* said = captured_stderr();
    CHECK(p == NULL && e == ENOMEM, "EXMEM_SODIUM=%s: sodium_malloc must fail with ENOMEM (got %p, errno %d)", env,
          p, e);
    CHECK(strstr(said, "EXMEM_SODIUM") && strstr(said, "packed") && strstr(said, "pages"),
          "the message names the variable and its values: '%s'", said);
    return 0;
  }
  if (strcmp(mode, "report") == 0) {
    void* a = sodium_malloc(10);
    void* b = sodium_malloc(20);
    void* c = sodium_malloc(30);
    CHECK(a && b && c, "sodium_malloc");
    sodium_free(a);
    sodium_free(c);
    (void)b; /* live at exit */
    return 0;
  }
  if (strcmp(mode, "private") == 0) {
    const char* fork_env = getenv("EXMEM_FORK");
    CHECK(fork_env && strcmp(fork_env, "private") == 0, "run with EXMEM_FORK=private");
    g_len = 64;
    g_obj = sodium_malloc(g_len);
    CHECK(g_obj && in_secretmem(g_obj), "sodium_malloc");
    fill(g_obj, g_len, 1);
    int st = in_child(child_reads, NULL);
    CHECK(killed_by(st, SIGSEGV), "EXMEM_FORK=private: the child must not reach the object (status %d)", st);
    CHECK(filled(g_obj, g_len, 1), "the parent's object is intact");
    sodium_free(g_obj);
    printf("sodium private (EXMEM_SODIUM=%s): ok\n", env ? env : "(unset)");
    return 0;
  }
  if (preloaded) {
    int pages = env && strcmp(env, "pages") == 0;
    CHECK(pages == (strcmp(mode, "pages") == 0), "mode %s, EXMEM_SODIUM=%s", mode, env ? env : "(unset)");
  }
  basics(preloaded, preloaded ? mode : "native");
  fork_after_alloc(preloaded);
  printf("sodium %s: ok\n", mode);
  return 0;
}
