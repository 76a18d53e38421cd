// File helpers: atomic writes leave the old or the new contents, and a directory lock admits one
// holder at a time (a second learner or replay on the same directory is refused by name).
#include "common/file_util.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/" + name + "_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(FileUtilTest, WriteFileAtomicallyReplacesTheWholeFile) {
  const std::string dir = TempDir("file_util_write");
  const std::string path = dir + "/f";
  ASSERT_TRUE(WriteFileAtomically(path, "first, longer contents").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(*ReadFile(path), "second");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(ReadFile(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(FileUtilTest, ADirectoryLockAdmitsOneHolder) {
  const std::string dir = TempDir("file_util_lock");
  {
    absl::StatusOr<DirectoryLock> first = DirectoryLock::Acquire(dir, "run dir");
    ASSERT_TRUE(first.ok()) << first.status();
    absl::StatusOr<DirectoryLock> second = DirectoryLock::Acquire(dir, "run dir");
    EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(second.status().message(), HasSubstr("run dir " + dir + " is in use by another process"));
    DirectoryLock moved = *std::move(first);  // still held after a move
    EXPECT_FALSE(DirectoryLock::Acquire(dir, "run dir").ok());
  }
  EXPECT_TRUE(DirectoryLock::Acquire(dir, "run dir").ok());  // released with its holder
  EXPECT_EQ(DirectoryLock::Acquire(dir + "/no/such", "run dir").status().code(), absl::StatusCode::kInternal);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace meow
