// The webhook outbox of the SQLite store (schema 3), included twice by sqlite_store.cpp: once inside
// SqliteStore's declaration (WA_SQLITE_WEBHOOK_DECLS), once at the end for the definitions. Kept apart so the
// webhook code does not grow the store's main file.
#ifdef WA_SQLITE_WEBHOOK_DECLS
    bool enqueue_webhook(const std::string& org, const std::string& type, const std::string& data,
                         const std::vector<std::string>& targets, int64_t now_ms, std::string& id, uint64_t& seq,
                         std::string* err) override;
    bool due_webhooks(const std::string& target, int64_t now_ms, size_t limit, const std::vector<int64_t>& skip,
                      std::vector<WebhookEvent>& out, std::string* err) override;
    bool webhook_targets_due(int64_t now_ms, std::vector<std::string>& out, std::string* err) override;
    bool webhook_delivered(int64_t n, std::string* err) override;
    bool webhook_retry(int64_t n, int64_t next_ms, const std::string& last_error, std::string* err) override;
    bool webhook_dead(int64_t n, const std::string& last_error, std::string* err) override;
    bool list_dead_webhooks(const std::string& org, int64_t after_n, size_t limit, std::vector<WebhookEvent>& out,
                            std::string* err) override;
    bool replay_webhooks(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                         uint64_t& replayed, std::string* err) override;
    bool replay_webhooks_to(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                            const std::vector<std::string>& targets, uint64_t& replayed, uint64_t& skipped,
                            std::string* err) override;
    bool park_webhooks(const std::vector<std::string>& keep, const std::string& last_error,
                       std::vector<ParkedWebhooks>& parked, std::string* err) override;
    bool replay(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                const std::vector<std::string>* targets, uint64_t& replayed, uint64_t& skipped, std::string* err);
    bool count_webhooks(const std::string& org, const std::string& state, uint64_t& n, std::string* err) override;
    bool put_webhook_target(const std::string& org, const std::string& url, const std::string& events,
                            std::string* err) override;
    bool delete_webhook_target(const std::string& org, std::string* err) override;
    bool load_webhook_targets(std::vector<std::array<std::string, 3>>& out, std::string* err) override;
    bool expire_webhooks(int64_t older_than_ms, uint64_t& deleted, std::string* err) override;
#else

// ---- Store's defaults: a store without an outbox ----

namespace {
bool no_outbox(std::string* err) {
    if (err) *err = "store: this store keeps no webhook events";
    return false;
}
}  // namespace

bool Store::enqueue_webhook(const std::string&, const std::string&, const std::string&, const std::vector<std::string>&,
                            int64_t, std::string&, uint64_t&, std::string* err) { return no_outbox(err); }
bool Store::due_webhooks(const std::string&, int64_t, size_t, const std::vector<int64_t>&, std::vector<WebhookEvent>&,
                         std::string* err) { return no_outbox(err); }
bool Store::webhook_targets_due(int64_t, std::vector<std::string>&, std::string* err) { return no_outbox(err); }
bool Store::webhook_delivered(int64_t, std::string* err) { return no_outbox(err); }
bool Store::webhook_retry(int64_t, int64_t, const std::string&, std::string* err) { return no_outbox(err); }
bool Store::webhook_dead(int64_t, const std::string&, std::string* err) { return no_outbox(err); }
bool Store::list_dead_webhooks(const std::string&, int64_t, size_t, std::vector<WebhookEvent>&, std::string* err) {
    return no_outbox(err);
}
bool Store::replay_webhooks(const std::string&, const std::vector<std::string>&, int64_t, uint64_t&, std::string* err) {
    return no_outbox(err);
}
bool Store::replay_webhooks_to(const std::string&, const std::vector<std::string>&, int64_t, const std::vector<std::string>&,
                               uint64_t&, uint64_t&, std::string* err) { return no_outbox(err); }
bool Store::park_webhooks(const std::vector<std::string>&, const std::string&, std::vector<ParkedWebhooks>&, std::string* err) {
    return no_outbox(err);
}
bool Store::count_webhooks(const std::string&, const std::string&, uint64_t&, std::string* err) { return no_outbox(err); }
bool Store::put_webhook_target(const std::string&, const std::string&, const std::string&, std::string* err) {
    return no_outbox(err);
}
bool Store::delete_webhook_target(const std::string&, std::string* err) { return no_outbox(err); }
bool Store::load_webhook_targets(std::vector<std::array<std::string, 3>>&, std::string* err) { return no_outbox(err); }
bool Store::expire_webhooks(int64_t, uint64_t&, std::string* err) { return no_outbox(err); }

