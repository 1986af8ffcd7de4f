// The study file and its points (study/study.hpp), the stored points
// (store.hpp) and the report's figures (summary.hpp), without the command.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "study/store.hpp"
#include "study/study.hpp"
#include "study/summary.hpp"

namespace exmem::study {
namespace {

namespace fs = std::filesystem;

constexpr const char* kBase = R"(description = "a small base"
[machine]
ram = "2GiB"
cpus = 2
[workload]
events = 2000
[run]
policies = ["upstream"]
)";

class StudyFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt_dir();
    fs::create_directories(dir_);
    write("base.toml", kBase);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string fmt_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string("exmem-study-") + std::to_string(::getpid()) + "-" + info->name();
  }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  Study load(const std::string& text, std::string_view version = "test-1") {
    write("s.toml", text);
    return load_study((dir_ / "s.toml").string(), resolver(), version);
  }
  // The error load() throws, or "" when it loads.
  std::string error(const std::string& text) {
    try {
      load(text);
    } catch (const StudyError& e) {
      return e.what();
    }
    return "";
  }
  static ScenarioResolver resolver() {
    ScenarioResolver r;
    r.find = [](const std::string& name, const fs::path& dir) -> std::optional<ScenarioText> {
      const fs::path p = dir / name;
      if (!fs::is_regular_file(p)) return std::nullopt;
      std::ifstream in(p);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      return ScenarioText{text, p.string()};
    };
    r.known = [] { return std::vector<std::string>{"base.toml"}; };
    return r;
  }
  fs::path dir_;
};

