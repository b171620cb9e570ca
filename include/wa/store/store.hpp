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

#include <cstdint>
#include <memory>
#include <string>
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

class Store {
public:
    virtual ~Store() = default;

    // ---- transactions (group commit) ----
    virtual bool begin(std::string* err) = 0;   // no-op when a transaction is already open
    virtual bool commit(std::string* err) = 0;  // no-op (true) when none is open
    virtual void rollback() = 0;
    virtual bool in_transaction() const = 0;

    // ---- organizations ----
    // Every organization that is not cleared or purged. Rows that fail to decode are returned in
    // `corrupt` (org id + reason) and never in `out`.
    virtual bool load_orgs(std::vector<OrgRecord>& out, std::vector<std::pair<std::string, std::string>>& corrupt,
                           std::string* err) = 0;
    virtual bool put_org(const OrgRecord& r, std::string* err) = 0;
    // clear-session: the organization's rows are kept for inspection, marked cleared, never loaded again.
    // A later put_org/put_credentials for the same id starts a fresh generation.
    virtual bool clear_org(const std::string& org, std::string* err) = 0;
    // logout: delete the credentials and every key (prekeys, Signal data); the org row stays (wanted=false).
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
};

// Moves the foundation's <state_dir>/<org>/session.json files into `store`: one orgs row each (wanted,
// state, phone, last_error, state_since, connected_at), all in ONE transaction (which also commits any
// transaction the caller had open); only after that commit succeeded is each migrated session.json removed,
// and its directory when that leaves it empty. Files that do not parse, symlinks and non-regular files are
// left where they are and listed in report.corrupt. Idempotent: an organization already in the store is
// never overwritten (its file is left alone and listed in report.left_alone). false with *err only when
// the state directory cannot be read or the transaction fails (then no file is touched).
bool migrate_session_files(Store& store, const std::string& state_dir, MigrationReport& report, std::string* err);

}  // namespace wa::store
