#include "wa/crypto/keys.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <pthread.h>

#include <cstring>

#include "wa/link/noise.hpp"

namespace wa::crypto {

KeyPair::~KeyPair() {
    if (!priv.empty()) OPENSSL_cleanse(&priv[0], priv.size());
}

namespace {

// Small requests (a message id, a padding length, a WebSocket mask: ~4 per message sent) are served from a block
// of OpenSSL's output: each RAND_bytes call cost a getpid() (OpenSSL's fork check) and a DRBG round, 3 % of the
// helper. Bytes are wiped as they are handed out, so the block only ever holds bytes nobody has seen; a forked
// child starts with an empty block (pthread_atfork), so parent and child never share one.
struct RandomBlock {
    unsigned char bytes[4096];
    size_t pos = sizeof bytes;  // empty
};
thread_local RandomBlock t_block;
void forget_block_in_child() { t_block.pos = sizeof t_block.bytes; }
const int g_atfork = pthread_atfork(nullptr, nullptr, forget_block_in_child);
constexpr size_t kBlockedMax = 16;  // keys, salts and nonces (32 bytes and more) come from OpenSSL directly

}  // namespace

bool random_bytes(void* out, size_t len) {
    if (len == 0) return true;
    if (len > kBlockedMax || g_atfork != 0) return RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(len)) == 1;
    RandomBlock& b = t_block;
    if (sizeof b.bytes - b.pos < len) {
        if (RAND_bytes(b.bytes, static_cast<int>(sizeof b.bytes)) != 1) return false;
        b.pos = 0;
    }
    std::memcpy(out, b.bytes + b.pos, len);
    OPENSSL_cleanse(b.bytes + b.pos, len);
    b.pos += len;
    return true;
}

std::string random_string(size_t len) {
    std::string s(len, '\0');
    if (!random_bytes(&s[0], len)) return {};
    return s;
}

bool generate_keypair(KeyPair& out) {
    std::string priv = random_string(32);
    if (priv.size() != 32) return false;
    // Curve25519 clamping (libsignal's curve_generate_private_key does the same).
    priv[0] = static_cast<char>(static_cast<uint8_t>(priv[0]) & 248);
    priv[31] = static_cast<char>((static_cast<uint8_t>(priv[31]) & 127) | 64);
    std::string pub;
    if (!noise::x25519_public(priv, pub)) return false;
    out.priv = std::move(priv);
    out.pub = std::move(pub);
    return true;
}

std::string xeddsa_sign(std::string_view priv, std::string_view msg) {
    if (priv.size() != 32) return {};
    ec_private_key* key = nullptr;
    if (curve_decode_private_point(&key, reinterpret_cast<const uint8_t*>(priv.data()), 32, signal_ctx()) != 0)
        return {};
    signal_buffer* sig = nullptr;
    int rc = curve_calculate_signature(signal_ctx(), &sig, key, reinterpret_cast<const uint8_t*>(msg.data()),
                                       msg.size());
    SIGNAL_UNREF(key);
    std::string out;
    if (rc == 0 && sig) out.assign(reinterpret_cast<const char*>(signal_buffer_data(sig)), signal_buffer_len(sig));
    signal_buffer_free(sig);
    return out.size() == 64 ? out : std::string();
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
              data.size(), md, &len))
        return {};
    return std::string(reinterpret_cast<char*>(md), len);
}

std::string md5(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr)) return {};
    return std::string(reinterpret_cast<char*>(md), len);
}

bool pbkdf2_sha256(std::string_view password, std::string_view salt, int iterations, size_t len, std::string& out) {
    out.assign(len, '\0');
    return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                             reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()),
                             iterations, EVP_sha256(), static_cast<int>(len),
                             reinterpret_cast<unsigned char*>(&out[0])) == 1;
}

