// meow report: metrics.csv parsing, the rendered page, and (label integration) the page as headless
// Chromium draws it: every chart draws one path per series and run, with one point per row.
#include "learner/report.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ReportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/report_test_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A run directory whose metrics.csv has `rows` rows; eval columns are empty before row 3, as
  // before a run's first evaluation.
  std::string MakeRun(const std::string& name, int rows, double scale) {
    const std::string run = dir_ + "/" + name;
    std::filesystem::create_directories(run);
    std::ofstream csv(run + "/metrics.csv");
    csv << "wall_time,env_steps,updates,episode_return,eval_return_mean,eval_return_std,loss,"
           "steps_per_s,updates_per_s,q_mean,v_mean,skipped_updates\n";
    for (int i = 0; i < rows; ++i) {
      const bool evaluated = i >= 3;
      csv << i * 1.5 << "," << (i + 1) * 1000 << "," << i * 900 << "," << scale * i << ","
          << (evaluated ? std::to_string(scale * i * 2) : "") << ","
          << (evaluated ? std::to_string(scale * 0.3 * i) : "nan") << "," << 10.0 / (i + 1) << "," << 800 + i << ","
          << 700 + i << "," << -scale * i << "," << -scale * i - 1 << ",0\n";
    }
    return run;
  }

  std::string dir_;
};

TEST_F(ReportTest, ReadsMetricsWithEmptyCellsAsNan) {
  auto run = ReadRunMetrics(MakeRun("a", 6, 1.0));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->name, "a");
  EXPECT_EQ(run->rows, 6u);
  EXPECT_EQ(run->columns.size(), 12u);
  EXPECT_TRUE(std::isnan(run->values["eval_return_mean"][0]));
  EXPECT_EQ(run->values["eval_return_mean"][4], 8.0);
  EXPECT_EQ(run->values["env_steps"][5], 6000.0);
}

TEST_F(ReportTest, TheSummaryShowsTheLastEvaluationEvenWhenLaterRowsHaveNone) {
  // As the distributed trainer writes: evaluation rows between periodic rows without one.
  const std::string run = dir_ + "/d";
  std::filesystem::create_directories(run);
  std::ofstream(run + "/metrics.csv") << "wall_time,env_steps,updates,eval_return_mean,eval_return_std\n"
                                      << "1,1000,500,,\n2,1100,600,42.5,1\n3,2000,1500,,\n4,2100,1600,17.25,2\n"
                                      << "5,3000,2500,,\n";
  auto metrics = ReadRunMetrics(run);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string html = RenderReport({*metrics});
  EXPECT_THAT(html, HasSubstr("<td>3000</td><td>2500</td><td>17.25</td><td>42.5</td>"));
}

TEST_F(ReportTest, MalformedMetricsNameTheFileLineAndColumn) {
  const std::string run = dir_ + "/bad";
  std::filesystem::create_directories(run);
  ASSERT_TRUE(WriteFileAtomically(run + "/metrics.csv", "env_steps,loss\n1,2\n3,x\n").ok());
  auto parsed = ReadRunMetrics(run);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("metrics.csv line 3 column loss: \"x\""));
  ASSERT_TRUE(WriteFileAtomically(run + "/metrics.csv", "env_steps,loss\n1,2,3\n").ok());
  EXPECT_THAT(std::string(ReadRunMetrics(run).status().message()), HasSubstr("line 2: 3 fields, the header has 2"));
  EXPECT_EQ(ReadRunMetrics(dir_ + "/absent").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ReportTest, EverySeriesIsOnePathWithOnePointPerDefinedRow) {
  auto a = ReadRunMetrics(MakeRun("a<b>", 7, 1.0));
  auto b = ReadRunMetrics(MakeRun("b", 5, 2.0));
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string html = RenderReport({*a, *b});
  EXPECT_THAT(html, HasSubstr("a&lt;b&gt;"));  // names are escaped
  EXPECT_THAT(html, ::testing::Not(HasSubstr("a<b>")));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("http")));  // self-contained: nothing fetched
  // eval starts at row 3: 4 points for a, 2 for b; other series one point per row.
  EXPECT_THAT(html, HasSubstr("data-run=\"a&lt;b&gt;\" data-series=\"eval_return_mean\" data-points=\"4\""));
  EXPECT_THAT(html, HasSubstr("data-run=\"b\" data-series=\"eval_return_mean\" data-points=\"2\""));
  EXPECT_THAT(html, HasSubstr("data-run=\"b\" data-series=\"loss\" data-points=\"5\""));
  // No staleness column: no staleness chart.
  EXPECT_THAT(html, ::testing::Not(HasSubstr("data-chart=\"staleness\"")));
  EXPECT_THAT(html, HasSubstr("data-chart=\"qv\""));
  // No alpha or entropy columns (MEow before they existed): neither chart.
  EXPECT_THAT(html, ::testing::Not(HasSubstr("data-chart=\"alpha\"")));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("data-chart=\"entropy\"")));
}

