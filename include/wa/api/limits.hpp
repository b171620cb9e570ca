// How many sessions the helper can run. Each one holds a connection of the helper's worker_connections and a
// file descriptor for its WebSocket; the rest is kept for the helper's own sockets and files (doorbell, channel
// to the master, resolver, state files being written, logs), so a session never fails for want of either.
#pragma once
#include <cstdint>

namespace wa {

constexpr uint64_t kSessionReserve = 64;

struct SessionLimit {
    uint64_t max = 0;      // sessions the helper can hold
    uint64_t reserve = 0;  // connections / descriptors kept for everything else
};

// min(worker_connections, open_files) minus the reserve (at most half of it for very small settings).
SessionLimit session_limit(uint64_t worker_connections, uint64_t open_files);

}  // namespace wa
