// The helper process: the single owner of every organization's WhatsApp connection.
//
// Ownership is an OFD lock on <state_dir>/owner.lock, taken after fork and released by the kernel if the
// process dies. A new-generation helper (reload) starts in STANDBY and retries the lock on a short timer;
// the old one, told to quit, closes its connections, persists its sessions and only then unlocks, so two
// helpers never own sessions at the same time. Commands arrive through shared memory and the doorbell.

#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <random>

#include "transport.hpp"
#include "wa/api.hpp"
#include "wa/fsutil.hpp"
#include "wa/session.hpp"
#include "wa/state_file.hpp"
#include "wa/validate.hpp"

namespace {

namespace api = wa::api;

struct HelperOrg;
// Transports that failed are deleted by the sweep rather than inside their own call stack.
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
    std::map<std::string, std::unique_ptr<HelperOrg>> orgs;
    std::mt19937_64 rng{std::random_device{}()};
};

Helper H;

std::string org_dir(const std::string& org) { return wa_str(H.conf->state_dir) + "/" + org; }

void publish(const std::string& id, const wa::SessionStatus& s);

struct HelperOrg : WaTransport::Listener {
    std::string id;
    wa::Session session;
    std::unique_ptr<WaTransport> transport;
    ngx_event_t timer;
    bool quarantined = false;

    HelperOrg(std::string org, wa::SessionConfig cfg)
        : id(std::move(org)), session(std::move(cfg)) {
        ngx_memzero(&timer, sizeof(timer));
        timer.handler = on_timer_event;
        timer.data = this;
        timer.log = H.log;
        timer.cancelable = 1;  // a backoff wait must not keep a quitting helper alive
    }
    ~HelperOrg() override {
        if (timer.timer_set) ngx_del_timer(&timer);
    }

    static void on_timer_event(ngx_event_t* ev) {
        auto* o = static_cast<HelperOrg*>(ev->data);
        o->run(o->session.on_timer(ngx_current_msec, ngx_time()));
    }

    void on_transport_open() override {
        ngx_log_error(NGX_LOG_INFO, H.log, 0, "whatsapp org \"%s\": WebSocket to %V open (local port %d)", id.c_str(),
                      &H.conf->server, transport ? static_cast<int>(transport->local_port()) : 0);
        run(session.on_transport_open(ngx_current_msec, ngx_time()));
    }
    void on_transport_message(std::string_view payload) override {
        run(session.on_message(ngx_current_msec, ngx_time(), payload));
    }
    void on_transport_error(const std::string& why) override {
        ngx_log_error(NGX_LOG_WARN, H.log, 0, "whatsapp org \"%s\": %s", id.c_str(), why.c_str());
        // The transport is still on the call stack of its own fail(): free it from the sweep instead.
        if (transport) g_dead.push_back(transport.release());
        run(session.on_transport_error(ngx_current_msec, ngx_time(), why));
    }

    void persist() {
        std::string err;
        std::string dir = org_dir(id);
        if (!wa::ensure_dir(dir, 0700, &err) ||
            !wa::write_file_atomic(dir + "/session.json", wa::session_file_json(id, session.status()), 0600, &err)) {
            ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org \"%s\": cannot persist: %s", id.c_str(), err.c_str());
        }
    }

    void run(const wa::Actions& actions) {
        for (const wa::Action& a : actions) {
            switch (a.kind) {
            case wa::Action::Connect:
                transport.reset(new WaTransport(H.conf, H.log, this));
                transport->connect();  // may report an error (and reset `transport`) right away
                break;
            case wa::Action::Close:
                if (transport) {
                    transport->close(a.code);
                    transport.reset();
                }
                break;
            case wa::Action::Write:
                if (transport) transport->send_binary(a.bytes);
                break;
            case wa::Action::SetTimer: {
                ngx_msec_int_t d = static_cast<ngx_msec_int_t>(a.at_ms - ngx_current_msec);
                ngx_add_timer(&timer, d > 0 ? static_cast<ngx_msec_t>(d) : 0);
                break;
            }
            case wa::Action::CancelTimer:
                if (timer.timer_set) ngx_del_timer(&timer);
                break;
            case wa::Action::Publish:
                publish(id, session.status());
                break;
            case wa::Action::Persist:
                persist();
                break;
            case wa::Action::DeleteState: {
                std::string err;
                if (!wa::remove_tree(org_dir(id), &err))
                    ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org \"%s\": cannot delete state: %s", id.c_str(),
                                  err.c_str());
                quarantined = false;
                break;
            }
            case wa::Action::MoveStateAside: {
                std::string err, moved;
                if (!wa::move_aside(org_dir(id), wa_str(H.conf->state_dir) + "/.trash", id, &moved, &err)) {
                    ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org \"%s\": cannot move state aside: %s",
                                  id.c_str(), err.c_str());
                } else if (!moved.empty()) {
                    ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp org \"%s\": state moved to %s", id.c_str(),
                                  moved.c_str());
                }
                quarantined = false;
                break;
            }
            }
        }
    }
};


