#include "client/backoff.h"

#include <algorithm>

namespace idem {

namespace {

absl::Duration Initial(absl::Duration initial) {
  return initial > absl::ZeroDuration() ? initial : absl::Milliseconds(1);
}

}  // namespace

Backoff::Backoff(absl::Duration initial, absl::Duration max)
    : max_(std::max(max, Initial(initial))), current_(Initial(initial)) {}

absl::Duration Backoff::Next() {
  const absl::Duration upper = std::min(current_, max_);
  current_ = std::min(current_ * 2, max_);
  return upper * absl::Uniform(random_, 0.5, 1.0);
}

}  // namespace idem
