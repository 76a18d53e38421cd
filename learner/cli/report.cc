// `meow report`: learning curves of one or more run directories as one HTML page.
#include "learner/report.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "learner/cli/cli.h"

ABSL_FLAG(std::vector<std::string>, run_dirs, {}, "Run directories to overlay, comma-separated (default: --run_dir).");
ABSL_FLAG(std::string, out, "",
          "Output file: meow report's HTML page (default: RUN_DIR/report.html); meow dataset export's HDF5 file.");

namespace meow::cli {
namespace {

int RunReport(const GrpcSecurity& /*security*/) {
  std::vector<std::string> dirs = absl::GetFlag(FLAGS_run_dirs);
  if (dirs.empty() && !absl::GetFlag(FLAGS_run_dir).empty()) dirs.push_back(absl::GetFlag(FLAGS_run_dir));
  if (dirs.empty()) return Fail(absl::InvalidArgumentError("meow report needs --run_dir=DIR or --run_dirs=A,B"));
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) out = dirs.size() == 1 ? dirs[0] + "/report.html" : "report.html";
  if (absl::Status s = WriteReport(dirs, out); !s.ok()) return Fail(s);
  absl::PrintF("wrote %s (open it in a browser)\n", out);
  return 0;
}

}  // namespace

const Subcommand& ReportCommand() {
  static const Subcommand command{"report",
                                  "meow report --run_dir=DIR   or   meow report --run_dirs=A,B,... --out=FILE",
                                  "learning curves of one or more runs as one HTML page.",
                                  {"run_dir", "run_dirs", "out"},
                                  /*speaks_grpc=*/false,
                                  RunReport};
  return command;
}

}  // namespace meow::cli
