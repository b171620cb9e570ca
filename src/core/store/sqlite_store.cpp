// wa::store::Store on SQLite. The schema, and why rows carry a generation, are in sqlite_schema.cpp.
//
// Atomicity: every public write runs inside its own unit, BEGIN IMMEDIATE ... COMMIT when no transaction is
// open (autocommit use), or SAVEPOINT ... RELEASE inside the helper's group transaction; a failing method
// leaves nothing half-written either way. If SQLite itself rolls the group transaction back after an error
// (disk full, I/O error), every later write and the final commit() fail with that reason, instead of
// silently continuing in autocommit mode while the caller believes its earlier writes are still pending.
//
// SQL text is constant; every value is a bound parameter.
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <ctime>
#include <new>
#include <stdexcept>

#include "core/store/checkpointer.hpp"
#include "core/store/message_rules.hpp"
#include "core/store/read_cache.hpp"
#include "core/store/sqlite_db.hpp"
#include "wa/session.hpp"
#include "wa/store/store.hpp"
#include "wa/api/validate.hpp"

namespace wa::store {

namespace {

using sqlite::Checkpointer;
using sqlite::ReadCache;
using sqlite::Db;
using sqlite::Query;

// The current generation of organization ?1 (NULL, hence no row matches, once it is cleared or unknown).
#define WA_LIVE_GENERATION "(SELECT generation FROM orgs WHERE org = ?1 AND cleared_at IS NULL)"

// ---- organizations ----
const char* const kEnsureLive =
    "INSERT INTO orgs (org, generation, created_at) "
    "SELECT ?1, COALESCE((SELECT MAX(generation) FROM orgs WHERE org = ?1), 0) + 1, ?2 "
    "WHERE NOT EXISTS (SELECT 1 FROM orgs WHERE org = ?1 AND cleared_at IS NULL)";
const char* const kPutOrg =
    "INSERT INTO orgs (org, generation, wanted, state, phone, last_error, state_since, connected_at, created_at, "
    "restricted_until) "
    "VALUES (?1, COALESCE((SELECT MAX(generation) FROM orgs WHERE org = ?1), 0) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
    "ON CONFLICT (org) WHERE cleared_at IS NULL DO UPDATE SET wanted = excluded.wanted, state = excluded.state, "
    "phone = excluded.phone, last_error = excluded.last_error, state_since = excluded.state_since, "
    "connected_at = excluded.connected_at, restricted_until = excluded.restricted_until";
#define WA_CREDENTIAL_COLUMNS                                                                                  \
    "c.noise_priv, c.noise_pub, c.identity_priv, c.identity_pub, c.registration_id, c.signed_prekey_id, "    \
    "c.signed_prekey_priv, c.signed_prekey_pub, c.signed_prekey_sig, c.adv_secret, c.me_jid, c.me_lid, "     \
    "c.platform, c.push_name, c.account, c.next_prekey_id, c.created_at"
const char* const kLoadOrgs =
    "SELECT o.org, o.wanted, o.state, o.phone, o.last_error, o.state_since, o.connected_at, o.restricted_until, "
    "c.org IS NOT NULL, " WA_CREDENTIAL_COLUMNS " "
    "FROM orgs o LEFT JOIN credentials c ON c.org = o.org AND c.generation = o.generation "
    "WHERE o.cleared_at IS NULL ORDER BY o.org";
const char* const kClearOrg = "UPDATE orgs SET cleared_at = ?2 WHERE org = ?1 AND cleared_at IS NULL";
const char* const kUnwantOrg = "UPDATE orgs SET wanted = 0 WHERE org = ?1 AND cleared_at IS NULL";

// Children first: their foreign keys point at orgs.
const char* const kForgetStatements[] = {
    "DELETE FROM credentials WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    "DELETE FROM prekeys WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    "DELETE FROM signal_sessions WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    "DELETE FROM signal_identities WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    "DELETE FROM lid_map WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    "DELETE FROM device_lists WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    "DELETE FROM privacy_tokens WHERE org = ?1 AND generation = " WA_LIVE_GENERATION,
    // messages and idempotency_keys stay: the organization's history, until retention or purge.
};
const char* const kPurgeStatements[] = {
    "DELETE FROM credentials WHERE org = ?1",       "DELETE FROM prekeys WHERE org = ?1",
    "DELETE FROM signal_sessions WHERE org = ?1",   "DELETE FROM signal_identities WHERE org = ?1",
    "DELETE FROM lid_map WHERE org = ?1",           "DELETE FROM messages WHERE org = ?1",
    "DELETE FROM idempotency_keys WHERE org = ?1",  "DELETE FROM device_lists WHERE org = ?1",
    "DELETE FROM privacy_tokens WHERE org = ?1",    "DELETE FROM webhook_events WHERE org = ?1",
    "DELETE FROM webhook_seq WHERE org = ?1",       "DELETE FROM webhook_targets WHERE org = ?1",
    "DELETE FROM orgs WHERE org = ?1",
};

// ---- credentials ----
const char* const kLoadCredentials =
    "SELECT " WA_CREDENTIAL_COLUMNS " FROM credentials c WHERE c.org = ?1 AND c.generation = " WA_LIVE_GENERATION;
const char* const kPutCredentials =
    "INSERT INTO credentials (org, generation, noise_priv, noise_pub, identity_priv, identity_pub, registration_id, "
    "signed_prekey_id, signed_prekey_priv, signed_prekey_pub, signed_prekey_sig, adv_secret, me_jid, me_lid, "
    "platform, push_name, account, next_prekey_id, created_at) "
    "VALUES (?1, " WA_LIVE_GENERATION ", ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) "
    "ON CONFLICT (org, generation) DO UPDATE SET noise_priv = excluded.noise_priv, noise_pub = excluded.noise_pub, "
    "identity_priv = excluded.identity_priv, identity_pub = excluded.identity_pub, "
    "registration_id = excluded.registration_id, signed_prekey_id = excluded.signed_prekey_id, "
    "signed_prekey_priv = excluded.signed_prekey_priv, signed_prekey_pub = excluded.signed_prekey_pub, "
    "signed_prekey_sig = excluded.signed_prekey_sig, adv_secret = excluded.adv_secret, me_jid = excluded.me_jid, "
    "me_lid = excluded.me_lid, platform = excluded.platform, push_name = excluded.push_name, "
    "account = excluded.account, next_prekey_id = excluded.next_prekey_id, created_at = excluded.created_at";

// ---- prekeys ----
const char* const kPutPrekey =
    "INSERT INTO prekeys (org, generation, id, priv, pub, uploaded) VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, ?3, ?4, ?5) ON CONFLICT (org, generation, id) DO UPDATE SET priv = excluded.priv, pub = excluded.pub, "
    "uploaded = excluded.uploaded";
const char* const kLoadPrekey =
    "SELECT id, priv, pub, uploaded FROM prekeys WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND id = ?2";
const char* const kLoadUnuploadedPrekeys =
    "SELECT id, priv, pub, uploaded FROM prekeys WHERE org = ?1 AND generation = " WA_LIVE_GENERATION
    " AND uploaded = 0 ORDER BY id LIMIT ?2";
const char* const kMarkPrekeysUploaded =
    "UPDATE prekeys SET uploaded = 1 WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND id BETWEEN ?2 AND ?3";
const char* const kRemovePrekey = "DELETE FROM prekeys WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND id = ?2";
const char* const kCountPrekeys = "SELECT count(*) FROM prekeys WHERE org = ?1 AND generation = " WA_LIVE_GENERATION
                                  " AND (?2 = 0 OR uploaded = 1)";

// ---- Signal sessions and identities ----
const char* const kLoadSession =
    "SELECT record FROM signal_sessions WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND address = ?2";
const char* const kPutSession =
    "INSERT INTO signal_sessions (org, generation, address, record) VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, ?3) ON CONFLICT (org, generation, address) DO UPDATE SET record = excluded.record";
const char* const kDeleteSession =
    "DELETE FROM signal_sessions WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND address = ?2";
// Addresses in [name + ".", name + "/"): in the BINARY collation of these columns '/' (0x2F) directly
// follows '.' (0x2E), so that range is exactly the addresses starting with name + "." (and it uses the index).
const char* const kSessionAddresses = "SELECT address FROM signal_sessions WHERE org = ?1 AND generation = "
                                      WA_LIVE_GENERATION " AND address >= ?2 AND address < ?3";
const char* const kLoadIdentity =
    "SELECT key FROM signal_identities WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND address = ?2";
const char* const kPutIdentity =
    "INSERT INTO signal_identities (org, generation, address, key) VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, ?3) ON CONFLICT (org, generation, address) DO UPDATE SET key = excluded.key";

// ---- LID mappings: one row per pair, each side unique, so a new pair replaces whatever either side had ----
const char* const kUnmapLid =
    "DELETE FROM lid_map WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND (pn = ?2 OR lid = ?3)";
const char* const kMapLid = "INSERT INTO lid_map (org, generation, pn, lid) VALUES (?1, " WA_LIVE_GENERATION ", ?2, ?3)";
const char* const kLidForPn = "SELECT lid FROM lid_map WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND pn = ?2";
const char* const kPnForLid = "SELECT pn FROM lid_map WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND lid = ?2";

// ---- messages ----
#define WA_MESSAGE_COLUMNS                                                                                    \
    "id, direction, chat_jid, sender_jid, recipient_pn, type, text, raw, status, error_code, error, "        \
    "created_at, sent_at, delivered_at, read_at, played_at, failed_at, server_t, idempotency_key, resend_count"
#define WA_MESSAGES_LIVE "FROM messages WHERE org = ?1 AND generation = " WA_LIVE_GENERATION
const char* const kPutMessage =
    "INSERT INTO messages (org, generation, " WA_MESSAGE_COLUMNS ") VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21) "
    "ON CONFLICT (org, generation, id, direction) DO UPDATE SET chat_jid = excluded.chat_jid, "
    "sender_jid = excluded.sender_jid, recipient_pn = excluded.recipient_pn, type = excluded.type, "
    "text = excluded.text, raw = excluded.raw, status = excluded.status, error_code = excluded.error_code, "
    "error = excluded.error, created_at = excluded.created_at, sent_at = excluded.sent_at, "
    "delivered_at = excluded.delivered_at, read_at = excluded.read_at, played_at = excluded.played_at, "
    "failed_at = excluded.failed_at, server_t = excluded.server_t, idempotency_key = excluded.idempotency_key, "
    "resend_count = excluded.resend_count";
// 'out' sorts after 'in': the outgoing message first when both directions carry the id.
const char* const kLoadMessage =
    "SELECT " WA_MESSAGE_COLUMNS " " WA_MESSAGES_LIVE " AND id = ?2 ORDER BY direction DESC LIMIT 1";
const char* const kLoadStatus =
    "SELECT status, error_code, error, sent_at, delivered_at, read_at, played_at, failed_at " WA_MESSAGES_LIVE
    " AND id = ?2 AND direction = 'out'";
const char* const kUpdateStatus =
    "UPDATE messages SET status = ?3, error_code = ?4, error = ?5, sent_at = ?6, delivered_at = ?7, read_at = ?8, "
    "played_at = ?9, failed_at = ?10 WHERE org = ?1 AND generation = " WA_LIVE_GENERATION
    " AND id = ?2 AND direction = 'out'";
// Pages walk messages_newest (both directions) or messages_newest_by_direction backwards from the cursor. With
// one direction, (created_at, id) <= cursor is the index range and the full comparison is exact.
const char* const kListFirst =
    "SELECT " WA_MESSAGE_COLUMNS " " WA_MESSAGES_LIVE " ORDER BY created_at DESC, id DESC, direction DESC LIMIT ?2";
const char* const kListNext = "SELECT " WA_MESSAGE_COLUMNS " " WA_MESSAGES_LIVE
                              " AND (created_at, id, direction) < (?3, ?4, ?5) "
                              "ORDER BY created_at DESC, id DESC, direction DESC LIMIT ?2";
const char* const kListDirectionFirst = "SELECT " WA_MESSAGE_COLUMNS " " WA_MESSAGES_LIVE
                                        " AND direction = ?3 ORDER BY created_at DESC, id DESC LIMIT ?2";
const char* const kListDirectionNext =
    "SELECT " WA_MESSAGE_COLUMNS " " WA_MESSAGES_LIVE " AND direction = ?3 AND (created_at, id) <= (?4, ?5) "
    "AND (created_at, id, direction) < (?4, ?5, ?6) ORDER BY created_at DESC, id DESC LIMIT ?2";
// The literal terms of the messages_pending partial index, named: without ANALYZE statistics the planner
// would rather walk every outgoing message of the organization in messages_newest_by_direction.
const char* const kPendingMessages =
    "SELECT " WA_MESSAGE_COLUMNS " FROM messages INDEXED BY messages_pending WHERE org = ?1 AND generation = "
    WA_LIVE_GENERATION " AND direction = 'out' AND status = 'pending' ORDER BY created_at, id";
const char* const kCountMessages = "SELECT count(*) " WA_MESSAGES_LIVE " AND (?2 = '' OR direction = ?2)";
// Retention: every generation, cleared ones included.
const char* const kAllGenerations = "SELECT org, generation FROM orgs ORDER BY org, generation";
const char* const kExpireOldMessages = "DELETE FROM messages WHERE org = ?1 AND generation = ?2 AND created_at < ?3";
const char* const kCountOrgMessages = "SELECT count(*) FROM messages WHERE org = ?1";
const char* const kExpireBeyondCap =
    "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE org = ?1 "
    "ORDER BY created_at DESC, id DESC, direction DESC LIMIT -1 OFFSET ?2)";

// ---- idempotency keys (bound as blobs: a NUL byte is part of the key) ----
const char* const kPutIdempotency =
    "INSERT INTO idempotency_keys (org, generation, key, body_hash, message_id, created_at) VALUES (?1, "
    WA_LIVE_GENERATION ", ?2, ?3, ?4, ?5) ON CONFLICT (org, generation, key) DO UPDATE SET "
    "body_hash = excluded.body_hash, message_id = excluded.message_id, created_at = excluded.created_at";
const char* const kLoadIdempotency = "SELECT body_hash, message_id, created_at FROM idempotency_keys WHERE org = ?1 "
                                     "AND generation = " WA_LIVE_GENERATION " AND key = ?2";
const char* const kExpireIdempotency = "DELETE FROM idempotency_keys WHERE created_at < ?1";

// ---- device lists ----
const char* const kPutDevices =
    "INSERT INTO device_lists (org, generation, user_jid, devices, fetched_at) VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, ?3, ?4) ON CONFLICT (org, generation, user_jid) DO UPDATE SET devices = excluded.devices, "
    "fetched_at = excluded.fetched_at";
const char* const kLoadDevices = "SELECT devices, fetched_at FROM device_lists WHERE org = ?1 AND generation = "
                                 WA_LIVE_GENERATION " AND user_jid = ?2";
const char* const kDeleteDevices =
    "DELETE FROM device_lists WHERE org = ?1 AND generation = " WA_LIVE_GENERATION " AND user_jid = ?2";
const char* const kExpireDevices = "DELETE FROM device_lists WHERE fetched_at < ?1";

// ---- privacy tokens: whatsmeow (33cfac5) store/sqlstore/store.go putPrivacyTokens, getPrivacyToken,
// deleteExpiredPrivacyTokens; tctoken.go decides when to read, issue and prune them ----
// A token older than the stored one is ignored; sender_t is left as it is.
const char* const kPutPrivacyToken =
    "INSERT INTO privacy_tokens (org, generation, jid, token, t) VALUES (?1, " WA_LIVE_GENERATION ", ?2, ?3, ?4) "
    "ON CONFLICT (org, generation, jid) DO UPDATE SET token = excluded.token, t = excluded.t "
    "WHERE excluded.t >= privacy_tokens.t";
// Without a token yet: an empty one with t = 0, replaced by the first token that arrives.
const char* const kPutPrivacyTokenSenderT =
    "INSERT INTO privacy_tokens (org, generation, jid, token, t, sender_t) VALUES (?1, " WA_LIVE_GENERATION
    ", ?2, x'', 0, ?3) ON CONFLICT (org, generation, jid) DO UPDATE SET sender_t = excluded.sender_t";
// The jid itself, or its other side through lid_map (user parts there: "pn" <-> "lid"), the newest one: max(t)
// with bare columns takes them from the row holding the maximum (SQLite's documented min/max rule), which reads
// at most two index entries where ORDER BY t DESC LIMIT 1 built a temporary b-tree on every send (a fifth of
// the helper's CPU in bench/send.pl). No row: one row of NULLs.
const char* const kLoadPrivacyToken =
    "SELECT token, max(t), sender_t FROM privacy_tokens WHERE org = ?1 AND generation = " WA_LIVE_GENERATION
    " AND (jid = ?2 OR jid = (CASE "
    "WHEN substr(?2, -4) = '@lid' THEN (SELECT pn || '@s.whatsapp.net' FROM lid_map WHERE org = ?1 AND "
    "generation = " WA_LIVE_GENERATION " AND lid = substr(?2, 1, length(?2) - 4)) "
    "WHEN substr(?2, -15) = '@s.whatsapp.net' THEN (SELECT lid || '@lid' FROM lid_map WHERE org = ?1 AND "
    "generation = " WA_LIVE_GENERATION " AND pn = substr(?2, 1, length(?2) - 15)) END))";
const char* const kExpirePrivacyTokens =
    "DELETE FROM privacy_tokens WHERE t < ?1 AND (sender_t IS NULL OR sender_t < ?1)";

constexpr uint8_t kMaxState = static_cast<uint8_t>(wa::State::Conflict);

int64_t unix_now() {
    return static_cast<int64_t>(std::time(nullptr));
}

bool fail(std::string& e, const std::string& why) {
    e = why;
    return false;
}

void assign_quietly(std::string& e, const char* why) noexcept {
    try {
        e = why;
    } catch (...) {
    }
}

// Runs body() and turns any exception into false with a reason: nothing escapes the public functions.
template <class F>
bool guarded(std::string& e, F&& body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        assign_quietly(e, "out of memory");
    } catch (const std::exception& x) {
        assign_quietly(e, x.what());
    } catch (...) {
        assign_quietly(e, "unexpected exception");
    }
    return false;
}

// Reads a row column by column, checking types and ranges; the first problem names the column, never a value.
class RowReader {
public:
    RowReader(const Query& q, int first_column) : q_(q), col_(first_column) {}

