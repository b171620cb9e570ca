// The store's schema-2 tables: messages, idempotency keys, the device-list cache and privacy tokens, and what
// clear, logout (forget_credentials) and purge do to them. Raw SQL through a second connection checks what is
// really in the file.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/store/message_rules.hpp"
#include "wa/store/fsutil.hpp"
#include "wa/store/store.hpp"

using wa::store::MessageRecord;
using wa::store::PrivacyToken;
using wa::store::Store;

namespace {

const char* const kNewTables[] = {"messages", "idempotency_keys", "device_lists", "privacy_tokens"};

class Raw {
public:
    explicit Raw(const std::string& path) {
        if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) ADD_FAILURE() << path;
        sqlite3_busy_timeout(db_, 2000);
    }
    ~Raw() { sqlite3_close_v2(db_); }
    void exec(const std::string& sql) {
        char* msg = nullptr;
        if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) ADD_FAILURE() << sql << ": " << msg;
        sqlite3_free(msg);
    }
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

MessageRecord out_message(const std::string& id, int64_t created_at, const std::string& status = "pending") {
    MessageRecord m;
    m.id = id;
    m.direction = "out";
    m.chat_jid = "573001234567@s.whatsapp.net";
    m.recipient_pn = "573001234567";
    m.type = "text";
    m.text = "hola " + id;
    m.status = status;
    m.created_at = created_at;
    return m;
}

MessageRecord in_message(const std::string& id, int64_t created_at) {
    MessageRecord m;
    m.id = id;
    m.direction = "in";
    m.chat_jid = "123456789012345@lid";
    m.sender_jid = "123456789012345:3@lid";
    m.type = "text";
    m.text = "reply " + id;
    m.status = "received";
    m.created_at = created_at;
    m.server_t = created_at / 1000;
    return m;
}

void expect_same_message(const MessageRecord& a, const MessageRecord& b) {
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.direction, b.direction);
    EXPECT_EQ(a.chat_jid, b.chat_jid);
    EXPECT_EQ(a.sender_jid, b.sender_jid);
    EXPECT_EQ(a.recipient_pn, b.recipient_pn);
    EXPECT_EQ(a.type, b.type);
    EXPECT_EQ(a.text, b.text);
    EXPECT_EQ(a.raw, b.raw);
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.error_code, b.error_code);
    EXPECT_EQ(a.error, b.error);
    EXPECT_EQ(a.created_at, b.created_at);
    EXPECT_EQ(a.sent_at, b.sent_at);
    EXPECT_EQ(a.delivered_at, b.delivered_at);
    EXPECT_EQ(a.read_at, b.read_at);
    EXPECT_EQ(a.played_at, b.played_at);
    EXPECT_EQ(a.failed_at, b.failed_at);
    EXPECT_EQ(a.server_t, b.server_t);
    EXPECT_EQ(a.idempotency_key, b.idempotency_key);
    EXPECT_EQ(a.resend_count, b.resend_count);
}

class MessageStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/wa_msgstore_test_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override {
        store_.reset();
        std::string err;
        EXPECT_TRUE(wa::remove_tree(dir_, &err)) << err;
    }
    Store& store() {
        if (!store_) {
            std::string err;
            store_ = wa::store::open_sqlite_store(dir_, false, &err);
            EXPECT_TRUE(store_) << err;
        }
        return *store_;
    }
    std::string db_path() const { return dir_ + "/whatsapp.db"; }

    void put(const std::string& org, const MessageRecord& m) {
        std::string err;
        ASSERT_TRUE(store().put_message(org, m, &err)) << err;
    }
    MessageRecord load(const std::string& org, const std::string& id) {
        MessageRecord m;
        bool found = false;
        std::string err;
        EXPECT_TRUE(store().load_message(org, id, m, found, &err)) << err;
        EXPECT_TRUE(found) << id;
        return m;
    }
    bool advance(const std::string& org, const std::string& id, const std::string& status, int64_t at,
                 int code = 0, const std::string& error = "") {
        bool changed = false;
        std::string err;
        EXPECT_TRUE(store().advance_message_status(org, id, status, at, code, error, changed, &err)) << err;
        return changed;
    }
    uint64_t count(const std::string& org, const std::string& direction = "") {
        uint64_t n = 0;
        std::string err;
        EXPECT_TRUE(store().count_messages(org, direction, n, &err)) << err;
        return n;
    }
    // Every page of org's list, `limit` at a time; between pages, calls between_pages(page number).
    template <class F>
    std::vector<MessageRecord> all_pages(const std::string& org, const std::string& direction, size_t limit,
                                         F&& between_pages, size_t* pages = nullptr) {
        std::vector<MessageRecord> all, page;
        std::string cursor, next, err;
        size_t n = 0;
        do {
            EXPECT_TRUE(store().list_messages(org, direction, limit, cursor, page, next, &err)) << err;
            EXPECT_LE(page.size(), limit);
            all.insert(all.end(), page.begin(), page.end());
            cursor = next;
            between_pages(++n);
        } while (!cursor.empty() && n < 1000);
        if (pages) *pages = n;
        return all;
    }
    // One row in every table of schema 2 for org's live generation.
    void fill_new(const std::string& org) {
        std::string err;
        MessageRecord m = out_message("OUT1", 1700000000000);
        m.idempotency_key = "key-1";
        put(org, m);
        put(org, in_message("IN1", 1700000001000));
        ASSERT_TRUE(store().put_idempotency(org, "key-1", "hash", "OUT1", 1700000000000, &err)) << err;
        ASSERT_TRUE(store().put_devices(org, "573001234567@s.whatsapp.net", {0, 12}, 1700000000000, &err)) << err;
        ASSERT_TRUE(store().put_privacy_token(org, "123456789012345@lid", "tok", 1700000000, &err)) << err;
    }
    long rows_of(Raw& raw, const char* table, const std::string& org) {
        return raw.count(std::string("SELECT count(*) FROM ") + table + " WHERE org = '" + org + "'");
    }

    std::string dir_;
    std::unique_ptr<Store> store_;
};

std::vector<std::string> ids_of(const std::vector<MessageRecord>& v) {
    std::vector<std::string> out;
    for (const MessageRecord& m : v) out.push_back(m.direction + "/" + m.id);
    return out;
}

// Newest first by (created_at, id, direction), as the store promises.
bool newer(const MessageRecord& a, const MessageRecord& b) {
    if (a.created_at != b.created_at) return a.created_at > b.created_at;
    if (a.id != b.id) return a.id > b.id;
    return a.direction > b.direction;
}

}  // namespace

// ---- messages ----

