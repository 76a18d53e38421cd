// A replay server as a separate process for the crash tests. Flags (all --name=value):
//   --dir        persistence directory (required)
//   --port       port on 127.0.0.1 (0 = any free one)
//   --port_file  written (atomically) with the bound port once serving
//   --capacity   table rows (default 1000000)
//   --fsync      1: acknowledge after fsync (default 0)
//   --snapshot_interval_ms  periodic snapshots (default 1000, so they also happen during inserts)
// Runs until killed.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "replay/replay_server.h"

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags = {{"dir", ""},       {"port", "0"},
                                              {"port_file", ""}, {"capacity", "1000000"},
                                              {"fsync", "0"},    {"snapshot_interval_ms", "1000"}};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos || !flags.count(arg.substr(2, eq - 2))) {
      std::cerr << "unknown flag " << arg << std::endl;
      return 2;
    }
    flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
  }
  int port = 0;
  int64_t capacity = 0;
  int64_t snapshot_interval_ms = 0;
  if (flags["dir"].empty() || !absl::SimpleAtoi(flags["port"], &port) ||
      !absl::SimpleAtoi(flags["capacity"], &capacity) ||
      !absl::SimpleAtoi(flags["snapshot_interval_ms"], &snapshot_interval_ms)) {
    std::cerr << "need --dir and numeric --port, --capacity, --snapshot_interval_ms" << std::endl;
    return 2;
  }
  meow::ReplayServerConfig config;
  config.address = absl::StrCat("127.0.0.1:", port);
  config.table.obs_dim = 11;
  config.table.action_dim = 3;
  config.table.capacity = capacity;
  config.persistence.directory = flags["dir"];
  config.persistence.fsync_before_ack = flags["fsync"] == "1";
  config.persistence.snapshot_interval = absl::Milliseconds(snapshot_interval_ms);
  absl::StatusOr<std::unique_ptr<meow::ReplayServer>> server = meow::StartReplayServer(config);
  if (!server.ok()) {
    std::cerr << "replay_test_server: " << server.status() << std::endl;
    return 1;
  }
  if (!flags["port_file"].empty()) {
    absl::Status written = meow::WriteFileAtomically(flags["port_file"], absl::StrCat((*server)->port(), "\n"));
    if (!written.ok()) {
      std::cerr << "replay_test_server: " << written << std::endl;
      return 1;
    }
  }
  for (;;) pause();
}