    RowReader& blob(const char* name, std::string& out, size_t exact_size = 0) {
        if (take(name, SQLITE_BLOB)) out = q_.bytes_at(col_ - 1);
        if (why_.empty() && exact_size && out.size() != exact_size)
            why_ = std::string(name) + " is " + std::to_string(out.size()) + " bytes, not " + std::to_string(exact_size);
        return *this;
    }
    RowReader& text(const char* name, std::string& out) {
        if (take(name, SQLITE_TEXT)) out = q_.bytes_at(col_ - 1);
        return *this;
    }
    RowReader& integer(const char* name, int64_t& out, int64_t min = INT64_MIN, int64_t max = INT64_MAX) {
        if (!take(name, SQLITE_INTEGER)) return *this;
        out = q_.int_at(col_ - 1);
        if (out < min || out > max) why_ = std::string(name) + " is out of range";
        return *this;
    }
    template <class T>
    RowReader& bounded(const char* name, T& out, int64_t max) {
        int64_t v = 0;
        integer(name, v, 0, max);
        if (why_.empty()) out = static_cast<T>(v);
        return *this;
    }
    RowReader& u32(const char* name, uint32_t& out) { return bounded(name, out, UINT32_MAX); }
    RowReader& flag(const char* name, bool& out) { return bounded(name, out, 1); }

