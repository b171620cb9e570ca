// WhatsApp media encryption: see include/wa/media/crypto.hpp. Follows whatsmeow upload.go (getMediaKeys,
// encryptMedia) and download.go (downloadAndDecrypt, validateMedia); all primitives are OpenSSL's.
#include "wa/media/crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

#include "wa/noise.hpp"

namespace wa::media {

namespace {

unsigned char* u8(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }
const unsigned char* cu8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

struct CipherFree { void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); } };
struct MdFree { void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); } };
struct MacFree { void operator()(EVP_MAC* m) const { EVP_MAC_free(m); } };
struct MacCtxFree { void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); } };

// The three running computations both directions share: AES-256-CBC, HMAC-SHA256 over iv || ciphertext, and
// SHA-256 of the plaintext and of the encrypted body.
struct Streams {
    std::unique_ptr<EVP_CIPHER_CTX, CipherFree> cipher;
    std::unique_ptr<EVP_MAC_CTX, MacCtxFree> mac;
    std::unique_ptr<EVP_MD_CTX, MdFree> plain_sha, enc_sha;
    uint64_t plain_len = 0;
    std::string file_sha256, file_enc_sha256;
    bool ready = false;

    bool init(std::string_view media_key, Type t, bool encrypt) {
        ready = false;
        plain_len = 0;
        Keys k;
        if (!expand(media_key, t, k)) return false;
        cipher.reset(EVP_CIPHER_CTX_new());
        plain_sha.reset(EVP_MD_CTX_new());
        enc_sha.reset(EVP_MD_CTX_new());
        std::unique_ptr<EVP_MAC, MacFree> m(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
        if (!cipher || !plain_sha || !enc_sha || !m) return false;
        mac.reset(EVP_MAC_CTX_new(m.get()));
        if (!mac) return false;
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
        if (EVP_CipherInit_ex(cipher.get(), EVP_aes_256_cbc(), nullptr, cu8(k.cipher_key), cu8(k.iv), encrypt ? 1 : 0) != 1 ||
            EVP_MAC_init(mac.get(), cu8(k.mac_key), k.mac_key.size(), params) != 1 ||
            EVP_MAC_update(mac.get(), cu8(k.iv), k.iv.size()) != 1 ||
            EVP_DigestInit_ex(plain_sha.get(), EVP_sha256(), nullptr) != 1 ||
            EVP_DigestInit_ex(enc_sha.get(), EVP_sha256(), nullptr) != 1)
            return false;
        ready = true;
        return true;
    }
    // Runs `in` through the cipher, appending to `out`; returns the bytes appended (-1 on error).
    long cipher_update(std::string_view in, std::string& out) {
        if (in.empty()) return 0;
        if (in.size() > static_cast<size_t>(INT32_MAX) - 32) return -1;
        size_t at = out.size();
        out.resize(at + in.size() + 16);
        int n = 0;
        if (EVP_CipherUpdate(cipher.get(), u8(out) + at, &n, cu8(in), static_cast<int>(in.size())) != 1) {
            out.resize(at);
            return -1;
        }
        out.resize(at + static_cast<size_t>(n));
        return n;
    }
    long cipher_final(std::string& out) {
        size_t at = out.size();
        out.resize(at + 16);
        int n = 0;
        if (EVP_CipherFinal_ex(cipher.get(), u8(out) + at, &n) != 1) {
            out.resize(at);
            return -1;
        }
        out.resize(at + static_cast<size_t>(n));
        return n;
    }
    std::string mac10() {
        std::string full(EVP_MAX_MD_SIZE, '\0');
        size_t len = 0;
        if (EVP_MAC_final(mac.get(), u8(full), &len, full.size()) != 1 || len != 32) return "";
        full.resize(kMacLen);
        return full;
    }
    static bool digest_final(EVP_MD_CTX* c, std::string& out) {
        std::string d(32, '\0');
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(c, u8(d), &len) != 1 || len != 32) return false;
        out = std::move(d);
        return true;
    }
};

}  // namespace

std::string_view hkdf_info(Type t) {
    switch (t) {
    case Type::Image: return "WhatsApp Image Keys";
    case Type::Video: return "WhatsApp Video Keys";
    case Type::Audio: return "WhatsApp Audio Keys";
    case Type::Document: return "WhatsApp Document Keys";
    case Type::Sticker: return "WhatsApp Image Keys";  // stickers are images (whatsmeow: MediaImage)
    }
    return "";
}

std::string_view mms_type(Type t) {
    switch (t) {
    case Type::Image: case Type::Sticker: return "image";
    case Type::Video: return "video";
    case Type::Audio: return "audio";
    case Type::Document: return "document";
    }
    return "";
}

std::string_view enc_mediatype(Type t) {
    switch (t) {
    case Type::Image: return "image";
    case Type::Video: return "video";
    case Type::Audio: return "audio";
    case Type::Document: return "document";
    case Type::Sticker: return "sticker";
    }
    return "";
}

