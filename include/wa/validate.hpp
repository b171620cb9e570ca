// Input validation shared by the HTTP API and the state directory layout.
#pragma once

#include <string_view>

namespace wa {

// Organisation ids become directory names under the state dir, so only a
// conservative ASCII set is accepted: 1..64 of [A-Za-z0-9_-]. That excludes
// ".", "..", "/", NUL and any non-ASCII byte, so an id can never escape or
// alias another path.
bool valid_org_id(std::string_view s);

// Compares secrets (API tokens) without an early exit on the first differing
// byte. Runs over the longer of the two lengths, so timing reveals at most
// the lengths, never the position of the first mismatch; a token's length is
// not considered secret.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace wa
