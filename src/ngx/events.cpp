// Live push: GET /api/events/:org and GET /api/events as server-sent events, served by the workers.
//
// The helper publishes a status record: the record's version goes up by one and it takes the zone's next change
// sequence number (and the QR's own when the QR appeared, changed or went). At the end of that event-loop pass
// the helper rings, once, every worker registered in shm as having streams open (wa_events_published): the cost
// for the helper is one datagram per such worker per pass, whatever the number of streams. The woken worker
// compares the change sequence with what it saw, copies the records that changed (one lookup per watched
// organization, or one walk for the all-organizations streams), renders each document once and writes it to
// every stream that wants it. Nothing polls: a stream costs a worker one connection, one heartbeat timer and
// its unsent bytes.
//
// Wire format: `retry: 1000` first, then per change `event: status` (and `event: qr` when the QR changed), with
// `id:` = the organization's version (the all-organizations stream: the change sequence, so that its
// Last-Event-ID resumes with only what changed since) and `data:` = the JSON of /api/status (/api/qr). A
// comment line `: heartbeat` every whatsapp_events_heartbeat. On a graceful shutdown (reload, quit) a worker ends
// its streams with the terminating chunk; EventSource reconnects to a new worker and gets the current state.
//
// The operator dashboard's stream (GET <whatsapp_dashboard location>/events) is a third kind: every organization
// as `event: org` (api::dashboard_json, with the day's sent and failed counters), following each record's
// dash_seq, which the helper also moves when those counters change (metrics.cpp) without a publish.

#include <string>
#include <unordered_map>
#include <vector>

#include "wa/api.hpp"
#include "wa/validate.hpp"
#include "wa_module.hpp"

namespace api = wa::api;

