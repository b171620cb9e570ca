// Per-organization send rate: a token bucket, so a runaway client loop cannot push an organization's
// number into WhatsApp's spam limits. Time in milliseconds (monotonic).
#pragma once
#include <cstdint>
#include <type_traits>

namespace wa {

// One organization's bucket. Plain data: it lives in shared memory, where every worker takes from it.
struct BucketState {
    double tokens = 0;
    uint64_t last_ms = 0;
    bool started = false;  // a bucket seen for the first time is full
};
static_assert(std::is_trivially_copyable<BucketState>::value, "BucketState lives in shared memory");

struct RateLimit {
    double per_minute = 60;  // tokens added per minute
    double burst = 20;       // tokens stored at most

    // Takes one token. On refusal `retry_after_ms` says when one will be there. Clocks of different
    // processes may be a little apart: time never runs backwards for a bucket.
    bool take(BucketState& b, uint64_t now_ms, uint64_t* retry_after_ms) const;
    // After this long without a take a bucket is full again: it carries no information and can be dropped.
    uint64_t refill_ms() const;
};

class TokenBucket {
public:
    // `per_minute` tokens are added per minute, up to `burst` stored.
    TokenBucket(double per_minute = 60, double burst = 20) : limit_{per_minute, burst} {}
    bool take(uint64_t now_ms, uint64_t* retry_after_ms) { return limit_.take(state_, now_ms, retry_after_ms); }

private:
    RateLimit limit_;
    BucketState state_;
};

}  // namespace wa
