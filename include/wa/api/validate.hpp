// Input validation shared by the HTTP API and the state directory layout.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wa {

// Organisation ids become directory names under the state dir, so only a
// conservative ASCII set is accepted: 1..64 of [A-Za-z0-9_-]. That excludes
// ".", "..", "/", NUL and any non-ASCII byte, so an id can never escape or
// alias another path.
bool valid_org_id(std::string_view s);

// API keys are compared as SHA-256 digests: both sides have the same fixed size,
// so neither the position of the first difference nor the configured key's
// length shows in the time a comparison takes. Configured keys are digested
// once, at configuration time; a request costs one digest of what it sent.
using KeyDigest = std::array<uint8_t, 32>;
KeyDigest key_digest(std::string_view key);
// True if `given` equals any of the `n` configured digests. Every one is
// compared (CRYPTO_memcmp), whichever matched.
bool key_matches(const KeyDigest& given, const KeyDigest* configured, size_t n);

// Compares two secrets in constant time with respect to their contents and
// the length of `b`: both are digested (see key_matches).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace wa