    bool ok() const { return why_.empty(); }
    const std::string& why() const { return why_; }

private:
    bool take(const char* name, int type) {
        int col = col_++;
        if (!why_.empty()) return false;
        if (q_.type(col) == type) return true;
        why_ = std::string(name) + " has the wrong type";
        return false;
    }

    const Query& q_;
    int col_;
    std::string why_;
};

void wipe(std::string& secret) {
    if (!secret.empty()) OPENSSL_cleanse(&secret[0], secret.size());
    secret.clear();
}

void wipe(Credentials& c) {
    for (std::string* s : {&c.noise_priv, &c.identity_priv, &c.signed_prekey_priv, &c.adv_secret}) wipe(*s);
}

// Columns in WA_CREDENTIAL_COLUMNS order, from `first`. Lengths as Credentials documents them.
bool decode_credentials(const Query& q, int first, Credentials& c, std::string& why) {
    RowReader r(q, first);
    r.blob("noise_priv", c.noise_priv, 32).blob("noise_pub", c.noise_pub, 32);
    r.blob("identity_priv", c.identity_priv, 32).blob("identity_pub", c.identity_pub, 32);
    r.u32("registration_id", c.registration_id).u32("signed_prekey_id", c.signed_prekey_id);
    r.blob("signed_prekey_priv", c.signed_prekey_priv, 32).blob("signed_prekey_pub", c.signed_prekey_pub, 32);
    r.blob("signed_prekey_sig", c.signed_prekey_sig, 64).blob("adv_secret", c.adv_secret, 32);
    r.text("me_jid", c.me_jid).text("me_lid", c.me_lid).text("platform", c.platform).text("push_name", c.push_name);
    r.blob("account", c.account).u32("next_prekey_id", c.next_prekey_id).integer("created_at", c.created_at);
    why = r.why();
    return r.ok();
}

// The same lengths on the way in: never store what could not be loaded again.
std::string credentials_problem(const Credentials& c) {
    struct Field {
        const char* name;
        const std::string& value;
        size_t size;
    };
    const Field fields[] = {
        {"noise_priv", c.noise_priv, 32},
        {"noise_pub", c.noise_pub, 32},
        {"identity_priv", c.identity_priv, 32},
        {"identity_pub", c.identity_pub, 32},
        {"signed_prekey_priv", c.signed_prekey_priv, 32},
        {"signed_prekey_pub", c.signed_prekey_pub, 32},
        {"signed_prekey_sig", c.signed_prekey_sig, 64},
        {"adv_secret", c.adv_secret, 32},
    };
    for (const Field& f : fields) {
        if (f.value.size() != f.size)
            return std::string(f.name) + " is " + std::to_string(f.value.size()) + " bytes, not " +
                   std::to_string(f.size);
    }
    return std::string();
}

bool decode_org(const Query& q, OrgRecord& o, std::string& why) {
    RowReader r(q, 0);
    r.text("org", o.org).flag("wanted", o.wanted).bounded("state", o.state, kMaxState);
    r.text("phone", o.phone).text("last_error", o.last_error);
    r.integer("state_since", o.state_since).integer("connected_at", o.connected_at);
    r.integer("restricted_until", o.restricted_until);
    why = r.why();
    if (r.ok() && !wa::valid_org_id(o.org)) why = "invalid organization id";
    return why.empty();
}

bool decode_prekey(const Query& q, PreKey& k, std::string& why) {
    RowReader r(q, 0);
    r.u32("id", k.id).blob("priv", k.priv, 32).blob("pub", k.pub, 32).flag("uploaded", k.uploaded);
    why = r.why();
    return r.ok();
}

// Columns in WA_MESSAGE_COLUMNS order.
bool decode_message(const Query& q, MessageRecord& m, std::string& why) {
    RowReader r(q, 0);
    int64_t error_code = 0;
    r.text("id", m.id).text("direction", m.direction).text("chat_jid", m.chat_jid).text("sender_jid", m.sender_jid);
    r.text("recipient_pn", m.recipient_pn).text("type", m.type).text("text", m.text).blob("raw", m.raw);
    r.text("status", m.status).integer("error_code", error_code, INT_MIN, INT_MAX).text("error", m.error);
    r.integer("created_at", m.created_at).integer("sent_at", m.sent_at).integer("delivered_at", m.delivered_at);
    r.integer("read_at", m.read_at).integer("played_at", m.played_at).integer("failed_at", m.failed_at);
    r.integer("server_t", m.server_t).blob("idempotency_key", m.idempotency_key);
    r.u32("resend_count", m.resend_count);
    why = r.why();
    if (why.empty()) why = rules::message_problem(m);
    m.error_code = static_cast<int>(error_code);
    return why.empty();
}

// "0,12,33" (empty for no devices).
std::string encode_devices(const std::vector<uint32_t>& devices) {
    std::string out;
    for (uint32_t d : devices) {
        if (!out.empty()) out += ',';
        out += std::to_string(d);
    }
    return out;
}

bool decode_devices(const std::string& text, std::vector<uint32_t>& out) {
    out.clear();
    if (text.empty()) return true;
    uint64_t v = 0;
    size_t digits = 0;
    for (size_t i = 0; i <= text.size(); i++) {
        if (i == text.size() || text[i] == ',') {
            if (digits == 0) return false;
            out.push_back(static_cast<uint32_t>(v));
            v = 0;
            digits = 0;
        } else if (text[i] >= '0' && text[i] <= '9' && digits < 10) {
            v = v * 10 + static_cast<uint64_t>(text[i] - '0');
            digits++;
            if (v > UINT32_MAX) return false;
        } else {
            return false;
        }
    }
    return true;
}

uint64_t changes(Db& db) {
    return static_cast<uint64_t>(sqlite3_changes64(db.handle()));
}

// An org id fit for a log line even when the stored one is not valid.
std::string printable_org(const std::string& raw) {
    std::string shown = raw.substr(0, 64);
    for (char& ch : shown) {
        bool safe = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                    ch == '-';
        if (!safe) ch = '?';
    }
    return shown;
}

// "name.N" with N a device id, else false.
bool device_of(const std::string& address, size_t name_size, uint32_t& device) {
    std::string digits = address.substr(name_size + 1);
    if (digits.empty() || digits.size() > 10) return false;
    uint64_t v = 0;
    for (char ch : digits) {
        if (ch < '0' || ch > '9') return false;
        v = v * 10 + static_cast<uint64_t>(ch - '0');
    }
    if (v > UINT32_MAX) return false;
    device = static_cast<uint32_t>(v);
    return true;
}

class SqliteStore final : public Store {
public:
    explicit SqliteStore(std::unique_ptr<Db> db) : db_(std::move(db)) {}
    // Moves WAL checkpoints to a thread; without it (no thread support) SQLite checkpoints inside commits.
    bool start_checkpointer(std::string& err) {
        checkpointer_ = Checkpointer::start(db_->handle(), db_->path(), err);
        return checkpointer_ != nullptr;
    }
    bool restart_wal_if_due() override { return checkpointer_ && !group_ && checkpointer_->restart_if_due(); }
    CheckpointCounts checkpoints() const override {
        CheckpointCounts c;
        if (checkpointer_) {
            c.threaded = true;
            c.background = checkpointer_->background();
            c.inline_runs = checkpointer_->inline_runs();
            c.restarts = checkpointer_->restarts();
        }
        return c;
    }

