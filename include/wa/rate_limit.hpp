// Per-organization send rate: a token bucket, so a runaway client loop cannot push an organization's
// number into WhatsApp's spam limits. Time in milliseconds (monotonic).
#pragma once
#include <cstdint>

namespace wa {

class TokenBucket {
public:
    // `per_minute` tokens are added per minute, up to `burst` stored.
    TokenBucket(double per_minute = 60, double burst = 20) : rate_per_ms_(per_minute / 60000.0), burst_(burst),
                                                            tokens_(burst) {}
    // Takes one token. On refusal `retry_after_ms` says when one will be there.
    bool take(uint64_t now_ms, uint64_t* retry_after_ms);

private:
    double rate_per_ms_;
    double burst_;
    double tokens_;
    uint64_t last_ms_ = 0;
    bool started_ = false;
};

}  // namespace wa
