// Internal to host: printf-style appending into a caller's buffer, with
// snprintf's contract (the text is cut to fit, the length it needed is kept).
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <string>

namespace exmem::host::detail {

class BufferWriter {
 public:
  BufferWriter(char* buf, std::size_t size) : buf_(buf), size_(size) {
    if (size_ > 0) buf_[0] = '\0';
  }
  void add(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    const std::size_t at = len_ < size_ ? len_ : size_;
    const int n = std::vsnprintf(size_ > at ? buf_ + at : nullptr, size_ > at ? size_ - at : 0, fmt, ap);
    va_end(ap);
    if (n > 0) len_ += static_cast<std::size_t>(n);
  }
  // The length the whole text needs, without its NUL.
  std::size_t length() const { return len_; }

 private:
  char* buf_;
  std::size_t size_;
  std::size_t len_ = 0;
};

// Runs word(buf, size), which has snprintf's contract, into a string of the
// length it needs.
template <typename Word>
std::string worded(Word&& word) {
  char buf[1024];
  const std::size_t n = word(buf, sizeof buf);
  if (n < sizeof buf) return std::string(buf, n);
  std::string s(n, '\0');
  word(s.data(), n + 1);
  return s;
}

}  // namespace exmem::host::detail