    bool begin(std::string* err) override;
    bool commit(std::string* err) override;
    void rollback() override;
    bool in_transaction() const override { return group_; }
    bool set_synchronous(bool full, std::string* err) override {
        std::string e;
        bool ok = db_->exec(full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL", e);
        if (!ok && err) *err = e;
        return ok;
    }

    bool load_orgs(std::vector<OrgRecord>& out, std::vector<std::pair<std::string, std::string>>& corrupt,
                   std::string* err) override;
    bool put_org(const OrgRecord& r, std::string* err) override;
    bool clear_org(const std::string& org, std::string* err) override;
    bool forget_credentials(const std::string& org, std::string* err) override;
    bool purge_org(const std::string& org, std::string* err) override;

    bool load_credentials(const std::string& org, Credentials& out, bool& found, std::string* err) override;
    bool put_credentials(const std::string& org, const Credentials& c, std::string* err) override;

    bool put_prekeys(const std::string& org, const std::vector<PreKey>& keys, std::string* err) override;
    bool load_prekey(const std::string& org, uint32_t id, PreKey& out, bool& found, std::string* err) override;
    bool load_unuploaded_prekeys(const std::string& org, size_t limit, std::vector<PreKey>& out,
                                 std::string* err) override;
    bool mark_prekeys_uploaded(const std::string& org, uint32_t first_id, uint32_t last_id, std::string* err) override;
    bool remove_prekey(const std::string& org, uint32_t id, std::string* err) override;
    bool count_prekeys(const std::string& org, bool uploaded_only, uint32_t& out, std::string* err) override;

    bool load_session(const std::string& org, const std::string& address, std::string& record, bool& found,
                      std::string* err) override;
    bool put_session(const std::string& org, const std::string& address, const std::string& record,
                     std::string* err) override;
    bool delete_session(const std::string& org, const std::string& address, std::string* err) override;
    bool session_devices(const std::string& org, const std::string& name, std::vector<uint32_t>& out,
                         std::string* err) override;
    bool load_identity(const std::string& org, const std::string& address, std::string& key, bool& found,
                       std::string* err) override;
    bool put_identity(const std::string& org, const std::string& address, const std::string& key,
                      std::string* err) override;

    bool put_lid_mapping(const std::string& org, const std::string& pn, const std::string& lid,
                         std::string* err) override;
    bool lid_for_pn(const std::string& org, const std::string& pn, std::string& lid, bool& found,
                    std::string* err) override;
    bool pn_for_lid(const std::string& org, const std::string& lid, std::string& pn, bool& found,
                    std::string* err) override;

    bool put_message(const std::string& org, const MessageRecord& m, std::string* err) override;
    bool load_message(const std::string& org, const std::string& id, MessageRecord& out, bool& found,
                      std::string* err) override;
    bool advance_message_status(const std::string& org, const std::string& id, const std::string& status,
                                int64_t at_ms, int error_code, const std::string& error, bool& changed,
                                std::string* err) override;
    bool list_messages(const std::string& org, const std::string& direction, size_t limit, const std::string& cursor,
                       std::vector<MessageRecord>& items, std::string& next_cursor, std::string* err) override;
    bool pending_messages(const std::string& org, std::vector<MessageRecord>& out, std::string* err) override;
    bool expire_messages(int64_t older_than_ms, uint64_t per_org_cap, uint64_t& deleted, std::string* err) override;
    bool count_messages(const std::string& org, const std::string& direction, uint64_t& n,
                        std::string* err) override;

    bool put_idempotency(const std::string& org, const std::string& key, const std::string& body_hash,
                         const std::string& message_id, int64_t created_at_ms, std::string* err) override;
    bool load_idempotency(const std::string& org, const std::string& key, std::string& body_hash,
                          std::string& message_id, int64_t& created_at_ms, bool& found, std::string* err) override;
    bool expire_idempotency(int64_t older_than_ms, uint64_t& deleted, std::string* err) override;

    bool put_devices(const std::string& org, const std::string& user, const std::vector<uint32_t>& devices,
                     int64_t fetched_at_ms, std::string* err) override;
    bool load_devices(const std::string& org, const std::string& user, std::vector<uint32_t>& devices,
                      int64_t& fetched_at_ms, bool& found, std::string* err) override;
    bool delete_devices(const std::string& org, const std::string& user, std::string* err) override;
    bool expire_devices(int64_t older_than_ms, uint64_t& deleted, std::string* err) override;

    bool put_privacy_token(const std::string& org, const std::string& jid, const std::string& token, int64_t t,
                           std::string* err) override;
    bool put_privacy_token_sender_t(const std::string& org, const std::string& jid, int64_t sender_t,
                                    std::string* err) override;
    bool load_privacy_token(const std::string& org, const std::string& jid, PrivacyToken& out, bool& found,
                            std::string* err) override;
    bool expire_privacy_tokens(int64_t cutoff_t, uint64_t& deleted, std::string* err) override;

#define WA_SQLITE_WEBHOOK_DECLS
#include "core/store/sqlite_webhooks.hpp"
#undef WA_SQLITE_WEBHOOK_DECLS

private:
    template <class F>
    bool mutate(const char* what, std::string* err, F&& body) noexcept;
    template <class F>
    bool read(const char* what, std::string* err, F&& body) noexcept;
    bool open_unit(bool& outer, std::string& e);
    bool close_unit(bool outer, std::string& e);
    void abandon_unit(bool outer) noexcept;
    void note_group_lost(const std::string& e) noexcept;
    bool report(const char* what, bool ok, const std::string& e, std::string* err) noexcept;

    bool ensure_live(const std::string& org, std::string& e);
    bool run_for_org(const char* sql, const std::string& org, std::string& e);
    bool load_one(const char* sql, const std::string& org, const std::string& key, std::string& value, bool& found,
                  std::string& e);
    bool put_prekey(const std::string& org, const PreKey& k, std::string& e);
    bool read_messages(Query& q, std::vector<MessageRecord>& out, std::string& e);
    bool delete_before(const char* sql, int64_t cutoff, uint64_t& deleted, std::string& e);

    std::unique_ptr<Db> db_;
    bool group_ = false;         // begin() opened the helper's group transaction
    std::string group_lost_;     // why SQLite rolled the group transaction back on its own, if it did
    std::unique_ptr<Checkpointer> checkpointer_;  // after db_: stopped before the writer closes
    ReadCache cache_;                             // LID mappings, device lists, privacy tokens
};

// ---- units of work and transactions ----

template <class F>
bool SqliteStore::mutate(const char* what, std::string* err, F&& body) noexcept {
    std::string e;
    bool outer = false;
    bool ok = guarded(e, [&] { return open_unit(outer, e); });
    if (!ok) return report(what, false, e, err);
    ok = guarded(e, [&] { return body(e); });
    if (ok) ok = guarded(e, [&] { return close_unit(outer, e); });
    if (!ok) {
        abandon_unit(outer);
        note_group_lost(e);
    }
    return report(what, ok, e, err);
}

template <class F>
bool SqliteStore::read(const char* what, std::string* err, F&& body) noexcept {
    std::string e;
    bool ok = guarded(e, [&] { return body(e); });
    if (!ok) note_group_lost(e);
    return report(what, ok, e, err);
}

bool SqliteStore::open_unit(bool& outer, std::string& e) {
    if (!group_lost_.empty()) return fail(e, group_lost_);
    outer = db_->autocommit();
    return db_->exec_cached(outer ? "BEGIN IMMEDIATE" : "SAVEPOINT store_unit", e);
}

bool SqliteStore::close_unit(bool outer, std::string& e) {
    return db_->exec_cached(outer ? "COMMIT" : "RELEASE store_unit", e);
}

// Undoes a failed unit, without allocating. Inside the group transaction only the unit's own writes go.
void SqliteStore::abandon_unit(bool outer) noexcept {
    cache_.clear();  // what the rolled-back writes put there
    sqlite3* h = db_->handle();
    if (sqlite3_get_autocommit(h)) return;
    if (outer) {
        sqlite3_exec(h, "ROLLBACK", nullptr, nullptr, nullptr);
    } else if (sqlite3_exec(h, "ROLLBACK TO store_unit", nullptr, nullptr, nullptr) == SQLITE_OK) {
        sqlite3_exec(h, "RELEASE store_unit", nullptr, nullptr, nullptr);
    }
}

void SqliteStore::note_group_lost(const std::string& e) noexcept {
    if (!group_ || !db_->autocommit() || !group_lost_.empty()) return;
    try {
        group_lost_ = "the transaction was rolled back after an error: " + e;
    } catch (...) {
        assign_quietly(group_lost_, "the transaction was rolled back after an error");
    }
}

bool SqliteStore::report(const char* what, bool ok, const std::string& e, std::string* err) noexcept {
    if (ok || !err) return ok;
    try {
        *err = std::string("store: ") + what + ": " + e;
    } catch (...) {
        assign_quietly(*err, "store: out of memory");
    }
    return false;
}

bool SqliteStore::begin(std::string* err) {
    if (group_) return true;
    std::string e;
    bool ok = guarded(e, [&] { return db_->exec_cached("BEGIN IMMEDIATE", e); });
    if (ok) {
        group_ = true;
        group_lost_.clear();
    }
    return report("begin", ok, e, err);
}

bool SqliteStore::commit(std::string* err) {
    if (!group_) return true;
    std::string e;
    bool ok = guarded(e, [&] {
        if (!group_lost_.empty()) return fail(e, group_lost_);
        if (db_->autocommit()) return fail(e, "the transaction was rolled back after an error");
        return db_->exec_cached("COMMIT", e);
    });
    if (!ok) abandon_unit(true);  // a transaction that could not commit is not left open
    group_ = false;
    group_lost_.clear();
    return report("commit", ok, e, err);
}

void SqliteStore::rollback() {
    abandon_unit(true);  // clears the read cache
    group_ = false;
    group_lost_.clear();
}

// ---- organizations ----

bool SqliteStore::ensure_live(const std::string& org, std::string& e) {
    if (!wa::valid_org_id(org)) return fail(e, "invalid organization id");
    if (cache_.live(org)) return true;
    Query q(*db_, kEnsureLive);
    if (!q.text(1, org).integer(2, unix_now()).run(e)) return false;
    cache_.made_live(org);
    return true;
}

bool SqliteStore::run_for_org(const char* sql, const std::string& org, std::string& e) {
    Query q(*db_, sql);
    return q.text(1, org).run(e);
}

bool SqliteStore::load_orgs(std::vector<OrgRecord>& out, std::vector<std::pair<std::string, std::string>>& corrupt,
                            std::string* err) {
    return read("load_orgs", err, [&](std::string& e) {
        out.clear();
        corrupt.clear();
        Query q(*db_, kLoadOrgs);
        for (bool row = true;;) {
            if (!q.next(row, e)) return false;
            if (!row) return true;
            OrgRecord o;
            Credentials c;
            std::string why;
            bool ok = decode_org(q, o, why);
            bool has_credentials = q.int_at(8) != 0;
            if (ok && has_credentials && !decode_credentials(q, 9, c, why)) {
                ok = false;
                why = "credentials: " + why;
            }
            wipe(c);  // decoded only to be checked
            if (ok) out.push_back(std::move(o));
            else corrupt.emplace_back(printable_org(q.bytes_at(0)), why);
        }
    });
}

bool SqliteStore::put_org(const OrgRecord& r, std::string* err) {
    return mutate("put_org", err, [&](std::string& e) {
        if (!wa::valid_org_id(r.org)) return fail(e, "invalid organization id");
        if (r.state > kMaxState) return fail(e, "state " + std::to_string(r.state) + " is out of range");
        Query q(*db_, kPutOrg);
        q.text(1, r.org).integer(2, r.wanted ? 1 : 0).integer(3, r.state).text(4, r.phone).text(5, r.last_error);
        q.integer(6, r.state_since).integer(7, r.connected_at).integer(8, unix_now());
        return q.integer(9, r.restricted_until).run(e);
    });
}

bool SqliteStore::clear_org(const std::string& org, std::string* err) {
    cache_.drop(org);
    return mutate("clear_org", err, [&](std::string& e) {
        Query q(*db_, kClearOrg);
        return q.text(1, org).integer(2, unix_now()).run(e);
    });
}

bool SqliteStore::forget_credentials(const std::string& org, std::string* err) {
    cache_.drop(org);
    return mutate("forget_credentials", err, [&](std::string& e) {
        for (const char* sql : kForgetStatements) {
            if (!run_for_org(sql, org, e)) return false;
        }
        return run_for_org(kUnwantOrg, org, e);
    });
}

bool SqliteStore::purge_org(const std::string& org, std::string* err) {
    cache_.drop(org);
    return mutate("purge_org", err, [&](std::string& e) {
        for (const char* sql : kPurgeStatements) {
            if (!run_for_org(sql, org, e)) return false;
        }
        return true;
    });
}

// ---- credentials ----

bool SqliteStore::load_credentials(const std::string& org, Credentials& out, bool& found, std::string* err) {
    found = false;
    return read("load_credentials", err, [&](std::string& e) {
        Query q(*db_, kLoadCredentials);
        bool row = false;
        if (!q.text(1, org).next(row, e)) return false;
        if (!row) return true;
        Credentials c;
        std::string why;
        bool ok = decode_credentials(q, 0, c, why);
        if (ok) out = c;
        wipe(c);
        if (!ok) return fail(e, "credentials corrupt: " + why);
        found = true;
        return true;
    });
}

bool SqliteStore::put_credentials(const std::string& org, const Credentials& c, std::string* err) {
    return mutate("put_credentials", err, [&](std::string& e) {
        std::string problem = credentials_problem(c);
        if (!problem.empty()) return fail(e, "credentials invalid: " + problem);
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutCredentials);
        q.text(1, org).blob(2, c.noise_priv).blob(3, c.noise_pub).blob(4, c.identity_priv).blob(5, c.identity_pub);
        q.integer(6, c.registration_id).integer(7, c.signed_prekey_id).blob(8, c.signed_prekey_priv);
        q.blob(9, c.signed_prekey_pub).blob(10, c.signed_prekey_sig).blob(11, c.adv_secret).text(12, c.me_jid);
        q.text(13, c.me_lid).text(14, c.platform).text(15, c.push_name).blob(16, c.account);
        return q.integer(17, c.next_prekey_id).integer(18, c.created_at).run(e);
    });
}

// ---- prekeys ----

bool SqliteStore::put_prekey(const std::string& org, const PreKey& k, std::string& e) {
    if (k.priv.size() != 32 || k.pub.size() != 32)
        return fail(e, "prekey " + std::to_string(k.id) + " invalid: keys must be 32 bytes");
    Query q(*db_, kPutPrekey);
    return q.text(1, org).integer(2, k.id).blob(3, k.priv).blob(4, k.pub).integer(5, k.uploaded ? 1 : 0).run(e);
}

bool SqliteStore::put_prekeys(const std::string& org, const std::vector<PreKey>& keys, std::string* err) {
    return mutate("put_prekeys", err, [&](std::string& e) {
        if (!ensure_live(org, e)) return false;
        for (const PreKey& k : keys) {
            if (!put_prekey(org, k, e)) return false;
        }
        return true;
    });
}

bool SqliteStore::load_prekey(const std::string& org, uint32_t id, PreKey& out, bool& found, std::string* err) {
    found = false;
    return read("load_prekey", err, [&](std::string& e) {
        Query q(*db_, kLoadPrekey);
        bool row = false;
        if (!q.text(1, org).integer(2, id).next(row, e)) return false;
        if (!row) return true;
        std::string why;
        PreKey k;
        if (!decode_prekey(q, k, why)) return fail(e, "prekey corrupt: " + why);
        out = std::move(k);
        found = true;
        return true;
    });
}

bool SqliteStore::load_unuploaded_prekeys(const std::string& org, size_t limit, std::vector<PreKey>& out,
                                          std::string* err) {
    return read("load_unuploaded_prekeys", err, [&](std::string& e) {
        out.clear();
        Query q(*db_, kLoadUnuploadedPrekeys);
        q.text(1, org).integer(2, static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX)));
        for (bool row = true;;) {
            if (!q.next(row, e)) return false;
            if (!row) return true;
            PreKey k;
            std::string why;
            if (!decode_prekey(q, k, why)) return fail(e, "prekey corrupt: " + why);
            out.push_back(std::move(k));
        }
    });
}

