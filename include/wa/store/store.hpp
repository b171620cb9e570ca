// The helper's store: everything an organization keeps (desired state, credentials, prekeys, later Signal
// sessions, identities, LID mappings, messages, idempotency keys, webhook events), behind one interface.
// The default backend is one SQLite database in whatsapp_state_dir (store/sqlite_store.cpp); the schema is
// keyed by organization id everywhere so a PostgreSQL backend can share it.
//
// Writes are grouped: the helper calls begin() lazily on the first write of an event-loop pass and commit()
// once at the end of the pass (one transaction, one fsync). What promises durability (an answer that a
// command is done, a receipt sent to WhatsApp) waits until commit() has returned true.
// No nginx types; only the helper's thread calls it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wa::store {

// One organization's desired state and last published status (what survives a restart).
struct OrgRecord {
    std::string org;
    bool wanted = false;        // start-session asked for and not undone
    uint8_t state = 0;          // wa::State of the last status (informational)
    std::string phone;          // E.164 digits once linked
    std::string last_error;
    int64_t state_since = 0;    // unix seconds
    int64_t connected_at = 0;   // unix seconds, 0 = never
    int64_t restricted_until = 0;  // unix seconds: WhatsApp restricts new sends until then (0 = not restricted)
};

// The device identity of a linked (or linking) organization. Raw 32-byte Curve25519 keys, no 0x05 prefix.
struct Credentials {
    std::string noise_priv, noise_pub;
    std::string identity_priv, identity_pub;
    uint32_t registration_id = 0;
    uint32_t signed_prekey_id = 1;
    std::string signed_prekey_priv, signed_prekey_pub, signed_prekey_sig;  // sig: 64 bytes
    std::string adv_secret;      // 32 bytes
    std::string me_jid;          // "PN:dev@s.whatsapp.net", empty until paired
    std::string me_lid;          // "LID:dev@lid"
    std::string platform;        // from pair-success
    std::string push_name;
    std::string account;         // ADVSignedDeviceIdentity bytes (with accountSignatureKey)
    uint32_t next_prekey_id = 1; // first prekey id not generated yet
    int64_t created_at = 0;
};

struct PreKey {
    uint32_t id = 0;
    std::string priv, pub;  // 32 raw bytes each
    bool uploaded = false;
};

// A message sent or received by an organization (GET /api/messages). Times are unix milliseconds, 0 = not
// (yet) known, except server_t: the stanza's "t" attribute, unix seconds.
struct MessageRecord {
    std::string id;               // WhatsApp's message id, 1..128 bytes
    std::string direction;        // "out" | "in"
    std::string chat_jid;
    std::string sender_jid;
    std::string recipient_pn;     // E.164 digits, for "out"
    std::string type;             // text, image, document, audio, video, sticker, reaction, contact, location,
                                  // protocol, unknown
    std::string text;
    std::string raw;              // the serialized message, for types other than text
    std::string status;           // out: pending|sent|delivered|read|played|failed; in: received
    int error_code = 0;           // the server's ack error (463, 479, ...) when failed
    std::string error;
    int64_t created_at = 0, sent_at = 0, delivered_at = 0, read_at = 0, played_at = 0, failed_at = 0;
    int64_t server_t = 0;
    std::string idempotency_key;  // bytes, up to 128
    uint32_t resend_count = 0;
};

// A contact's trusted-contact privacy token and when we last issued ours to that contact: the row whatsmeow
// keeps in whatsmeow_privacy_tokens (store/store.go PrivacyToken: Token, Timestamp, SenderTimestamp).
struct PrivacyToken {
    std::string token;     // the contact's token (bytes); empty when only sender_t is known
    int64_t t = 0;         // the token's "t" (unix seconds), 0 = none received
    int64_t sender_t = 0;  // when we last issued ours (unix seconds), 0 = never; its 7-day bucket is
                           // sender_t / 604800 (whatsmeow tctoken.go, tcTokenBucketDuration)
};

