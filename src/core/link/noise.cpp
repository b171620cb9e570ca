#include "wa/link/noise.hpp"

#include "WAProto.pb.h"
#include "wa/codec/pbcheck.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>
#include <utility>

namespace wa::noise {

namespace {

const unsigned char kIntroBytes[4] = {0x57, 0x41, 0x06, 0x03};
const char kName[] = "Noise_XX_25519_AESGCM_SHA256\0\0\0\0";  // 28 + 4 NUL (+ the literal's own NUL)
const unsigned char kRoot[32] = {0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7,
                                 0x1e, 0xbe, 0x51, 0x64, 0x37, 0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69,
                                 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b};

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* u8(std::string& s) { return reinterpret_cast<unsigned char*>(&s[0]); }

struct PkeyFree {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
    void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct KdfFree {
    void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxFree {
    void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

void wipe(std::string& s) {
    if (!s.empty()) OPENSSL_cleanse(&s[0], s.size());
    s.clear();
}

bool aes_gcm(bool enc, std::string_view key, std::string_view iv12, std::string_view aad, std::string_view in,
             std::string& out) {
    if (key.size() != 32 || iv12.size() != 12) return false;
    if (!enc && in.size() < 16) return false;
    if (in.size() > static_cast<size_t>(INT32_MAX) - 32 || aad.size() > static_cast<size_t>(INT32_MAX)) return false;
    std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
    if (!ctx) return false;
    size_t body = enc ? in.size() : in.size() - 16;
    std::string res(body + (enc ? 16 : 0), '\0');
    int len = 0;
    // fetched once: OpenSSL 3 would look EVP_aes_256_gcm() up in its providers for every frame
    static const EVP_CIPHER* const gcm = [] {
        EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
        return c ? static_cast<const EVP_CIPHER*>(c) : EVP_aes_256_gcm();
    }();
    if (EVP_CipherInit_ex(ctx.get(), gcm, nullptr, nullptr, nullptr, enc ? 1 : 0) != 1) return false;
    if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) != 1) return false;
    if (EVP_CipherInit_ex(ctx.get(), nullptr, nullptr, u8(key), u8(iv12), enc ? 1 : 0) != 1) return false;
    if (!aad.empty() && EVP_CipherUpdate(ctx.get(), nullptr, &len, u8(aad), static_cast<int>(aad.size())) != 1)
        return false;
    if (body > 0 && EVP_CipherUpdate(ctx.get(), u8(res), &len, u8(in), static_cast<int>(body)) != 1) return false;
    if (!enc) {
        std::string tag(in.substr(body));
        if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, 16, &tag[0]) != 1) return false;
    }
    unsigned char fin[16];
    if (EVP_CipherFinal_ex(ctx.get(), fin, &len) != 1) {
        wipe(res);
        return false;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, &res[body]) != 1) return false;
    out = std::move(res);
    return true;
}

}  // namespace

std::string_view wa_intro() { return std::string_view(reinterpret_cast<const char*>(kIntroBytes), 4); }
std::string_view protocol_name() { return std::string_view(kName, 32); }
std::string_view wa_root_public() { return std::string_view(reinterpret_cast<const char*>(kRoot), 32); }

std::string sha256(std::string_view data) {
    std::string out(32, '\0');
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), u8(out), &len, EVP_sha256(), nullptr) != 1 || len != 32) return "";
    return out;
}

bool hkdf_sha256(std::string_view salt, std::string_view ikm, std::string_view info, size_t len, std::string& out) {
    if (len == 0 || len > 255 * 32) return false;
    std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
    if (!kdf) return false;
    std::unique_ptr<EVP_KDF_CTX, KdfCtxFree> ctx(EVP_KDF_CTX_new(kdf.get()));
    if (!ctx) return false;
    // OpenSSL wants non-NULL pointers even for empty strings.
    static char empty[1] = {0};
    char digest[] = "SHA256";
    auto ptr = [](std::string_view s) { return s.empty() ? static_cast<void*>(empty) : const_cast<char*>(s.data()); };
    OSSL_PARAM params[5];
    size_t i = 0;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ptr(ikm), ikm.size());
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, ptr(salt), salt.size());
    params[i++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, ptr(info), info.size());
    params[i] = OSSL_PARAM_construct_end();
    std::string res(len, '\0');
    if (EVP_KDF_derive(ctx.get(), u8(res), len, params) != 1) return false;
    out = std::move(res);
    return true;
}

