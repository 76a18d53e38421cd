#include "actor/render/video_writer.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"

extern char** environ;

namespace meow {
namespace {

// The program to run: `name` itself when it holds a '/', else the first executable of that name
// in PATH; empty when there is none.
std::string FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "" : path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// The last lines ffmpeg printed (its log file), for error messages.
std::string LogTail(const std::string& log_path) {
  auto text = ReadFile(log_path);
  if (!text.ok() || text->empty()) return "(ffmpeg printed nothing)";
  std::string tail = *text;
  if (tail.size() > 600) tail = "..." + tail.substr(tail.size() - 600);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  return tail;
}

}  // namespace

absl::Status CheckFfmpeg(const std::string& program) {
  if (!FindProgram(program).empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("video: ffmpeg not found (looked for \"", program,
                   "\"); install Debian's ffmpeg package (deploy/setup.sh installs it)"));
}

absl::Status CheckFrameSize(absl::string_view what, int pixels) {
  if (pixels >= 16 && pixels <= 4096 && pixels % 2 == 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, pixels, ": expected an even number of pixels in [16, 4096] (H.264 in yuv420p needs even sizes)"));
}

absl::Status VideoOptions::Validate() const {
  if (path.empty()) return absl::InvalidArgumentError("video: no output file given");
  MEOW_RETURN_IF_ERROR(CheckFrameSize("video width ", width));
  MEOW_RETURN_IF_ERROR(CheckFrameSize("video height ", height));
  if (!(fps > 0 && fps <= 1000))
    return absl::InvalidArgumentError(absl::StrCat("video fps ", fps, ": expected (0, 1000]"));
  if (crf < 0 || crf > 51) return absl::InvalidArgumentError(absl::StrCat("video crf ", crf, ": expected 0 to 51"));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VideoWriter>> VideoWriter::Open(const VideoOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  namespace fs = std::filesystem;
  const fs::path out(options.path);
  const fs::path folder = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    return absl::NotFoundError(absl::StrCat("video ", options.path, ": folder ", folder.string(), " does not exist"));
  }
  if (access(folder.c_str(), W_OK) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("video ", options.path, ": cannot write to folder ",
                                                    folder.string(), " (", std::strerror(errno), ")"));
  }
  const std::string program = FindProgram(options.ffmpeg);
  if (program.empty()) return CheckFfmpeg(options.ffmpeg);  // its error names the package
  std::unique_ptr<VideoWriter> writer(new VideoWriter(options));
  writer->partial_path_ = (folder / absl::StrCat(".", out.filename().string(), ".partial")).string();
  writer->log_path_ = writer->partial_path_ + ".log";

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError(absl::StrCat("video: pipe: ", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, writer->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  const std::string size = absl::StrCat(options.width, "x", options.height);
  const std::string rate = absl::StrCat(options.fps);
  const std::string crf = absl::StrCat(options.crf);
  std::vector<std::string> args = {program,
                                   "-hide_banner",
                                   "-loglevel",
                                   "error",
                                   "-y",
                                   "-f",
                                   "rawvideo",
                                   "-pix_fmt",
                                   "rgb24",
                                   "-video_size",
                                   size,
                                   "-framerate",
                                   rate,
                                   "-i",
                                   "pipe:0",
                                   "-an",
                                   "-c:v",
                                   "libx264",
                                   "-preset",
                                   "veryfast",
                                   "-crf",
                                   crf,
                                   "-pix_fmt",
                                   "yuv420p",
                                   "-movflags",
                                   "+faststart",
                                   "-f",
                                   "mp4",
                                   writer->partial_path_};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int spawned = posix_spawn(&writer->child_, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[0]);
  if (spawned != 0) {
    close(fds[1]);
    writer->child_ = -1;
    return absl::FailedPreconditionError(absl::StrCat("video: cannot start ", program, ": ", std::strerror(spawned)));
  }
  writer->pipe_ = fds[1];
  return writer;
}

VideoWriter::~VideoWriter() {
  if (closed_) return;
  if (pipe_ >= 0) close(pipe_);
  if (child_ > 0) {
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
  }
  unlink(partial_path_.c_str());
  unlink(log_path_.c_str());
}

absl::Status VideoWriter::Write(const std::vector<uint8_t>& rgb) {
  if (closed_ || pipe_ < 0) return absl::FailedPreconditionError("video: already closed");
  const size_t expected = static_cast<size_t>(options_.width) * options_.height * 3;
  if (rgb.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("video frame of ", rgb.size(), " bytes; ", options_.width, "x",
                                                   options_.height, " RGB takes ", expected));
  }
  // A stopped ffmpeg must not kill this process with SIGPIPE: block it on this thread while
  // writing, and take back a SIGPIPE the write raised.
  sigset_t pipe_signal, old;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &old);
  size_t done = 0;
  int error = 0;
  while (done < rgb.size()) {
    const ssize_t n = write(pipe_, rgb.data() + done, rgb.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (error == EPIPE) {
    const timespec zero = {0, 0};
    sigtimedwait(&pipe_signal, nullptr, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (error != 0) {
    close(pipe_);
    pipe_ = -1;
    absl::Status finished = Finish();
    return absl::InternalError(absl::StrCat("video ", options_.path, ": ffmpeg stopped taking frames (",
                                            std::strerror(error),
                                            "): ", finished.ok() ? "it exited early" : finished.message()));
  }
  ++frames_;
  return absl::OkStatus();
}

absl::Status VideoWriter::Finish() {
  int status = 0;
  while (waitpid(child_, &status, 0) < 0 && errno == EINTR) {
  }
  child_ = -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  const std::string how =
      WIFEXITED(status) ? absl::StrCat("exit status ", WEXITSTATUS(status)) : absl::StrCat("signal ", WTERMSIG(status));
  return absl::InternalError(absl::StrCat("ffmpeg failed (", how, "): ", LogTail(log_path_)));
}

absl::Status VideoWriter::Close() {
  if (closed_) return absl::OkStatus();
  if (pipe_ >= 0) {
    close(pipe_);
    pipe_ = -1;
  }
  absl::Status status = child_ > 0 ? Finish() : absl::InternalError("ffmpeg is not running");
  closed_ = true;
  if (status.ok() && frames_ == 0) status = absl::FailedPreconditionError("video: no frames were written");
  if (status.ok() && std::rename(partial_path_.c_str(), options_.path.c_str()) != 0) {
    status = absl::InternalError(
        absl::StrCat("video: cannot move ", partial_path_, " to ", options_.path, ": ", std::strerror(errno)));
  }
  if (!status.ok()) {
    unlink(partial_path_.c_str());
    status = absl::Status(status.code(), absl::StrCat("video ", options_.path, ": ", status.message()));
  }
  unlink(log_path_.c_str());
  return status;
}

}  // namespace meow
