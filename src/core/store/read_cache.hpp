// The lookups every send makes, answered from memory: a contact's LID (and back), its device list and ours, the
// privacy token (three LID lookups, two device lists and two token reads per message before this: 12 % of the
// helper's CPU in bench/send.pl). whatsmeow keeps LID mappings in memory the same way (store/sqlstore/lidmap.go,
// CachedLIDMap). Correct because the SqliteStore that owns this is the only writer of those tables while it is open:
// each of its writes updates or drops what it changes, and a transaction that did not commit drops everything.
// Bounded: a kind of entry that reaches kMaxEntries starts over. Private to src/core/store.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "wa/store/store.hpp"

namespace wa::store::sqlite {

class ReadCache {
public:
    static constexpr size_t kMaxEntries = 50000;  // per kind, over all organizations: ~10 MB at most

    // ---- LID mappings (positive answers only: a mapping learned elsewhere is then read from the database) ----
    const std::string* lid_for_pn(const std::string& org, const std::string& pn) const { return find(lid_by_pn_, org, pn); }
    const std::string* pn_for_lid(const std::string& org, const std::string& lid) const { return find(pn_by_lid_, org, lid); }
    // A mapping read (written = false) or written: the pair replaces whatever either side was mapped to. A new
    // one may make a token findable through the other side: the organization's tokens are read again.
    void mapped(const std::string& org, const std::string& pn, const std::string& lid, bool written) {
        const std::string* known = lid_for_pn(org, pn);
        if (known && *known == lid) return;
        if (known) erase(pn_by_lid_, org, *known);
        if (const std::string* other = pn_for_lid(org, lid)) erase(lid_by_pn_, org, *other);
        put(lid_by_pn_, org, pn, lid);
        put(pn_by_lid_, org, lid, pn);
        if (written) tokens_.drop(org);
    }

    // ---- device lists (positive answers only) ----
    struct Devices {
        std::vector<uint32_t> ids;
        int64_t fetched_at_ms = 0;
    };
    const Devices* devices(const std::string& org, const std::string& user) const { return find(devices_, org, user); }
    void devices_stored(const std::string& org, const std::string& user, std::vector<uint32_t> ids, int64_t at) {
        put(devices_, org, user, Devices{std::move(ids), at});
    }
    void devices_deleted(const std::string& org, const std::string& user) { erase(devices_, org, user); }
    void devices_expired() { devices_.clear(); }

    // ---- privacy tokens (found or not: every write to them goes through the store) ----
    const std::optional<PrivacyToken>* token(const std::string& org, const std::string& jid) const {
        return find(tokens_, org, jid);
    }
    void token_read(const std::string& org, const std::string& jid, std::optional<PrivacyToken> t) {
        put(tokens_, org, jid, std::move(t));
    }
    void tokens_changed(const std::string& org) { tokens_.drop(org); }
    void tokens_expired() { tokens_.clear(); }

    // ---- organizations known to have a live row (every write first makes sure of it: an INSERT ... WHERE NOT
    // EXISTS per write, five per message sent, was 6.5 % of the helper's CPU) ----
    bool live(const std::string& org) const { return live_.count(org) != 0; }
    void made_live(const std::string& org) {
        if (live_.size() >= kMaxEntries) live_.clear();
        live_.insert(org);
    }

    // ---- the organization cleared, forgotten or purged; a transaction that did not commit ----
    void drop(const std::string& org) {
        live_.erase(org);
        lid_by_pn_.drop(org);
        pn_by_lid_.drop(org);
        devices_.drop(org);
        tokens_.drop(org);
    }
    void clear() {
        live_.clear();
        lid_by_pn_.clear();
        pn_by_lid_.clear();
        devices_.clear();
        tokens_.clear();
    }

private:
    // organization -> key -> value, with the number of keys over all organizations
    template <class V>
    struct Table {
        std::unordered_map<std::string, std::unordered_map<std::string, V>> by_org;
        size_t size = 0;
        void drop(const std::string& org) {
            auto it = by_org.find(org);
            if (it == by_org.end()) return;
            size -= it->second.size();
            by_org.erase(it);
        }
        void clear() {
            by_org.clear();
            size = 0;
        }
    };
    template <class V>
    static const V* find(const Table<V>& t, const std::string& org, const std::string& k) {
        auto o = t.by_org.find(org);
        if (o == t.by_org.end()) return nullptr;
        auto it = o->second.find(k);
        return it == o->second.end() ? nullptr : &it->second;
    }
    template <class V, class W>
    static void put(Table<V>& t, const std::string& org, const std::string& k, W&& v) {
        if (t.size >= kMaxEntries && !find(t, org, k)) t.clear();
        auto& m = t.by_org[org];
        auto [it, added] = m.insert_or_assign(k, std::forward<W>(v));
        (void)it;
        if (added) t.size++;
    }
    template <class V>
    static void erase(Table<V>& t, const std::string& org, const std::string& k) {
        auto o = t.by_org.find(org);
        if (o != t.by_org.end() && o->second.erase(k)) t.size--;
    }

    Table<std::string> lid_by_pn_, pn_by_lid_;
    Table<Devices> devices_;
    Table<std::optional<PrivacyToken>> tokens_;
    std::unordered_set<std::string> live_;
};

}  // namespace wa::store::sqlite
