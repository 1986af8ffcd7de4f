/* exmem: exclusive memory for secrets.
 *
 * Memory handed out by this library lives in memfd_secret(2) regions: pages that
 * the kernel removed from its direct map, so that other processes (even root,
 * through /proc/PID/mem, process_vm_readv or ptrace), core dumps and swap cannot
 * reach them. Many small secrets are packed into few pages; every region is
 * reserved and pre-faulted when it is created, so that using memory after a
 * successful allocation never faults and fails.
 *
 * When memfd_secret is unavailable, the policy decides: fall back to locked
 * memory (mlock + MADV_DONTDUMP + MADV_WIPEONFORK + guard pages), or fail.
 *
 * Every function is thread-safe. Allocation functions return NULL on failure
 * with errno set (ENOMEM, or EINVAL for an impossible size); the precise reason
 * is available from exmem_last_error() and exmem_last_error_message().
 */
#ifndef EXMEM_EXMEM_H
#define EXMEM_EXMEM_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EXMEM_VERSION_MAJOR 0
#define EXMEM_VERSION_MINOR 1
#define EXMEM_VERSION_PATCH 0

/* Marks the library's exported functions: the shared library is built with
 * hidden visibility, and these are all it exports. */
#if defined(__GNUC__)
#define EXMEM_API __attribute__((visibility("default")))
#else
#define EXMEM_API
#endif

/* Where exclusive memory may come from (exmem_config.policy). */
enum exmem_policy {
  EXMEM_PREFER_SECRET = 0,  /* default: memfd_secret, else locked memory (said once on stderr) */
  EXMEM_REQUIRE_SECRET = 1, /* memfd_secret or nothing: fail if it is unavailable */
  EXMEM_LOCKED_ONLY = 2     /* never memfd_secret: locked anonymous memory only */
};

/* What protects the memory in use (exmem_protection()). */
enum exmem_protection_level {
  EXMEM_PROT_NONE = 0,   /* no backend chosen yet, or none could be had */
  EXMEM_PROT_SECRET = 1, /* memfd_secret: removed from the kernel direct map */
  EXMEM_PROT_LOCKED = 2  /* mlock + MADV_DONTDUMP + MADV_WIPEONFORK + guard pages */
};

/* What a child process created by fork() gets (exmem_config.fork_mode). */
enum exmem_fork_mode {
  EXMEM_FORK_PRIVATE = 0, /* default: the child cannot reach the parent's secrets
                             (MADV_DONTFORK); its allocator starts clean */
  EXMEM_FORK_SHARE = 1    /* the child keeps the parent's regions mapped and shared;
                             it allocates from new regions of its own, and its
                             exmem_free() of an inherited object leaves it alone */
};

/* Error codes (exmem_init, exmem_last_error, exmem_share_*). 0 is success. */
enum exmem_error {
  EXMEM_OK = 0,
  EXMEM_E_INVALID = 1,     /* an argument is out of range */
  EXMEM_E_NO_SECRET = 2,   /* memfd_secret unavailable and the policy requires it */
  EXMEM_E_MEMLOCK = 3,     /* RLIMIT_MEMLOCK refused the region */
  EXMEM_E_MAXIMUM = 4,     /* the configured maximum would be exceeded */
  EXMEM_E_NO_MEMORY = 5,   /* the kernel has no memory (or address space) for it */
  EXMEM_E_SYSTEM = 6,      /* a system call failed for another reason */
  EXMEM_E_ALREADY = 7,     /* exmem_init after the heap was set up with another config */
  EXMEM_E_PROTOCOL = 8     /* a share message was malformed or carried no descriptor */
};

struct exmem_config {
  size_t reserve;  /* bytes to reserve and pre-fault now (0: none until first use) */
  size_t growth;   /* bytes per new region (0: 1 MiB; regions grow up to 16x this) */
  size_t maximum;  /* cap on exclusive bytes held (0: no cap but the address-space reserve) */
  int policy;      /* enum exmem_policy */
  int fork_mode;   /* enum exmem_fork_mode */
  int canaries;    /* nonzero: a canary after every small object, checked at free */
  int quiet;       /* nonzero: do not announce a fallback to locked memory on stderr */
};

