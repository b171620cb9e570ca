#include "wa/validate.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

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

KeyDigest key_digest(std::string_view key) {
    KeyDigest d;
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d.data());
    return d;
}

bool key_matches(const KeyDigest& given, const KeyDigest* configured, size_t n) {
    int matched = 0;
    for (size_t i = 0; i < n; i++) matched |= CRYPTO_memcmp(given.data(), configured[i].data(), given.size()) == 0;
    return matched != 0;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    KeyDigest want = key_digest(b);
    return key_matches(key_digest(a), &want, 1);
}

}  // namespace wa
