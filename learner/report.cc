#include "learner/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "learner/multigoal_figure.h"

namespace meow {
namespace {

constexpr double kWidth = 640, kHeight = 300;
constexpr double kLeft = 70, kRight = 20, kTop = 34, kBottom = 44;
constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"};

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Round tick positions covering [lo, hi]: about five, at 1, 2 or 5 times a power of ten.
std::vector<double> Ticks(double lo, double hi) {
  const double range = hi - lo;
  if (!(range > 0)) return {lo};
  const double raw = range / 5;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * magnitude) {
      step = m * magnitude;
      break;
    }
  }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);  // no "-0" from rounding
  }
  return ticks;
}

std::string FormatTick(double v) {
  const double a = std::abs(v);
  if (a >= 1e6) return absl::StrFormat("%gM", v / 1e6);
  if (a >= 1e4) return absl::StrFormat("%gk", v / 1e3);
  return absl::StrFormat("%g", v);
}

bool HasAny(const RunMetrics& run, const std::string& column) {
  auto it = run.values.find(column);
  if (it == run.values.end()) return false;
  return std::any_of(it->second.begin(), it->second.end(), [](double v) { return std::isfinite(v); });
}

// "11,000": a return with thousands separated.
std::string FormatReturn(double v) {
  const int64_t rounded = static_cast<int64_t>(std::llround(v));
  std::string digits = absl::StrCat(rounded < 0 ? -rounded : rounded);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return rounded < 0 ? "-" + digits : digits;
}

// `refs` (published returns) are drawn on top: a diamond where the chart reaches their step, else a
// dashed line at their value labelled with the step they were read at. The legend names the runs
// when there are several or `name_runs`.
// Offline runs count updates where online ones count environment steps (their env_steps column).
std::string XLabel(const ChartSpec& spec, const std::vector<RunMetrics>& runs) {
  if (spec.x_column != "env_steps" || runs.empty()) return spec.x_label;
  const bool all_offline = std::all_of(runs.begin(), runs.end(), [](const RunMetrics& r) { return r.offline; });
  const bool any_offline = std::any_of(runs.begin(), runs.end(), [](const RunMetrics& r) { return r.offline; });
  if (all_offline) return "updates (offline training)";
  if (any_offline) return "environment steps (offline runs: updates)";
  return spec.x_label;
}