TEST_F(MessageStoreTest, MessagesRoundTripEveryField) {
    std::string err;
    MessageRecord o = out_message("3EB0C767D26A1D6E1C2B", 1700000000123, "failed");
    o.sender_jid = "573009999999:12@s.whatsapp.net";
    o.text = "Caf\xc3\xa9 \xf0\x9f\x98\x80\nline two\n";
    o.error_code = 463;
    o.error = "reach-out timelock";
    o.sent_at = 1700000000200;
    o.delivered_at = 1700000000300;
    o.read_at = 1700000000400;
    o.played_at = 1700000000500;
    o.failed_at = 1700000000600;
    o.server_t = 1700000000;
    o.idempotency_key = std::string("k\0ey", 4);
    o.resend_count = 4000000000u;
    MessageRecord i = in_message("3EB0C767D26A1D6E1C2B", 1700000000999);  // the same id, the other direction
    i.type = "image";
    i.text.clear();
    i.raw = std::string("\x0a\x00\xff\x00raw", 7);
    put("acme", o);
    put("acme", i);

    MessageRecord got;
    bool found = false;
    ASSERT_TRUE(store().load_message("acme", o.id, got, found, &err)) << err;
    ASSERT_TRUE(found);
    expect_same_message(got, o);  // the outgoing one when both exist
    std::vector<MessageRecord> page;
    std::string next;
    ASSERT_TRUE(store().list_messages("acme", "in", 10, "", page, next, &err)) << err;
    ASSERT_EQ(page.size(), 1u);
    expect_same_message(page[0], i);
    EXPECT_EQ(next, "");
    ASSERT_TRUE(store().load_message("acme", "nope", got, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_message("other", o.id, got, found, &err)) << err;
    EXPECT_FALSE(found);

    Raw raw(db_path());
    EXPECT_EQ(raw.scalar("SELECT typeof(idempotency_key) || length(idempotency_key) FROM messages WHERE "
                         "direction = 'out'"),
              "blob4");
    EXPECT_EQ(raw.scalar("SELECT length(raw) FROM messages WHERE direction = 'in'"), "7");
}

TEST_F(MessageStoreTest, PutMessageReplacesTheSameIdAndDirection) {
    MessageRecord m = out_message("A1", 1000);
    put("acme", m);
    m.resend_count = 1;
    m.text = "changed";
    put("acme", m);
    expect_same_message(load("acme", "A1"), m);
    EXPECT_EQ(count("acme"), 1u);
    put("acme", in_message("A1", 2000));
    EXPECT_EQ(count("acme"), 2u);
}

TEST_F(MessageStoreTest, PutMessageRefusesWhatCouldNotBeLoadedAgain) {
    std::string err;
    struct Case {
        const char* what;
        void (*spoil)(MessageRecord&);
    };
    const Case cases[] = {
        {"id must be", [](MessageRecord& m) { m.id.clear(); }},
        {"id must be", [](MessageRecord& m) { m.id.assign(129, 'A'); }},
        {"direction", [](MessageRecord& m) { m.direction = "sideways"; }},
        {"unknown type", [](MessageRecord& m) { m.type = "poll"; }},
        {"status", [](MessageRecord& m) { m.status = "received"; }},
        {"status", [](MessageRecord& m) { m.status = ""; }},
        {"status", [](MessageRecord& m) {
             m.direction = "in";
             m.status = "sent";
         }},
        {"idempotency_key", [](MessageRecord& m) { m.idempotency_key.assign(129, 'k'); }},
    };
    for (const Case& c : cases) {
        MessageRecord m = out_message("A1", 1000);
        c.spoil(m);
        err.clear();
        EXPECT_FALSE(store().put_message("acme", m, &err)) << c.what;
        EXPECT_NE(err.find("message invalid"), std::string::npos) << err;
        EXPECT_NE(err.find(c.what), std::string::npos) << err;
    }
    MessageRecord longest = out_message(std::string(128, 'A'), 1000);
    longest.idempotency_key.assign(128, '\0');
    put("acme", longest);
    for (const char* type :
         {"text", "image", "document", "audio", "video", "sticker", "reaction", "contact", "location", "protocol",
          "unknown"}) {
        MessageRecord m = in_message(std::string("T-") + type, 1000);
        m.type = type;
        put("acme", m);
    }
    EXPECT_EQ(count("acme"), 12u);
    EXPECT_FALSE(store().put_message("bad org", out_message("A2", 1), &err));
}

// Every (current status, arriving status) pair.
TEST_F(MessageStoreTest, StatusMovesForwardOnlyForEveryTransition) {
    const char* const statuses[] = {"pending", "sent", "delivered", "read", "played", "failed"};
    auto rank = [](const std::string& s) {
        const char* order[] = {"pending", "sent", "delivered", "read", "played"};
        for (int i = 0; i < 5; i++)
            if (s == order[i]) return i;
        return -1;
    };
    auto stamp = [](MessageRecord& m, const std::string& s) -> int64_t* {
        if (s == "sent") return &m.sent_at;
        if (s == "delivered") return &m.delivered_at;
        if (s == "read") return &m.read_at;
        if (s == "played") return &m.played_at;
        if (s == "failed") return &m.failed_at;
        return nullptr;
    };
    int n = 0;
    for (const std::string from : statuses) {
        for (const std::string to : statuses) {
            std::string id = "M" + std::to_string(n++);
            MessageRecord m = out_message(id, 1000, from);
            if (int64_t* t = stamp(m, from)) *t = 5000;  // only the current status' own time is known
            if (from == "failed") {
                m.error_code = 479;
                m.error = "first";
            }
            put("acme", m);
            bool changed = advance("acme", id, to, 9000, 463, "second");

            MessageRecord want = m;
            bool want_changed = false;
            if (to == "failed") {
                if (from == "pending" || from == "sent") {
                    want.status = "failed";
                    want.failed_at = 9000;
                    want.error_code = 463;
                    want.error = "second";
                    want_changed = true;
                }
            } else if (to != "pending") {
                if (from != "failed" && rank(to) > rank(from)) {
                    want.status = to;
                    want_changed = true;
                }
                int64_t* t = stamp(want, to);
                if (*t == 0) *t = 9000;  // a late status still records its time when missing
            }
            SCOPED_TRACE(from + " -> " + to);
            EXPECT_EQ(changed, want_changed);
            expect_same_message(load("acme", id), want);
        }
    }
}

TEST_F(MessageStoreTest, StatusLifecycleAndLateReceipts) {
    std::string err;
    put("acme", out_message("A", 1000));
    EXPECT_TRUE(advance("acme", "A", "sent", 1100));
    EXPECT_TRUE(advance("acme", "A", "read", 1300));  // read before delivered: delivered_at stays unknown
    EXPECT_FALSE(advance("acme", "A", "delivered", 1200));
    EXPECT_FALSE(advance("acme", "A", "delivered", 1250));  // the first time recorded stays
    EXPECT_FALSE(advance("acme", "A", "sent", 1400));
    EXPECT_FALSE(advance("acme", "A", "failed", 1500, 463, "x"));
    EXPECT_TRUE(advance("acme", "A", "played", 1600));
    MessageRecord m = load("acme", "A");
    EXPECT_EQ(m.status, "played");
    EXPECT_EQ(m.sent_at, 1100);
    EXPECT_EQ(m.delivered_at, 1200);
    EXPECT_EQ(m.read_at, 1300);
    EXPECT_EQ(m.played_at, 1600);
    EXPECT_EQ(m.failed_at, 0);
    EXPECT_EQ(m.error_code, 0);

    bool changed = true;
    EXPECT_FALSE(store().advance_message_status("acme", "A", "received", 1, 0, "", changed, &err));
    EXPECT_NE(err.find("invalid status"), std::string::npos) << err;
    EXPECT_FALSE(changed);
    EXPECT_FALSE(store().advance_message_status("acme", "A", "bogus", 1, 0, "", changed, &err));
    EXPECT_FALSE(store().advance_message_status("acme", "unknown", "bogus", 1, 0, "", changed, &err));
    // Receipts for ids never stored here (sent from the phone) and for incoming messages change nothing.
    EXPECT_FALSE(advance("acme", "unknown", "read", 1));
    EXPECT_FALSE(advance("nobody", "A", "read", 1));
    put("acme", in_message("I", 1000));
    EXPECT_FALSE(advance("acme", "I", "read", 1));
    expect_same_message(load("acme", "I"), in_message("I", 1000));
}

TEST_F(MessageStoreTest, PendingMessagesAreTheOutgoingOnesWithoutAck) {
    std::string err;
    put("acme", out_message("P2", 2000));
    put("acme", out_message("P1", 1000));
    put("acme", out_message("S1", 1500));
    put("acme", in_message("I1", 500));
    put("other", out_message("O1", 100));
    EXPECT_TRUE(advance("acme", "S1", "sent", 1600));
    std::vector<MessageRecord> pending;
    ASSERT_TRUE(store().pending_messages("acme", pending, &err)) << err;
    EXPECT_EQ(ids_of(pending), (std::vector<std::string>{"out/P1", "out/P2"}));
    EXPECT_TRUE(advance("acme", "P1", "failed", 1700, 479, "bad"));
    ASSERT_TRUE(store().pending_messages("acme", pending, &err)) << err;
    EXPECT_EQ(ids_of(pending), (std::vector<std::string>{"out/P2"}));
    ASSERT_TRUE(store().pending_messages("nobody", pending, &err)) << err;
    EXPECT_TRUE(pending.empty());
}

TEST_F(MessageStoreTest, CountMessages) {
    std::string err;
    for (int i = 0; i < 7; i++) put("acme", out_message("O" + std::to_string(i), i));
    for (int i = 0; i < 3; i++) put("acme", in_message("I" + std::to_string(i), i));
    put("other", in_message("X", 1));
    EXPECT_EQ(count("acme"), 10u);
    EXPECT_EQ(count("acme", "out"), 7u);
    EXPECT_EQ(count("acme", "in"), 3u);
    EXPECT_EQ(count("nobody"), 0u);
    uint64_t n = 5;
    EXPECT_FALSE(store().count_messages("acme", "both", n, &err));
    EXPECT_NE(err.find("invalid direction"), std::string::npos) << err;
}

// 250 messages, ties on created_at included, both directions: every page newest first, each message exactly
// once, also while new messages arrive between pages.
TEST_F(MessageStoreTest, PagingThrough250MessagesNewestFirst) {
    std::string err;
    std::vector<MessageRecord> stored;
    ASSERT_TRUE(store().begin(&err)) << err;
    for (int i = 0; i < 250; i++) {
        // Three messages per millisecond, and some ids shared by both directions.
        int64_t at = 1700000000000 + i / 3;
        MessageRecord m = i % 5 == 0 ? in_message("ID" + std::to_string(i % 7 == 0 ? i - 1 : i), at)
                                     : out_message("ID" + std::to_string(i), at);
        put("acme", m);
        stored.push_back(m);
    }
    ASSERT_TRUE(store().commit(&err)) << err;
    std::sort(stored.begin(), stored.end(), newer);
    for (int i = 0; i < 5; i++) put("other", out_message("X" + std::to_string(i), 1800000000000));

    size_t pages = 0;
    auto all = all_pages("acme", "", 100, [](size_t) {}, &pages);
    EXPECT_EQ(pages, 3u);
    EXPECT_EQ(ids_of(all), ids_of(stored));

    // New messages (newer than everything) arrive after every page: none shows up in a later page, none of
    // the 250 repeats or goes missing.
    int added = 0;
    all = all_pages("acme", "", 40, [&](size_t page) {
        for (int k = 0; k < 3; k++) {
            put("acme", out_message("NEW" + std::to_string(page) + "-" + std::to_string(k), 1750000000000 + added));
            put("acme", in_message("NEWIN" + std::to_string(added), 1700000000000 + 40));  // in the middle
            added++;
        }
    });
    std::set<std::string> seen;
    for (const std::string& id : ids_of(all)) EXPECT_TRUE(seen.insert(id).second) << "twice: " << id;
    for (const std::string& id : ids_of(stored)) EXPECT_EQ(seen.count(id), 1u) << "missing: " << id;
    for (const std::string& id : seen) EXPECT_EQ(id.find("out/NEW"), std::string::npos) << "newer than page 1: " << id;
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end(), newer));

    // One direction at a time, and a last page exactly full.
    std::vector<MessageRecord> outs, ins;
    for (const MessageRecord& m : stored) (m.direction == "out" ? outs : ins).push_back(m);
    ASSERT_EQ(outs.size(), 200u);
    ASSERT_EQ(ins.size(), 50u);
    std::vector<MessageRecord> fresh;
    for (const MessageRecord& m : all_pages("acme", "out", 1000, [](size_t) {}))
        if (m.id.rfind("NEW", 0) != 0) fresh.push_back(m);
    EXPECT_EQ(ids_of(fresh), ids_of(outs));
    auto in_pages = all_pages("acme", "in", 7, [](size_t) {});
    fresh.clear();
    for (const MessageRecord& m : in_pages)
        if (m.id.rfind("NEW", 0) != 0) fresh.push_back(m);
    EXPECT_EQ(ids_of(fresh), ids_of(ins));

    std::vector<MessageRecord> page;
    std::string next;
    ASSERT_TRUE(store().list_messages("other", "", 5, "", page, next, &err)) << err;
    EXPECT_EQ(page.size(), 5u);
    EXPECT_EQ(next, "") << "a full last page still ends the list";
    ASSERT_TRUE(store().list_messages("other", "", 0, "", page, next, &err)) << err;
    EXPECT_EQ(page.size(), 1u) << "limit 0 is 1";
    ASSERT_TRUE(store().list_messages("nobody", "in", 5, "", page, next, &err)) << err;
    EXPECT_TRUE(page.empty());
}