namespace {

struct Watch;

struct Stream {
    ngx_http_request_t* r;
    ngx_queue_t link;        // Watch::streams, g_all or g_dash
    Watch* watch;            // null: every organization
    bool dash;               // the operator dashboard's stream (g_dash): its own documents, counters included
    uint64_t seq;            // the zone's change sequence this stream is up to date with
    int64_t token_expires;   // unix s; 0 with an API key
    ngx_event_t timer;       // heartbeat, and the token's expiry
    ngx_chain_t* free;       // sent buffers (their memory is reused), and buffers still being sent
    ngx_chain_t* busy;
    bool attached;
    size_t max_pending;      // kMaxPending, plus the size of the first write
};

struct Watch {
    std::string org;
    ngx_queue_t streams;
    size_t n = 0;
};

std::unordered_map<std::string, Watch*> g_watches;
ngx_queue_t g_all;
ngx_queue_t g_dash;    // dashboard streams (every organization, wa_dashboard_events_start)
bool g_init;
ngx_uint_t g_count;    // this worker's open streams
uint64_t g_seen_seq;   // the change sequence of the last wake-up
int g_slot = -1;       // this worker's registration in sh->event_pids

const size_t kMaxPending = 1024 * 1024;  // unsent bytes after which a stream is dropped (a client that does not read)

void init_lists() {
    if (g_init) return;
    ngx_queue_init(&g_all);
    ngx_queue_init(&g_dash);
    g_init = true;
}

bool g_iterating;      // a walk over the streams is under way: empty watches are reaped after it

wa_zone_ctx_t* zone() { return wa_zone((ngx_cycle_t*)ngx_cycle); }

void reap_watches() {
    for (auto it = g_watches.begin(); it != g_watches.end();) {
        if (it->second->n == 0) {
            delete it->second;
            it = g_watches.erase(it);
        } else {
            ++it;
        }
    }
}

// Registers this worker's pid (and its stream count) in shm; 0 streams unregisters it. Lock held.
void set_registration(wa_zone_ctx_t* z) {
    wa_shm_t* sh = z->sh;
    if (g_slot >= 0 && sh->event_pids[g_slot] != ngx_pid) g_slot = -1;  // taken over (a stale slot was reused)
    if (g_count == 0) {
        if (g_slot >= 0) {
            sh->event_pids[g_slot] = 0;
            sh->event_streams[g_slot] = 0;
        }
        g_slot = -1;
        return;
    }
    if (g_slot < 0) {
        for (int i = 0; i < WA_EVENT_WORKERS && g_slot < 0; i++)
            if (sh->event_pids[i] == 0 || !wa_process_alive(sh->event_pids[i])) g_slot = i;
        if (g_slot < 0) return;
        sh->event_pids[g_slot] = ngx_pid;
    }
    sh->event_streams[g_slot] = static_cast<uint32_t>(g_count);
}

void registration() {
    wa_zone_ctx_t* z = zone();
    if (z == NULL) return;
    ngx_shmtx_lock(&z->shpool->mutex);
    set_registration(z);
    ngx_shmtx_unlock(&z->shpool->mutex);
}

// What a worker copies out of a record: the documents are built after the lock is released.
struct Snapshot {
    api::StatusView view;
    uint64_t version = 0, change_seq = 0, qr_seq = 0;
    uint64_t dash_seq = 0, sent_today = 0, failed_today = 0;
    bool known = false;
};

void copy_record(const wa_shm_org_t* o, Snapshot& s, bool with_qr) {
    s.known = true;
    s.version = o->version;
    s.change_seq = o->change_seq;
    s.qr_seq = o->qr_seq;
    s.dash_seq = o->dash_seq;
    if (o->today == wa_local_day(ngx_time())) {
        s.sent_today = o->sent_today;
        s.failed_today = o->failed_today;
    }
    wa_shm_org_view(o, s.view, with_qr);
}

void append_event(std::string& out, const char* name, uint64_t id, const std::string& data) {
    out += "event: ";
    out += name;
    out += "\nid: ";
    out += std::to_string(id);
    out += "\ndata: ";
    out += data;  // compact JSON: no newline inside
    out += "\n\n";
}

// The status event, and the qr event when the QR changed after change `since` (a snapshot: while there is one).
void append_status(std::string& out, const Snapshot& s, bool all) {
    int64_t now = ngx_time();
    append_event(out, "status", all ? s.change_seq : s.version,
                 all ? api::status_json_with_org(s.view, now) : api::status_json(s.view, now));
}
void append_qr(std::string& out, const Snapshot& s, bool all) {
    int64_t now = ngx_time();
    append_event(out, "qr", all ? s.change_seq : s.version, all ? api::qr_json_with_org(s.view, now) : api::qr_json(s.view, now));
}
bool wants_qr(const Snapshot& s, uint64_t since, bool snapshot) {
    return snapshot ? s.view.status.state == wa::State::QrReady : s.qr_seq > since;
}
void append_change(std::string& out, const Snapshot& s, uint64_t since, bool all, bool snapshot) {
    append_status(out, s, all);
    if (wants_qr(s, since, snapshot)) append_qr(out, s, all);
}
// The dashboard's document of one organization, `id:` = its dash_seq (a Last-Event-ID resumes after it).
void append_dash(std::string& out, const Snapshot& s) {
    append_event(out, "org", s.dash_seq, api::dashboard_json(s.view, s.sent_today, s.failed_today, ngx_time()));
}

void detach(Stream* s);
void close_stream(Stream* s, ngx_int_t rc);

void arm_timer(Stream* s) {
    auto* m = static_cast<wa_main_conf_t*>(ngx_http_get_module_main_conf(s->r, ngx_http_whatsapp_module));
    ngx_msec_t t = m->events_heartbeat;
    if (s->token_expires) {
        int64_t left = s->token_expires - ngx_time();
        ngx_msec_t until = left > 0 ? static_cast<ngx_msec_t>(left) * 1000 : 0;
        if (until < t) t = until;
    }
    ngx_add_timer(&s->timer, t);
}

// A client that stops reading gets send_timeout, as any nginx response.
void watch_send_timeout(ngx_http_request_t* r) {
    ngx_connection_t* c = r->connection;
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    if (c->buffered) {
        if (!c->write->timer_set) ngx_add_timer(c->write, clcf->send_timeout);
        ngx_handle_write_event(c->write, clcf->send_lowat);
    } else if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }
}

