#include "learner/multigoal_figure.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace meow {

// MultiGoal-v0 as the papers draw it: the reward's position terms as filled contour bands over
// [-7, 7]^2, each rollout's path from the origin, the goals (their reach, radius 1) with the
// number of rollouts that ended there.
std::string RenderMultiGoalFigure(const std::string& run_name, const MultiGoalRollouts& rollouts) {
  constexpr double kSize = 440, kMargin = 20, kBox = 7;
  const double scale = (kSize - 2 * kMargin) / (2 * kBox);
  auto sx = [&](double x) { return kMargin + (x + kBox) * scale; };
  auto sy = [&](double y) { return kMargin + (kBox - y) * scale; };
  const MultiGoalCounts counts = rollouts.Count();
  std::string svg = absl::StrFormat(
      "<figure><svg class=\"multigoal\" data-run=\"%s\" data-rollouts=\"%d\" viewBox=\"0 0 %g %g\" width=\"%g\" "
      "height=\"%g\" role=\"img\" aria-label=\"MultiGoal rollouts\">\n",
      run_name, rollouts.paths.size(), kSize, kSize, kSize, kSize);
  // Bands 5 apart from -55 to 10: a cell's colour is its band's (light near the goals).
  constexpr int kCells = 70;
  const double cell = 2 * kBox / kCells;
  for (int i = 0; i < kCells; ++i) {
    for (int j = 0; j < kCells; ++j) {
      const double x = -kBox + (i + 0.5) * cell, y = -kBox + (j + 0.5) * cell;
      const double reward = MultiGoalEnv::PositionReward({x, y});
      const double band = std::clamp(std::floor(reward / 5.0) * 5.0, -55.0, 10.0);
      const double t = (band + 55.0) / 65.0;  // 0 far from the goals, 1 at a goal
      absl::StrAppendFormat(&svg, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"rgb(%d,%d,%d)\"/>",
                            sx(x - cell / 2), sy(y + cell / 2), cell * scale + 0.3, cell * scale + 0.3,
                            static_cast<int>(40 + 200 * t), static_cast<int>(60 + 180 * t),
                            static_cast<int>(110 + 110 * t));
    }
  }
  svg += "\n";
  for (size_t r = 0; r < rollouts.paths.size(); ++r) {
    std::string d;
    for (size_t t = 0; t < rollouts.paths[r].size(); ++t) {
      absl::StrAppendFormat(&d, "%s%.2f %.2f ", t == 0 ? "M" : "L", sx(rollouts.paths[r][t][0]),
                            sy(rollouts.paths[r][t][1]));
    }
    absl::StrAppendFormat(&svg,
                          "<path class=\"rollout\" data-points=\"%d\" fill=\"none\" stroke=\"#d62728\" "
                          "stroke-opacity=\"0.55\" stroke-width=\"1.2\" d=\"%s\"/>\n",
                          rollouts.paths[r].size(), d);
  }
  for (int g = 0; g < 4; ++g) {
    const double gx = MultiGoalEnv::kGoals[g][0], gy = MultiGoalEnv::kGoals[g][1];
    absl::StrAppendFormat(&svg,
                          "<g class=\"goal\" data-goal=\"%d\" data-count=\"%d\"><circle cx=\"%.2f\" cy=\"%.2f\" "
                          "r=\"%.2f\" fill=\"none\" stroke=\"#000\" stroke-width=\"1.5\"/><text x=\"%.2f\" "
                          "y=\"%.2f\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"600\">%d</text></g>\n",
                          g, counts.reached[g], sx(gx), sy(gy), scale * MultiGoalEnv::kGoalThreshold, sx(gx),
                          sy(gy) + (gy < 0 ? 30 : -22), counts.reached[g]);
  }
  absl::StrAppendFormat(&svg, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"#000\"/>\n", sx(0), sy(0));
  const int total = static_cast<int>(rollouts.paths.size());
  svg += absl::StrFormat(
      "</svg><figcaption>%s: %d stochastic rollouts of the final policy from the origin %s; contours: the "
      "reward's distance terms (light: near a goal)</figcaption></figure>\n",
      run_name, total, DescribeGoals(counts));
  return svg;
}

}  // namespace meow
