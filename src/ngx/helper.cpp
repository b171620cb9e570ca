// The helper process: the single owner of every organization's WhatsApp connection.
//
// Ownership is an OFD lock on <state_dir>/owner.lock, taken after fork and released by the kernel if the
// process dies. A new-generation helper (reload) starts in STANDBY and retries the lock on a short timer;
// the old one, told to quit, closes its connections, persists its sessions and only then unlocks, so two
// helpers never own sessions at the same time. Commands arrive through shared memory and the doorbell.

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <random>

#include "media_download.hpp"
#include "media_upload.hpp"
#include "transport.hpp"
#include "webhooks.hpp"
#include "wa/api/api.hpp"
#include "wa/codec/base64.hpp"
#include "wa/store/fsutil.hpp"
#include "wa/api/qr.hpp"
#include "wa/session.hpp"
#include "wa/store/store.hpp"
#include "wa/api/validate.hpp"

namespace {

namespace api = wa::api;

struct HelperOrg;
// Transports that ended are deleted at the end of the event-loop pass, never inside their own call stack.
std::vector<WaTransport*> g_dead;

struct Helper {
    ngx_cycle_t* cycle = nullptr;
    wa_main_conf_t* conf = nullptr;
    wa_zone_ctx_t* zone = nullptr;
    ngx_log_t* log = nullptr;
    int lock_fd = -1;
    uint8_t role = WA_HELPER_NONE;
    ngx_event_t lock_timer;    // STANDBY: retry the ownership lock
    ngx_event_t sweep_timer;   // safety net: missed doorbells, results nobody collected, quit
    ngx_event_t title_timer;   // the worker cycle sets its title after init_process
    ngx_event_t resume_timer;  // start the sessions that were running before
    ngx_event_t pass_end;      // posted: commit the store's transaction and free dead transports once per pass
    ngx_event_t store_timer;   // ACTIVE without a usable store: retry opening it
    ngx_msec_t lock_retry_ms = 0;   // backoff while owner.lock cannot be opened (0: not failing)
    ngx_msec_t store_retry_ms = 0;  // backoff while the store cannot be opened
    ngx_msec_t resume_at = 0;       // no reconnection before (1.5 s after a crash)
    std::string lock_path;
    std::map<std::string, std::unique_ptr<HelperOrg>> orgs;
    std::vector<std::string> resume_queue;  // organizations still to reconnect after a start, spread over time
    std::unique_ptr<wa::store::Store> store;
    std::map<uint64_t, wa_shm_cmd_t*> waiting;  // commands a session will complete later (logout, pairing code)
    // Answers held until the pass's store transaction is committed: "done" is said only of what is on disk.
    std::vector<std::pair<wa_shm_cmd_t*, api::Response>> answers;
    std::vector<std::string> holding;  // organizations with frames held for the commit
    // Organizations this pass created for a start-session: if the commit fails, nothing was done, so they go.
    std::vector<std::string> started;
    uint64_t commit_failures = 0;  // in a row
    uint64_t failed_retries = 0;   // reconnects that failed again since the last summary
    ngx_msec_t summary_at = 0;     // next summary line
    // Seeded in the helper itself (not inherited from the master), so every respawn jitters differently.
    std::mt19937_64 rng;
    // send-media: the spool file of each command (removed when the command is answered, whatever the answer),
    // and the uploads running (finished ones are freed at the end of the pass, never inside their callbacks).
    std::map<uint64_t, std::string> cmd_spool;
    std::vector<std::unique_ptr<WaMediaUpload>> uploads;
    std::vector<std::unique_ptr<WaMediaDownload>> downloads;  // received media being fetched
};

Helper H;

// A condition that lasts (a full disk, an owner.lock that cannot be opened) is logged when it starts or
// changes, then at most once a minute with how often it happened since, never per retry.
struct LogOnce {
    int64_t last = 0;
    uint64_t repeats = 0;
    std::string text;
    void operator()(ngx_uint_t level, const std::string& msg) {
        int64_t now = ngx_time();
        if (msg == text && now - last < 60) {
            repeats++;
            return;
        }
        if (repeats) {
            ngx_log_error(level, H.log, 0, "%s (%uL more times in the last %T s)", msg.c_str(), repeats,
                          (time_t)(now - last));
        } else {
            ngx_log_error(level, H.log, 0, "%s", msg.c_str());
        }
        text = msg;
        last = now;
        repeats = 0;
    }
    void reset() {
        text.clear();
        repeats = 0;
    }
};
LogOnce g_commit_log, g_lock_log, g_store_log;

// Sets (or, with "", clears) why no helper owns the sessions: /api/health, and 503 answers while nobody does.
void set_reason(const std::string& why) {
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    size_t n = std::min(why.size(), sizeof(z->sh->reason));
    for (size_t i = 0; i < n; i++) {  // printable ASCII only: it goes into JSON and logs
        u_char c = static_cast<u_char>(why[i]);
        z->sh->reason[i] = c >= 0x20 && c < 0x7f ? c : '?';
    }
    z->sh->reason_len = static_cast<uint16_t>(n);
    ngx_shmtx_unlock(&z->shpool->mutex);
}

std::string org_dir(const std::string& org) { return wa_str(H.conf->state_dir) + "/" + org; }


void complete(wa_shm_cmd_t* c, const api::Response& resp, std::vector<ngx_pid_t>* bells = nullptr);
void answer(wa_shm_cmd_t* c, api::Response resp);

std::string spool_dir() { return wa_str(H.conf->state_dir) + "/" WA_SPOOL_DIR; }

void remove_spool(const std::string& name) {
    if (!api::valid_spool_name(name)) return;
    std::string path = spool_dir() + "/" + name;
    if (unlink(path.c_str()) != 0 && errno != ENOENT)
        ngx_log_error(NGX_LOG_ERR, H.log, ngx_errno, "whatsapp: cannot remove spool file %s", path.c_str());
}

// The send-media command `id` is answered: its file goes.
void release_spool(uint64_t id) {
    auto it = H.cmd_spool.find(id);
    if (it == H.cmd_spool.end()) return;
    remove_spool(it->second);
    H.cmd_spool.erase(it);
}

// Spool files nobody will use (a helper that died mid-upload, a worker that died mid-write) are removed: at
// activation and then every 5 s, whatever no queued command and no command of ours names, once it is 5 s old (a
// worker renames its file a moment before it queues the command: a younger file may be on its way).
void clean_spool() {
    static time_t last = 0;
    time_t now = time(nullptr);
    if (now - last < 5 && last != 0) return;
    last = now;
    std::set<std::string> keep;
    for (const auto& [id, name] : H.cmd_spool) keep.insert(name);
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    for (ngx_queue_t* q = ngx_queue_head(&z->sh->pending); q != ngx_queue_sentinel(&z->sh->pending); q = ngx_queue_next(q)) {
        auto* c = ngx_queue_data(q, wa_shm_cmd_t, link);
        std::string json(reinterpret_cast<const char*>(c->req), c->req_len);
        size_t at = json.find("\"spool\":\"");
        if (at != std::string::npos) keep.insert(json.substr(at + 9, 32));
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    DIR* d = opendir(spool_dir().c_str());
    if (d == nullptr) return;
    int removed = 0;
    while (struct dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string path = spool_dir() + "/" + name;
        bool part = name.size() == 37 && name.compare(32, 5, ".part") == 0 && api::valid_spool_name(name.substr(0, 32));
        struct stat st;
        // A ".part" is a worker writing right now unless it is old.
        if (part && (lstat(path.c_str(), &st) != 0 || now - st.st_mtime < 60)) continue;
        if (!part && (!api::valid_spool_name(name) || keep.count(name) || lstat(path.c_str(), &st) != 0 ||
                      now - st.st_mtime < 5))
            continue;
        if (unlink(path.c_str()) == 0) removed++;
    }
    closedir(d);
    if (removed) ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp: removed %d stale spool file(s)", removed);
}
void store_begin();
void commit_and_flush();

struct HelperOrg : WaTransport::Listener {
    std::string id;
    wa::Session session;
    std::unique_ptr<WaTransport> transport;
    ngx_event_t timer;
    bool quarantined = false;
    std::string rendered_qr;  // the QR text whose PNG is in shm (rendered once per ref)
    wa::Session::Stats counted;  // the session's statistics already added to the shm counters (metrics)
    std::string qr_url;       // and its data URL, for the status documents

    HelperOrg(std::string org, wa::SessionConfig cfg) : id(org), session(std::move(cfg), org, H.store.get()) {
        ngx_memzero(&timer, sizeof(timer));
        timer.handler = on_timer_event;
        timer.data = this;
        timer.log = H.log;
        timer.cancelable = 1;  // a backoff wait must not keep a quitting helper alive
    }
    ~HelperOrg() override {
        if (timer.timer_set) ngx_del_timer(&timer);
        drop_transport();
    }

    // Every call from nginx into the core goes through here: no C++ exception may unwind into nginx's C.
    template <typename F>
    void guarded(const char* what, F&& f) {
        try {
            store_begin();
            run(f());
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_ALERT, H.log, 0, "whatsapp org=%s: %s failed: %s; closing the link", id.c_str(), what,
                          e.what());
            if (transport) transport->close(1011);
            drop_transport();
        }
    }

    static void on_timer_event(ngx_event_t* ev) {
        auto* o = static_cast<HelperOrg*>(ev->data);
        o->guarded("timer", [o] { return o->session.on_timer(ngx_current_msec, ngx_time()); });
    }

    void on_transport_open() override {
        ngx_log_error(NGX_LOG_INFO, H.log, 0, "whatsapp org=%s: WebSocket to %V open (local port %d)", id.c_str(),
                      &H.conf->server, transport ? static_cast<int>(transport->local_port()) : 0);
        guarded("open", [this] { return session.on_transport_open(ngx_current_msec, ngx_time()); });
    }
    void on_transport_message(std::string_view payload) override {
        guarded("message", [this, payload] { return session.on_message(ngx_current_msec, ngx_time(), payload); });
    }
    void on_transport_error(const wa::Disconnect& why) override {
        // The transport is still on the call stack of its own fail(): free it at the end of the pass.
        drop_transport();
        guarded("disconnect", [this, &why] { return session.on_transport_error(ngx_current_msec, ngx_time(), why); });
        // A warning when the session goes into reconnecting (its first failure), when the cause changes (no free
        // connection after refused ones) or anything else; further failures of a session already retrying for the
        // same cause are counted for the periodic summary (whatsapp_status_summary) and logged at debug only:
        // 10,000 organizations against a dead server must not write a line per retry.
        std::string text = why.kind == wa::Disconnect::Transport || why.kind == wa::Disconnect::Timeout ? why.text
                                                                                                        : wa::describe(why);
        bool repeat = retrying && session.status().state == wa::State::Reconnecting && text == last_failure;
        retrying = session.status().state == wa::State::Reconnecting;
        last_failure = text;
        if (repeat) H.failed_retries++;
        ngx_uint_t level = repeat ? NGX_LOG_DEBUG : NGX_LOG_WARN;
        ngx_log_error(level, H.log, 0, "whatsapp org=%s: %s", id.c_str(), text.c_str());
    }
    bool retrying = false;  // reconnecting since a failure that was logged; reset by any other state (publish)
    std::string last_failure;

    void drop_transport() {
        if (transport) g_dead.push_back(transport.release());
        if (!g_dead.empty() && !H.pass_end.posted) {
            ngx_post_event(&H.pass_end, &ngx_posted_events);
        }
    }

    // What a frame promises (a device identity, a prekey upload, a message's pending record and ratchet state, a
    // receipt for a stored message) must be on disk before it leaves: such frames wait for the pass's commit
    // (group commit: one fsync for every send and receipt of the pass). Frames after a held one wait too, since
    // Noise numbers them in order.
    void write(const wa::Action& a) {
        if (!transport) return;
        if ((a.durable && H.store) || !held.empty()) {
            if (held.empty()) H.holding.push_back(id);
            held.push_back(a.bytes);
            if (!H.pass_end.posted) {
                ngx_post_event(&H.pass_end, &ngx_posted_events);
            }
            return;
        }
        transport->send_binary(a.bytes);
    }
    bool store_failed = false;  // a durable write could not be committed in this run()

    void flush_held() {
        std::vector<std::string> frames;
        frames.swap(held);
        for (const std::string& f : frames)
            if (transport) transport->send_binary(f);
    }

    std::vector<std::string> held;  // frames waiting for the pass's commit

    void run(const wa::Actions& actions);
    void count_metrics();
    void run_actions(const wa::Actions& actions);
};

// Adds what the session counted since the last call to the organization's counters in shm (metrics.cpp).
void HelperOrg::count_metrics() {
    const wa::Session::Stats& s = session.stats();
    wa_metrics_delta_t d;
    d.sent = s.messages_sent - counted.messages_sent;
    d.delivered = s.messages_delivered - counted.messages_delivered;
    d.read = s.messages_read - counted.messages_read;
    d.received = s.messages_received - counted.messages_received;
    for (size_t k = 0; k < WA_RECONNECT_KINDS; k++) d.reconnects[k] = s.reconnects[k] - counted.reconnects[k];
    for (const auto& [code, n] : s.messages_failed) {
        auto it = counted.messages_failed.find(code);
        uint64_t before = it == counted.messages_failed.end() ? 0 : it->second;
        if (n > before) d.failed.emplace_back(code, n - before);
    }
    if (d.empty()) return;
    wa_metrics_apply(H.zone, id, d);
    counted = s;
}

void publish(const std::string& id, const wa::SessionStatus& s, HelperOrg* o);

void HelperOrg::run(const wa::Actions& actions) {
    run_actions(actions);
    if (store_failed && transport) {
        store_failed = false;
        transport->close(1011);
        on_transport_error(wa::Disconnect{wa::Disconnect::Transport, 0, {}, 0, "the state store could not be written"});
    }
    store_failed = false;
}

void HelperOrg::run_actions(const wa::Actions& actions) {
    for (const wa::Action& a : actions) {
        switch (a.kind) {
        case wa::Action::Connect:
            drop_transport();
            transport.reset(new WaTransport(H.conf, H.log, this));
            transport->connect();  // may report an error (and drop `transport`) right away
            break;
        case wa::Action::Close:
            if (transport) {
                if (!held.empty()) commit_and_flush();  // what was promised goes out before the close
                if (transport->upgrading())  // logged so that the server's view of the connection can be matched
                    ngx_log_error(NGX_LOG_INFO, H.log, 0,
                                  "whatsapp org=%s: WebSocket to %V closed during its upgrade (local port %d)",
                                  id.c_str(), &H.conf->server, static_cast<int>(transport->local_port()));
                transport->close(a.code);
                drop_transport();
            }
            held.clear();
            break;
        case wa::Action::Write: write(a); break;
        case wa::Action::SetTimer: {
            ngx_msec_int_t d = static_cast<ngx_msec_int_t>(a.at_ms - ngx_current_msec);
            ngx_add_timer(&timer, d > 0 ? static_cast<ngx_msec_t>(d) : 0);
            break;
        }
        case wa::Action::CancelTimer:
            if (timer.timer_set) ngx_del_timer(&timer);
            break;
        case wa::Action::Publish: publish(id, session.status(), this); break;
        case wa::Action::Partial: {
            auto it = H.waiting.find(a.command_id);
            if (it == H.waiting.end()) break;
            wa_zone_ctx_t* z = H.zone;
            ngx_shmtx_lock(&z->shpool->mutex);
            size_t n = a.bytes.size() < sizeof(it->second->partial) ? a.bytes.size() : sizeof(it->second->partial);
            ngx_memcpy(it->second->partial, a.bytes.data(), n);
            it->second->partial_len = static_cast<uint8_t>(n);
            ngx_shmtx_unlock(&z->shpool->mutex);
            break;
        }
        case wa::Action::Upload: {
            std::string org = id;
            std::string job = a.upload->job_id, spool = a.upload->spool;
            auto up = std::make_unique<WaMediaUpload>(H.conf, H.log, a.upload, [org, job, spool](const wa::UploadResult& r) {
                // The file has done its job whatever the outcome (an idempotent retry brings it again).
                remove_spool(spool);
                if (!r.ok) {
                    ngx_log_error(NGX_LOG_WARN, H.log, 0, "whatsapp org=%s: media upload of %s failed: %s", org.c_str(),
                                  job.c_str(), r.error.c_str());
                }
                if (!H.pass_end.posted) {  // frees the upload
                    ngx_post_event(&H.pass_end, &ngx_posted_events);
                }
                auto it = H.orgs.find(org);
                if (it == H.orgs.end()) return;
                HelperOrg* o = it->second.get();
                o->guarded("upload", [o, &job, &r] { return o->session.on_upload_done(ngx_current_msec, ngx_time(), job, r); });
            });
            WaMediaUpload* raw = up.get();
            H.uploads.push_back(std::move(up));
            raw->start();
            break;
        }
        case wa::Action::Download: {
            auto d = std::make_unique<WaMediaDownload>(H.conf, H.log, id, a.download);
            WaMediaDownload* raw = d.get();
            raw->on_finished = [] {
                if (!H.pass_end.posted) {  // frees it at the end of the pass
                    ngx_post_event(&H.pass_end, &ngx_posted_events);
                }
            };
            H.downloads.push_back(std::move(d));
            raw->start();
            break;
        }
        case wa::Action::Complete: {
            release_spool(a.command_id);
            auto it = H.waiting.find(a.command_id);
            if (it == H.waiting.end()) break;
            wa_shm_cmd_t* c = it->second;
            H.waiting.erase(it);
            api::Response r{a.code, a.bytes, {}, {}};
            if (a.retry_after_s) r.retry_after = std::to_string(a.retry_after_s);
            answer(c, std::move(r));
            break;
        }
        }
    }
    count_metrics();
}

wa::SessionConfig session_config() {
    wa::SessionConfig cfg;
    cfg.server_url = wa_str(H.conf->server);
    cfg.handshake_timeout_ms = H.conf->handshake_timeout;
    cfg.backoff.base_ms = H.conf->backoff_min;
    cfg.backoff.cap_ms = H.conf->backoff_max;
    cfg.random = [] { return std::uniform_real_distribution<double>(0.0, 1.0)(H.rng); };
    if (H.conf->root_key.len) wa::base64_decode(wa_str(H.conf->root_key), cfg.root_pub);
    for (int i = 0; i < 3; i++) cfg.profile.version[i] = H.conf->client_version[i];
    cfg.profile.browser = wa_str(H.conf->browser);
    cfg.profile.os = wa_str(H.conf->browser_os);
    cfg.keepalive_min_ms = H.conf->keepalive_min;
    cfg.keepalive_max_ms = H.conf->keepalive_max;
    cfg.ping_timeout_ms = H.conf->ping_timeout;
    cfg.qr_first_ms = H.conf->qr_first;
    cfg.work_budget = [](uint32_t want) -> uint32_t {
        // At most 200 prekeys (about 7 ms of X25519) per event-loop turn over all sessions.
        static ngx_msec_t turn = 0;
        static uint32_t used = 0;
        if (turn != ngx_current_msec) {
            turn = ngx_current_msec;
            used = 0;
        }
        uint32_t n = want < 200 - used ? want : 200 - used;
        used += n;
        return n;
    };
    cfg.qr_next_ms = H.conf->qr_next;
    cfg.webhooks = wa_webhooks_router(H.conf);
    return cfg;
}

void copy_bounded(u_char* dst, uint16_t* len, size_t cap, const std::string& v) {
    size_t n = v.size() < cap ? v.size() : cap;
    ngx_memcpy(dst, v.data(), n);
    *len = static_cast<uint16_t>(n);
}

// Renders the QR PNG once per ref (about 8 ms), never per GET: workers serve the data URL from shm.
std::string qr_url_for(const wa::SessionStatus& s, HelperOrg* org, bool* changed) {
    *changed = false;
    if (s.state != wa::State::QrReady || s.qr_text.empty()) {
        if (org && !org->rendered_qr.empty()) *changed = true;
        if (org) org->rendered_qr.clear();
        if (org) org->qr_url.clear();
        return {};
    }
    if (org && org->rendered_qr == s.qr_text) return org->qr_url;
    *changed = true;
    std::string url = wa::qr_png_data_url(s.qr_text);
    if (org) org->rendered_qr = s.qr_text;
    if (org) org->qr_url = url;
    return url;
}

// The record's documents (GET /api/status and /api/qr), rendered here once per change so that a worker's read
// is a copy: set under the zone lock, NULL when the zone has no room (workers then fall back to the fields).
void set_docs(wa_zone_ctx_t* z, wa_shm_org_t* o, const std::string& status_head, const std::string& qr_head) {
    if (!wa_shm_set_bytes(z, &o->status_doc, &o->status_doc_len, status_head)) o->status_doc = NULL;
    if (!wa_shm_set_bytes(z, &o->qr_doc, &o->qr_doc_len, qr_head)) o->qr_doc = NULL;
}

void publish(const std::string& id, const wa::SessionStatus& s, HelperOrg* org) {
    if (org && s.state != wa::State::Reconnecting && s.state != wa::State::Connecting) org->retrying = false;
    bool qr_changed = false;
    api::StatusView v;
    v.org = id;
    v.status = s;
    v.qr_data_url = qr_url_for(s, org, &qr_changed);
    // Deadlines are monotonic in the core; workers compute expires_in from wall-clock seconds.
    v.qr_expires_at = s.qr_expires_ms > ngx_current_msec
                          ? ngx_time() + static_cast<int64_t>((s.qr_expires_ms - ngx_current_msec + 500) / 1000)
                          : 0;
    std::string status_head = api::status_json_head(v), qr_head = api::qr_json_head(v);
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    const auto* p = reinterpret_cast<const u_char*>(id.data());
    wa_shm_org_t* o = wa_shm_org_find(z, p, id.size());
    if (o == NULL) o = wa_shm_org_create(z, p, id.size());
    if (o) {
        // Live push: the organization's version and the zone's change sequence; the QR's own sequence when it
        // appears, changes or goes (workers send a qr event then).
        bool qr_before = o->state == static_cast<uint8_t>(wa::State::QrReady) && o->qr_text;
        bool qr_now = s.state == wa::State::QrReady && !s.qr_text.empty();
        bool qr_moved = qr_before != qr_now ||
                        (qr_now && (s.qr_text.size() != o->qr_text_len ||
                                    ngx_memcmp(o->qr_text, s.qr_text.data(), o->qr_text_len) != 0));
        o->version++;
        o->change_seq = ++z->sh->events_seq;
        o->dash_seq = o->change_seq;
        if (qr_moved) o->qr_seq = o->change_seq;
        o->state = static_cast<uint8_t>(s.state);
        o->wanted = s.wanted;
        o->retry_count = s.retry_count;
        o->connected_at = s.connected_at;
        o->state_since = s.state_since;
        o->next_retry_at = s.next_retry_at;
        o->restricted_until = s.restricted_until;
        o->updated_at = ngx_time();
        copy_bounded(o->phone, &o->phone_len, sizeof(o->phone), s.phone);
        wa_shm_set_text(z, &o->last_error, &o->last_error_len, s.last_error, WA_ERR_MAX);
        wa_shm_set_text(z, &o->qr_text, &o->qr_text_len, s.qr_text, WA_QRTEXT_MAX);
        o->qr_expires_at = v.qr_expires_at;
        if (qr_changed && !wa_shm_set_bytes(z, &o->qr_url, &o->qr_url_len, v.qr_data_url) && org) {
            org->rendered_qr.clear();
            org->qr_url.clear();
        }
        set_docs(z, o, status_head, qr_head);
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (o == NULL) {
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org=%s: whatsapp_zone is full, status not published",
                      id.c_str());
    } else {
        wa_events_published(z);  // rings the workers with event streams once, at the end of this pass
    }
}

// Finds or creates the organization's status record in shared memory.
bool shm_org_exists(const std::string& id) {
    wa_zone_ctx_t* z = H.zone;
    const auto* p = reinterpret_cast<const u_char*>(id.data());
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_shm_org_t* o = wa_shm_org_find(z, p, id.size());
    if (o == NULL) o = wa_shm_org_create(z, p, id.size());
    ngx_shmtx_unlock(&z->shpool->mutex);
    return o != NULL;
}

// Purge: the record loses its texts, documents and counters (wa_shm_org_purge); streams hear "disconnected".
void purge_shm_record(const std::string& id) {
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(id.data()), id.size());
    if (o) wa_shm_org_purge(z, o);
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (o) wa_events_published(z);
}