TEST_F(ReportTest, ThroughputChartsClipAShortBurstAndSaySo) {
  // 30 rows: the actors' free run before learning starts (14,000 steps/s) for 3 rows, then ~120.
  const std::string run = dir_ + "/burst";
  std::filesystem::create_directories(run);
  {
    std::ofstream csv(run + "/metrics.csv");
    csv << "wall_time,env_steps,updates,eval_return_mean,steps_per_s,updates_per_s\n";
    for (int i = 0; i < 30; ++i) {
      csv << i << "," << (i + 1) * 1000 << "," << i * 1000 << "," << (i % 10 == 9 ? "5000" : "") << ","
          << (i < 3 ? 14000 : 120 + i % 5) << "," << 120 + i % 5 << "\n";
    }
  }
  auto metrics = ReadRunMetrics(run);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string html = RenderReport({*metrics});
  auto chart = [&](const std::string& id) {
    const size_t begin = html.find("data-chart=\"" + id + "\"");
    EXPECT_NE(begin, std::string::npos) << id;
    return html.substr(begin, html.find("</figure>", begin) - begin);
  };
  const std::string steps = chart("steps_per_s");
  EXPECT_THAT(steps, HasSubstr("data-points=\"30\""));  // every row still drawn
  EXPECT_THAT(steps, HasSubstr("drawn on the top edge"));
  // The y axis (ticks anchored at their end) follows the bulk, not the burst.
  EXPECT_THAT(steps, ::testing::Not(HasSubstr("text-anchor=\"end\">10k<")));
  EXPECT_THAT(steps, ::testing::Not(HasSubstr("text-anchor=\"end\">5000<")));
  double top_tick = 0;
  static const std::regex y_tick("text-anchor=\"end\">([0-9.]+)<");
  for (auto it = std::sregex_iterator(steps.begin(), steps.end(), y_tick); it != std::sregex_iterator(); ++it) {
    top_tick = std::max(top_tick, std::stod((*it)[1]));
  }
  EXPECT_GT(top_tick, 120);
  EXPECT_LT(top_tick, 400);
  // Without outliers nothing is clipped, and charts without the option never clip.
  EXPECT_THAT(chart("updates_per_s"), ::testing::Not(HasSubstr("top edge")));
  EXPECT_THAT(chart("eval"), ::testing::Not(HasSubstr("top edge")));
}

// A run dir of `task` as training writes it (config.txt first line env=...), with an evaluation
// every 10k steps to `steps`: 100 * (step / 10k) each.
std::string MakeTaskRun(const std::string& dir, const std::string& name, const std::string& task, int steps,
                        const std::string& algo = "") {
  const std::string run = dir + "/" + name;
  std::filesystem::create_directories(run);
  std::ofstream(run + "/config.txt") << "env=" << task << "\n" << (algo.empty() ? "" : "algo=" + algo + "\n")
                                     << "mode=local\nseed=1\n";
  std::ofstream csv(run + "/metrics.csv");
  csv << "wall_time,env_steps,updates,eval_return_mean,eval_return_std\n";
  for (int s = 10'000; s <= steps; s += 10'000) csv << s / 100 << "," << s << "," << s << "," << s / 100 << ",5\n";
  return run;
}

