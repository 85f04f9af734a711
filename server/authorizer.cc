#include "server/authorizer.h"

#include <fstream>
#include <sstream>

#include <openssl/evp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace idem {

namespace {

bool IsSha256Hex(absl::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

const absl::Status& Unauthenticated() {
  static const absl::Status* const status = new absl::Status(
      absl::UnauthenticatedError("missing or unknown credentials: send metadata "
                                 "'authorization: Bearer <token>'"));
  return *status;
}

}  // namespace

std::string Authorizer::TokenHash(absl::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(token.data(), token.size(), digest, &size, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

bool Authorizer::PrefixAllows(absl::string_view prefix, absl::string_view scope) {
  if (prefix == "*") return true;
  absl::ConsumeSuffix(&prefix, "/");
  if (prefix.empty()) return false;
  if (!absl::ConsumePrefix(&scope, prefix)) return false;
  return scope.empty() || scope[0] == '/';
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::Parse(absl::string_view text) {
  std::unique_ptr<Authorizer> authorizer(new Authorizer());
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number,
          ": want '<sha256-hex-of-token> <scope-prefix>[,<scope-prefix>...]'"));
    }
    if (!IsSha256Hex(fields[0])) {
      // Not echoed: it may be a token pasted by mistake.
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number,
          ": the first field must be the 64-digit hex SHA-256 of the token "
          "(printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1), not the token"));
    }
    std::vector<std::string>& prefixes =
        authorizer->prefixes_[absl::AsciiStrToLower(fields[0])];
    for (absl::string_view prefix : absl::StrSplit(fields[1], ',')) {
      absl::string_view trimmed = prefix;
      absl::ConsumeSuffix(&trimmed, "/");
      if (trimmed.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_number, ": empty scope prefix (use * for every scope)"));
      }
      prefixes.emplace_back(prefix);
    }
  }
  return authorizer;
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_file: cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_file: cannot read ", path));
  }
  absl::StatusOr<std::unique_ptr<Authorizer>> parsed = Parse(text.str());
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_file ", path, ": ", parsed.status().message()));
  }
  return parsed;
}

absl::Status Authorizer::Check(absl::Span<const absl::string_view> authorization,
                               absl::Span<const absl::string_view> scopes) const {
  if (authorization.size() != 1) return Unauthenticated();
  absl::string_view value = absl::StripAsciiWhitespace(authorization[0]);
  const size_t space = value.find(' ');
  if (space == absl::string_view::npos ||
      !absl::EqualsIgnoreCase(value.substr(0, space), "bearer")) {
    return Unauthenticated();
  }
  const absl::string_view token = absl::StripAsciiWhitespace(value.substr(space + 1));
  if (token.empty()) return Unauthenticated();
  const auto it = prefixes_.find(TokenHash(token));
  if (it == prefixes_.end()) return Unauthenticated();
  for (absl::string_view scope : scopes) {
    bool allowed = false;
    for (const std::string& prefix : it->second) {
      if (PrefixAllows(prefix, scope)) {
        allowed = true;
        break;
      }
    }
    if (!allowed) {
      return absl::PermissionDeniedError(absl::StrCat(
          "caller may not use scope \"", absl::CHexEscape(scope.substr(0, 200)), "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace idem