// ---- SQLite ----

namespace {

const char* const kNextWebhookSeq =
    "INSERT INTO webhook_seq (org, seq) VALUES (?1, 1) ON CONFLICT (org) DO UPDATE SET seq = seq + 1 RETURNING seq";
const char* const kInsertWebhook =
    "INSERT INTO webhook_events (org, generation, seq, id, type, target, body, created_at, next_attempt_at) "
    "VALUES (?1, " WA_LIVE_GENERATION ", ?2, ?3, ?4, ?5, ?6, ?7, ?7)";
#define WA_WEBHOOK_COLUMNS "n, org, seq, id, type, target, body, created_at, next_attempt_at, attempts, state, last_error, " \
    "CASE window_start WHEN 0 THEN created_at ELSE window_start END, window_attempts, replays"
const char* const kDueWebhooks = "SELECT " WA_WEBHOOK_COLUMNS " FROM webhook_events INDEXED BY webhook_events_due "
                                 "WHERE state = 'pending' AND target = ?1 AND next_attempt_at <= ?2 "
                                 "ORDER BY next_attempt_at, n LIMIT ?3";
const char* const kTargetsDue =
    "SELECT DISTINCT target FROM webhook_events WHERE state = 'pending' AND next_attempt_at <= ?1";
const char* const kWebhookDelivered =
    "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1, last_error = '' WHERE n = ?1";
const char* const kWebhookRetry =
    "UPDATE webhook_events SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 "
    "WHERE n = ?1 AND state = 'pending'";
const char* const kWebhookDead =
    "UPDATE webhook_events SET state = 'dead', attempts = attempts + 1, last_error = ?2 WHERE n = ?1";
const char* const kListDead = "SELECT " WA_WEBHOOK_COLUMNS " FROM webhook_events WHERE org = ?1 AND generation = "
                              WA_LIVE_GENERATION " AND state = 'dead' AND n > ?2 ORDER BY n LIMIT ?3";
// ?3: one event id, or NULL for all; ?4: a JSON array of the URLs that may be replayed to, or NULL for any.
#define WA_REPLAY_WHERE "WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND state = 'dead' " \
    "AND (?3 IS NULL OR id = ?3) AND (?4 IS NULL OR target IN (SELECT value FROM json_each(?4)))"
const char* const kReplay = "UPDATE webhook_events SET state = 'pending', next_attempt_at = ?2, window_start = ?2, "
                            "window_attempts = attempts, replays = replays + 1 " WA_REPLAY_WHERE;
const char* const kCountReplayable = "SELECT count(*) FROM webhook_events WHERE org = ?1 AND generation = "
                                     WA_LIVE_GENERATION " AND state = 'dead' AND (?3 IS NULL OR id = ?3)";
const char* const kParkCount = "SELECT org, target, count(*) FROM webhook_events WHERE state = 'pending' AND "
                               "target NOT IN (SELECT value FROM json_each(?1)) GROUP BY org, target ORDER BY org, target";
const char* const kPark = "UPDATE webhook_events SET state = 'dead', last_error = ?2 WHERE state = 'pending' AND "
                          "target NOT IN (SELECT value FROM json_each(?1))";

// A JSON array of strings, for json_each (URLs: no control characters, but escaped all the same).
std::string json_strings(const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); i++) {
        if (i) out += ',';
        out += '"';
        for (unsigned char c : v[i]) {
            if (c == '"' || c == '\\') {
                out += '\\';
                out += static_cast<char>(c);
            } else if (c < 0x20) {
                char b[8];
                snprintf(b, sizeof b, "\\u%04x", c);
                out += b;
            } else {
                out += static_cast<char>(c);
            }
        }
        out += '"';
    }
    return out + "]";
}
const char* const kCountWebhooks = "SELECT count(*) FROM webhook_events WHERE org = ?1 AND generation = "
                                   WA_LIVE_GENERATION " AND (?2 = '' OR state = ?2)";
const char* const kPutWebhookTarget =
    "INSERT INTO webhook_targets (org, generation, url, events, updated_at) VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, ?3, ?4) ON CONFLICT (org, generation) DO UPDATE SET url = excluded.url, events = excluded.events, "
    "updated_at = excluded.updated_at";
const char* const kDeleteWebhookTarget =
    "DELETE FROM webhook_targets WHERE org = ?1 AND generation = " WA_LIVE_GENERATION;
const char* const kLoadWebhookTargets =
    "SELECT t.org, t.url, t.events FROM webhook_targets t JOIN orgs o ON o.org = t.org AND "
    "o.generation = t.generation WHERE o.cleared_at IS NULL ORDER BY t.org";