size_t pending_bytes(Stream* s) {
    size_t n = 0;
    for (ngx_chain_t* cl = s->busy; cl; cl = cl->next) n += ngx_buf_size(cl->buf);
    return n;
}

// Writes `data` as one flushed buffer. Buffers are malloc'ed and reused once sent, so a stream that lives for
// hours does not grow its request pool. Returns NGX_ERROR when the stream must end. The first write (the snapshot
// of every organization, which may pass kMaxPending with thousands of them) is always accepted, and the stream
// may then hold that much more unsent.
ngx_int_t write_raw(Stream* s, const std::string& data, bool first = false) {
    ngx_http_request_t* r = s->r;
    if (first) s->max_pending = kMaxPending + data.size();
    if (pending_bytes(s) + data.size() > s->max_pending) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "whatsapp: event stream dropped: the client does not read");
        return NGX_ERROR;
    }
    ngx_chain_t* cl = ngx_chain_get_free_buf(r->pool, &s->free);
    if (cl == NULL) return NGX_ERROR;
    ngx_buf_t* b = cl->buf;
    if (b->start == NULL || static_cast<size_t>(b->end - b->start) < data.size()) {
        if (b->start) ngx_free(b->start);
        size_t cap = ngx_align(data.size(), 1024);
        b->start = static_cast<u_char*>(ngx_alloc(cap, r->connection->log));
        if (b->start == NULL) {
            b->end = NULL;
            return NGX_ERROR;
        }
        b->end = b->start + cap;
    }
    b->pos = b->start;
    b->last = ngx_cpymem(b->start, data.data(), data.size());
    b->temporary = 1;
    b->flush = 1;
    b->tag = reinterpret_cast<ngx_buf_tag_t>(&ngx_http_whatsapp_module);
    cl->next = NULL;
    ngx_int_t rc = ngx_http_output_filter(r, cl);
    ngx_chain_update_chains(r->pool, &s->free, &s->busy, &cl, reinterpret_cast<ngx_buf_tag_t>(&ngx_http_whatsapp_module));
    if (rc == NGX_ERROR) return NGX_ERROR;
    watch_send_timeout(r);
    return NGX_OK;
}

// Write-side events (the client reads again, or send_timeout expired).
void stream_writer(ngx_http_request_t* r) {
    ngx_connection_t* c = r->connection;
    if (c->write->timedout) {
        c->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }
    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }
    watch_send_timeout(r);
}

// Writes to the stream; on failure ends it (the request is freed when the connection's posted requests run, so
// the caller runs them and does not touch `s` after a false). An empty `data` writes nothing.
bool send_or_end(Stream* s, const std::string& data) {
    if (!s->attached) return false;
    if (data.empty()) return true;
    if (write_raw(s, data) == NGX_OK) return true;
    close_stream(s, NGX_ERROR);
    return false;
}

void send_or_close(Stream* s, const std::string& data) {
    ngx_connection_t* c = s->r->connection;
    if (!send_or_end(s, data)) ngx_http_run_posted_requests(c);
}

void timer_handler(ngx_event_t* ev) {
    auto* s = static_cast<Stream*>(ev->data);
    ngx_connection_t* c = s->r->connection;
    if (s->token_expires && ngx_time() >= s->token_expires) {
        // The session token ran out: the stream ends (the page asks its application for a new token).
        if (send_or_end(s, "event: expired\ndata: {\"success\":false,\"code\":\"token_expired\"}\n\n"))
            close_stream(s, NGX_OK);
        ngx_http_run_posted_requests(c);
        return;
    }
    if (send_or_end(s, ": heartbeat\n\n")) arm_timer(s);
    ngx_http_run_posted_requests(c);
}

void cleanup(void* data) {
    auto* s = static_cast<Stream*>(data);
    detach(s);
    ngx_chain_t* lists[2] = {s->free, s->busy};
    for (ngx_chain_t* cl : lists) {
        for (; cl; cl = cl->next) {
            if (cl->buf->start && cl->buf->tag == reinterpret_cast<ngx_buf_tag_t>(&ngx_http_whatsapp_module)) {
                ngx_free(cl->buf->start);
                cl->buf->start = cl->buf->end = cl->buf->pos = cl->buf->last = NULL;
            }
        }
    }
    s->free = s->busy = NULL;
}

