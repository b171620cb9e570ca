#include "core/store/sqlite_schema.hpp"

#include <string>

#include "core/store/sqlite_db.hpp"

namespace wa::store::sqlite {

namespace {

// Every table is keyed by organization id (text) first, so a PostgreSQL backend can share this schema.
//
// Generations: clear-session must keep an organization's rows for inspection but never load them again.
// Each organization has generations 1, 2, ...: `orgs` holds one row per generation, and every other table
// carries the generation its rows belong to. The live generation is the org's row with cleared_at NULL
// (at most one, by orgs_live); clear_org stamps cleared_at, and the next write for that org opens
// generation max+1 with nothing in it. Every load reads the live generation only; the cleared ones stay in
// the file until POST /api/purge deletes every generation.
//
// Integers that the code bounds (wanted 0/1, state 0..6, key lengths) carry no CHECK constraint: SQLite
// cannot alter one without rebuilding the table, and the loaders validate every row anyway.
const char* const kMigration1 = R"sql(
CREATE TABLE orgs (
    org          TEXT    NOT NULL,
    generation   INTEGER NOT NULL,
    wanted       INTEGER NOT NULL DEFAULT 0,
    state        INTEGER NOT NULL DEFAULT 0,
    phone        TEXT    NOT NULL DEFAULT '',
    last_error   TEXT    NOT NULL DEFAULT '',
    state_since  INTEGER NOT NULL DEFAULT 0,
    connected_at INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    cleared_at   INTEGER,
    PRIMARY KEY (org, generation)
);
CREATE UNIQUE INDEX orgs_live ON orgs (org) WHERE cleared_at IS NULL;

CREATE TABLE credentials (
    org                TEXT    NOT NULL,
    generation         INTEGER NOT NULL,
    noise_priv         BLOB    NOT NULL,
    noise_pub          BLOB    NOT NULL,
    identity_priv      BLOB    NOT NULL,
    identity_pub       BLOB    NOT NULL,
    registration_id    INTEGER NOT NULL,
    signed_prekey_id   INTEGER NOT NULL,
    signed_prekey_priv BLOB    NOT NULL,
    signed_prekey_pub  BLOB    NOT NULL,
    signed_prekey_sig  BLOB    NOT NULL,
    adv_secret         BLOB    NOT NULL,
    me_jid             TEXT    NOT NULL,
    me_lid             TEXT    NOT NULL,
    platform           TEXT    NOT NULL,
    push_name          TEXT    NOT NULL,
    account            BLOB    NOT NULL,
    next_prekey_id     INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    PRIMARY KEY (org, generation),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);

CREATE TABLE prekeys (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    id         INTEGER NOT NULL,
    priv       BLOB    NOT NULL,
    pub        BLOB    NOT NULL,
    uploaded   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org, generation, id),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);

CREATE TABLE signal_sessions (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    address    TEXT    NOT NULL,
    record     BLOB    NOT NULL,
    PRIMARY KEY (org, generation, address),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);

CREATE TABLE signal_identities (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    address    TEXT    NOT NULL,
    key        BLOB    NOT NULL,
    PRIMARY KEY (org, generation, address),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);

CREATE TABLE lid_map (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    pn         TEXT    NOT NULL,
    lid        TEXT    NOT NULL,
    PRIMARY KEY (org, generation, pn),
    UNIQUE (org, generation, lid),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);
)sql";

// Messages, idempotency keys, the usync device-list cache and privacy tokens, keyed by (org, generation) like
// the rest: clear_org keeps them unread, purge_org deletes them. forget_credentials (logout) deletes the device
// lists and privacy tokens (they belong to the linked device) and keeps messages and idempotency keys (the
// organization's history, until retention or purge).
//
// messages: ids are WhatsApp's, unique per sender, so an incoming message may in principle share an id with
// an outgoing one: the direction is part of the key. Lists page newest first on (created_at, id, direction)
// (messages_newest, messages_newest_by_direction); messages_pending holds only what waits for a server ack.
// Times are unix milliseconds (server_t: the stanza's t, seconds). Text values: status and type are checked
// by the code on the way in and out.
// device_lists.devices: the device ids as decimal text separated by commas ("0,12,33"), readable in the shell.
// privacy_tokens mirrors whatsmeow's whatsmeow_privacy_tokens (upgrades 04 and 12): token, t (its timestamp),
// sender_t (when we last issued ours, NULL = never; whatsmeow's sender_timestamp).
const char* const kMigration2 = R"sql(
CREATE TABLE messages (
    org             TEXT    NOT NULL,
    generation      INTEGER NOT NULL,
    id              TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    chat_jid        TEXT    NOT NULL,
    sender_jid      TEXT    NOT NULL,
    recipient_pn    TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    raw             BLOB    NOT NULL,
    status          TEXT    NOT NULL,
    error_code      INTEGER NOT NULL DEFAULT 0,
    error           TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER NOT NULL DEFAULT 0,
    read_at         INTEGER NOT NULL DEFAULT 0,
    played_at       INTEGER NOT NULL DEFAULT 0,
    failed_at       INTEGER NOT NULL DEFAULT 0,
    server_t        INTEGER NOT NULL DEFAULT 0,
    idempotency_key BLOB    NOT NULL,
    resend_count    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (org, generation, id, direction),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);
