// Key material for the WhatsApp link: Curve25519 key pairs, XEdDSA signatures, and the libsignal context
// that signs (and, for messages, encrypts) with OpenSSL as its crypto provider. Never hand-written crypto:
// X25519 is OpenSSL's, XEdDSA is libsignal-protocol-c's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

struct signal_context;

namespace wa::crypto {

// 32 raw bytes each. The private key is clamped as libsignal clamps it, so that X25519 (which clamps
// internally) and XEdDSA (which uses the scalar as is) agree on the public key.
struct KeyPair {
    std::string priv, pub;
    ~KeyPair();
};

bool random_bytes(void* out, size_t len);
std::string random_string(size_t len);  // "" on failure

// A fresh Curve25519 key pair from OpenSSL's X25519 (about 36 µs here; libsignal's own curve is ~5x slower).
bool generate_keypair(KeyPair& out);

// XEdDSA signature (64 bytes) of `msg` with the 32-byte private key; "" on failure.
std::string xeddsa_sign(std::string_view priv, std::string_view msg);

// The process-wide libsignal context with the OpenSSL provider (created on first use, helper thread only).
signal_context* signal_ctx();

// HMAC-SHA256, SHA-256 and friends for the link layer (pairing HMAC, build hash, link-code crypto).
std::string hmac_sha256(std::string_view key, std::string_view data);
std::string md5(std::string_view data);
bool pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations, size_t len, std::string& out);
// AES-256-CTR (encrypt == decrypt).
bool aes256_ctr(std::string_view key, std::string_view iv16, std::string_view in, std::string& out);
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace wa::crypto
