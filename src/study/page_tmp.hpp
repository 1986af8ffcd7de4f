#pragma once
#include <nlohmann/json.hpp>
#include <string>
namespace exmem::report { std::string study_html_page(const nlohmann::json& study); }
