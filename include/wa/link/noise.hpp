// Client side of WhatsApp's Noise handshake (Noise_XX_25519_AESGCM_SHA256, prologue "WA" 06 03)
// and the transport that follows it. Sans-IO: bytes in, bytes out, no sockets, no clocks or
// randomness except through the injected Keys / now() / OpenSSL's RNG.
// Crypto is OpenSSL 3 only (X25519, HKDF-SHA256, AES-256-GCM, SHA-256). The certificate chain's
// XEdDSA signatures are checked by an injected verify() (libsignal's curve_verify_signature in the
// module, a fake or a Node check in tests).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace wa::noise {

// Largest frame body a 3-byte length can carry (whatsmeow rejects >= 2^24).
constexpr size_t kMaxFrame = (size_t{1} << 24) - 1;

std::string_view wa_intro();        // 57 41 06 03, sent once before the first frame
std::string_view protocol_name();   // "Noise_XX_25519_AESGCM_SHA256\0\0\0\0" (32 bytes, used directly as h)
std::string_view wa_root_public();  // WhatsApp's real certificate root key (32 raw bytes)

// ---- primitives (OpenSSL), exposed for tests and for a test responder --------------------------
std::string sha256(std::string_view data);
// HKDF-SHA256 (RFC 5869). Returns false on an OpenSSL error.
bool hkdf_sha256(std::string_view salt, std::string_view ikm, std::string_view info, size_t len, std::string& out);
// Random X25519 key pair (32 raw bytes each).
bool x25519_keypair(std::string& priv, std::string& pub);
bool x25519_public(std::string_view priv, std::string& pub);
// X25519(priv, pub); false on bad sizes or a low-order peer key (all-zero result).
bool x25519(std::string_view priv, std::string_view pub, std::string& shared);
// 12-byte IV: 8 zero bytes, then n as uint32 big-endian.
std::string iv(uint32_t n);
// AES-256-GCM with the 16-byte tag appended to the ciphertext.
bool aes_gcm_encrypt(std::string_view key, std::string_view iv12, std::string_view aad, std::string_view plain,
                     std::string& out);
bool aes_gcm_decrypt(std::string_view key, std::string_view iv12, std::string_view aad, std::string_view cipher,
                     std::string& out);
// len3 (big-endian) || body; "" if body > kMaxFrame.
std::string frame(std::string_view body);

// ---- Noise symmetric state (h, ck, k, n) ------------------------------------------------------
class SymmetricState {
public:
    SymmetricState();                    // h = ck = k = protocol_name(), n = 0
    ~SymmetricState();                   // cleanses ck and k
    SymmetricState(const SymmetricState&) = default;
    SymmetricState& operator=(const SymmetricState&) = default;
    void mix_hash(std::string_view data);  // h = SHA256(h || data)
    bool mix_key(std::string_view ikm);  // ck, k = HKDF(salt ck, ikm, "", 64); n = 0
    bool encrypt_and_hash(std::string_view plain, std::string& cipher);  // AAD h, IV(n++), then MixHash(c)
    bool decrypt_and_hash(std::string_view cipher, std::string& plain);
    // HKDF(salt ck, "", "", 64): first = out[0:32], second = out[32:64].
    bool split(std::string& first, std::string& second) const;
    const std::string& h() const { return h_; }
    const std::string& ck() const { return ck_; }
    uint32_t n() const { return n_; }

private:
    std::string h_, ck_, k_;
    uint32_t n_ = 0;
    bool n_exhausted_ = false;
};

// ---- protobuf messages ------------------------------------------------------------------------
// HandshakeMessage{clientHello=2{ephemeral=1,static=2,payload=3}, serverHello=3{same},
//                  clientFinish=4{static=1,payload=2}}
struct HandshakePart {
    bool present = false;
    std::string ephemeral, static_key, payload;  // clientFinish has no ephemeral
};
struct HandshakeMessage {
    HandshakePart client_hello, server_hello, client_finish;
};
std::string encode_handshake(const HandshakeMessage& m);
bool decode_handshake(std::string_view bytes, HandshakeMessage& m);

// CertChain.NoiseCertificate.Details
struct CertDetails {
    uint32_t serial = 0, issuer_serial = 0;
    std::string key;
    uint64_t not_before = 0, not_after = 0;
};
std::string encode_details(const CertDetails& d);
bool decode_details(std::string_view bytes, CertDetails& d);
// CertChain{leaf=1, intermediate=2}, each NoiseCertificate{details=1, signature=2}
struct CertChain {
    std::string leaf_details, leaf_signature, intermediate_details, intermediate_signature;
};
std::string encode_cert_chain(const CertChain& c);
bool decode_cert_chain(std::string_view bytes, CertChain& c);

