// ParseHostPort: the one address parser every server, client and flag uses. Label: unit.
#include "common/address.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meow {
namespace {

using ::testing::HasSubstr;

TEST(AddressTest, HostsPortsAndTargetsAreSplitAtTheLastColon) {
  auto plain = ParseHostPort("replay-0.replay:7777");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->host, "replay-0.replay");
  EXPECT_EQ(plain->port, 7777);
  auto v6 = ParseHostPort("[::1]:0");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "[::1]");
  EXPECT_EQ(v6->port, 0);
  auto target = ParseHostPort("dns:///learner:7778");
  ASSERT_TRUE(target.ok()) << target.status();
  EXPECT_EQ(target->host, "dns:///learner");
  EXPECT_EQ(target->port, 7778);
}

TEST(AddressTest, BadAddressesSayWhatIsWrong) {
  struct Case {
    const char* address;
    const char* why;
  };
  for (const Case& c :
       {Case{"localhost", "no port"}, Case{":7777", "no host"}, Case{"", "no port"}, Case{"host:", "0 to 65535"},
        Case{"host:http", "0 to 65535"}, Case{"host:-1", "0 to 65535"}, Case{"host:65536", "0 to 65535"},
        Case{"host:99999999999999999999", "0 to 65535"}, Case{"[::1:80", "unclosed ["}}) {
    auto parsed = ParseHostPort(c.address);
    ASSERT_FALSE(parsed.ok()) << c.address;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("is not host:port")) << c.address;
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(c.why)) << c.address;
  }
  absl::Status named = ValidateAddress("replay address", "nohost");
  EXPECT_THAT(std::string(named.message()), HasSubstr("replay address \"nohost\" is not host:port"));
  EXPECT_TRUE(ValidateAddress("replay address", "127.0.0.1:1").ok());
}

}  // namespace
}  // namespace meow
