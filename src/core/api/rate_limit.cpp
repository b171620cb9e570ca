#include "wa/api/rate_limit.hpp"

#include <cmath>

namespace wa {

bool RateLimit::take(BucketState& b, uint64_t now_ms, uint64_t* retry_after_ms) const {
    double rate_per_ms = per_minute / 60000.0;
    if (!b.started) {
        b.started = true;
        b.tokens = burst;
        b.last_ms = now_ms;
    } else if (now_ms > b.last_ms) {
        b.tokens += static_cast<double>(now_ms - b.last_ms) * rate_per_ms;
        if (b.tokens > burst) b.tokens = burst;
        b.last_ms = now_ms;
    }
    if (b.tokens >= 1.0) {
        b.tokens -= 1.0;
        return true;
    }
    if (retry_after_ms) {
        *retry_after_ms = rate_per_ms > 0 ? static_cast<uint64_t>(std::ceil((1.0 - b.tokens) / rate_per_ms)) : 0;
    }
    return false;
}

uint64_t RateLimit::refill_ms() const {
    if (per_minute <= 0) return UINT64_MAX;
    return static_cast<uint64_t>(std::ceil(burst * 60000.0 / per_minute));
}

}  // namespace wa