// One webhook event for one target URL (schema 3). `data` is the event's JSON "data" object; the envelope is
// rebuilt from the other fields (wa::webhook::envelope), the same bytes on every attempt.
struct WebhookEvent {
    int64_t n = 0;                // row number: what the delivery marks
    std::string org;
    uint64_t seq = 0;             // per organization, from 1, without gaps
    std::string id;               // unique, the same for every target and attempt
    std::string type;
    std::string target;           // the URL
    std::string data;
    int64_t created_at_ms = 0, next_attempt_at_ms = 0;
    uint32_t attempts = 0;
    std::string state;            // pending | delivered | dead
    std::string last_error;
    // Schema 5: the retry window. It opens at created_at and again at every replay; attempts keep counting
    // across windows, window_attempts is how many were made before the current one opened.
    int64_t window_start_ms = 0;
    uint32_t window_attempts = 0;
    uint32_t replays = 0;
};

// Pending rows parked as dead because their URL is no longer a target (park_webhooks).
struct ParkedWebhooks {
    std::string org, target;
    uint64_t n = 0;
};

constexpr size_t kMaxMessageIdBytes = 128;
constexpr size_t kMaxIdempotencyKeyBytes = 128;
constexpr size_t kMaxMessagePage = 1000;

// Whether list_messages would accept `cursor` (empty = first page): lets the HTTP layer answer 400 for a
// cursor that was not one of ours instead of a storage error.
bool message_cursor_valid(std::string_view cursor);

class Store {
public:
    virtual ~Store() = default;

    // ---- transactions (group commit) ----
    virtual bool begin(std::string* err) = 0;   // no-op when a transaction is already open
    virtual bool commit(std::string* err) = 0;  // no-op (true) when none is open
    virtual void rollback() = 0;
    virtual bool in_transaction() const = 0;
    // full: a commit is on disk when it returns (an fsync per commit, which stalls the caller's loop);
    // normal (the default): committed transactions survive any process crash, a power loss may lose the last
    // ones (SQLite's recommended setting with write-ahead logging).
    virtual bool set_synchronous(bool full, std::string* err) = 0;
    // Checkpoints of the write-ahead log: run by a thread of the store (background) or, when that thread is
    // missing or behind, by a commit (inline, which stalls its caller).
    struct CheckpointCounts {
        bool threaded = false;
        uint64_t background = 0, inline_runs = 0, restarts = 0;
    };
    virtual CheckpointCounts checkpoints() const { return {}; }
    // Outside a transaction, when the caller's pending work is out (the helper: at the end of a pass): copies
    // the WAL's tail into the database when commits found the WAL long, so that it starts over; the fsyncs
    // that costs stall the caller here rather than inside a commit that sends are waiting for. True when it ran.
    virtual bool restart_wal_if_due() { return false; }

    // ---- organizations ----
    // Every organization that is not cleared or purged. Rows that fail to decode are returned in
    // `corrupt` (org id + reason) and never in `out`.
    virtual bool load_orgs(std::vector<OrgRecord>& out, std::vector<std::pair<std::string, std::string>>& corrupt,
                           std::string* err) = 0;
    virtual bool put_org(const OrgRecord& r, std::string* err) = 0;
    // clear-session: the organization's rows are kept for inspection, marked cleared, never loaded again.
    // A later put_org/put_credentials for the same id starts a fresh generation.
    virtual bool clear_org(const std::string& org, std::string* err) = 0;
    // logout: delete the credentials and every key (prekeys, Signal data, LID mappings, device lists, privacy
    // tokens); the org row stays (wanted=false), and so do its messages and idempotency keys: they are the
    // organization's history, kept until retention or purge_org removes them.
    virtual bool forget_credentials(const std::string& org, std::string* err) = 0;
    // POST /api/purge: delete every row of the organization, cleared generations included.
    virtual bool purge_org(const std::string& org, std::string* err) = 0;

    // ---- credentials ----
    virtual bool load_credentials(const std::string& org, Credentials& out, bool& found, std::string* err) = 0;
    virtual bool put_credentials(const std::string& org, const Credentials& c, std::string* err) = 0;