TEST_F(MessageStoreTest, CursorsAreOpaqueAndChecked) {
    std::string err, next;
    std::vector<MessageRecord> page;
    for (int i = 0; i < 3; i++) put("acme", out_message("C+/" + std::to_string(i), -5 + i));
    ASSERT_TRUE(store().list_messages("acme", "", 1, "", page, next, &err)) << err;
    ASSERT_FALSE(next.empty());
    EXPECT_TRUE(wa::store::message_cursor_valid(next));
    EXPECT_EQ(next.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos)
        << "URL-safe: " << next;
    wa::store::rules::Cursor c;
    ASSERT_TRUE(wa::store::rules::decode_cursor(next, c));
    EXPECT_EQ(c.created_at, -3);
    EXPECT_EQ(c.id, "C+/2");
    EXPECT_EQ(wa::store::rules::encode_cursor(c), next);
    c = {INT64_MIN + 1, "in", std::string(128, ':')};
    wa::store::rules::Cursor back;
    ASSERT_TRUE(wa::store::rules::decode_cursor(wa::store::rules::encode_cursor(c), back));
    EXPECT_EQ(back.created_at, c.created_at);
    EXPECT_EQ(back.id, c.id);

    EXPECT_TRUE(wa::store::message_cursor_valid(""));
    for (const std::string& bad : {std::string("x"), std::string("bTE6MTox"), next + "==", next.substr(1),
                                  std::string("!!!!"), std::string(300, 'A'),
                                  // "m1:1:up:x", "m1::out:x", "m1:1:out:", "m2:1:out:x", "m1:99999999999999999999:out:x"
                                  std::string("bTE6MTp1cDp4"), std::string("bTE6Om91dDp4"), std::string("bTE6MTpvdXQ6"),
                                  std::string("bTI6MTpvdXQ6eA"), std::string("bTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk6b3V0Ong")}) {
        EXPECT_FALSE(wa::store::message_cursor_valid(bad)) << bad;
        EXPECT_FALSE(store().list_messages("acme", "", 1, bad, page, next, &err)) << bad;
        EXPECT_NE(err.find("invalid cursor"), std::string::npos) << err;
    }
    EXPECT_TRUE(wa::store::message_cursor_valid("bTE6MTpvdXQ6eA"));  // "m1:1:out:x"
    EXPECT_FALSE(store().list_messages("acme", "up", 1, "", page, next, &err));
    EXPECT_NE(err.find("invalid direction"), std::string::npos) << err;
}

