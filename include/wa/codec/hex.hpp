// Lowercase hexadecimal of bytes (spool and media file names, SHA-256 digests in commands).
#pragma once

#include <string>
#include <string_view>

namespace wa {

inline std::string hex_lower(std::string_view bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) out += digits[c >> 4], out += digits[c & 15];
    return out;
}

}  // namespace wa
