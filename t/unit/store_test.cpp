// The SQLite store (wa::store) and the session.json migration. Raw SQL through a second connection checks
// what is really in the file, as an operator with the sqlite3 shell would see it.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/store/sqlite_schema.hpp"
#include "wa/store/fsutil.hpp"
#include "wa/session.hpp"
#include "wa/store/state_file.hpp"
#include "wa/store/store.hpp"

using wa::store::Credentials;
using wa::store::OrgRecord;
using wa::store::PreKey;
using wa::store::Store;

namespace {

const char* const kTables[] = {"orgs", "credentials", "prekeys", "signal_sessions", "signal_identities", "lid_map"};

// A second, plain connection to the database file.
class RawDb {
public:
    explicit RawDb(const std::string& path) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) ADD_FAILURE() << path;
        sqlite3_busy_timeout(db_, 2000);
    }
    ~RawDb() { sqlite3_close_v2(db_); }

    void exec(const std::string& sql) {
        char* msg = nullptr;
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) ADD_FAILURE() << sql << ": " << msg;
        sqlite3_free(msg);
    }
    // The first column of the first row, as text ("" when there is none).
    std::string scalar(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        std::string out;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
            ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
            return out;
        }
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
            out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        return out;
    }
    long count(const std::string& sql) { return std::stol("0" + scalar(sql)); }

private:
    sqlite3* db_ = nullptr;
};

std::string key(size_t size, char fill) {
    return std::string(size, fill);
}

Credentials make_credentials(char seed) {
    Credentials c;
    c.noise_priv = key(32, seed);
    c.noise_pub = key(32, seed + 1);
    c.identity_priv = key(32, seed + 2);
    c.identity_pub = key(32, seed + 3);
    c.registration_id = 12345;
    c.signed_prekey_id = 7;
    c.signed_prekey_priv = key(32, seed + 4);
    c.signed_prekey_pub = key(32, seed + 5);
    c.signed_prekey_sig = key(64, seed + 6);
    c.adv_secret = key(32, seed + 7);
    c.me_jid = "573001234567:12@s.whatsapp.net";
    c.me_lid = "123456789012345:12@lid";
    c.platform = "android";
    c.push_name = "Ana \xc3\xb1";
    c.account = std::string("\x0a\x00\x01\xff", 4);
    c.next_prekey_id = 813;
    c.created_at = 1700000000;
    return c;
}

OrgRecord make_org(const std::string& id, bool wanted = true, uint8_t state = 3) {
    OrgRecord r;
    r.org = id;
    r.wanted = wanted;
    r.state = state;
    r.phone = "573001234567";
    r.last_error = "";
    r.state_since = 1700000100;
    r.connected_at = 1700000050;
    return r;
}

std::vector<PreKey> make_prekeys(uint32_t first, uint32_t count) {
    std::vector<PreKey> keys;
    for (uint32_t id = first; id < first + count; id++) {
        PreKey k;
        k.id = id;
        k.priv = key(32, static_cast<char>('a' + id % 20));
        k.pub = key(32, static_cast<char>('A' + id % 20));
        keys.push_back(k);
    }
    return keys;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool exists(const std::string& path) {
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

class StoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/wa_store_test_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        store_.reset();
        std::string err;
        EXPECT_TRUE(wa::remove_tree(dir_, &err)) << err;
    }

    std::unique_ptr<Store> open_store(bool full_check = false) {
        std::string err;
        std::unique_ptr<Store> s = wa::store::open_sqlite_store(dir_, full_check, &err);
        EXPECT_TRUE(s) << err;
        return s;
    }
    Store& store() {
        if (!store_) store_ = open_store();
        return *store_;
    }
    std::string db_path() const { return dir_ + "/whatsapp.db"; }

    std::vector<OrgRecord> orgs() {
        std::vector<OrgRecord> out;
        std::vector<std::pair<std::string, std::string>> corrupt;
        std::string err;
        EXPECT_TRUE(store().load_orgs(out, corrupt, &err)) << err;
        EXPECT_TRUE(corrupt.empty());
        return out;
    }
    bool has_credentials(const std::string& org) {
        Credentials c;
        bool found = true;
        std::string err;
        EXPECT_TRUE(store().load_credentials(org, c, found, &err)) << err;
        return found;
    }
    // Puts one of everything for `org`.
    void fill(const std::string& org) {
        std::string err;
        ASSERT_TRUE(store().put_org(make_org(org), &err)) << err;
        ASSERT_TRUE(store().put_credentials(org, make_credentials('k'), &err)) << err;
        ASSERT_TRUE(store().put_prekeys(org, make_prekeys(1, 3), &err)) << err;
        ASSERT_TRUE(store().put_session(org, "573001234567.0", "session-record", &err)) << err;
        ASSERT_TRUE(store().put_identity(org, "573001234567.0", key(33, 5), &err)) << err;
        ASSERT_TRUE(store().put_lid_mapping(org, "573001234567", "123456789012345", &err)) << err;
    }
    long rows_of(RawDb& raw, const char* table, const std::string& org) {
        return raw.count(std::string("SELECT count(*) FROM ") + table + " WHERE org = '" + org + "'");
    }

    std::string dir_;
    std::unique_ptr<Store> store_;
};

void expect_same_org(const OrgRecord& a, const OrgRecord& b) {
    EXPECT_EQ(a.org, b.org);
    EXPECT_EQ(a.wanted, b.wanted);
    EXPECT_EQ(a.state, b.state);
    EXPECT_EQ(a.phone, b.phone);
    EXPECT_EQ(a.last_error, b.last_error);
    EXPECT_EQ(a.state_since, b.state_since);
    EXPECT_EQ(a.connected_at, b.connected_at);
}

void expect_same_credentials(const Credentials& a, const Credentials& b) {
    EXPECT_EQ(a.noise_priv, b.noise_priv);
    EXPECT_EQ(a.noise_pub, b.noise_pub);
    EXPECT_EQ(a.identity_priv, b.identity_priv);
    EXPECT_EQ(a.identity_pub, b.identity_pub);
    EXPECT_EQ(a.registration_id, b.registration_id);
    EXPECT_EQ(a.signed_prekey_id, b.signed_prekey_id);
    EXPECT_EQ(a.signed_prekey_priv, b.signed_prekey_priv);
    EXPECT_EQ(a.signed_prekey_pub, b.signed_prekey_pub);
    EXPECT_EQ(a.signed_prekey_sig, b.signed_prekey_sig);
    EXPECT_EQ(a.adv_secret, b.adv_secret);
    EXPECT_EQ(a.me_jid, b.me_jid);
    EXPECT_EQ(a.me_lid, b.me_lid);
    EXPECT_EQ(a.platform, b.platform);
    EXPECT_EQ(a.push_name, b.push_name);
    EXPECT_EQ(a.account, b.account);
    EXPECT_EQ(a.next_prekey_id, b.next_prekey_id);
    EXPECT_EQ(a.created_at, b.created_at);
}

}  // namespace