wa::SessionConfig session_config() {
    wa::SessionConfig cfg;
    cfg.server_url = wa_str(H.conf->server);
    cfg.handshake_timeout_ms = H.conf->handshake_timeout;
    cfg.backoff.base_ms = H.conf->backoff_min;
    cfg.backoff.cap_ms = H.conf->backoff_max;
    cfg.random = [] { return std::uniform_real_distribution<double>(0.0, 1.0)(H.rng); };
    return cfg;
}

void copy_bounded(u_char* dst, uint16_t* len, size_t cap, const std::string& v) {
    size_t n = v.size() < cap ? v.size() : cap;
    ngx_memcpy(dst, v.data(), n);
    *len = static_cast<uint16_t>(n);
}

void publish(const std::string& id, const wa::SessionStatus& s) {
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    const auto* p = reinterpret_cast<const u_char*>(id.data());
    wa_shm_org_t* o = wa_shm_org_find(z, p, id.size());
    if (o == NULL) o = wa_shm_org_create(z, p, id.size());
    if (o) {
        o->state = static_cast<uint8_t>(s.state);
        o->wanted = s.wanted;
        o->retry_count = s.retry_count;
        o->connected_at = s.connected_at;
        o->state_since = s.state_since;
        o->next_retry_at = s.next_retry_at;
        o->updated_at = ngx_time();
        copy_bounded(o->phone, &o->phone_len, sizeof(o->phone), s.phone);
        copy_bounded(o->last_error, &o->last_error_len, sizeof(o->last_error), s.last_error);
        copy_bounded(o->qr_text, &o->qr_text_len, sizeof(o->qr_text), s.qr_text);
        if (s.state != wa::State::QrReady) wa_shm_set_bytes(z, &o->qr_url, &o->qr_url_len, std::string());
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (o == NULL)
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org \"%s\": whatsapp_zone is full, status not published",
                      id.c_str());
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

bool shm_org_known(const std::string& id) {
    wa_zone_ctx_t* z = H.zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    bool known = wa_shm_org_find(z, reinterpret_cast<const u_char*>(id.data()), id.size()) != NULL;
    ngx_shmtx_unlock(&z->shpool->mutex);
    return known;
}

// logout / clear-session of an organization this helper does not run: nothing is created for it (no session,
// so no whatsapp_max_sessions slot; no status record), or made-up ids would lock real organizations out.
// Stored state it never loaded is still deleted or moved aside, and a record left by an earlier helper shows
// the outcome.
api::Response forget_unknown(const api::Command& cmd) {
    bool logout = cmd.type == api::Command::Logout;
    std::string err, moved;
    bool ok = logout ? wa::remove_tree(org_dir(cmd.org), &err)
                     : wa::move_aside(org_dir(cmd.org), wa_str(H.conf->state_dir) + "/.trash", cmd.org, &moved, &err);
    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org \"%s\": cannot %s state: %s", cmd.org.c_str(),
                      logout ? "delete" : "move aside", err.c_str());
    } else if (!moved.empty()) {
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp org \"%s\": state moved to %s", cmd.org.c_str(), moved.c_str());
    }
    wa::SessionStatus st;
    st.state = logout ? wa::State::LoggedOut : wa::State::Disconnected;
    st.state_since = ngx_time();
    if (shm_org_known(cmd.org)) publish(cmd.org, st);
    return api::Response{200, api::ok_status_json(st.state), {}, {}};
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

api::Response execute(const api::Command& cmd) {
    uint64_t now = ngx_current_msec;
    int64_t unix_s = ngx_time();
    switch (cmd.type) {
    case api::Command::Start: {
        bool is_new = H.orgs.find(cmd.org) == H.orgs.end();
        HelperOrg* o = find_or_create(cmd.org, true);
        if (o == nullptr)
            return api::error(503, "too_many_sessions", "whatsapp_max_sessions organizations are already running");
        // A session nobody could see or manage must not run: its status record comes first.
        if (!shm_org_exists(cmd.org)) {
            if (is_new) H.orgs.erase(cmd.org);
            api::Response r = api::error(503, "zone_full", "whatsapp_zone has no room for another organization");
            r.retry_after = "1";
            return r;
        }
        if (o->quarantined)
            return api::error(409, "state_corrupt",
                              "stored session state does not parse; POST /api/clear-session starts afresh");
        o->run(o->session.start(now, unix_s));
        return api::Response{200, api::ok_status_json(o->session.status().state), {}, {}};
    }
    case api::Command::Logout:
    case api::Command::Clear: {
        HelperOrg* o = find_or_create(cmd.org, false);
        if (o == nullptr) return forget_unknown(cmd);
        o->run(cmd.type == api::Command::Logout ? o->session.logout(now, unix_s) : o->session.clear(now, unix_s));
        return api::Response{200, api::ok_status_json(o->session.status().state), {}, {}};
    }
    case api::Command::Send: {
        // An organization that was never started gets no session (nor a slot of whatsapp_max_sessions).
        HelperOrg* o = find_or_create(cmd.org, false);
        if (o == nullptr)
            return api::error(409, "not_connected",
                              std::string("the session of organization ") + cmd.org + " is not connected (status: " +
                                  wa::state_name(wa::State::Disconnected) + ")");
        wa::State st = o->session.status().state;
        // Sending needs the Signal layer on a linked session; neither exists before the link issue lands,
        // so no session can be connected and every send stops here.
        return api::error(409, "not_connected",
                          std::string("the session of organization ") + cmd.org + " is not connected (status: " +
                              wa::state_name(st) + ")");
    }
    }
    return api::error(500, "internal_error", "unknown command");
}