const char* const kExpireWebhooks = "DELETE FROM webhook_events WHERE state = 'delivered' AND created_at < ?1";

std::string new_event_id() {
    unsigned char b[12];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
    static const char hex[] = "0123456789abcdef";
    std::string id = "evt_";
    for (unsigned char c : b) {
        id += hex[c >> 4];
        id += hex[c & 15];
    }
    return id;
}

bool read_webhooks(Query& q, std::vector<WebhookEvent>& out, std::string& e) {
    for (bool row = true;;) {
        if (!q.next(row, e)) return false;
        if (!row) return true;
        WebhookEvent w;
        w.n = q.int_at(0);
        w.org = q.bytes_at(1);
        w.seq = static_cast<uint64_t>(q.int_at(2));
        w.id = q.bytes_at(3);
        w.type = q.bytes_at(4);
        w.target = q.bytes_at(5);
        w.data = q.bytes_at(6);
        w.created_at_ms = q.int_at(7);
        w.next_attempt_at_ms = q.int_at(8);
        w.attempts = static_cast<uint32_t>(q.int_at(9));
        w.state = q.bytes_at(10);
        w.last_error = q.bytes_at(11);
        w.window_start_ms = q.int_at(12);
        w.window_attempts = static_cast<uint32_t>(q.int_at(13));
        w.replays = static_cast<uint32_t>(q.int_at(14));
        out.push_back(std::move(w));
    }
}

}  // namespace

bool SqliteStore::enqueue_webhook(const std::string& org, const std::string& type, const std::string& data,
                                  const std::vector<std::string>& targets, int64_t now_ms, std::string& id,
                                  uint64_t& seq, std::string* err) {
    return mutate("enqueue_webhook", err, [&](std::string& e) {
        if (!ensure_live(org, e)) return false;
        Query s(*db_, kNextWebhookSeq);
        bool row = false;
        if (!s.text(1, org).next(row, e)) return false;
        if (!row) return fail(e, "no sequence number");
        seq = static_cast<uint64_t>(s.int_at(0));
        id = new_event_id();
        for (const std::string& t : targets) {
            Query q(*db_, kInsertWebhook);
            if (!q.text(1, org).integer(2, static_cast<int64_t>(seq)).text(3, id).text(4, type).text(5, t).text(6, data)
                     .integer(7, now_ms).run(e))
                return false;
        }
        return true;
    });
}

bool SqliteStore::due_webhooks(const std::string& target, int64_t now_ms, size_t limit, const std::vector<int64_t>& skip,
                               std::vector<WebhookEvent>& out, std::string* err) {
    out.clear();
    return read("due_webhooks", err, [&](std::string& e) {
        Query q(*db_, kDueWebhooks);
        std::vector<WebhookEvent> all;
        q.text(1, target).integer(2, now_ms).integer(3, static_cast<int64_t>(limit + skip.size()));
        if (!read_webhooks(q, all, e)) return false;
        for (WebhookEvent& w : all) {
            if (out.size() >= limit) break;
            if (std::find(skip.begin(), skip.end(), w.n) == skip.end()) out.push_back(std::move(w));
        }
        return true;
    });
}

bool SqliteStore::webhook_targets_due(int64_t now_ms, std::vector<std::string>& out, std::string* err) {
    out.clear();
    return read("webhook_targets_due", err, [&](std::string& e) {
        Query q(*db_, kTargetsDue);
        q.integer(1, now_ms);
        for (bool row = true;;) {
            if (!q.next(row, e)) return false;
            if (!row) return true;
            out.push_back(q.bytes_at(0));
        }
    });
}

bool SqliteStore::webhook_delivered(int64_t n, std::string* err) {
    return mutate("webhook_delivered", err, [&](std::string& e) { return Query(*db_, kWebhookDelivered).integer(1, n).run(e); });
}

bool SqliteStore::webhook_retry(int64_t n, int64_t next_ms, const std::string& last_error, std::string* err) {
    return mutate("webhook_retry", err, [&](std::string& e) {
        Query q(*db_, kWebhookRetry);
        return q.integer(1, n).integer(2, next_ms).text(3, last_error).run(e);
    });
}

bool SqliteStore::webhook_dead(int64_t n, const std::string& last_error, std::string* err) {
    return mutate("webhook_dead", err, [&](std::string& e) {
        Query q(*db_, kWebhookDead);
        return q.integer(1, n).text(2, last_error).run(e);
    });
}

