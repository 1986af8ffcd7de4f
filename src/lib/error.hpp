// The calling thread's last error: a code from enum exmem_error and a message
// that names what was asked, the limit that refused it and the remedy.
// Owns nothing else; every part of the library reports through it.
#pragma once

#include <cstdarg>

namespace exmem::detail {

// Records code and a printf-style message for this thread; returns code.
int set_error(int code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
int last_error();
const char* last_error_message();

// Prints "exmem: <message> (<ptr>)" and aborts. For heap corruption and misuse.
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace exmem::detail
