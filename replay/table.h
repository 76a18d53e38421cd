// The replay table: a fixed-capacity FIFO of transitions in columns (TransitionStore), an item
// selector that draws samples (uniform by default), a rate limiter, and exactly-once bookkeeping
// per actor.
//
// Exactly once: each actor's batches carry increasing sequence numbers; the table remembers the
// highest one stored per actor and acknowledges a batch at or below it as a duplicate without
// storing it. An actor writes through one insert session at a time: opening a session supersedes
// the previous one, whose later inserts fail with ABORTED, so a dead stream that is still being
// drained cannot interleave with its replacement.
//
// Blocking: Insert and Sample wait while the rate limiter says the other side is behind, up to a
// timeout (DEADLINE_EXCEEDED) and while the optional Cancellation is not cancelled (CANCELLED);
// Close() wakes every waiter (CANCELLED) and refuses later calls.
//
// Persistence hooks: an InsertLog (owned elsewhere) receives every stored batch under the table's
// mutex, in storage order, so a log replay rebuilds the same FIFO; Copy() takes a consistent
// in-memory copy for a snapshot, running a callback (log rotation) atomically with it.
//
// Thread-safe. Lock order: Cancellation::mu_ -> Table::mu_ -> the InsertLog's mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tensor_codec.h"
#include "proto/replay.pb.h"
#include "proto/transition.pb.h"
#include "replay/cancellation.h"
#include "replay/rate_limiter.h"
#include "replay/selectors/interface.h"
#include "replay/transition_store.h"

namespace meow {

struct TableConfig {
  int obs_dim = 0;
  int action_dim = 0;
  int64_t capacity = 1'000'000;     // rows; the oldest is evicted beyond this
  int64_t max_batch_rows = 4096;    // rows per inserted batch; more: RESOURCE_EXHAUSTED
  int64_t max_sample_rows = 65536;  // rows per sampled batch; more: RESOURCE_EXHAUSTED
  // Actor ids the table keeps state for (about 100 bytes each); a session for a new id beyond
  // this is refused with RESOURCE_EXHAUSTED. Ids that never stored a batch are forgotten when
  // their stream ends.
  int64_t max_actors = 100000;
  RateLimiterConfig rate_limiter;
  uint64_t seed = 1;  // of the sampling generator
  // A fixed dataset (offline training): rows come only through LoadRows; OpenSession and Insert
  // are refused with FAILED_PRECONDITION naming `read_only_source`.
  bool read_only = false;
  std::string read_only_source;

  absl::Status Validate() const;
};

// Receives every batch the table stores, under the table's mutex and in storage order. The
// implementation must not block on I/O there (buffer, then write elsewhere). Thread-safe.
class InsertLog {
 public:
  virtual ~InsertLog() = default;
  // Records `batch` and returns its position; positions increase by one per record.
  virtual uint64_t Append(const proto::TransitionBatch& batch) = 0;
  // Position of the newest record appended so far (0 when none).
  virtual uint64_t position() const = 0;
  // A write error that lost records, OK when none. Once set, the table stores nothing more.
  virtual absl::Status status() const = 0;
};

struct InsertSession {
  uint64_t token = 0;                 // pass to Insert
  uint64_t last_sequence_number = 0;  // highest stored for the actor, 0 when none
};

struct InsertResult {
  bool duplicate = false;
  // Log position the acknowledgement must wait for (0 without a log). For a duplicate it is the
  // newest position, since the original may still be in flight to disk.
  uint64_t log_position = 0;
};

struct TableCounters {
  int64_t inserted_batches = 0;
  int64_t inserted_transitions = 0;
  int64_t sampled_batches = 0;
  int64_t sampled_transitions = 0;
};

// A consistent copy of everything a snapshot holds.
struct TableState {
  TransitionStore store;                               // rows; iterate oldest first with SlotOfAge
  std::map<uint64_t, uint64_t> last_sequence_numbers;  // per actor
  TableCounters counters;
  absl::Duration lock_time;  // how long Copy held the table's lock
};

class Table {
 public:
  // Validates `config`. `selector` may be null for uniform sampling.
  static absl::StatusOr<std::unique_ptr<Table>> Create(const TableConfig& config,
                                                       std::unique_ptr<ItemSelector> selector);
  static absl::StatusOr<std::unique_ptr<Table>> Create(const TableConfig& config) { return Create(config, nullptr); }

  ~Table();
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  // Opens a session for `actor_id`, superseding its previous one. `incarnation` identifies the
  // client (an inserter draws it once): while a session of another non-zero incarnation is open
  // (not yet closed with CloseSession), ALREADY_EXISTS: two live actors share the id and would
  // drop each other's batches as duplicates. UNAVAILABLE once the log has failed: the last stored
  // sequence number would then overstate what is on disk, and a client must keep its
  // unacknowledged batches for a restarted replay. RESOURCE_EXHAUSTED for a new id when
  // max_actors ids are tracked.
  absl::StatusOr<InsertSession> OpenSession(uint64_t actor_id, uint64_t incarnation = 0) ABSL_LOCKS_EXCLUDED(mu_);
  // Marks the session's stream ended (a later incarnation may then take the id over); the id is
  // forgotten when it never stored a batch. A superseded session's close changes nothing.
  void CloseSession(uint64_t actor_id, uint64_t session) ABSL_LOCKS_EXCLUDED(mu_);
  // Training is over (the learner finished at `env_steps`) or, with false, running again. While
  // it is over, Insert ends with OUT_OF_RANGE, also for inserts already waiting on the limiter.
  void SetTrainingDone(bool done, int64_t env_steps) ABSL_LOCKS_EXCLUDED(mu_);

