// Metrics: counters kept in the shared zone (so they outlive helper restarts and reloads), and the
// `whatsapp_metrics;` location that serves them in Prometheus text format (version 0.0.4).
//
// The helper adds to an organization's counters from its sessions' statistics (wa_metrics_apply, the deltas
// since the last call), times every store commit (wa_metrics_commit) and measures its own event-loop lag with
// a 100 ms probe. A scrape copies what it needs under the zone lock with plain memcpy and formats afterwards.

#include <time.h>

#include <cstdio>
#include <string>
#include <vector>

#include "wa/api/api.hpp"
#include "wa/session.hpp"
#include "wa_module.hpp"

static_assert(WA_RECONNECT_KINDS == wa::kDisconnectKinds, "WA_RECONNECT_KINDS must follow wa::Disconnect::Kind");

// Upper bounds of the store commit histogram, in microseconds (the last bucket is +Inf).
static const uint64_t kCommitBounds[WA_COMMIT_BUCKETS - 1] = {1000,   2500,   5000,   10000,  25000, 50000,
                                                              100000, 250000, 500000, 1000000, 2500000};

uint64_t wa_monotonic_us() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

bool wa_metrics_delta_t::empty() const {
    if (sent || delivered || read || received || !failed.empty()) return false;
    for (uint64_t n : reconnects)
        if (n) return false;
    return true;
}

static void wa_metrics_fail(wa_shm_org_t* o, const std::string& code, uint64_t n) {
    auto& m = o->metrics;
    size_t len = code.size() < sizeof m.failed[0].code ? code.size() : sizeof m.failed[0].code;
    for (auto& slot : m.failed) {
        if (slot.len == len && ngx_memcmp(slot.code, code.data(), len) == 0) {
            slot.n += n;
            return;
        }
        if (slot.len == 0) {
            ngx_memcpy(slot.code, code.data(), len);
            slot.len = static_cast<uint8_t>(len);
            slot.n = n;
            return;
        }
    }
    m.failed_other += n;
}

void wa_metrics_apply(wa_zone_ctx_t* z, const std::string& org, const wa_metrics_delta_t& d) {
    if (d.empty()) return;
    uint64_t failed = 0;
    for (const auto& [code, n] : d.failed) failed += n;
    int64_t today = wa_local_day(ngx_time());
    bool dash_changed = false;
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(org.data()), org.size());
    if (o) {
        o->metrics.sent += d.sent;
        o->metrics.delivered += d.delivered;
        o->metrics.read += d.read;
        o->metrics.received += d.received;
        for (size_t i = 0; i < WA_RECONNECT_KINDS; i++) o->metrics.reconnects[i] += d.reconnects[i];
        for (const auto& [code, n] : d.failed) wa_metrics_fail(o, code, n);
        // The dashboard's "today" counters start again at local midnight; a change reaches its streams (they
        // follow dash_seq, which the API's event streams do not look at).
        if (o->today != today) {
            o->today = today;
            o->sent_today = o->failed_today = 0;
        }
        if (d.sent || failed) {
            o->sent_today += d.sent;
            o->failed_today += failed;
            o->dash_seq = ++z->sh->events_seq;
            dash_changed = true;
        }
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (dash_changed) wa_events_published(z);
}

void wa_metrics_count(wa_zone_ctx_t* z, const std::string& org, const char* what, uint64_t n) {
    wa_metrics_delta_t d;
    std::string w = what;
    if (w == "sent") d.sent = n;
    else if (w == "delivered") d.delivered = n;
    else if (w == "read") d.read = n;
    else if (w == "received") d.received = n;
    else d.failed.emplace_back(w, n);
    wa_metrics_apply(z, org, d);
}

void wa_metrics_commit(wa_zone_ctx_t* z, uint64_t us, uint64_t ckpt_background, uint64_t ckpt_inline,
                       uint64_t ckpt_restart) {
    size_t b = 0;
    while (b < WA_COMMIT_BUCKETS - 1 && us > kCommitBounds[b]) b++;
    ngx_shmtx_lock(&z->shpool->mutex);
    z->sh->checkpoints_background = ckpt_background;
    z->sh->checkpoints_inline = ckpt_inline;
    z->sh->checkpoints_restart = ckpt_restart;
    z->sh->commit_count++;
    z->sh->commit_sum_us += us;
    z->sh->commit_buckets[b]++;
    ngx_shmtx_unlock(&z->shpool->mutex);
}

