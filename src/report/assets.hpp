// report/: the report writer (see report.hpp for what the folder owns).
// assets.hpp: the pages' stylesheets and scripts, pasted in from page.css,
// page.js, study.css and study.js at build time (src/report/CMakeLists.txt).
#pragma once

namespace exmem::report::assets {
extern const char* const kPageCss;
extern const char* const kPageJs;
extern const char* const kStudyCss;
extern const char* const kStudyJs;
}  // namespace exmem::report::assets
