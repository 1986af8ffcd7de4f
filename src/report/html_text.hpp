// report/: the report writer (see report.hpp for what the folder owns).
// html_text.hpp: text helpers the report's HTML pages share (html.cpp, the
// sim page; study_html.cpp, the study page): escaping for HTML text and for
// JSON inside <script>, digit grouping, and the policies' chart colours.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace exmem::report::detail {

// Policies' colours in the charts (categorical, distinguishable).
inline constexpr std::string_view kSeriesColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                                                      "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                                      "#bcbd22", "#17becf"};

// Text for HTML content and attribute values.
inline std::string escape(std::string_view s) {
  std::string o;
  o.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

// JSON inside <script>: '<', '>' and '&' only occur inside strings, where
// their \u escapes mean the same, so no "</script>" can end the block early.
inline std::string script_json(const nlohmann::json& j) {
  const std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string o;
  o.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '<': o += "\\u003c"; break;
      case '>': o += "\\u003e"; break;
      case '&': o += "\\u0026"; break;
      default: o += c;
    }
  }
  return o;
}

// 1234567 -> "1,234,567"
inline std::string grouped(std::uint64_t v) {
  std::string digits = fmt::format("{}", v);
  std::string o;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) o += ',';
    o += digits[i];
  }
  return o;
}

}  // namespace exmem::report::detail
