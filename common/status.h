// Status helpers shared by every library: early-return macros for absl::Status / absl::StatusOr.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define MEOW_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status meow_status_ = (expr);        \
    if (!meow_status_.ok()) return meow_status_; \
  } while (false)

#define MEOW_STATUS_CONCAT_INNER_(a, b) a##b
#define MEOW_STATUS_CONCAT_(a, b) MEOW_STATUS_CONCAT_INNER_(a, b)

// `MEOW_ASSIGN_OR_RETURN(auto x, StatusOrExpr());` declares/assigns x or returns the error.
#define MEOW_ASSIGN_OR_RETURN(lhs, expr) \
  MEOW_ASSIGN_OR_RETURN_IMPL_(MEOW_STATUS_CONCAT_(meow_statusor_, __LINE__), lhs, expr)
#define MEOW_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)