bool x25519_keypair(std::string& priv, std::string& pub) {
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
    if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) return false;
    EVP_PKEY* raw = nullptr;
    if (EVP_PKEY_keygen(ctx.get(), &raw) != 1) return false;
    Pkey key(raw);
    std::string a(32, '\0'), b(32, '\0');
    size_t la = 32, lb = 32;
    if (EVP_PKEY_get_raw_private_key(key.get(), u8(a), &la) != 1 || la != 32) return false;
    if (EVP_PKEY_get_raw_public_key(key.get(), u8(b), &lb) != 1 || lb != 32) return false;
    priv = std::move(a);
    pub = std::move(b);
    return true;
}

bool x25519_public(std::string_view priv, std::string& pub) {
    if (priv.size() != 32) return false;
    Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, u8(priv), 32));
    if (!key) return false;
    std::string b(32, '\0');
    size_t lb = 32;
    if (EVP_PKEY_get_raw_public_key(key.get(), u8(b), &lb) != 1 || lb != 32) return false;
    pub = std::move(b);
    return true;
}

bool x25519(std::string_view priv, std::string_view pub, std::string& shared) {
    if (priv.size() != 32 || pub.size() != 32) return false;
    Pkey me(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, u8(priv), 32));
    Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, u8(pub), 32));
    if (!me || !peer) return false;
    std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(me.get(), nullptr));
    if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1)
        return false;
    std::string out(32, '\0');
    size_t len = 32;
    // OpenSSL fails the derivation when the result is all zeros (low-order peer key).
    if (EVP_PKEY_derive(ctx.get(), u8(out), &len) != 1 || len != 32) return false;
    shared = std::move(out);
    return true;
}

std::string iv(uint32_t n) {
    std::string v(12, '\0');
    v[8] = static_cast<char>(n >> 24);
    v[9] = static_cast<char>(n >> 16);
    v[10] = static_cast<char>(n >> 8);
    v[11] = static_cast<char>(n);
    return v;
}

bool aes_gcm_encrypt(std::string_view key, std::string_view iv12, std::string_view aad, std::string_view plain,
                     std::string& out) {
    return aes_gcm(true, key, iv12, aad, plain, out);
}

bool aes_gcm_decrypt(std::string_view key, std::string_view iv12, std::string_view aad, std::string_view cipher,
                     std::string& out) {
    return aes_gcm(false, key, iv12, aad, cipher, out);
}

std::string frame(std::string_view body) {
    if (body.size() > kMaxFrame) return "";
    std::string f;
    f.reserve(3 + body.size());
    f.push_back(static_cast<char>(body.size() >> 16));
    f.push_back(static_cast<char>(body.size() >> 8));
    f.push_back(static_cast<char>(body.size()));
    f.append(body.data(), body.size());
    return f;
}

// ---- SymmetricState -----------------------------------------------------------------------------

SymmetricState::SymmetricState() : h_(protocol_name()), ck_(protocol_name()), k_(protocol_name()) {}

SymmetricState::~SymmetricState() {
    wipe(ck_);
    wipe(k_);
}

void SymmetricState::mix_hash(std::string_view data) {
    std::string buf;
    buf.reserve(h_.size() + data.size());
    buf.append(h_).append(data.data(), data.size());
    h_ = sha256(buf);
}

