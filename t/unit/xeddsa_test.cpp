#include <gtest/gtest.h>

#include <string>

#include "wa/crypto/xeddsa.hpp"

namespace {

std::string unhex(const char* h) {
    std::string out;
    for (size_t i = 0; h[i] && h[i + 1]; i += 2) out.push_back(static_cast<char>(std::stoi(std::string(h + i, 2), nullptr, 16)));
    return out;
}

// Signed by Baileys' Curve.sign (libsignal's JS XEdDSA) with a fresh key pair.
const char* kPub = "9e5ecfb279cba2504ee14d0593f9faef20f8b5f269ad4f14d202fd69624d5b5a";
const char* kMsg = "6e67785f77686174736170702078656464736120766563746f723a206e6f6973652063657274696669636174652064657461696c73";
const char* kSig =
    "2b65b3957922e8d8cfcfcb6539d22b4528c07ec07777c74c8fec1a4765ba6a9e"
    "5f34b0ce365746e3e203693912a419123fb739b342af452832c5c4ef590da508";

}  // namespace

TEST(XEdDSA, VerifiesASignatureMadeByBaileys) {
    EXPECT_TRUE(wa::xeddsa_verify(unhex(kPub), unhex(kMsg), unhex(kSig)));
}

TEST(XEdDSA, RejectsAnyChange) {
    std::string pub = unhex(kPub), msg = unhex(kMsg), sig = unhex(kSig);
    for (size_t i : {size_t{0}, size_t{31}, size_t{63}}) {
        std::string bad = sig;
        bad[i] ^= 0x01;
        EXPECT_FALSE(wa::xeddsa_verify(pub, msg, bad)) << "signature byte " << i;
    }
    std::string bad_msg = msg;
    bad_msg[0] ^= 0x20;
    EXPECT_FALSE(wa::xeddsa_verify(pub, bad_msg, sig));
    std::string bad_pub = pub;
    bad_pub[5] ^= 0x01;
    EXPECT_FALSE(wa::xeddsa_verify(bad_pub, msg, sig));
}

TEST(XEdDSA, RejectsWrongSizes) {
    std::string pub = unhex(kPub), msg = unhex(kMsg), sig = unhex(kSig);
    EXPECT_FALSE(wa::xeddsa_verify(pub.substr(1), msg, sig));
    EXPECT_FALSE(wa::xeddsa_verify(pub, msg, sig.substr(1)));
    EXPECT_FALSE(wa::xeddsa_verify("", "", ""));
}
