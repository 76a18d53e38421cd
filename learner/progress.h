// The progress line every way of training prints, and the rates it shows.
//   [Hopper-v4] steps 52000/100000  updates 47000  131 steps/s  131 updates/s  version 4700
//     episode 312.4  eval 845.1  replay 52000  ETA 6m06s
// (on MultiGoal-v0 the evaluation is shown as goals reached, e.g. "eval 4 goals 31/24/22/19"), and
// in local mode where the time goes: "learner busy 97%  actors waiting 48%".
// On a terminal the line is rewritten in place (once a second); otherwise one line per metrics row.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "actor/multi_goal.h"

namespace meow {

// "1h02m", "3m05s", "42s"; "?" for a negative or non-finite value. For ETAs.
std::string FormatDuration(double seconds);

// Environment steps and updates per second over the window since the previous Mark (NaN before
// the first window closes).
class RateMeter {
 public:
  // Starts the first window at time `t` (seconds) with these counts.
  void Start(double t, int64_t steps, int64_t updates);
  // Closes the window at `t` and opens the next one.
  void Mark(double t, int64_t steps, int64_t updates);
  double steps_per_s() const { return steps_per_s_; }
  double updates_per_s() const { return updates_per_s_; }

 private:
  double time_ = 0;
  int64_t steps_ = 0, updates_ = 0;
  double steps_per_s_ = std::numeric_limits<double>::quiet_NaN();
  double updates_per_s_ = std::numeric_limits<double>::quiet_NaN();
};

struct ProgressFigures {
  int64_t steps = 0;  // environment steps so far
  int64_t total_steps = 0;
  int64_t updates = 0;
  int64_t version = 0;      // weight version the actors get
  int64_t replay_size = 0;  // transitions replay holds
  double steps_per_s = 0;   // NaN: not measured yet
  double updates_per_s = 0;
  double episode_return = 0;  // mean return of the episodes of the last window (NaN: none yet)
  double eval_return = 0;     // newest evaluation's mean (NaN: none yet)
  // Where the time goes (NaN: not measured; not shown): the share of wall time the learner spent
  // in updates, and the share of the actors' time the rate limiter held them.
  double learner_busy = std::numeric_limits<double>::quiet_NaN();
  double actors_waiting = std::numeric_limits<double>::quiet_NaN();
  // MultiGoal-v0: where the newest evaluation's episodes ended, shown instead of its return.
  std::optional<MultiGoalCounts> eval_goals;
};

class ProgressLine {
 public:
  // `enabled` false prints nothing; a terminal on stdout gets the line rewritten in place.
  ProgressLine(std::string env, bool enabled);
  // Offline training: the clock is updates, and there are no actors or episodes to show:
  // "[Hopper-v4] updates 5000/100000  180 updates/s  learner busy 99%  version 500  eval 1312.4  dataset 100000  ETA 8m47s".
  void set_offline(bool offline) { offline_ = offline; }
  bool enabled() const { return enabled_; }
  bool tty() const { return tty_; }
  // Prints the line (on a terminal, in place). `final_line` shows no ETA and ends the line.
  void Print(const ProgressFigures& figures, bool final_line = false);
  // Ends a line left open on a terminal.
  void Finish();

 private:
  std::string env_;
  bool enabled_;
  bool tty_;
  bool open_ = false;  // a line rewritten in place is on screen
  bool offline_ = false;
};

}  // namespace meow
