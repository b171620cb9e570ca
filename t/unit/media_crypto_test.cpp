// wa::media: HKDF expansion, streaming AES-256-CBC + truncated HMAC both ways, tampering, magic bytes.
// (Interoperability with Baileys, both directions, is t/media/crosscheck.mjs: make mediatest.)
#include "wa/media/crypto.hpp"

#include <gtest/gtest.h>

#include <string>

#include "wa/noise.hpp"

namespace {

namespace m = wa::media;

std::string unhex(std::string_view h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}
std::string hex(std::string_view b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) s += d[c >> 4], s += d[c & 15];
    return s;
}
std::string pattern(size_t n) {
    std::string s(n, '\0');
    uint32_t x = 2463534242u;
    for (auto& c : s) { x ^= x << 13; x ^= x >> 17; x ^= x << 5; c = static_cast<char>(x); }
    return s;
}
const std::string kKey = unhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");

TEST(MediaCrypto, InfoStringsAndTypes) {
    EXPECT_EQ(m::hkdf_info(m::Type::Document), "WhatsApp Document Keys");
    EXPECT_EQ(m::hkdf_info(m::Type::Image), "WhatsApp Image Keys");
    EXPECT_EQ(m::mms_type(m::Type::Document), "document");
    EXPECT_EQ(m::mms_type(m::Type::Image), "image");
    m::Type t;
    EXPECT_TRUE(m::parse_type("document", t));
    EXPECT_EQ(t, m::Type::Document);
    EXPECT_FALSE(m::parse_type("Document", t));
    EXPECT_FALSE(m::parse_type("", t));
}

TEST(MediaCrypto, ExpandIsHkdfSha256WithTheInfoString) {
    m::Keys k;
    ASSERT_TRUE(m::expand(kKey, m::Type::Document, k));
    std::string okm;
    ASSERT_TRUE(wa::noise::hkdf_sha256("", kKey, "WhatsApp Document Keys", 112, okm));
    EXPECT_EQ(k.iv, okm.substr(0, 16));
    EXPECT_EQ(k.cipher_key, okm.substr(16, 32));
    EXPECT_EQ(k.mac_key, okm.substr(48, 32));
    EXPECT_EQ(k.ref_key, okm.substr(80, 32));
    m::Keys img;
    ASSERT_TRUE(m::expand(kKey, m::Type::Image, img));
    EXPECT_NE(img.cipher_key, k.cipher_key);
    EXPECT_FALSE(m::expand(kKey.substr(0, 31), m::Type::Document, k));
}

// Known answer computed independently with node's crypto (hkdfSync, aes-256-cbc, createHmac), as Baileys does.
TEST(MediaCrypto, KnownAnswer) {
    const std::string okm =
        "25e9d370804de0bb33ea5db79453db66b75c2bed8e162ad63dd02b6b9fbda46b8ad2692e99ed0f877d0ab48a86fff790"
        "94a393dafdca1265c99e197425de98f15f7d87d34714ea901f7eefc29c99e5acf826177ac4aaf590f67e927133b8a7f1"
        "02a9fa5c2a88d62587699f581b2e9b76";
    m::Keys k;
    ASSERT_TRUE(m::expand(kKey, m::Type::Document, k));
    EXPECT_EQ(hex(k.iv + k.cipher_key + k.mac_key + k.ref_key), okm);
    const std::string plain = "%PDF-1.4 hello receipt\n";
    std::string enc;
    ASSERT_TRUE(m::encrypt(kKey, m::Type::Document, plain, enc));
    EXPECT_EQ(hex(enc), "48e431edd2bbed00f70b29082edf285ba4f3ce458daaba9a680852ccfde9fd6f3318f95ed12e55c07b36");
    m::Encryptor e;
    std::string out;
    ASSERT_TRUE(e.init(kKey, m::Type::Document));
    ASSERT_TRUE(e.update(plain, out));
    ASSERT_TRUE(e.final(out));
    EXPECT_EQ(out, enc);
    EXPECT_EQ(hex(e.file_enc_sha256()), "53d3f4ad1484fba1107f4515bb0dded98ecdf98a5c82be912c27bfe1e9e00bf1");
    EXPECT_EQ(hex(e.file_sha256()), "7e119e153ea052d7f58553e9c5ad5bace6f6ffe28d09494cc3d9f3c6c01505e1");
    EXPECT_EQ(e.plain_length(), plain.size());
    std::string back;
    ASSERT_TRUE(m::decrypt(kKey, m::Type::Document, enc, back));
    EXPECT_EQ(back, plain);
    EXPECT_FALSE(m::decrypt(kKey, m::Type::Image, enc, back));  // the other type's keys: bad mac
}