bool parse_type(std::string_view s, Type& out) {
    if (s == "image") out = Type::Image;
    else if (s == "document") out = Type::Document;
    else if (s == "video") out = Type::Video;
    else if (s == "audio") out = Type::Audio;
    else if (s == "sticker") out = Type::Sticker;
    else return false;
    return true;
}

Keys::~Keys() {
    for (std::string* s : {&iv, &cipher_key, &mac_key, &ref_key})
        if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
}

bool expand(std::string_view media_key, Type t, Keys& out) {
    if (media_key.size() != kMediaKeyLen) return false;
    std::string okm;
    if (!noise::hkdf_sha256("", media_key, hkdf_info(t), 112, okm)) return false;
    out.iv = okm.substr(0, 16);
    out.cipher_key = okm.substr(16, 32);
    out.mac_key = okm.substr(48, 32);
    out.ref_key = okm.substr(80, 32);
    OPENSSL_cleanse(okm.data(), okm.size());
    return true;
}

// ---- Encryptor ------------------------------------------------------------------------------------------------

struct Encryptor::Impl : Streams {};

Encryptor::Encryptor() : p_(std::make_unique<Impl>()) {}
Encryptor::~Encryptor() = default;

bool Encryptor::init(std::string_view media_key, Type t) { return p_->init(media_key, t, true); }

bool Encryptor::update(std::string_view in, std::string& out) {
    if (!p_->ready) return false;
    size_t at = out.size();
    long n = p_->cipher_update(in, out);
    if (n < 0 || EVP_DigestUpdate(p_->plain_sha.get(), in.data(), in.size()) != 1) return p_->ready = false;
    std::string_view ct(out.data() + at, static_cast<size_t>(n));
    if (EVP_MAC_update(p_->mac.get(), cu8(ct), ct.size()) != 1 || EVP_DigestUpdate(p_->enc_sha.get(), ct.data(), ct.size()) != 1)
        return p_->ready = false;
    p_->plain_len += in.size();
    return true;
}

bool Encryptor::final(std::string& out) {
    if (!p_->ready) return false;
    p_->ready = false;
    size_t at = out.size();
    long n = p_->cipher_final(out);
    if (n < 0) return false;
    std::string_view ct(out.data() + at, static_cast<size_t>(n));
    if (EVP_MAC_update(p_->mac.get(), cu8(ct), ct.size()) != 1) return false;
    std::string mac = p_->mac10();
    if (mac.empty()) return false;
    out += mac;
    std::string_view tail(out.data() + at, out.size() - at);
    if (EVP_DigestUpdate(p_->enc_sha.get(), tail.data(), tail.size()) != 1) return false;
    return Streams::digest_final(p_->plain_sha.get(), p_->file_sha256) &&
           Streams::digest_final(p_->enc_sha.get(), p_->file_enc_sha256);
}

uint64_t Encryptor::plain_length() const { return p_->plain_len; }
const std::string& Encryptor::file_sha256() const { return p_->file_sha256; }
const std::string& Encryptor::file_enc_sha256() const { return p_->file_enc_sha256; }

// ---- Decryptor ------------------------------------------------------------------------------------------------

struct Decryptor::Impl : Streams {
    std::string tail;  // the last (up to) 10 bytes fed: the MAC once the input ends
    uint64_t fed = 0;
    Error error = Error::None;
    bool fail(Error e) { error = e; ready = false; return false; }
    // Ciphertext that is certainly not part of the MAC.
    bool consume(std::string_view ct, std::string& out) {
        if (ct.empty()) return true;
        if (EVP_MAC_update(mac.get(), cu8(ct), ct.size()) != 1) return fail(Error::Crypto);
        size_t at = out.size();
        long n = cipher_update(ct, out);
        if (n < 0) return fail(Error::Crypto);
        if (EVP_DigestUpdate(plain_sha.get(), out.data() + at, static_cast<size_t>(n)) != 1) return fail(Error::Crypto);
        plain_len += static_cast<uint64_t>(n);
        return true;
    }
};

Decryptor::Decryptor() : p_(std::make_unique<Impl>()) {}
Decryptor::~Decryptor() = default;

bool Decryptor::init(std::string_view media_key, Type t) {
    p_->tail.clear();
    p_->fed = 0;
    p_->error = Error::None;
    if (!p_->init(media_key, t, false)) return p_->fail(Error::Crypto);
    return true;
}

bool Decryptor::update(std::string_view in, std::string& out) {
    if (!p_->ready) return false;
    if (EVP_DigestUpdate(p_->enc_sha.get(), in.data(), in.size()) != 1) return p_->fail(Error::Crypto);
    p_->fed += in.size();
    // Keep the last kMacLen bytes of (tail || in) back; everything before them is ciphertext.
    size_t total = p_->tail.size() + in.size();
    if (total <= kMacLen) {
        p_->tail.append(in.data(), in.size());
        return true;
    }
    size_t release = total - kMacLen;
    size_t from_tail = std::min(release, p_->tail.size());
    if (!p_->consume(std::string_view(p_->tail).substr(0, from_tail), out)) return false;
    p_->tail.erase(0, from_tail);
    size_t from_in = release - from_tail;
    if (!p_->consume(in.substr(0, from_in), out)) return false;
    p_->tail.append(in.data() + from_in, in.size() - from_in);
    return true;
}

