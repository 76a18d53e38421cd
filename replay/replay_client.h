// Client side of the replay service: the actor's streaming inserter, the learner's prefetching
// sampler, and one-shot Info / Checkpoint calls. Several replay addresses act as shards: an
// actor's batches all go to one shard (chosen by actor id), the sampler draws from every shard.
// Every RPC has a deadline; every blocking call takes a timeout; Close() cancels. TLS and token
// come with each config (or call). Implemented in replay_client.cc (inserter, one-shot calls) and
// replay_sampler.cc.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_channel.h"
#include "common/grpc_security.h"
#include "common/tensor_codec.h"
#include "grpcpp/grpcpp.h"
#include "proto/replay.grpc.pb.h"

namespace meow {

struct ReplayInserterConfig {
  std::vector<std::string> addresses;  // replay shards; this actor uses addresses[actor_id % n]
  uint64_t actor_id = 0;
  int max_unacked_batches = 64;  // queued + sent but not yet acknowledged
  // How long replay may answer ALREADY_EXISTS (another live inserter holds this actor id) before
  // that is fatal. A killed actor's stream can outlive it until replay notices (its keepalive,
  // about 40 s, or at once when the kernel resets the connection), so a restarted actor retries
  // meanwhile; two live actors with one id get the error after this long.
  absl::Duration id_conflict_grace = absl::Seconds(60);
  // Deadline of each Insert stream; when it passes the inserter reconnects and resends.
  absl::Duration stream_deadline = absl::Minutes(30);
  Backoff backoff;
  int64_t max_message_bytes = 64 << 20;
  GrpcSecurity security;  // TLS and token (default: plaintext, no token)

  absl::Status Validate() const;
};

// Streams one actor's transition batches to replay. Insert() queues a batch (numbering it) and
// returns; a background thread keeps an Insert stream open, sends queued batches and drops each
// once acknowledged. When the stream breaks (UNAVAILABLE, a replay restart, a deadline) it
// reconnects with backoff and resends every unacknowledged batch; replay stores each
// (actor_id, sequence_number) once, so nothing is lost or duplicated. On connecting, replay says
// which sequence number it last stored for this actor, so a restarted actor continues after it.
// Use one inserter per actor id.
//
// Thread-safe. Owns its threads and channel.
class ReplayInserter {
 public:
  struct Stats {
    int64_t unacked = 0;                 // queued or in flight
    int64_t sent = 0;                    // batch writes, resends included
    int64_t acked = 0;                   // acknowledged (stored, or duplicates)
    int64_t duplicates = 0;              // acknowledged as already stored
    int64_t rejected = 0;                // refused as bad input (not retried)
    int64_t connects = 0;                // streams opened
    uint64_t next_sequence_number = 0;   // 0 until the first connection
    uint64_t acked_sequence_number = 0;  // highest acknowledged: replay holds every batch up to it
    std::string last_error;              // the last stream error, if any
  };

  static absl::StatusOr<std::unique_ptr<ReplayInserter>> Create(const ReplayInserterConfig& config);
  ~ReplayInserter();  // Close()
  ReplayInserter(const ReplayInserter&) = delete;
  ReplayInserter& operator=(const ReplayInserter&) = delete;