void wa_metrics_webhook(wa_zone_ctx_t* z, const std::string& org, uint64_t delivered, uint64_t failed, uint64_t dead) {
    if (z == NULL) return;
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(org.data()), org.size());
    if (o) {
        o->webhooks_delivered += delivered;
        o->webhooks_failed += failed;
        o->webhooks_dead += dead;
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
}

void wa_metrics_tls_failure(wa_zone_ctx_t* z, bool host) {
    if (z == NULL) return;
    ngx_shmtx_lock(&z->shpool->mutex);
    z->sh->tls_verify_failures[host ? 1 : 0]++;
    ngx_shmtx_unlock(&z->shpool->mutex);
}

// ---------------------------------------------------------------------------------------------------------
// The helper's event-loop lag: a timer armed for 100 ms from now measures how late it runs. A pass that
// blocks the loop (a slow commit, a big batch of work) shows as lateness.

static ngx_event_t wa_lag_timer;
static uint64_t wa_lag_due_us;
static wa_zone_ctx_t* wa_lag_zone;
static const ngx_msec_t kLagProbeMs = 100;

static void wa_lag_arm() {
    wa_lag_due_us = wa_monotonic_us() + kLagProbeMs * 1000;
    ngx_add_timer(&wa_lag_timer, kLagProbeMs);
}

static void wa_lag_handler(ngx_event_t*) {
    uint64_t now = wa_monotonic_us();
    uint64_t late = now > wa_lag_due_us ? now - wa_lag_due_us : 0;
    wa_zone_ctx_t* z = wa_lag_zone;
    ngx_shmtx_lock(&z->shpool->mutex);
    z->sh->loop_lag_last_us = late;
    if (late > z->sh->loop_lag_max_us) z->sh->loop_lag_max_us = late;
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) wa_lag_arm();
}

// Local midnight: the dashboard's "today" counters of every organization that counted something start again at 0,
// and its streams are told (an open page would otherwise show yesterday's figures until the next change).
static ngx_event_t wa_midnight_timer;

static void wa_midnight_arm() {
    time_t now = ngx_time();
    time_t local = now + static_cast<time_t>(ngx_cached_time->gmtoff) * 60;
    time_t left = 86400 - local % 86400;  // seconds to the next local midnight
    ngx_add_timer(&wa_midnight_timer, static_cast<ngx_msec_t>(left) * 1000 + 500);
}

static void wa_midnight_handler(ngx_event_t*) {
    wa_zone_ctx_t* z = wa_lag_zone;
    int64_t today = wa_local_day(ngx_time());
    bool changed = false;
    ngx_shmtx_lock(&z->shpool->mutex);
    for (wa_shm_org_t* o = wa_shm_org_after(z, NULL, 0); o; o = wa_shm_org_next(z, o)) {
        if (o->today == today) continue;
        o->today = today;
        if (o->sent_today == 0 && o->failed_today == 0) continue;
        o->sent_today = o->failed_today = 0;
        o->dash_seq = ++z->sh->events_seq;
        changed = true;
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (changed) wa_events_published(z);
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) wa_midnight_arm();
}

void wa_metrics_helper_start(ngx_cycle_t* cycle) {
    wa_lag_zone = wa_zone(cycle);
    if (wa_lag_zone == NULL) return;
    ngx_shmtx_lock(&wa_lag_zone->shpool->mutex);
    wa_lag_zone->sh->loop_lag_last_us = 0;
    wa_lag_zone->sh->loop_lag_max_us = 0;  // a gauge of this helper, not of its predecessors
    ngx_shmtx_unlock(&wa_lag_zone->shpool->mutex);
    ngx_memzero(&wa_lag_timer, sizeof wa_lag_timer);
    wa_lag_timer.handler = wa_lag_handler;
    wa_lag_timer.data = &wa_lag_timer;  // never NULL: nginx's debug log reads the event's data as a connection
    wa_lag_timer.log = cycle->log;
    wa_lag_timer.cancelable = 1;  // never keeps a quitting helper alive
    wa_lag_arm();
    ngx_memzero(&wa_midnight_timer, sizeof wa_midnight_timer);
    wa_midnight_timer.handler = wa_midnight_handler;
    wa_midnight_timer.data = &wa_midnight_timer;
    wa_midnight_timer.log = cycle->log;
    wa_midnight_timer.cancelable = 1;
    wa_midnight_arm();
}

