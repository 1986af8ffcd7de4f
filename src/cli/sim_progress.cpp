// `exmem sim`: the progress bar on stderr.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "sim.hpp"

namespace exmem::cli::sim {

namespace {
using Clock = std::chrono::steady_clock;

std::string rate_text(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.1f}M", per_second / 1e6);
  if (per_second >= 1e3) return fmt::format("{:.1f}k", per_second / 1e3);
  return fmt::format("{:.0f}", per_second);
}
}  // namespace

Progress::Progress(bool enabled, bool immediate)
    : enabled_(enabled),
      immediate_(immediate),
      command_start_(Clock::now()),
      run_start_(command_start_),
      last_draw_(command_start_) {}

Progress::~Progress() { end(); }

void Progress::begin(std::string_view label) {
  label_ = std::string(label);
  run_start_ = Clock::now();
}

void Progress::draw(std::uint64_t events, double fraction) {
  const Clock::time_point now = Clock::now();
  // Short commands stay quiet; then at most ten redraws a second.
  if (!immediate_ && now - command_start_ < std::chrono::seconds(1)) return;
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  const double seconds = std::chrono::duration<double>(now - run_start_).count();
  const double rate = seconds > 0 ? static_cast<double>(events) / seconds : 0.0;
  draw_progress_line(fmt::format("{:<24}", label_), fraction, rate);
}

void Progress::end() {
  if (!drawn_) return;
  clear_progress_line();
  drawn_ = false;
}

void draw_progress_line(std::string_view what, double fraction, double events_per_second) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(fraction * kWidth);
  const std::string bar =
      std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(kWidth - filled), '.');
  const std::string line = fmt::format("\r\033[Kexmem sim: {} [{}] {:3.0f}%  {} events/s", what, bar, 100.0 * fraction,
                                       rate_text(events_per_second));
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

void clear_progress_line() {
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

}  // namespace exmem::cli::sim
