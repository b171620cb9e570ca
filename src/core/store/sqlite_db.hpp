// The SQLite connection under wa::store's SQLite backend: safe opening of <dir>/whatsapp.db, the integrity
// check, pragmas, a cache of prepared statements and a small binding/stepping helper. Private to
// src/core/store (and the unit tests); nothing here knows about organizations.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace wa::store::sqlite {

class Db {
public:
    // Opens <dir>/whatsapp.db, creating it (0600) when missing. Refuses a database path that is a symlink,
    // a FIFO or anything but a regular file before SQLite touches it, and a database that fails
    // PRAGMA quick_check (integrity_check when full_check): such a file is left exactly as it was.
    static std::unique_ptr<Db> open(const std::string& dir, bool full_check, std::string& err);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    sqlite3* handle() const { return db_; }
    const std::string& path() const { return path_; }

    // The cached statement for `sql` (a string constant of the caller), prepared once with
    // SQLITE_PREPARE_PERSISTENT. nullptr with `err` when it does not prepare.
    sqlite3_stmt* statement(const char* sql, std::string& err);
    // Runs constant SQL without parameters (transaction control, pragmas, migrations).
    bool exec(const char* sql, std::string& err);
    // The same for one statement run often (transaction control): prepared once, kept in the statement cache.
    bool exec_cached(const char* sql, std::string& err);
    bool autocommit() const { return sqlite3_get_autocommit(db_) != 0; }
    // SQLite's message for the last failure, with its extended code; never contains bound values.
    std::string last_error() const;

private:
    explicit Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
    bool configure(bool full_check, std::string& err);
    bool check_integrity(bool full_check, std::string& err);
    bool pragma_text(const char* sql, std::string& out, std::string& err);

    sqlite3* db_;
    std::string path_;
    std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

// One use of a cached statement: bind, step, read columns. Binds with SQLITE_STATIC (no copy, so no stray
// copies of key material: every bound value must outlive the Query), and resets and clears its bindings
// when it goes out of scope so the next user starts clean.
class Query {
public:
    Query(Db& db, const char* sql);
    ~Query();
    Query(const Query&) = delete;
    Query& operator=(const Query&) = delete;

    Query& text(int index, std::string_view value);
    Query& blob(int index, std::string_view value);
    Query& integer(int index, int64_t value);

    // Next row: true with has_row set, or false with `err` on failure.
    bool next(bool& has_row, std::string& err);
    // Steps a statement that returns no rows.
    bool run(std::string& err);

    int type(int col) const { return sqlite3_column_type(stmt_, col); }
    int64_t int_at(int col) const { return sqlite3_column_int64(stmt_, col); }
    std::string bytes_at(int col) const;  // TEXT or BLOB as raw bytes

private:
    bool failed(std::string& err);

    Db& db_;
    sqlite3_stmt* stmt_ = nullptr;
    std::string error_;  // a failure to prepare or bind, reported by the next step
};

}  // namespace wa::store::sqlite
