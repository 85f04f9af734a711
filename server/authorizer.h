// Authorizer: who may use which scopes (idemd --auth_file).
//
// The file has one line per caller:
//
//   # comment; blank lines are ignored
//   <sha256-hex-of-token> <scope-prefix>[,<scope-prefix>...]
//
// The first field is the lowercase or uppercase hex SHA-256 (64 digits) of
// the caller's bearer token, so the file holds no secrets; make one with
//   printf %s "$TOKEN" | sha256sum | cut -d" " -f1
// Callers send gRPC metadata `authorization: Bearer <token>`.
//
// Prefixes match whole path segments, '/' being the separator: prefix
// "tenant-a" (or, the same, "tenant-a/") allows scope "tenant-a" and every
// scope under it ("tenant-a/x", "tenant-a/x/y"), never "tenant-ab". The
// prefix "*" allows every scope. A token listed on several lines gets the
// union of their prefixes.
//
// Check() answers UNAUTHENTICATED for a missing, malformed or unknown token
// and PERMISSION_DENIED naming the first scope not allowed; messages never
// carry the token, its hash or the caller's other scopes.
//
// Thread safety: immutable after Parse(); Check() is safe from many threads.
#ifndef IDEM_SERVER_AUTHORIZER_H_
#define IDEM_SERVER_AUTHORIZER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace idem {

class Authorizer {
 public:
  // INVALID_ARGUMENT naming the line for a malformed file.
  static absl::StatusOr<std::unique_ptr<Authorizer>> Parse(absl::string_view text);
  // Reads and parses `path`; errors name the file (never its contents).
  static absl::StatusOr<std::unique_ptr<Authorizer>> LoadFile(const std::string& path);

  // `authorization`: the values of the call's "authorization" metadata (none,
  // one, or - refused - several). OK when the token is known and every scope
  // is allowed to it.
  absl::Status Check(absl::Span<const absl::string_view> authorization,
                     absl::Span<const absl::string_view> scopes) const;

  // Whether `prefix` (as written in the file) allows `scope`.
  static bool PrefixAllows(absl::string_view prefix, absl::string_view scope);

  // Lowercase hex SHA-256 of `token`.
  static std::string TokenHash(absl::string_view token);

  size_t callers() const { return prefixes_.size(); }

 private:
  Authorizer() = default;
  // Token hash (lowercase hex) -> allowed prefixes.
  std::map<std::string, std::vector<std::string>> prefixes_;
};

}  // namespace idem

#endif  // IDEM_SERVER_AUTHORIZER_H_