  // Stores `batch` unless its (actor_id, sequence_number) is already stored. `session` is a token
  // from OpenSession for the batch's actor, or 0 to skip the session check. Errors:
  // INVALID_ARGUMENT / RESOURCE_EXHAUSTED for a bad batch (nothing stored; names the field),
  // ABORTED when the session was superseded, DEADLINE_EXCEEDED when the rate limiter kept it
  // waiting past `timeout`, CANCELLED on cancellation or Close(), UNAVAILABLE once the log has
  // failed, OUT_OF_RANGE once training is over (SetTrainingDone).
  absl::StatusOr<InsertResult> Insert(const proto::TransitionBatch& batch, uint64_t session, absl::Duration timeout,
                                      Cancellation* cancel) ABSL_LOCKS_EXCLUDED(mu_);

  // Draws `rows` rows uniformly with replacement (through the selector) once the rate limiter
  // allows. Errors: INVALID_ARGUMENT for rows < 1, RESOURCE_EXHAUSTED above max_sample_rows,
  // DEADLINE_EXCEEDED, CANCELLED as for Insert.
  absl::StatusOr<proto::SampleResponse> Sample(int64_t rows, absl::Duration timeout, Cancellation* cancel)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Wakes every waiter with CANCELLED and refuses later inserts and samples. Idempotent.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  // Sets where stored batches are logged (null: nowhere). `log` must outlive the table or be
  // replaced first.
  void SetLog(InsertLog* log) ABSL_LOCKS_EXCLUDED(mu_);

  // Copies the table's contents; `while_locked` runs under the same lock, so nothing is stored
  // between the copy and it (the persistence layer rotates its log there).
  TableState Copy(absl::FunctionRef<void()> while_locked) ABSL_LOCKS_EXCLUDED(mu_);

  // Recovery, before serving. LoadRows appends validated rows as they are (no session, limiter
  // or duplicate check); per_row_versions holds one int64 per row, or null to use the view's
  // policy_version. LoadState sets the per-actor sequence numbers and counters from a snapshot.
  // Replay re-applies a logged batch: stored unless a duplicate (returns whether stored), without
  // touching the log or the limiter's waits.
  absl::Status LoadRows(const TransitionBatchView& rows, const void* per_row_versions) ABSL_LOCKS_EXCLUDED(mu_);
  void LoadState(const std::map<uint64_t, uint64_t>& last_sequence_numbers, const TableCounters& counters)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<bool> Replay(const proto::TransitionBatch& batch) ABSL_LOCKS_EXCLUDED(mu_);
  // After replaying logs: samples are not logged, so the limiter's count of them stops at the
  // snapshot while every logged insert is counted again. Puts the limiter in the middle of its
  // band, where inserts and samples both go on at once.
  void CenterRateLimiter() ABSL_LOCKS_EXCLUDED(mu_);

  proto::TableInfo Info() const ABSL_LOCKS_EXCLUDED(mu_);
  proto::RateLimiterInfo RateLimiterState() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // Highest sequence number stored for `actor_id`, 0 when none.
  uint64_t LastSequenceNumber(uint64_t actor_id) const ABSL_LOCKS_EXCLUDED(mu_);

  const TableConfig& config() const { return config_; }
  const BatchSignature& signature() const { return signature_; }

 private:
  Table(const TableConfig& config, std::unique_ptr<ItemSelector> selector);

  // Stores validated rows and updates the selector, limiter and counters.
  void StoreLocked(const TransitionBatchView& rows, const void* per_row_versions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE naming the log's error, OK without a log or error.
  absl::Status LogStatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReadOnlyError() const;  // for OpenSession and Insert on a read-only table

  const TableConfig config_;
  const BatchSignature signature_;
  std::atomic<int64_t> rejected_batches_{0};

  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  TransitionStore store_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<ItemSelector> selector_ ABSL_GUARDED_BY(mu_);
  RateLimiter limiter_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  struct ActorState {
    uint64_t last_sequence_number = 0;
    uint64_t session = 0;      // token of the newest session, 0 when none opened since start
    uint64_t incarnation = 0;  // of the newest session's client
    bool open = false;         // the newest session's stream has not ended
  };
  std::map<uint64_t, ActorState> actors_ ABSL_GUARDED_BY(mu_);
  uint64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
  TableCounters counters_ ABSL_GUARDED_BY(mu_);
  int64_t duplicate_batches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t newest_policy_version_ ABSL_GUARDED_BY(mu_) = 0;  // highest version stored
  bool training_done_ ABSL_GUARDED_BY(mu_) = false;
  int64_t done_env_steps_ ABSL_GUARDED_BY(mu_) = 0;
  InsertLog* log_ ABSL_GUARDED_BY(mu_) = nullptr;  // not owned; may be null
};

}  // namespace meow
