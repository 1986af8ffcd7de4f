// study/: `exmem study` (see study.hpp for what the folder owns).
// version.hpp: the model version stored with every point of a study.
#pragma once

#include <string_view>

namespace exmem::study {

// "0.1.0+model.3f2a9c01b7de": the project's version and a digest of the
// sources of the model (src/model) and the run driver (src/sim), computed at
// build time. A point stored under another model version is run again.
std::string_view model_version();

}  // namespace exmem::study