static bool aes_run(const EVP_CIPHER* cipher, bool encrypt, std::string_view key, std::string_view iv,
                    std::string_view in, std::string& out) {
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return false;
    out.assign(in.size() + 32, '\0');
    int n1 = 0, n2 = 0;
    bool ok = EVP_CipherInit_ex(ctx, cipher, nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                                reinterpret_cast<const unsigned char*>(iv.data()), encrypt ? 1 : 0) == 1 &&
              EVP_CipherUpdate(ctx, reinterpret_cast<unsigned char*>(&out[0]), &n1,
                               reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size())) == 1 &&
              EVP_CipherFinal_ex(ctx, reinterpret_cast<unsigned char*>(&out[0]) + n1, &n2) == 1;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        out.clear();
        return false;
    }
    out.resize(static_cast<size_t>(n1 + n2));
    return true;
}

bool aes256_ctr(std::string_view key, std::string_view iv16, std::string_view in, std::string& out) {
    if (key.size() != 32 || iv16.size() != 16) return false;
    return aes_run(EVP_aes_256_ctr(), true, key, iv16, in, out);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---- libsignal crypto provider on OpenSSL ---------------------------------------------------------------

namespace {

int provider_random(uint8_t* data, size_t len, void*) { return random_bytes(data, len) ? 0 : SG_ERR_UNKNOWN; }

// The HMAC-SHA256 context every hmac_init copies. Fetching "HMAC" and then "SHA256" from OpenSSL's providers on
// each call (five times per Signal message) cost more than the MACs: 6 % of the helper's CPU in bench/send.pl.
EVP_MAC_CTX* hmac_sha256_prototype() {
    static EVP_MAC_CTX* const proto = [] {
        EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
        EVP_MAC_CTX* c = mac ? EVP_MAC_CTX_new(mac) : nullptr;
        EVP_MAC_free(mac);
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
        if (c && EVP_MAC_CTX_set_params(c, params) != 1) {
            EVP_MAC_CTX_free(c);
            c = nullptr;
        }
        return c;
    }();
    return proto;
}

int hmac_init(void** ctx, const uint8_t* key, size_t key_len, void*) {
    EVP_MAC_CTX* proto = hmac_sha256_prototype();
    EVP_MAC_CTX* c = proto ? EVP_MAC_CTX_dup(proto) : nullptr;
    if (!c) return SG_ERR_NOMEM;
    if (EVP_MAC_init(c, key, key_len, nullptr) != 1) {
        EVP_MAC_CTX_free(c);
        return SG_ERR_UNKNOWN;
    }
    *ctx = c;
    return 0;
}

int hmac_update(void* ctx, const uint8_t* data, size_t len, void*) {
    return EVP_MAC_update(static_cast<EVP_MAC_CTX*>(ctx), data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

int hmac_final(void* ctx, signal_buffer** output, void*) {
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t len = 0;
    if (EVP_MAC_final(static_cast<EVP_MAC_CTX*>(ctx), md, &len, sizeof md) != 1) return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(md, len);
    return *output ? 0 : SG_ERR_NOMEM;
}

void hmac_cleanup(void* ctx, void*) { EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(ctx)); }

int sha512_init(void** ctx, void*) {
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    if (!c) return SG_ERR_NOMEM;
    if (EVP_DigestInit_ex(c, EVP_sha512(), nullptr) != 1) {
        EVP_MD_CTX_free(c);
        return SG_ERR_UNKNOWN;
    }
    *ctx = c;
    return 0;
}

int sha512_update(void* ctx, const uint8_t* data, size_t len, void*) {
    return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx), data, len) == 1 ? 0 : SG_ERR_UNKNOWN;
}

int sha512_final(void* ctx, signal_buffer** output, void*) {
    auto* c = static_cast<EVP_MD_CTX*>(ctx);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    // The contract: populate the output and prepare the context for reuse.
    if (EVP_DigestFinal_ex(c, md, &len) != 1 || EVP_DigestInit_ex(c, EVP_sha512(), nullptr) != 1)
        return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(md, len);
    return *output ? 0 : SG_ERR_NOMEM;
}

void sha512_cleanup(void* ctx, void*) { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx)); }

