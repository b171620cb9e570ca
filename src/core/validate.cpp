#include "wa/validate.hpp"

#include <openssl/crypto.h>

#include <cstddef>

namespace wa {

bool valid_org_id(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    // Walk max(len) bytes so that the work done does not depend on where the
    // strings differ; bytes past the shorter string are compared against a
    // fixed filler and the length mismatch is folded in at the end.
    size_t n = a.size() > b.size() ? a.size() : b.size();
    unsigned char diff = 0;
    static const unsigned char zero = 0;
    for (size_t i = 0; i < n; i += 1) {
        const unsigned char* pa = i < a.size() ? reinterpret_cast<const unsigned char*>(a.data() + i) : &zero;
        const unsigned char* pb = i < b.size() ? reinterpret_cast<const unsigned char*>(b.data() + i) : &zero;
        // CRYPTO_memcmp per byte keeps the compiler from turning the loop into an
        // early-exit memcmp.
        diff |= static_cast<unsigned char>(CRYPTO_memcmp(pa, pb, 1) != 0);
    }
    return diff == 0 && a.size() == b.size();
}

}  // namespace wa