    // ---- prekeys ----
    virtual bool put_prekeys(const std::string& org, const std::vector<PreKey>& keys, std::string* err) = 0;
    virtual bool load_prekey(const std::string& org, uint32_t id, PreKey& out, bool& found, std::string* err) = 0;
    // Keys not uploaded yet, lowest id first, at most `limit`.
    virtual bool load_unuploaded_prekeys(const std::string& org, size_t limit, std::vector<PreKey>& out,
                                         std::string* err) = 0;
    virtual bool mark_prekeys_uploaded(const std::string& org, uint32_t first_id, uint32_t last_id,
                                       std::string* err) = 0;
    virtual bool remove_prekey(const std::string& org, uint32_t id, std::string* err) = 0;
    virtual bool count_prekeys(const std::string& org, bool uploaded_only, uint32_t& out, std::string* err) = 0;

    // ---- Signal protocol state (libsignal-protocol-c's stores sit on these) ----
    // address = "name.device" as libsignal names it (name = user, or user_1 for a LID).
    virtual bool load_session(const std::string& org, const std::string& address, std::string& record, bool& found,
                              std::string* err) = 0;
    virtual bool put_session(const std::string& org, const std::string& address, const std::string& record,
                             std::string* err) = 0;
    virtual bool delete_session(const std::string& org, const std::string& address, std::string* err) = 0;
    // Device ids with a session for `name` (every "name.N" address).
    virtual bool session_devices(const std::string& org, const std::string& name, std::vector<uint32_t>& out,
                                 std::string* err) = 0;
    virtual bool load_identity(const std::string& org, const std::string& address, std::string& key, bool& found,
                               std::string* err) = 0;
    virtual bool put_identity(const std::string& org, const std::string& address, const std::string& key,
                              std::string* err) = 0;

    // ---- LID <-> phone-number mappings (user parts only, e.g. "573001234567" <-> "123456789012345") ----
    virtual bool put_lid_mapping(const std::string& org, const std::string& pn, const std::string& lid,
                                 std::string* err) = 0;
    virtual bool lid_for_pn(const std::string& org, const std::string& pn, std::string& lid, bool& found,
                            std::string* err) = 0;
    virtual bool pn_for_lid(const std::string& org, const std::string& lid, std::string& pn, bool& found,
                            std::string* err) = 0;

    // ---- messages (schema 2) ----
    // Every read sees the live generation only (a cleared organization's messages stay in the file, unread).
    // Inserts, or replaces the row with the same (org, id, direction).
    virtual bool put_message(const std::string& org, const MessageRecord& m, std::string* err) = 0;
    // By id; when both directions carry the id, the outgoing message.
    virtual bool load_message(const std::string& org, const std::string& id, MessageRecord& out, bool& found,
                              std::string* err) = 0;
    // A status for outgoing message `id`, forward only: pending < sent < delivered < read < played. "failed"
    // (with error_code, error, failed_at) only from pending or sent. An older status arriving late (delivered
    // after read) leaves the status as it is and only fills its own timestamp when missing; so does any
    // receipt for a failed message. `changed` says whether the status moved. An unknown id (or an incoming
    // message's) is no error: nothing changes. An invalid status is an error.
    virtual bool advance_message_status(const std::string& org, const std::string& id, const std::string& status,
                                        int64_t at_ms, int error_code, const std::string& error, bool& changed,
                                        std::string* err) = 0;
    // Newest first by (created_at, id, direction); direction "out", "in" or "" (both). `limit` is clamped to
    // 1..kMaxMessagePage. `cursor` is "" for the first page, else a next_cursor from an earlier call; it is a
    // position, not an offset, so messages stored between two pages never make one repeat or go missing.
    // next_cursor is "" after the last page; it may be the same string as cursor.
    virtual bool list_messages(const std::string& org, const std::string& direction, size_t limit,
                               const std::string& cursor, std::vector<MessageRecord>& items, std::string& next_cursor,
                               std::string* err) = 0;
    // Outgoing messages still pending (written, no server ack: to resend after a crash), oldest first.
    virtual bool pending_messages(const std::string& org, std::vector<MessageRecord>& out, std::string* err) = 0;
    // Retention, over every organization and generation: deletes messages created before older_than_ms, then
    // the oldest beyond the newest per_org_cap of each organization (0 = no cap).
    virtual bool expire_messages(int64_t older_than_ms, uint64_t per_org_cap, uint64_t& deleted,
                                 std::string* err) = 0;
    // direction "out", "in" or "" (both).
    virtual bool count_messages(const std::string& org, const std::string& direction, uint64_t& n,
                                std::string* err) = 0;