bool shm_org_known(const std::string& id) {
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    bool known = wa_shm_org_find(z, reinterpret_cast<const u_char*>(id.data()), id.size()) != NULL;
    ngx_shmtx_unlock(&z->shpool->mutex);
    return known;
}

// logout / clear-session of an organization this helper does not run: nothing is created for it (no session,
// so no whatsapp_max_sessions slot; no status record), or made-up ids would lock real organizations out.
// What is stored for it is still forgotten (logout) or set aside (clear), and a record left by an earlier
// helper shows the outcome.
bool remove_legacy_dir(const std::string& org, bool move_aside);

api::Response forget_unknown(const api::Command& cmd) {
    bool logout = cmd.type == api::Command::Logout;
    std::string err;
    if (!remove_legacy_dir(cmd.org, !logout))
        return api::error(507, "storage_error", "the organization's stored state could not be changed");
    bool ok = logout ? H.store->forget_credentials(cmd.org, &err) : H.store->clear_org(cmd.org, &err);
    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org=%s: cannot %s its stored state: %s", cmd.org.c_str(),
                      logout ? "forget" : "clear", err.c_str());
        return api::error(507, "storage_error", "the organization's stored state could not be changed");
    }
    if (logout) {
        // A logout is kept as such (wanted=false), so a stored row never brings the organization back.
        wa::store::OrgRecord r;
        r.org = cmd.org;
        r.state = static_cast<uint8_t>(wa::State::LoggedOut);
        r.state_since = ngx_time();
        bool exists = false;
        std::vector<wa::store::OrgRecord> rows;
        std::vector<std::pair<std::string, std::string>> corrupt;
        if (H.store->load_orgs(rows, corrupt, &err))
            for (const auto& x : rows) exists = exists || x.org == cmd.org;
        if (exists) H.store->put_org(r, &err);
    }
    wa::SessionStatus st;
    st.state = logout ? wa::State::LoggedOut : wa::State::Disconnected;
    st.state_since = ngx_time();
    if (shm_org_known(cmd.org)) publish(cmd.org, st, nullptr);
    std::string body = logout ? R"({"success":true,"status":"logged_out","unlinked_on_server":false})"
                              : api::ok_status_json(st.state);
    return api::Response{200, body, {}, {}};
}

