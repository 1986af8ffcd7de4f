// report/: the report writer (see report.hpp for what the folder owns).
// files.hpp: writing a report's files, for every report this folder and its
// users write (exmem sim's, and exmem study's in src/study).
#pragma once

#include <filesystem>
#include <string>

namespace exmem::report {

// mkdir -p, each missing component in turn, so that the error names the one
// that failed. std::system_error naming it.
void make_directories(const std::filesystem::path& dir);

// Writes `text` to path (created or truncated). std::system_error naming the
// path and the errno text when it cannot.
void write_file(const std::filesystem::path& path, const std::string& text);

// A CSV field as RFC 4180 writes it: quoted when it holds a comma, a quote or
// a line break, quotes doubled.
std::string csv_field(const std::string& s);

}  // namespace exmem::report