bool SqliteStore::mark_prekeys_uploaded(const std::string& org, uint32_t first_id, uint32_t last_id,
                                        std::string* err) {
    return mutate("mark_prekeys_uploaded", err, [&](std::string& e) {
        Query q(*db_, kMarkPrekeysUploaded);
        return q.text(1, org).integer(2, first_id).integer(3, last_id).run(e);
    });
}

bool SqliteStore::remove_prekey(const std::string& org, uint32_t id, std::string* err) {
    return mutate("remove_prekey", err, [&](std::string& e) {
        Query q(*db_, kRemovePrekey);
        return q.text(1, org).integer(2, id).run(e);
    });
}

bool SqliteStore::count_prekeys(const std::string& org, bool uploaded_only, uint32_t& out, std::string* err) {
    return read("count_prekeys", err, [&](std::string& e) {
        Query q(*db_, kCountPrekeys);
        bool row = false;
        if (!q.text(1, org).integer(2, uploaded_only ? 1 : 0).next(row, e)) return false;
        out = row ? static_cast<uint32_t>(std::min<int64_t>(q.int_at(0), UINT32_MAX)) : 0;
        return true;
    });
}

// ---- Signal sessions and identities ----

// The single value column of `sql`, keyed by organization (?1) and `key` (?2).
bool SqliteStore::load_one(const char* sql, const std::string& org, const std::string& key, std::string& value,
                           bool& found, std::string& e) {
    found = false;
    Query q(*db_, sql);
    bool row = false;
    if (!q.text(1, org).text(2, key).next(row, e)) return false;
    if (row) value = q.bytes_at(0);
    found = row;
    return true;
}

