// fuzz/check.hpp: how the model's fuzz targets report an input that broke a
// promise: the program's name and what went wrong on stderr, then abort(),
// which libFuzzer keeps as a crash with its input and which fails the corpus
// replay (tests/stress: fuzz.replay.*).
#pragma once

#include <cerrno>  // program_invocation_short_name
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace exmem::fuzz {

[[noreturn]] __attribute__((format(printf, 1, 2))) inline void diverge(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "%s: ", program_invocation_short_name);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
  std::abort();
}

}  // namespace exmem::fuzz

#define CHECK(cond, ...)                                 \
  do {                                                   \
    if (!(cond)) ::exmem::fuzz::diverge(__VA_ARGS__);    \
  } while (0)
