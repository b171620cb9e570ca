// WhatsApp media encryption (whatsmeow upload.go/download.go, Baileys messages-media.ts): a random 32-byte media
// key expanded with HKDF-SHA256 (no salt, per-type info string, 112 bytes: iv 0-16, cipherKey 16-48,
// macKey 48-80, refKey 80-112), AES-256-CBC with PKCS#7 padding, and a MAC = HMAC-SHA256(macKey, iv || ciphertext)
// truncated to 10 bytes appended to the ciphertext. fileSha256 = SHA-256(plaintext), fileEncSha256 =
// SHA-256(ciphertext || mac). All crypto is OpenSSL's (EVP_KDF HKDF, EVP_aes_256_cbc, EVP_MAC HMAC, EVP_sha256).
//
// Encryptor and Decryptor are streaming: each update() turns one chunk into at most chunk + 16 (+ 10) bytes of
// output and holds at most one cipher block and the 10-byte MAC tail, so a 16 MB file never needs more than the
// caller's buffer. The Decryptor releases plaintext before the MAC is known: the caller must write it somewhere
// provisional (a temporary file) and keep it only if final() succeeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace wa::media {

enum class Type { Image, Video, Audio, Document, Sticker };

// "WhatsApp Image Keys", "WhatsApp Document Keys", ... (whatsmeow upload.go MediaType constants).
std::string_view hkdf_info(Type t);
// The path segment of the upload URL: "image", "document", ... (whatsmeow upload.go mediaTypeToMMSType).
std::string_view mms_type(Type t);
// The stanza's <enc mediatype=…>: "image", "document", ... (whatsmeow send.go getMediaTypeFromMessage).
std::string_view enc_mediatype(Type t);
// "document"/"image"/… → Type; false for anything else.
bool parse_type(std::string_view s, Type& out);

constexpr size_t kMediaKeyLen = 32;
constexpr size_t kMacLen = 10;

struct Keys {
    std::string iv, cipher_key, mac_key, ref_key;
    ~Keys();  // wipes the key material
};

// HKDF-SHA256 expansion of a 32-byte media key; false on a wrong length or an OpenSSL error.
bool expand(std::string_view media_key, Type t, Keys& out);

// The size of the encrypted body (ciphertext || mac) for a plaintext of `plain_len` bytes.
constexpr uint64_t enc_length(uint64_t plain_len) { return (plain_len / 16 + 1) * 16 + kMacLen; }

class Encryptor {
public:
    Encryptor();
    ~Encryptor();
    Encryptor(const Encryptor&) = delete;
    Encryptor& operator=(const Encryptor&) = delete;
    bool init(std::string_view media_key, Type t);
    // Appends the ciphertext of `in` to `out` (at most in.size() + 16 bytes).
    bool update(std::string_view in, std::string& out);
    // Appends the last cipher block and the 10-byte MAC; the hashes are valid after it.
    bool final(std::string& out);
    uint64_t plain_length() const;
    const std::string& file_sha256() const;      // SHA-256 of the plaintext
    const std::string& file_enc_sha256() const;  // SHA-256 of ciphertext || mac
private:
    struct Impl;
    std::unique_ptr<Impl> p_;
};

class Decryptor {
public:
    enum class Error { None, TooShort, BadMac, BadPadding, BadEncSha256, Crypto };
    Decryptor();
    ~Decryptor();
    Decryptor(const Decryptor&) = delete;
    Decryptor& operator=(const Decryptor&) = delete;
    bool init(std::string_view media_key, Type t);
    // Feeds encrypted bytes (ciphertext || mac, split anywhere); appends provisional plaintext to `out`.
    bool update(std::string_view in, std::string& out);
    // Checks the MAC (constant time) and the padding, appends the last plaintext bytes. When `enc_sha256` is not
    // empty, SHA-256 of everything fed must equal it.
    bool final(std::string& out, std::string_view enc_sha256 = {});
    Error error() const;
    uint64_t plain_length() const;
    const std::string& file_sha256() const;      // after a successful final()
    const std::string& file_enc_sha256() const;  // after final()
private:
    struct Impl;
    std::unique_ptr<Impl> p_;
};

// One-shot helpers (tests, small files).
bool encrypt(std::string_view media_key, Type t, std::string_view plain, std::string& enc_with_mac);
bool decrypt(std::string_view media_key, Type t, std::string_view enc_with_mac, std::string& plain);

// Magic bytes (pdf, jpeg, png, webp, zip/OOXML) of the first bytes of a file.
enum class Magic { Unknown, Pdf, Jpeg, Png, Webp, Zip };
Magic sniff(std::string_view head);
std::string_view magic_mimetype(Magic m);  // "application/pdf", … ; "" for Unknown
// Whether a declared mimetype agrees with the file's first bytes: a mimetype that implies magic bytes (pdf, jpeg,
// png, webp, zip and OOXML/ODF containers) must find them; a mimetype without magic bytes (text/csv, text/plain,
// …) passes whatever the content. An image must also be jpeg, png or webp. `head` needs >= 12 bytes when the
// file has them.
bool mimetype_consistent(Type t, std::string_view mimetype, std::string_view head);

}  // namespace wa::media