    // ---- idempotency keys (schema 2) ----
    // key: opaque bytes, 1..kMaxIdempotencyKeyBytes (NUL allowed); body_hash: bytes. put replaces an existing
    // key (the caller checks first: an expired key not deleted yet is reused).
    virtual bool put_idempotency(const std::string& org, const std::string& key, const std::string& body_hash,
                                 const std::string& message_id, int64_t created_at_ms, std::string* err) = 0;
    virtual bool load_idempotency(const std::string& org, const std::string& key, std::string& body_hash,
                                  std::string& message_id, int64_t& created_at_ms, bool& found, std::string* err) = 0;
    // Every organization and generation.
    virtual bool expire_idempotency(int64_t older_than_ms, uint64_t& deleted, std::string* err) = 0;

    // ---- device list cache (usync results; schema 2) ----
    // user: the user's JID without a device, as whatsmeow keys its device cache (JID.ToNonAD()):
    // "573001234567@s.whatsapp.net" or "123456789012345@lid"; PN and LID lists are separate rows. devices: the
    // device ids as usync listed them (an empty list is kept: a user without devices). The caller decides when
    // fetched_at_ms is too old.
    virtual bool put_devices(const std::string& org, const std::string& user, const std::vector<uint32_t>& devices,
                             int64_t fetched_at_ms, std::string* err) = 0;
    virtual bool load_devices(const std::string& org, const std::string& user, std::vector<uint32_t>& devices,
                              int64_t& fetched_at_ms, bool& found, std::string* err) = 0;
    virtual bool delete_devices(const std::string& org, const std::string& user, std::string* err) = 0;
    // Lists fetched before older_than_ms, every organization and generation.
    virtual bool expire_devices(int64_t older_than_ms, uint64_t& deleted, std::string* err) = 0;

    // ---- privacy tokens (whatsmeow tctoken.go; schema 2) ----
    // jid: the contact without a device, its LID when the mapping is known ("123456789012345@lid"), else its PN
    // ("573001234567@s.whatsapp.net"), as whatsmeow's resolveTCTokenStorageLID picks it.
    // The contact's token from a privacy_token notification or history sync; like whatsmeow's PutPrivacyTokens
    // it is ignored when older than the stored one, and it keeps sender_t.
    virtual bool put_privacy_token(const std::string& org, const std::string& jid, const std::string& token,
                                   int64_t t, std::string* err) = 0;
    // We issued our token to `jid` at sender_t (unix seconds): the bucket of the last issuance.
    virtual bool put_privacy_token_sender_t(const std::string& org, const std::string& jid, int64_t sender_t,
                                            std::string* err) = 0;
    // found when anything is stored for jid. Like whatsmeow's GetPrivacyToken, a row stored under the other
    // side of a known LID <-> PN mapping is found too (the newer one when both exist).
    virtual bool load_privacy_token(const std::string& org, const std::string& jid, PrivacyToken& out, bool& found,
                                    std::string* err) = 0;
    // whatsmeow's DeleteExpiredPrivacyTokens: rows whose token is older than cutoff_t (unix seconds), unless we
    // issued ours at or after cutoff_t. Every organization and generation.
    virtual bool expire_privacy_tokens(int64_t cutoff_t, uint64_t& deleted, std::string* err) = 0;

