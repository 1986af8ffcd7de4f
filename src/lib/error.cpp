#include "error.hpp"

#include <cstdio>
#include <cstdlib>

#include "pal/pal.hpp"

namespace exmem::detail {

namespace {
thread_local int t_code = 0;
thread_local char t_message[512] = "no error";
}  // namespace

int set_error(int code, const char* fmt, ...) {
  t_code = code;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(t_message, sizeof t_message, fmt, ap);
  va_end(ap);
  return code;
}

int last_error() { return t_code; }
const char* last_error_message() { return t_message; }

void fatal(const char* fmt, ...) {
  // No allocation here: the heap may be what is broken.
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "exmem: ");
  va_list ap;
  va_start(ap, fmt);
  n += std::vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n), fmt, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof buf) - 2) n = static_cast<int>(sizeof buf) - 2;
  buf[n++] = '\n';
  pal::write_stderr(buf, static_cast<size_t>(n));
  std::abort();
}

}  // namespace exmem::detail