bool SymmetricState::mix_key(std::string_view ikm) {
    std::string out;
    if (!hkdf_sha256(ck_, ikm, "", 64, out)) return false;
    ck_.assign(out, 0, 32);
    k_.assign(out, 32, 32);
    wipe(out);
    n_ = 0;
    n_exhausted_ = false;
    return true;
}

bool SymmetricState::encrypt_and_hash(std::string_view plain, std::string& cipher) {
    if (n_exhausted_) return false;
    std::string c;
    if (!aes_gcm_encrypt(k_, iv(n_), h_, plain, c)) return false;
    if (++n_ == 0) n_exhausted_ = true;
    mix_hash(c);
    cipher = std::move(c);
    return true;
}

bool SymmetricState::decrypt_and_hash(std::string_view cipher, std::string& plain) {
    if (n_exhausted_) return false;
    std::string p;
    if (!aes_gcm_decrypt(k_, iv(n_), h_, cipher, p)) return false;
    if (++n_ == 0) n_exhausted_ = true;
    mix_hash(cipher);
    plain = std::move(p);
    return true;
}

bool SymmetricState::split(std::string& first, std::string& second) const {
    std::string out;
    if (!hkdf_sha256(ck_, "", "", 64, out)) return false;
    first.assign(out, 0, 32);
    second.assign(out, 32, 32);
    wipe(out);
    return true;
}

// ---- protobuf (waproto:: classes generated from proto/WAProto.proto) -------------------------------
// Absent and empty are the same here, as in the hand-written codec these replaced: encoders skip empty
// fields (Baileys never sets them), decoders report empty. Every decoder also refuses a field it reads
// that arrives with the wrong wire type (see wa/pbcheck.hpp).

namespace {

// ClientHello and ServerHello: ephemeral = 1, static = 2, payload = 3.
template <class Hello>
void put_hello(const HandshakePart& p, Hello& h) {
    if (!p.ephemeral.empty()) h.set_ephemeral(p.ephemeral);
    if (!p.static_key.empty()) h.set_static_(p.static_key);
    if (!p.payload.empty()) h.set_payload(p.payload);
}

template <class Hello>
bool get_hello(const Hello& h, HandshakePart& p) {
    p = {true, h.ephemeral(), h.static_(), h.payload()};
    return pb::no_mistyped(h.unknown_fields(), {1, 2, 3});
}

// ClientFinish: static = 1, payload = 2 (no ephemeral).
void put_finish(const HandshakePart& p, waproto::HandshakeMessage::ClientFinish& f) {
    if (!p.static_key.empty()) f.set_static_(p.static_key);
    if (!p.payload.empty()) f.set_payload(p.payload);
}

bool get_finish(const waproto::HandshakeMessage::ClientFinish& f, HandshakePart& p) {
    p = {true, "", f.static_(), f.payload()};
    return pb::no_mistyped(f.unknown_fields(), {1, 2});
}

void put_cert(std::string_view details, std::string_view sig, waproto::CertChain::NoiseCertificate& c) {
    if (!details.empty()) c.set_details(details.data(), details.size());
    if (!sig.empty()) c.set_signature(sig.data(), sig.size());
}

bool get_cert(const waproto::CertChain::NoiseCertificate& c, std::string& details, std::string& sig) {
    details = c.details();
    sig = c.signature();
    return pb::no_mistyped(c.unknown_fields(), {1, 2});
}

}  // namespace

std::string encode_handshake(const HandshakeMessage& m) {
    waproto::HandshakeMessage w;
    if (m.client_hello.present) put_hello(m.client_hello, *w.mutable_clienthello());
    if (m.server_hello.present) put_hello(m.server_hello, *w.mutable_serverhello());
    if (m.client_finish.present) put_finish(m.client_finish, *w.mutable_clientfinish());
    return w.SerializeAsString();
}