HelperOrg* find_or_create(const std::string& id, bool create) {
    auto it = H.orgs.find(id);
    if (it != H.orgs.end()) return it->second.get();
    if (!create || H.orgs.size() >= H.conf->max_sessions) return nullptr;
    auto o = std::make_unique<HelperOrg>(id, session_config());
    HelperOrg* raw = o.get();
    H.orgs.emplace(id, std::move(o));
    return raw;
}

// Opens the store's transaction for this event-loop pass (group commit: one transaction, one fsync) and
// makes sure the pass ends with a commit.
void store_begin() {
    if (!H.store) return;
    std::string err;
    if (!H.store->in_transaction() && !H.store->begin(&err))
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp: store: %s", err.c_str());
    if (!H.pass_end.posted) {
        ngx_post_event(&H.pass_end, &ngx_posted_events);
    }
}

// A start-session that created an organization whose row could not be committed: nothing was done (507), so
// the session does not run on in memory only (a second start-session would find it running and say 200).
void undo_start(const std::string& id) {
    auto it = H.orgs.find(id);
    if (it == H.orgs.end()) return;
    HelperOrg* o = it->second.get();
    o->run(o->session.shutdown(ngx_current_msec, ngx_time()));
    H.orgs.erase(it);
    wa::SessionStatus st;
    st.state_since = ngx_time();
    st.last_error = "start-session could not be stored (507 storage_error)";
    publish(id, st, nullptr);
}

