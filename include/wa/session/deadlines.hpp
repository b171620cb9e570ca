// Many deadlines at once for one session (handshake, login, QR ref, keep-alive, each iq, backoff, work
// slices), kept in one small ordered set; the host arms a single timer at the earliest.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace wa {

class Deadlines {
public:
    enum Kind : uint8_t { Handshake, Login, QrRef, KeepAlive, Ping, Iq, Retry, Work, Unlink };

    void set(Kind kind, uint64_t at_ms, const std::string& key = {});
    void cancel(Kind kind, const std::string& key = {});
    void cancel_all(Kind kind);
    void clear() { items_.clear(); }
    bool has(Kind kind, const std::string& key = {}) const;
    bool empty() const { return items_.empty(); }
    uint64_t earliest() const;  // 0 when empty

    struct Due { Kind kind; std::string key; };
    // Removes and returns every deadline at or before now_ms, earliest first.
    std::vector<Due> take_due(uint64_t now_ms);

private:
    struct Item {
        uint64_t at;
        Kind kind;
        std::string key;
        bool operator<(const Item& o) const { return std::tie(at, kind, key) < std::tie(o.at, o.kind, o.key); }
    };
    std::set<Item> items_;
};

}  // namespace wa