bool SqliteStore::load_session(const std::string& org, const std::string& address, std::string& record, bool& found,
                               std::string* err) {
    found = false;
    return read("load_session", err,
                [&](std::string& e) { return load_one(kLoadSession, org, address, record, found, e); });
}

bool SqliteStore::put_session(const std::string& org, const std::string& address, const std::string& record,
                              std::string* err) {
    return mutate("put_session", err, [&](std::string& e) {
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutSession);
        return q.text(1, org).text(2, address).blob(3, record).run(e);
    });
}

bool SqliteStore::delete_session(const std::string& org, const std::string& address, std::string* err) {
    return mutate("delete_session", err, [&](std::string& e) {
        Query q(*db_, kDeleteSession);
        return q.text(1, org).text(2, address).run(e);
    });
}

bool SqliteStore::session_devices(const std::string& org, const std::string& name, std::vector<uint32_t>& out,
                                  std::string* err) {
    return read("session_devices", err, [&](std::string& e) {
        out.clear();
        std::string from = name + ".", to = name + "/";
        Query q(*db_, kSessionAddresses);
        q.text(1, org).text(2, from).text(3, to);
        for (bool row = true;;) {
            if (!q.next(row, e)) return false;
            if (!row) break;
            uint32_t device = 0;
            if (device_of(q.bytes_at(0), name.size(), device)) out.push_back(device);
        }
        std::sort(out.begin(), out.end());
        return true;
    });
}

bool SqliteStore::load_identity(const std::string& org, const std::string& address, std::string& key, bool& found,
                                std::string* err) {
    found = false;
    return read("load_identity", err,
                [&](std::string& e) { return load_one(kLoadIdentity, org, address, key, found, e); });
}

bool SqliteStore::put_identity(const std::string& org, const std::string& address, const std::string& key,
                               std::string* err) {
    return mutate("put_identity", err, [&](std::string& e) {
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutIdentity);
        return q.text(1, org).text(2, address).blob(3, key).run(e);
    });
}

// ---- LID mappings ----

bool SqliteStore::put_lid_mapping(const std::string& org, const std::string& pn, const std::string& lid,
                                  std::string* err) {
    return mutate("put_lid_mapping", err, [&](std::string& e) {
        if (!ensure_live(org, e)) return false;
        Query unmap(*db_, kUnmapLid);
        if (!unmap.text(1, org).text(2, pn).text(3, lid).run(e)) return false;
        Query map(*db_, kMapLid);
        if (!map.text(1, org).text(2, pn).text(3, lid).run(e)) return false;
        cache_.mapped(org, pn, lid, true);
        return true;
    });
}