TEST_F(StudyFiles, PointsAreEveryCombinationFirstAxisSlowestThenPoliciesThenSeeds) {
  const Study st = load(R"(scenario = "base.toml"
policies = ["upstream", "secretmem-pmd-pool"]
seeds = 3
[[axis]]
setting = "machine.cpus"
values = [2, 4]
[[axis]]
setting = "secrets.share"
range = { from = 0.1, to = 0.3, step = 0.1 }
)");
  ASSERT_EQ(st.axes.size(), 2u);
  EXPECT_EQ(st.axes[1].labels, (std::vector<std::string>{"0.1", "0.2", "0.3"}));
  ASSERT_EQ(st.points.size(), 2u * 3u * 2u * 3u);
  EXPECT_EQ(st.x, "machine.cpus");  // the first axis when [report] names none
  const Point& p = st.points[1 * 18 + 2 * 6 + 1 * 3 + 2];
  EXPECT_EQ(p.index, 1u * 18 + 2 * 6 + 1 * 3 + 2);
  EXPECT_EQ(p.at, (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(p.policy, "secretmem-pmd-pool");
  EXPECT_EQ(p.seed, 3u);
  EXPECT_EQ(p.scenario.machine.cpus, 4u);
  EXPECT_DOUBLE_EQ(p.scenario.workload.secret_share, 0.3);
  EXPECT_EQ(p.scenario.workload.seed, 3u);
  EXPECT_EQ(p.scenario.machine.ram_bytes, std::uint64_t{2} << 30);  // from the base scenario
  std::set<std::string> hashes;
  for (const Point& q : st.points) hashes.insert(q.hash);
  EXPECT_EQ(hashes.size(), st.points.size());
}

TEST_F(StudyFiles, RangesOfSizesAndGeometricRanges) {
  const Study st = load(R"(scenario = "base.toml"
policies = ["upstream"]
[[axis]]
setting = "machine.ram"
range = { from = "1GiB", to = "9GiB", times = 2 }
[[axis]]
setting = "machine.scan_rate"
range = { from = 1, to = 100, times = 10 }
)");
  EXPECT_EQ(st.axes[0].labels, (std::vector<std::string>{"1GiB", "2GiB", "4GiB", "8GiB"}));
  EXPECT_EQ(st.axes[1].labels, (std::vector<std::string>{"1", "10", "100"}));
  EXPECT_EQ(st.points[3 * 3].scenario.machine.ram_bytes, std::uint64_t{8} << 30);
}

TEST_F(StudyFiles, AnAxisOfSeveralSettingsSetTogetherWithItsOwnNameAndLabels) {
  const Study st = load(R"(scenario = "base.toml"
policies = ["upstream"]
[[axis]]
name = "fleet"
settings = ["guests.count", "guests.size"]
values = [[1, "256MiB"], [4, "64MiB"]]
labels = ["1 large", "4 small"]
[[axis]]
settings = ["secrets.share", "map_exclusive.share"]
values = [[0.1, 0.0], [0.0, 0.1]]
)");
  ASSERT_EQ(st.axes.size(), 2u);
  EXPECT_EQ(st.axes[0].name, "fleet");
  EXPECT_EQ(st.axes[0].labels, (std::vector<std::string>{"1 large", "4 small"}));
  EXPECT_EQ(st.axes[1].name, "secrets.share+map_exclusive.share");
  EXPECT_EQ(st.axes[1].labels, (std::vector<std::string>{"0.1, 0", "0, 0.1"}));
  const Point& p = st.points[1 * 2 + 1];
  EXPECT_EQ(p.scenario.workload.guests, 4u);
  EXPECT_EQ(p.scenario.workload.guest_pages, 64u * 256);
  EXPECT_DOUBLE_EQ(p.scenario.workload.secret_share, 0.0);
  EXPECT_DOUBLE_EQ(p.scenario.workload.map_exclusive_share, 0.1);
  EXPECT_NE(error("scenario = \"base.toml\"\n[[axis]]\nsettings = [\"guests.count\", \"guests.size\"]\nvalues = [[1, \"256MiB\"], [4]]\n")
                .find("s.toml:4:26: [[axis]] \"guests.count+guests.size\" values: expected lists of 2 values"),
            std::string::npos);
}

TEST_F(StudyFiles, TheHashIsTheResolvedConfigurationNotHowItWasWritten) {
  const std::string a = R"(scenario = "base.toml"
policies = ["upstream"]
[set]
machine.ram = "4GiB"
)";
  const std::string b = R"(scenario = "base.toml"
policies = ["upstream"]
description = "the same points, written otherwise"
[set.machine]
ram = "4096MiB"
)";
  EXPECT_EQ(load(a).points[0].hash, load(b).points[0].hash);
  // Any setting's value, the seed, the policy and the model version change it.
  const std::string h = load(a).points[0].hash;
  EXPECT_NE(load(a + "workload.fill = 0.3\n").points[0].hash, h);
  EXPECT_NE(load("seeds = [2]\n" + a).points[0].hash, h);
  EXPECT_NE(load(std::string(a).replace(a.find("[\"upstream\"]"), 12, "[\"unmapped-alloc\"]")).points[0].hash, h);
  EXPECT_NE(load(a, "test-2").points[0].hash, h);
  // A setting the base scenario gives counts too.
  write("base.toml", std::string(kBase) + "[secrets]\nshare = 0.2\n");
  EXPECT_NE(load(a).points[0].hash, h);
}

