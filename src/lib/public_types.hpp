// Conversions between the library's internal types and the public C API's
// (include/exmem/exmem.h), used by the API functions only.
#pragma once

#include <exmem/exmem.h>

#include "backend/backend.hpp"

namespace exmem {

// enum exmem_protection_level of a backend kind.
inline int protection_of(backend::Kind k) {
  switch (k) {
    case backend::Kind::secret:
      return EXMEM_PROT_SECRET;
    case backend::Kind::locked:
      return EXMEM_PROT_LOCKED;
    default:
      return EXMEM_PROT_NONE;
  }
}

// The backend kind of a protection level (EXMEM_PROT_SECRET or _LOCKED).
inline backend::Kind kind_of(int protection) {
  return protection == EXMEM_PROT_SECRET ? backend::Kind::secret : backend::Kind::locked;
}

}  // namespace exmem