// XEdDSA verification of a 64-byte signature `sig` over `msg` with the 32-byte raw key `pub`.
using Verify = std::function<bool(std::string_view pub, std::string_view msg, std::string_view sig)>;

// whatsmeow's rules: leaf and intermediate both have details and signature; both signatures 64 bytes; intermediate verifies with root; intermediate
// issuerSerial 0 and key 32 bytes; leaf verifies with the intermediate key; notBefore <= now <=
// notAfter for both; leaf.issuerSerial == intermediate.serial; leaf.key == server static (constant
// time). Returns false with *err set on the first violation.
bool check_cert_chain(std::string_view chain_bytes, std::string_view root_pub, std::string_view server_static,
                      int64_t now, const Verify& verify, std::string* err);

// ---- 3-byte-length frame reassembly -------------------------------------------------------------
class FrameReader {
public:
    explicit FrameReader(size_t max_frame = kMaxFrame) : max_(max_frame) {}
    void feed(std::string_view bytes) { buf_.append(bytes.data(), bytes.size()); }
    // true and the body in `out` when a whole frame is buffered; false if more bytes are needed
    // or the frame is larger than max_frame (then error() is true and stays true).
    bool next(std::string& out);
    bool error() const { return error_; }
    size_t buffered() const { return buf_.size() - pos_; }
    std::string take_buffered();  // the unconsumed bytes (to hand over to a Transport)

private:
    std::string buf_;
    size_t pos_ = 0;
    size_t max_;
    bool error_ = false;
};

// ---- transport (after the handshake) ----------------------------------------------------------
class Transport {
public:
    Transport() = default;  // unusable (every call fails) until assigned from Handshake::split()
    Transport(std::string send_key, std::string recv_key, size_t max_frame = kMaxFrame);
    ~Transport();  // cleanses the keys
    Transport(const Transport&) = default;
    Transport(Transport&&) = default;
    Transport& operator=(const Transport&) = default;
    Transport& operator=(Transport&&) = default;
    bool valid() const { return send_key_.size() == 32 && recv_key_.size() == 32; }

    // len3 || AES-GCM(send key, IV(send counter++), AAD "", plaintext). "" on failure (too large,
    // counter exhausted, no keys).
    std::string encrypt_frame(std::string_view plaintext);

    void feed(std::string_view bytes) { reader_.feed(bytes); }
    enum Result { NeedMore, Frame, Error };
    // Frame: `plaintext` holds the next decrypted frame. Error is sticky (fail the connection).
    Result next(std::string& plaintext, std::string* err = nullptr);

    uint32_t send_counter() const { return send_n_; }
    uint32_t recv_counter() const { return recv_n_; }

private:
    std::string send_key_, recv_key_;
    uint32_t send_n_ = 0, recv_n_ = 0;
    bool send_exhausted_ = false, failed_ = false;
    FrameReader reader_;
};

// ---- client handshake -------------------------------------------------------------------------
class Handshake {
public:
    struct Keys {
        std::string noise_priv, noise_pub;  // static "noise key", 32 raw bytes; pub derived if empty
        std::string eph_priv, eph_pub;      // ephemeral; generated if empty (tests inject fixed ones)
    };
    Handshake(Keys keys, std::string root_pub32, Verify verify, std::function<int64_t()> now);
    ~Handshake();  // cleanses the private keys
    Handshake(Handshake&&) = default;
    Handshake& operator=(Handshake&&) = default;
    Handshake(const Handshake&) = delete;
    Handshake& operator=(const Handshake&) = delete;

    // intro || len3 || HandshakeMessage{clientHello{ephemeral}}. "" on failure or if called twice.
    std::string client_hello_frame();
    // The server's HandshakeMessage (frame body). Decrypts the server static and the certificate
    // chain and checks the chain. False with *err on any failure (the handshake is then dead).
    bool on_server_hello(std::string_view handshake_message, std::string* err = nullptr);
    // len3 || HandshakeMessage{clientFinish{static, payload}}; "" on failure / wrong state.
    std::string client_finish_frame(std::string_view client_payload);
    // Transport keys; valid() only after client_finish_frame() succeeded.
    Transport split(size_t max_frame = kMaxFrame);

    const std::string& server_static() const { return server_static_; }
    const std::string& ephemeral_public() const { return keys_.eph_pub; }
    const std::string& noise_public() const { return keys_.noise_pub; }
    const std::string& handshake_hash() const { return ss_.h(); }

private:
    enum State { Start, HelloSent, ServerHelloDone, Finished, Split, Failed } state_ = Start;
    Keys keys_;
    std::string root_;
    Verify verify_;
    std::function<int64_t()> now_;
    SymmetricState ss_;
    std::string server_eph_, server_static_;
    bool fail(std::string* err, const char* msg);
};

}  // namespace wa::noise
