#include "wa/api/validate.hpp"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

namespace {

TEST(ValidOrgId, Accepts) {
    EXPECT_TRUE(wa::valid_org_id("a"));
    EXPECT_TRUE(wa::valid_org_id("acme"));
    EXPECT_TRUE(wa::valid_org_id("Acme_Corp-01"));
    EXPECT_TRUE(wa::valid_org_id("-"));
    EXPECT_TRUE(wa::valid_org_id(std::string(64, 'x')));
}

TEST(ValidOrgId, Rejects) {
    EXPECT_FALSE(wa::valid_org_id(""));
    EXPECT_FALSE(wa::valid_org_id("."));
    EXPECT_FALSE(wa::valid_org_id(".."));
    EXPECT_FALSE(wa::valid_org_id("/"));
    EXPECT_FALSE(wa::valid_org_id("a/b"));
    EXPECT_FALSE(wa::valid_org_id("../etc"));
    EXPECT_FALSE(wa::valid_org_id(std::string("ab\0cd", 5)));
    EXPECT_FALSE(wa::valid_org_id(std::string(65, 'x')));
    EXPECT_FALSE(wa::valid_org_id("caf\xc3\xa9"));  // "café"
    EXPECT_FALSE(wa::valid_org_id("a b"));
    EXPECT_FALSE(wa::valid_org_id("a.b"));
    EXPECT_FALSE(wa::valid_org_id("a\\b"));
    EXPECT_FALSE(wa::valid_org_id("a\n"));
}

TEST(ConstantTimeEqual, Basics) {
    EXPECT_TRUE(wa::constant_time_equal("", ""));
    EXPECT_TRUE(wa::constant_time_equal("secret-token", "secret-token"));
    EXPECT_FALSE(wa::constant_time_equal("secret-token", "secret-tokeN"));
    EXPECT_FALSE(wa::constant_time_equal("Secret-token", "secret-token"));
    EXPECT_FALSE(wa::constant_time_equal("secret", "secret-token"));
    EXPECT_FALSE(wa::constant_time_equal("secret-token", "secret"));
    EXPECT_FALSE(wa::constant_time_equal("", "x"));
    // A shorter string that matches the longer one padded with NULs must not compare equal.
    EXPECT_FALSE(wa::constant_time_equal("abc", std::string("abc\0", 4)));
    EXPECT_TRUE(wa::constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
}

// Keys are compared as SHA-256 digests of a fixed size, so the work done never depends on the configured
// key's length (only on the length the client sent, which it knows).
TEST(KeyDigest, FixedSizeWhateverTheKeyLength) {
    static_assert(std::tuple_size<wa::KeyDigest>::value == 32, "SHA-256");
    wa::KeyDigest short_key = wa::key_digest("12345678");
    wa::KeyDigest long_key = wa::key_digest(std::string(256, 'k'));
    EXPECT_EQ(short_key.size(), long_key.size());
    EXPECT_NE(short_key, long_key);
    // SHA-256("abc"), FIPS 180-2 appendix B.1: the digest is the real one, not a home-made hash.
    wa::KeyDigest abc = wa::key_digest("abc");
    EXPECT_EQ(abc[0], 0xba);
    EXPECT_EQ(abc[31], 0xad);
}

TEST(KeyDigest, MatchesAnyConfiguredKeyOnly) {
    std::vector<wa::KeyDigest> keys = {wa::key_digest("first-key-123"), wa::key_digest("second-key-456")};
    EXPECT_TRUE(wa::key_matches(wa::key_digest("first-key-123"), keys.data(), keys.size()));
    EXPECT_TRUE(wa::key_matches(wa::key_digest("second-key-456"), keys.data(), keys.size()));
    EXPECT_FALSE(wa::key_matches(wa::key_digest("first-key-12"), keys.data(), keys.size()));
    EXPECT_FALSE(wa::key_matches(wa::key_digest("first-key-1234"), keys.data(), keys.size()));
    EXPECT_FALSE(wa::key_matches(wa::key_digest(""), keys.data(), keys.size()));
    EXPECT_FALSE(wa::key_matches(wa::key_digest("first-key-123"), keys.data(), 0));
}

}  // namespace
