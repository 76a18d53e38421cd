// `meow report`: one self-contained HTML page (inline SVG, no scripts or fonts fetched from the
// network) with the learning curves of one run or several runs overlaid, read from each run
// directory's metrics.csv (and its task from config.txt).
//
// Runs of several tasks make a comparison page: a table of every run's final figures beside the
// published returns of its task, then one section per task with its runs' evaluation curves. The
// published returns (PublishedReturns) are drawn on a task's evaluation chart: as a marker where
// the chart reaches their step, else as a dashed line labelled with the step they were read at.
//
// Charts (each drawn when its columns are present): evaluation return with its +-std band,
// actors' episode return, env steps/s, updates/s, loss, Q and V means, weight
// staleness, skipped non-finite updates, replay size. Every series is one <path class="series">
// whose data-points attribute says how many rows it drew (rows where the value is finite); an
// inline script measures every path after load and writes the result into <pre id="selfcheck">,
// which tests read through headless Chromium.
// Thread-safe: free functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actor/multi_goal.h"
#include "learner/published_returns.h"

namespace meow {

// The numeric contents of one metrics.csv: column name -> values, one per row (NaN where empty
// or "nan").
struct RunMetrics {
  std::string name;         // shown in legends: the run directory's last component
  std::string env;          // the task, from RUN_DIR/config.txt ("env=..."); empty when it has none
  std::string algo;         // config.txt's "algo=..." ("meow" when it has none); empty without config.txt
  bool offline = false;     // config.txt's "mode=offline": its env_steps column counts updates
  double dataset_return = std::nan("");  // offline: config.txt's dataset_return_mean (its episodes' mean)
  std::string video;        // the newest RUN_DIR/videos/step-<N>.mp4 (largest N); empty when none
  int64_t video_step = -1;  // its N
  // MultiGoal-v0: RUN_DIR/multigoal_rollouts.csv (the final policy's stochastic rollouts from the
  // origin, written by `meow train`), drawn as the papers' figure.
  std::optional<MultiGoalRollouts> multigoal;
  std::vector<std::string> columns;
  std::map<std::string, std::vector<double>> values;
  size_t rows = 0;
};

// Reads RUN_DIR/metrics.csv (and the task from RUN_DIR/config.txt, when present). InvalidArgument
// naming the file and line for a malformed row.
absl::StatusOr<RunMetrics> ReadRunMetrics(const std::string& run_dir);

// One chart of the page: a title, the x column, and the y columns drawn as series.
struct ChartSpec {
  std::string id;
  std::string title;
  std::string x_column;
  std::string x_label;
  std::vector<std::string> y_columns;
  std::string band_column;  // optional: +- band around the first y column
  // Scale the y axis to the bulk of the values (1.5 x the 90th percentile) so that a
  // short burst, such as the actors' free run before learning starts, does not flatten the rest;
  // values above are drawn on the top edge and the caption says so.
  bool clip_outliers = false;
};
const std::vector<ChartSpec>& ReportCharts();

// The mean of a run's last `n` evaluations (fewer when it has fewer); NaN without any.
double FinalEvalReturn(const RunMetrics& run, int n = 3);

std::string RenderReport(const std::vector<RunMetrics>& runs);

// Reads every run directory and writes the page to `out_path` (atomically). Videos are linked by
// their path relative to the page's folder: the page and the run directories open offline
// together (move them together).
absl::Status WriteReport(const std::vector<std::string>& run_dirs, const std::string& out_path);

}  // namespace meow