// ---- opening, schema, files ----

TEST_F(StoreTest, FreshDatabaseGetsTheNewestSchemaWalAndMode0600) {
    std::string err;
    ASSERT_TRUE(store().put_org(make_org("acme"), &err)) << err;
    RawDb raw(db_path());
    EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(wa::store::sqlite::newest_schema_version()));
    EXPECT_EQ(raw.scalar("PRAGMA journal_mode"), "wal");
    for (const char* suffix : {"", "-wal", "-shm"}) {
        struct stat st;
        ASSERT_EQ(lstat((db_path() + suffix).c_str(), &st), 0) << suffix;
        EXPECT_EQ(st.st_mode & 07777, 0600u) << suffix;
    }
}

TEST_F(StoreTest, ReopeningKeepsDataAndSchemaVersion) {
    std::string err;
    ASSERT_TRUE(store().put_org(make_org("acme"), &err)) << err;
    ASSERT_TRUE(store().put_credentials("acme", make_credentials('x'), &err)) << err;
    store_.reset();
    auto again = orgs();
    ASSERT_EQ(again.size(), 1u);
    expect_same_org(again[0], make_org("acme"));
    EXPECT_TRUE(has_credentials("acme"));
    RawDb raw(db_path());
    EXPECT_EQ(raw.scalar("PRAGMA user_version"), std::to_string(wa::store::sqlite::newest_schema_version()));
}

namespace {

const char* const kSchema1Objects =
    "'orgs', 'orgs_live', 'credentials', 'prekeys', 'signal_sessions', 'signal_identities', 'lid_map'";

// The schema of the version-1 tables and indexes as the file records it.
std::string schema1_text(RawDb& raw) {
    return raw.scalar(std::string("SELECT group_concat(name || ': ' || sql, char(10)) FROM (SELECT name, sql FROM "
                                  "sqlite_master WHERE name IN (") +
                      kSchema1Objects + ") ORDER BY name)");
}

// <path> as the release with schema 1 left it: migration 1 only, WAL, user_version 1.
void create_schema1_database(const std::string& path) {
    std::ofstream(path).close();  // an empty file is an empty database
    ASSERT_EQ(chmod(path.c_str(), 0600), 0);
    RawDb raw(path);
    raw.exec("PRAGMA journal_mode = WAL");
    raw.exec(std::string("BEGIN; ") + wa::store::sqlite::migration_sql(1) + "; PRAGMA user_version = 1; COMMIT");
}

}  // namespace