TEST_F(MessageStoreTest, RetentionByAgeAndByCap) {
    std::string err;
    ASSERT_TRUE(store().begin(&err)) << err;
    for (int i = 0; i < 10; i++) {
        put("acme", out_message("OLD" + std::to_string(i), 1000 + i));
        put("acme", in_message("NEW" + std::to_string(i), 5000 + i));
        put("beta", out_message("B" + std::to_string(i), 6000 + i));
    }
    put("gone", out_message("G", 10));
    ASSERT_TRUE(store().put_idempotency("acme", "k", "h", "OLD1", 1000, &err)) << err;
    ASSERT_TRUE(store().commit(&err)) << err;
    ASSERT_TRUE(store().clear_org("gone", &err)) << err;  // cleared generations expire too
    put("gone", out_message("G2", 7000));

    uint64_t deleted = 0;
    ASSERT_TRUE(store().expire_messages(5000, 0, deleted, &err)) << err;
    EXPECT_EQ(deleted, 11u);
    EXPECT_EQ(count("acme"), 10u);
    EXPECT_EQ(count("acme", "out"), 0u);
    EXPECT_EQ(count("beta"), 10u);
    EXPECT_EQ(Raw(db_path()).count("SELECT count(*) FROM messages WHERE org = 'gone'"), 1);
    ASSERT_TRUE(store().expire_messages(5000, 0, deleted, &err)) << err;
    EXPECT_EQ(deleted, 0u);

    // Then the cap: the newest 3 of each organization stay.
    ASSERT_TRUE(store().expire_messages(0, 3, deleted, &err)) << err;
    EXPECT_EQ(deleted, 14u);
    std::vector<MessageRecord> page;
    std::string next;
    ASSERT_TRUE(store().list_messages("acme", "", 10, "", page, next, &err)) << err;
    EXPECT_EQ(ids_of(page), (std::vector<std::string>{"in/NEW9", "in/NEW8", "in/NEW7"}));
    ASSERT_TRUE(store().list_messages("beta", "", 10, "", page, next, &err)) << err;
    EXPECT_EQ(ids_of(page), (std::vector<std::string>{"out/B9", "out/B8", "out/B7"}));
    EXPECT_EQ(count("gone"), 1u);

    // The cap counts every generation of an organization, newest first by created_at.
    ASSERT_TRUE(store().clear_org("beta", &err)) << err;
    put("beta", out_message("B-new", 9000));
    ASSERT_TRUE(store().expire_messages(0, 2, deleted, &err)) << err;
    EXPECT_EQ(deleted, 3u);  // acme 1, beta 2 (B8, B7) of the cleared generation
    EXPECT_EQ(count("beta"), 1u);
    EXPECT_EQ(Raw(db_path()).scalar("SELECT group_concat(id) FROM (SELECT id FROM messages WHERE org = 'beta' "
                                    "ORDER BY id)"),
              "B-new,B9");
    // Retention of messages leaves idempotency keys to expire_idempotency.
    EXPECT_EQ(Raw(db_path()).count("SELECT count(*) FROM idempotency_keys"), 1);
}

// ---- idempotency keys ----

