/* exmem drop-in: libexmem-preload.so serves the secure allocations of
 * libsodium, OpenSSL 3 and libgcrypt from exclusive memory, with no change to
 * the program.
 *
 * Two ways to use it:
 *
 *   At run time:   LD_PRELOAD=/usr/lib/<arch>/libexmem-preload.so program ...
 *   At link time:  cc ... -lexmem-preload -lsodium -lcrypto -lgcrypt
 *                  (ahead of the crypto libraries, and ahead of -lexmem if the
 *                  program links that too), and call exmem_dropin() once: it
 *                  reports what is served, and the reference keeps the
 *                  library in the link under --as-needed. (Under
 *                  --as-needed a crypto library the program referenced only
 *                  for its secure heap would itself be dropped, the drop-in
 *                  defining those functions: then it is not loaded and
 *                  exmem_dropin does not report it served.)
 *
 * The library does not link libsodium, libcrypto or libgcrypt; it finds them
 * at run time (dlsym), so one build serves any program.
 *
 * What is served:
 *
 *   libsodium    sodium_malloc, sodium_allocarray, sodium_free,
 *                sodium_mprotect_noaccess / _readonly / _readwrite.
 *                EXMEM_SODIUM=packed (default): objects are packed in exmem's
 *                heap (16-byte aligned, canary after each). sodium_mprotect_*
 *                cannot protect part of a shared page: on such an object they
 *                return -1 with errno ENOTSUP (said once on stderr).
 *                EXMEM_SODIUM=pages: each object gets its own page-granular
 *                exclusive mapping between guard pages, placed at its end as
 *                libsodium places it (so the address is not aligned unless the
 *                size is a multiple of the alignment), and sodium_mprotect_*
 *                change its pages' protection as libsodium does; in
 *                EXMEM_FORK_SHARE mode a forked child keeps these pages too
 *                (its sodium_free drops only its own view). Any other
 *                value: a message naming the variable, and every sodium_malloc
 *                fails (NULL, errno ENOMEM).
 *                The bytes of a new object are 0xdb, as libsodium fills them.
 *                sodium_free of a pointer exmem does not own goes to
 *                libsodium's sodium_free.
 *
 *   OpenSSL 3    CRYPTO_secure_malloc, _zalloc, _free, _clear_free,
 *                _allocated, _actual_size, _used, _malloc_init,
 *                _malloc_initialized, _malloc_done; OpenSSL's own internal
 *                callers (BN_secure_new, private keys of EVP_PKEY ...) call
 *                these through the dynamic linker and are served too.
 *                The secure heap is always ready: CRYPTO_secure_malloc_init's
 *                size and minsize are ignored (exmem needs no pool; it grows
 *                on demand) and it returns 1, CRYPTO_secure_malloc_initialized
 *                returns 1 whether or not the program called _init (so
 *                OPENSSL_secure_malloc is exclusive memory even in programs
 *                that never set up OpenSSL's secure heap, where OpenSSL
 *                itself would fall back to plain malloc).
 *                CRYPTO_secure_malloc_done returns 1 when no object allocated
 *                through these functions is live, else 0, as OpenSSL does.
 *                _free / _clear_free of a pointer exmem does not own go to
 *                OpenSSL's CRYPTO_free / CRYPTO_clear_free.
 *
 *   libgcrypt    In a constructor (and in exmem_dropin), when
 *                gcry_set_allocation_handler can be found, the library installs
 *                allocation handlers: gcry_malloc_secure (and every secure MPI,
 *                key and cipher context) comes from exmem, gcry_is_secure is
 *                true for exmem's objects, gcry_realloc and gcry_free dispatch
 *                on ownership (exmem's objects stay exmem's; other pointers go
 *                to realloc/free), non-secure allocations stay libgcrypt's
 *                default (malloc). Installing runs libgcrypt's global
 *                initialisation early (as gcry_check_version would): a program
 *                that forces FIPS mode afterwards cannot, and a libgcrypt in
 *                FIPS mode refuses handlers (then it is not served, said on
 *                stderr). Handlers are not installed once libgcrypt finished its
 *                initialisation (its pool may hold secure objects the handlers
 *                could not free). GCRYCTL_ENABLE_M_GUARD is incompatible.
 *
 * Set-up: the first served call sets up the exmem heap with fork_mode
 * EXMEM_FORK_SHARE (the secure memory of all three libraries survives fork
 * natively, and daemons such as gpg-agent allocate, then fork: a child keeps
 * its parent's objects; note that parent and child then share their pages,
 * where native memory would be copied on write) and canaries on (a
 * canary after each small object, checked at free: what remains of libsodium's
 * overflow checks in packed mode; it costs density: a 32-byte secret then
 * takes 48 bytes); EXMEM_POLICY, EXMEM_FORK and EXMEM_CANARIES override the
 * policy, the fork mode and the canaries (exmem.h). A program
 * that calls exmem_init itself before its first secure allocation keeps its
 * configuration (the drop-in uses that heap). The library also exports the
 * whole exmem.h API, so a program that links libexmem.so and runs under the
 * preload has one heap.
 *
 * EXMEM_DROPIN_REPORT=stderr or =FILE: at exit, one line is appended (O_APPEND:
 * processes may share the file):
 *   exmem-dropin pid=N protection=secret|locked|none sodium_allocs=A
 *   sodium_live=L openssl_allocs=A openssl_live=L gcrypt_allocs=A gcrypt_live=L
 * (allocations served by exmem since the start, and those not yet freed).
 */
#ifndef EXMEM_DROPIN_H
#define EXMEM_DROPIN_H

#include <exmem/exmem.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EXMEM_DROPIN_SODIUM 1u
#define EXMEM_DROPIN_OPENSSL 2u
#define EXMEM_DROPIN_GCRYPT 4u
#define EXMEM_DROPIN_ALL (EXMEM_DROPIN_SODIUM | EXMEM_DROPIN_OPENSSL | EXMEM_DROPIN_GCRYPT)

/* Of the libraries in `which`, those whose secure allocations exmem serves in
 * this process: the library is loaded and its functions resolve to the drop-in
 * (and, for libsodium, EXMEM_SODIUM is valid); for libgcrypt, the handlers are
 * installed, which this call does if they are not yet (a libgcrypt loaded
 * with dlopen after start-up, say). Sets nothing else up; thread-safe. */
EXMEM_API unsigned exmem_dropin(unsigned which);

#ifdef __cplusplus
}
#endif

#endif /* EXMEM_DROPIN_H */