struct exmem_stats {
  size_t live_objects;    /* objects allocated and not yet freed */
  size_t live_bytes;      /* their usable bytes (size-class rounded) */
  size_t reserved_bytes;  /* bytes of exclusive memory mapped and pre-faulted */
  size_t exclusive_pages; /* pages removed from the direct map (0 for locked memory) */
  size_t memlock_bytes;   /* bytes charged to RLIMIT_MEMLOCK */
  size_t mappings;        /* VMAs the heap uses (regions, large objects, guards) */
  size_t regions;         /* memfd_secret files (or locked mappings) in use */
  int protection;         /* enum exmem_protection_level */
  size_t fallback_bytes;  /* bytes held in locked memory because memfd_secret was unavailable
                             and EXMEM_PREFER_SECRET fell back (0 under memfd_secret, and
                             under EXMEM_LOCKED_ONLY, which asked for locked memory) */
  size_t vaults;          /* vaults in existence */
};

/* Optional explicit set-up; the first allocation otherwise sets up the defaults.
 * cfg may be NULL (defaults). Without a config (no exmem_init, or cfg NULL) the
 * environment may set three fields: EXMEM_POLICY (prefer-secret, require-secret,
 * locked-only), EXMEM_FORK (private, share) and EXMEM_CANARIES (0, 1); a value
 * not among those refuses
 * set-up with EXMEM_E_INVALID naming the variable. A set-user-ID program
 * ignores both (secure_getenv). Returns EXMEM_OK or an enum exmem_error; a second
 * call with an identical config returns EXMEM_OK, with another EXMEM_E_ALREADY. */
EXMEM_API int exmem_init(const struct exmem_config *cfg);

EXMEM_API void *exmem_alloc(size_t size);
EXMEM_API void *exmem_calloc(size_t n, size_t size);
/* Moves the object when it must; the old object is wiped. realloc(p, 0) frees p
 * and returns NULL. On failure returns NULL and leaves p untouched. */
EXMEM_API void *exmem_realloc(void *p, size_t size);
/* Wipes the object and releases it. NULL is ignored. A pointer the heap does not
 * own, a double free, or a damaged canary aborts with a message naming it. */
EXMEM_API void exmem_free(void *p);
/* Usable bytes of a live object (>= the size asked for). */
EXMEM_API size_t exmem_usable_size(const void *p);

/* enum exmem_protection_level of the backend in use (sets up the heap if needed). */
EXMEM_API int exmem_protection(void);
EXMEM_API const char *exmem_strerror(int error);
/* The calling thread's last error (enum exmem_error) and its full message, which
 * names the limit, the amount asked and the remedy. */
EXMEM_API int exmem_last_error(void);
EXMEM_API const char *exmem_last_error_message(void);
/* In C++ the function hides the struct's name: write `struct exmem_stats s;`. */
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif
EXMEM_API int exmem_stats(struct exmem_stats *out);
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* Passing exclusive memory to another process. */
struct exmem_shared {
  void *addr;     /* mapping in this process (pre-faulted, guard pages around) */
  size_t size;    /* bytes, a whole number of pages */
  int fd;         /* the memfd_secret (or locked memfd) file behind it */
  int protection; /* enum exmem_protection_level */
};
/* Creates a shared exclusive region of at least size bytes, zeroed. */
EXMEM_API int exmem_share_create(size_t size, struct exmem_shared *out);
/* Sends the region's descriptor and size over a connected AF_UNIX socket. */
EXMEM_API int exmem_share_send(int sock, const struct exmem_shared *s);
/* Receives a region sent with exmem_share_send and maps it here. */
EXMEM_API int exmem_share_recv(int sock, struct exmem_shared *out);
/* Unmaps the region and closes its descriptor (the last holder's close frees it). */
EXMEM_API int exmem_share_release(struct exmem_shared *s);

/* Vaults: memory that is inaccessible (PROT_NONE) while no one uses it.
 * A vault is a page-granular exclusive mapping of its own, flanked by guard
 * pages, zeroed at creation and wiped at destruction; it counts towards
 * exmem_config.maximum. Opens are counted per access: the mapping is
 * read-write while any EXMEM_VAULT_READ_WRITE open is outstanding, read-only
 * while only EXMEM_VAULT_READ opens are, and PROT_NONE when the last one
 * closes. So nested and concurrent users of one vault are safe; each close
 * must match an open of the same access. Every function is thread-safe; the
 * protection changes under the vault's own lock (one mprotect when the access
 * changes, none for a nested open or close).
 * fork(): a child never gets a vault's pages, whatever the fork mode (like a
 * shared region, it is MADV_DONTFORK): in the child exmem_vault_open and
 * exmem_vault_close of an inherited handle fail with EXMEM_E_INVALID, and
 * exmem_vault_destroy releases only the child's copy of the handle (EXMEM_OK);
 * the parent's vault is untouched. */