// OpenSSL 3 looks a cipher up in its providers whenever an EVP_aes_*() is passed to an init; fetched once here
// (the built-in one if the fetch fails).
const EVP_CIPHER* fetched(const char* name, const EVP_CIPHER* builtin) {
    EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, name, nullptr);
    return c ? c : builtin;
}

const EVP_CIPHER* pick_cipher(int cipher, size_t key_len) {
    static const EVP_CIPHER* const cbc[] = {fetched("AES-128-CBC", EVP_aes_128_cbc()),
                                            fetched("AES-192-CBC", EVP_aes_192_cbc()),
                                            fetched("AES-256-CBC", EVP_aes_256_cbc())};
    static const EVP_CIPHER* const ctr[] = {fetched("AES-128-CTR", EVP_aes_128_ctr()),
                                            fetched("AES-192-CTR", EVP_aes_192_ctr()),
                                            fetched("AES-256-CTR", EVP_aes_256_ctr())};
    int i = key_len == 16 ? 0 : key_len == 24 ? 1 : key_len == 32 ? 2 : -1;
    if (i < 0) return nullptr;
    if (cipher == SG_CIPHER_AES_CBC_PKCS5) return cbc[i];
    if (cipher == SG_CIPHER_AES_CTR_NOPADDING) return ctr[i];
    return nullptr;
}

int cipher_run(bool encrypt, signal_buffer** output, int cipher, const uint8_t* key, size_t key_len, const uint8_t* iv,
               size_t iv_len, const uint8_t* in, size_t in_len) {
    const EVP_CIPHER* c = pick_cipher(cipher, key_len);
    if (!c || iv_len != 16) return SG_ERR_INVAL;
    std::string out;
    if (!aes_run(c, encrypt, std::string_view(reinterpret_cast<const char*>(key), key_len),
                 std::string_view(reinterpret_cast<const char*>(iv), iv_len),
                 std::string_view(reinterpret_cast<const char*>(in), in_len), out))
        return SG_ERR_UNKNOWN;
    *output = signal_buffer_create(reinterpret_cast<const uint8_t*>(out.data()), out.size());
    return *output ? 0 : SG_ERR_NOMEM;
}

int encrypt_func(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len, const uint8_t* iv,
                 size_t iv_len, const uint8_t* plaintext, size_t plaintext_len, void*) {
    return cipher_run(true, output, cipher, key, key_len, iv, iv_len, plaintext, plaintext_len);
}

int decrypt_func(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len, const uint8_t* iv,
                 size_t iv_len, const uint8_t* ciphertext, size_t ciphertext_len, void*) {
    return cipher_run(false, output, cipher, key, key_len, iv, iv_len, ciphertext, ciphertext_len);
}

}  // namespace

signal_context* signal_ctx() {
    static signal_context* ctx = [] {
        signal_context* c = nullptr;
        if (signal_context_create(&c, nullptr) != 0) return static_cast<signal_context*>(nullptr);
        signal_crypto_provider p;
        std::memset(&p, 0, sizeof p);
        p.random_func = provider_random;
        p.hmac_sha256_init_func = hmac_init;
        p.hmac_sha256_update_func = hmac_update;
        p.hmac_sha256_final_func = hmac_final;
        p.hmac_sha256_cleanup_func = hmac_cleanup;
        p.sha512_digest_init_func = sha512_init;
        p.sha512_digest_update_func = sha512_update;
        p.sha512_digest_final_func = sha512_final;
        p.sha512_digest_cleanup_func = sha512_cleanup;
        p.encrypt_func = encrypt_func;
        p.decrypt_func = decrypt_func;
        if (signal_context_set_crypto_provider(c, &p) != 0) {
            signal_context_destroy(c);
            return static_cast<signal_context*>(nullptr);
        }
        return c;
    }();
    return ctx;
}

}  // namespace wa::crypto