// A database made by the release before messages (schema 1, rows written the way that release writes them):
// opening it applies migration 2 alone, and every old row loads as before.
TEST_F(StoreTest, MigrationFromSchema1KeepsEveryRow) {
    ASSERT_EQ(wa::store::sqlite::newest_schema_version(), 5);
    ASSERT_EQ(wa::store::sqlite::migration_sql(6), nullptr);
    create_schema1_database(db_path());
    std::string schema_before;
    {
        RawDb raw(db_path());
        // Generation 1 cleared, generation 2 live, as clear-session then a new start leave them.
        raw.exec("INSERT INTO orgs VALUES ('acme', 1, 1, 3, '573001234567', '', 1700000000, 1700000000, 1699999000, "
                 "1700000010)");
        raw.exec("INSERT INTO orgs VALUES ('acme', 2, 1, 3, '573001234567', 'x', 1700000100, 1700000050, "
                 "1700000020, NULL)");
        raw.exec("INSERT INTO orgs VALUES ('beta', 1, 0, 5, '', 'logged out', 1700000200, 0, 1700000020, NULL)");
        raw.exec("INSERT INTO credentials VALUES ('acme', 2, zeroblob(32), zeroblob(32), zeroblob(32), zeroblob(32), "
                 "4242, 7, zeroblob(32), zeroblob(32), zeroblob(64), zeroblob(32), '573001234567:12@s.whatsapp.net', "
                 "'123456789012345:12@lid', 'android', 'Ana', x'0a0001ff', 813, 1700000000)");
        raw.exec("INSERT INTO prekeys VALUES ('acme', 2, 5, zeroblob(32), zeroblob(32), 1)");
        raw.exec("INSERT INTO prekeys VALUES ('acme', 1, 5, zeroblob(32), zeroblob(32), 0)");
        raw.exec("INSERT INTO signal_sessions VALUES ('acme', 2, '573001234567.0', x'00017265636f7264')");
        raw.exec("INSERT INTO signal_identities VALUES ('acme', 2, '573001234567.0', x'05ab')");
        raw.exec("INSERT INTO lid_map VALUES ('acme', 2, '573001234567', '123456789012345')");
        schema_before = schema1_text(raw);
    }
    ASSERT_NE(schema_before.find("CREATE TABLE lid_map"), std::string::npos);

    std::string err, got;
    auto loaded = orgs();  // opens the store: migration 2
    ASSERT_EQ(loaded.size(), 2u);
    EXPECT_EQ(loaded[0].org, "acme");
    EXPECT_EQ(loaded[0].last_error, "x");
    EXPECT_EQ(loaded[0].state_since, 1700000100);
    EXPECT_EQ(loaded[0].restricted_until, 0);  // migration 4's default
    EXPECT_EQ(loaded[1].org, "beta");
    EXPECT_EQ(loaded[1].last_error, "logged out");
    Credentials c;
    bool found = false;
    ASSERT_TRUE(store().load_credentials("acme", c, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(c.registration_id, 4242u);
    EXPECT_EQ(c.signed_prekey_sig, std::string(64, '\0'));
    EXPECT_EQ(c.account, std::string("\x0a\x00\x01\xff", 4));
    EXPECT_EQ(c.next_prekey_id, 813u);
    PreKey k;
    ASSERT_TRUE(store().load_prekey("acme", 5, k, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_TRUE(k.uploaded);  // the live generation's
    ASSERT_TRUE(store().load_session("acme", "573001234567.0", got, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(got, std::string("\x00\x01record", 8));
    ASSERT_TRUE(store().load_identity("acme", "573001234567.0", got, found, &err)) << err;
    EXPECT_EQ(got, "\x05\xab");
    ASSERT_TRUE(store().pn_for_lid("acme", "123456789012345", got, found, &err)) << err;
    EXPECT_EQ(got, "573001234567");

    // The new tables work for the migrated organization.
    wa::store::MessageRecord m;
    m.id = "3EB0A1";
    m.direction = "out";
    m.type = "text";
    m.status = "pending";
    m.created_at = 1700000300000;
    ASSERT_TRUE(store().put_message("acme", m, &err)) << err;
    ASSERT_TRUE(store().load_message("acme", "3EB0A1", m, found, &err)) << err;
    EXPECT_TRUE(found);

    RawDb raw(db_path());
    EXPECT_EQ(raw.scalar("PRAGMA user_version"), "5");
    // Migration 4 adds one column to orgs (ALTER TABLE appends it to the stored SQL); nothing else may change.
    std::string after = schema1_text(raw);
    const std::string added = ", restricted_until INTEGER NOT NULL DEFAULT 0";
    size_t at = after.find(added);
    ASSERT_NE(at, std::string::npos) << after;
    after.erase(at, added.size());
    EXPECT_EQ(after, schema_before) << "a later migration changed a table of migration 1";
    EXPECT_EQ(raw.count("SELECT count(*) FROM orgs"), 3);
    EXPECT_EQ(raw.count("SELECT count(*) FROM prekeys WHERE generation = 1"), 1);  // the cleared one, kept
    EXPECT_EQ(raw.count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('messages', 'idempotency_keys', 'device_lists', 'privacy_tokens')"),
              4);
    EXPECT_EQ(raw.scalar("PRAGMA foreign_key_check"), "");
}

// The same from rows the store itself wrote: a database of this build with the tables of migration 2 dropped
// is exactly what schema 1 left (same objects, same SQL), and migration 2 brings it back without a loss.
TEST_F(StoreTest, MigrationFromSchema1WrittenByTheStore) {
    std::string err;
    fill("acme");
    ASSERT_TRUE(store().clear_org("acme", &err)) << err;
    fill("acme");
    fill("other");
    store_.reset();
    {
        RawDb raw(db_path());
        raw.exec("DROP TABLE messages; DROP TABLE idempotency_keys; DROP TABLE device_lists; "
                 "DROP TABLE privacy_tokens; DROP TABLE webhook_events; DROP TABLE webhook_seq; "
                 "DROP TABLE webhook_targets; ALTER TABLE orgs DROP COLUMN restricted_until; PRAGMA user_version = 1");
        std::string reference_dir = dir_ + "/v1";
        ASSERT_EQ(mkdir(reference_dir.c_str(), 0700), 0);
        create_schema1_database(reference_dir + "/whatsapp.db");
        RawDb reference(reference_dir + "/whatsapp.db");
        std::string all = "SELECT group_concat(type || ' ' || name || ': ' || sql, char(10)) FROM "
                          "(SELECT type, name, sql FROM sqlite_master ORDER BY name)";
        EXPECT_EQ(raw.scalar(all), reference.scalar(all));
        for (const char* table : kTables) EXPECT_GT(rows_of(raw, table, "acme"), 0) << table;
    }
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 2u);
    EXPECT_TRUE(has_credentials("acme"));
    Credentials c;
    bool found = false;
    ASSERT_TRUE(store().load_credentials("acme", c, found, &err)) << err;
    expect_same_credentials(c, make_credentials('k'));
    uint32_t n = 0;
    ASSERT_TRUE(store().count_prekeys("acme", false, n, &err)) << err;
    EXPECT_EQ(n, 3u);
    RawDb raw(db_path());
    EXPECT_EQ(raw.scalar("PRAGMA user_version"), "5");
    EXPECT_EQ(raw.count("SELECT count(*) FROM orgs WHERE org = 'acme'"), 2);
    EXPECT_EQ(raw.count("SELECT count(*) FROM prekeys WHERE org = 'acme'"), 6);
}

// A sending restriction's end (schema 4) is written with the organization and read back after a reopen.
TEST_F(StoreTest, RestrictionSurvivesReopen) {
    std::string err;
    OrgRecord r = make_org("acme");
    r.restricted_until = 1800000000;
    ASSERT_TRUE(store().put_org(r, &err)) << err;
    store_.reset();
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_EQ(loaded[0].restricted_until, 1800000000);
    r.restricted_until = 0;  // the restriction lifted
    ASSERT_TRUE(store().put_org(r, &err)) << err;
    EXPECT_EQ(orgs()[0].restricted_until, 0);
}

// WAL checkpoints run on the store's own thread: bursts of commits that write well past SQLite's 1,000-frame
// checkpoint point, with the pauses a helper has between bursts, never checkpoint inside a commit.
TEST_F(StoreTest, CheckpointsRunOnTheirOwnThread) {
    std::string err;
    ASSERT_TRUE(store().put_org(make_org("acme"), &err)) << err;
    ASSERT_TRUE(store().checkpoints().threaded);
    auto t0 = std::chrono::steady_clock::now();
    double paused_ms = 0;
    for (int i = 0; i < 600; i++) {  // 6 bursts of 100 commits of about 4 frames each
        if (i % 100 == 99) {
            usleep(150000);
            paused_ms += 150;
        }
        ASSERT_TRUE(store().begin(&err)) << err;
        wa::store::MessageRecord m;
        m.id = "3EB0" + std::to_string(i);
        m.direction = "out";
        m.type = "text";
        m.status = "pending";
        m.text = std::string(6000, 'x');
        m.created_at = 1700000300000 + i;
        ASSERT_TRUE(store().put_message("acme", m, &err)) << err;
        ASSERT_TRUE(store().commit(&err)) << err;
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() - paused_ms;
    for (int i = 0; i < 500 && store().checkpoints().background == 0; i++) usleep(10000);
    auto c = store().checkpoints();
    std::printf("[ MEASURE ] 600 commits of 6 KB: %.1f ms; checkpoints: %llu by the thread, %llu inside commits\n", ms,
                static_cast<unsigned long long>(c.background), static_cast<unsigned long long>(c.inline_runs));
    EXPECT_GE(c.background, 1u);
    EXPECT_EQ(c.inline_runs, 0u);
    store_.reset();  // stops the thread, then the last close checkpoints and removes the -wal
    struct stat st;
    EXPECT_NE(stat((db_path() + "-wal").c_str(), &st), 0);
    EXPECT_EQ(orgs().size(), 1u);
}

TEST_F(StoreTest, ExistingLooseModeIsTightenedTo0600) {
    std::string err;
    ASSERT_TRUE(store().put_org(make_org("acme"), &err)) << err;
    store_.reset();
    ASSERT_EQ(chmod(db_path().c_str(), 0644), 0);
    store();
    struct stat st;
    ASSERT_EQ(stat(db_path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
}

// Under writes without pauses the thread never catches up with the last frame, and only a checkpoint of the
// writer lets the WAL start over. Past 16,000 frames a commit asks for it and restart_wal_if_due() (the helper,
// once a pass's sends are out) runs it; commits never do it themselves until 64,000 frames.
TEST_F(StoreTest, TheWalRestartsBetweenPassesNotInsideCommits) {
    std::string err;
    ASSERT_TRUE(store().put_org(make_org("acme"), &err)) << err;
    ASSERT_FALSE(store().restart_wal_if_due()) << "nothing is due on a short WAL";
    auto put = [&](int i) {
        ASSERT_TRUE(store().begin(&err)) << err;
        wa::store::MessageRecord m;
        m.id = "3EB1" + std::to_string(i);
        m.direction = "out";
        m.type = "text";
        m.status = "pending";
        m.text = std::string(20000, 'x');
        m.created_at = 1700000400000 + i;
        ASSERT_TRUE(store().put_message("acme", m, &err)) << err;
        ASSERT_TRUE(store().commit(&err)) << err;
    };
    struct stat st;
    int i = 0;
    for (; i < 8000 && store().checkpoints().restarts == 0; i++) {
        put(i);
        if (i % 50 == 49) store().restart_wal_if_due();  // the end of a helper's pass
    }
    auto c = store().checkpoints();
    std::printf("[ MEASURE ] %d commits of 20 KB before the first restart; checkpoints: %llu by the thread, %llu "
                "between passes, %llu inside commits\n", i, static_cast<unsigned long long>(c.background),
                static_cast<unsigned long long>(c.restarts), static_cast<unsigned long long>(c.inline_runs));
    ASSERT_EQ(c.restarts, 1u);
    EXPECT_EQ(c.inline_runs, 0u);
    ASSERT_EQ(stat((db_path() + "-wal").c_str(), &st), 0);
    off_t wal_size = st.st_size;
    // The WAL started over: 300 more commits (1,800 frames) reuse its frames instead of growing it. A restart can be
    // put off when the thread's checkpoint is reading the WAL at that moment; the next pass's call catches up, so
    // the file may grow by what 50 commits write, never by all 300.
    for (int k = 0; k < 300; k++) {
        put(10000 + k);
        if (k % 50 == 49) store().restart_wal_if_due();
    }
    ASSERT_EQ(stat((db_path() + "-wal").c_str(), &st), 0);
    std::printf("[ MEASURE ] WAL %lld bytes at the first restart, %lld after 300 more commits\n",
                static_cast<long long>(wal_size), static_cast<long long>(st.st_size));
    EXPECT_LE(st.st_size, wal_size + 50 * 6 * 4120);
    EXPECT_EQ(store().checkpoints().inline_runs, 0u);
}

TEST_F(StoreTest, SchemaNewerThanThisBuildIsRefused) {
    store();
    store_.reset();
    RawDb(db_path()).exec("PRAGMA user_version = 999");
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_, false, &err), nullptr);
    EXPECT_NE(err.find("newer than this build"), std::string::npos) << err;
}

TEST_F(StoreTest, MissingDirectoryIsAnError) {
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_ + "/nope", false, &err), nullptr);
    EXPECT_NE(err.find("nope"), std::string::npos) << err;
}

TEST_F(StoreTest, SymlinkedDatabaseIsRefusedAndItsTargetUntouched) {
    std::string target = dir_ + "/elsewhere.db";
    std::ofstream(target) << "not yours";
    ASSERT_EQ(symlink(target.c_str(), db_path().c_str()), 0);
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_, false, &err), nullptr);
    EXPECT_NE(err.find("symbolic link"), std::string::npos) << err;
    EXPECT_EQ(slurp(target), "not yours");
    EXPECT_FALSE(exists(target + "-wal"));
}

TEST_F(StoreTest, SymlinkedWalIsRefused) {
    store();
    store_.reset();
    std::string target = dir_ + "/elsewhere";
    std::ofstream(target) << "x";
    ASSERT_EQ(symlink(target.c_str(), (db_path() + "-wal").c_str()), 0);
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_, false, &err), nullptr);
    EXPECT_NE(err.find("symbolic link"), std::string::npos) << err;
}