std::string RenderChart(const ChartSpec& spec, const std::vector<RunMetrics>& runs,
                        const std::vector<PublishedReturn>& refs = {}, bool name_runs = false) {
  const std::string x_label = XLabel(spec, runs);
  // Data range over every run and series (the band included).
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  bool any = false;
  for (const RunMetrics& run : runs) {
    if (!run.values.count(spec.x_column)) continue;
    const auto& xs = run.values.at(spec.x_column);
    for (const std::string& column : spec.y_columns) {
      if (!run.values.count(column)) continue;
      const auto& ys = run.values.at(column);
      const std::vector<double>* band = column == spec.y_columns.front() && run.values.count(spec.band_column)
                                            ? &run.values.at(spec.band_column)
                                            : nullptr;
      for (size_t i = 0; i < run.rows; ++i) {
        if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) continue;
        any = true;
        x_lo = std::min(x_lo, xs[i]);
        x_hi = std::max(x_hi, xs[i]);
        const double b = band != nullptr && std::isfinite((*band)[i]) ? (*band)[i] : 0;
        y_lo = std::min(y_lo, ys[i] - b);
        y_hi = std::max(y_hi, ys[i] + b);
      }
    }
  }
  if (!any) return "";
  for (const PublishedReturn& ref : refs) {
    y_lo = std::min(y_lo, ref.value);
    y_hi = std::max(y_hi, ref.value);
  }
  double clipped_above = std::numeric_limits<double>::infinity();
  if (spec.clip_outliers) {
    std::vector<double> all;
    for (const RunMetrics& run : runs) {
      for (const std::string& column : spec.y_columns) {
        if (!run.values.count(column)) continue;
        for (double v : run.values.at(column)) {
          if (std::isfinite(v)) all.push_back(v);
        }
      }
    }
    if (all.size() >= 20) {
      const size_t k = static_cast<size_t>(0.9 * static_cast<double>(all.size() - 1));
      std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end());
      const double bulk = all[k];
      const double limit = bulk + 0.5 * std::max(std::abs(bulk), bulk - y_lo);
      if (y_hi > limit && limit > y_lo) {
        y_hi = limit;
        clipped_above = limit;
      }
    }
  }
  if (x_hi == x_lo) x_hi = x_lo + 1;
  if (y_hi == y_lo) {
    y_hi += 0.5 * std::max(1.0, std::abs(y_hi));
    y_lo -= 0.5 * std::max(1.0, std::abs(y_lo));
  }
  const double pad = 0.05 * (y_hi - y_lo);
  y_lo -= pad;
  y_hi += pad;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto py = [&](double y) {
    y = std::clamp(y, y_lo, y_hi);  // only clipped outliers are outside
    return kTop + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h;
  };

  std::string svg = absl::StrFormat(
      "<figure><svg class=\"chart\" data-chart=\"%s\" viewBox=\"0 0 %g %g\" width=\"%g\" "
      "height=\"%g\" role=\"img\" aria-label=\"%s\">\n<text class=\"title\" x=\"%g\" y=\"20\">%s</text>\n",
      spec.id, kWidth, kHeight, kWidth, kHeight, Escape(spec.title), kLeft, Escape(spec.title));
  // Axes, grid and tick labels.
  for (double t : Ticks(y_lo, y_hi)) {
    absl::StrAppendFormat(&svg,
                          "<line class=\"grid\" x1=\"%g\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\"/>"
                          "<text class=\"tick\" x=\"%g\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                          kLeft, kWidth - kRight, py(t), py(t), kLeft - 6, py(t) + 4, FormatTick(t));
  }
  for (double t : Ticks(x_lo, x_hi)) {
    absl::StrAppendFormat(&svg,
                          "<line class=\"grid\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%g\" y2=\"%g\"/>"
                          "<text class=\"tick\" x=\"%.2f\" y=\"%g\" text-anchor=\"middle\">%s</text>\n",
                          px(t), px(t), kTop, kHeight - kBottom, px(t), kHeight - kBottom + 16, FormatTick(t));
  }
  absl::StrAppendFormat(&svg,
                        "<rect class=\"frame\" x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\"/>\n"
                        "<text class=\"label\" x=\"%g\" y=\"%g\" text-anchor=\"middle\">%s</text>\n",
                        kLeft, kTop, plot_w, plot_h, kLeft + plot_w / 2, kHeight - 8, Escape(x_label));

  std::string legend;
  for (size_t r = 0; r < runs.size(); ++r) {
    const RunMetrics& run = runs[r];
    if (!run.values.count(spec.x_column)) continue;
    const auto& xs = run.values.at(spec.x_column);
    const char* color = kPalette[r % (sizeof(kPalette) / sizeof(kPalette[0]))];
    for (size_t s = 0; s < spec.y_columns.size(); ++s) {
      const std::string& column = spec.y_columns[s];
      if (!run.values.count(column)) continue;
      const auto& ys = run.values.at(column);
      const char* dash = s == 0 ? "none" : (s == 1 ? "6 3" : "2 3");
      // The band: the upper edge forward, the lower edge back.
      if (s == 0 && run.values.count(spec.band_column)) {
        const auto& band = run.values.at(spec.band_column);
        std::string upper, lower;
        for (size_t i = 0; i < run.rows; ++i) {
          if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) continue;
          const double b = std::isfinite(band[i]) ? band[i] : 0;
          absl::StrAppendFormat(&upper, "%s%.2f %.2f ", upper.empty() ? "M" : "L", px(xs[i]), py(ys[i] + b));
          lower = absl::StrFormat("L%.2f %.2f ", px(xs[i]), py(ys[i] - b)) + lower;
        }
        if (!upper.empty()) {
          absl::StrAppendFormat(&svg, "<path class=\"band\" fill=\"%s\" d=\"%s%sZ\"/>\n", color, upper, lower);
        }
      }
      std::string d;
      int points = 0;
      for (size_t i = 0; i < run.rows; ++i) {
        if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) continue;
        absl::StrAppendFormat(&d, "%s%.2f %.2f ", points == 0 ? "M" : "L", px(xs[i]), py(ys[i]));
        ++points;
      }
      if (points == 1) {  // a single row: a visible dot rather than a zero-length line
        absl::StrAppendFormat(&d, "l0.01 0 ");
      }
      absl::StrAppendFormat(&svg,
                            "<path class=\"series\" data-run=\"%s\" data-series=\"%s\" "
                            "data-points=\"%d\" stroke=\"%s\" stroke-dasharray=\"%s\" d=\"%s\"/>\n",
                            Escape(run.name), column, points, color, dash, d);
      absl::StrAppendFormat(&legend,
                            "<span class=\"key\"><svg width=\"28\" height=\"10\"><line x1=\"0\" "
                            "x2=\"28\" y1=\"5\" y2=\"5\" stroke=\"%s\" stroke-width=\"2\" "
                            "stroke-dasharray=\"%s\"/></svg>%s%s</span>",
                            color, dash, runs.size() > 1 || name_runs ? Escape(run.name) + " " : "", column);
    }
  }
  for (const PublishedReturn& ref : refs) {
    const bool on_chart = ref.env_steps >= 0 && static_cast<double>(ref.env_steps) <= x_hi;
    const std::string label =
        ref.env_steps < 0 ? absl::StrCat(ref.source, " ", FormatReturn(ref.value))
                          : absl::StrCat(ref.source, ref.approximate ? " \u2248" : " ", FormatReturn(ref.value), " at ",
                                         FormatTick(static_cast<double>(ref.env_steps)), " steps");
    absl::StrAppendFormat(&svg, "<g class=\"reference\" data-source=\"%s\" data-steps=\"%d\" data-value=\"%g\">",
                          Escape(ref.source), ref.env_steps, ref.value);
    if (on_chart) {
      const double x = px(static_cast<double>(ref.env_steps)), y = py(ref.value);
      absl::StrAppendFormat(&svg,
                            "<path fill=\"#000\" d=\"M%.2f %.2f l6 6 l-6 6 l-6 -6 Z\"/>"
                            "<text class=\"tick\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"%s\">%s</text>",
                            x, y - 6, x + (x > kWidth / 2 ? -10 : 10), y + 4, x > kWidth / 2 ? "end" : "start",
                            Escape(label));
    } else {
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%g\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#000\" "
                            "stroke-width=\"1.2\" stroke-dasharray=\"8 4\"/>"
                            "<text class=\"tick\" x=\"%g\" y=\"%.2f\" text-anchor=\"end\">%s</text>",
                            kLeft, kWidth - kRight, py(ref.value), py(ref.value), kWidth - kRight - 4,
                            py(ref.value) - 4, Escape(label));
    }
    svg += "</g>\n";
  }
  const bool levels = std::any_of(refs.begin(), refs.end(), [](const PublishedReturn& r) { return r.env_steps < 0; });
  if (levels) {
    legend += "<span class=\"note\">black dashed: the mean episode return of the dataset the runs trained on</span>";
  } else if (!refs.empty()) {
    legend +=
        "<span class=\"note\">black: published returns (a diamond at their step; a dashed line when read at a "
        "later step than this chart reaches)</span>";
  }
  if (std::isfinite(clipped_above)) {
    legend +=
        absl::StrFormat("<span class=\"note\" data-clipped-above=\"%g\">values above %s drawn on the top edge</span>",
                        clipped_above, FormatTick(clipped_above));
  }
  svg += "</svg>\n<figcaption>" + legend + "</figcaption></figure>\n";
  return svg;
}

}  // namespace

