#include <gtest/gtest.h>

#include "wa/rate_limit.hpp"

TEST(TokenBucket, BurstThenSteadyRate) {
    wa::TokenBucket b(60, 3);  // one per second, three at once
    uint64_t retry = 0;
    EXPECT_TRUE(b.take(1000, &retry));
    EXPECT_TRUE(b.take(1000, &retry));
    EXPECT_TRUE(b.take(1000, &retry));
    EXPECT_FALSE(b.take(1000, &retry));
    EXPECT_EQ(retry, 1000u);
    EXPECT_FALSE(b.take(1500, &retry));
    EXPECT_EQ(retry, 500u);
    EXPECT_TRUE(b.take(2000, &retry));
    EXPECT_FALSE(b.take(2000, &retry));
}

TEST(TokenBucket, RefillsUpToBurstOnly) {
    wa::TokenBucket b(60, 2);
    uint64_t retry = 0;
    EXPECT_TRUE(b.take(0, &retry));
    EXPECT_TRUE(b.take(0, &retry));
    // An hour idle stores two tokens, not 3600.
    EXPECT_TRUE(b.take(3600000, &retry));
    EXPECT_TRUE(b.take(3600000, &retry));
    EXPECT_FALSE(b.take(3600000, &retry));
}