void detach(Stream* s) {
    if (!s->attached) return;
    s->attached = false;
    if (s->timer.timer_set) ngx_del_timer(&s->timer);
    ngx_queue_remove(&s->link);
    if (s->watch && --s->watch->n == 0 && !g_iterating) reap_watches();
    s->watch = NULL;
    g_count--;
    registration();
}

// Ends the stream: the terminating chunk, then the request is finalized (nginx flushes what is pending first).
void close_stream(Stream* s, ngx_int_t rc) {
    ngx_http_request_t* r = s->r;
    detach(s);
    r->keepalive = 0;  // the connection ends with the stream (EventSource opens a new one)
    if (rc == NGX_OK) rc = ngx_http_send_special(r, NGX_HTTP_LAST);
    ngx_http_finalize_request(r, rc);
}

Stream* attach(ngx_http_request_t* r, const std::string& org, int64_t token_expires, bool dash = false) {
    auto* s = static_cast<Stream*>(ngx_pcalloc(r->pool, sizeof(Stream)));
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(r->pool, 0);
    if (s == NULL || cln == NULL) return NULL;
    init_lists();
    s->r = r;
    s->token_expires = token_expires;
    s->timer.handler = timer_handler;
    s->timer.data = s;
    s->timer.log = r->connection->log;
    s->timer.cancelable = 1;
    s->dash = dash;
    if (dash) {
        ngx_queue_insert_tail(&g_dash, &s->link);
    } else if (org.empty()) {
        ngx_queue_insert_tail(&g_all, &s->link);
    } else {
        Watch*& w = g_watches[org];
        if (w == NULL) {
            w = new Watch;
            w->org = org;
            ngx_queue_init(&w->streams);
        }
        ngx_queue_insert_tail(&w->streams, &s->link);
        w->n++;
        s->watch = w;
    }
    s->attached = true;
    g_count++;
    cln->handler = cleanup;
    cln->data = s;
    return s;
}

api::Response unavailable(const char* code, const char* msg) {
    api::Response e = api::error(503, code, msg);
    e.retry_after = "1";
    return e;
}

bool parse_u64(const ngx_str_t& v, uint64_t& out) {
    if (v.len == 0 || v.len > 19) return false;
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.data[i] < '0' || v.data[i] > '9') return false;
        n = n * 10 + (v.data[i] - '0');
    }
    out = n;
    return true;
}

// Last-Event-ID, when it is a number.
bool last_event_id(ngx_http_request_t* r, uint64_t& last_id) {
    bool resume = false;
    ngx_list_part_t* part = &r->headers_in.headers.part;
    auto* h = static_cast<ngx_table_elt_t*>(part->elts);
    for (ngx_uint_t i = 0;; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) break;
            part = part->next;
            h = static_cast<ngx_table_elt_t*>(part->elts);
            i = 0;
        }
        if (h[i].key.len == 13 && ngx_strncasecmp(h[i].key.data, (u_char*)"Last-Event-ID", 13) == 0)
            resume = parse_u64(h[i].value, last_id);
    }
    return resume;
}

const ngx_int_t kHeadOnly = 1000;  // stream_head: a HEAD request, answered

// The limits every stream is checked against, then the response head. NGX_OK: go on with the stream; kHeadOnly:
// answered (HEAD); anything else is the handler's return value.
ngx_int_t stream_head(ngx_http_request_t* r, wa_main_conf_t* m) {
    if (ngx_exiting || ngx_terminate)
        return wa_send_response(r, unavailable("shutting_down", "this worker is shutting down; reconnect"));
    if (g_count >= m->events_max)
        return wa_send_response(r, unavailable("too_many_streams", "this worker holds whatsapp_events_max event streams"));
    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = -1;
    static const char* const headers[][2] = {{"Cache-Control", "no-store"}, {"X-Accel-Buffering", "no"}};
    for (const auto& kv : headers) {
        auto* e = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
        if (e == NULL) return NGX_ERROR;
        e->hash = 1;
        e->key.data = (u_char*)kv[0];
        e->key.len = ngx_strlen(kv[0]);
        e->value.data = (u_char*)kv[1];
        e->value.len = ngx_strlen(kv[1]);
    }
    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        ngx_int_t rc = ngx_http_send_header(r);
        return rc == NGX_OK ? kHeadOnly : rc;
    }
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) return rc;
    return NGX_OK;
}