bool decode_handshake(std::string_view bytes, HandshakeMessage& m) {
    m = HandshakeMessage{};
    waproto::HandshakeMessage w;
    if (!pb::parse(bytes, w) || !pb::no_mistyped(w.unknown_fields(), {2, 3, 4})) return false;
    // a part that occurs twice is merged, as protobuf does
    if (w.has_clienthello() && !get_hello(w.clienthello(), m.client_hello)) return false;
    if (w.has_serverhello() && !get_hello(w.serverhello(), m.server_hello)) return false;
    if (w.has_clientfinish() && !get_finish(w.clientfinish(), m.client_finish)) return false;
    return true;
}

std::string encode_details(const CertDetails& d) {
    waproto::CertChain::NoiseCertificate::Details w;
    if (d.serial) w.set_serial(d.serial);
    if (d.issuer_serial) w.set_issuerserial(d.issuer_serial);
    if (!d.key.empty()) w.set_key(d.key);
    if (d.not_before) w.set_notbefore(d.not_before);
    if (d.not_after) w.set_notafter(d.not_after);
    return w.SerializeAsString();
}

bool decode_details(std::string_view bytes, CertDetails& d) {
    d = CertDetails{};
    waproto::CertChain::NoiseCertificate::Details w;
    // serial and issuerSerial are uint32: protobuf would truncate a larger value, so look first
    if (!pb::varints_fit_u32(bytes, {1, 2}) || !pb::parse(bytes, w)) return false;
    if (!pb::no_mistyped(w.unknown_fields(), {1, 2, 3, 4, 5})) return false;
    d = {w.serial(), w.issuerserial(), w.key(), w.notbefore(), w.notafter()};
    return true;  // unknown fields are ignored
}

std::string encode_cert_chain(const CertChain& c) {
    waproto::CertChain w;
    // both certificates are always written, even empty, as by the encoder this replaced
    put_cert(c.leaf_details, c.leaf_signature, *w.mutable_leaf());
    put_cert(c.intermediate_details, c.intermediate_signature, *w.mutable_intermediate());
    return w.SerializeAsString();
}

bool decode_cert_chain(std::string_view bytes, CertChain& c) {
    c = CertChain{};
    waproto::CertChain w;
    if (!pb::parse(bytes, w) || !pb::no_mistyped(w.unknown_fields(), {1, 2})) return false;
    // a missing certificate decodes as empty parts: check_cert_chain refuses those
    return get_cert(w.leaf(), c.leaf_details, c.leaf_signature) &&
           get_cert(w.intermediate(), c.intermediate_details, c.intermediate_signature);
}

// ---- certificate chain ----------------------------------------------------------------------------

namespace {
bool set_err(std::string* err, const char* msg) {
    if (err) *err = msg;
    return false;
}
bool within(const CertDetails& d, int64_t now) {
    if (now < 0) return false;
    uint64_t t = static_cast<uint64_t>(now);
    return d.not_before <= t && t <= d.not_after;
}
}  // namespace

bool check_cert_chain(std::string_view chain_bytes, std::string_view root_pub, std::string_view server_static,
                      int64_t now, const Verify& verify, std::string* err) {
    CertChain c;
    if (!decode_cert_chain(chain_bytes, c)) return set_err(err, "malformed certificate chain");
    if (!verify) return set_err(err, "no signature verifier");
    if (root_pub.size() != 32) return set_err(err, "bad root key");
    if (c.leaf_details.empty() || c.leaf_signature.empty() || c.intermediate_details.empty() ||
        c.intermediate_signature.empty())
        return set_err(err, "missing parts of the certificate chain");
    if (c.intermediate_signature.size() != 64) return set_err(err, "intermediate signature is not 64 bytes");
    if (c.leaf_signature.size() != 64) return set_err(err, "leaf signature is not 64 bytes");
    if (!verify(root_pub, c.intermediate_details, c.intermediate_signature))
        return set_err(err, "intermediate certificate signature invalid");
    CertDetails inter, leaf;
    if (!decode_details(c.intermediate_details, inter)) return set_err(err, "malformed intermediate details");
    if (inter.issuer_serial != 0) return set_err(err, "intermediate issuer serial is not 0");
    if (inter.key.size() != 32) return set_err(err, "intermediate key is not 32 bytes");
    if (!verify(inter.key, c.leaf_details, c.leaf_signature))
        return set_err(err, "leaf certificate signature invalid");
    if (!decode_details(c.leaf_details, leaf)) return set_err(err, "malformed leaf details");
    if (!within(inter, now)) return set_err(err, "intermediate certificate not valid now");
    if (!within(leaf, now)) return set_err(err, "leaf certificate not valid now");
    if (leaf.issuer_serial != inter.serial) return set_err(err, "leaf issuer serial != intermediate serial");
    if (leaf.key.size() != 32 || server_static.size() != 32 ||
        CRYPTO_memcmp(leaf.key.data(), server_static.data(), 32) != 0)
        return set_err(err, "leaf key != server static key");
    return true;
}