const std::vector<ChartSpec>& ReportCharts() {
  static const auto* charts = new std::vector<ChartSpec>{
      {"eval",
       "Evaluation return (mean +- std)",
       "env_steps",
       "environment steps",
       {"eval_return_mean"},
       "eval_return_std"},
      {"score",
       "D4RL normalised score (0: random, 100: expert)",
       "env_steps",
       "environment steps",
       {"eval_score"},
       ""},
      // MultiGoal-v0's evaluations: the papers' measure, stochastic rollouts from the origin.
      {"goals", "Goals reached by the evaluation's rollouts (of 4)", "env_steps", "environment steps", {"eval_goals"},
       ""},
      {"goal_counts",
       "Evaluation rollouts at each goal (e: +5,0; w: -5,0; n: 0,+5; s: 0,-5)",
       "env_steps",
       "environment steps",
       {"eval_goal_e", "eval_goal_w", "eval_goal_n", "eval_goal_s"},
       ""},
      {"episode", "Actors' episode return", "env_steps", "environment steps", {"episode_return"}, ""},
      {"steps_per_s", "Environment steps per second", "env_steps", "environment steps", {"steps_per_s"}, "", true},
      {"updates_per_s", "Updates per second", "env_steps", "environment steps", {"updates_per_s"}, "", true},
      {"loss", "Loss (MEow's objective; SAC's and SQL's critics; CNF's critics and actor; BC's squared error)",
       "env_steps", "environment steps", {"loss"}, "", true},
      {"qv", "Q and V (means over the batch)", "env_steps", "environment steps", {"q_mean", "v_mean"}, ""},
      {"alpha", "Temperature alpha (SAC learns it; MEow and SQL: fixed)", "env_steps",
       "environment steps", {"alpha"}, ""},
      {"entropy", "Policy entropy, -mean log pi of its own samples (SAC)", "env_steps", "environment steps",
       {"entropy"}, ""},
      {"staleness", "Weight staleness (versions)", "env_steps", "environment steps", {"staleness"}, ""},
      {"skipped", "Skipped non-finite updates", "env_steps", "environment steps", {"skipped_updates"}, ""},
      {"replay", "Replay size", "env_steps", "environment steps", {"replay_size"}, ""},
  };
  return *charts;
}

