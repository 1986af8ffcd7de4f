// Diagnostics: turns what the backend and the kernel reported (a failed step
// and its errno, limits read through pal/) into the calling thread's last error
// (an enum exmem_error and a message naming what was asked, the limit that
// refused it and the remedy), and words the one notice the library prints.
// The layers below report facts only; this is the only place that words them.
#pragma once

#include <cstddef>

#include "backend/backend.hpp"

namespace exmem::diagnostics {

// Records the failure of a mapping of len bytes as the last error and returns
// its enum exmem_error. charged: bytes this heap already holds locked.
int mapping_failed(const backend::Failure& f, size_t len, size_t charged);

// A sentence saying why memfd_secret is unavailable, for errno e.
const char* why_unavailable(int e);

// The policy is EXMEM_REQUIRE_SECRET and memfd_secret failed with e.
int secret_required(int e);

// Says once on stderr that memfd_secret failed with e and locked memory is used.
void announce_fallback(int e);

}  // namespace exmem::diagnostics
