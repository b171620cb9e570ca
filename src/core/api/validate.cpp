#include "wa/api/validate.hpp"

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

// Every API request digests its X-API-Key. OpenSSL 3's one-shot SHA256() fetches the algorithm each time
// (0.6 us here, a lock and a hash table), and an EVP context allocates on every init; the low-level functions,
// deprecated but kept by OpenSSL 3, hash on the stack (0.1 us).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
KeyDigest key_digest(std::string_view key) {
    KeyDigest d;
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, key.data(), key.size());
    SHA256_Final(d.data(), &ctx);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    return d;
}
#pragma GCC diagnostic pop

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