TEST_F(StoreTest, FifoDatabaseIsRefusedWithoutHanging) {
    ASSERT_EQ(mkfifo(db_path().c_str(), 0600), 0);
    alarm(10);  // a hang kills the test binary instead of stalling the suite
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_, false, &err), nullptr);
    alarm(0);
    EXPECT_NE(err.find("not a regular file"), std::string::npos) << err;
}

TEST_F(StoreTest, DirectoryAsDatabaseIsRefused) {
    ASSERT_EQ(mkdir(db_path().c_str(), 0700), 0);
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_, false, &err), nullptr);
    EXPECT_NE(err.find("not a regular file"), std::string::npos) << err;
}

TEST_F(StoreTest, CorruptDatabaseFailsTheCheckAndIsLeftUntouched) {
    std::string err;
    ASSERT_TRUE(store().begin(&err)) << err;
    for (int i = 0; i < 400; i++) {
        OrgRecord r = make_org("org" + std::to_string(i));
        r.last_error = std::string(300, static_cast<char>('a' + i % 26));
        ASSERT_TRUE(store().put_org(r, &err)) << err;
    }
    ASSERT_TRUE(store().commit(&err)) << err;
    store_.reset();  // the last close checkpoints the WAL into the file
    ASSERT_FALSE(exists(db_path() + "-wal"));
    std::string bytes = slurp(db_path());
    const size_t page = 4096;
    ASSERT_GE(bytes.size(), 20 * page);
    size_t middle = (bytes.size() / page / 2) * page;
    for (size_t i = 0; i < page; i++) bytes[middle + i] = static_cast<char>(0xA5 ^ (i * 7));
    std::ofstream(db_path(), std::ios::binary | std::ios::trunc) << bytes;

    for (bool full : {false, true}) {
        std::string why;
        EXPECT_EQ(wa::store::open_sqlite_store(dir_, full, &why), nullptr) << (full ? "integrity_check" : "quick_check");
        EXPECT_NE(why.find(full ? "integrity_check" : "quick_check"), std::string::npos) << why;
        EXPECT_NE(why.find("left untouched"), std::string::npos) << why;
        EXPECT_EQ(slurp(db_path()), bytes) << "the database file changed";
    }
}

// ---- organizations ----

TEST_F(StoreTest, OrgsRoundTripAndUpdateInPlace) {
    std::string err;
    OrgRecord b = make_org("beta", false, 5);
    b.phone.clear();
    b.last_error = "logged out from the phone";
    b.connected_at = 0;
    ASSERT_TRUE(store().put_org(make_org("alpha"), &err)) << err;
    ASSERT_TRUE(store().put_org(b, &err)) << err;
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 2u);
    expect_same_org(loaded[0], make_org("alpha"));
    expect_same_org(loaded[1], b);

    OrgRecord a2 = make_org("alpha", false, 4);
    a2.last_error = "connection reset";
    ASSERT_TRUE(store().put_org(a2, &err)) << err;
    loaded = orgs();
    ASSERT_EQ(loaded.size(), 2u);
    expect_same_org(loaded[0], a2);
    EXPECT_EQ(RawDb(db_path()).count("SELECT count(*) FROM orgs"), 2);
}

TEST_F(StoreTest, PutOrgRefusesBadIdAndStateOutOfRange) {
    std::string err;
    EXPECT_FALSE(store().put_org(make_org("../etc"), &err));
    EXPECT_NE(err.find("invalid organization id"), std::string::npos) << err;
    err.clear();
    EXPECT_FALSE(store().put_org(make_org("acme", true, 7), &err));
    EXPECT_NE(err.find("out of range"), std::string::npos) << err;
    EXPECT_FALSE(store().put_session("bad id", "1.0", "r", &err));
    EXPECT_TRUE(orgs().empty());
}

// ---- credentials ----

