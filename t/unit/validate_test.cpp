#include "wa/validate.hpp"

#include <gtest/gtest.h>

#include <string>

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

}  // namespace