// ---- FrameReader ------------------------------------------------------------------------------------

bool FrameReader::next(std::string& out) {
    if (error_) return false;
    if (buf_.size() - pos_ < 3) return false;
    const unsigned char* p = u8(std::string_view(buf_)) + pos_;
    size_t len = (size_t{p[0]} << 16) | (size_t{p[1]} << 8) | p[2];
    if (len > max_) {
        error_ = true;
        return false;
    }
    if (buf_.size() - pos_ - 3 < len) return false;
    out.assign(buf_, pos_ + 3, len);
    pos_ += 3 + len;
    if (pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
    } else if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    return true;
}

std::string FrameReader::take_buffered() {
    std::string rest = buf_.substr(pos_);
    buf_.clear();
    pos_ = 0;
    return rest;
}

// ---- Transport -----------------------------------------------------------------------------------------

Transport::Transport(std::string send_key, std::string recv_key, size_t max_frame)
    : send_key_(std::move(send_key)), recv_key_(std::move(recv_key)), reader_(max_frame) {}

Transport::~Transport() {
    wipe(send_key_);
    wipe(recv_key_);
}

std::string Transport::encrypt_frame(std::string_view plaintext) {
    if (!valid() || send_exhausted_ || plaintext.size() > kMaxFrame - 16) return "";
    std::string c;
    if (!aes_gcm_encrypt(send_key_, iv(send_n_), "", plaintext, c)) return "";
    if (++send_n_ == 0) send_exhausted_ = true;  // never reuse an IV
    return frame(c);
}

Transport::Result Transport::next(std::string& plaintext, std::string* err) {
    if (failed_) return set_err(err, "transport failed earlier"), Error;
    if (!valid()) return failed_ = true, set_err(err, "transport has no keys"), Error;
    std::string body;
    if (!reader_.next(body)) {
        if (reader_.error()) return failed_ = true, set_err(err, "frame too large"), Error;
        return NeedMore;
    }
    if (recv_n_ == UINT32_MAX) return failed_ = true, set_err(err, "receive counter exhausted"), Error;
    if (!aes_gcm_decrypt(recv_key_, iv(recv_n_), "", body, plaintext))
        return failed_ = true, set_err(err, "frame decryption failed"), Error;
    recv_n_++;
    return Frame;
}

// ---- Handshake ------------------------------------------------------------------------------------------

Handshake::Handshake(Keys keys, std::string root_pub32, Verify verify, std::function<int64_t()> now)
    : keys_(std::move(keys)), root_(std::move(root_pub32)), verify_(std::move(verify)), now_(std::move(now)) {
    // Missing keys are made here, so the public halves are known at once; a failure (or keys of
    // the wrong size) makes client_hello_frame() fail.
    bool ok = true;
    if (keys_.eph_priv.empty()) ok = x25519_keypair(keys_.eph_priv, keys_.eph_pub);
    if (ok && keys_.eph_pub.empty()) ok = x25519_public(keys_.eph_priv, keys_.eph_pub);
    if (ok && keys_.noise_pub.empty()) ok = x25519_public(keys_.noise_priv, keys_.noise_pub);
    if (!ok || keys_.eph_priv.size() != 32 || keys_.eph_pub.size() != 32 || keys_.noise_priv.size() != 32 ||
        keys_.noise_pub.size() != 32)
        state_ = Failed;
}