double FinalEvalReturn(const RunMetrics& run, int n) {
  auto it = run.values.find("eval_return_mean");
  if (it == run.values.end()) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  int count = 0;
  for (auto v = it->second.rbegin(); v != it->second.rend() && count < n; ++v) {
    if (!std::isfinite(*v)) continue;
    sum += *v;
    ++count;
  }
  return count > 0 ? sum / count : std::numeric_limits<double>::quiet_NaN();
}

absl::StatusOr<RunMetrics> ReadRunMetrics(const std::string& run_dir) {
  const std::string path = run_dir + "/metrics.csv";
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  RunMetrics run;
  run.name = std::filesystem::path(run_dir).lexically_normal().filename().string();
  if (run.name.empty()) run.name = std::filesystem::path(run_dir).parent_path().filename().string();
  std::vector<std::string> lines = absl::StrSplit(*text, '\n', absl::SkipWhitespace());
  if (lines.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  for (absl::string_view c : absl::StrSplit(lines[0], ',')) {
    run.columns.emplace_back(absl::StripAsciiWhitespace(c));
  }
  std::set<std::string> unique(run.columns.begin(), run.columns.end());
  if (unique.size() != run.columns.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the header repeats a column name"));
  }
  for (size_t line = 1; line < lines.size(); ++line) {
    std::vector<std::string> cells = absl::StrSplit(lines[line], ',');
    if (cells.size() != run.columns.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", line + 1, ": ", cells.size(), " fields, the header has ", run.columns.size()));
    }
    for (size_t c = 0; c < cells.size(); ++c) {
      double v = std::numeric_limits<double>::quiet_NaN();
      const std::string cell(absl::StripAsciiWhitespace(cells[c]));
      if (!cell.empty() && !absl::SimpleAtod(cell, &v)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, " line ", line + 1, " column ", run.columns[c], ": \"", cell, "\" is not a number"));
      }
      run.values[run.columns[c]].push_back(v);
    }
    ++run.rows;
  }
  // The newest video the evaluator wrote.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(run_dir + "/videos", error)) {
    std::string name = entry.path().filename().string();
    absl::string_view view(name);
    int64_t step = 0;
    if (absl::ConsumePrefix(&view, "step-") && absl::ConsumeSuffix(&view, ".mp4") && absl::SimpleAtoi(view, &step) &&
        step > run.video_step) {
      run.video_step = step;
      run.video = entry.path().string();
    }
  }
  // MultiGoal's rollouts (a malformed file is an error naming it; an absent one is fine).
  if (const std::string rollouts = run_dir + "/multigoal_rollouts.csv"; std::filesystem::exists(rollouts)) {
    auto read = ReadMultiGoalRollouts(rollouts);
    if (!read.ok()) return read.status();
    run.multigoal = *std::move(read);
  }
  // The task, when the run dir says it (metrics.csv files copied elsewhere may come alone).
  if (auto config = ReadFile(run_dir + "/config.txt"); config.ok()) {
    run.algo = "meow";  // MEow's config.txt has no algo line
    for (absl::string_view line : absl::StrSplit(*config, '\n')) {
      if (absl::ConsumePrefix(&line, "env=")) run.env = std::string(absl::StripAsciiWhitespace(line));
      if (absl::ConsumePrefix(&line, "algo=")) run.algo = std::string(absl::StripAsciiWhitespace(line));
      if (absl::StripAsciiWhitespace(line) == "mode=offline") run.offline = true;
      if (absl::ConsumePrefix(&line, "dataset_return_mean=")) {
        double v = 0;
        if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &v)) run.dataset_return = v;
      }
    }
  }
  return run;
}