TEST_F(StoreTest, CredentialsRoundTrip) {
    std::string err;
    Credentials c;
    bool found = true;
    ASSERT_TRUE(store().load_credentials("acme", c, found, &err)) << err;
    EXPECT_FALSE(found);

    Credentials unpaired = make_credentials('a');
    unpaired.me_jid.clear();
    unpaired.me_lid.clear();
    unpaired.account.clear();
    ASSERT_TRUE(store().put_credentials("acme", unpaired, &err)) << err;
    ASSERT_TRUE(store().load_credentials("acme", c, found, &err)) << err;
    ASSERT_TRUE(found);
    expect_same_credentials(c, unpaired);

    Credentials paired = make_credentials('b');
    ASSERT_TRUE(store().put_credentials("acme", paired, &err)) << err;
    ASSERT_TRUE(store().load_credentials("acme", c, found, &err)) << err;
    expect_same_credentials(c, paired);
    // put_credentials alone makes the organization known (not wanted).
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_EQ(loaded[0].org, "acme");
    EXPECT_FALSE(loaded[0].wanted);
}

TEST_F(StoreTest, CredentialsWithWrongKeyLengthsAreNotStored) {
    std::string err;
    Credentials c = make_credentials('a');
    c.noise_priv.pop_back();
    EXPECT_FALSE(store().put_credentials("acme", c, &err));
    EXPECT_NE(err.find("credentials invalid: noise_priv is 31 bytes"), std::string::npos) << err;
    EXPECT_EQ(err.find(c.noise_priv), std::string::npos) << "key material in an error";
    c = make_credentials('a');
    c.signed_prekey_sig.resize(32);
    EXPECT_FALSE(store().put_credentials("acme", c, &err));
    EXPECT_FALSE(has_credentials("acme"));
}

// ---- prekeys ----

TEST_F(StoreTest, PrekeysRoundTrip) {
    std::string err;
    ASSERT_TRUE(store().put_prekeys("acme", make_prekeys(1, 5), &err)) << err;
    PreKey k;
    bool found = false;
    ASSERT_TRUE(store().load_prekey("acme", 4, k, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(k.id, 4u);
    EXPECT_EQ(k.priv, make_prekeys(4, 1)[0].priv);
    EXPECT_EQ(k.pub, make_prekeys(4, 1)[0].pub);
    EXPECT_FALSE(k.uploaded);
    ASSERT_TRUE(store().load_prekey("acme", 99, k, found, &err)) << err;
    EXPECT_FALSE(found);

    std::vector<PreKey> pending;
    ASSERT_TRUE(store().load_unuploaded_prekeys("acme", 3, pending, &err)) << err;
    ASSERT_EQ(pending.size(), 3u);
    EXPECT_EQ(pending[0].id, 1u);
    EXPECT_EQ(pending[2].id, 3u);
    ASSERT_TRUE(store().mark_prekeys_uploaded("acme", 1, 3, &err)) << err;
    ASSERT_TRUE(store().load_unuploaded_prekeys("acme", 10, pending, &err)) << err;
    ASSERT_EQ(pending.size(), 2u);
    EXPECT_EQ(pending[0].id, 4u);

    uint32_t n = 0;
    ASSERT_TRUE(store().count_prekeys("acme", true, n, &err)) << err;
    EXPECT_EQ(n, 3u);
    ASSERT_TRUE(store().remove_prekey("acme", 2, &err)) << err;
    ASSERT_TRUE(store().count_prekeys("acme", false, n, &err)) << err;
    EXPECT_EQ(n, 4u);
    ASSERT_TRUE(store().count_prekeys("acme", true, n, &err)) << err;
    EXPECT_EQ(n, 2u);
    ASSERT_TRUE(store().count_prekeys("other", false, n, &err)) << err;
    EXPECT_EQ(n, 0u);
}

TEST_F(StoreTest, PutPrekeysIsAllOrNothing) {
    std::string err;
    auto keys = make_prekeys(1, 4);
    keys[3].pub.resize(31);
    EXPECT_FALSE(store().put_prekeys("acme", keys, &err));
    EXPECT_NE(err.find("prekey 4 invalid"), std::string::npos) << err;
    uint32_t n = 9;
    ASSERT_TRUE(store().count_prekeys("acme", false, n, &err)) << err;
    EXPECT_EQ(n, 0u);
}

// ---- Signal state ----

TEST_F(StoreTest, SignalSessionsAndIdentitiesRoundTrip) {
    std::string err;
    std::string record("\x00\x01session\xff", 10);
    for (const char* address : {"573001234567.0", "573001234567.12", "573001234567.5", "5730012345670.1",
                                "573001234567_1.2", "57300123456.3"})
        ASSERT_TRUE(store().put_session("acme", address, record, &err)) << err;
    std::vector<uint32_t> devices;
    ASSERT_TRUE(store().session_devices("acme", "573001234567", devices, &err)) << err;
    EXPECT_EQ(devices, (std::vector<uint32_t>{0, 5, 12}));

    std::string got;
    bool found = false;
    ASSERT_TRUE(store().load_session("acme", "573001234567.12", got, found, &err)) << err;
    EXPECT_TRUE(found);
    EXPECT_EQ(got, record);
    ASSERT_TRUE(store().put_session("acme", "573001234567.12", "newer", &err)) << err;
    ASSERT_TRUE(store().load_session("acme", "573001234567.12", got, found, &err)) << err;
    EXPECT_EQ(got, "newer");
    ASSERT_TRUE(store().delete_session("acme", "573001234567.12", &err)) << err;
    ASSERT_TRUE(store().load_session("acme", "573001234567.12", got, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_session("other", "573001234567.0", got, found, &err)) << err;
    EXPECT_FALSE(found);

    std::string identity = "\x05" + key(32, 9);
    ASSERT_TRUE(store().put_identity("acme", "573001234567.0", identity, &err)) << err;
    ASSERT_TRUE(store().load_identity("acme", "573001234567.0", got, found, &err)) << err;
    EXPECT_TRUE(found);
    EXPECT_EQ(got, identity);
    ASSERT_TRUE(store().put_identity("acme", "573001234567.0", "changed", &err)) << err;
    ASSERT_TRUE(store().load_identity("acme", "573001234567.0", got, found, &err)) << err;
    EXPECT_EQ(got, "changed");
    ASSERT_TRUE(store().load_identity("acme", "1.0", got, found, &err)) << err;
    EXPECT_FALSE(found);
}

TEST_F(StoreTest, LidMappingsAreOneToOne) {
    std::string err, got;
    bool found = false;
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001", "900001", &err)) << err;
    ASSERT_TRUE(store().lid_for_pn("acme", "573001", got, found, &err)) << err;
    EXPECT_TRUE(found);
    EXPECT_EQ(got, "900001");
    ASSERT_TRUE(store().pn_for_lid("acme", "900001", got, found, &err)) << err;
    EXPECT_EQ(got, "573001");

    ASSERT_TRUE(store().put_lid_mapping("acme", "573001", "900002", &err)) << err;  // the number got a new LID
    ASSERT_TRUE(store().pn_for_lid("acme", "900001", got, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().put_lid_mapping("acme", "573002", "900002", &err)) << err;  // the LID moved to another number
    ASSERT_TRUE(store().lid_for_pn("acme", "573001", got, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().pn_for_lid("acme", "900002", got, found, &err)) << err;
    EXPECT_EQ(got, "573002");
    ASSERT_TRUE(store().lid_for_pn("other", "573002", got, found, &err)) << err;
    EXPECT_FALSE(found);
}

// ---- transactions ----

TEST_F(StoreTest, GroupCommitWritesEverythingAtOnce) {
    std::string err;
    EXPECT_FALSE(store().in_transaction());
    EXPECT_TRUE(store().commit(&err));  // nothing open: a no-op
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().begin(&err)) << err;  // already open: a no-op
    EXPECT_TRUE(store().in_transaction());
    for (int i = 0; i < 100; i++) ASSERT_TRUE(store().put_org(make_org("org" + std::to_string(i)), &err)) << err;
    ASSERT_TRUE(store().put_prekeys("org7", make_prekeys(1, 50), &err)) << err;
    // Not visible to another connection before the commit.
    EXPECT_EQ(RawDb(db_path()).count("SELECT count(*) FROM orgs"), 0);
    ASSERT_TRUE(store().commit(&err)) << err;
    EXPECT_FALSE(store().in_transaction());
    EXPECT_EQ(RawDb(db_path()).count("SELECT count(*) FROM orgs"), 100);
    EXPECT_EQ(RawDb(db_path()).count("SELECT count(*) FROM prekeys"), 50);
}

TEST_F(StoreTest, RollbackDiscardsTheGroup) {
    std::string err;
    ASSERT_TRUE(store().put_org(make_org("kept"), &err)) << err;
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().put_org(make_org("dropped"), &err)) << err;
    ASSERT_TRUE(store().put_credentials("kept", make_credentials('q'), &err)) << err;
    store().rollback();
    EXPECT_FALSE(store().in_transaction());
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_EQ(loaded[0].org, "kept");
    EXPECT_FALSE(has_credentials("kept"));
}

TEST_F(StoreTest, AFailedWriteInsideTheGroupUndoesOnlyItself) {
    std::string err;
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().put_org(make_org("first"), &err)) << err;
    auto keys = make_prekeys(1, 3);
    keys[2].priv = "short";
    EXPECT_FALSE(store().put_prekeys("first", keys, &err));
    ASSERT_TRUE(store().put_org(make_org("second"), &err)) << err;
    ASSERT_TRUE(store().commit(&err)) << err;
    EXPECT_EQ(orgs().size(), 2u);
    uint32_t n = 9;
    ASSERT_TRUE(store().count_prekeys("first", false, n, &err)) << err;
    EXPECT_EQ(n, 0u);
}

// RAISE(ROLLBACK) makes SQLite roll the whole transaction back by itself, as disk full or an I/O error can.
TEST_F(StoreTest, ATransactionSqliteRolledBackFailsItsWritesAndCommit) {
    std::string err;
    store();
    RawDb(db_path()).exec("CREATE TRIGGER boom BEFORE INSERT ON orgs WHEN NEW.org = 'boom' "
                          "BEGIN SELECT RAISE(ROLLBACK, 'gone'); END");
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().put_org(make_org("early"), &err)) << err;
    EXPECT_FALSE(store().put_org(make_org("boom"), &err));
    EXPECT_FALSE(store().put_org(make_org("late"), &err));  // not silently autocommitted
    EXPECT_NE(err.find("rolled back"), std::string::npos) << err;
    EXPECT_TRUE(store().in_transaction());
    EXPECT_FALSE(store().commit(&err));
    EXPECT_NE(err.find("rolled back"), std::string::npos) << err;
    EXPECT_FALSE(store().in_transaction());
    EXPECT_TRUE(orgs().empty());
    ASSERT_TRUE(store().put_org(make_org("after"), &err)) << err;  // usable again
    EXPECT_EQ(orgs().size(), 1u);
}

TEST_F(StoreTest, ACommittedTransactionIsSeenByANewStore) {
    std::string err;
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().put_org(make_org("acme"), &err)) << err;
    ASSERT_TRUE(store().put_credentials("acme", make_credentials('c'), &err)) << err;
    ASSERT_TRUE(store().commit(&err)) << err;
    std::unique_ptr<Store> second = open_store();  // the first is still open
    ASSERT_TRUE(second);
    Credentials c;
    bool found = false;
    ASSERT_TRUE(second->load_credentials("acme", c, found, &err)) << err;
    EXPECT_TRUE(found);
    expect_same_credentials(c, make_credentials('c'));
}