Handshake::~Handshake() {
    wipe(keys_.eph_priv);
    wipe(keys_.noise_priv);
}

bool Handshake::fail(std::string* err, const char* msg) {
    state_ = Failed;
    return set_err(err, msg);
}

std::string Handshake::client_hello_frame() {
    if (state_ != Start) return "";
    ss_.mix_hash(wa_intro());
    ss_.mix_hash(keys_.eph_pub);
    HandshakeMessage m;
    m.client_hello.present = true;
    m.client_hello.ephemeral = keys_.eph_pub;
    state_ = HelloSent;
    std::string out(wa_intro());
    out += frame(encode_handshake(m));
    return out;
}

bool Handshake::on_server_hello(std::string_view bytes, std::string* err) {
    if (state_ != HelloSent) return fail(err, "server hello in the wrong state");
    HandshakeMessage m;
    if (!decode_handshake(bytes, m) || !m.server_hello.present) return fail(err, "malformed server hello");
    const HandshakePart& sh = m.server_hello;
    if (sh.ephemeral.size() != 32) return fail(err, "server ephemeral is not 32 bytes");
    if (sh.static_key.size() != 48) return fail(err, "server static is not 48 bytes");
    if (sh.payload.size() < 16) return fail(err, "server hello payload too short");
    server_eph_ = sh.ephemeral;
    std::string dh;
    ss_.mix_hash(server_eph_);
    if (!x25519(keys_.eph_priv, server_eph_, dh) || !ss_.mix_key(dh)) return fail(err, "DH(e, re) failed");
    std::string stat;
    if (!ss_.decrypt_and_hash(sh.static_key, stat)) return fail(err, "cannot decrypt server static");
    if (stat.size() != 32) return fail(err, "server static is not 32 bytes");
    if (!x25519(keys_.eph_priv, stat, dh) || !ss_.mix_key(dh)) return fail(err, "DH(e, rs) failed");
    wipe(dh);
    std::string cert;
    if (!ss_.decrypt_and_hash(sh.payload, cert)) return fail(err, "cannot decrypt certificate chain");
    int64_t now = now_ ? now_() : -1;
    std::string why;
    if (!check_cert_chain(cert, root_, stat, now, verify_, &why)) {
        state_ = Failed;
        if (err) *err = why;
        return false;
    }
    server_static_ = std::move(stat);
    state_ = ServerHelloDone;
    return true;
}

std::string Handshake::client_finish_frame(std::string_view client_payload) {
    if (state_ != ServerHelloDone) return "";
    HandshakeMessage m;
    m.client_finish.present = true;
    // static at counter 1: the certificate chain used 0 and there was no MixKey since
    std::string dh;
    if (!ss_.encrypt_and_hash(keys_.noise_pub, m.client_finish.static_key) ||
        !x25519(keys_.noise_priv, server_eph_, dh) || !ss_.mix_key(dh) ||
        !ss_.encrypt_and_hash(client_payload, m.client_finish.payload))
        return fail(nullptr, ""), "";
    wipe(dh);
    std::string f = frame(encode_handshake(m));
    if (f.empty()) return fail(nullptr, ""), "";
    state_ = Finished;
    return f;
}

Transport Handshake::split(size_t max_frame) {
    if (state_ != Finished) return Transport();
    std::string c2s, s2c;
    if (!ss_.split(c2s, s2c)) return fail(nullptr, ""), Transport();
    state_ = Split;
    wipe(keys_.eph_priv);
    return Transport(std::move(c2s), std::move(s2c), max_frame);
}

}  // namespace wa::noise