namespace {

std::string Number(double v) { return std::isfinite(v) ? absl::StrFormat("%g", v) : "-"; }

// One row per run: its task, how far it got and its evaluations.
std::string SummaryTable(const std::vector<RunMetrics>& runs) {
  // MultiGoal-v0 runs add a column: the newest evaluation's goals, e.g. "4 (31/24/22/19)".
  bool counted = false;
  for (const RunMetrics& run : runs) counted = counted || HasAny(run, "eval_goals");
  std::string html = absl::StrCat(
      "<table><tr><th>run</th><th>task</th><th>algorithm</th><th>rows</th><th>env steps</th><th>updates</th><th>last eval "
      "return</th><th>best eval return</th><th>final (mean of the last 3 evals)</th>",
      counted ? "<th>last eval: goals (rollouts e/w/n/s)</th>" : "", "</tr>\n");
  for (const RunMetrics& run : runs) {
    auto last = [&](const std::string& c) -> double {
      if (!run.values.count(c)) return std::nan("");
      const std::vector<double>& values = run.values.at(c);
      for (auto it = values.rbegin(); it != values.rend(); ++it) {
        if (std::isfinite(*it)) return *it;
      }
      return std::nan("");
    };
    double best = -std::numeric_limits<double>::infinity();
    if (run.values.count("eval_return_mean")) {
      for (double v : run.values.at("eval_return_mean")) {
        if (std::isfinite(v)) best = std::max(best, v);
      }
    }
    const double final_return = FinalEvalReturn(run);
    std::string goals = "-";
    if (auto it = run.values.find("eval_goals"); it != run.values.end()) {
      for (size_t row = it->second.size(); row-- > 0;) {
        if (!std::isfinite(it->second[row])) continue;
        auto count = [&](const char* column) {
          auto c = run.values.find(column);
          return c == run.values.end() ? std::string("?") : Number(c->second[row]);
        };
        goals = absl::StrCat(Number(it->second[row]), " (", count("eval_goal_e"), "/", count("eval_goal_w"), "/",
                             count("eval_goal_n"), "/", count("eval_goal_s"), ")");
        break;
      }
    }
    absl::StrAppendFormat(&html,
                          "<tr><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td>"
                          "<td>%s</td><td>%s</td>%s</tr>\n",
                          Escape(run.name), run.env.empty() ? "-" : Escape(run.env),
                          run.algo.empty() ? "-" : Escape(run.algo), run.rows,
                          run.offline ? std::string("- (offline)") : Number(last("env_steps")), Number(last("updates")),
                          Number(last("eval_return_mean")),
                          Number(best), std::isfinite(final_return) ? FormatReturn(final_return) : "-",
                          counted ? absl::StrCat("<td>", goals, "</td>") : "");
  }
  return html + "</table>\n";
}

// The published returns of the tasks shown, beside where these runs got to.
std::string PublishedTable(const std::vector<std::string>& tasks) {
  std::string rows;
  for (const std::string& task : tasks) {
    for (const PublishedReturn& ref : PublishedReturns(task)) {
      absl::StrAppendFormat(&rows, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s%s</td><td>%s</td></tr>\n", Escape(task),
                            Escape(ref.source), FormatTick(static_cast<double>(ref.env_steps)),
                            ref.approximate ? "\u2248" : "", FormatReturn(ref.value), Escape(ref.note));
    }
  }
  if (rows.empty()) return "";
  return "<h2>Published returns</h2>\n<table><tr><th>task</th><th>source</th><th>env steps</th><th>return</th>"
         "<th>how obtained</th></tr>\n" +
         rows + "</table>\n";
}

}  // namespace

