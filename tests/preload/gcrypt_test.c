/* libgcrypt's secure memory, written to libgcrypt's documented API
 * (gcry_malloc_secure, gcry_is_secure, gcry_realloc, gcry_pk_*), natively and
 * under libexmem-preload, whose constructor installs allocation handlers.
 *
 *   gcrypt_test native | preload */
#include "check.h"  /* first: it defines _GNU_SOURCE */
#include <gcrypt.h>


static void* g_obj;

static int child_uses(void* arg) {
  (void)arg;
  if (!filled(g_obj, 200, 9)) return 3;
  gcry_free(g_obj);
  return 0;
}

/* Objects live in exmem's heap (0 natively: no exmem there). */
static size_t exmem_live(void) {
  struct exmem_stats_view {
    size_t live_objects, live_bytes, reserved_bytes, exclusive_pages, memlock_bytes, mappings, regions;
    int protection;
  } s;
  int (*stats)(void*) = NULL;
  void* sym = dlsym(RTLD_DEFAULT, "exmem_stats");
  memcpy(&stats, &sym, sizeof sym);
  if (!stats || stats(&s) != 0) return 0;
  return s.live_objects;
}

static void ecc_sign_verify(int preloaded, int first) {
  gcry_sexp_t params, key, pub, sec, data, sig;
  size_t live0 = exmem_live();
  CHECK(gcry_sexp_build(&params, NULL, "(genkey (ecc (curve Ed25519)(flags eddsa)))") == 0, "sexp");
  gcry_error_t err = gcry_pk_genkey(&key, params);
  CHECK(err == 0, "gcry_pk_genkey: %s", gcry_strerror(err));
  if (preloaded) CHECK(exmem_live() > live0, "the key's secret lives in exmem's heap (%zu > %zu)", exmem_live(), live0);
  pub = gcry_sexp_find_token(key, "public-key", 0);
  sec = gcry_sexp_find_token(key, "private-key", 0);
  CHECK(pub && sec, "key parts");
  const char msg[] = "a message to sign";
  CHECK(gcry_sexp_build(&data, NULL, "(data (flags eddsa)(hash-algo sha512)(value %b))", (int)sizeof msg, msg) == 0,
        "data");
  err = gcry_pk_sign(&sig, data, sec);
  CHECK(err == 0, "gcry_pk_sign: %s", gcry_strerror(err));
  err = gcry_pk_verify(sig, data, pub);
  CHECK(err == 0, "gcry_pk_verify: %s", gcry_strerror(err));
  gcry_sexp_release(sig);
  gcry_sexp_release(data);
  gcry_sexp_release(pub);
  gcry_sexp_release(sec);
  gcry_sexp_release(key);
  gcry_sexp_release(params);
  /* The first operation leaves libgcrypt's lasting secure state (the random
   * pool): compare from the second on. */
  if (preloaded && !first) CHECK(exmem_live() == live0, "every secure object of the key operation freed: "
                       "%zu live, %zu before", exmem_live(), live0);
}

/* Daemonizing as gpg-agent does: the child forks a grandchild and exits at
 * once; the grandchild, whose parent is gone, goes on with the object its
 * grandparent allocated before the forks and answers through a pipe. */
static int g_pipe[2];
static int daemonize(void* arg) {
  (void)arg;
  pid_t pid = fork();
  if (pid != 0) _exit(pid > 0 ? 0 : 1);
  usleep(20000); /* the intermediate parent has exited */
  char ok = filled(g_obj, 200, 9) ? 'y' : 'n';
  gcry_free(g_obj);
  void* fresh = gcry_malloc_secure(64); /* and allocates secure memory of its own */
  if (!fresh || !gcry_is_secure(fresh)) ok = 'a';
  gcry_free(fresh);
  if (write(g_pipe[1], &ok, 1) != 1) _exit(1);
  _exit(0);
}

int main(int argc, char** argv) {
  int preloaded = preloaded_mode(argc, argv, "native|preload");
  CHECK(gcry_check_version(GCRYPT_VERSION) != NULL, "gcry_check_version");
  gcry_control(GCRYCTL_INIT_SECMEM, 65536, 0);
  gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);

  unsigned char* p = gcry_malloc_secure(100);
  CHECK(p != NULL, "gcry_malloc_secure");
  CHECK(in_secretmem(p) == preloaded, "gcry_malloc_secure's object %s in memfd_secret memory",
        preloaded ? "must be" : "must not be");
  CHECK(gcry_is_secure(p), "gcry_is_secure of a secure object");
  void* plain = gcry_malloc(100);
  CHECK(plain && !gcry_is_secure(plain), "gcry_malloc's object is not secure");
  fill(p, 100, 5);

  /* gcry_realloc keeps secure memory secure, and the contents. */
  unsigned char* q = gcry_realloc(p, 5000);
  CHECK(q != NULL && gcry_is_secure(q) && in_secretmem(q) == preloaded, "gcry_realloc of secure memory stays secure");
  CHECK(filled(q, 100, 5), "gcry_realloc keeps the contents");
  if (preloaded && q != p) CHECK(all_bytes(p, 100, 0), "the old copy is wiped");
  plain = gcry_realloc(plain, 5000);
  CHECK(plain && !gcry_is_secure(plain), "gcry_realloc of ordinary memory stays ordinary");
  gcry_free(plain);
  gcry_free(q);

  gcry_mpi_t m = gcry_mpi_snew(256);
  CHECK(gcry_mpi_get_flag(m, GCRYMPI_FLAG_SECURE), "gcry_mpi_snew is secure");
  gcry_mpi_randomize(m, 256, GCRY_STRONG_RANDOM);
  gcry_mpi_release(m);

  ecc_sign_verify(preloaded, 1);
  ecc_sign_verify(preloaded, 0);

  /* The gpg-agent pattern: allocate, fork, the child goes on with the object. */
  g_obj = gcry_malloc_secure(200);
  CHECK(g_obj != NULL, "gcry_malloc_secure");
  fill(g_obj, 200, 9);
  int st = in_child(child_uses, NULL);
  CHECK(exited_ok(st), "a forked child uses and frees its parent's secure object (status %d)", st);
  CHECK(filled(g_obj, 200, 9), "the child's free left the parent's object intact");
  CHECK(pipe(g_pipe) == 0, "pipe");
  CHECK(exited_ok(in_child(daemonize, NULL)), "the daemonizing child exits");
  close(g_pipe[1]);
  char answer = 0;
  CHECK(read(g_pipe[0], &answer, 1) == 1 && answer == 'y', "the daemon uses its grandparent's object: '%c'", answer);
  CHECK(filled(g_obj, 200, 9), "the daemon's free left the object intact");
  gcry_free(g_obj);
  printf("gcrypt %s: ok\n", argv[1]);
  return 0;
}
