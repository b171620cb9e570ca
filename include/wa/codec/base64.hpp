// Standard base64 (RFC 4648 section 4, "+/" alphabet, '=' padding).
#pragma once

#include <string>
#include <string_view>

namespace wa {

std::string base64_encode(std::string_view in);

// Strict decoder: the length must be a multiple of 4, padding may appear only at
// the end, and no whitespace or other characters are accepted. Unused trailing
// bits must be zero so that every byte string has exactly one accepted encoding
// (peers that compare encodings textually, e.g. Sec-WebSocket-Accept, rely on it).
// On failure returns false and leaves `out` empty.
bool base64_decode(std::string_view in, std::string& out);

}  // namespace wa