CREATE INDEX messages_newest ON messages (org, generation, created_at, id, direction);
CREATE INDEX messages_newest_by_direction ON messages (org, generation, direction, created_at, id);
CREATE INDEX messages_pending ON messages (org, generation, created_at)
    WHERE direction = 'out' AND status = 'pending';

CREATE TABLE idempotency_keys (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    key        BLOB    NOT NULL,
    body_hash  BLOB    NOT NULL,
    message_id TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (org, generation, key),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE device_lists (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    user_jid   TEXT    NOT NULL,
    devices    TEXT    NOT NULL,
    fetched_at INTEGER NOT NULL,
    PRIMARY KEY (org, generation, user_jid),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);

CREATE TABLE privacy_tokens (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    jid        TEXT    NOT NULL,
    token      BLOB    NOT NULL,
    t          INTEGER NOT NULL,
    sender_t   INTEGER,
    PRIMARY KEY (org, generation, jid),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);
)sql";

// The webhook outbox (issue 11). One row per event and target URL: the event's id and seq are the same for
// every target, its delivery state is per target, so one refusing URL never holds back another. Rows are
// written in the same transaction as the change that caused them (an incoming message and its
// message.received are one commit). seq counts per organization across generations (webhook_seq), so a
// receiver sees it grow even after clear-session. body is the event's "data" object; the envelope (id, type,
// organization_id, timestamp, seq) is rebuilt from the columns, byte for byte the same on every attempt.
// state: pending | delivered | dead. webhook_targets: POST /api/webhooks overrides (url, events).
const char* const kMigration3 = R"sql(
CREATE TABLE webhook_events (
    n               INTEGER PRIMARY KEY,
    org             TEXT    NOT NULL,
    generation      INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    id              TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending',
    last_error      TEXT    NOT NULL DEFAULT '',
    UNIQUE (org, generation, seq, target),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);
CREATE INDEX webhook_events_due ON webhook_events (target, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_events_state ON webhook_events (org, generation, state, seq);

CREATE TABLE webhook_seq (
    org TEXT    NOT NULL PRIMARY KEY,
    seq INTEGER NOT NULL
);

CREATE TABLE webhook_targets (
    org        TEXT    NOT NULL,
    generation INTEGER NOT NULL,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org, generation),
    FOREIGN KEY (org, generation) REFERENCES orgs (org, generation)
);
)sql";

// Schema 4: the end of a WhatsApp sending restriction (463 reach-out refusal, reachout_timelock) survives a restart:
// a helper that forgot it would send into the restriction and make it worse.
const char* const kMigration4 = R"sql(
ALTER TABLE orgs ADD COLUMN restricted_until INTEGER NOT NULL DEFAULT 0;
)sql";

// Schema 5: a webhook event's retry window. A replay opens a new one (window_start, 0 = created_at) without
// touching created_at (the envelope's timestamp) or the attempt count; window_attempts is the count when the
// window opened (the backoff starts again from its minimum), replays how many times it was replayed.
const char* const kMigration5 = R"sql(
ALTER TABLE webhook_events ADD COLUMN window_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_events ADD COLUMN window_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_events ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
)sql";

// Append migration N+1 here; never edit one that has shipped.
const char* const kMigrations[] = {kMigration1, kMigration2, kMigration3, kMigration4, kMigration5};
constexpr int kMigrationCount = sizeof kMigrations / sizeof kMigrations[0];

bool read_version(Db& db, int& version, std::string& err) {
    Query q(db, "PRAGMA user_version");
    bool has_row = false;
    if (!q.next(has_row, err)) return false;
    version = has_row ? static_cast<int>(q.int_at(0)) : 0;
    return true;
}

// One migration and its version stamp in one transaction: a crash leaves the old or the new schema.
bool apply_migration(Db& db, int to_version, std::string& err) {
    // PRAGMA takes no bound parameter; the number is ours, not data.
    std::string stamp = "PRAGMA user_version = " + std::to_string(to_version);
    int version = 0;
    if (!db.exec("BEGIN IMMEDIATE", err)) return false;
    bool ok = read_version(db, version, err);  // another process may have migrated meanwhile
    if (ok && version < to_version)
        ok = db.exec(kMigrations[to_version - 1], err) && db.exec(stamp.c_str(), err);
    if (ok) ok = db.exec("COMMIT", err);
    if (!ok) {
        std::string ignored;
        if (!db.autocommit()) db.exec("ROLLBACK", ignored);
        err = "schema migration " + std::to_string(to_version) + ": " + err;
    }
    return ok;
}

}  // namespace

int newest_schema_version() {
    return kMigrationCount;
}

const char* migration_sql(int version) {
    return version >= 1 && version <= kMigrationCount ? kMigrations[version - 1] : nullptr;
}

bool migrate_schema(Db& db, std::string& err) {
    int version = 0;
    if (!read_version(db, version, err)) return false;
    if (version > kMigrationCount) {
        err = db.path() + " has schema version " + std::to_string(version) + ", newer than this build's " +
              std::to_string(kMigrationCount) + "; refusing to use it";
        return false;
    }
    for (int next = version + 1; next <= kMigrationCount; next++) {
        if (!apply_migration(db, next, err)) return false;
    }
    return true;
}

}  // namespace wa::store::sqlite
