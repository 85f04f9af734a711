#include "client/error_text.h"

#include <algorithm>
#include <cstdint>

namespace idem {

namespace {

// The length of the valid UTF-8 sequence (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF) at the start of `s`, or 0.
size_t Utf8SequenceLength(absl::string_view s) {
  const auto byte = [&s](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c = byte(0);
  if (c < 0x80) return 1;
  size_t length;
  uint8_t low = 0x80, high = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    length = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    length = 3;
    if (c == 0xE0) low = 0xA0;
    if (c == 0xED) high = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    length = 4;
    if (c == 0xF0) low = 0x90;
    if (c == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < length || byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

}  // namespace

std::string ToStorableError(absl::string_view message) {
  std::string out;
  out.reserve(std::min(message.size(), kMaxErrorBytes));
  while (!message.empty()) {
    size_t length = Utf8SequenceLength(message);
    const bool valid = length > 0 && message[0] != '\0';
    if (!valid) length = 1;
    if (out.size() + length > kMaxErrorBytes) break;
    if (valid) {
      out.append(message.data(), length);
    } else {
      out.push_back('?');
    }
    message.remove_prefix(length);
  }
  return out;
}

}  // namespace idem
