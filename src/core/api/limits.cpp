#include "wa/api/limits.hpp"

#include <algorithm>

namespace wa {

SessionLimit session_limit(uint64_t worker_connections, uint64_t open_files) {
    uint64_t capacity = std::min(worker_connections, open_files);
    SessionLimit l;
    l.reserve = std::min(kSessionReserve, capacity / 2);
    l.max = capacity - l.reserve;
    return l;
}

}  // namespace wa