void complete(wa_shm_cmd_t* c, const api::Response& resp) {
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
    if (requester) wa_doorbell_ring(z->sh, requester);
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
        api::Response resp = api::command_from_json(json, cmd) ? execute(cmd)
                                                               : api::error(400, "invalid_json", "malformed command");
        complete(c, resp);
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

void load_sessions() {
    std::string dir = wa_str(H.conf->state_dir);
    DIR* d = opendir(dir.c_str());
    if (d == NULL) {
        ngx_log_error(NGX_LOG_ERR, H.log, ngx_errno, "whatsapp: opendir(\"%s\") failed", dir.c_str());
        return;
    }
    while (struct dirent* e = readdir(d)) {
        std::string id = e->d_name;
        if (!wa::valid_org_id(id)) continue;  // ".", "..", ".trash", owner.lock and anything foreign
        std::string text, err;
        if (!wa::read_file(dir + "/" + id + "/session.json", text, 1 << 20, &err)) continue;
        HelperOrg* o = find_or_create(id, true);
        if (o == nullptr) break;
        wa::SessionStatus st;
        if (!wa::parse_session_file(text, id, st, err)) {
            o->quarantined = true;
            st = wa::SessionStatus{};
            st.last_error = "stored state quarantined: " + err + "; POST /api/clear-session starts afresh";
            ngx_log_error(NGX_LOG_ERR, H.log, 0, "whatsapp org \"%s\": %s", id.c_str(), err.c_str());
        } else if (st.state != wa::State::LoggedOut && st.state != wa::State::Conflict) {
            // Whatever it was doing, it is not doing it now: a wanted session is restarted below, with a
            // fresh count and no error carried over from another run (the server or network may have changed).
            st.state = wa::State::Disconnected;
            st.next_retry_at = 0;
            st.retry_count = 0;
            st.last_error.clear();
        }
        o->session.restore(st);
        publish(id, st);
    }
    closedir(d);
}

void resume_sessions(ngx_event_t*) {
    for (auto& [id, o] : H.orgs) {
        if (o->session.status().wanted && !o->quarantined) o->run(o->session.start(ngx_current_msec, ngx_time()));
    }
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
    load_sessions();
    // After a crash the server may not have seen the dead socket close yet; connecting at once as the same
    // device would earn a "conflict". Give it a moment.
    ngx_add_timer(&H.resume_timer, clean ? 0 : 1500);
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

void lock_timer_handler(ngx_event_t* ev) {
    if (ngx_exiting || ngx_quit || ngx_terminate) return;
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
    wa_zone_ctx_t* z = H.zone;
    if (owner) {
        ngx_shmtx_lock(&z->shpool->mutex);
        if (z->sh->helper_pid == ngx_pid) z->sh->helper_role = WA_HELPER_DRAINING;
        ngx_shmtx_unlock(&z->shpool->mutex);
        size_t n = 0;
        for (auto& [id, o] : H.orgs) {
            o->run(o->session.shutdown(ngx_current_msec, ngx_time()));
            n++;
        }
        ngx_log_error(NGX_LOG_NOTICE, H.log, 0, "whatsapp helper %P: %s; closed and saved %uz sessions", ngx_pid, why,
                      n);
    }
    H.orgs.clear();
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
    if (wa_doorbell_open(cycle, helper_doorbell_handler, true) != NGX_OK) return NGX_ERROR;
    init_timer(&H.lock_timer, lock_timer_handler);
    init_timer(&H.sweep_timer, sweep_handler);
    init_timer(&H.title_timer, title_handler);
    init_timer(&H.resume_timer, resume_sessions);
    if (ngx_process == NGX_PROCESS_WORKER) ngx_add_timer(&H.title_timer, 0);
    ngx_add_timer(&H.sweep_timer, 1000);

    std::string path = wa_str(H.conf->state_dir) + "/owner.lock";
    H.lock_fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (H.lock_fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno, "whatsapp helper: open(\"%s\") failed", path.c_str());
        return NGX_ERROR;
    }
    if (try_lock()) {
        activate();
        return NGX_OK;
    }
    H.role = WA_HELPER_STANDBY;
    ngx_shmtx_lock(&H.zone->shpool->mutex);
    H.zone->sh->standby_pid = ngx_pid;
    ngx_shmtx_unlock(&H.zone->shpool->mutex);
    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "whatsapp helper %P waits for the previous owner to let go", ngx_pid);
    ngx_add_timer(&H.lock_timer, 100);
    return NGX_OK;
}

void wa_helper_exit_process(ngx_cycle_t*) {
    if (H.zone == NULL) return;
    drain("exiting");
    for (WaTransport* t : g_dead) delete t;
    g_dead.clear();
}
