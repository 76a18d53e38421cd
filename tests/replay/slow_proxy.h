// SlowToAnswerProxy: a TCP proxy for tests of how clients connect.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meow {

// A TCP proxy on 127.0.0.1 that holds every connection `delay` before it connects it through to
// `target_port`: a peer that is slow to answer a new connection (a loaded machine, a far network,
// a TLS handshake over several round trips).
class SlowToAnswerProxy {
 public:
  SlowToAnswerProxy(int target_port, absl::Duration delay) : target_port_(target_port), delay_(delay) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listener_, 16);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~SlowToAnswerProxy() {
    stop_ = true;
    acceptor_.join();
    for (auto& t : connections_) t.join();
    close(listener_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int client = accept(listener_, nullptr, nullptr);
      if (client < 0) continue;
      connections_.emplace_back([this, client] { Pump(client); });
    }
  }
  void Pump(int client) {
    const absl::Time until = absl::Now() + delay_;
    while (!stop_ && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
    const int server = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(target_port_);
    if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      char buffer[1 << 14];
      bool open = true;
      while (!stop_ && open) {
        pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
        if (poll(fds, 2, 50) <= 0) continue;
        for (int i = 0; i < 2 && open; ++i) {
          if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
          open = n > 0 && write(fds[1 - i].fd, buffer, n) == n;
        }
      }
    }
    close(server);
    close(client);
  }

  const int target_port_;
  const absl::Duration delay_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> connections_;  // grows in AcceptLoop only, joined after it ends
};

}  // namespace meow
