// exmem: C++ interface. Standard containers and an owning handle over exmem's
// exclusive heap, vaults with scoped access, and the input helpers (see
// exmem.h for what the memory guarantees).
#ifndef EXMEM_EXMEM_HPP
#define EXMEM_EXMEM_HPP

#include <exmem/exmem.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>
#if __cplusplus >= 202002L && __has_include(<span>)
#include <span>
#endif

namespace exmem {

// Thrown when exclusive memory cannot be had; carries the reason.
class bad_alloc : public std::bad_alloc {
 public:
  bad_alloc(int error, std::string message) : error_(error), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  int error() const noexcept { return error_; }

 private:
  int error_;
  std::string message_;
};

[[noreturn]] inline void throw_last_error() {
  throw bad_alloc(exmem_last_error(), exmem_last_error_message());
}

inline void init(const exmem_config& cfg) {
  if (exmem_init(&cfg) != EXMEM_OK) throw_last_error();
}

inline int protection() noexcept { return exmem_protection(); }

// Wipes n bytes so that the compiler cannot drop the stores.
inline void wipe(void* p, std::size_t n) noexcept {
  std::memset(p, 0, n);
  asm volatile("" : : "r"(p) : "memory");
}

// An allocator for standard containers. Memory is wiped when it is freed.
template <class T>
struct allocator {
  using value_type = T;
  allocator() noexcept = default;
  template <class U>
  allocator(const allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    void* p = exmem_alloc(n * sizeof(T));
    if (!p) throw_last_error();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { exmem_free(p); }

  template <class U>
  bool operator==(const allocator<U>&) const noexcept { return true; }
};

template <class T>
using vector = std::vector<T, allocator<T>>;
using string = std::basic_string<char, std::char_traits<char>, allocator<char>>;

// An owning handle to one T in exclusive memory. Its bytes are wiped when the
// handle is destroyed or reset. Movable, not copyable.
template <class T>
class secret {
 public:
  template <class... Args>
  explicit secret(Args&&... args) {
    void* p = exmem_alloc(sizeof(T));
    if (!p) throw_last_error();
    try {
      ptr_ = ::new (p) T(std::forward<Args>(args)...);
    } catch (...) {
      exmem_free(p);
      throw;
    }
  }
  secret(const secret&) = delete;
  secret& operator=(const secret&) = delete;
  secret(secret&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
  secret& operator=(secret&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
    }
    return *this;
  }
  ~secret() { reset(); }

  // Destroys and wipes the value; the handle is empty afterwards.
  void reset() noexcept {
    if (!ptr_) return;
    ptr_->~T();
    exmem_free(ptr_);  // exmem_free wipes the bytes
    ptr_ = nullptr;
  }

  T& operator*() noexcept { return *ptr_; }
  const T& operator*() const noexcept { return *ptr_; }
  T* operator->() noexcept { return ptr_; }
  const T* operator->() const noexcept { return ptr_; }
  T* get() noexcept { return ptr_; }
  const T* get() const noexcept { return ptr_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

 private:
  T* ptr_ = nullptr;
};

// Statistics as a value.
inline struct exmem_stats stats() {
  struct exmem_stats s{};
  ::exmem_stats(&s);
  return s;
}

// ---- Vaults ---------------------------------------------------------------

// One open of a vault, closed when the guard goes away. Byte is std::byte for
// read-write access, const std::byte for read access. Movable, not copyable.
template <class Byte>
class vault_access {
 public:
  static constexpr int access = std::is_const_v<Byte> ? EXMEM_VAULT_READ : EXMEM_VAULT_READ_WRITE;

