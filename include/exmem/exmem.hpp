// exmem: C++ interface. Standard containers and an owning handle over exmem's
// exclusive heap (see exmem.h for what the memory guarantees).
#ifndef EXMEM_EXMEM_HPP
#define EXMEM_EXMEM_HPP

#include <exmem/exmem.h>

#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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

}  // namespace exmem

#endif  // EXMEM_EXMEM_HPP
