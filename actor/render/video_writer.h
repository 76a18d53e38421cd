// H.264 MP4 files from raw RGB frames, encoded by an ffmpeg child process fed through a pipe.
//
// Why a child process and not libav* linked in: the encoder's crashes, leaks and licence stay out
// of `meow`; Debian's ffmpeg package is all it needs; the same command line reproduces any file by
// hand. Frames go down the pipe as rgb24 (width x height x 3 bytes, top row first) and ffmpeg
// writes libx264 in yuv420p with the index at the front (+faststart), the MP4 every browser and
// player opens. The file appears under its name only when Close() succeeded: ffmpeg writes to
// a temporary name beside it, renamed at the end, so a failed or interrupted encoding leaves no
// half-written video behind.
// Not thread-safe: one thread writes a video at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meow {

// InvalidArgument "<what><pixels>: expected an even number of pixels in [16, 4096] ..." unless
// `pixels` is a frame size H.264 in yuv420p can take (even) and a renderer can draw.
absl::Status CheckFrameSize(absl::string_view what, int pixels);

// OK when `program` (a path, or a name looked up in PATH) can be run; FailedPrecondition naming
// the package to install otherwise.
absl::Status CheckFfmpeg(const std::string& program);

struct VideoOptions {
  std::string path;  // the .mp4 file to write (its folder must exist and be writable)
  int width = 480;   // even, in [16, 4096]
  int height = 480;
  double fps = 30;                // frames per second of the video, in (0, 1000]
  int crf = 23;                   // x264 quality: 0 (lossless) to 51; 23 is its default
  std::string ffmpeg = "ffmpeg";  // the program: a path, or a name looked up in PATH

  absl::Status Validate() const;
};

class VideoWriter {
 public:
  // Checks the options, the output folder and the ffmpeg program, then starts ffmpeg.
  // InvalidArgument for bad sizes or rates, PermissionDenied / NotFound for the output folder,
  // FailedPrecondition when ffmpeg cannot be found (naming the package to install).
  static absl::StatusOr<std::unique_ptr<VideoWriter>> Open(const VideoOptions& options);
  ~VideoWriter();  // without Close(): stops ffmpeg and removes the partial file
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  // One frame of width x height x 3 bytes. InvalidArgument for another size; Internal with
  // ffmpeg's own message when it stopped.
  absl::Status Write(const std::vector<uint8_t>& rgb);
  // Ends the stream, waits for ffmpeg and moves the file into place. Internal with ffmpeg's
  // message when it failed. Idempotent.
  absl::Status Close();

  int64_t frames() const { return frames_; }

 private:
  explicit VideoWriter(VideoOptions options) : options_(std::move(options)) {}
  // Waits for ffmpeg; its exit status as an error with the last lines it printed.
  absl::Status Finish();

  VideoOptions options_;
  std::string partial_path_;
  std::string log_path_;
  pid_t child_ = -1;
  int pipe_ = -1;
  int64_t frames_ = 0;
  bool closed_ = false;
};

}  // namespace meow