bool SqliteStore::list_dead_webhooks(const std::string& org, int64_t after_n, size_t limit,
                                     std::vector<WebhookEvent>& out, std::string* err) {
    out.clear();
    return read("list_dead_webhooks", err, [&](std::string& e) {
        Query q(*db_, kListDead);
        q.text(1, org).integer(2, after_n).integer(3, static_cast<int64_t>(std::min<size_t>(std::max<size_t>(limit, 1), 1000)));
        return read_webhooks(q, out, e);
    });
}

bool SqliteStore::replay_webhooks(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                                  uint64_t& replayed, std::string* err) {
    uint64_t skipped = 0;
    return replay(org, ids, now_ms, nullptr, replayed, skipped, err);
}

bool SqliteStore::replay_webhooks_to(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                                     const std::vector<std::string>& targets, uint64_t& replayed, uint64_t& skipped,
                                     std::string* err) {
    return replay(org, ids, now_ms, &targets, replayed, skipped, err);
}

bool SqliteStore::replay(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                         const std::vector<std::string>* targets, uint64_t& replayed, uint64_t& skipped,
                         std::string* err) {
    replayed = skipped = 0;
    std::string allowed = targets ? json_strings(*targets) : std::string();
    return mutate("replay_webhooks", err, [&](std::string& e) {
        std::vector<const std::string*> each;
        for (const std::string& id : ids) each.push_back(&id);
        if (ids.empty()) each.push_back(nullptr);
        uint64_t matched = 0;
        for (const std::string* id : each) {
            Query c(*db_, kCountReplayable);
            c.text(1, org);
            if (id) c.text(3, *id);
            bool row = false;
            if (!c.next(row, e)) return false;
            if (row) matched += static_cast<uint64_t>(c.int_at(0));
            Query q(*db_, kReplay);
            q.text(1, org).integer(2, now_ms);
            if (id) q.text(3, *id);
            if (targets) q.text(4, allowed);
            if (!q.run(e)) return false;
            replayed += changes(*db_);
        }
        skipped = matched - replayed;
        return true;
    });
}

bool SqliteStore::park_webhooks(const std::vector<std::string>& keep, const std::string& last_error,
                                std::vector<ParkedWebhooks>& parked, std::string* err) {
    parked.clear();
    std::string list = json_strings(keep);
    return mutate("park_webhooks", err, [&](std::string& e) {
        Query c(*db_, kParkCount);
        c.text(1, list);
        for (bool row = true;;) {
            if (!c.next(row, e)) return false;
            if (!row) break;
            parked.push_back({c.bytes_at(0), c.bytes_at(1), static_cast<uint64_t>(c.int_at(2))});
        }
        if (parked.empty()) return true;
        Query q(*db_, kPark);
        return q.text(1, list).text(2, last_error).run(e);
    });
}

bool SqliteStore::count_webhooks(const std::string& org, const std::string& state, uint64_t& n, std::string* err) {
    n = 0;
    return read("count_webhooks", err, [&](std::string& e) {
        Query q(*db_, kCountWebhooks);
        bool row = false;
        if (!q.text(1, org).text(2, state).next(row, e)) return false;
        if (row) n = static_cast<uint64_t>(q.int_at(0));
        return true;
    });
}

bool SqliteStore::put_webhook_target(const std::string& org, const std::string& url, const std::string& events,
                                     std::string* err) {
    return mutate("put_webhook_target", err, [&](std::string& e) {
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutWebhookTarget);
        return q.text(1, org).text(2, url).text(3, events).integer(4, unix_now()).run(e);
    });
}

bool SqliteStore::delete_webhook_target(const std::string& org, std::string* err) {
    return mutate("delete_webhook_target", err, [&](std::string& e) { return run_for_org(kDeleteWebhookTarget, org, e); });
}

bool SqliteStore::load_webhook_targets(std::vector<std::array<std::string, 3>>& out, std::string* err) {
    out.clear();
    return read("load_webhook_targets", err, [&](std::string& e) {
        Query q(*db_, kLoadWebhookTargets);
        for (bool row = true;;) {
            if (!q.next(row, e)) return false;
            if (!row) return true;
            out.push_back({q.bytes_at(0), q.bytes_at(1), q.bytes_at(2)});
        }
    });
}

bool SqliteStore::expire_webhooks(int64_t older_than_ms, uint64_t& deleted, std::string* err) {
    deleted = 0;
    return mutate("expire_webhooks", err,
                  [&](std::string& e) { return delete_before(kExpireWebhooks, older_than_ms, deleted, e); });
}

#endif