TEST_F(StudyFiles, ErrorsNameTheStudyFilesLineAndWhatWasExpected) {
  EXPECT_EQ(error("scenario = \"base.toml\"\nseedz = 3\n"),
            (dir_ / "s.toml").string() + ":2:1: unknown key \"seedz\" in the study file (did you mean \"seeds\"?); "
                                         "expected one of: description, scenario, policies, seeds, costs, set, axis, report");
  EXPECT_NE(error("scenario = \"base.toml\"\n[[axis]]\nsetting = \"machine.rma\"\nvalues = [\"2GiB\"]\n")
                .find("s.toml:3:11: [[axis]] setting: unknown scenario setting \"machine.rma\" (did you mean \"machine.ram\"?)"),
            std::string::npos);
  EXPECT_NE(error("scenario = \"base.toml\"\n[[axis]]\nsetting = \"machine.ram\"\nvalues = [\"2GiB\", \"3GB\"]\n")
                .find("s.toml:4:19: [machine] ram: expected a size"),
            std::string::npos);
  EXPECT_NE(error("scenario = \"base.toml\"\n[set]\nworkload.seed = 4\n").find("s.toml:3:17: \"workload.seed\" is set by the top-level `seeds`"),
            std::string::npos);
  EXPECT_NE(error("scenario = \"nowhere.toml\"\n").find("s.toml:1:12: scenario \"nowhere.toml\": expected a scenario file"),
            std::string::npos);
  EXPECT_NE(error("policies = [\"upstreem\"]\n").find("unknown policy \"upstreem\" (did you mean \"upstream\"?)"),
            std::string::npos);
  EXPECT_NE(error("scenario = \"base.toml\"\n[report]\nmetrics = [\"splits\"]\n").find("s.toml:3:12: [report] metrics: unknown metric \"splits\""),
            std::string::npos);
  EXPECT_NE(error("scenario = \"base.toml\"\n[[axis]]\nsetting = \"machine.cpus\"\nrange = { from = 4, to = 2, step = 1 }\n")
                .find("range to: 2 is below from (4)"),
            std::string::npos);
  EXPECT_NE(error("scenario = \"base.toml\"\n[[axis]]\nsetting = \"machine.cpus\"\nvalues = [2, 2]\n").find("the value 2 is given twice"),
            std::string::npos);
  // A rule between settings names the study's value, and the point's axis values.
  const std::string e = error("scenario = \"base.toml\"\npolicies = [\"upstream\"]\n[[axis]]\nsetting = \"workload.fill\"\nvalues = [0.1, 0.95]\n[[axis]]\nsetting = \"machine.secretmem\"\nvalues = [\"2GiB\"]\n");
  EXPECT_NE(e.find("s.toml:8:"), std::string::npos) << e;
  EXPECT_NE(e.find("(at workload.fill = 0.1, machine.secretmem = 2GiB)"), std::string::npos) << e;
  // A value a range made is placed at its range.
  EXPECT_NE(error("scenario = \"base.toml\"\n[[axis]]\nsetting = \"secrets.share\"\nrange = { from = 0.5, to = 1.5, step = 0.5 }\n")
                .find("s.toml:4:9: [secrets] share: expected the shares of events to add up to at most 1"),
            std::string::npos);
  EXPECT_EQ(error("scenario = \"base.toml\"\nx = [\n"), (dir_ / "s.toml").string() + ":2:7: TOML syntax error: "
                                                           "Error while parsing array: encountered end-of-file");
}

TEST_F(StudyFiles, ReportMetricsByColumnOrJsonPointer) {
  const Study st = load("scenario = \"base.toml\"\n[report]\nmetrics = [\"oom_kills\", \"/tlb_cost/slowdown/percent\", \"/secretmem/frees\"]\n");
  ASSERT_EQ(st.metrics.size(), 3u);
  EXPECT_EQ(st.metrics[0].json, "/oom/kills");
  EXPECT_EQ(st.metrics[1].key, "kernel_slowdown_percent");
  EXPECT_EQ(st.metrics[2].key, "/secretmem/frees");  // no runs.csv column: its pointer is its key
  EXPECT_EQ(load("scenario = \"base.toml\"\n").metrics.size(), default_metrics().size());
}

TEST(PointList, RangesListsAndErrors) {
  EXPECT_EQ(parse_point_list("3", 10), (std::vector<std::size_t>{3}));
  EXPECT_EQ(parse_point_list("7-9,0,8", 10), (std::vector<std::size_t>{0, 7, 8, 9}));
  EXPECT_THROW(parse_point_list("10", 10), std::invalid_argument);
  EXPECT_THROW(parse_point_list("5-2", 10), std::invalid_argument);
  EXPECT_THROW(parse_point_list("a", 10), std::invalid_argument);
  EXPECT_THROW(parse_point_list("", 10), std::invalid_argument);
}