TEST_F(StoreTest, AProcessDyingMidTransactionLeavesOnlyWhatItCommitted) {
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::string err;
        auto s = wa::store::open_sqlite_store(dir_, false, &err);
        bool ok = s && s->begin(&err) && s->put_org(make_org("committed"), &err) && s->commit(&err) &&
                  s->begin(&err) && s->put_org(make_org("uncommitted"), &err) &&
                  s->put_credentials("committed", make_credentials('z'), &err);
        _exit(ok ? 0 : 2);  // no commit, no destructor: as if killed
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_EQ(loaded[0].org, "committed");
    EXPECT_FALSE(has_credentials("committed"));
}

// ---- corrupt rows ----

TEST_F(StoreTest, RowsThatDoNotDecodeAreReportedAndTheOthersLoad) {
    std::string err;
    for (const char* id : {"a-wanted", "b-good", "c-noise", "d-state", "e-type"}) fill(id);
    {
        RawDb raw(db_path());
        raw.exec("UPDATE orgs SET wanted = 7 WHERE org = 'a-wanted'");
        raw.exec("UPDATE credentials SET noise_priv = zeroblob(31) WHERE org = 'c-noise'");
        raw.exec("UPDATE orgs SET state = 9 WHERE org = 'd-state'");
        raw.exec("UPDATE orgs SET phone = x'00ff' WHERE org = 'e-type'");
    }
    std::vector<OrgRecord> out;
    std::vector<std::pair<std::string, std::string>> corrupt;
    ASSERT_TRUE(store().load_orgs(out, corrupt, &err)) << err;
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].org, "b-good");
    ASSERT_EQ(corrupt.size(), 4u);
    EXPECT_EQ(corrupt[0].first, "a-wanted");
    EXPECT_NE(corrupt[0].second.find("wanted"), std::string::npos) << corrupt[0].second;
    EXPECT_EQ(corrupt[1].first, "c-noise");
    EXPECT_NE(corrupt[1].second.find("noise_priv is 31 bytes"), std::string::npos) << corrupt[1].second;
    EXPECT_EQ(corrupt[2].first, "d-state");
    EXPECT_NE(corrupt[2].second.find("state"), std::string::npos) << corrupt[2].second;
    EXPECT_EQ(corrupt[3].first, "e-type");

    Credentials c;
    bool found = true;
    EXPECT_FALSE(store().load_credentials("c-noise", c, found, &err));
    EXPECT_NE(err.find("credentials corrupt: noise_priv is 31 bytes"), std::string::npos) << err;
    EXPECT_FALSE(found);
    EXPECT_TRUE(has_credentials("b-good"));
}

