// ToStorableError: a work status message made acceptable as Fail's `error`
// (valid UTF-8, no NUL bytes, at most 64 KiB), so that recording a failure
// is never refused because of what the message happens to contain.
//
// Example:
//   fail.set_error(ToStorableError(work_status.message()));
//
// Thread safety: a pure function.
#ifndef IDEM_CLIENT_ERROR_TEXT_H_
#define IDEM_CLIENT_ERROR_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace idem {

// The contract's limit on FailRequest.error.
inline constexpr size_t kMaxErrorBytes = 64 * 1024;

// Replaces NUL bytes and bytes that are not part of a valid UTF-8 sequence
// with '?', and cuts the text at a character boundary to kMaxErrorBytes.
std::string ToStorableError(absl::string_view message);

}  // namespace idem

#endif  // IDEM_CLIENT_ERROR_TEXT_H_