TEST(Quantile, LinearInterpolationBetweenClosestRanks) {
  const std::vector<double> v{1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(quantile(v, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(quantile(v, 0.25), 1.75);  // numpy.quantile([1,2,3,4], 0.25)
  EXPECT_DOUBLE_EQ(quantile(v, 0), 1);
  EXPECT_DOUBLE_EQ(quantile(v, 1), 4);
  EXPECT_TRUE(std::isnan(quantile(std::vector<double>{}, 0.5)));
}

TEST(Sha256, KnownDigest) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(StudyFiles, StoredPointsAreRecognisedOnlyForTheirOwnConfiguration) {
  const Study st = load("scenario = \"base.toml\"\npolicies = [\"upstream\"]\nseeds = 2\n");
  const fs::path out = dir_ / "out";
  EXPECT_EQ(stored(out, st.points[0]), Stored::Missing);
  const nlohmann::json r = run_point(st, st.points[0]);
  EXPECT_EQ(r["run"]["policy"], "upstream");
  EXPECT_GT(r["run"]["secretmem"]["faults"].get<std::uint64_t>(), 0u);
  store_point(out, st.points[0], r);
  EXPECT_EQ(stored(out, st.points[0]), Stored::Done);
  EXPECT_EQ(load_point(out, st.points[0])["run"], r["run"]);
  // The other point's file name holding this one's result: not its result.
  fs::copy_file(point_path(out, st.points[0]), point_path(out, st.points[1]));
  std::string why;
  EXPECT_EQ(stored(out, st.points[1], &why), Stored::Other);
  EXPECT_EQ(why, "it holds another point's hash");
  std::ofstream(point_path(out, st.points[1])) << "{ truncated";
  EXPECT_EQ(stored(out, st.points[1], &why), Stored::Other);
  EXPECT_THROW(load_point(out, st.points[1]), std::runtime_error);
  // No temporary file is left beside the points.
  for (const auto& e : fs::directory_iterator(out / "points")) EXPECT_EQ(e.path().extension(), ".json") << e.path();
}

TEST_F(StudyFiles, SummaryHasTheSpreadOverSeedsPerCombinationAndPolicy) {
  const Study st = load(R"(scenario = "base.toml"
policies = ["upstream", "unmapped-alloc"]
seeds = 4
[[axis]]
setting = "machine.cpus"
values = [2, 4]
[report]
metrics = ["direct_map_level2_splits", "oom_kills"]
)");
  // Stored results made up for the test: splits = 10 x seed + cpus, per policy.
  std::vector<nlohmann::json> stored;
  for (const Point& p : st.points) {
    const double splits = 10.0 * static_cast<double>(p.seed) + static_cast<double>(p.scenario.machine.cpus) +
                           (p.policy == "upstream" ? 0 : 1000);
    stored.push_back({{"run", {{"direct_map", {{"direct_map_level2_splits", splits}}}}}, {"seconds", 0.5}});
  }
  const nlohmann::json doc = study_json(st, stored);
  EXPECT_EQ(doc["format"], "exmem-study/1");
  ASSERT_EQ(doc["summary"].size(), 4u);
  const nlohmann::json& g = doc["summary"][3];  // cpus 4, unmapped-alloc
  EXPECT_EQ(g["axes"]["machine.cpus"], "4");
  EXPECT_EQ(g["policy"], "unmapped-alloc");
  EXPECT_EQ(g["n"], 4);
  EXPECT_DOUBLE_EQ(g["stats"]["direct_map_level2_splits"]["median"].get<double>(), 1029);  // 1014 1024 1034 1044
  EXPECT_DOUBLE_EQ(g["stats"]["direct_map_level2_splits"]["min"].get<double>(), 1014);
  EXPECT_DOUBLE_EQ(g["stats"]["direct_map_level2_splits"]["max"].get<double>(), 1044);
  EXPECT_DOUBLE_EQ(g["stats"]["direct_map_level2_splits"]["q1"].get<double>(), 1021.5);
  EXPECT_TRUE(g["stats"]["oom_kills"].is_null());  // no run had the figure
  const std::string results = results_csv(doc);
  EXPECT_EQ(results.substr(0, results.find('\n')),
            "point,hash,machine.cpus,policy,seed,direct_map_level2_splits,oom_kills,run_seconds");
  EXPECT_NE(results.find(",4,unmapped-alloc,4,1044,,0.500\n"), std::string::npos) << results;
  const std::string summary = summary_csv(doc);
  EXPECT_NE(summary.find("\n4,unmapped-alloc,4,1029,1014,1044,1021.5,1036.5,,,,,\n"), std::string::npos) << summary;
}

}  // namespace
}  // namespace exmem::study
