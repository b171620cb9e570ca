#include "core/store/sqlite_db.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "core/store/sqlite_schema.hpp"

namespace wa::store::sqlite {

namespace {

// A helper stalls every organization while it waits, so this is a last resort against a brief lock held
// by someone inspecting the database with the sqlite3 shell, not a queue.
constexpr int kBusyTimeoutMs = 5000;

std::string errno_text(const char* what, const std::string& path, int errnum) {
    return std::string(what) + " " + path + ": " + std::strerror(errnum);
}

// The directory without symlinks, so that SQLITE_OPEN_NOFOLLOW below only ever objects to the database
// file itself (an administrator may well put the state directory behind a symlink).
bool canonical_dir(const std::string& dir, std::string& out, std::string& err) {
    char* real = realpath(dir.c_str(), nullptr);
    if (!real) {
        err = errno_text("state directory", dir, errno);
        return false;
    }
    out = real;
    std::free(real);
    return true;
}

// Opens without following a symlink and without blocking on a FIFO, then makes sure it is a regular file
// with mode 0600 (SQLite gives its -wal and -shm files the database's mode).
bool tighten_regular_file(const std::string& path, std::string& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        err = errno_text("open", path, errno);
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!ok) {
        err = path + " is not a regular file; refusing to open it";
    } else if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
        err = errno_text("chmod 0600", path, errno);
        ok = false;
    }
    close(fd);
    return ok;
}

// Checks an existing file with lstat (symlink, FIFO, device, directory: refused) before anything opens it.
bool check_file(const std::string& path, bool& exists, std::string& err) {
    struct stat st;
    exists = false;
    if (lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return true;
        err = errno_text("stat", path, errno);
        return false;
    }
    exists = true;
    if (S_ISLNK(st.st_mode)) {
        err = path + " is a symbolic link; refusing to open it";
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        err = path + " is not a regular file; refusing to open it";
        return false;
    }
    return tighten_regular_file(path, err);
}

bool fsync_dir(const std::string& dir, std::string& err) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool ok = fd >= 0 && fsync(fd) == 0;
    if (!ok) err = errno_text("fsync directory", dir, errno);
    if (fd >= 0) close(fd);
    return ok;
}

// The new, empty database, made durable with its directory entry.
bool create_file_0600(const std::string& dir, const std::string& path, std::string& err) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = errno_text("create", path, errno);
        return false;
    }
    bool ok = fchmod(fd, 0600) == 0;  // whatever the umask took away or left
    if (!ok) err = errno_text("chmod 0600", path, errno);
    close(fd);
    return ok && fsync_dir(dir, err);
}

// The database and the journal files SQLite may have left: regular files, 0600; the database is created
// here when missing so that SQLite never creates anything itself (it is opened without SQLITE_OPEN_CREATE).
// A -wal without its database is refused too: SQLite would rebuild pages from it into the new, empty file.
bool prepare_files(const std::string& dir, const std::string& path, std::string& err) {
    bool exists = false, wal_exists = false;
    if (!check_file(path + "-wal", wal_exists, err) || !check_file(path + "-shm", exists, err)) return false;
    if (!check_file(path, exists, err)) return false;
    if (exists) return true;
    if (wal_exists) {
        err = path + " is missing but its -wal file is there; refusing to start from part of a database";
        return false;
    }
    return create_file_0600(dir, path, err);
}

}  // namespace

std::unique_ptr<Db> Db::open(const std::string& dir, bool full_check, std::string& err) {
    std::string real_dir;
    if (!canonical_dir(dir, real_dir, err)) return nullptr;
    std::string path = real_dir + "/whatsapp.db";
    if (!prepare_files(real_dir, path, err)) return nullptr;
    sqlite3* raw = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
    std::unique_ptr<Db> db(new Db(raw, path));  // owns the handle even when the open failed
    if (rc != SQLITE_OK) {
        err = "open " + path + ": " + (raw ? db->last_error() : std::string(sqlite3_errstr(rc)));
        return nullptr;
    }
    if (!db->configure(full_check, err)) {
        // A database we refuse is left as it is: no checkpoint into it when the handle closes.
        sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
        return nullptr;
    }
    return db;
}

Db::~Db() {
    for (auto& entry : statements_) sqlite3_finalize(entry.second);
    if (db_) sqlite3_close_v2(db_);
}