bool SqliteStore::lid_for_pn(const std::string& org, const std::string& pn, std::string& lid, bool& found,
                             std::string* err) {
    found = false;
    if (const std::string* known = cache_.lid_for_pn(org, pn)) {
        lid = *known;
        return found = true;
    }
    bool ok = read("lid_for_pn", err, [&](std::string& e) { return load_one(kLidForPn, org, pn, lid, found, e); });
    if (ok && found) cache_.mapped(org, pn, lid, false);
    return ok;
}

bool SqliteStore::pn_for_lid(const std::string& org, const std::string& lid, std::string& pn, bool& found,
                             std::string* err) {
    found = false;
    if (const std::string* known = cache_.pn_for_lid(org, lid)) {
        pn = *known;
        return found = true;
    }
    bool ok = read("pn_for_lid", err, [&](std::string& e) { return load_one(kPnForLid, org, lid, pn, found, e); });
    if (ok && found) cache_.mapped(org, pn, lid, false);
    return ok;
}

// ---- messages ----

bool SqliteStore::put_message(const std::string& org, const MessageRecord& m, std::string* err) {
    return mutate("put_message", err, [&](std::string& e) {
        std::string problem = rules::message_problem(m);
        if (!problem.empty()) return fail(e, "message invalid: " + problem);
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutMessage);
        q.text(1, org).text(2, m.id).text(3, m.direction).text(4, m.chat_jid).text(5, m.sender_jid);
        q.text(6, m.recipient_pn).text(7, m.type).text(8, m.text).blob(9, m.raw).text(10, m.status);
        q.integer(11, m.error_code).text(12, m.error).integer(13, m.created_at).integer(14, m.sent_at);
        q.integer(15, m.delivered_at).integer(16, m.read_at).integer(17, m.played_at).integer(18, m.failed_at);
        q.integer(19, m.server_t).blob(20, m.idempotency_key).integer(21, m.resend_count);
        return q.run(e);
    });
}

bool SqliteStore::read_messages(Query& q, std::vector<MessageRecord>& out, std::string& e) {
    for (bool row = true;;) {
        if (!q.next(row, e)) return false;
        if (!row) return true;
        MessageRecord m;
        std::string why;
        if (!decode_message(q, m, why)) return fail(e, "message corrupt: " + why);
        out.push_back(std::move(m));
    }
}

bool SqliteStore::load_message(const std::string& org, const std::string& id, MessageRecord& out, bool& found,
                               std::string* err) {
    found = false;
    return read("load_message", err, [&](std::string& e) {
        std::vector<MessageRecord> rows;
        Query q(*db_, kLoadMessage);
        q.text(1, org).text(2, id);
        if (!read_messages(q, rows, e)) return false;
        if (rows.empty()) return true;
        out = std::move(rows[0]);
        found = true;
        return true;
    });
}

bool SqliteStore::advance_message_status(const std::string& org, const std::string& id, const std::string& status,
                                         int64_t at_ms, int error_code, const std::string& error, bool& changed,
                                         std::string* err) {
    changed = false;
    return mutate("advance_message_status", err, [&](std::string& e) {
        rules::StatusState s;
        {
            Query q(*db_, kLoadStatus);
            bool row = false;
            if (!q.text(1, org).text(2, id).next(row, e)) return false;
            if (!row) return rules::valid_status("out", status) || fail(e, "invalid status");
            RowReader r(q, 0);
            int64_t code = 0;
            r.text("status", s.status).integer("error_code", code, INT_MIN, INT_MAX).text("error", s.error);
            r.integer("sent_at", s.sent_at).integer("delivered_at", s.delivered_at).integer("read_at", s.read_at);
            r.integer("played_at", s.played_at).integer("failed_at", s.failed_at);
            if (!r.ok()) return fail(e, "message corrupt: " + r.why());
            if (!rules::valid_status("out", s.status)) return fail(e, "message corrupt: status");
            s.error_code = static_cast<int>(code);
        }
        bool status_changed = false, row_changed = false;
        if (!rules::advance(s, status, at_ms, error_code, error, status_changed, row_changed, e)) return false;
        if (row_changed) {
            Query u(*db_, kUpdateStatus);
            u.text(1, org).text(2, id).text(3, s.status).integer(4, s.error_code).text(5, s.error);
            u.integer(6, s.sent_at).integer(7, s.delivered_at).integer(8, s.read_at).integer(9, s.played_at);
            if (!u.integer(10, s.failed_at).run(e)) return false;
        }
        changed = status_changed;
        return true;
    });
}

bool SqliteStore::list_messages(const std::string& org, const std::string& direction, size_t limit,
                                const std::string& cursor, std::vector<MessageRecord>& items,
                                std::string& next_cursor, std::string* err) {
    return read("list_messages", err, [&](std::string& e) {
        // cursor is read before next_cursor is written: the caller may pass one string as both.
        bool first_page = cursor.empty();
        rules::Cursor after;
        bool cursor_ok = first_page || rules::decode_cursor(cursor, after);
        items.clear();
        next_cursor.clear();
        if (!direction.empty() && !rules::valid_direction(direction)) return fail(e, "invalid direction");
        if (!cursor_ok) return fail(e, "invalid cursor");
        size_t page = std::min(std::max<size_t>(limit, 1), kMaxMessagePage);
        int64_t fetch = static_cast<int64_t>(page) + 1;  // one more tells whether another page follows
        const char* sql = direction.empty() ? (first_page ? kListFirst : kListNext)
                                            : (first_page ? kListDirectionFirst : kListDirectionNext);
        Query q(*db_, sql);
        q.text(1, org).integer(2, fetch);
        int at = 3;  // the cursor's first parameter
        if (!direction.empty()) q.text(at++, direction);
        if (!first_page) q.integer(at, after.created_at).text(at + 1, after.id).text(at + 2, after.direction);
        if (!read_messages(q, items, e)) return false;
        if (items.size() > page) {
            items.resize(page);
            const MessageRecord& last = items.back();
            next_cursor = rules::encode_cursor(rules::Cursor{last.created_at, last.direction, last.id});
        }
        return true;
    });
}

bool SqliteStore::pending_messages(const std::string& org, std::vector<MessageRecord>& out, std::string* err) {
    return read("pending_messages", err, [&](std::string& e) {
        out.clear();
        Query q(*db_, kPendingMessages);
        q.text(1, org);
        return read_messages(q, out, e);
    });
}

bool SqliteStore::expire_messages(int64_t older_than_ms, uint64_t per_org_cap, uint64_t& deleted, std::string* err) {
    deleted = 0;
    return mutate("expire_messages", err, [&](std::string& e) {
        std::vector<std::pair<std::string, int64_t>> generations;
        {
            Query q(*db_, kAllGenerations);
            for (bool row = true;;) {
                if (!q.next(row, e)) return false;
                if (!row) break;
                generations.emplace_back(q.bytes_at(0), q.int_at(1));
            }
        }
        uint64_t n = 0;
        for (const auto& g : generations) {
            Query q(*db_, kExpireOldMessages);
            if (!q.text(1, g.first).integer(2, g.second).integer(3, older_than_ms).run(e)) return false;
            n += changes(*db_);
        }
        for (size_t i = 0; per_org_cap && i < generations.size(); i++) {
            if (i > 0 && generations[i].first == generations[i - 1].first) continue;  // once per organization
            const std::string& org = generations[i].first;
            bool row = false;
            int64_t count = 0;
            {
                Query q(*db_, kCountOrgMessages);
                if (!q.text(1, org).next(row, e)) return false;
                count = row ? q.int_at(0) : 0;
            }
            if (static_cast<uint64_t>(count) <= per_org_cap) continue;
            Query q(*db_, kExpireBeyondCap);
            int64_t offset = static_cast<int64_t>(std::min<uint64_t>(per_org_cap, INT64_MAX));
            if (!q.text(1, org).integer(2, offset).run(e)) return false;
            n += changes(*db_);
        }
        deleted = n;
        return true;
    });
}

bool SqliteStore::count_messages(const std::string& org, const std::string& direction, uint64_t& n,
                                 std::string* err) {
    n = 0;
    return read("count_messages", err, [&](std::string& e) {
        if (!direction.empty() && !rules::valid_direction(direction)) return fail(e, "invalid direction");
        Query q(*db_, kCountMessages);
        bool row = false;
        if (!q.text(1, org).text(2, direction).next(row, e)) return false;
        n = row ? static_cast<uint64_t>(q.int_at(0)) : 0;
        return true;
    });
}