TEST_F(MessageStoreTest, IdempotencyKeysAreBytesIncludingNul) {
    std::string err, hash, id;
    int64_t at = 0;
    bool found = true;
    const std::string nul_b("a\0b", 3), nul_c("a\0c", 3);
    const std::string body_hash("\x00\x01\x02\xff", 4);
    ASSERT_TRUE(store().put_idempotency("acme", nul_b, body_hash, "ID-B", 1000, &err)) << err;
    ASSERT_TRUE(store().put_idempotency("acme", nul_c, "other-hash", "ID-C", 2000, &err)) << err;
    ASSERT_TRUE(store().put_idempotency("acme", "a", "short", "ID-A", 3000, &err)) << err;

    ASSERT_TRUE(store().load_idempotency("acme", nul_b, hash, id, at, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(hash, body_hash);
    EXPECT_EQ(id, "ID-B");
    EXPECT_EQ(at, 1000);
    ASSERT_TRUE(store().load_idempotency("acme", nul_c, hash, id, at, found, &err)) << err;
    EXPECT_EQ(id, "ID-C");
    ASSERT_TRUE(store().load_idempotency("acme", "a", hash, id, at, found, &err)) << err;
    EXPECT_EQ(id, "ID-A");
    ASSERT_TRUE(store().load_idempotency("acme", std::string("a\0", 2), hash, id, at, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_idempotency("other", nul_b, hash, id, at, found, &err)) << err;
    EXPECT_FALSE(found);
    {
        Raw raw(db_path());
        EXPECT_EQ(raw.count("SELECT count(*) FROM idempotency_keys WHERE key = x'610062' AND typeof(key) = 'blob'"), 1);
    }

    // put replaces (a key past its 24 h, not deleted yet, is reused).
    ASSERT_TRUE(store().put_idempotency("acme", nul_b, "new", "ID-B2", 4000, &err)) << err;
    ASSERT_TRUE(store().load_idempotency("acme", nul_b, hash, id, at, found, &err)) << err;
    EXPECT_EQ(hash, "new");
    EXPECT_EQ(id, "ID-B2");
    EXPECT_EQ(at, 4000);

    ASSERT_TRUE(store().put_idempotency("acme", std::string(128, '\0'), "", "ID-Z", 5000, &err)) << err;
    ASSERT_TRUE(store().load_idempotency("acme", std::string(128, '\0'), hash, id, at, found, &err)) << err;
    EXPECT_TRUE(found);
    EXPECT_EQ(hash, "");
    EXPECT_FALSE(store().put_idempotency("acme", std::string(129, 'k'), "h", "X", 1, &err));
    EXPECT_NE(err.find("1..128 bytes"), std::string::npos) << err;
    EXPECT_FALSE(store().put_idempotency("acme", "", "h", "X", 1, &err));

    uint64_t deleted = 0;
    ASSERT_TRUE(store().expire_idempotency(3000, deleted, &err)) << err;
    EXPECT_EQ(deleted, 1u);  // nul_c at 2000
    ASSERT_TRUE(store().load_idempotency("acme", nul_c, hash, id, at, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_idempotency("acme", "a", hash, id, at, found, &err)) << err;
    EXPECT_TRUE(found);
}

// ---- device lists ----

TEST_F(MessageStoreTest, DeviceListsRoundTrip) {
    std::string err;
    std::vector<uint32_t> devices{99};
    int64_t fetched = 7;
    bool found = true;
    const std::string pn = "573001234567@s.whatsapp.net", lid = "123456789012345@lid";
    ASSERT_TRUE(store().load_devices("acme", pn, devices, fetched, found, &err)) << err;
    EXPECT_FALSE(found);

    ASSERT_TRUE(store().put_devices("acme", pn, {0, 12, 33, 4294967295u}, 1000, &err)) << err;
    ASSERT_TRUE(store().put_devices("acme", lid, {0, 12}, 2000, &err)) << err;
    ASSERT_TRUE(store().put_devices("acme", "573009999999@s.whatsapp.net", {}, 3000, &err)) << err;
    ASSERT_TRUE(store().load_devices("acme", pn, devices, fetched, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(devices, (std::vector<uint32_t>{0, 12, 33, 4294967295u}));
    EXPECT_EQ(fetched, 1000);
    ASSERT_TRUE(store().load_devices("acme", "573009999999@s.whatsapp.net", devices, fetched, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_TRUE(devices.empty());
    EXPECT_EQ(fetched, 3000);
    ASSERT_TRUE(store().load_devices("other", pn, devices, fetched, found, &err)) << err;
    EXPECT_FALSE(found);

    ASSERT_TRUE(store().put_devices("acme", pn, {0}, 4000, &err)) << err;  // a fresh usync replaces the list
    ASSERT_TRUE(store().load_devices("acme", pn, devices, fetched, found, &err)) << err;
    EXPECT_EQ(devices, (std::vector<uint32_t>{0}));
    EXPECT_EQ(fetched, 4000);
    EXPECT_EQ(Raw(db_path()).scalar("SELECT devices FROM device_lists WHERE user_jid = '" + lid + "'"), "0,12");

    ASSERT_TRUE(store().delete_devices("acme", pn, &err)) << err;
    ASSERT_TRUE(store().load_devices("acme", pn, devices, fetched, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().delete_devices("acme", "never@s.whatsapp.net", &err)) << err;

    uint64_t deleted = 0;
    ASSERT_TRUE(store().expire_devices(2500, deleted, &err)) << err;
    EXPECT_EQ(deleted, 1u);
    ASSERT_TRUE(store().load_devices("acme", lid, devices, fetched, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_devices("acme", "573009999999@s.whatsapp.net", devices, fetched, found, &err)) << err;
    EXPECT_TRUE(found);

    EXPECT_FALSE(store().put_devices("acme", "", {0}, 1, &err));
    Raw(db_path()).exec("UPDATE device_lists SET devices = '0,,1'");
    EXPECT_FALSE(store().load_devices("acme", "573009999999@s.whatsapp.net", devices, fetched, found, &err));
    EXPECT_NE(err.find("device list corrupt"), std::string::npos) << err;
    EXPECT_FALSE(found);
}

// ---- privacy tokens ----

TEST_F(MessageStoreTest, PrivacyTokensAsWhatsmeowKeepsThem) {
    std::string err;
    PrivacyToken p;
    bool found = true;
    const std::string lid = "123456789012345@lid", pn = "573001234567@s.whatsapp.net";
    ASSERT_TRUE(store().load_privacy_token("acme", lid, p, found, &err)) << err;
    EXPECT_FALSE(found);

    const std::string token("\x0a\x00tok\xff", 6);
    ASSERT_TRUE(store().put_privacy_token("acme", lid, token, 1700000000, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", lid, p, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(p.token, token);
    EXPECT_EQ(p.t, 1700000000);
    EXPECT_EQ(p.sender_t, 0);

    // Issuing ours keeps their token; an older token of theirs is ignored and keeps our sender_t.
    ASSERT_TRUE(store().put_privacy_token_sender_t("acme", lid, 1700000500, &err)) << err;
    ASSERT_TRUE(store().put_privacy_token("acme", lid, "older", 1699999999, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", lid, p, found, &err)) << err;
    EXPECT_EQ(p.token, token);
    EXPECT_EQ(p.t, 1700000000);
    EXPECT_EQ(p.sender_t, 1700000500);
    ASSERT_TRUE(store().put_privacy_token("acme", lid, "newer", 1700000900, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", lid, p, found, &err)) << err;
    EXPECT_EQ(p.token, "newer");
    EXPECT_EQ(p.t, 1700000900);
    EXPECT_EQ(p.sender_t, 1700000500);
    ASSERT_TRUE(store().put_privacy_token_sender_t("acme", lid, 1701000000, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", lid, p, found, &err)) << err;
    EXPECT_EQ(p.sender_t, 1701000000);
    EXPECT_EQ(p.sender_t / 604800, 2812) << "the 7-day bucket of the last issuance";

    // Issued before any token of theirs arrived: a row with sender_t only, then their token fills it.
    const std::string other = "573002222222@s.whatsapp.net";
    ASSERT_TRUE(store().put_privacy_token_sender_t("acme", other, 1700000100, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", other, p, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(p.token, "");
    EXPECT_EQ(p.t, 0);
    EXPECT_EQ(p.sender_t, 1700000100);
    ASSERT_TRUE(store().put_privacy_token("acme", other, "theirs", 1700000200, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", other, p, found, &err)) << err;
    EXPECT_EQ(p.token, "theirs");
    EXPECT_EQ(p.sender_t, 1700000100);

    // Stored under the LID, found through the PN once the mapping is known, and the other way round.
    ASSERT_TRUE(store().load_privacy_token("acme", pn, p, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001234567", "123456789012345", &err)) << err;
    ASSERT_TRUE(store().put_lid_mapping("acme", "573002222222", "222222222222222", &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", pn, p, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(p.token, "newer");
    ASSERT_TRUE(store().load_privacy_token("acme", "222222222222222@lid", p, found, &err)) << err;
    ASSERT_TRUE(found);
    EXPECT_EQ(p.token, "theirs");
    ASSERT_TRUE(store().load_privacy_token("other", lid, p, found, &err)) << err;
    EXPECT_FALSE(found);
    // A token under each side: the newer one wins, asked by either side (max(t), whole row).
    ASSERT_TRUE(store().put_privacy_token("acme", pn, "pn-older", 1700000100, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", pn, p, found, &err)) << err;
    EXPECT_EQ(p.token, "newer");
    EXPECT_EQ(p.sender_t, 1701000000);
    ASSERT_TRUE(store().put_privacy_token("acme", pn, "pn-newest", 1700009000, &err)) << err;
    ASSERT_TRUE(store().load_privacy_token("acme", lid, p, found, &err)) << err;
    EXPECT_EQ(p.token, "pn-newest");
    EXPECT_EQ(p.t, 1700009000);
    EXPECT_EQ(p.sender_t, 0) << "sender_t comes from the same row as the token";

    EXPECT_FALSE(store().put_privacy_token("acme", lid, "", 1, &err));
    EXPECT_FALSE(store().put_privacy_token("acme", "", "x", 1, &err));

    // Expiry (whatsmeow's DeleteExpiredPrivacyTokens) keeps a row whose sender_t is still recent.
    ASSERT_TRUE(store().put_privacy_token("acme", "999@lid", "stale", 1600000000, &err)) << err;
    ASSERT_TRUE(store().put_privacy_token("acme", "998@lid", "stale", 1600000000, &err)) << err;
    ASSERT_TRUE(store().put_privacy_token_sender_t("acme", "998@lid", 1700000000, &err)) << err;
    uint64_t deleted = 0;
    ASSERT_TRUE(store().expire_privacy_tokens(1650000000, deleted, &err)) << err;
    EXPECT_EQ(deleted, 1u);
    ASSERT_TRUE(store().load_privacy_token("acme", "999@lid", p, found, &err)) << err;
    EXPECT_FALSE(found);
    ASSERT_TRUE(store().load_privacy_token("acme", "998@lid", p, found, &err)) << err;
    EXPECT_TRUE(found);
}

// ---- the read cache (src/core/store/read_cache.hpp) ----

// LID mappings, device lists and privacy tokens are answered from memory after the first read: every write, a
// rollback and a clear must show at once, as if SQLite had been asked.
TEST_F(MessageStoreTest, CachedLookupsFollowEveryWrite) {
    std::string err, lid, pn;
    bool found = false;
    auto lid_of = [&](const std::string& p) {
        lid.clear();
        EXPECT_TRUE(store().lid_for_pn("acme", p, lid, found, &err)) << err;
        return found ? lid : std::string("-");
    };
    auto pn_of = [&](const std::string& l) {
        pn.clear();
        EXPECT_TRUE(store().pn_for_lid("acme", l, pn, found, &err)) << err;
        return found ? pn : std::string("-");
    };
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001110001", "111", &err)) << err;
    EXPECT_EQ(lid_of("573001110001"), "111");
    EXPECT_EQ(pn_of("111"), "573001110001");
    // the number moves to another LID: the old LID no longer answers, from memory or not
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001110001", "222", &err)) << err;
    EXPECT_EQ(lid_of("573001110001"), "222");
    EXPECT_EQ(pn_of("111"), "-");
    EXPECT_EQ(pn_of("222"), "573001110001");
    // a LID taken by another number
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001110002", "222", &err)) << err;
    EXPECT_EQ(lid_of("573001110001"), "-");
    EXPECT_EQ(pn_of("222"), "573001110002");
    // a write rolled back is forgotten by the cache too
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001110003", "333", &err)) << err;
    EXPECT_EQ(lid_of("573001110003"), "333");
    store().rollback();
    EXPECT_EQ(lid_of("573001110003"), "-");
    EXPECT_EQ(pn_of("333"), "-");

    // device lists
    std::vector<uint32_t> devs;
    int64_t at = 0;
    auto devices_of = [&](const std::string& user) {
        devs.clear();
        EXPECT_TRUE(store().load_devices("acme", user, devs, at, found, &err)) << err;
        std::string out = found ? std::to_string(at) + ":" : "-";
        for (uint32_t d : devs) out += std::to_string(d) + ",";
        return out;
    };
    ASSERT_TRUE(store().put_devices("acme", "111@lid", {0, 3}, 1000, &err)) << err;
    EXPECT_EQ(devices_of("111@lid"), "1000:0,3,");
    ASSERT_TRUE(store().put_devices("acme", "111@lid", {0, 3, 7}, 2000, &err)) << err;
    EXPECT_EQ(devices_of("111@lid"), "2000:0,3,7,");
    ASSERT_TRUE(store().delete_devices("acme", "111@lid", &err)) << err;
    EXPECT_EQ(devices_of("111@lid"), "-");
    ASSERT_TRUE(store().put_devices("acme", "111@lid", {0}, 3000, &err)) << err;
    EXPECT_EQ(devices_of("111@lid"), "3000:0,");
    uint64_t deleted = 0;
    ASSERT_TRUE(store().expire_devices(5000, deleted, &err)) << err;
    EXPECT_EQ(deleted, 1u);
    EXPECT_EQ(devices_of("111@lid"), "-");

    // privacy tokens: read (not found, then found), written, found through a mapping learned later
    PrivacyToken p;
    auto token_of = [&](const std::string& jid) {
        p = PrivacyToken{};
        EXPECT_TRUE(store().load_privacy_token("acme", jid, p, found, &err)) << err;
        return found ? p.token + "@" + std::to_string(p.t) + "/" + std::to_string(p.sender_t) : std::string("-");
    };
    EXPECT_EQ(token_of("444@lid"), "-");
    ASSERT_TRUE(store().put_privacy_token("acme", "444@lid", "tok", 1700000000, &err)) << err;
    EXPECT_EQ(token_of("444@lid"), "tok@1700000000/0");
    ASSERT_TRUE(store().put_privacy_token_sender_t("acme", "444@lid", 1700000500, &err)) << err;
    EXPECT_EQ(token_of("444@lid"), "tok@1700000000/1700000500");
    EXPECT_EQ(token_of("573001110004@s.whatsapp.net"), "-");
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001110004", "444", &err)) << err;
    EXPECT_EQ(token_of("573001110004@s.whatsapp.net"), "tok@1700000000/1700000500");
    ASSERT_TRUE(store().expire_privacy_tokens(1800000000, deleted, &err)) << err;
    EXPECT_EQ(token_of("444@lid"), "-");

    // a cleared organization keeps nothing, in its next generation either
    ASSERT_TRUE(store().put_devices("acme", "222@lid", {0}, 9000, &err)) << err;
    EXPECT_EQ(devices_of("222@lid"), "9000:0,");
    EXPECT_EQ(pn_of("222"), "573001110002");
    ASSERT_TRUE(store().clear_org("acme", &err)) << err;
    EXPECT_EQ(pn_of("222"), "-");
    EXPECT_EQ(devices_of("222@lid"), "-");
    ASSERT_TRUE(store().put_lid_mapping("acme", "573001110005", "555", &err)) << err;  // a new generation
    EXPECT_EQ(pn_of("222"), "-");
    EXPECT_EQ(lid_of("573001110005"), "555");

    // the organization's row (every write makes sure it exists, remembered after the first): created by a write
    // that was rolled back or removed by a purge, it is created again by the next write
    auto newco_lid = [&] {
        lid.clear();
        EXPECT_TRUE(store().lid_for_pn("newco", "573001110006", lid, found, &err)) << err;
        return found ? lid : std::string("-");
    };
    ASSERT_TRUE(store().begin(&err)) << err;
    ASSERT_TRUE(store().put_lid_mapping("newco", "573001110006", "666", &err)) << err;
    store().rollback();
    ASSERT_TRUE(store().put_lid_mapping("newco", "573001110006", "666", &err)) << err;
    EXPECT_EQ(newco_lid(), "666");
    ASSERT_TRUE(store().purge_org("newco", &err)) << err;
    EXPECT_EQ(newco_lid(), "-");
    ASSERT_TRUE(store().put_lid_mapping("newco", "573001110006", "777", &err)) << err;
    EXPECT_EQ(newco_lid(), "777");
}

// ---- clear, logout, purge ----

TEST_F(MessageStoreTest, ClearKeepsTheNewTablesInTheFileButNeverLoadsThem) {
    std::string err, hash, id;
    fill_new("acme");
    fill_new("other");
    ASSERT_TRUE(store().clear_org("acme", &err)) << err;
    {
        Raw raw(db_path());
        for (const char* table : kNewTables) EXPECT_GT(rows_of(raw, table, "acme"), 0) << table;
    }
    MessageRecord m;
    bool found = true;
    ASSERT_TRUE(store().load_message("acme", "OUT1", m, found, &err)) << err;
    EXPECT_FALSE(found);
    EXPECT_EQ(count("acme"), 0u);
    std::vector<MessageRecord> list;
    std::string next;
    ASSERT_TRUE(store().list_messages("acme", "", 10, "", list, next, &err)) << err;
    EXPECT_TRUE(list.empty());
    ASSERT_TRUE(store().pending_messages("acme", list, &err)) << err;
    EXPECT_TRUE(list.empty());
    EXPECT_FALSE(advance("acme", "OUT1", "sent", 1));
    int64_t at = 0;
    ASSERT_TRUE(store().load_idempotency("acme", "key-1", hash, id, at, found, &err)) << err;
    EXPECT_FALSE(found);
    std::vector<uint32_t> devices;
    ASSERT_TRUE(store().load_devices("acme", "573001234567@s.whatsapp.net", devices, at, found, &err)) << err;
    EXPECT_FALSE(found);
    PrivacyToken p;
    ASSERT_TRUE(store().load_privacy_token("acme", "123456789012345@lid", p, found, &err)) << err;
    EXPECT_FALSE(found);
    EXPECT_EQ(count("other"), 2u);

    // The next generation starts empty and may reuse every key.
    fill_new("acme");
    EXPECT_EQ(count("acme"), 2u);
    Raw raw(db_path());
    EXPECT_EQ(raw.count("SELECT count(*) FROM messages WHERE org = 'acme'"), 4);
    EXPECT_EQ(raw.count("SELECT count(DISTINCT generation) FROM idempotency_keys WHERE org = 'acme'"), 2);
    EXPECT_EQ(raw.scalar("PRAGMA foreign_key_check"), "");
}

// Logout ends the linked device, not the organization's history: device lists and privacy tokens (the
// device's relationship with WhatsApp) go with the keys; messages and idempotency keys stay readable.
TEST_F(MessageStoreTest, ForgetCredentialsKeepsMessagesAndIdempotencyKeys) {
    std::string err, hash, id;
    fill_new("acme");
    fill_new("other");
    ASSERT_TRUE(store().forget_credentials("acme", &err)) << err;
    {
        Raw raw(db_path());
        EXPECT_EQ(rows_of(raw, "messages", "acme"), 2);
        EXPECT_EQ(rows_of(raw, "idempotency_keys", "acme"), 1);
        EXPECT_EQ(rows_of(raw, "device_lists", "acme"), 0);
        EXPECT_EQ(rows_of(raw, "privacy_tokens", "acme"), 0);
        for (const char* table : kNewTables) EXPECT_GT(rows_of(raw, table, "other"), 0) << table;
    }
    EXPECT_EQ(load("acme", "OUT1").text, "hola OUT1");
    EXPECT_EQ(count("acme"), 2u);
    bool found = false;
    int64_t at = 0;
    ASSERT_TRUE(store().load_idempotency("acme", "key-1", hash, id, at, found, &err)) << err;
    EXPECT_TRUE(found);
    EXPECT_EQ(id, "OUT1");
    // A message that waited for its ack when the session logged out is still there, and still pending:
    // reported, never silently dropped.
    std::vector<MessageRecord> pending;
    ASSERT_TRUE(store().pending_messages("acme", pending, &err)) << err;
    EXPECT_EQ(ids_of(pending), (std::vector<std::string>{"out/OUT1"}));
}

TEST_F(MessageStoreTest, PurgeDeletesTheNewTablesInEveryGeneration) {
    std::string err;
    fill_new("acme");
    ASSERT_TRUE(store().clear_org("acme", &err)) << err;
    fill_new("acme");
    ASSERT_TRUE(store().forget_credentials("acme", &err)) << err;
    fill_new("other");
    ASSERT_TRUE(store().purge_org("acme", &err)) << err;
    Raw raw(db_path());
    for (const char* table : kNewTables) {
        EXPECT_EQ(rows_of(raw, table, "acme"), 0) << table;
        EXPECT_GT(rows_of(raw, table, "other"), 0) << table;
    }
    EXPECT_EQ(rows_of(raw, "orgs", "acme"), 0);
    EXPECT_EQ(count("acme"), 0u);
}

TEST_F(MessageStoreTest, AFailedMessageWriteInsideTheGroupUndoesOnlyItself) {
    std::string err;
    ASSERT_TRUE(store().begin(&err)) << err;
    put("acme", out_message("A", 1));
    MessageRecord bad = out_message("B", 2);
    bad.type = "nope";
    EXPECT_FALSE(store().put_message("acme", bad, &err));
    bool changed = true;
    EXPECT_FALSE(store().advance_message_status("acme", "A", "nope", 3, 0, "", changed, &err));
    EXPECT_TRUE(advance("acme", "A", "sent", 4));
    ASSERT_TRUE(store().commit(&err)) << err;
    EXPECT_EQ(load("acme", "A").status, "sent");
    EXPECT_EQ(count("acme"), 1u);
}

TEST_F(MessageStoreTest, CorruptMessageRowIsAnError) {
    std::string err;
    put("acme", out_message("A", 1));
    put("acme", out_message("B", 2));
    Raw(db_path()).exec("UPDATE messages SET status = 'lost' WHERE id = 'B'");
    MessageRecord m;
    bool found = true;
    EXPECT_FALSE(store().load_message("acme", "B", m, found, &err));
    EXPECT_NE(err.find("message corrupt"), std::string::npos) << err;
    EXPECT_FALSE(found);
    std::vector<MessageRecord> page;
    std::string next;
    EXPECT_FALSE(store().list_messages("acme", "", 10, "", page, next, &err));
    bool changed = true;
    EXPECT_FALSE(store().advance_message_status("acme", "B", "sent", 1, 0, "", changed, &err));
    EXPECT_EQ(load("acme", "A").id, "A");
}

// ---- cost ----

TEST_F(MessageStoreTest, MeasurePutAndAdvance10000Messages) {
    using Clock = std::chrono::steady_clock;
    std::string err;
    store();
    std::vector<MessageRecord> batch;
    for (int i = 0; i < 10000; i++) {
        MessageRecord m = out_message("3EB0" + std::to_string(1000000 + i), 1700000000000 + i);
        m.text = "Recordatorio: su cita es ma\xc3\xb1" "ana a las 10:00. Responda SI para confirmar.";
        m.idempotency_key = "reminder-" + std::to_string(i);
        batch.push_back(m);
    }
    auto t0 = Clock::now();
    ASSERT_TRUE(store().begin(&err)) << err;
    for (const MessageRecord& m : batch) ASSERT_TRUE(store().put_message("acme", m, &err)) << err;
    ASSERT_TRUE(store().commit(&err)) << err;
    auto t1 = Clock::now();
    ASSERT_TRUE(store().begin(&err)) << err;
    for (const MessageRecord& m : batch) {
        bool changed = false;
        ASSERT_TRUE(store().advance_message_status("acme", m.id, "sent", 1700000001000, 0, "", changed, &err)) << err;
        ASSERT_TRUE(changed);
    }
    ASSERT_TRUE(store().commit(&err)) << err;
    auto t2 = Clock::now();
    std::vector<MessageRecord> page;
    std::string next;
    ASSERT_TRUE(store().list_messages("acme", "out", 100, "", page, next, &err)) << err;
    ASSERT_TRUE(store().list_messages("acme", "out", 100, next, page, next, &err)) << err;
    auto t3 = Clock::now();
    EXPECT_EQ(page.size(), 100u);
    EXPECT_EQ(page[0].id, "3EB0" + std::to_string(1000000 + 9899));
    ASSERT_TRUE(store().list_messages("acme", "", 100000, "", page, next, &err)) << err;
    EXPECT_EQ(page.size(), wa::store::kMaxMessagePage) << "limit clamped";
    double put_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    double advance_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
    double page_ms = std::chrono::duration<double, std::milli>(t3 - t2).count();
    std::printf("[ MEASURE ] 10000 put_message in one transaction: %.1f ms (%.1f us each); 10000 "
                "advance_message_status in one transaction: %.1f ms (%.1f us each); two pages of 100 of 10000: "
                "%.2f ms\n",
                put_ms, put_ms * 1000 / 10000, advance_ms, advance_ms * 1000 / 10000, page_ms);
    EXPECT_LT(put_ms, 10000.0);
    EXPECT_LT(advance_ms, 10000.0);
    EXPECT_EQ(count("acme", "out"), 10000u);
    ASSERT_TRUE(store().pending_messages("acme", page, &err)) << err;
    EXPECT_TRUE(page.empty());
}
