// An evaluation episode as a video: `meow eval --video` and the evaluator's `--video_every`.
// Not thread-safe: uses the policy and environment exclusively while it runs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <ATen/core/Generator.h>

#include "absl/status/statusor.h"
#include "actor/acting_policy.h"
#include "actor/evaluate.h"
#include "actor/render/renderer.h"

namespace meow {

struct EpisodeVideo {
  std::string path;       // the .mp4 to write
  RenderSettings render;  // frame size and quality
  std::string ffmpeg = "ffmpeg";
};

struct RecordedEpisode {
  EpisodeResult episode;
  int64_t frames = 0;         // the reset state and one per step
  double fps = 0;             // the task's real-time rate, 1 / dt
  double render_seconds = 0;  // wall time spent drawing and encoding
};

// Runs one episode from Reset(seed) like RunEpisode and writes it to `video.path`, one frame per
// state at the task's real-time rate. InvalidArgument when `env` is not a MuJoCo task (MultiGoal-v0
// is drawn as a figure by `meow report` instead); the renderer's and the writer's errors.
absl::StatusOr<RecordedEpisode> RecordEpisode(ActingPolicy& policy, Env& env, uint64_t seed, bool deterministic,
                                              const EpisodeVideo& video,
                                              std::optional<at::Generator> generator = std::nullopt,
                                              int64_t max_steps = 0);

}  // namespace meow
