#include "tests/chaos/chaos_journal.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idem::chaos {

std::string ChaosJournal::Elapsed() const {
  return absl::StrFormat("t+%.3fs", absl::ToDoubleSeconds(absl::Now() - start_));
}

void ChaosJournal::NoteAcquired(int key, int64_t token, absl::Time acquired_at) {
  absl::MutexLock lock(&mu_);
  logs_[key].acquisitions.push_back({token, acquired_at});
}

void ChaosJournal::NoteCompleted(int key, CompletedAnswer answer) {
  absl::MutexLock lock(&mu_);
  logs_[key].answers.push_back(std::move(answer));
}

void ChaosJournal::NoteCall(const char* what, absl::Duration took,
                            absl::Duration allowed) {
  absl::MutexLock lock(&mu_);
  longest_overrun_ = std::max(longest_overrun_, took - allowed);
  if (took <= allowed + kHangGrace) return;
  hangs_.fetch_add(1);
  violations_.push_back(absl::StrCat(Elapsed(), " hang: ", what, " took ", absl::FormatDuration(took),
                                     ", allowed ", absl::FormatDuration(allowed)));
}

void ChaosJournal::NoteViolation(std::string what) {
  std::string line = absl::StrCat(Elapsed(), " ", what);
  absl::MutexLock lock(&mu_);
  violations_.push_back(std::move(line));
}

void ChaosJournal::NoteShutdownBegins() {
  absl::MutexLock lock(&mu_);
  shutdowns_.push_back({absl::Now(), absl::InfiniteFuture()});
}

void ChaosJournal::NoteShutdownEnds() {
  absl::MutexLock lock(&mu_);
  if (!shutdowns_.empty()) shutdowns_.back().second = absl::Now();
}

bool ChaosJournal::DuringShutdown(absl::Time start, absl::Time end) const {
  constexpr absl::Duration kMargin = absl::Seconds(1);
  absl::MutexLock lock(&mu_);
  for (const auto& [begins, ends] : shutdowns_) {
    if (start <= ends + kMargin && end >= begins - kMargin) return true;
  }
  return false;
}

std::vector<Acquisition> ChaosJournal::Acquisitions(int key) const {
  absl::MutexLock lock(&mu_);
  return logs_[key].acquisitions;
}

std::vector<CompletedAnswer> ChaosJournal::Answers(int key) const {
  absl::MutexLock lock(&mu_);
  return logs_[key].answers;
}

std::vector<std::string> ChaosJournal::Violations() const {
  absl::MutexLock lock(&mu_);
  return violations_;
}

absl::Duration ChaosJournal::longest_overrun() const {
  absl::MutexLock lock(&mu_);
  return longest_overrun_;
}

}  // namespace idem::chaos
