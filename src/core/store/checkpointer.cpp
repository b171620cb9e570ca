#include "core/store/checkpointer.hpp"

#include <signal.h>

namespace wa::store::sqlite {

std::unique_ptr<Checkpointer> Checkpointer::start(sqlite3* writer, const std::string& path, std::string& err) {
    if (!sqlite3_threadsafe()) {
        err = "this SQLite library is built without thread support";
        return nullptr;
    }
    sqlite3* own = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &own, flags, nullptr) != SQLITE_OK) {
        err = std::string("checkpoint connection: ") + (own ? sqlite3_errmsg(own) : "out of memory");
        sqlite3_close_v2(own);
        return nullptr;
    }
    sqlite3_busy_timeout(own, 100);
    // A connection learns that the database uses a WAL when it first reads it; until then its checkpoints are
    // no-ops (pnLog -1).
    if (sqlite3_exec(own, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) != SQLITE_OK) {
        err = std::string("checkpoint connection: ") + sqlite3_errmsg(own);
        sqlite3_close_v2(own);
        return nullptr;
    }
    // Closing this connection must never checkpoint: the writer's own close does the last one.
    sqlite3_db_config(own, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    std::unique_ptr<Checkpointer> c(new Checkpointer(writer, own));
    // The thread takes no signals: nginx's handlers run on the process's main thread only.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
        c->thread_ = std::thread([p = c.get()] { p->run(); });
    } catch (const std::exception& e) {
        err = std::string("checkpoint thread: ") + e.what();
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (!c->thread_.joinable()) return nullptr;  // the destructor closes `own`
    sqlite3_wal_hook(writer, &Checkpointer::on_commit, c.get());
    return c;
}

Checkpointer::~Checkpointer() {
    if (thread_.joinable()) {
        sqlite3_wal_autocheckpoint(writer_, 1000);  // replaces our hook: SQLite's default again
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }
    sqlite3_close_v2(own_);
}

// Called by SQLite on the writer's thread after each commit, with the WAL's size in frames.
int Checkpointer::on_commit(void* self, sqlite3* db, const char* schema, int frames) {
    auto* c = static_cast<Checkpointer*>(self);
    if (frames >= kInlineFrames) {
        sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        c->inline_++;
        c->restart_due_ = false;
        return SQLITE_OK;
    }
    if (frames >= kRestartFrames) c->restart_due_ = true;
    if (frames >= kWakeFrames) {
        {
            std::lock_guard<std::mutex> lock(c->mutex_);
            c->due_ = true;
        }
        c->wake_.notify_one();
    }
    return SQLITE_OK;
}

bool Checkpointer::restart_if_due() {
    if (!restart_due_ || !sqlite3_get_autocommit(writer_)) return false;
    // SQLITE_BUSY: the thread's last checkpoint is still running; the next call (the next pass) tries again.
    if (sqlite3_wal_checkpoint_v2(writer_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) != SQLITE_OK)
        return false;
    restart_due_ = false;
    restarts_++;
    return true;
}

void Checkpointer::run() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return stop_ || due_; });
        if (stop_) return;
        due_ = false;
        lock.unlock();
        // PASSIVE: copies what no reader still needs and never waits for the writer; SQLITE_BUSY (another
        // checkpoint) just means the next wake-up tries again.
        int log_frames = -1, copied = -1;
        if (sqlite3_wal_checkpoint_v2(own_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &copied) == SQLITE_OK &&
            log_frames >= 0)
            background_++;
        lock.lock();
        // At most one checkpoint per kPause: under a steady stream of commits the WAL stays over kWakeFrames
        // until the writer restarts it, and back-to-back checkpoints would only add fsyncs.
        wake_.wait_for(lock, kPause, [this] { return stop_; });
    }
}

}  // namespace wa::store::sqlite