struct exmem_vault;
enum exmem_vault_access {
  EXMEM_VAULT_READ = 1,      /* readable while open */
  EXMEM_VAULT_READ_WRITE = 3 /* readable and writable while open */
};
/* A new closed vault of at least size bytes (rounded up to whole pages), in
 * memory of the heap's backend (memfd_secret, or locked memory).
 * NULL with errno (ENOMEM, EINVAL for size 0) and exmem_last_error() on failure. */
EXMEM_API struct exmem_vault *exmem_vault_create(size_t size);
/* Opens the vault for access; returns its address, or NULL (EXMEM_E_INVALID
 * for a bad access value or a NULL vault). */
EXMEM_API void *exmem_vault_open(struct exmem_vault *v, int access);
/* Ends one open of that access. EXMEM_OK, or EXMEM_E_INVALID if none is outstanding. */
EXMEM_API int exmem_vault_close(struct exmem_vault *v, int access);
/* Bytes usable in the vault (a whole number of pages). */
EXMEM_API size_t exmem_vault_size(const struct exmem_vault *v);
/* Wipes and unmaps the vault. EXMEM_OK; EXMEM_E_INVALID (and nothing is
 * released) while opens are outstanding. NULL is ignored. */
EXMEM_API int exmem_vault_destroy(struct exmem_vault *v);

/* Secrets in without a plaintext copy elsewhere. dst must be exmem memory
 * (a live heap object, a vault open with EXMEM_VAULT_READ_WRITE, a shared
 * region of this process) with room for size bytes from dst on, as
 * exmem_is_exclusive() finds it: anything else is refused with EINVAL and
 * EXMEM_E_INVALID, before anything is read. */
/* Reads from fd into dst until size bytes or end of file (retrying EINTR and
 * short reads). Returns the bytes read, or -1 with errno; on error the bytes
 * read so far are wiped. */
EXMEM_API ssize_t exmem_read(int fd, void *dst, size_t size);
/* Writes prompt to the terminal, turns echo off, reads one line into dst
 * (byte by byte: no stdio buffer), NUL-terminates it without the newline and
 * restores the terminal. tty_fd is the terminal to use, or -1 for /dev/tty.
 * Returns the length, or -1 with errno (ENOTTY: not a terminal; ENOBUFS: the
 * line does not fit in size - 1 bytes, and what was read is wiped). End of
 * file ends the line (a line without a newline; 0 bytes at once). The
 * terminal is restored on every return; a signal that ends the process while
 * it waits leaves echo off, as with getpass(3). */
EXMEM_API ssize_t exmem_read_password(int tty_fd, const char *prompt, void *dst, size_t size);
/* Fills dst with size random bytes from the kernel (getrandom). EXMEM_OK or
 * an enum exmem_error. */
EXMEM_API int exmem_random(void *dst, size_t size);
/* Copies size bytes from src into a new exmem object and wipes src (which the
 * compiler cannot elide). Returns the object, or NULL with errno, src untouched. */
EXMEM_API void *exmem_adopt(void *src, size_t size);
/* 1 if the size bytes at a and b are equal, else 0, in time that depends on
 * size only (every byte is read; no branch depends on the data). 0 for a NULL
 * buffer with size > 0. */
EXMEM_API int exmem_equal(const void *a, const void *b, size_t size);
/* The protection of the exmem memory containing p (enum
 * exmem_protection_level): a live heap object (any byte of its usable size),
 * a vault (any byte of its pages, open or closed) or a shared region of this
 * process; EXMEM_PROT_NONE for anything else, including a freed object (a
 * small one still in another thread's cache of recently freed objects, at
 * most one per size class and thread, is the exception: it still counts) and
 * objects a child inherited in EXMEM_FORK_SHARE mode (the parent's). Never
 * touches the memory at p: any pointer may be asked about. */
EXMEM_API int exmem_is_exclusive(const void *p);

#ifdef __cplusplus
}
#endif

#endif /* EXMEM_EXMEM_H */
