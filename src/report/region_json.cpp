// region_json.cpp: region maps as JSON (cell bytes in base64).
#include <array>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "report/report.hpp"

namespace exmem::report {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  return t;
}
constexpr std::array<std::int8_t, 256> kDecode = make_decode_table();

constexpr std::string_view kEncoding =
    "one byte per cell: bits 0-1 coverage (0 hole, 1 inside a 1G leaf, 2 a 2M leaf, 3 split to "
    "4K), bits 2-4 content (0 free, 1 secret or unmapped, 2 direct-map page tables, 3 kernel, "
    "4 user, 5 reserved, 6 other, 7 no RAM; secret wins, then page tables, then the most pages), "
    "bit 5 some page not present in the direct map; merged cells take the worst coverage";

}  // namespace

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string s;
  s.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const unsigned v = (unsigned{bytes[i]} << 16) | (unsigned{bytes[i + 1]} << 8) | bytes[i + 2];
    s += kAlphabet[(v >> 18) & 63];
    s += kAlphabet[(v >> 12) & 63];
    s += kAlphabet[(v >> 6) & 63];
    s += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    const unsigned v = (unsigned{bytes[i]} << 16) | (rest == 2 ? unsigned{bytes[i + 1]} << 8 : 0u);
    s += kAlphabet[(v >> 18) & 63];
    s += kAlphabet[(v >> 12) & 63];
    s += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    s += '=';
  }
  return s;
}

std::vector<std::uint8_t> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    throw std::invalid_argument(
        fmt::format("base64: {} characters, expected a multiple of 4", text.size()));
  }
  std::vector<std::uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    unsigned v = 0;
    unsigned pad = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=' && last && j >= 2 && (j == 3 || text[i + 3] == '=')) {
        ++pad;
        v <<= 6;
        continue;
      }
      const std::int8_t d = kDecode[static_cast<unsigned char>(c)];
      if (d < 0 || pad != 0) {
        throw std::invalid_argument(
            fmt::format("base64: character {} ('{}') is not base64", i + j, c));
      }
      v = (v << 6) | static_cast<unsigned>(d);
    }
    out.push_back(static_cast<std::uint8_t>(v >> 16));
    if (pad < 2) out.push_back(static_cast<std::uint8_t>(v >> 8));
    if (pad < 1) out.push_back(static_cast<std::uint8_t>(v));
  }
  return out;
}

nlohmann::json to_json(const model::RegionMap& map, std::size_t max_cells) {
  using model::Content;
  using model::Coverage;
  if (max_cells == 0) max_cells = 1;
  std::size_t per_cell = 1;
  while ((map.size() + per_cell - 1) / per_cell > max_cells) per_cell *= 2;
  const std::vector<std::uint8_t> cells = model::merge_regions(map.regions, per_cell);

  nlohmann::json coverage = nlohmann::json::object();
  for (unsigned c = 0; c < model::kNumCoverages; ++c) {
    coverage[std::string(model::coverage_name(static_cast<Coverage>(c)))] = map.regions_by_coverage[c];
  }
  nlohmann::json content = nlohmann::json::object();
  for (unsigned k = 0; k < model::kNumContents; ++k) {
    content[std::string(model::content_name(static_cast<Content>(k)))] = map.pages[k];
  }
  std::uint64_t split_not_present = 0;
  for (const std::uint8_t code : map.regions) {
    if (model::region_coverage(code) == Coverage::Split4K && model::region_not_present(code)) {
      ++split_not_present;
    }
  }
  return {
      {"region_bytes", model::pfn_to_bytes(model::kRegionPages)},
      {"regions", map.size()},
      {"regions_per_cell", per_cell},
      {"cells", cells.size()},
      {"encoding", kEncoding},
      {"data", base64_encode(cells)},
      {"coverage_regions", coverage},
      {"content_pages", content},
      {"not_present_pages", map.not_present_pages},
      {"split_regions_not_present", split_not_present},
  };
}

std::vector<std::uint8_t> cells_of(const nlohmann::json& region_map_json) {
  if (!region_map_json.is_object() || !region_map_json.contains("data") ||
      !region_map_json["data"].is_string()) {
    throw std::invalid_argument("region map: no `data` string");
  }
  std::vector<std::uint8_t> cells = base64_decode(region_map_json["data"].get<std::string>());
  if (region_map_json.contains("cells") && region_map_json["cells"].is_number_unsigned() &&
      region_map_json["cells"].get<std::uint64_t>() != cells.size()) {
    throw std::invalid_argument(fmt::format("region map: `cells` says {} but `data` holds {} bytes",
                                            region_map_json["cells"].get<std::uint64_t>(),
                                            cells.size()));
  }
  return cells;
}

}  // namespace exmem::report