void wa_metrics_helper_stop() {
    if (wa_lag_timer.timer_set) ngx_del_timer(&wa_lag_timer);
    if (wa_midnight_timer.timer_set) ngx_del_timer(&wa_midnight_timer);
}

// ---------------------------------------------------------------------------------------------------------
// GET on a `whatsapp_metrics;` location.

namespace {

struct OrgRow {
    u_char id[WA_ID_MAX];
    size_t id_len;
    uint8_t state, wanted;
    int64_t state_since, restricted_until;
    decltype(wa_shm_org_t::metrics) m;
    uint64_t hooks_delivered, hooks_failed, hooks_dead;
};

void line(std::string& out, const char* name, const std::string& labels, double v) {
    char num[64];
    if (v == static_cast<double>(static_cast<uint64_t>(v)) && v < 1e18) snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    else snprintf(num, sizeof num, "%.6g", v);
    out += name;
    if (!labels.empty()) {
        out += '{';
        out += labels;
        out += '}';
    }
    out += ' ';
    out += num;
    out += '\n';
}

void head(std::string& out, const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

std::string org_label(const OrgRow& r) {
    return "org=\"" + std::string(reinterpret_cast<const char*>(r.id), r.id_len) + "\"";
}

}  // namespace

static std::string wa_metrics_text(wa_main_conf_t* m) {
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    std::vector<OrgRow> rows;
    ngx_shmtx_lock(&z->shpool->mutex);
    size_t n = z->sh->org_count;
    ngx_shmtx_unlock(&z->shpool->mutex);
    rows.resize(n + 64);  // reserved before taking the lock again; records created meanwhile beyond it wait a scrape
    wa_shm_t snap;
    size_t size = 0, free_bytes = 0;
    ngx_shmtx_lock(&z->shpool->mutex);
    n = 0;
    for (wa_shm_org_t* o = wa_shm_org_after(z, NULL, 0); o && n < rows.size(); o = wa_shm_org_next(z, o)) {
        OrgRow& r = rows[n++];
        r.id_len = o->sn.str.len;
        ngx_memcpy(r.id, o->id, r.id_len);
        r.state = o->state;
        r.wanted = o->wanted;
        r.state_since = o->state_since;
        r.restricted_until = o->restricted_until;
        r.m = o->metrics;
        r.hooks_delivered = o->webhooks_delivered;
        r.hooks_failed = o->webhooks_failed;
        r.hooks_dead = o->webhooks_dead;
    }
    ngx_memcpy(&snap, z->sh, sizeof snap);
    snap.pending_count = z->sh->pending_count;
    size = z->shpool->end - z->shpool->start;
    free_bytes = z->shpool->pfree * ngx_pagesize;
    uint64_t streams = wa_events_open_total(z);
    ngx_shmtx_unlock(&z->shpool->mutex);
    rows.resize(n);

    int64_t now = ngx_time();
    bool active = snap.helper_role == WA_HELPER_ACTIVE && wa_process_alive(snap.helper_pid);
    std::string out;
    out.reserve(1024 + rows.size() * 700);

    head(out, "whatsapp_helper_up", "gauge", "1 when a helper process owns the sessions.");
    line(out, "whatsapp_helper_up", "", active ? 1 : 0);
    head(out, "whatsapp_helper_uptime_seconds", "gauge", "Seconds since the active helper took ownership.");
    line(out, "whatsapp_helper_uptime_seconds", "", active && snap.helper_since ? now - snap.helper_since : 0);
    head(out, "whatsapp_helper_generation", "gauge", "Helpers that took ownership since nginx started.");
    line(out, "whatsapp_helper_generation", "", static_cast<double>(snap.generation));
    head(out, "whatsapp_event_loop_lag_seconds", "gauge", "Lateness of the helper's last 100 ms probe timer.");
    line(out, "whatsapp_event_loop_lag_seconds", "", snap.loop_lag_last_us / 1e6);
    head(out, "whatsapp_event_loop_lag_max_seconds", "gauge", "Worst lateness of the probe timer since the helper started.");
    line(out, "whatsapp_event_loop_lag_max_seconds", "", snap.loop_lag_max_us / 1e6);

    head(out, "whatsapp_store_commit_seconds", "histogram", "Duration of the helper's store commits (one per event-loop pass).");
    uint64_t cum = 0;
    for (size_t b = 0; b < WA_COMMIT_BUCKETS; b++) {
        cum += snap.commit_buckets[b];
        char le[32];
        if (b < WA_COMMIT_BUCKETS - 1) snprintf(le, sizeof le, "le=\"%g\"", kCommitBounds[b] / 1e6);
        else snprintf(le, sizeof le, "le=\"+Inf\"");
        line(out, "whatsapp_store_commit_seconds_bucket", le, static_cast<double>(cum));
    }
    line(out, "whatsapp_store_commit_seconds_sum", "", snap.commit_sum_us / 1e6);
    line(out, "whatsapp_store_commit_seconds_count", "", static_cast<double>(snap.commit_count));
    head(out, "whatsapp_store_checkpoints_total", "counter",
         "WAL checkpoints of the helper's store since it started: by its checkpoint thread, by the helper between "
         "passes to restart the WAL, or inside a commit (a stall).");
    line(out, "whatsapp_store_checkpoints_total", "by=\"thread\"", static_cast<double>(snap.checkpoints_background));
    line(out, "whatsapp_store_checkpoints_total", "by=\"between_passes\"", static_cast<double>(snap.checkpoints_restart));
    line(out, "whatsapp_store_checkpoints_total", "by=\"commit\"", static_cast<double>(snap.checkpoints_inline));

    head(out, "whatsapp_shm_size_bytes", "gauge", "Size of whatsapp_zone.");
    line(out, "whatsapp_shm_size_bytes", "", static_cast<double>(size));
    head(out, "whatsapp_shm_used_bytes", "gauge", "Bytes of whatsapp_zone in use.");
    line(out, "whatsapp_shm_used_bytes", "", static_cast<double>(size - free_bytes));
    head(out, "whatsapp_shm_free_bytes", "gauge", "Bytes of whatsapp_zone free (whole pages).");
    line(out, "whatsapp_shm_free_bytes", "", static_cast<double>(free_bytes));
    head(out, "whatsapp_command_queue_depth", "gauge", "Commands waiting for the helper.");
    line(out, "whatsapp_command_queue_depth", "", static_cast<double>(snap.pending_count));
    head(out, "whatsapp_command_queue_max", "gauge", "whatsapp_queue_size.");
    line(out, "whatsapp_command_queue_max", "", static_cast<double>(m->queue_size));
    head(out, "whatsapp_commands_total", "counter", "Commands queued for the helper.");
    line(out, "whatsapp_commands_total", "", static_cast<double>(snap.commands_total));
    head(out, "whatsapp_commands_rejected_total", "counter", "Commands refused (no helper, queue or zone full).");
    line(out, "whatsapp_commands_rejected_total", "", static_cast<double>(snap.commands_rejected));
    head(out, "whatsapp_tls_verify_failures_total", "counter",
         "Outbound TLS peers refused (the WhatsApp server, webhook receivers, media hosts): reason=\"host\" the "
         "certificate names another host, "
         "reason=\"chain\" its chain is not trusted.");
    line(out, "whatsapp_tls_verify_failures_total", "reason=\"chain\"", static_cast<double>(snap.tls_verify_failures[0]));
    line(out, "whatsapp_tls_verify_failures_total", "reason=\"host\"", static_cast<double>(snap.tls_verify_failures[1]));
    head(out, "whatsapp_event_streams", "gauge", "Open server-sent event streams, all workers.");
    line(out, "whatsapp_event_streams", "", static_cast<double>(streams));

    wa::api::StateCounts by_state{};
    for (const OrgRow& r : rows)
        if (r.state < by_state.size()) by_state[r.state]++;
    head(out, "whatsapp_organizations", "gauge", "Organizations by session state.");
    for (size_t i = 0; i < by_state.size(); i++)
        line(out, "whatsapp_organizations", std::string("state=\"") + wa::state_name(static_cast<wa::State>(i)) + "\"",
             static_cast<double>(by_state[i]));

    head(out, "whatsapp_session_state", "gauge", "The organization's session state (1 for the current state).");
    for (const OrgRow& r : rows)
        line(out, "whatsapp_session_state",
             org_label(r) + ",state=\"" + wa::state_name(static_cast<wa::State>(r.state)) + "\"", 1);
    head(out, "whatsapp_session_connected", "gauge", "1 while the organization's session is connected.");
    for (const OrgRow& r : rows)
        line(out, "whatsapp_session_connected", org_label(r), r.state == static_cast<uint8_t>(wa::State::Connected));
    head(out, "whatsapp_session_wanted", "gauge", "1 while the organization's session should run (start-session, not undone).");
    for (const OrgRow& r : rows) line(out, "whatsapp_session_wanted", org_label(r), r.wanted ? 1 : 0);
    head(out, "whatsapp_session_state_since_seconds", "gauge", "Unix time of the last state change.");
    for (const OrgRow& r : rows)
        line(out, "whatsapp_session_state_since_seconds", org_label(r), static_cast<double>(r.state_since));
    head(out, "whatsapp_session_restricted", "gauge", "1 while WhatsApp restricts the number (463, reach-out timelock).");
    for (const OrgRow& r : rows) line(out, "whatsapp_session_restricted", org_label(r), r.restricted_until > now ? 1 : 0);

    struct Counter {
        const char* name;
        const char* help;
        uint64_t (*get)(const OrgRow&);
    };
    static const Counter counters[] = {
        {"whatsapp_messages_sent_total", "Messages sent (left for WhatsApp's server).", [](const OrgRow& r) { return r.m.sent; }},
        {"whatsapp_messages_delivered_total", "Delivery receipts that advanced a sent message.", [](const OrgRow& r) { return r.m.delivered; }},
        {"whatsapp_messages_read_total", "Read or played receipts that advanced a sent message.", [](const OrgRow& r) { return r.m.read; }},
        {"whatsapp_messages_received_total", "Messages received.", [](const OrgRow& r) { return r.m.received; }},
        {"whatsapp_webhook_events_delivered_total", "Webhook deliveries acknowledged with a 2xx (one per event and URL).",
         [](const OrgRow& r) { return r.hooks_delivered; }},
        {"whatsapp_webhook_attempts_failed_total", "Webhook attempts that failed (non-2xx, timeout, refused, TLS); retried.",
         [](const OrgRow& r) { return r.hooks_failed; }},
        {"whatsapp_webhook_events_dead_total", "Webhook events parked dead (retry window over, or the URL left the config).",
         [](const OrgRow& r) { return r.hooks_dead; }},
    };
    for (const Counter& c : counters) {
        head(out, c.name, "counter", c.help);
        for (const OrgRow& r : rows) line(out, c.name, org_label(r), static_cast<double>(c.get(r)));
    }
    head(out, "whatsapp_messages_failed_total", "counter",
         "Messages that failed, by WhatsApp's error code (463, 479, ...) or the gateway's code (not_on_whatsapp, ...).");
    for (const OrgRow& r : rows) {
        for (const auto& slot : r.m.failed) {
            if (slot.len == 0) break;
            line(out, "whatsapp_messages_failed_total",
                 org_label(r) + ",code=\"" + std::string(reinterpret_cast<const char*>(slot.code), slot.len) + "\"",
                 static_cast<double>(slot.n));
        }
        if (r.m.failed_other) line(out, "whatsapp_messages_failed_total", org_label(r) + ",code=\"other\"", static_cast<double>(r.m.failed_other));
    }
    head(out, "whatsapp_reconnects_total", "counter", "Links that ended and were retried, by reason (the disconnect's kind).");
    for (const OrgRow& r : rows)
        for (size_t k = 0; k < WA_RECONNECT_KINDS; k++)
            if (r.m.reconnects[k])
                line(out, "whatsapp_reconnects_total",
                     org_label(r) + ",reason=\"" + wa::kind_name(static_cast<wa::Disconnect::Kind>(k)) + "\"",
                     static_cast<double>(r.m.reconnects[k]));
    return out;
}

ngx_int_t wa_metrics_handler(ngx_http_request_t* r) {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) return NGX_HTTP_NOT_ALLOWED;
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) return rc;
    auto* m = static_cast<wa_main_conf_t*>(ngx_http_get_module_main_conf(r, ngx_http_whatsapp_module));
    if (m->zone == NULL) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    std::string body = wa_metrics_text(m);
    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = body.size();
    if (r->method == NGX_HTTP_HEAD) r->header_only = 1;
    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;
    ngx_buf_t* b = ngx_create_temp_buf(r->pool, body.size() ? body.size() : 1);
    if (b == NULL) return NGX_ERROR;
    b->last = ngx_cpymem(b->last, body.data(), body.size());
    b->last_buf = 1;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, NULL};
    return ngx_http_output_filter(r, &out);
}
