#include "wa/crypto/xeddsa.hpp"

#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <cstdint>
#include <cstring>

namespace wa {

bool xeddsa_verify(std::string_view pub, std::string_view msg, std::string_view sig) {
    if (pub.size() != 32 || sig.size() != 64) return false;
    // libsignal decodes keys in their serialized Signal form: the 0x05 (DJB) type byte, then the 32 bytes.
    uint8_t serialized[33];
    serialized[0] = 0x05;
    std::memcpy(serialized + 1, pub.data(), 32);
    ec_public_key* key = nullptr;
    if (curve_decode_point(&key, serialized, sizeof serialized, nullptr) != 0 || key == nullptr) return false;
    int rc = curve_verify_signature(key, reinterpret_cast<const uint8_t*>(msg.data()), msg.size(),
                                    reinterpret_cast<const uint8_t*>(sig.data()), sig.size());
    SIGNAL_UNREF(key);
    return rc == 1;  // 0 = invalid, negative = error
}

}  // namespace wa
