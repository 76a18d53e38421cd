#include "learner/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "absl/strings/str_format.h"

namespace meow {

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

void RateMeter::Start(double t, int64_t steps, int64_t updates) {
  time_ = t;
  steps_ = steps;
  updates_ = updates;
}

void RateMeter::Mark(double t, int64_t steps, int64_t updates) {
  if (t > time_) {
    steps_per_s_ = static_cast<double>(steps - steps_) / (t - time_);
    updates_per_s_ = static_cast<double>(updates - updates_) / (t - time_);
  }
  Start(t, steps, updates);
}

ProgressLine::ProgressLine(std::string env, bool enabled)
    : env_(std::move(env)), enabled_(enabled), tty_(isatty(STDOUT_FILENO) != 0) {}

void ProgressLine::Print(const ProgressFigures& f, bool final_line) {
  if (!enabled_) return;
  auto finite_or_zero = [](double v) { return std::isfinite(v) ? v : 0.0; };
  // The recent rate: warm-up steps (no updates) run far faster than the rest.
  const double rate = finite_or_zero(f.steps_per_s);
  const double eta = rate > 0 ? static_cast<double>(std::max<int64_t>(f.total_steps - f.steps, 0)) / rate : NAN;
  const bool in_place = tty_ && !final_line;
  const std::string eval =
      f.eval_goals.has_value()
          ? absl::StrFormat("%d goals %d/%d/%d/%d", f.eval_goals->goals(), f.eval_goals->reached[0],
                            f.eval_goals->reached[1], f.eval_goals->reached[2], f.eval_goals->reached[3])
          : (std::isfinite(f.eval_return) ? absl::StrFormat("%.1f", f.eval_return) : std::string("-"));
  if (offline_) {
    absl::PrintF("%s[%s] updates %d/%d  %.0f updates/s  %sversion %d  eval %s  dataset %d  ETA %s%s",
                 tty_ ? "\r\033[K" : "", env_, f.steps, f.total_steps, rate,
                 std::isfinite(f.learner_busy) ? absl::StrFormat("learner busy %.0f%%  ", 100 * f.learner_busy) : "",
                 f.version, eval, f.replay_size, final_line ? std::string("-") : FormatDuration(eta),
                 in_place ? "" : "\n");
    open_ = in_place;
    std::fflush(stdout);
    return;
  }
  std::string busy;
  if (std::isfinite(f.learner_busy)) absl::StrAppendFormat(&busy, "learner busy %.0f%%  ", 100 * f.learner_busy);
  if (std::isfinite(f.actors_waiting)) absl::StrAppendFormat(&busy, "actors waiting %.0f%%  ", 100 * f.actors_waiting);
  absl::PrintF(
      "%s[%s] steps %d/%d  updates %d  %.0f steps/s  %.0f updates/s  %sversion %d  episode %.1f  eval %s  "
      "replay %d  ETA %s%s",
      tty_ ? "\r\033[K" : "", env_, f.steps, f.total_steps, f.updates, rate, finite_or_zero(f.updates_per_s), busy,
      f.version, f.episode_return, eval, f.replay_size, final_line ? std::string("-") : FormatDuration(eta),
      in_place ? "" : "\n");
  open_ = in_place;
  std::fflush(stdout);
}

void ProgressLine::Finish() {
  if (!open_) return;
  absl::PrintF("\n");
  std::fflush(stdout);
  open_ = false;
}

}  // namespace meow