bool SqliteStore::delete_before(const char* sql, int64_t cutoff, uint64_t& deleted, std::string& e) {
    Query q(*db_, sql);
    if (!q.integer(1, cutoff).run(e)) return false;
    deleted = changes(*db_);
    return true;
}

// ---- idempotency keys ----

bool SqliteStore::put_idempotency(const std::string& org, const std::string& key, const std::string& body_hash,
                                  const std::string& message_id, int64_t created_at_ms, std::string* err) {
    return mutate("put_idempotency", err, [&](std::string& e) {
        if (key.empty() || key.size() > kMaxIdempotencyKeyBytes)
            return fail(e, "idempotency key must be 1.." + std::to_string(kMaxIdempotencyKeyBytes) + " bytes");
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutIdempotency);
        q.text(1, org).blob(2, key).blob(3, body_hash).text(4, message_id).integer(5, created_at_ms);
        return q.run(e);
    });
}

bool SqliteStore::load_idempotency(const std::string& org, const std::string& key, std::string& body_hash,
                                   std::string& message_id, int64_t& created_at_ms, bool& found, std::string* err) {
    found = false;
    return read("load_idempotency", err, [&](std::string& e) {
        Query q(*db_, kLoadIdempotency);
        bool row = false;
        if (!q.text(1, org).blob(2, key).next(row, e)) return false;
        if (!row) return true;
        std::string hash, id;
        int64_t created = 0;
        RowReader r(q, 0);
        r.blob("body_hash", hash).text("message_id", id).integer("created_at", created);
        if (!r.ok()) return fail(e, "idempotency key corrupt: " + r.why());
        body_hash = std::move(hash);
        message_id = std::move(id);
        created_at_ms = created;
        found = true;
        return true;
    });
}

bool SqliteStore::expire_idempotency(int64_t older_than_ms, uint64_t& deleted, std::string* err) {
    deleted = 0;
    return mutate("expire_idempotency", err,
                  [&](std::string& e) { return delete_before(kExpireIdempotency, older_than_ms, deleted, e); });
}

// ---- device lists ----

bool SqliteStore::put_devices(const std::string& org, const std::string& user, const std::vector<uint32_t>& devices,
                              int64_t fetched_at_ms, std::string* err) {
    return mutate("put_devices", err, [&](std::string& e) {
        if (user.empty()) return fail(e, "empty user");
        if (!ensure_live(org, e)) return false;
        std::string list = encode_devices(devices);
        Query q(*db_, kPutDevices);
        if (!q.text(1, org).text(2, user).text(3, list).integer(4, fetched_at_ms).run(e)) return false;
        cache_.devices_stored(org, user, devices, fetched_at_ms);
        return true;
    });
}

bool SqliteStore::load_devices(const std::string& org, const std::string& user, std::vector<uint32_t>& devices,
                               int64_t& fetched_at_ms, bool& found, std::string* err) {
    found = false;
    if (const ReadCache::Devices* known = cache_.devices(org, user)) {
        devices = known->ids;
        fetched_at_ms = known->fetched_at_ms;
        return found = true;
    }
    return read("load_devices", err, [&](std::string& e) {
        Query q(*db_, kLoadDevices);
        bool row = false;
        if (!q.text(1, org).text(2, user).next(row, e)) return false;
        if (!row) return true;
        std::string list;
        int64_t fetched = 0;
        RowReader r(q, 0);
        r.text("devices", list).integer("fetched_at", fetched);
        std::vector<uint32_t> ids;
        if (!r.ok()) return fail(e, "device list corrupt: " + r.why());
        if (!decode_devices(list, ids)) return fail(e, "device list corrupt: devices");
        cache_.devices_stored(org, user, ids, fetched);
        devices = std::move(ids);
        fetched_at_ms = fetched;
        found = true;
        return true;
    });
}

bool SqliteStore::delete_devices(const std::string& org, const std::string& user, std::string* err) {
    return mutate("delete_devices", err, [&](std::string& e) {
        Query q(*db_, kDeleteDevices);
        if (!q.text(1, org).text(2, user).run(e)) return false;
        cache_.devices_deleted(org, user);
        return true;
    });
}

bool SqliteStore::expire_devices(int64_t older_than_ms, uint64_t& deleted, std::string* err) {
    deleted = 0;
    return mutate("expire_devices", err,
                  [&](std::string& e) {
                      if (!delete_before(kExpireDevices, older_than_ms, deleted, e)) return false;
                      if (deleted) cache_.devices_expired();
                      return true;
                  });
}

// ---- privacy tokens ----

bool SqliteStore::put_privacy_token(const std::string& org, const std::string& jid, const std::string& token,
                                    int64_t t, std::string* err) {
    return mutate("put_privacy_token", err, [&](std::string& e) {
        if (jid.empty()) return fail(e, "empty jid");
        if (token.empty()) return fail(e, "empty token");
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutPrivacyToken);
        if (!q.text(1, org).text(2, jid).blob(3, token).integer(4, t).run(e)) return false;
        cache_.tokens_changed(org);
        return true;
    });
}

bool SqliteStore::put_privacy_token_sender_t(const std::string& org, const std::string& jid, int64_t sender_t,
                                             std::string* err) {
    return mutate("put_privacy_token_sender_t", err, [&](std::string& e) {
        if (jid.empty()) return fail(e, "empty jid");
        if (!ensure_live(org, e)) return false;
        Query q(*db_, kPutPrivacyTokenSenderT);
        if (!q.text(1, org).text(2, jid).integer(3, sender_t).run(e)) return false;
        cache_.tokens_changed(org);
        return true;
    });
}

bool SqliteStore::load_privacy_token(const std::string& org, const std::string& jid, PrivacyToken& out, bool& found,
                                     std::string* err) {
    found = false;
    if (const std::optional<PrivacyToken>* known = cache_.token(org, jid)) {
        if (*known) out = **known;
        found = known->has_value();
        return true;
    }
    return read("load_privacy_token", err, [&](std::string& e) {
        Query q(*db_, kLoadPrivacyToken);
        bool row = false;
        if (!q.text(1, org).text(2, jid).next(row, e)) return false;
        if (!row || q.type(1) == SQLITE_NULL) {
            cache_.token_read(org, jid, std::nullopt);
            return true;
        }
        PrivacyToken p;
        RowReader r(q, 0);
        r.blob("token", p.token).integer("t", p.t);
        if (r.ok() && q.type(2) != SQLITE_NULL) r.integer("sender_t", p.sender_t);
        if (!r.ok()) return fail(e, "privacy token corrupt: " + r.why());
        cache_.token_read(org, jid, p);
        out = std::move(p);
        found = true;
        return true;
    });
}

bool SqliteStore::expire_privacy_tokens(int64_t cutoff_t, uint64_t& deleted, std::string* err) {
    deleted = 0;
    return mutate("expire_privacy_tokens", err,
                  [&](std::string& e) {
                      if (!delete_before(kExpirePrivacyTokens, cutoff_t, deleted, e)) return false;
                      if (deleted) cache_.tokens_expired();
                      return true;
                  });
}

}  // namespace

std::unique_ptr<Store> open_sqlite_store(const std::string& dir, bool full_check, std::string* err) {
    std::string e;
    std::unique_ptr<Store> store;
    bool ok = guarded(e, [&] {
        std::unique_ptr<Db> db = Db::open(dir, full_check, e);
        if (!db) return false;
        auto s = std::make_unique<SqliteStore>(std::move(db));
        std::string why;
        s->start_checkpointer(why);  // best effort: SQLite's own checkpoints otherwise
        store = std::move(s);
        return true;
    });
    if (!ok && err) {
        try {
            *err = "store: " + e;
        } catch (...) {
            assign_quietly(*err, "store: out of memory");
        }
    }
    return store;
}

#include "core/store/sqlite_webhooks.hpp"

}  // namespace wa::store
