#include "actor/render/record_episode.h"

#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actor/render/video_writer.h"
#include "common/status.h"

namespace meow {

absl::StatusOr<RecordedEpisode> RecordEpisode(ActingPolicy& policy, Env& env, uint64_t seed, bool deterministic,
                                              const EpisodeVideo& video, std::optional<at::Generator> generator,
                                              int64_t max_steps) {
  auto* mujoco = dynamic_cast<MujocoEnv*>(&env);
  if (mujoco == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("videos are drawn for the MuJoCo tasks; ", env.spec().name,
                     " has no renderer (for MultiGoal-v0, `meow report` draws the rollouts over the value)"));
  }
  const auto start = std::chrono::steady_clock::now();
  MEOW_ASSIGN_OR_RETURN(std::unique_ptr<MujocoRenderer> renderer, MujocoRenderer::Create(*mujoco, video.render));
  VideoOptions options;
  options.path = video.path;
  options.width = video.render.width;
  options.height = video.render.height;
  options.fps = 1.0 / mujoco->dt();
  options.ffmpeg = video.ffmpeg;
  MEOW_ASSIGN_OR_RETURN(std::unique_ptr<VideoWriter> writer, VideoWriter::Open(options));
  std::vector<uint8_t> frame;
  double policy_seconds = 0;
  auto last = std::chrono::steady_clock::now();
  auto episode = RunEpisode(policy, env, seed, deterministic, max_steps, generator, [&](const Env&) -> absl::Status {
    const auto now = std::chrono::steady_clock::now();
    policy_seconds += std::chrono::duration<double>(now - last).count();  // acting and stepping
    MEOW_RETURN_IF_ERROR(renderer->Render(*mujoco, frame));
    MEOW_RETURN_IF_ERROR(writer->Write(frame));
    last = std::chrono::steady_clock::now();
    return absl::OkStatus();
  });
  if (!episode.ok()) return episode.status();
  MEOW_RETURN_IF_ERROR(writer->Close());
  RecordedEpisode recorded;
  recorded.episode = *std::move(episode);
  recorded.frames = writer->frames();
  recorded.fps = options.fps;
  recorded.render_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() - policy_seconds;
  return recorded;
}

}  // namespace meow