bool Decryptor::final(std::string& out, std::string_view enc_sha256) {
    if (!p_->ready) return false;
    p_->ready = false;
    if (!Streams::digest_final(p_->enc_sha.get(), p_->file_enc_sha256)) return p_->fail(Error::Crypto);
    // At least one cipher block, a whole number of them, then the MAC.
    if (p_->fed < 16 + kMacLen || (p_->fed - kMacLen) % 16 != 0) return p_->fail(Error::TooShort);
    if (!enc_sha256.empty() &&
        (enc_sha256.size() != 32 || CRYPTO_memcmp(enc_sha256.data(), p_->file_enc_sha256.data(), 32) != 0))
        return p_->fail(Error::BadEncSha256);
    std::string mac = p_->mac10();
    if (mac.size() != kMacLen || CRYPTO_memcmp(mac.data(), p_->tail.data(), kMacLen) != 0) return p_->fail(Error::BadMac);
    size_t at = out.size();
    long n = p_->cipher_final(out);
    if (n < 0) return p_->fail(Error::BadPadding);
    if (EVP_DigestUpdate(p_->plain_sha.get(), out.data() + at, static_cast<size_t>(n)) != 1) return p_->fail(Error::Crypto);
    p_->plain_len += static_cast<uint64_t>(n);
    if (!Streams::digest_final(p_->plain_sha.get(), p_->file_sha256)) return p_->fail(Error::Crypto);
    return true;
}

Decryptor::Error Decryptor::error() const { return p_->error; }
uint64_t Decryptor::plain_length() const { return p_->plain_len; }
const std::string& Decryptor::file_sha256() const { return p_->file_sha256; }
const std::string& Decryptor::file_enc_sha256() const { return p_->file_enc_sha256; }

bool encrypt(std::string_view media_key, Type t, std::string_view plain, std::string& enc_with_mac) {
    Encryptor e;
    std::string out;
    out.reserve(enc_length(plain.size()));
    if (!e.init(media_key, t) || !e.update(plain, out) || !e.final(out)) return false;
    enc_with_mac = std::move(out);
    return true;
}

bool decrypt(std::string_view media_key, Type t, std::string_view enc_with_mac, std::string& plain) {
    Decryptor d;
    std::string out;
    if (!d.init(media_key, t) || !d.update(enc_with_mac, out) || !d.final(out)) {
        if (!out.empty()) OPENSSL_cleanse(out.data(), out.size());
        return false;
    }
    plain = std::move(out);
    return true;
}

// ---- magic bytes ----------------------------------------------------------------------------------------------

Magic sniff(std::string_view h) {
    auto starts = [&](std::string_view p) { return h.size() >= p.size() && h.compare(0, p.size(), p) == 0; };
    if (starts("%PDF-")) return Magic::Pdf;
    if (starts("\xFF\xD8\xFF")) return Magic::Jpeg;
    if (starts("\x89PNG\r\n\x1A\n")) return Magic::Png;
    if (h.size() >= 12 && starts("RIFF") && h.compare(8, 4, "WEBP") == 0) return Magic::Webp;
    if (starts(std::string_view("PK\x03\x04", 4)) || starts(std::string_view("PK\x05\x06", 4))) return Magic::Zip;
    return Magic::Unknown;
}

std::string_view magic_mimetype(Magic m) {
    switch (m) {
    case Magic::Pdf: return "application/pdf";
    case Magic::Jpeg: return "image/jpeg";
    case Magic::Png: return "image/png";
    case Magic::Webp: return "image/webp";
    case Magic::Zip: return "application/zip";
    case Magic::Unknown: return "";
    }
    return "";
}

namespace {

// What a declared mimetype promises about the first bytes (Unknown: nothing).
Magic expected_magic(std::string_view mt) {
    std::string m;
    for (char c : mt) {
        if (c == ';' || c == ' ') break;  // parameters ("; charset=…")
        m += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    if (m == "application/pdf") return Magic::Pdf;
    if (m == "image/jpeg" || m == "image/jpg" || m == "image/pjpeg") return Magic::Jpeg;
    if (m == "image/png") return Magic::Png;
    if (m == "image/webp") return Magic::Webp;
    if (m == "application/zip" || m == "application/x-zip-compressed" || m == "application/epub+zip" ||
        m.rfind("application/vnd.openxmlformats-officedocument.", 0) == 0 ||
        m.rfind("application/vnd.oasis.opendocument.", 0) == 0)
        return Magic::Zip;
    return Magic::Unknown;
}

}  // namespace

bool mimetype_consistent(Type t, std::string_view mimetype, std::string_view head) {
    Magic want = expected_magic(mimetype), got = sniff(head);
    if (t == Type::Image && want != Magic::Jpeg && want != Magic::Png && want != Magic::Webp) return false;
    if (want == Magic::Unknown) return true;
    return want == got;
}

}  // namespace wa::media
