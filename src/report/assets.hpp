// report/: the report writer (see report.hpp for what the folder owns).
// assets.hpp: the page's stylesheet and script, pasted in from page.css and
// page.js at build time (src/report/CMakeLists.txt).
#pragma once

namespace exmem::report::assets {
extern const char* const kPageCss;
extern const char* const kPageJs;
}  // namespace exmem::report::assets
