#include "wa/api/qr.hpp"

#include "wa/codec/base64.hpp"

#include <gtest/gtest.h>
#include <qrencode.h>
#include <zlib.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace {

uint32_t be32(const std::string& s, size_t at) {
    return (uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
           (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

std::string random_b64_chars(std::mt19937& rng, size_t n) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string s;
    for (size_t i = 0; i < n; i++) s.push_back(alphabet[rng() % 64]);
    return s;
}

int reference_modules(const std::string& text) {
    QRcode* q = QRcode_encodeData(static_cast<int>(text.size()), reinterpret_cast<const unsigned char*>(text.data()),
                                  0, QR_ECLEVEL_M);
    if (!q) return -1;
    int w = q->width;
    QRcode_free(q);
    return w;
}

std::string zbar_decode(const std::string& png) {
    char path[] = "/tmp/wa_qr_test_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return "<mkstemp failed>";
    ssize_t w = write(fd, png.data(), png.size());
    close(fd);
    if (w != static_cast<ssize_t>(png.size())) {
        unlink(path);
        return "<write failed>";
    }
    std::string cmd = std::string("zbarimg --raw -q ") + path + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    if (p) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        pclose(p);
    }
    unlink(path);
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

TEST(Qr, PairingStringRoundTripsThroughZbar) {
    std::mt19937 rng(20261122);
    std::string text = "2@" + random_b64_chars(rng, 100) + "," + random_b64_chars(rng, 44) + "," +
                       random_b64_chars(rng, 44) + "," + random_b64_chars(rng, 44) + ",1";
    ASSERT_EQ(text.size(), 2u + 100 + 1 + 44 + 1 + 44 + 1 + 44 + 2);

    std::string png = wa::qr_png(text);
    ASSERT_GT(png.size(), 33u);
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_EQ(be32(png, 8), 13u);
    EXPECT_EQ(png.substr(12, 4), "IHDR");
    int modules = reference_modules(text);
    ASSERT_GT(modules, 21);
    EXPECT_EQ(be32(png, 16), uint32_t((modules + 2 * 4) * 8));  // width
    EXPECT_EQ(be32(png, 20), uint32_t((modules + 2 * 4) * 8));  // height
    EXPECT_EQ(png[24], 1);  // bit depth
    EXPECT_EQ(png[25], 0);  // grayscale
    EXPECT_EQ(png.substr(png.size() - 12), std::string("\0\0\0\0IEND\xae\x42\x60\x82", 12));

    EXPECT_EQ(zbar_decode(png), text);
}

TEST(Qr, SmallScaleStillDecodable) {
    std::string png = wa::qr_png("hello world", 3, 4);
    ASSERT_FALSE(png.empty());
    EXPECT_EQ(be32(png, 16), uint32_t((reference_modules("hello world") + 8) * 3));
    EXPECT_EQ(zbar_decode(png), "hello world");
}

TEST(Qr, IhdrCrcIsCorrect) {
    std::string png = wa::qr_png("crc");
    ASSERT_FALSE(png.empty());
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(png.data() + 12), 17);
    EXPECT_EQ(be32(png, 29), uint32_t(crc));
}

TEST(Qr, Failures) {
    EXPECT_EQ(wa::qr_png(""), "");
    EXPECT_EQ(wa::qr_png("x", 0), "");
    EXPECT_EQ(wa::qr_png("x", 65), "");
    EXPECT_EQ(wa::qr_png("x", 8, -1), "");
    EXPECT_EQ(wa::qr_png("x", 8, 17), "");
    // Level M holds at most 2331 bytes in 8-bit mode (version 40).
    EXPECT_EQ(wa::qr_png(std::string(4000, 'a')), "");
    EXPECT_EQ(wa::qr_png_data_url(std::string(4000, 'a')), "");
}

TEST(Qr, DataUrl) {
    std::string url = wa::qr_png_data_url("hello");
    const std::string prefix = "data:image/png;base64,";
    ASSERT_EQ(url.compare(0, prefix.size(), prefix), 0);
    std::string png;
    ASSERT_TRUE(wa::base64_decode(url.substr(prefix.size()), png));
    EXPECT_EQ(png, wa::qr_png("hello"));
}

}  // namespace