  // Queues `batch` (its actor_id and sequence_number are set here). Blocks while
  // max_unacked_batches are unacknowledged, up to `timeout` (DEADLINE_EXCEEDED). Bad batches are
  // refused here with INVALID_ARGUMENT naming the field (shapes are checked against the table's
  // signature once connected); too large ones with RESOURCE_EXHAUSTED. After a fatal stream error
  // (e.g. UNIMPLEMENTED, FAILED_PRECONDITION) returns that error; after Close, CANCELLED.
  absl::Status Insert(proto::TransitionBatch batch, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until every queued batch is acknowledged. Returns the first refusal replay reported
  // since the last Flush (INVALID_ARGUMENT / RESOURCE_EXHAUSTED naming the batch), a fatal error,
  // or DEADLINE_EXCEEDED.
  absl::Status Flush(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Stops sending; unacknowledged batches are dropped. Idempotent.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  const std::string& address() const { return address_; }

 private:
  struct Entry {
    uint64_t sequence_number = 0;                   // 0: not numbered yet (first connection pending)
    std::shared_ptr<proto::InsertRequest> request;  // shared with a Write in progress
  };

  explicit ReplayInserter(const ReplayInserterConfig& config);
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // One stream's life: open, resend, send, until it breaks or Close(). Returns its status.
  grpc::Status RunStream() ABSL_LOCKS_EXCLUDED(mu_);
  void NumberLocked(Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ReplayInserterConfig config_;
  const std::string address_;
  // Used by the background thread only (replaced after UNAVAILABLE).
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::ReplayService::Stub> stub_;

  mutable absl::Mutex mu_;
  std::deque<Entry> entries_ ABSL_GUARDED_BY(mu_);          // unacknowledged, oldest first
  size_t sent_ ABSL_GUARDED_BY(mu_) = 0;                    // entries at the front sent on the current stream
  uint64_t next_sequence_number_ ABSL_GUARDED_BY(mu_) = 0;  // 0 until the first connection
  BatchSignature signature_ ABSL_GUARDED_BY(mu_);           // the table's, once connected
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;                // the current stream's reader has ended
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // current stream; not owned
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  absl::Status refusal_ ABSL_GUARDED_BY(mu_);  // first refusal since the last Flush
  Stats stats_ ABSL_GUARDED_BY(mu_);
  const uint64_t incarnation_;  // random, non-zero: this inserter's streams (see OpenInsertStream)
  std::thread thread_;
};

struct ReplaySamplerConfig {
  std::vector<std::string> addresses;  // replay shards, all sampled
  int batch_size = 256;
  int prefetch_batches = 8;  // per shard: batches requested ahead of Next()
  // Deadline of each Sample stream; when it passes the sampler reconnects.
  absl::Duration stream_deadline = absl::Minutes(30);
  Backoff backoff;
  int64_t max_message_bytes = 64 << 20;
  GrpcSecurity security;  // TLS and token (default: plaintext, no token)
  // Expected signature; a negative size accepts what the table has.
  int obs_dim = -1;
  int action_dim = -1;

  absl::Status Validate() const;
};

// Keeps sampled batches prefetched for the learner. One thread per shard holds a Sample stream
// with credit for prefetch_batches batches, decodes (and validates) each batch into a queue, and
// reconnects with backoff when the stream breaks. Next() keeps the shards' shares equal: it takes
// from the ready shard that has handed out the fewest batches, so a slow shard is not sampled
// less, and a shard that was away catches up by at most prefetch_batches batches (no burst); a
// shard with nothing to give (down, or below its minimum size) never stalls the others. It then
// returns credit to that shard.
//
// Thread-safe. Owns its threads and channels.
class ReplaySampler {
 public:
  struct Stats {
    int64_t received = 0;  // batches decoded
    int64_t returned = 0;  // batches handed out by Next
    int64_t connects = 0;  // streams opened, all shards
    std::string last_error;
  };

  static absl::StatusOr<std::unique_ptr<ReplaySampler>> Create(const ReplaySamplerConfig& config);
  ~ReplaySampler();  // Close()
  ReplaySampler(const ReplaySampler&) = delete;
  ReplaySampler& operator=(const ReplaySampler&) = delete;

  // The next batch; DEADLINE_EXCEEDED after `timeout` (e.g. replay still below its minimum size),
  // CANCELLED after Close, or a fatal error (e.g. a batch size replay refuses).
  absl::StatusOr<SampledBatch> Next(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Shard {
    std::string address;
    // Used by the shard's thread only (replaced after UNAVAILABLE).
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<proto::ReplayService::Stub> stub;
    std::deque<SampledBatch> ready;          // guarded by the sampler's mu_
    int credit_owed = 0;                     // credit to return, guarded by mu_
    int64_t taken = 0;                       // batches handed out by Next (clamped), guarded by mu_
    grpc::ClientContext* context = nullptr;  // current stream, guarded by mu_
    // Serialises credit writes with the stream's teardown; `stream` is guarded by it.
    absl::Mutex write_mu;
    grpc::ClientReaderWriter<proto::SampleRequest, proto::SampleResponse>* stream = nullptr;
    std::thread thread;
  };

  explicit ReplaySampler(const ReplaySamplerConfig& config);
  void Run(Shard* shard) ABSL_LOCKS_EXCLUDED(mu_);
  grpc::Status RunStream(Shard* shard) ABSL_LOCKS_EXCLUDED(mu_);

  const ReplaySamplerConfig config_;
  std::vector<std::unique_ptr<Shard>> shards_;

  // Never held while taking a Shard::write_mu, nor taken under one.
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  size_t next_shard_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

// One-shot calls, each on a channel of its own with `security`'s TLS and token (the default:
// plaintext, no token).

// One Info call with deadline `timeout`.
absl::StatusOr<proto::InfoResponse> GetReplayInfo(const std::string& address, absl::Duration timeout,
                                                  const GrpcSecurity& security = {});

// Waits up to `timeout` until every replay shard answers, and checks that it holds transitions
// of the given sizes. UNAVAILABLE naming the address when one cannot be reached.
absl::Status WaitForReplay(const std::vector<std::string>& addresses, int obs_dim, int action_dim,
                           absl::Duration timeout, const GrpcSecurity& security = {});

// Tells the server that training is over (or running again); see ReplayService.SetTrainingDone.
absl::Status SetReplayTrainingDone(const std::string& address, bool done, int64_t env_steps, absl::Duration timeout,
                                   const GrpcSecurity& security = {});
// Asks the server to write a snapshot now.
absl::StatusOr<proto::CheckpointResponse> CheckpointReplay(const std::string& address, absl::Duration timeout,
                                                           const GrpcSecurity& security = {});

}  // namespace meow
