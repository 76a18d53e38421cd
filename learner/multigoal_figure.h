// MultiGoal-v0 as the MEow and soft Q-learning papers draw it, for `meow report`: the final
// policy's stochastic rollouts from the origin over the reward's contour bands, each goal's reach
// circled with the number of rollouts that ended there. Thread-safe: a pure function.
#pragma once

#include <string>

#include "actor/multi_goal.h"

namespace meow {

// One <figure> with an inline SVG (class "multigoal", one path.rollout per rollout carrying its
// point count) and a caption. `run_name` is already HTML-escaped.
std::string RenderMultiGoalFigure(const std::string& run_name, const MultiGoalRollouts& rollouts);

}  // namespace meow
