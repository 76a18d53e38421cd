// metrics.csv and the TensorBoard events of a run directory, one schema for every way of training
// (local mode, `meow learner`, `meow train --sync`): the columns of kRunMetricsColumns in that
// order, a cell left empty where a value does not apply (NaN), and the same TensorBoard tag for
// each column. A row is either periodic (every log_interval environment steps; eval columns empty)
// or an evaluation's (eval columns and the counters), so every series stays in order of
// environment steps. Opened on an existing file it appends (a resumed run) after checking the
// header; a file of an earlier version, whose columns are the first of this schema's (columns are
// only ever added at the end), is first rewritten with the new columns empty in its old rows.
// Thread-compatible: one writer per run directory.
#pragma once

#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "actor/multi_goal.h"
#include "common/tensorboard.h"

namespace meow {

extern const char kRunMetricsColumns[];

// One evaluation: its environment step, the mean and standard deviation of its returns and, on
// MultiGoal-v0, where its episodes ended.
struct EvalPoint {
  int64_t env_steps = 0;
  double mean = 0;
  double std = 0;
  int64_t episodes = 0;
  std::optional<MultiGoalCounts> goals;

  // What "best evaluation" means: the mean return, or on MultiGoal-v0 the goals reached plus the
  // share of episodes that ended at one (in [0, 5)), as the papers judge that task.
  double score() const;
};

// An evaluation's columns: eval_return_mean and eval_return_std and, on MultiGoal-v0, eval_goals
// (goals reached, 0-4), eval_at_goal (share of the episodes that ended at a goal) and the counts
// by goal, eval_goal_e/w/n/s for (+5,0)/(-5,0)/(0,+5)/(0,-5); for a task with D4RL reference
// returns (Hopper, HalfCheetah, Walker2d, Ant), eval_score, the normalised score of the mean.
std::map<std::string, double> EvalColumns(const EvalPoint& eval, const std::string& task);

class RunMetricsWriter {
 public:
  // Creates DIR/metrics.csv with its header, or opens it to append when it exists with the same
  // header or an earlier version's (FailedPrecondition naming the file otherwise); opens the
  // TensorBoard event file.
  static absl::StatusOr<std::unique_ptr<RunMetricsWriter>> Open(const std::string& dir);

  // Of the rows already in the file: the last wall_time (0 when new) and the best evaluation
  // (-inf when none), so a resumed run continues both.
  double wall_offset() const { return wall_offset_; }
  double best_eval() const { return best_eval_; }
  void set_best_eval(double v) { best_eval_ = v; }

  // Appends one row: `values` by column name (a name outside the schema is an InternalError;
  // columns not given and non-finite values are written empty) and their TensorBoard scalars
  // at `step`; flushes both.
  absl::Status Row(const std::map<std::string, double>& values, int64_t step);

 private:
  RunMetricsWriter() = default;
  std::string dir_;
  std::ofstream csv_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  double wall_offset_ = 0;
  double best_eval_ = -std::numeric_limits<double>::infinity();
};

}  // namespace meow