// Commits the pass's transaction, then lets out the frames that waited for it. False when the commit failed:
// held frames are then dropped (they promised what is not on disk; the session recovers by resending).
bool commit_pass() {
    bool stored = true;
    if (H.store && H.store->in_transaction()) {
        std::string err;
        uint64_t t0 = wa_monotonic_us();
        stored = H.store->commit(&err);
        wa::store::Store::CheckpointCounts ck = H.store->checkpoints();
        wa_metrics_commit(H.zone, wa_monotonic_us() - t0, ck.background, ck.inline_runs, ck.restarts);
        if (!stored) {
            g_commit_log(NGX_LOG_ERR, "whatsapp: store commit failed: " + err);
            H.commit_failures++;
        }
    }
    if (stored && H.commit_failures && !H.answers.empty()) {
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp: the store accepts writes again (after %uL failed commits)",
                      H.commit_failures);
        H.commit_failures = 0;
        g_commit_log.reset();
    }
    std::vector<std::string> started;
    started.swap(H.started);
    if (!stored)
        for (const std::string& id : started) undo_start(id);
    std::vector<std::string> holding;
    holding.swap(H.holding);
    for (const std::string& id : holding) {
        auto it = H.orgs.find(id);
        if (it == H.orgs.end()) continue;
        if (stored) {
            it->second->flush_held();
        } else {
            // What the frames promised is not on disk: they never leave, and the link ends as after a
            // transport error (the session resends what is pending once it is back).
            HelperOrg* o = it->second.get();
            o->held.clear();
            if (o->transport) {
                o->transport->close(1011);
                o->on_transport_error(wa::Disconnect{wa::Disconnect::Transport, 0, {}, 0, "the state store could not be written"});
            }
        }
    }
    return stored;
}

void commit_and_flush() { commit_pass(); }

void pass_end_handler(ngx_event_t*) {
    bool stored = commit_pass();
    if (stored) wa_webhooks_kick();  // events committed in this pass go out now
    std::vector<std::pair<wa_shm_cmd_t*, api::Response>> answers;
    answers.swap(H.answers);
    std::vector<ngx_pid_t> bells;
    for (auto& [c, resp] : answers) {
        // Never report success that did not reach the disk.
        if (!stored && resp.status < 300) resp = api::error(507, "storage_error", "the change could not be stored; see the error log");
        complete(c, resp, &bells);
    }
    for (ngx_pid_t pid : bells) wa_doorbell_ring(H.zone->sh, pid);
    for (WaTransport* t : g_dead) delete t;
    g_dead.clear();
    H.uploads.erase(std::remove_if(H.uploads.begin(), H.uploads.end(), [](const auto& u) { return u->finished(); }),
                    H.uploads.end());
    H.downloads.erase(std::remove_if(H.downloads.begin(), H.downloads.end(), [](const auto& d) { return d->finished(); }),
                      H.downloads.end());
    // Last: this pass's frames and answers are out, so only the next pass waits for the WAL's restart.
    if (stored && H.store) H.store->restart_wal_if_due();
}

void answer(wa_shm_cmd_t* c, api::Response resp) {
    H.answers.emplace_back(c, std::move(resp));
    if (!H.pass_end.posted) {
        ngx_post_event(&H.pass_end, &ngx_posted_events);
    }
}

// A foundation-era <state_dir>/<org>/ left behind (a session.json that did not parse stays there, quarantined):
// clear-session moves it to .trash for inspection, logout deletes it, so neither comes back at the next start.
// false (logged) when that failed: the command then answers 507, since the state would come back.
bool remove_legacy_dir(const std::string& org, bool move_aside) {
    std::string err, moved;
    bool ok = move_aside ? wa::move_aside(org_dir(org), wa_str(H.conf->state_dir) + "/.trash", org, &moved, &err)
                         : wa::remove_tree(org_dir(org), &err);
    if (!ok)
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org=%s: cannot %s the old state directory: %s", org.c_str(),
                      move_aside ? "move aside" : "delete", err.c_str());
    return ok;
}

// Message queries for an organization the helper does not run: answered from the store directly.
api::Response query_without_session(const api::Command& cmd) {
    if (cmd.type == api::Command::MessageGet) {
        wa::store::MessageRecord m;
        bool found = false;
        std::string err;
        if (!H.store->load_message(cmd.org, cmd.message, m, found, &err) || !found)
            return api::error(404, "not_found", "no message with that id");
    }
    // A throwaway session answers with the same JSON as a running one (it only reads the store).
    wa::Session tmp(session_config(), cmd.org, H.store.get());
    wa::Actions a = cmd.type == api::Command::MessageGet ? tmp.message_status(0, cmd.message, 1)
                                                          : tmp.list_messages(0, cmd.direction, cmd.limit, cmd.cursor, 1);
    for (const wa::Action& x : a)
        if (x.kind == wa::Action::Complete) return api::Response{x.code, x.bytes, {}, {}};
    return api::error(500, "internal_error", "no answer");
}