// Every chunking of the input gives the one-shot result, both ways, for lengths around the block size.
TEST(MediaCrypto, StreamingAnySplit) {
    for (size_t len : {0u, 1u, 9u, 10u, 15u, 16u, 17u, 31u, 32u, 33u, 1000u, 65537u}) {
        std::string plain = pattern(len), one;
        ASSERT_TRUE(m::encrypt(kKey, m::Type::Image, plain, one));
        EXPECT_EQ(one.size(), m::enc_length(len));
        for (size_t chunk : {1u, 3u, 10u, 11u, 16u, 4096u}) {
            m::Encryptor e;
            std::string out;
            ASSERT_TRUE(e.init(kKey, m::Type::Image));
            for (size_t i = 0; i < plain.size(); i += chunk) {
                size_t before = out.size();
                ASSERT_TRUE(e.update(std::string_view(plain).substr(i, chunk), out));
                EXPECT_LE(out.size() - before, chunk + 16);  // bounded output per chunk
            }
            ASSERT_TRUE(e.final(out));
            ASSERT_EQ(out, one) << len << "/" << chunk;
            m::Decryptor d;
            std::string back;
            ASSERT_TRUE(d.init(kKey, m::Type::Image));
            for (size_t i = 0; i < one.size(); i += chunk) ASSERT_TRUE(d.update(std::string_view(one).substr(i, chunk), back));
            ASSERT_TRUE(d.final(back, e.file_enc_sha256())) << len << "/" << chunk;
            EXPECT_EQ(back, plain);
            EXPECT_EQ(d.file_sha256(), e.file_sha256());
            EXPECT_EQ(d.plain_length(), len);
        }
    }
}

TEST(MediaCrypto, DecryptRejectsTampering) {
    std::string plain = pattern(5000), enc, back;
    ASSERT_TRUE(m::encrypt(kKey, m::Type::Document, plain, enc));
    for (size_t pos : {size_t(0), size_t(100), enc.size() - 11, enc.size() - 10, enc.size() - 1}) {
        std::string t = enc;
        t[pos] ^= 1;
        m::Decryptor d;
        std::string out;
        ASSERT_TRUE(d.init(kKey, m::Type::Document));
        ASSERT_TRUE(d.update(t, out));
        EXPECT_FALSE(d.final(out)) << pos;
        EXPECT_EQ(d.error(), m::Decryptor::Error::BadMac) << pos;
    }
    m::Decryptor d;
    std::string out;
    ASSERT_TRUE(d.init(kKey, m::Type::Document));
    ASSERT_TRUE(d.update(std::string_view(enc).substr(0, enc.size() - 16), out));  // truncated by one block
    EXPECT_FALSE(d.final(out));
    EXPECT_EQ(d.error(), m::Decryptor::Error::BadMac);
    for (size_t n : {0u, 10u, 25u, 27u}) {
        m::Decryptor s;
        ASSERT_TRUE(s.init(kKey, m::Type::Document));
        ASSERT_TRUE(s.update(std::string_view(enc).substr(0, n), out));
        EXPECT_FALSE(s.final(out));
        EXPECT_EQ(s.error(), m::Decryptor::Error::TooShort) << n;
    }
    m::Decryptor h;
    ASSERT_TRUE(h.init(kKey, m::Type::Document));
    ASSERT_TRUE(h.update(enc, out));
    EXPECT_FALSE(h.final(out, std::string(32, 'x')));
    EXPECT_EQ(h.error(), m::Decryptor::Error::BadEncSha256);
    EXPECT_FALSE(h.update("more", out));  // finished
    EXPECT_FALSE(m::decrypt(kKey.substr(1), m::Type::Document, enc, back));
}

TEST(MediaMagic, Sniff) {
    EXPECT_EQ(m::sniff("%PDF-1.7\n"), m::Magic::Pdf);
    EXPECT_EQ(m::sniff(std::string("\xFF\xD8\xFF\xE0\0\x10JFIF", 10)), m::Magic::Jpeg);
    EXPECT_EQ(m::sniff(std::string("\x89PNG\r\n\x1A\n\0\0\0\rIHDR", 16)), m::Magic::Png);
    EXPECT_EQ(m::sniff(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), m::Magic::Webp);
    EXPECT_EQ(m::sniff(std::string("RIFF\x10\0\0\0WAVEfmt ", 16)), m::Magic::Unknown);
    EXPECT_EQ(m::sniff(std::string("PK\x03\x04\x14\0", 6)), m::Magic::Zip);
    EXPECT_EQ(m::sniff("a,b,c\n1,2,3\n"), m::Magic::Unknown);
    EXPECT_EQ(m::sniff(""), m::Magic::Unknown);
    EXPECT_EQ(m::sniff("%PD"), m::Magic::Unknown);
}