// The first write (retry and the snapshot), then the stream waits for the doorbell.
ngx_int_t stream_go(ngx_http_request_t* r, Stream* s, const std::string& out) {
    if (write_raw(s, out, true) != NGX_OK) {
        detach(s);
        return NGX_ERROR;
    }
    arm_timer(s);
    r->read_event_handler = ngx_http_test_reading;  // the client leaving ends the request (499), then cleanup()
    r->write_event_handler = stream_writer;
    r->main->count++;
    return NGX_DONE;
}

}  // namespace

ngx_int_t wa_events_start(ngx_http_request_t* r, wa_main_conf_t* m, const api::Route& route, int64_t token_expires) {
    bool all = route.id == api::RouteId::EventsAll;
    if (!all && !wa::valid_org_id(route.org))
        return wa_send_response(r, api::error(400, "invalid_organization_id",
                                        "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"));
    // Last-Event-ID: the state is sent at once whatever it says; on the all-organizations stream it names the
    // change sequence to resume after (only what changed since is sent).
    uint64_t last_id = 0;
    bool resume = last_event_id(r, last_id);
    ngx_int_t rc = stream_head(r, m);
    if (rc == kHeadOnly) return NGX_OK;
    if (rc != NGX_OK) return rc;

    Stream* s = attach(r, all ? std::string() : route.org, token_expires);
    if (s == NULL) return NGX_ERROR;
    // Registered before the state is read: a publish after the read rings this worker.
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    std::vector<Snapshot> snaps;
    bool since = false;  // all-organizations stream resumed: only what changed after last_id
    ngx_shmtx_lock(&z->shpool->mutex);
    set_registration(z);
    uint64_t seq = z->sh->events_seq;
    if (all) {
        since = resume && last_id <= seq;
        if (!since) snaps.reserve(z->sh->org_count);
        for (wa_shm_org_t* o = wa_shm_org_after(z, NULL, 0); o; o = wa_shm_org_next(z, o)) {
            if (since && o->change_seq <= last_id) continue;
            snaps.emplace_back();
            copy_record(o, snaps.back(), true);
        }
    } else {
        snaps.emplace_back();
        wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(route.org.data()), route.org.size());
        if (o) copy_record(o, snaps.back(), true);
        else snaps.back().view.org = route.org;  // never seen: disconnected, version 0
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    s->seq = seq;
    if (g_count == 1) g_seen_seq = seq;

    std::string out = "retry: 1000\n\n";
    for (const Snapshot& sn : snaps) append_change(out, sn, last_id, all, !since);
    return stream_go(r, s, out);
}