api::Response not_connected(const std::string& org, wa::State st) {
    return api::error(409, "not_connected",
                      std::string("the session of organization ") + org + " is not connected (status: " +
                          wa::state_name(st) + ")");
}

// Answers now, or returns false when the session will complete the command later (Action::Complete).
// What send-message and send-media have in common: the recipient, the text (or caption), idempotency.
wa::SendRequest send_request(const api::Command& cmd) {
    wa::SendRequest req;
    req.phone = cmd.phone;
    req.jid = cmd.jid;
    req.text = cmd.message;
    req.idempotency_key = cmd.idempotency_key;
    req.body_hash = api::send_body_hash(cmd);
    return req;
}

bool execute(const api::Command& cmd, wa_shm_cmd_t* c, api::Response& resp) {
    uint64_t command_id = c->id;
    uint64_t now = ngx_current_msec;
    int64_t unix_s = ngx_time();
    if (!H.store) {
        resp = api::error(507, "storage_error", "the WhatsApp state store cannot be used; see /api/health");
        return true;
    }
    store_begin();
    switch (cmd.type) {
    case api::Command::Start:
    case api::Command::PairingCode: {
        bool is_new = H.orgs.find(cmd.org) == H.orgs.end();
        HelperOrg* o = find_or_create(cmd.org, true);
        if (o == nullptr) {
            resp = api::error(503, "too_many_sessions", "whatsapp_max_sessions organizations are already running");
            return true;
        }
        // A session nobody could see or manage must not run: its status record comes first.
        if (!shm_org_exists(cmd.org)) {
            if (is_new) H.orgs.erase(cmd.org);
            resp = api::error(503, "zone_full", "whatsapp_zone has no room for another organization");
            resp.retry_after = "1";
            return true;
        }
        if (o->quarantined) {
            resp = api::error(409, "state_corrupt",
                              "stored session state does not parse; POST /api/clear-session starts afresh");
            return true;
        }
        if (cmd.type == api::Command::PairingCode) {
            H.waiting[command_id] = c;
            o->run(o->session.pairing_code(now, unix_s, cmd.phone, command_id));
            return false;
        }
        if (is_new) H.started.push_back(cmd.org);
        o->run(o->session.start(now, unix_s));
        if (!is_new) o->session.save();
        resp = api::Response{200, api::ok_status_json(o->session.status().state), {}, {}};
        return true;
    }
    case api::Command::Logout:
    case api::Command::Clear: {
        HelperOrg* o = find_or_create(cmd.org, false);
        if (o == nullptr) {
            resp = forget_unknown(cmd);
            return true;
        }
        if (!remove_legacy_dir(cmd.org, cmd.type == api::Command::Clear)) {
            resp = api::error(507, "storage_error", "the organization's stored state could not be changed");
            return true;
        }
        if (cmd.type == api::Command::Clear) {
            o->run(o->session.clear(now, unix_s));
            o->quarantined = false;
            resp = api::Response{200, api::ok_status_json(o->session.status().state), {}, {}};
            return true;
        }
        o->quarantined = false;
        H.waiting[command_id] = c;
        o->run(o->session.logout(now, unix_s, command_id));
        return false;
    }
    case api::Command::Purge: {
        // Data-protection erasure: everything stored for the organization, cleared generations included. Only
        // after logout (or for one never linked), so a running device is never left without its keys.
        auto it = H.orgs.find(cmd.org);
        if (it != H.orgs.end() && (it->second->session.busy() || it->second->session.status().linked)) {
            resp = api::error(409, "logout_first", "the organization is linked or running; POST /api/logout first");
            return true;
        }
        std::string err;
        if (!remove_legacy_dir(cmd.org, false)) {
            resp = api::error(507, "storage_error", "the organization's old state directory could not be deleted");
            return true;
        }
        // Received documents and images (media_download.cpp) first: a purge that left files behind must not
        // answer 200, and the rows still name them for a retry.
        if (!wa::remove_tree(wa_str(H.conf->state_dir) + "/media/" + cmd.org, &err)) {
            ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org=%s: cannot delete its media: %s", cmd.org.c_str(),
                          err.c_str());
            resp = api::error(507, "storage_error", "the organization's received media could not be deleted");
            return true;
        }
        if (!H.store->purge_org(cmd.org, &err)) {
            ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org=%s: purge failed: %s", cmd.org.c_str(), err.c_str());
            resp = api::error(507, "storage_error", "the organization's data could not be deleted");
            return true;
        }
        if (it != H.orgs.end()) H.orgs.erase(it);
        purge_shm_record(cmd.org);
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp org=%s: purged", cmd.org.c_str());
        resp = api::Response{200, R"({"success":true,"status":"purged"})", {}, {}};
        return true;
    }
    case api::Command::Send: {
        // An organization that was never started gets no session (nor a slot of whatsapp_max_sessions).
        HelperOrg* o = find_or_create(cmd.org, false);
        if (o == nullptr) {
            resp = not_connected(cmd.org, wa::State::Disconnected);
            return true;
        }
        wa::SendRequest req = send_request(cmd);
        H.waiting[command_id] = c;
        o->run(o->session.send(now, unix_s, req, command_id));
        return false;
    }
    case api::Command::SendMedia: {
        H.cmd_spool[command_id] = cmd.spool;  // removed when the command is answered (release_spool)
        HelperOrg* o = find_or_create(cmd.org, false);
        if (o == nullptr) {
            resp = not_connected(cmd.org, wa::State::Disconnected);
            return true;
        }
        wa::SendRequest req = send_request(cmd);
        req.media.spool = cmd.spool;
        req.media.type = static_cast<uint8_t>(cmd.media_type == "image" ? wa::media::Type::Image : wa::media::Type::Document);
        req.media.filename = cmd.filename;
        req.media.mimetype = cmd.mimetype;
        req.media.size = cmd.media_size;
        // The job takes the file over: it is removed when the upload ends (and at the latest with the answer).
        H.waiting[command_id] = c;
        o->run(o->session.send(now, unix_s, req, command_id));
        return false;
    }
    case api::Command::WebhookSet:
        resp = wa_webhooks_set(H.store.get(), cmd.org, cmd.url, cmd.events);
        return true;
    case api::Command::WebhookDead:
    case api::Command::WebhookReplay:
        resp = cmd.type == api::Command::WebhookDead ? wa_webhooks_dead(H.store.get(), cmd.org, cmd.cursor, cmd.limit)
                                                     : wa_webhooks_replay(H.store.get(), cmd.org, cmd.message);
        return true;
    case api::Command::MessageGet:
    case api::Command::MessageList:
    case api::Command::Contact: {
        HelperOrg* o = find_or_create(cmd.org, false);
        if (o == nullptr) {
            resp = cmd.type == api::Command::Contact ? not_connected(cmd.org, wa::State::Disconnected)
                                                     : query_without_session(cmd);
            return true;
        }
        H.waiting[command_id] = c;
        if (cmd.type == api::Command::MessageGet) o->run(o->session.message_status(now, cmd.message, command_id));
        else if (cmd.type == api::Command::MessageList)
            o->run(o->session.list_messages(now, cmd.direction, cmd.limit, cmd.cursor, command_id));
        else o->run(o->session.contact_info(now, unix_s, cmd.phone, command_id));
        return false;
    }
    }
    resp = api::error(500, "internal_error", "unknown command");
    return true;
}