TEST_F(StoreTest, CorruptPrekeyIsAnError) {
    fill("acme");
    RawDb(db_path()).exec("UPDATE prekeys SET pub = x'01' WHERE id = 2");
    PreKey k;
    bool found = true;
    std::string err;
    EXPECT_FALSE(store().load_prekey("acme", 2, k, found, &err));
    EXPECT_NE(err.find("prekey corrupt: pub is 1 bytes"), std::string::npos) << err;
    ASSERT_TRUE(store().load_prekey("acme", 1, k, found, &err)) << err;
    EXPECT_TRUE(found);
}

// ---- clear, logout, purge ----

TEST_F(StoreTest, ClearedRowsStayInTheFileButAreNeverLoaded) {
    fill("acme");
    fill("other");
    std::string err, got;
    ASSERT_TRUE(store().clear_org("acme", &err)) << err;
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_EQ(loaded[0].org, "other");
    EXPECT_FALSE(has_credentials("acme"));
    bool found = true;
    ASSERT_TRUE(store().load_session("acme", "573001234567.0", got, found, &err)) << err;
    EXPECT_FALSE(found);
    {
        RawDb raw(db_path());
        for (const char* table : kTables) EXPECT_GT(rows_of(raw, table, "acme"), 0) << table;
        EXPECT_EQ(raw.count("SELECT count(*) FROM orgs WHERE org = 'acme' AND cleared_at IS NOT NULL"), 1);
    }

    // A new start is a fresh, empty generation.
    ASSERT_TRUE(store().put_org(make_org("acme", true, 1), &err)) << err;
    loaded = orgs();
    ASSERT_EQ(loaded.size(), 2u);
    EXPECT_EQ(loaded[0].state, 1);
    EXPECT_FALSE(has_credentials("acme"));
    uint32_t n = 9;
    ASSERT_TRUE(store().count_prekeys("acme", false, n, &err)) << err;
    EXPECT_EQ(n, 0u);
    ASSERT_TRUE(store().lid_for_pn("acme", "573001234567", got, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_identity("acme", "573001234567.0", got, found, &err)) << err;
    EXPECT_FALSE(found);
    EXPECT_EQ(RawDb(db_path()).scalar("SELECT generation FROM orgs WHERE org = 'acme' AND cleared_at IS NULL"), "2");
    // The same keys again in the new generation do not collide with the cleared ones.
    ASSERT_TRUE(store().put_prekeys("acme", make_prekeys(1, 3), &err)) << err;
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001234567", "123456789012345", &err)) << err;
    EXPECT_TRUE(has_credentials("other"));
}

TEST_F(StoreTest, ForgetCredentialsDropsKeysAndKeepsTheOrg) {
    fill("acme");
    fill("other");
    std::string err, got;
    ASSERT_TRUE(store().forget_credentials("acme", &err)) << err;
    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 2u);
    EXPECT_EQ(loaded[0].org, "acme");
    EXPECT_FALSE(loaded[0].wanted);
    EXPECT_TRUE(loaded[1].wanted);
    EXPECT_FALSE(has_credentials("acme"));
    RawDb raw(db_path());
    for (const char* table : kTables) {
        if (std::string(table) != "orgs") {
            EXPECT_EQ(rows_of(raw, table, "acme"), 0) << table;
        }
        EXPECT_GT(rows_of(raw, table, "other"), 0) << table;
    }
}

TEST_F(StoreTest, PurgeLeavesNoRowOfTheOrgInAnyTable) {
    fill("acme");
    std::string err;
    ASSERT_TRUE(store().clear_org("acme", &err)) << err;
    fill("acme");  // a second generation
    fill("other");
    ASSERT_TRUE(store().purge_org("acme", &err)) << err;
    RawDb raw(db_path());
    for (const char* table : kTables) {
        EXPECT_EQ(rows_of(raw, table, "acme"), 0) << table;
        EXPECT_GT(rows_of(raw, table, "other"), 0) << table;
    }
    ASSERT_EQ(orgs().size(), 1u);
    ASSERT_TRUE(store().purge_org("never-seen", &err)) << err;
}

// ---- session.json migration ----

