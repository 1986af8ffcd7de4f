// Replays inputs through a fuzz target without libFuzzer, so that every build
// (g++ or clang, release or sanitizers) runs the committed corpus: the
// hand-made seeds and the regression inputs of the bugs fuzzing found.
//   <replayer> FILE|DIR...     (a directory: every regular file in it, sorted)
// A divergence traps (the target's own check); an unreadable input or an empty
// list is an error naming it.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

bool is_dir(const std::string& p) {
  struct stat st{};
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool read_all(const std::string& path, std::vector<uint8_t>* out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  uint8_t buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->insert(out->end(), buf, buf + n);
  bool ok = !std::ferror(f);
  std::fclose(f);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!is_dir(a)) {
      files.push_back(a);
      continue;
    }
    DIR* d = opendir(a.c_str());
    if (!d) {
      std::fprintf(stderr, "replay: cannot open the directory %s\n", a.c_str());
      return 2;
    }
    std::vector<std::string> in_dir;
    while (dirent* e = readdir(d)) {
      std::string p = a + "/" + e->d_name;
      if (e->d_name[0] != '.' && !is_dir(p)) in_dir.push_back(p);
    }
    closedir(d);
    std::sort(in_dir.begin(), in_dir.end());
    files.insert(files.end(), in_dir.begin(), in_dir.end());
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no input given (expected files or directories of inputs)\n");
    return 2;
  }
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  for (const std::string& f : files) {
    std::vector<uint8_t> data;
    if (!read_all(f, &data)) {
      std::fprintf(stderr, "replay: cannot read %s\n", f.c_str());
      return 2;
    }
    std::printf("replay: %s (%zu bytes)\n", f.c_str(), data.size());
    std::fflush(stdout);
    LLVMFuzzerTestOneInput(data.data(), data.size());
  }
  std::printf("replay: %zu inputs, no divergence\n", files.size());
  return 0;
}