TEST_F(ReportTest, ReadsTheTaskFromConfigTxtAndTheFinalReturnFromTheLastThreeEvaluations) {
  auto run = ReadRunMetrics(MakeTaskRun(dir_, "h", "Hopper-v4", 200'000));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->env, "Hopper-v4");
  EXPECT_EQ(run->algo, "meow");  // MEow's config.txt names no algorithm
  auto sql = ReadRunMetrics(MakeTaskRun(dir_, "q", "Hopper-v4", 20'000, "sql"));
  ASSERT_TRUE(sql.ok()) << sql.status();
  EXPECT_EQ(sql->algo, "sql");
  EXPECT_DOUBLE_EQ(FinalEvalReturn(*run), (1800 + 1900 + 2000) / 3.0);
  EXPECT_DOUBLE_EQ(FinalEvalReturn(*run, 1), 2000);
  auto bare = ReadRunMetrics(MakeRun("bare", 5, 1.0));  // no config.txt
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->env, "");
  EXPECT_EQ(bare->algo, "");
  EXPECT_DOUBLE_EQ(FinalEvalReturn(*bare), (6.0 + 8.0) / 2);  // two evaluated rows (eval from row 3)
}

TEST_F(ReportTest, RunsOfSeveralTasksMakeAComparisonWithThePublishedReturns) {
  auto hopper = ReadRunMetrics(MakeTaskRun(dir_, "hopper-seed1", "Hopper-v4", 200'000));
  auto cheetah1 = ReadRunMetrics(MakeTaskRun(dir_, "cheetah-seed1", "HalfCheetah-v4", 200'000));
  auto cheetah2 = ReadRunMetrics(MakeTaskRun(dir_, "cheetah-seed2", "HalfCheetah-v4", 150'000, "sac"));
  ASSERT_TRUE(hopper.ok() && cheetah1.ok() && cheetah2.ok());
  const std::string html = RenderReport({*hopper, *cheetah1, *cheetah2});
  EXPECT_THAT(html, HasSubstr("<title>meow-rl comparison: 3 runs of 2 tasks</title>"));
  // The summary: task and final return of each run.
  EXPECT_THAT(html, HasSubstr("<td>cheetah-seed2</td><td>HalfCheetah-v4</td><td>sac</td><td>15</td><td>150000</td>"));
  EXPECT_THAT(html, HasSubstr("<td>hopper-seed1</td><td>Hopper-v4</td><td>meow</td>"));
  EXPECT_THAT(html, HasSubstr("<td>1,400</td></tr>"));  // cheetah-seed2: mean of 1300, 1400, 1500
  // The published returns, with how each was obtained.
  EXPECT_THAT(html, HasSubstr("<td>HalfCheetah-v4</td><td>CleanRL SAC</td><td>1M</td><td>9,635</td>"));
  EXPECT_THAT(html, HasSubstr("<td>Hopper-v4</td><td>MEow paper</td><td>100k</td><td>\u22481,000</td>"));
  // One section and evaluation chart per task, in the order the runs come; no other charts.
  const size_t h_hopper = html.find("<h2>Hopper-v4</h2>"), h_cheetah = html.find("<h2>HalfCheetah-v4</h2>");
  ASSERT_NE(h_hopper, std::string::npos);
  ASSERT_NE(h_cheetah, std::string::npos);
  EXPECT_LT(h_hopper, h_cheetah);
  const std::string hopper_part = html.substr(h_hopper, h_cheetah - h_hopper);
  const std::string cheetah_part = html.substr(h_cheetah);
  EXPECT_THAT(hopper_part, HasSubstr("data-run=\"hopper-seed1\" data-series=\"eval_return_mean\" data-points=\"20\""));
  EXPECT_THAT(hopper_part, ::testing::Not(HasSubstr("cheetah-seed")));
  EXPECT_THAT(cheetah_part,
              HasSubstr("data-run=\"cheetah-seed2\" data-series=\"eval_return_mean\" data-points=\"15\""));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("data-chart=\"episode\"")));
  // Hopper's chart reaches 100k: the paper's point there is a diamond; the 1.5M and SAC figures
  // are dashed lines labelled with their step.
  EXPECT_THAT(hopper_part, HasSubstr("data-source=\"MEow paper\" data-steps=\"100000\" data-value=\"1000\"><path"));
  EXPECT_THAT(hopper_part, HasSubstr("data-source=\"MEow paper\" data-steps=\"1500000\" data-value=\"3500\"><line"));
  EXPECT_THAT(hopper_part, HasSubstr("MEow paper \u22483,500 at 1.5M steps"));
  EXPECT_THAT(cheetah_part, HasSubstr("CleanRL SAC 9,635 at 1M steps"));
  // The y axis reaches the highest published return (11,000 on HalfCheetah).
  EXPECT_THAT(cheetah_part, HasSubstr("text-anchor=\"end\">10k<"));
}

TEST_F(ReportTest, OneTaskKeepsEveryChartAndAddsItsPublishedReturnsToTheEvaluationChart) {
  auto hopper = ReadRunMetrics(MakeTaskRun(dir_, "hopper-seed1", "Hopper-v4", 50'000));
  auto other = ReadRunMetrics(MakeTaskRun(dir_, "goals", "MultiGoal-v0", 50'000));
  ASSERT_TRUE(hopper.ok() && other.ok());
  const std::string html = RenderReport({*hopper});
  EXPECT_THAT(html, HasSubstr("data-steps=\"100000\" data-value=\"1000\"><line"));  // beyond 50k: a line
  EXPECT_THAT(html, ::testing::Not(HasSubstr("<h2>Hopper-v4</h2>")));
  // A task without published returns: no table, no reference marks.
  const std::string plain = RenderReport({*other});
  EXPECT_THAT(plain, ::testing::Not(HasSubstr("Published returns")));
  EXPECT_THAT(plain, ::testing::Not(HasSubstr("class=\"reference\"")));
}

// Offline runs count updates: their charts say so, and their evaluation curves are drawn against
// their datasets' mean episode return rather than the online published returns.
TEST_F(ReportTest, OfflineRunsAreDrawnAgainstTheirDatasetInUpdates) {
  const std::string dir = MakeTaskRun(dir_, "cnf", "Hopper-v4", 50'000, "cnf");
  std::ofstream(dir + "/config.txt", std::ios::app) << "mode=offline\ndataset_return_mean=417.6\n";
  auto cnf = ReadRunMetrics(dir);
  ASSERT_TRUE(cnf.ok()) << cnf.status();
  EXPECT_TRUE(cnf->offline);
  EXPECT_DOUBLE_EQ(cnf->dataset_return, 417.6);
  const std::string html = RenderReport({*cnf});
  EXPECT_THAT(html, HasSubstr("updates (offline training)"));
  EXPECT_THAT(html, HasSubstr("data-source=\"dataset's episodes, mean\" data-steps=\"-1\" data-value=\"417.6\"><line"));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("Published returns")));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("data-source=\"MEow paper\"")));
  EXPECT_THAT(html, HasSubstr("<td>- (offline)</td>"));
  EXPECT_THAT(html, ::testing::Not(HasSubstr("data-chart=\"steps_per_s\"")));
  // Beside an online run, the published returns come back and the axis names both clocks.
  auto online = ReadRunMetrics(MakeTaskRun(dir_, "online", "Hopper-v4", 50'000));
  ASSERT_TRUE(online.ok());
  const std::string both = RenderReport({*cnf, *online});
  EXPECT_THAT(both, HasSubstr("environment steps (offline runs: updates)"));
  EXPECT_THAT(both, HasSubstr("data-source=\"MEow paper\""));
}

TEST_F(ReportTest, TheNewestVideoOfEachRunIsLinkedRelativeToThePage) {
  const std::string run = MakeTaskRun(dir_ + "/runs", "hopper-seed1", "Hopper-v4", 30'000);
  std::filesystem::create_directories(run + "/videos");
  for (const char* name : {"step-10000.mp4", "step-30000.mp4", "step-9999.mp4", "notes.txt"}) {
    std::ofstream(run + "/videos/" + name) << "mp4";
  }
  auto metrics = ReadRunMetrics(run);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->video_step, 30000);
  EXPECT_EQ(metrics->video, run + "/videos/step-30000.mp4");
  std::filesystem::create_directories(dir_ + "/pages");
  const std::string page = dir_ + "/pages/report.html";
  ASSERT_TRUE(WriteReport({run}, page).ok());
  auto html = ReadFile(page);
  ASSERT_TRUE(html.ok());
  const std::string src = "../runs/hopper-seed1/videos/step-30000.mp4";
  EXPECT_THAT(
      *html, HasSubstr("<video class=\"episode\" controls loop muted preload=\"metadata\" width=\"360\" src=\"" + src));
  EXPECT_THAT(*html, HasSubstr("hopper-seed1 at 30,000 environment steps"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/pages/" + src));
  // A run without videos: no video section.
  auto bare = ReadRunMetrics(MakeRun("bare", 5, 1.0));
  ASSERT_TRUE(bare.ok());
  EXPECT_THAT(RenderReport({*bare}), ::testing::Not(HasSubstr("<video")));
}

TEST_F(ReportTest, MultiGoalRolloutsAreDrawnOverTheRewardWithTheGoalsCounted) {
  const std::string run = MakeTaskRun(dir_, "goals", "MultiGoal-v0", 20'000);
  // Two rollouts end at (+5, 0), one wanders: one goal of four reached.
  MultiGoalRollouts rollouts;
  rollouts.paths = {{{0, 0}, {2, 0}, {4.5, 0.1}}, {{0, 0}, {3, 1}, {4.6, 0.2}}, {{0, 0}, {-1, -1}, {-2, -3}}};
  ASSERT_TRUE(WriteMultiGoalRollouts(run + "/multigoal_rollouts.csv", rollouts).ok());
  auto metrics = ReadRunMetrics(run);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  ASSERT_TRUE(metrics->multigoal.has_value());
  EXPECT_EQ(metrics->multigoal->paths.size(), 3u);
  const std::string html = RenderReport({*metrics});
  EXPECT_THAT(html, HasSubstr("<svg class=\"multigoal\" data-run=\"goals\" data-rollouts=\"3\""));
  size_t paths = 0;
  for (size_t at = html.find("class=\"rollout\""); at != std::string::npos; at = html.find("class=\"rollout\"", at + 1))
    ++paths;
  EXPECT_EQ(paths, 3u);
  EXPECT_THAT(html, HasSubstr("data-goal=\"0\" data-count=\"2\""));
  EXPECT_THAT(html, HasSubstr("data-goal=\"1\" data-count=\"0\""));
  EXPECT_THAT(html, HasSubstr("reached 1 of 4 goals (2/0/0/0 of 3 at (+5,0)/(-5,0)/(0,+5)/(0,-5); 1 unfinished)"));
  // A malformed rollouts file is an error naming it and the line.
  ASSERT_TRUE(WriteFileAtomically(run + "/multigoal_rollouts.csv", "rollout,step,x,y\n0,0,0,0\n0,1,x,0\n").ok());
  auto bad = ReadRunMetrics(run);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("multigoal_rollouts.csv line 3"));
}

// MultiGoal-v0's evaluations are counted by goal: the page charts the goals reached and the
// rollouts at each goal, and the summary shows the newest evaluation's counts.
TEST_F(ReportTest, MultiGoalEvaluationsAreChartedAsGoalsReached) {
  const std::string run = dir_ + "/goal-evals";
  std::filesystem::create_directories(run);
  std::ofstream(run + "/config.txt") << "env=MultiGoal-v0\nmode=local\nseed=1\n";
  {
    std::ofstream csv(run + "/metrics.csv");
    csv << "wall_time,env_steps,updates,eval_return_mean,eval_return_std,eval_goals,eval_at_goal,eval_goal_e,"
           "eval_goal_w,eval_goal_n,eval_goal_s\n"
        << "1,800,0,-40,3,1,0.5,50,0,0,0\n"
        << "2,1000,100,,,,,,,,\n"
        << "3,1600,600,-30,3,3,0.8,30,30,20,0\n"
        << "4,2400,1400,-20,2,4,0.96,31,24,22,19\n";
  }
  auto metrics = ReadRunMetrics(run);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string html = RenderReport({*metrics});
  EXPECT_THAT(html, HasSubstr("data-chart=\"goals\""));
  EXPECT_THAT(html, HasSubstr("data-chart=\"goal_counts\""));
  EXPECT_THAT(html, HasSubstr("<td>4 (31/24/22/19)</td>"));
  // A task without goal columns has neither the charts nor the column; beside a MultiGoal run its
  // cell says "-".
  auto hopper = ReadRunMetrics(MakeTaskRun(dir_, "h", "Hopper-v4", 30'000));
  ASSERT_TRUE(hopper.ok()) << hopper.status();
  const std::string alone = RenderReport({*hopper});
  EXPECT_THAT(alone, Not(HasSubstr("data-chart=\"goals\"")));
  EXPECT_THAT(alone, Not(HasSubstr("goals reached")));
  const std::string both = RenderReport({*metrics, *hopper});
  EXPECT_THAT(both, HasSubstr("<td>200</td><td>-</td></tr>"));
  EXPECT_THAT(both, HasSubstr("<td>4 (31/24/22/19)</td></tr>"));
}

// Loads the page in headless Chromium and returns the self-check JSON the page writes after load.
std::string RenderInChromium(const std::string& html_path) {
  const std::string profile = html_path + ".profile";
  const std::string command = absl::StrCat(
      "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync "
      "--user-data-dir=",
      profile, " --dump-dom file://", html_path, " 2>/dev/null");
  std::string dom;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) dom.append(buf, n);
    pclose(pipe);
  }
  std::filesystem::remove_all(profile);
  std::smatch match;
  static const std::regex selfcheck("<pre id=\"selfcheck\">([^<]*)</pre>");
  if (!std::regex_search(dom, match, selfcheck)) return "";
  std::string json = match[1];
  // --dump-dom escapes the text content.
  json = std::regex_replace(json, std::regex("&quot;"), "\"");
  json = std::regex_replace(json, std::regex("&lt;"), "<");
  json = std::regex_replace(json, std::regex("&gt;"), ">");
  return std::regex_replace(json, std::regex("&amp;"), "&");
}

TEST_F(ReportTest, HeadlessChromiumDrawsEverySeries) {
  if (access("/usr/bin/chromium", X_OK) != 0) {
    GTEST_SKIP() << "Debian's chromium is not installed (deploy/setup.sh installs it)";
  }
  const std::string a = MakeRun("run-a", 9, 1.0), b = MakeRun("run-b", 6, 3.0);
  // run-a also has MultiGoal rollouts: its figure draws one path per rollout.
  MultiGoalRollouts rollouts;
  rollouts.paths = {{{0, 0}, {2, 0}, {4.5, 0.1}}, {{0, 0}, {-1, 3}, {-0.2, 4.4}, {0, 4.6}}};
  ASSERT_TRUE(WriteMultiGoalRollouts(a + "/multigoal_rollouts.csv", rollouts).ok());
  const std::string page = dir_ + "/report.html";
  ASSERT_TRUE(WriteReport({a, b}, page).ok());

  const std::string json = RenderInChromium(page);
  ASSERT_FALSE(json.empty()) << "Chromium produced no self-check (did the page's script run?)";
  google::protobuf::Struct root;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage("{\"paths\":" + json + "}", &root).ok()) << json;
  const auto& paths = root.fields().at("paths").list_value();

  // Expected: for each chart present, one path per run and series; points = defined rows.
  std::map<std::string, int> expected_points = {{"run-a/eval_return_mean", 6},
                                                {"run-b/eval_return_mean", 3},
                                                {"run-a/episode_return", 9},
                                                {"run-b/episode_return", 6},
                                                {"run-a/steps_per_s", 9},
                                                {"run-b/steps_per_s", 6},
                                                {"run-a/updates_per_s", 9},
                                                {"run-b/updates_per_s", 6},
                                                {"run-a/loss", 9},
                                                {"run-b/loss", 6},
                                                {"run-a/q_mean", 9},
                                                {"run-b/q_mean", 6},
                                                {"run-a/v_mean", 9},
                                                {"run-b/v_mean", 6},
                                                {"run-a/skipped_updates", 9},
                                                {"run-b/skipped_updates", 6}};
  std::map<std::string, int> seen;
  std::vector<int> rollout_points;
  for (const auto& value : paths.values()) {
    const auto& f = value.struct_value().fields();
    if (f.at("chart").string_value() == "multigoal") {
      // A rollout as drawn: its positions as commands, and a visible path.
      EXPECT_EQ(f.at("run").string_value(), "run-a");
      rollout_points.push_back(static_cast<int>(f.at("points").number_value()));
      EXPECT_EQ(f.at("commands").number_value(), f.at("points").number_value());
      EXPECT_GT(f.at("length").number_value(), 50);
      continue;
    }
    const std::string key = f.at("run").string_value() + "/" + f.at("series").string_value();
    ++seen[key];
    const int points = static_cast<int>(f.at("points").number_value());
    EXPECT_EQ(points, expected_points[key]) << key;
    EXPECT_EQ(static_cast<int>(f.at("commands").number_value()), points) << key;
    // Drawn: a path with a real extent (a constant series is a horizontal line of full width).
    EXPECT_GT(f.at("width").number_value(), 100) << key;
    EXPECT_GT(f.at("length").number_value(), 100) << key;
  }
  for (const auto& [key, points] : expected_points) EXPECT_EQ(seen[key], 1) << key;
  EXPECT_EQ(rollout_points, (std::vector<int>{3, 4}));
}

}  // namespace
}  // namespace meow