namespace {

void write_session(const std::string& dir, const std::string& org, const wa::SessionStatus& s) {
    std::string err;
    ASSERT_TRUE(wa::ensure_dir(dir + "/" + org, 0700, &err)) << err;
    ASSERT_TRUE(wa::write_file_atomic(dir + "/" + org + "/session.json", wa::session_file_json(org, s), 0600, &err))
        << err;
}

wa::SessionStatus status(wa::State state, bool wanted, const std::string& phone) {
    wa::SessionStatus s;
    s.state = state;
    s.wanted = wanted;
    s.phone = phone;
    s.state_since = 1700000200;
    s.connected_at = phone.empty() ? 0 : 1700000100;
    return s;
}

bool has_reason(const std::vector<std::pair<std::string, std::string>>& list, const std::string& org,
                const std::string& words) {
    for (const auto& entry : list)
        if (entry.first == org && entry.second.find(words) != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_F(StoreTest, SessionFilesMoveIntoTheStore) {
    std::string err;
    std::string state = dir_ + "/state";
    write_session(state, "alpha", status(wa::State::Connected, true, "573001234567"));
    write_session(state, "beta", status(wa::State::LoggedOut, false, ""));
    std::ofstream(state + "/beta/keep.txt") << "not ours";
    write_session(state, "delta", status(wa::State::Connected, true, "222"));
    ASSERT_TRUE(wa::ensure_dir(state + "/gamma", 0700, &err));
    std::ofstream(state + "/gamma/session.json") << "{ not json";
    ASSERT_TRUE(wa::ensure_dir(state + "/zeta", 0700, &err));
    ASSERT_EQ(mkfifo((state + "/zeta/session.json").c_str(), 0600), 0);
    write_session(dir_ + "/outside", "eps", status(wa::State::Connected, true, "333"));
    ASSERT_EQ(symlink((dir_ + "/outside/eps").c_str(), (state + "/eps").c_str()), 0);
    ASSERT_TRUE(wa::ensure_dir(state + "/.trash", 0700, &err));
    std::ofstream(state + "/owner.lock") << "";
    OrgRecord existing = make_org("delta");
    existing.phone = "111";
    ASSERT_TRUE(store().put_org(existing, &err)) << err;

    wa::store::MigrationReport report;
    alarm(10);
    ASSERT_TRUE(wa::store::migrate_session_files(store(), state, report, &err)) << err;
    alarm(0);
    EXPECT_EQ(report.migrated, (std::vector<std::string>{"alpha", "beta"}));
    EXPECT_EQ(report.corrupt.size(), 3u);
    EXPECT_TRUE(has_reason(report.corrupt, "gamma", "does not parse"));
    EXPECT_TRUE(has_reason(report.corrupt, "zeta", "not a regular file"));
    EXPECT_TRUE(has_reason(report.corrupt, "eps", "symbolic link"));
    EXPECT_TRUE(has_reason(report.left_alone, "delta", "already in the store"));

    auto loaded = orgs();
    ASSERT_EQ(loaded.size(), 3u);
    EXPECT_EQ(loaded[0].org, "alpha");
    EXPECT_TRUE(loaded[0].wanted);
    EXPECT_EQ(loaded[0].state, static_cast<uint8_t>(wa::State::Connected));
    EXPECT_EQ(loaded[0].phone, "573001234567");
    EXPECT_EQ(loaded[0].connected_at, 1700000100);
    EXPECT_EQ(loaded[0].state_since, 1700000200);
    EXPECT_EQ(loaded[1].org, "beta");
    EXPECT_FALSE(loaded[1].wanted);
    EXPECT_EQ(loaded[1].state, static_cast<uint8_t>(wa::State::LoggedOut));
    EXPECT_EQ(loaded[2].org, "delta");
    EXPECT_EQ(loaded[2].phone, "111");  // not overwritten

    EXPECT_FALSE(exists(state + "/alpha"));  // emptied, so removed
    EXPECT_FALSE(exists(state + "/beta/session.json"));
    EXPECT_TRUE(exists(state + "/beta/keep.txt"));
    EXPECT_TRUE(exists(state + "/gamma/session.json"));
    EXPECT_TRUE(exists(state + "/zeta/session.json"));
    EXPECT_TRUE(exists(state + "/delta/session.json"));
    EXPECT_TRUE(exists(dir_ + "/outside/eps/session.json"));
    EXPECT_TRUE(exists(state + "/owner.lock"));

    // Running it again changes nothing.
    ASSERT_TRUE(wa::store::migrate_session_files(store(), state, report, &err)) << err;
    EXPECT_TRUE(report.migrated.empty());
    EXPECT_EQ(report.corrupt.size(), 3u);
    EXPECT_EQ(orgs().size(), 3u);
}

// The foundation's atomic write went through session.json.tmp.<pid>.<hex>: a kill -9 left those behind.
TEST_F(StoreTest, FoundationTempFilesAreRemoved) {
    std::string err;
    std::string state = dir_ + "/state";
    const std::string tmp = "/session.json.tmp.4242.0123456789abcdef";
    write_session(state, "alpha", status(wa::State::Connected, true, "573001234567"));
    std::ofstream(state + "/alpha" + tmp) << "{\"half\":";
    ASSERT_TRUE(wa::ensure_dir(state + "/beta", 0700, &err));  // only a temp file: the directory goes too
    std::ofstream(state + "/beta" + tmp) << "x";
    std::ofstream(state + "/beta/session.json.tmp.1.2") << "y";
    ASSERT_TRUE(wa::ensure_dir(state + "/gamma", 0700, &err));  // something else stays, and its directory
    std::ofstream(state + "/gamma" + tmp) << "x";
    std::ofstream(state + "/gamma/keep.txt") << "not ours";
    ASSERT_TRUE(wa::ensure_dir(state + "/delta" + tmp, 0700, &err));  // a directory of that name is not ours
    write_session(dir_ + "/outside", "eps", status(wa::State::Connected, true, "333"));
    std::ofstream(dir_ + "/outside/eps" + tmp) << "x";
    ASSERT_EQ(symlink((dir_ + "/outside/eps").c_str(), (state + "/eps").c_str()), 0);

    wa::store::MigrationReport report;
    ASSERT_TRUE(wa::store::migrate_session_files(store(), state, report, &err)) << err;
    EXPECT_EQ(report.temps_removed, 4u);
    EXPECT_EQ(report.migrated, (std::vector<std::string>{"alpha"}));
    EXPECT_FALSE(exists(state + "/alpha"));
    EXPECT_FALSE(exists(state + "/beta"));
    EXPECT_FALSE(exists(state + "/gamma" + tmp));
    EXPECT_TRUE(exists(state + "/gamma/keep.txt"));
    EXPECT_TRUE(exists(state + "/delta" + tmp));
    EXPECT_TRUE(exists(dir_ + "/outside/eps" + tmp));  // never through a symlink
}

TEST_F(StoreTest, SessionFilesStayWhenTheMigrationCannotCommit) {
    std::string err;
    std::string state = dir_ + "/state";
    write_session(state, "alpha", status(wa::State::Connected, true, "573001234567"));
    write_session(state, "beta", status(wa::State::Connected, true, "573001234568"));
    store();
    RawDb(db_path()).exec("CREATE TRIGGER refuse BEFORE INSERT ON orgs WHEN NEW.org = 'beta' "
                          "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
    wa::store::MigrationReport report;
    EXPECT_FALSE(wa::store::migrate_session_files(store(), state, report, &err));
    EXPECT_NE(err.find("refused by the test"), std::string::npos) << err;
    EXPECT_TRUE(report.migrated.empty());
    EXPECT_TRUE(exists(state + "/alpha/session.json"));
    EXPECT_TRUE(exists(state + "/beta/session.json"));
    EXPECT_FALSE(store().in_transaction());
    EXPECT_TRUE(orgs().empty());  // alpha's insert went with the transaction
}

TEST_F(StoreTest, WalWithoutItsDatabaseIsRefused) {
    std::ofstream(db_path() + "-wal") << "left over";
    std::string err;
    EXPECT_EQ(wa::store::open_sqlite_store(dir_, false, &err), nullptr);
    EXPECT_NE(err.find("-wal file is there"), std::string::npos) << err;
    EXPECT_FALSE(exists(db_path()));
}

// ---- cost of a commit ----

TEST_F(StoreTest, MeasureGroupedAgainstSeparateCommits) {
    using Clock = std::chrono::steady_clock;
    std::string err;
    store();
    auto t0 = Clock::now();
    ASSERT_TRUE(store().begin(&err)) << err;
    for (int i = 0; i < 1000; i++) ASSERT_TRUE(store().put_org(make_org("g" + std::to_string(i)), &err)) << err;
    ASSERT_TRUE(store().commit(&err)) << err;
    auto t1 = Clock::now();
    for (int i = 0; i < 1000; i++) ASSERT_TRUE(store().put_org(make_org("s" + std::to_string(i)), &err)) << err;
    auto t2 = Clock::now();
    double grouped = std::chrono::duration<double, std::milli>(t1 - t0).count();
    double separate = std::chrono::duration<double, std::milli>(t2 - t1).count();
    std::printf("[ MEASURE ] one transaction of 1000 put_org: %.1f ms; 1000 autocommit put_org: %.1f ms\n", grouped,
                separate);
    EXPECT_LT(grouped, 3000.0);
    EXPECT_EQ(orgs().size(), 2000u);
}
