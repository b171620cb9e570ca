// Checkpoints of the write-ahead log on a thread of their own. With SQLite's automatic checkpoints, the commit
// that crosses 1,000 WAL frames copies them into the database and fsyncs it on the caller's thread: in the helper,
// a pass every ~60 commits stalled for 5-50 ms (whatsapp_store_commit_seconds, bench/send.pl), the sends answered
// in that pass with it. Here the commit only notes the WAL's size; a thread with its own connection runs PASSIVE
// checkpoints (they never block the writer). Private to src/core/store.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace wa::store::sqlite {

class Checkpointer {
public:
    // WAL frames (pages) after which the thread is woken. Under steady writes the thread's checkpoints never
    // catch up with the last frame, and SQLite restarts the WAL only once every frame is in the database: the
    // writer itself must copy what the thread has not, with the WAL's fsync and the database's (1.5-3.5 ms under
    // bench/send.pl's load). From kRestartFrames on, that waits for the owner's restart_if_due(), which the
    // helper calls once a pass's frames and answers are out, so no send waits for it; a writer that never calls
    // it (tools, tests) or falls that far behind has its commit do it at kInlineFrames. 16,000 frames (a WAL of up
    // to 64 MiB under sustained load) rather than 4,000: half as many of those stalls in a bench/send.pl run
    // (13-16 against 25-35).
    static constexpr int kWakeFrames = 1000;
    static constexpr int kRestartFrames = 16000;
    static constexpr int kInlineFrames = 64000;
    static constexpr std::chrono::milliseconds kPause{50};

    // Opens a second connection to `path` and starts the thread; installs the WAL hook on `writer` (which
    // turns SQLite's automatic checkpoints off). nullptr with `err` when it cannot: the writer is left with
    // automatic checkpoints.
    static std::unique_ptr<Checkpointer> start(sqlite3* writer, const std::string& path, std::string& err);
    // Stops and joins the thread, closes its connection, and gives the writer its automatic checkpoints back.
    ~Checkpointer();
    Checkpointer(const Checkpointer&) = delete;
    Checkpointer& operator=(const Checkpointer&) = delete;

    uint64_t background() const { return background_.load(); }  // checkpoints the thread ran
    uint64_t inline_runs() const { return inline_.load(); }     // checkpoints a commit had to run itself
    uint64_t restarts() const { return restarts_.load(); }       // checkpoints restart_if_due() ran

    // On the writer's thread, outside a transaction: copies the WAL's tail into the database when a commit
    // found it past kRestartFrames, so the next transaction starts the WAL over. True when it ran.
    bool restart_if_due();

private:
    Checkpointer(sqlite3* writer, sqlite3* reader) : writer_(writer), own_(reader) {}
    static int on_commit(void* self, sqlite3* db, const char* schema, int frames);
    void run();

    sqlite3* writer_;
    sqlite3* own_;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stop_ = false;
    bool due_ = false;
    bool restart_due_ = false;  // writer's thread only
    std::atomic<uint64_t> background_{0}, inline_{0}, restarts_{0};
};

}  // namespace wa::store::sqlite