// Puts the answer in shared memory and rings its requester, now or, with `bells`, once per process when the caller
// has put all of its answers there: a worker's doorbell handler collects every answer it finds done, so a pass's
// answers to one worker need one datagram, not one each.
void complete(wa_shm_cmd_t* c, const api::Response& resp, std::vector<ngx_pid_t>* bells) {
    wa_zone_ctx_t* z = H.zone;
    ngx_pid_t requester = 0;
    ngx_shmtx_lock(&z->shpool->mutex);
    if (c->abandoned) {
        wa_shm_cmd_free(z, c);
    } else {
        ngx_queue_remove(&c->link);
        c->state = WA_CMD_DONE;
        c->http_status = static_cast<uint16_t>(resp.status);
        c->retry_after = resp.retry_after.empty() ? 0 : static_cast<uint16_t>(std::stoi(resp.retry_after));
        if (!wa_shm_set_bytes(z, &c->resp, &c->resp_len, resp.body)) {
            c->http_status = 503;
            c->retry_after = 1;
        }
        ngx_queue_insert_tail(&z->sh->done, &c->link);
        requester = c->requester;
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (!requester) return;
    if (!bells) wa_doorbell_ring(z->sh, requester);
    else if (std::find(bells->begin(), bells->end(), requester) == bells->end()) bells->push_back(requester);
}

void take_commands() {
    if (H.role != WA_HELPER_ACTIVE) return;
    wa_zone_ctx_t* z = H.zone;
    std::vector<std::pair<wa_shm_cmd_t*, std::string>> batch;
    ngx_shmtx_lock(&z->shpool->mutex);
    while (!ngx_queue_empty(&z->sh->pending)) {
        ngx_queue_t* q = ngx_queue_head(&z->sh->pending);
        auto* c = ngx_queue_data(q, wa_shm_cmd_t, link);
        ngx_queue_remove(q);
        z->sh->pending_count--;
        c->state = WA_CMD_TAKEN;
        ngx_queue_insert_tail(&z->sh->taken, &c->link);
        batch.emplace_back(c, std::string(reinterpret_cast<const char*>(c->req), c->req_len));
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    for (auto& [c, json] : batch) {
        api::Command cmd;
        api::Response resp;
        bool answered = true;
        try {
            if (!api::command_from_json(json, cmd)) resp = api::error(400, "invalid_json", "malformed command");
            else answered = execute(cmd, c, resp);
        } catch (const std::exception& e) {
            ngx_log_error(NGX_LOG_ALERT, H.log, 0, "whatsapp org=%s: command failed: %s", cmd.org.c_str(), e.what());
            resp = api::error(500, "internal_error", "the command failed inside the helper");
            answered = true;
        }
        // Otherwise the session completes it later (Action::Complete), possibly already inside execute().
        if (answered) {
            H.waiting.erase(c->id);
            release_spool(c->id);
            // A malformed send_media command never reached cmd_spool: its file goes too.
            if (cmd.type == api::Command::SendMedia) remove_spool(cmd.spool);
            answer(c, std::move(resp));
        }
    }
}

// Results whose requester died (or never collected them) are freed after their deadline.
void sweep_results() {
    wa_zone_ctx_t* z = H.zone;
    int64_t now = ngx_time();
    ngx_shmtx_lock(&z->shpool->mutex);
    ngx_queue_t* q = ngx_queue_head(&z->sh->done);
    while (q != ngx_queue_sentinel(&z->sh->done)) {
        auto* c = ngx_queue_data(q, wa_shm_cmd_t, link);
        q = ngx_queue_next(q);
        if (c->expires_at < now) wa_shm_cmd_free(z, c);
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
}

// An organization whose stored state cannot be used: shown with why, never started until clear-session.
void quarantine(const std::string& id, const std::string& why) {
    HelperOrg* o = find_or_create(id, true);
    if (o == nullptr) return;
    o->quarantined = true;
    wa::SessionStatus st;
    st.last_error = "stored state quarantined: " + why + "; POST /api/clear-session starts afresh";
    ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org=%s: %s", id.c_str(), st.last_error.c_str());
    publish(id, st, o);
}

// Every status record says that nobody runs the sessions, and why: left as they were, they would show the
// states of a helper that is gone (a crash) as if it still ran them.
void mark_unowned(const std::string& why) {
    std::string text = "no helper owns the sessions: " + why;
    wa_zone_ctx_t* z = H.zone;
    int64_t now = ngx_time();
    ngx_shmtx_lock(&z->shpool->mutex);
    for (ngx_queue_t* q = ngx_queue_head(&z->sh->orgs); q != ngx_queue_sentinel(&z->sh->orgs); q = ngx_queue_next(q)) {
        wa_shm_org_t* o = ngx_queue_data(q, wa_shm_org_t, link);
        auto st = static_cast<wa::State>(o->state);
        if (st != wa::State::LoggedOut && st != wa::State::Conflict) {
            if (st != wa::State::Disconnected) o->state_since = now;
            o->state = static_cast<uint8_t>(wa::State::Disconnected);
        }
        o->next_retry_at = 0;
        o->qr_expires_at = 0;
        wa_shm_set_bytes(z, &o->qr_text, &o->qr_text_len, std::string());
        wa_shm_set_bytes(z, &o->qr_url, &o->qr_url_len, std::string());
        wa_shm_set_text(z, &o->last_error, &o->last_error_len, text, WA_ERR_MAX);
        o->updated_at = now;
        api::StatusView v;  // (rendered under the lock: a rare path, a few microseconds per record)
        v.org.assign(reinterpret_cast<const char*>(o->id), o->sn.str.len);
        v.status.state = static_cast<wa::State>(o->state);
        v.status.retry_count = o->retry_count;
        v.status.connected_at = o->connected_at;
        v.status.state_since = o->state_since;
        v.status.restricted_until = o->restricted_until;
        v.status.phone.assign(reinterpret_cast<const char*>(o->phone), o->phone_len);
        v.status.last_error = text;
        set_docs(z, o, api::status_json_head(v), std::string());
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
}

// Opens the store when this helper becomes the owner. A store that cannot be used (a FIFO or a symlink named
// whatsapp.db or -wal/-shm, a database that fails its integrity check, a directory SQLite cannot write) is never
// reset: the helper says why (log once a minute, /api/health), answers commands 507 storage_error and retries
// with backoff (store_timer_handler) until an operator has fixed it.
bool open_store() {
    std::string dir = wa_str(H.conf->state_dir), err;
    H.store = wa::store::open_sqlite_store(dir, false, &err);
    if (!H.store) {
        g_store_log(NGX_LOG_ALERT, "whatsapp: the state store in \"" + dir + "\" cannot be used: " + err +
                                       "; no session runs until it can (retrying)");
        set_reason("the state store cannot be used: " + err);
        mark_unowned("the state store cannot be used (see /api/health)");
        return false;
    }
    if (H.conf->store_sync_full && !H.store->set_synchronous(true, &err))
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp: whatsapp_store_sync full: %s", err.c_str());
    if (H.store_retry_ms)
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp: the state store in \"%s\" opened; loading the sessions",
                      dir.c_str());
    H.store_retry_ms = 0;
    g_store_log.reset();
    set_reason("");
    wa::store::MigrationReport report;
    if (!wa::store::migrate_session_files(*H.store, dir, report, &err))
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp: migrating session.json files failed: %s", err.c_str());
    if (!report.migrated.empty())
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp: migrated %uz session.json files into whatsapp.db",
                      report.migrated.size());
    if (report.temps_removed)
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp: removed %uz temporary session.json files left by a crash",
                      report.temps_removed);
    for (auto& [id, why] : report.corrupt) quarantine(id, why);
    return true;
}

void take_commands();
void load_sessions();

void store_timer_handler(ngx_event_t* ev) {
    if (H.role != WA_HELPER_ACTIVE || H.store || ngx_exiting || ngx_quit || ngx_terminate) return;
    if (!open_store()) {
        H.store_retry_ms = std::min<ngx_msec_t>(H.store_retry_ms * 2, 5000);
        ngx_add_timer(ev, H.store_retry_ms);
        return;
    }
    load_sessions();
    wa_webhooks_start(H.conf, H.store.get(), H.log, [] { store_begin(); });
    ngx_msec_int_t wait = static_cast<ngx_msec_int_t>(H.resume_at - ngx_current_msec);
    ngx_add_timer(&H.resume_timer, wait > 0 ? static_cast<ngx_msec_t>(wait) : 0);
    take_commands();
}

void load_sessions() {
    std::vector<wa::store::OrgRecord> rows;
    std::vector<std::pair<std::string, std::string>> corrupt;
    std::string err;
    if (!H.store->load_orgs(rows, corrupt, &err)) {
        ngx_log_error(NGX_LOG_ALERT, H.log, 0, "whatsapp: cannot read organizations from the store: %s", err.c_str());
        return;
    }
    for (auto& [id, why] : corrupt) quarantine(id, why);
    size_t skipped = 0;
    for (const wa::store::OrgRecord& rec : rows) {
        if (!wa::valid_org_id(rec.org)) continue;
        HelperOrg* o = find_or_create(rec.org, true);
        if (o == nullptr) {
            skipped++;
            continue;
        }
        o->session.restore(rec);
        publish(rec.org, o->session.status(), o);
        if (o->session.status().wanted) H.resume_queue.push_back(rec.org);
    }
    if (skipped)
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp: %uz stored organizations over whatsapp_max_sessions were not loaded",
                      skipped);
    // Reconnect in random order, spread over time (resume_sessions), so 1,000 do not dial in the same second.
    std::shuffle(H.resume_queue.begin(), H.resume_queue.end(), H.rng);
}