TEST(MediaMagic, DeclaredTypeMustAgree) {
    const std::string png("\x89PNG\r\n\x1A\n\0\0\0\rIHDR", 16), pdf = "%PDF-1.4\n%\xE2\xE3", jpg("\xFF\xD8\xFF\xE0\0\x10JFIF", 10);
    const std::string zip("PK\x03\x04\x14\0\x06\0", 8), csv = "name,qty\nlens,2\n";
    using T = m::Type;
    EXPECT_TRUE(m::mimetype_consistent(T::Document, "application/pdf", pdf));
    EXPECT_FALSE(m::mimetype_consistent(T::Document, "application/pdf", png));  // a PNG declared as a PDF
    EXPECT_FALSE(m::mimetype_consistent(T::Document, "Application/PDF", csv));
    EXPECT_TRUE(m::mimetype_consistent(T::Document, "text/csv", csv));
    EXPECT_TRUE(m::mimetype_consistent(T::Document, "text/plain; charset=utf-8", "hello"));
    EXPECT_TRUE(m::mimetype_consistent(T::Document, "text/plain", pdf));  // no magic promised: passes
    EXPECT_TRUE(m::mimetype_consistent(T::Document,
                                       "application/vnd.openxmlformats-officedocument.wordprocessingml.document", zip));
    EXPECT_FALSE(m::mimetype_consistent(T::Document,
                                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", pdf));
    EXPECT_TRUE(m::mimetype_consistent(T::Image, "image/jpeg", jpg));
    EXPECT_TRUE(m::mimetype_consistent(T::Image, "image/png", png));
    EXPECT_FALSE(m::mimetype_consistent(T::Image, "image/jpeg", png));
    EXPECT_FALSE(m::mimetype_consistent(T::Image, "application/pdf", pdf));  // an image must be an image
    EXPECT_FALSE(m::mimetype_consistent(T::Image, "image/gif", "GIF89a"));
}

}  // namespace

#include "wa/media/thumbnail.hpp"

namespace {

TEST(MediaThumbnail, JpegScaledDownTo32) {
    // A 640×480 gradient photo → a 32×24 thumbnail that is itself a JPEG of that size.
    std::string rgb(640 * 480 * 3, '\0');
    for (size_t y = 0; y < 480; y++)
        for (size_t x = 0; x < 640; x++) {
            rgb[(y * 640 + x) * 3] = static_cast<char>(x * 255 / 639);
            rgb[(y * 640 + x) * 3 + 1] = static_cast<char>(y * 255 / 479);
            rgb[(y * 640 + x) * 3 + 2] = 64;
        }
    std::string jpeg;
    ASSERT_TRUE(m::jpeg_encode_rgb(rgb, 640, 480, 85, jpeg));
    m::ImageInfo info;
    std::string err;
    ASSERT_TRUE(m::jpeg_thumbnail(jpeg, 32, info, &err)) << err;
    EXPECT_EQ(info.width, 640u);
    EXPECT_EQ(info.height, 480u);
    ASSERT_FALSE(info.jpeg_thumbnail.empty());
    EXPECT_EQ(m::sniff(info.jpeg_thumbnail), m::Magic::Jpeg);
    EXPECT_LT(info.jpeg_thumbnail.size(), 2000u);
    m::ImageInfo again;
    ASSERT_TRUE(m::jpeg_thumbnail(info.jpeg_thumbnail, 32, again, &err)) << err;
    EXPECT_EQ(again.width, 32u);
    EXPECT_EQ(again.height, 24u);
    // A tall small image keeps its aspect and is not enlarged.
    std::string small(10 * 20 * 3, '\x80');
    ASSERT_TRUE(m::jpeg_encode_rgb(small, 10, 20, 80, jpeg));
    ASSERT_TRUE(m::jpeg_thumbnail(jpeg, 32, info, &err)) << err;
    ASSERT_TRUE(m::jpeg_thumbnail(info.jpeg_thumbnail, 32, again, &err)) << err;
    EXPECT_EQ(again.width, 10u);
    EXPECT_EQ(again.height, 20u);
}

TEST(MediaThumbnail, RefusesWhatIsNotAJpeg) {
    m::ImageInfo info;
    std::string err;
    EXPECT_FALSE(m::jpeg_thumbnail("not a jpeg at all", 32, info, &err));
    EXPECT_FALSE(err.empty());
    EXPECT_FALSE(m::jpeg_thumbnail(std::string("\xFF\xD8\xFF\xE0\0\x10JFIF\0", 11), 32, info, &err));  // cut short
    EXPECT_TRUE(info.jpeg_thumbnail.empty());
}

}  // namespace
