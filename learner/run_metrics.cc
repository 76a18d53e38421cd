#include "learner/run_metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "learner/report.h"
#include "replay/dataset.h"

namespace meow {

const char kRunMetricsColumns[] =
    "wall_time,env_steps,updates,episodes,episode_return,eval_return_mean,eval_return_std,eval_goals,"
    "eval_at_goal,eval_goal_e,eval_goal_w,eval_goal_n,eval_goal_s,loss,"
    "q_mean,v_mean,grad_norm,skipped_updates,steps_per_s,updates_per_s,learner_busy,actors_waiting,staleness,version,"
    "replay_size,insert_waits,sample_waits,insert_wait_s,sample_wait_s,acting_lag,alpha,entropy,eval_score";

namespace {

// The TensorBoard tag of each column that has one.
const std::map<std::string, std::string>& Tags() {
  static const auto* tags = new std::map<std::string, std::string>{{"eval_return_mean", "eval/return_mean"},
                                                                   {"eval_return_std", "eval/return_std"},
                                                                   {"eval_goals", "eval/goals_reached"},
                                                                   {"eval_at_goal", "eval/at_goal"},
                                                                   {"eval_goal_e", "eval/goal_e"},
                                                                   {"eval_goal_w", "eval/goal_w"},
                                                                   {"eval_goal_n", "eval/goal_n"},
                                                                   {"eval_goal_s", "eval/goal_s"},
                                                                   {"episode_return", "actor/episode_return"},
                                                                   {"episodes", "actor/episodes"},
                                                                   {"loss", "learner/loss"},
                                                                   {"q_mean", "learner/q_mean"},
                                                                   {"v_mean", "learner/v_mean"},
                                                                   {"grad_norm", "learner/grad_norm"},
                                                                   {"skipped_updates", "learner/skipped_updates"},
                                                                   {"staleness", "learner/staleness"},
                                                                   {"version", "learner/version"},
                                                                   {"updates", "learner/updates"},
                                                                   {"steps_per_s", "throughput/steps_per_s"},
                                                                   {"updates_per_s", "throughput/updates_per_s"},
                                                                   {"learner_busy", "throughput/learner_busy"},
                                                                   {"actors_waiting", "throughput/actors_waiting"},
                                                                   {"replay_size", "replay/size"},
                                                                   {"insert_waits", "replay/insert_waits"},
                                                                   {"sample_waits", "replay/sample_waits"},
                                                                   {"insert_wait_s", "replay/insert_wait_s"},
                                                                   {"sample_wait_s", "replay/sample_wait_s"},
                                                                   {"acting_lag", "learner/acting_lag"},
                                                                   {"alpha", "learner/alpha"},
                                                                   {"entropy", "learner/entropy"},
                                                                   {"eval_score", "eval/score_normalized"}};
  return *tags;
}

const std::vector<std::string>& Columns() {
  static const auto* columns = new std::vector<std::string>(absl::StrSplit(kRunMetricsColumns, ','));
  return *columns;
}

std::string Num(double v) { return std::isfinite(v) ? absl::StrFormat("%.6g", v) : ""; }

// metrics.csv of an earlier version whose columns `header` are the first of this schema's: rewritten
// with this header and each row given empty cells for the new columns (through a temporary file
// renamed over it, so a crash leaves the old file or the new one, never a mix).
absl::Status AppendColumns(const std::string& path, const std::string& header) {
  const size_t added = Columns().size() - static_cast<size_t>(std::count(header.begin(), header.end(), ',')) - 1;
  const std::string padding(added, ',');
  const std::string tmp = path + ".tmp";
  {
    std::ifstream in(path);
    std::ofstream out(tmp, std::ios::trunc);
    if (!in || !out) return absl::PermissionDeniedError(absl::StrCat("cannot rewrite ", path, " with the new columns"));
    std::string line;
    std::getline(in, line);
    out << kRunMetricsColumns << "\n";
    while (std::getline(in, line)) {
      if (!line.empty()) out << line << padding << "\n";
    }
    out.flush();
    if (!out) return absl::DataLossError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::DataLossError(absl::StrCat("cannot replace ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

namespace {

// MultiGoal-v0's score: goals reached, then the share of episodes at a goal (kept below 1 so that
// one more goal always counts for more).
double GoalScore(double goals, double at_goal_share) { return goals + 0.999 * at_goal_share; }

}  // namespace

double EvalPoint::score() const {
  if (!goals.has_value()) return mean;
  const MultiGoalCounts& g = *goals;
  const int64_t at_goal = g.reached[0] + g.reached[1] + g.reached[2] + g.reached[3];
  return GoalScore(g.goals(), episodes > 0 ? static_cast<double>(at_goal) / static_cast<double>(episodes) : 0.0);
}

std::map<std::string, double> EvalColumns(const EvalPoint& eval, const std::string& task) {
  std::map<std::string, double> columns = {{"eval_return_mean", eval.mean}, {"eval_return_std", eval.std}};
  if (std::optional<ReferenceReturns> reference = D4rlReferenceReturns(task); reference.has_value()) {
    columns["eval_score"] = NormalizedScore(*reference, eval.mean);
  }
  if (eval.goals.has_value()) {
    const MultiGoalCounts& g = *eval.goals;
    columns["eval_goals"] = g.goals();
    const int at_goal = g.reached[0] + g.reached[1] + g.reached[2] + g.reached[3];
    columns["eval_at_goal"] = eval.episodes > 0 ? static_cast<double>(at_goal) / static_cast<double>(eval.episodes) : 0;
    const char* names[4] = {"eval_goal_e", "eval_goal_w", "eval_goal_n", "eval_goal_s"};
    for (int i = 0; i < 4; ++i) columns[names[i]] = g.reached[i];
  }
  return columns;
}

absl::StatusOr<std::unique_ptr<RunMetricsWriter>> RunMetricsWriter::Open(const std::string& dir) {
  std::unique_ptr<RunMetricsWriter> w(new RunMetricsWriter());
  w->dir_ = dir;
  const std::string path = dir + "/metrics.csv";
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec) && std::filesystem::file_size(path, ec) > 0;
  if (exists) {
    std::string header;
    {
      std::ifstream in(path);
      std::getline(in, header);
    }
    if (header != kRunMetricsColumns) {
      if (!absl::StartsWith(kRunMetricsColumns, absl::StrCat(header, ","))) {
        return absl::FailedPreconditionError(
            absl::StrCat(path, " has other columns (written by another version of meow); use another --run_dir"));
      }
      if (absl::Status s = AppendColumns(path, header); !s.ok()) return s;
    }
    auto previous = ReadRunMetrics(dir);
    if (!previous.ok()) return previous.status();
    if (previous->rows > 0) w->wall_offset_ = previous->values["wall_time"].back();
    // The best evaluation's score (EvalPoint::score): on MultiGoal-v0 goals reached plus the share
    // at a goal, else the mean return.
    const std::vector<double>& means = previous->values["eval_return_mean"];
    const std::vector<double>& goals = previous->values["eval_goals"];
    const std::vector<double>& at_goal = previous->values["eval_at_goal"];
    for (size_t i = 0; i < means.size(); ++i) {
      const bool counted = i < goals.size() && i < at_goal.size() && std::isfinite(goals[i]) && std::isfinite(at_goal[i]);
      const double score = counted ? GoalScore(goals[i], at_goal[i]) : means[i];
      if (std::isfinite(score) && score > w->best_eval_) w->best_eval_ = score;
    }
  }
  w->csv_.open(path, std::ios::app);
  if (!w->csv_) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  if (!exists) w->csv_ << kRunMetricsColumns << "\n" << std::flush;
  auto tb = TensorBoardWriter::Create(dir);
  if (!tb.ok()) return tb.status();
  w->tensorboard_ = *std::move(tb);
  return w;
}

absl::Status RunMetricsWriter::Row(const std::map<std::string, double>& values, int64_t step) {
  std::vector<std::string> cells;
  std::map<std::string, double> scalars;
  size_t used = 0;
  for (const std::string& column : Columns()) {
    auto it = values.find(column);
    const double value = it == values.end() ? std::nan("") : it->second;
    used += it != values.end();
    cells.push_back(Num(value));
    if (auto tag = Tags().find(column); tag != Tags().end() && it != values.end()) scalars[tag->second] = value;
  }
  if (used != values.size()) {
    for (const auto& [name, value] : values) {
      if (std::find(Columns().begin(), Columns().end(), name) == Columns().end()) {
        return absl::InternalError(absl::StrCat("metrics.csv has no column \"", name, "\""));
      }
    }
  }
  csv_ << absl::StrJoin(cells, ",") << "\n" << std::flush;
  if (!csv_) return absl::DataLossError(absl::StrCat("cannot append to ", dir_, "/metrics.csv"));
  const double unix_time = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (absl::Status s = tensorboard_->AddScalars(step, unix_time, scalars); !s.ok()) return s;
  return tensorboard_->Flush();
}

}  // namespace meow