// GET <dashboard>/events: `event: org` per organization (api::dashboard_json, id = its dash_seq), first every
// organization (or, with a Last-Event-ID, those that changed after it), then each change: a publish of the
// helper or a change of the day's counters. `event: ready` ends the snapshot with the number of organizations.
ngx_int_t wa_dashboard_events_start(ngx_http_request_t* r, wa_main_conf_t* m) {
    uint64_t last_id = 0;
    bool resume = last_event_id(r, last_id);
    ngx_int_t rc = stream_head(r, m);
    if (rc == kHeadOnly) return NGX_OK;
    if (rc != NGX_OK) return rc;
    Stream* s = attach(r, std::string(), 0, true);
    if (s == NULL) return NGX_ERROR;
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    std::vector<Snapshot> snaps;
    ngx_shmtx_lock(&z->shpool->mutex);
    set_registration(z);
    uint64_t seq = z->sh->events_seq;
    uint64_t total = z->sh->org_count;
    bool since = resume && last_id <= seq;
    if (!since) snaps.reserve(total);
    for (wa_shm_org_t* o = wa_shm_org_after(z, NULL, 0); o; o = wa_shm_org_next(z, o)) {
        if (since && o->dash_seq <= last_id) continue;
        snaps.emplace_back();
        copy_record(o, snaps.back(), false);
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    s->seq = seq;
    if (g_count == 1) g_seen_seq = seq;
    std::string out = "retry: 1000\n\n";
    for (const Snapshot& sn : snaps) append_dash(out, sn);
    // Its id is the zone's change sequence: a reconnect resumes with exactly what changed after the snapshot.
    out += "event: ready\nid: " + std::to_string(seq) + "\ndata: {\"organizations\":" + std::to_string(total) + "}\n\n";
    return stream_go(r, s, out);
}

void wa_events_wake() {
    if (g_count == 0) return;
    wa_zone_ctx_t* z = zone();
    if (z == NULL) return;
    // Per watched organization its record; for the all-organizations streams every record changed after the
    // oldest of them.
    uint64_t min_all = UINT64_MAX, min_dash = UINT64_MAX;
    for (ngx_queue_t* q = ngx_queue_head(&g_all); q != ngx_queue_sentinel(&g_all); q = ngx_queue_next(q)) {
        uint64_t sq = (ngx_queue_data(q, Stream, link))->seq;
        if (sq < min_all) min_all = sq;
    }
    for (ngx_queue_t* q = ngx_queue_head(&g_dash); q != ngx_queue_sentinel(&g_dash); q = ngx_queue_next(q)) {
        uint64_t sq = (ngx_queue_data(q, Stream, link))->seq;
        if (sq < min_dash) min_dash = sq;
    }
    std::vector<std::pair<Watch*, Snapshot>> changed;
    std::vector<Snapshot> all_changed, dash_changed;
    ngx_shmtx_lock(&z->shpool->mutex);
    uint64_t seq = z->sh->events_seq;
    if (seq == g_seen_seq) {
        ngx_shmtx_unlock(&z->shpool->mutex);
        return;  // the doorbell was for a command's answer
    }
    for (auto& [org, w] : g_watches) {
        wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(org.data()), org.size());
        if (o == NULL || o->change_seq <= g_seen_seq) continue;
        changed.emplace_back(w, Snapshot{});
        copy_record(o, changed.back().second, true);
    }
    if (min_all != UINT64_MAX && min_all < seq) {
        for (wa_shm_org_t* o = wa_shm_org_after(z, NULL, 0); o; o = wa_shm_org_next(z, o)) {
            if (o->change_seq <= min_all) continue;
            all_changed.emplace_back();
            copy_record(o, all_changed.back(), true);
        }
    }
    if (min_dash != UINT64_MAX && min_dash < seq) {
        for (wa_shm_org_t* o = wa_shm_org_after(z, NULL, 0); o; o = wa_shm_org_next(z, o)) {
            if (o->dash_seq <= min_dash) continue;
            dash_changed.emplace_back();
            copy_record(o, dash_changed.back(), false);
        }
    }
    g_seen_seq = seq;
    ngx_shmtx_unlock(&z->shpool->mutex);

    g_iterating = true;
    for (auto& [w, sn] : changed) {
        // Rendered once per organization; a stream that opened after this change has it already.
        std::string status, qr;
        ngx_queue_t* q = ngx_queue_head(&w->streams);
        while (q != ngx_queue_sentinel(&w->streams)) {
            Stream* s = ngx_queue_data(q, Stream, link);
            q = ngx_queue_next(q);
            if (s->seq >= sn.change_seq) continue;
            if (status.empty()) append_status(status, sn, false);
            bool with_qr = wants_qr(sn, s->seq, false);
            if (with_qr && qr.empty()) append_qr(qr, sn, false);
            s->seq = seq;
            send_or_close(s, with_qr ? status + qr : status);
        }
    }
    if (!all_changed.empty()) {
        ngx_queue_t* q = ngx_queue_head(&g_all);
        while (q != ngx_queue_sentinel(&g_all)) {
            Stream* s = ngx_queue_data(q, Stream, link);
            q = ngx_queue_next(q);
            std::string out;
            for (const Snapshot& sn : all_changed)
                if (sn.change_seq > s->seq) append_change(out, sn, s->seq, true, false);
            s->seq = seq;
            send_or_close(s, out);
        }
    }
    if (!dash_changed.empty()) {
        std::vector<std::string> docs(dash_changed.size());  // rendered once, for the first stream that wants it
        ngx_queue_t* q = ngx_queue_head(&g_dash);
        while (q != ngx_queue_sentinel(&g_dash)) {
            Stream* s = ngx_queue_data(q, Stream, link);
            q = ngx_queue_next(q);
            std::string out;
            for (size_t i = 0; i < dash_changed.size(); i++) {
                if (dash_changed[i].dash_seq <= s->seq) continue;
                if (docs[i].empty()) append_dash(docs[i], dash_changed[i]);
                out += docs[i];
            }
            s->seq = seq;
            send_or_close(s, out);
        }
    }
    g_iterating = false;
    reap_watches();
}