// Starts the stored sessions in slices: at most 25 every 50 ms (500/s), each slice jittered.
void resume_sessions(ngx_event_t* ev) {
    store_begin();
    size_t n = 0;
    while (!H.resume_queue.empty() && n < 25) {
        std::string id = std::move(H.resume_queue.back());
        H.resume_queue.pop_back();
        auto it = H.orgs.find(id);
        if (it == H.orgs.end()) continue;
        HelperOrg* o = it->second.get();
        if (o->session.status().wanted && !o->quarantined && !o->session.busy())
            o->run(o->session.start(ngx_current_msec, ngx_time()));
        n++;
    }
    if (!H.resume_queue.empty()) ngx_add_timer(ev, 40 + H.rng() % 20);
}

void activate() {
    wa_zone_ctx_t* z = H.zone;
    H.role = WA_HELPER_ACTIVE;
    bool clean = true;
    std::vector<wa_shm_cmd_t*> orphans;
    ngx_shmtx_lock(&z->shpool->mutex);
    clean = z->sh->clean_release || z->sh->generation == 0;
    z->sh->clean_release = 0;
    z->sh->helper_pid = ngx_pid;
    if (z->sh->standby_pid == ngx_pid) z->sh->standby_pid = 0;
    z->sh->helper_role = WA_HELPER_ACTIVE;
    z->sh->helper_since = ngx_time();
    z->sh->generation++;
    for (ngx_queue_t* q = ngx_queue_head(&z->sh->taken); q != ngx_queue_sentinel(&z->sh->taken); q = ngx_queue_next(q))
        orphans.push_back(ngx_queue_data(q, wa_shm_cmd_t, link));
    ngx_shmtx_unlock(&z->shpool->mutex);
    // Commands the previous owner took but never finished: their effect is unknown, so say so.
    for (wa_shm_cmd_t* c : orphans) {
        api::Response r = api::error(503, "helper_unavailable", "the WhatsApp helper restarted; retry");
        r.retry_after = "1";
        complete(c, r);
    }
    ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp helper %P owns the sessions (previous owner %s)", ngx_pid,
                  clean ? "released cleanly" : "died");
    // After a crash the server may not have seen the dead socket close yet; connecting at once as the same
    // device would earn a "conflict". Give it a moment.
    H.resume_at = ngx_current_msec + (clean ? 0 : 1500);
    if (open_store()) {
        load_sessions();
        wa_webhooks_start(H.conf, H.store.get(), H.log, [] { store_begin(); });
    } else {
        H.store_retry_ms = 200;
        ngx_add_timer(&H.store_timer, H.store_retry_ms);
    }
    ngx_add_timer(&H.resume_timer, clean ? 0 : 1500);
    clean_spool();
    take_commands();
}

bool try_lock() {
    struct flock fl;
    ngx_memzero(&fl, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    return fcntl(H.lock_fd, F_OFD_SETLK, &fl) == 0;
}

// Opens <state_dir>/owner.lock (a regular file, never through a symlink). A failure (EROFS, EACCES, ELOOP, ...)
// does not end the helper: it says why (log once a minute, /api/health, the 503 answers and, when no other
// helper runs them, the status records) and retries with backoff up to 5 s.
bool open_lock() {
    int fd = open(H.lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    int err = fd == -1 ? ngx_errno : 0;
    struct stat st;
    if (fd != -1 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd != -1) {
        H.lock_fd = fd;
        if (H.lock_retry_ms) {
            ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp helper: \"%s\" opened", H.lock_path.c_str());
            set_reason("");
        }
        H.lock_retry_ms = 0;
        g_lock_log.reset();
        return true;
    }
    std::string why = "cannot open " + H.lock_path + ": " +
                      (err == 0 ? std::string("not a regular file")
                                : err == ELOOP ? std::string("it is a symbolic link") : std::string(strerror(err)));
    g_lock_log(NGX_LOG_ALERT, "whatsapp helper: " + why + "; no helper owns the sessions (retrying)");
    set_reason(why);
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    ngx_pid_t owner = z->sh->helper_role != WA_HELPER_NONE ? z->sh->helper_pid : 0;
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (!wa_process_alive(owner) || owner == ngx_pid) mark_unowned(why);
    H.lock_retry_ms = H.lock_retry_ms ? std::min<ngx_msec_t>(H.lock_retry_ms * 2, 5000) : 200;
    ngx_add_timer(&H.lock_timer, H.lock_retry_ms);
    return false;
}

// With owner.lock open: owns the sessions at once, or waits (STANDBY) for the previous owner to let go.
void acquire() {
    if (try_lock()) {
        activate();
        return;
    }
    H.role = WA_HELPER_STANDBY;
    ngx_shmtx_lock(&H.zone->shpool->mutex);
    H.zone->sh->standby_pid = ngx_pid;
    ngx_shmtx_unlock(&H.zone->shpool->mutex);
    ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp helper %P waits for the previous owner to let go", ngx_pid);
    ngx_add_timer(&H.lock_timer, 100);
}

void lock_timer_handler(ngx_event_t* ev) {
    if (ngx_exiting || ngx_quit || ngx_terminate) return;
    if (H.lock_fd == -1) {
        if (open_lock()) acquire();
        return;
    }
    if (try_lock()) {
        activate();
        return;
    }
    ngx_add_timer(ev, 100);
}

// Closes every connection, persists, then releases the lock: the next owner can start at once.
void drain(const char* why) {
    if (H.role == WA_HELPER_DRAINING || H.role == WA_HELPER_NONE) return;
    bool owner = H.role == WA_HELPER_ACTIVE;
    H.role = WA_HELPER_DRAINING;
    if (H.lock_timer.timer_set) ngx_del_timer(&H.lock_timer);
    if (H.resume_timer.timer_set) ngx_del_timer(&H.resume_timer);
    if (H.store_timer.timer_set) ngx_del_timer(&H.store_timer);
    wa_zone_ctx_t* z = H.zone;
    if (owner) {
        ngx_shmtx_lock(&z->shpool->mutex);
        if (z->sh->helper_pid == ngx_pid) z->sh->helper_role = WA_HELPER_DRAINING;
        ngx_shmtx_unlock(&z->shpool->mutex);
        size_t n = 0;
        store_begin();
        for (auto& [id, o] : H.orgs) {
            o->run(o->session.shutdown(ngx_current_msec, ngx_time()));
            n++;
        }
        // Commands a session would have completed later: say the helper went away.
        for (auto& [id, c] : H.waiting) {
            api::Response r = api::error(503, "helper_unavailable", "the WhatsApp helper is restarting; retry");
            r.retry_after = "1";
            complete(c, r);
        }
        H.waiting.clear();
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp helper %P: %s; closed and saved %uz sessions", ngx_pid, why,
                      n);
    }
    H.orgs.clear();
    H.resume_queue.clear();
    pass_end_handler(nullptr);  // commit what the shutdown wrote, free the closed transports
    wa_webhooks_stop();
    H.store.reset();            // closed before the lock is released: the next owner opens it
    ngx_shmtx_lock(&z->shpool->mutex);
    if (z->sh->helper_pid == ngx_pid) {
        z->sh->helper_pid = 0;
        z->sh->helper_role = WA_HELPER_NONE;
        z->sh->clean_release = 1;
        z->sh->released_at = ngx_current_msec;
    }
    if (z->sh->standby_pid == ngx_pid) z->sh->standby_pid = 0;
    ngx_pid_t next = z->sh->standby_pid;
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (H.lock_fd != -1) {
        close(H.lock_fd);  // releases the OFD lock
        H.lock_fd = -1;
    }
    if (next) wa_doorbell_ring(z->sh, next);
}

