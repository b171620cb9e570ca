#include <gtest/gtest.h>

#include "wa/api/rate_limit.hpp"

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

TEST(RateLimit, SharedBucketNeverRunsTimeBackwards) {
    // Two workers with slightly different cached clocks take from the same bucket.
    wa::RateLimit limit{60, 1};
    wa::BucketState b;
    uint64_t retry = 0;
    EXPECT_TRUE(limit.take(b, 10000, &retry));
    EXPECT_FALSE(limit.take(b, 9990, &retry));   // the other worker's clock is 10 ms behind
    EXPECT_FALSE(limit.take(b, 10500, &retry));  // 500 ms after the take: half a token, not more
    EXPECT_EQ(retry, 500u);
    EXPECT_TRUE(limit.take(b, 11000, &retry));
}

TEST(RateLimit, RefillTimeIsWhenABucketIsFullAgain) {
    wa::RateLimit limit{120, 3};  // 2 per second
    EXPECT_EQ(limit.refill_ms(), 1500u);
    wa::BucketState b;
    uint64_t retry = 0;
    for (int i = 0; i < 3; i++) EXPECT_TRUE(limit.take(b, 0, &retry));
    EXPECT_FALSE(limit.take(b, 0, &retry));
    wa::BucketState fresh;
    // After refill_ms the used bucket behaves exactly like a fresh one: dropping it loses nothing.
    for (int i = 0; i < 3; i++) {
        EXPECT_TRUE(limit.take(b, 1500, &retry));
        EXPECT_TRUE(limit.take(fresh, 1500, &retry));
    }
    EXPECT_FALSE(limit.take(b, 1500, &retry));
    EXPECT_FALSE(limit.take(fresh, 1500, &retry));
}