std::string RenderReport(const std::vector<RunMetrics>& runs) {
  std::vector<std::string> tasks;  // in the order the runs name them
  for (const RunMetrics& run : runs) {
    if (std::find(tasks.begin(), tasks.end(), run.env) == tasks.end()) tasks.push_back(run.env);
  }
  const bool comparison = tasks.size() > 1;
  std::string title = "meow-rl report";
  if (runs.size() == 1) title += ": " + runs[0].name;
  if (comparison) title = absl::StrCat("meow-rl comparison: ", runs.size(), " runs of ", tasks.size(), " tasks");
  std::string html =
      absl::StrCat("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", Escape(title),
                   "</title>\n<style>\n"
                   "body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\n"
                   "h1{font-size:20px} h2{font-size:16px;margin-top:28px}\n"
                   "figure{display:inline-block;margin:0 16px 24px 0;vertical-align:top}\n"
                   "svg.chart{background:#fff;border:1px solid #ddd}\n"
                   ".title{font-weight:600;font-size:14px}.tick,.label{font-size:11px;fill:#555}\n"
                   ".grid{stroke:#eee}.frame{fill:none;stroke:#999}\n"
                   ".series{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}\n"
                   ".band{opacity:.18;stroke:none}.key{margin-right:14px;white-space:nowrap}.note{color:#777}\n"
                   ".key svg{vertical-align:middle;margin-right:4px} table{border-collapse:collapse}\n"
                   "td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:right}\n"
                   "#selfcheck{display:none}\n</style></head><body>\n<h1>",
                   Escape(title), "</h1>\n");
  html += SummaryTable(runs);
  // The published returns are of online runs at environment steps; offline runs alone are drawn
  // against their datasets instead.
  if (!std::all_of(runs.begin(), runs.end(), [](const RunMetrics& r) { return r.offline; })) {
    html += PublishedTable(tasks);
  }
  // The newest video of each run that has one (the evaluator's --video_every).
  std::string videos;
  for (const RunMetrics& run : runs) {
    if (run.video.empty()) continue;
    absl::StrAppendFormat(&videos,
                          "<figure><video class=\"episode\" controls loop muted preload=\"metadata\" width=\"360\" "
                          "src=\"%s\"></video><figcaption>%s at %s environment steps</figcaption></figure>\n",
                          Escape(run.video), Escape(run.name), FormatReturn(static_cast<double>(run.video_step)));
  }
  if (!videos.empty()) html += "<h2>Newest evaluation videos</h2>\n" + videos;
  // MultiGoal: what was learned, the papers' figure.
  std::string figures;
  for (const RunMetrics& run : runs) {
    if (run.multigoal.has_value()) figures += RenderMultiGoalFigure(Escape(run.name), *run.multigoal);
  }
  if (!figures.empty()) html += "<h2>What was learned: rollouts from the origin</h2>\n" + figures;
  const ChartSpec& eval_chart = ReportCharts().front();
  // What the evaluation curve is drawn against: the published (online) returns at their steps, or
  // for offline runs, whose clock is updates, their datasets' mean episode returns.
  auto references = [](const std::string& task, const std::vector<RunMetrics>& of_task) {
    const bool all_offline = !of_task.empty() && std::all_of(of_task.begin(), of_task.end(),
                                                            [](const RunMetrics& r) { return r.offline; });
    if (!all_offline) return PublishedReturns(task);
    std::vector<PublishedReturn> levels;
    for (const RunMetrics& run : of_task) {
      if (!std::isfinite(run.dataset_return)) continue;
      const bool seen = std::any_of(levels.begin(), levels.end(),
                                    [&](const PublishedReturn& r) { return r.value == run.dataset_return; });
      if (!seen) levels.push_back({"dataset's episodes, mean", -1, run.dataset_return, "from config.txt", false});
    }
    return levels;
  };
  if (comparison) {
    // One section per task: its runs' evaluation curves beside the published returns.
    for (const std::string& task : tasks) {
      std::vector<RunMetrics> of_task;
      for (const RunMetrics& run : runs) {
        if (run.env == task) of_task.push_back(run);
      }
      absl::StrAppendFormat(&html, "<h2>%s</h2>\n", task.empty() ? "runs without a task in config.txt" : Escape(task));
      html += RenderChart(eval_chart, of_task, references(task, of_task), /*name_runs=*/true);
      bool counted = false;
      for (const RunMetrics& run : of_task) counted = counted || HasAny(run, "eval_goals");
      if (counted) html += RenderChart(ReportCharts()[1], of_task, {}, /*name_runs=*/true);
    }
    html += "<p class=\"note\">Each run's other charts: meow report --run_dir=DIR.</p>\n";
  } else {
    const std::vector<PublishedReturn> refs = references(tasks.empty() ? "" : tasks.front(), runs);
    const bool all_offline = std::all_of(runs.begin(), runs.end(), [](const RunMetrics& r) { return r.offline; });
    for (const ChartSpec& spec : ReportCharts()) {
      if (all_offline && spec.id == "steps_per_s") continue;  // the same as updates per second
      bool present = false;
      for (const RunMetrics& run : runs) {
        for (const std::string& c : spec.y_columns) present = present || HasAny(run, c);
      }
      if (present) html += RenderChart(spec, runs, spec.id == eval_chart.id ? refs : std::vector<PublishedReturn>());
    }
  }
  // After load, measure every series as drawn and publish the result for automated checks.
  html +=
      "<pre id=\"selfcheck\"></pre>\n<script>\nwindow.addEventListener('load',()=>{const out=[];"
      "for(const svg of document.querySelectorAll('svg.chart')){for(const p of svg.querySelectorAll("
      "'path.series')){const b=p.getBBox();out.push({chart:svg.dataset.chart,run:p.dataset.run,"
      "series:p.dataset.series,points:+p.dataset.points,commands:(p.getAttribute('d').match(/[ML]/g)"
      "||[]).length,length:p.getTotalLength(),width:b.width,height:b.height});}}"
      "for(const svg of document.querySelectorAll('svg.multigoal')){for(const p of svg.querySelectorAll("
      "'path.rollout')){const b=p.getBBox();out.push({chart:'multigoal',run:svg.dataset.run,series:'rollout',"
      "points:+p.dataset.points,commands:(p.getAttribute('d').match(/[ML]/g)||[]).length,"
      "length:p.getTotalLength(),width:b.width,height:b.height});}}"
      "document.getElementById('selfcheck').textContent=JSON.stringify(out);});\n</script>\n"
      "</body></html>\n";
  return html;
}

absl::Status WriteReport(const std::vector<std::string>& run_dirs, const std::string& out_path) {
  if (run_dirs.empty()) return absl::InvalidArgumentError("no run directory given");
  std::vector<RunMetrics> runs;
  for (const std::string& dir : run_dirs) {
    auto run = ReadRunMetrics(dir);
    if (!run.ok()) return run.status();
    if (!run->video.empty()) {
      // Linked relative to the page, so that the page and the run dirs open anywhere together.
      const std::filesystem::path page_dir = std::filesystem::absolute(out_path).parent_path();
      run->video = std::filesystem::absolute(run->video).lexically_relative(page_dir).string();
    }
    runs.push_back(*std::move(run));
  }
  return WriteFileAtomically(out_path, RenderReport(runs));
}

}  // namespace meow