void wa_events_shutdown() {
    if (!g_init || g_count == 0) return;
    size_t n = g_count;
    std::vector<Stream*> all;
    for (auto& [org, w] : g_watches)
        for (ngx_queue_t* q = ngx_queue_head(&w->streams); q != ngx_queue_sentinel(&w->streams); q = ngx_queue_next(q))
            all.push_back(ngx_queue_data(q, Stream, link));
    for (ngx_queue_t* q = ngx_queue_head(&g_all); q != ngx_queue_sentinel(&g_all); q = ngx_queue_next(q))
        all.push_back(ngx_queue_data(q, Stream, link));
    for (ngx_queue_t* q = ngx_queue_head(&g_dash); q != ngx_queue_sentinel(&g_dash); q = ngx_queue_next(q))
        all.push_back(ngx_queue_data(q, Stream, link));
    g_iterating = true;
    for (Stream* s : all) {
        ngx_connection_t* c = s->r->connection;
        close_stream(s, NGX_OK);
        ngx_http_run_posted_requests(c);
    }
    g_iterating = false;
    reap_watches();
    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0, "whatsapp: shutting down: ended %uz event streams", n);
}

void wa_events_exit() {
    if (g_slot < 0) return;
    g_count = 0;
    registration();
}

uint64_t wa_events_open_total(wa_zone_ctx_t* z) {
    uint64_t n = 0;
    for (int i = 0; i < WA_EVENT_WORKERS; i++)
        if (z->sh->event_pids[i]) n += z->sh->event_streams[i];
    return n;
}

// ---------------------------------------------------------------------------------------------------------
// Helper side: one ring per registered worker at the end of the pass in which records changed.

static ngx_event_t wa_ring_ev;

static void wa_ring_handler(ngx_event_t*) {
    wa_zone_ctx_t* z = zone();
    if (z == NULL) return;
    ngx_pid_t pids[WA_EVENT_WORKERS];
    int n = 0;
    ngx_shmtx_lock(&z->shpool->mutex);
    for (int i = 0; i < WA_EVENT_WORKERS; i++)
        if (z->sh->event_pids[i]) pids[n++] = z->sh->event_pids[i];
    ngx_shmtx_unlock(&z->shpool->mutex);
    for (int i = 0; i < n; i++) {
        if (wa_doorbell_ring(z->sh, pids[i])) continue;
        // Nobody listens there (a worker that crashed): free its slot.
        ngx_shmtx_lock(&z->shpool->mutex);
        for (int j = 0; j < WA_EVENT_WORKERS; j++)
            if (z->sh->event_pids[j] == pids[i] && !wa_process_alive(pids[i])) {
                z->sh->event_pids[j] = 0;
                z->sh->event_streams[j] = 0;
            }
        ngx_shmtx_unlock(&z->shpool->mutex);
    }
}

void wa_events_published(wa_zone_ctx_t*) {
    if (wa_ring_ev.handler == NULL) {
        wa_ring_ev.handler = wa_ring_handler;
        wa_ring_ev.log = ngx_cycle->log;
        wa_ring_ev.data = &wa_ring_ev;
    }
    if (!wa_ring_ev.posted) {
        ngx_post_event(&wa_ring_ev, &ngx_posted_events);
    }
}