  vault_access(vault_access&& o) noexcept
      : v_(std::exchange(o.v_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  vault_access& operator=(vault_access&& o) noexcept {
    if (this != &o) {
      close();
      v_ = std::exchange(o.v_, nullptr);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  vault_access(const vault_access&) = delete;
  vault_access& operator=(const vault_access&) = delete;
  ~vault_access() { close(); }

  // Ends this open now (the guard is empty afterwards).
  void close() noexcept {
    if (v_) exmem_vault_close(v_, access);
    v_ = nullptr;
    data_ = nullptr;
    size_ = 0;
  }

  Byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  Byte* begin() const noexcept { return data_; }
  Byte* end() const noexcept { return data_ + size_; }
#if __cplusplus >= 202002L && __has_include(<span>)
  std::span<Byte> span() const noexcept { return {data_, size_}; }
#endif
  explicit operator bool() const noexcept { return v_ != nullptr; }

 private:
  friend class vault;
  vault_access(exmem_vault* v, void* p, std::size_t n) noexcept : v_(v), data_(static_cast<Byte*>(p)), size_(n) {}

  exmem_vault* v_ = nullptr;
  Byte* data_ = nullptr;
  std::size_t size_ = 0;
};

using vault_reader = vault_access<const std::byte>;
using vault_writer = vault_access<std::byte>;

// An owning vault: created closed, destroyed (wiped and unmapped) with the
// handle. Every guard of its opens must be gone before it is destroyed (a
// vault destroyed with opens outstanding is left in place, and leaks).
// Movable, not copyable.
class vault {
 public:
  explicit vault(std::size_t size) : v_(exmem_vault_create(size)) {
    if (!v_) throw_last_error();
  }
  vault(vault&& o) noexcept : v_(std::exchange(o.v_, nullptr)) {}
  vault& operator=(vault&& o) noexcept {
    if (this != &o) {
      reset();
      v_ = std::exchange(o.v_, nullptr);
    }
    return *this;
  }
  vault(const vault&) = delete;
  vault& operator=(const vault&) = delete;
  ~vault() { reset(); }

  // Destroys the vault now; the handle is empty afterwards.
  void reset() noexcept {
    if (v_) exmem_vault_destroy(v_);
    v_ = nullptr;
  }

  // Opens for reading / for reading and writing until the guard goes away.
  // Throws exmem::bad_alloc (with the reason) when the vault cannot be opened.
  vault_reader open_read() const { return open<const std::byte>(); }
  vault_writer open_read_write() const { return open<std::byte>(); }

  std::size_t size() const noexcept { return v_ ? exmem_vault_size(v_) : 0; }
  exmem_vault* get() const noexcept { return v_; }
  explicit operator bool() const noexcept { return v_ != nullptr; }

 private:
  template <class Byte>
  vault_access<Byte> open() const {
    void* p = exmem_vault_open(v_, vault_access<Byte>::access);
    if (!p) throw_last_error();
    return vault_access<Byte>(v_, p, exmem_vault_size(v_));
  }

  exmem_vault* v_ = nullptr;
};

// ---- Input helpers ----------------------------------------------------------

// Throws std::system_error with errno and the library's message.
[[noreturn]] inline void throw_system_error(int err) {
  throw std::system_error(err, std::generic_category(), exmem_last_error_message());
}

// exmem_read: bytes read (fewer than size at end of file).
inline std::size_t read(int fd, void* dst, std::size_t size) {
  ssize_t n = exmem_read(fd, dst, size);
  if (n < 0) throw_system_error(errno);
  return static_cast<std::size_t>(n);
}

// exmem_read_password: the line's length (dst NUL-terminated). tty_fd -1: /dev/tty.
inline std::size_t read_password(void* dst, std::size_t size, const char* prompt = nullptr, int tty_fd = -1) {
  ssize_t n = exmem_read_password(tty_fd, prompt, dst, size);
  if (n < 0) throw_system_error(errno);
  return static_cast<std::size_t>(n);
}

// exmem_random.
inline void random(void* dst, std::size_t size) {
  if (exmem_random(dst, size) != EXMEM_OK) throw_system_error(errno);
}

// exmem_adopt: the new object (free it with exmem_free); src is wiped.
// Throws exmem::bad_alloc, src untouched, when no memory can be had.
inline void* adopt(void* src, std::size_t size) {
  void* p = exmem_adopt(src, size);
  if (!p) throw_last_error();
  return p;
}

// Moves a trivially copyable value into a secret<T> and wipes the original.
template <class T>
secret<T> adopt(T& src) {
  static_assert(std::is_trivially_copyable_v<T>, "exmem::adopt(T&) copies bytes: T must be trivially copyable");
  secret<T> s(src);
  wipe(std::addressof(src), sizeof(T));
  return s;
}

// exmem_equal: constant time in size.
inline bool equal(const void* a, const void* b, std::size_t size) noexcept { return exmem_equal(a, b, size) == 1; }

// exmem_is_exclusive: enum exmem_protection_level of the memory holding p.
inline int is_exclusive(const void* p) noexcept { return exmem_is_exclusive(p); }

}  // namespace exmem

#endif  // EXMEM_EXMEM_HPP