void helper_doorbell_handler(ngx_event_t* ev) {
    auto* c = static_cast<ngx_connection_t*>(ev->data);
    if (c->close) {
        // Graceful shutdown: ngx_close_idle_connections() marks us and calls this handler once.
        c->close = 0;
        c->idle = 0;
        drain("shutting down");
    }
    wa_worker_doorbell_handler(ev);  // drains the socket; answers this process's own requests (single mode)
    // The previous owner rings its standby successor right after letting go of the lock.
    if (H.role == WA_HELPER_STANDBY && !ngx_exiting && try_lock()) {
        if (H.lock_timer.timer_set) ngx_del_timer(&H.lock_timer);
        activate();
        return;
    }
    take_commands();
}

// Retention, once a minute: messages (whatsapp_message_retention), idempotency keys (24 h, the contract),
// device lists (a day: a stale one only costs a usync), privacy tokens (whatsmeow: 28 days).
// Received documents and images (media_download.cpp) go with whatsapp_message_retention too: a file is as old as
// its download (its mtime), which follows the message within seconds. At most every 10 minutes.
void expire_media(int64_t now) {
    static int64_t last = 0;
    if (now - last < 600) return;
    last = now;
    std::string root = wa_str(H.conf->state_dir) + "/media";
    DIR* d = opendir(root.c_str());
    if (d == nullptr) return;
    int removed = 0;
    while (struct dirent* org = readdir(d)) {
        std::string name = org->d_name;
        if (name == "." || name == ".." || !wa::valid_org_id(name)) continue;
        std::string dir = root + "/" + name;
        DIR* od = opendir(dir.c_str());
        if (od == nullptr) continue;
        while (struct dirent* f = readdir(od)) {
            std::string fn = f->d_name;
            if (fn == "." || fn == "..") continue;
            std::string path = dir + "/" + fn;
            struct stat st;
            if (lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                now - st.st_mtime > static_cast<int64_t>(H.conf->message_retention) && unlink(path.c_str()) == 0)
                removed++;
        }
        closedir(od);
    }
    closedir(d);
    if (removed) ngx_log_error(NGX_LOG_INFO, H.log, 0, "whatsapp: retention removed %d stored media file(s)", removed);
}

void expire_stored() {
    static int64_t last = 0;
    int64_t now = ngx_time();
    if (!H.store || H.role != WA_HELPER_ACTIVE || now - last < 60) return;
    last = now;
    store_begin();
    uint64_t n = 0, total = 0;
    std::string err;
    int64_t now_ms = now * 1000;
    if (H.store->expire_messages(now_ms - int64_t(H.conf->message_retention) * 1000, H.conf->message_cap, n, &err)) total += n;
    if (H.store->expire_idempotency(now_ms - 24LL * 3600 * 1000, n, &err)) total += n;
    H.store->expire_devices(now_ms - 24LL * 3600 * 1000, n, &err);
    H.store->expire_privacy_tokens(now - 28LL * 86400, n, &err);
    // Delivered and dead webhook events, as long as messages are kept.
    H.store->expire_webhooks(now_ms - int64_t(H.conf->message_retention) * 1000, n, &err);
    if (total) ngx_log_error(NGX_LOG_INFO, H.log, 0, "whatsapp: retention removed %uL stored rows", total);
    expire_media(now);
}

// Every whatsapp_status_summary, while organizations are reconnecting or failed to since the last one: how many
// are in each state and how many reconnects failed. It replaces a line per retry.
void log_summary() {
    if (H.role != WA_HELPER_ACTIVE || H.conf->status_summary == 0) return;
    if (H.summary_at == 0) H.summary_at = ngx_current_msec + H.conf->status_summary;
    if (static_cast<ngx_msec_int_t>(ngx_current_msec - H.summary_at) < 0) return;
    H.summary_at = ngx_current_msec + H.conf->status_summary;
    api::StateCounts n{};
    for (auto& [id, o] : H.orgs) {
        size_t st = static_cast<size_t>(o->session.status().state);
        if (st < n.size()) n[st]++;
    }
    auto at = [&n](wa::State s) { return n[static_cast<size_t>(s)]; };
    uint64_t failed = H.failed_retries;
    H.failed_retries = 0;
    if (at(wa::State::Reconnecting) == 0 && failed == 0) return;
    ngx_log_error(NGX_LOG_WARN, H.log, 0,
                  "whatsapp: %uz organizations: %uL connected, %uL reconnecting, %uL connecting, %uL qr_ready, "
                  "%uL disconnected, %uL logged_out, %uL conflict; %uL failed reconnects in the last %M s",
                  H.orgs.size(), at(wa::State::Connected), at(wa::State::Reconnecting), at(wa::State::Connecting),
                  at(wa::State::QrReady), at(wa::State::Disconnected), at(wa::State::LoggedOut), at(wa::State::Conflict),
                  failed, H.conf->status_summary / 1000);
}

void sweep_handler(ngx_event_t* ev) {
    for (WaTransport* t : g_dead) delete t;
    g_dead.clear();
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        drain("shutting down");
        return;
    }
    if (getppid() != ngx_parent && ngx_process == NGX_PROCESS_WORKER) {
        ngx_log_error(NGX_LOG_ALERT, H.log, 0, "whatsapp helper: the master process is gone, exiting");
        drain("master gone");
        exit(1);
    }
    take_commands();
    sweep_results();
    expire_stored();
    log_summary();
    if (H.role == WA_HELPER_ACTIVE) clean_spool();
    ngx_add_timer(ev, 1000);
}

void title_handler(ngx_event_t*) { ngx_setproctitle((char*)"whatsapp helper process"); }

void init_timer(ngx_event_t* ev, ngx_event_handler_pt h) {
    ngx_memzero(ev, sizeof(*ev));
    ev->handler = h;
    ev->log = H.log;
    ev->data = &H;
    ev->cancelable = 1;
}

}  // namespace

ngx_int_t wa_helper_init_process(ngx_cycle_t* cycle) {
    H.cycle = cycle;
    H.conf = wa_main_conf(cycle);
    H.zone = wa_zone(cycle);
    H.log = cycle->log;
    if (H.zone == NULL || H.zone->sh == NULL) return NGX_ERROR;
    H.rng.seed(std::random_device{}());  // seeded in the master, every respawned helper would replay its jitter
    if (ngx_process == NGX_PROCESS_WORKER) {
        // This extra worker serves no HTTP: its listeners belong to the other workers.
        ngx_close_listening_sockets(cycle);
        // If the master is killed outright, quit gracefully instead of living on as an orphan owner.
        prctl(PR_SET_PDEATHSIG, SIGQUIT);
    }
    // Every pass allocates and frees a few hundred KiB (frames, statements, Signal records). With glibc's
    // 128 KiB trim threshold the heap's top went back to the kernel and was faulted in again pass after pass:
    // brk, page faults, and TLB shootdowns to the store's checkpoint thread (8 % of the helper's CPU in
    // bench/send.pl). Keeping up to 8 MiB of free heap costs at most that much resident memory.
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    mallopt(M_TOP_PAD, 1 << 20);
    if (wa_doorbell_open(cycle, helper_doorbell_handler, true) != NGX_OK) return NGX_ERROR;
    init_timer(&H.lock_timer, lock_timer_handler);
    init_timer(&H.sweep_timer, sweep_handler);
    init_timer(&H.title_timer, title_handler);
    init_timer(&H.resume_timer, resume_sessions);
    init_timer(&H.pass_end, pass_end_handler);
    init_timer(&H.store_timer, store_timer_handler);
    H.rng.seed(std::random_device{}() ^ (static_cast<uint64_t>(ngx_pid) << 32) ^ ngx_current_msec);
    if (ngx_process == NGX_PROCESS_WORKER) ngx_add_timer(&H.title_timer, 0);
    ngx_add_timer(&H.sweep_timer, 1000);
    wa_metrics_helper_start(cycle);

    H.lock_path = wa_str(H.conf->state_dir) + "/owner.lock";
    if (open_lock()) acquire();
    return NGX_OK;
}

void wa_helper_exit_process(ngx_cycle_t*) {
    if (H.zone == NULL) return;
    wa_metrics_helper_stop();
    drain("exiting");
    for (WaTransport* t : g_dead) delete t;
    g_dead.clear();
    H.uploads.erase(std::remove_if(H.uploads.begin(), H.uploads.end(), [](const auto& u) { return u->finished(); }),
                    H.uploads.end());
    H.downloads.erase(std::remove_if(H.downloads.begin(), H.downloads.end(), [](const auto& d) { return d->finished(); }),
                      H.downloads.end());
}
