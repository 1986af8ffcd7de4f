// study/: `exmem study` (see study.hpp for what the folder owns).
// store.hpp: a point's result, run and stored in OUT/points/HASH.json, one
// file per point, written whole or not at all (a temporary file renamed), so
// an interrupted study resumes from what it stored and several processes (a
// Slurm array's tasks) may share OUT.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "study/study.hpp"

namespace exmem::study {

// OUT/points/HASH.json
std::filesystem::path point_path(const std::filesystem::path& out, const Point& p);

enum class Stored : std::uint8_t {
  Missing,  // no file
  Done,     // a result of this very configuration
  Other,    // a file by that name holding another configuration, or unreadable: run again
};
// Whether the point's result is stored; `why` says what is wrong with an Other.
Stored stored(const std::filesystem::path& out, const Point& p, std::string* why = nullptr);

// Runs the point on the model (sim::run_synthetic) and returns its stored
// form: format "exmem-study-point/1", hash, config, the point (axes' labels,
// policy, seed), the run as `exmem sim --json` gives it, every figure with a
// runs.csv column (`columns`), and how long it took.
nlohmann::json run_point(const Study& study, const Point& p);

// Writes it to point_path() whole (a temporary file in the same folder, then
// rename). std::system_error naming the path when it cannot.
void store_point(const std::filesystem::path& out, const Point& p, const nlohmann::json& result);

// Removes the temporary files that writers on this host left when they died
// mid-write (their process is gone); others' are left alone, since several
// processes may share `out`.
void remove_dead_temporaries(const std::filesystem::path& out);

// The stored result (std::runtime_error naming the file when it is missing or
// not this point's).
nlohmann::json load_point(const std::filesystem::path& out, const Point& p);

}  // namespace exmem::study
