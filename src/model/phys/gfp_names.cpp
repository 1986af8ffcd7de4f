// phys/: see gfp.hpp for what the folder owns.
// gfp_names.cpp: gfp flags to and from the names show_gfp_flags() prints.
#include "model/phys/gfp_names.hpp"

#include <string>

namespace exmem::model::phys {

std::optional<Gfp> gfp_from_name(std::string_view name) {
  for (const GfpName& g : kGfpNames) {
    if (g.name == name) return g.gfp;
  }
  return std::nullopt;
}

std::string gfp_name(Gfp gfp) {
  std::string out;
  Gfp rest = gfp;
  for (const GfpName& g : kGfpNames) {
    if (g.use == GfpNameUse::Composite) {
      if (!out.empty() || (rest & g.gfp) != g.gfp) continue;
      out = g.name;
      rest &= ~g.gfp;
    } else if (g.use == GfpNameUse::Bit && (rest & g.gfp) != 0) {
      if (!out.empty()) out += '|';
      out += g.name;
    }
  }
  return out.empty() ? std::string("0") : out;
}

}  // namespace exmem::model::phys
