#include "wa/codec/base64.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

TEST(Base64, Rfc4648Vectors) {
    EXPECT_EQ(wa::base64_encode(""), "");
    EXPECT_EQ(wa::base64_encode("f"), "Zg==");
    EXPECT_EQ(wa::base64_encode("fo"), "Zm8=");
    EXPECT_EQ(wa::base64_encode("foo"), "Zm9v");
    EXPECT_EQ(wa::base64_encode("foob"), "Zm9vYg==");
    EXPECT_EQ(wa::base64_encode("fooba"), "Zm9vYmE=");
    EXPECT_EQ(wa::base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Base64, DecodeVectors) {
    std::string out;
    ASSERT_TRUE(wa::base64_decode("", out));
    EXPECT_EQ(out, "");
    ASSERT_TRUE(wa::base64_decode("Zg==", out));
    EXPECT_EQ(out, "f");
    ASSERT_TRUE(wa::base64_decode("Zm8=", out));
    EXPECT_EQ(out, "fo");
    ASSERT_TRUE(wa::base64_decode("Zm9vYmFy", out));
    EXPECT_EQ(out, "foobar");
}

TEST(Base64, BinaryRoundTrip) {
    std::string all;
    for (int i = 0; i < 256; i++) all.push_back(static_cast<char>(i));
    std::string enc = wa::base64_encode(all);
    EXPECT_EQ(enc.substr(0, 8), "AAECAwQF");
    EXPECT_EQ(enc.substr(enc.size() - 8), "/P3+/w==");
    std::string dec;
    ASSERT_TRUE(wa::base64_decode(enc, dec));
    EXPECT_EQ(dec, all);
}

TEST(Base64, RejectsInvalid) {
    std::string out = "preexisting";
    EXPECT_FALSE(wa::base64_decode("Zg=", out));        // length not a multiple of 4
    EXPECT_EQ(out, "");
    EXPECT_FALSE(wa::base64_decode("Zm9v\n", out));     // whitespace
    EXPECT_FALSE(wa::base64_decode("Zm 9", out));
    EXPECT_FALSE(wa::base64_decode("Zm9-", out));       // url-safe alphabet
    EXPECT_FALSE(wa::base64_decode("Z===", out));       // too much padding
    EXPECT_FALSE(wa::base64_decode("Zg==Zm9v", out));   // padding in the middle
    EXPECT_FALSE(wa::base64_decode("Zm=v", out));       // '=' before data
    EXPECT_FALSE(wa::base64_decode("Zh==", out));       // non-zero trailing bits
    EXPECT_FALSE(wa::base64_decode("Zm9=", out));
    EXPECT_FALSE(wa::base64_decode(std::string("Zm9\0", 4), out));
}

}  // namespace
