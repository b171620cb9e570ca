#include "wa/rate_limit.hpp"

#include <cmath>

namespace wa {

bool TokenBucket::take(uint64_t now_ms, uint64_t* retry_after_ms) {
    if (started_ && now_ms > last_ms_) {
        tokens_ += static_cast<double>(now_ms - last_ms_) * rate_per_ms_;
        if (tokens_ > burst_) tokens_ = burst_;
    }
    started_ = true;
    last_ms_ = now_ms;
    if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return true;
    }
    if (retry_after_ms) {
        *retry_after_ms = rate_per_ms_ > 0 ? static_cast<uint64_t>(std::ceil((1.0 - tokens_) / rate_per_ms_)) : 0;
    }
    return false;
}

}  // namespace wa