bool Db::check_integrity(bool full_check, std::string& err) {
    const char* pragma = full_check ? "PRAGMA integrity_check(5)" : "PRAGMA quick_check(5)";
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db_, pragma, -1, &s, nullptr) != SQLITE_OK) {
        err = path_ + " cannot be checked: " + last_error();
        return false;
    }
    std::string verdict;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char* line = sqlite3_column_text(s, 0);
        if (!verdict.empty()) verdict += "; ";
        verdict += line ? reinterpret_cast<const char*>(line) : "?";
    }
    if (rc != SQLITE_DONE) verdict = last_error();
    sqlite3_finalize(s);
    if (verdict == "ok") return true;
    err = path_ + " fails PRAGMA " + (full_check ? "integrity_check" : "quick_check") + ": " + verdict +
          " (left untouched: restore a backup, or move it aside to start with an empty store)";
    return false;
}

bool Db::configure(bool full_check, std::string& err) {
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    if (!check_integrity(full_check, err)) return false;
    std::string mode;
    if (!pragma_text("PRAGMA journal_mode = WAL", mode, err)) return false;
    if (mode != "wal") {
        err = path_ + ": cannot use write-ahead logging (journal_mode is " + mode + ")";
        return false;
    }
    // NORMAL with WAL: every committed transaction survives a process crash; FULL (Store::set_synchronous) also
    // survives a power loss at the price of an fsync per commit. secure_delete: deleted keys (logout) are
    // overwritten.
    if (!exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON", err)) return false;
    return migrate_schema(*this, err);
}

bool Db::pragma_text(const char* sql, std::string& out, std::string& err) {
    sqlite3_stmt* s = nullptr;
    bool ok = sqlite3_prepare_v2(db_, sql, -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW;
    if (ok) {
        const unsigned char* t = sqlite3_column_text(s, 0);
        out = t ? reinterpret_cast<const char*>(t) : "";
    } else {
        err = path_ + ": " + sql + ": " + last_error();
    }
    sqlite3_finalize(s);
    return ok;
}

sqlite3_stmt* Db::statement(const char* sql, std::string& err) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
        err = last_error();
        return nullptr;
    }
    try {
        statements_.emplace(sql, s);
    } catch (...) {
        sqlite3_finalize(s);
        throw;
    }
    return s;
}

bool Db::exec(const char* sql, std::string& err) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) == SQLITE_OK) return true;
    err = last_error();
    return false;
}

bool Db::exec_cached(const char* sql, std::string& err) {
    sqlite3_stmt* s = statement(sql, err);
    if (!s) return false;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return true;
    err = last_error();
    return false;
}

std::string Db::last_error() const {
    return std::string(sqlite3_errmsg(db_)) + " (sqlite code " + std::to_string(sqlite3_extended_errcode(db_)) + ")";
}

Query::Query(Db& db, const char* sql) : db_(db) {
    stmt_ = db.statement(sql, error_);
}

Query::~Query() {
    if (!stmt_) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
}

Query& Query::text(int index, std::string_view value) {
    // A null data pointer would bind SQL NULL, not an empty string.
    const char* data = value.data() ? value.data() : "";
    if (stmt_ && error_.empty() &&
        sqlite3_bind_text64(stmt_, index, data, value.size(), SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK)
        error_ = db_.last_error();
    return *this;
}

Query& Query::blob(int index, std::string_view value) {
    if (!stmt_ || !error_.empty()) return *this;
    int rc = value.empty() ? sqlite3_bind_zeroblob(stmt_, index, 0)
                           : sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_STATIC);
    if (rc != SQLITE_OK) error_ = db_.last_error();
    return *this;
}

Query& Query::integer(int index, int64_t value) {
    if (stmt_ && error_.empty() && sqlite3_bind_int64(stmt_, index, value) != SQLITE_OK) error_ = db_.last_error();
    return *this;
}

bool Query::failed(std::string& err) {
    err = error_.empty() ? "statement not prepared" : error_;
    return false;
}

bool Query::next(bool& has_row, std::string& err) {
    has_row = false;
    if (!stmt_ || !error_.empty()) return failed(err);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) has_row = true;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return true;
    error_ = db_.last_error();
    return failed(err);
}

bool Query::run(std::string& err) {
    bool has_row = true;
    while (has_row) {
        if (!next(has_row, err)) return false;
    }
    return true;
}

std::string Query::bytes_at(int col) const {
    const void* data = sqlite3_column_blob(stmt_, col);
    int size = sqlite3_column_bytes(stmt_, col);
    if (!data || size <= 0) return std::string();
    return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

}  // namespace wa::store::sqlite