    // ---- webhook outbox (schema 3; store/sqlite_webhooks.inc) ----
    // Default bodies fail: test doubles that do not store events need not implement them.
    // Takes the organization's next seq and inserts one pending row per target (none: the seq is still used,
    // so receivers never see a gap caused by a filter). `id` is set to the event's new id.
    virtual bool enqueue_webhook(const std::string& org, const std::string& type, const std::string& data,
                                 const std::vector<std::string>& targets, int64_t now_ms, std::string& id,
                                 uint64_t& seq, std::string* err);
    // Pending rows of `target` due at now_ms, oldest first, at most `limit`, skipping rows numbered in `skip`.
    virtual bool due_webhooks(const std::string& target, int64_t now_ms, size_t limit, const std::vector<int64_t>& skip,
                              std::vector<WebhookEvent>& out, std::string* err);
    // Targets with pending rows due at now_ms.
    virtual bool webhook_targets_due(int64_t now_ms, std::vector<std::string>& out, std::string* err);
    // The outcome of an attempt: delivered, retry at next_ms (attempts + 1), or dead.
    virtual bool webhook_delivered(int64_t n, std::string* err);
    virtual bool webhook_retry(int64_t n, int64_t next_ms, const std::string& last_error, std::string* err);
    virtual bool webhook_dead(int64_t n, const std::string& last_error, std::string* err);
    // Dead rows of the organization's live generation by seq, `after_n` = 0 for the first page.
    virtual bool list_dead_webhooks(const std::string& org, int64_t after_n, size_t limit,
                                    std::vector<WebhookEvent>& out, std::string* err);
    // Dead rows back to pending, due now: every one of the organization's (ids empty) or those with these ids.
    virtual bool replay_webhooks(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                                 uint64_t& replayed, std::string* err);
    // The same, for rows whose URL is one of `targets` only; `skipped`: dead rows it matched otherwise (schema 5).
    // A replay opens a fresh retry window at now_ms (window_start, window_attempts = attempts, replays + 1);
    // id, seq, created_at (the envelope's timestamp) and the attempt count stay.
    virtual bool replay_webhooks_to(const std::string& org, const std::vector<std::string>& ids, int64_t now_ms,
                                    const std::vector<std::string>& targets, uint64_t& replayed, uint64_t& skipped,
                                    std::string* err);
    // Every pending row (any organization) whose URL is not in `keep` becomes dead with `last_error`; what was
    // parked, by organization and URL, in `parked`.
    virtual bool park_webhooks(const std::vector<std::string>& keep, const std::string& last_error,
                               std::vector<ParkedWebhooks>& parked, std::string* err);
    virtual bool count_webhooks(const std::string& org, const std::string& state, uint64_t& n, std::string* err);
    // POST /api/webhooks: the organization's own URL and event list (events "" = all) instead of the config's.
    virtual bool put_webhook_target(const std::string& org, const std::string& url, const std::string& events,
                                    std::string* err);
    virtual bool delete_webhook_target(const std::string& org, std::string* err);
    // Every live organization's override: (org, url, events).
    virtual bool load_webhook_targets(std::vector<std::array<std::string, 3>>& out, std::string* err);
    // Delivered rows created before older_than_ms, every organization and generation.
    virtual bool expire_webhooks(int64_t older_than_ms, uint64_t& deleted, std::string* err);
};

// Opens (creating if needed) <dir>/whatsapp.db: WAL, synchronous=FULL, busy timeout, foreign keys, schema
// migrations to the newest version. Runs PRAGMA quick_check (integrity_check when `full_check`); a database
// that fails it is never reset: returns nullptr with *err saying why, so the helper can report it.
std::unique_ptr<Store> open_sqlite_store(const std::string& dir, bool full_check, std::string* err);

// What migrate_session_files did, organization by organization.
struct MigrationReport {
    std::vector<std::string> migrated;                             // inserted; session.json removed
    std::vector<std::pair<std::string, std::string>> corrupt;      // org id, reason; files left in place
    std::vector<std::pair<std::string, std::string>> left_alone;   // org id, reason (e.g. already in the store)
    size_t temps_removed = 0;  // the foundation's session.json.tmp.<pid>.<hex> files a kill -9 left behind
};

// Moves the foundation's <state_dir>/<org>/session.json files into `store`: one orgs row each (wanted,
// state, phone, last_error, state_since, connected_at), all in ONE transaction (which also commits any
// transaction the caller had open); only after that commit succeeded is each migrated session.json removed,
// and its directory when that leaves it empty. Files that do not parse, symlinks and non-regular files are
// left where they are and listed in report.corrupt. Idempotent: an organization already in the store is
// never overwritten (its file is left alone and listed in report.left_alone). false with *err only when
// the state directory cannot be read or the transaction fails (then no file is touched).
// First, the temporary files the foundation's atomic writes left when killed (<org>/session.json.tmp.*, never
// renamed into place, so never state) are deleted, and an organization directory they leave empty with them.
bool migrate_session_files(Store& store, const std::string& state_dir, MigrationReport& report, std::string* err);

}  // namespace wa::store
