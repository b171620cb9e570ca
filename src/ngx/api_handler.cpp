// The HTTP API in the nginx workers. Reads (status, QR, connections, health) come straight from shared
// memory; commands (start, send, logout, clear) are queued for the helper and the request is suspended
// until the helper rings this worker's doorbell, or its timer answers 504. Nothing here blocks.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <string>
#include <vector>

#include <jansson.h>

#include "media_download.hpp"
#include "wa/api/api.hpp"
#include "wa/codec/hex.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/api/session_token.hpp"
#include "wa/api/validate.hpp"
#include "wa_module.hpp"

namespace api = wa::api;

struct wa_req_ctx_t {
    ngx_http_request_t* r;
    wa_shm_cmd_t* cmd;
    ngx_event_t timer;
    ngx_queue_t link;  // wa_waiting
    bool waiting;
};

static ngx_queue_t wa_waiting;  // this worker's suspended requests
static bool wa_waiting_init;

// Per request, in every API location.
struct wa_http_ctx_t {
    api::RouteId route;     // for the body handler
    size_t max_body;        // the body limit (0: whatsapp_max_body)
    bool answered;          // the response is the module's own
    bool replacing;         // an error nginx raised is being answered with the contract's JSON instead
    bool replacement_sent;
    ngx_str_t replacement;
};

static wa_http_ctx_t* wa_ctx(ngx_http_request_t* r) {
    auto* ctx = static_cast<wa_http_ctx_t*>(ngx_http_get_module_ctx(r, ngx_http_whatsapp_module));
    if (ctx) return ctx;
    ctx = static_cast<wa_http_ctx_t*>(ngx_pcalloc(r->pool, sizeof(wa_http_ctx_t)));
    if (ctx) ngx_http_set_ctx(r, ctx, ngx_http_whatsapp_module);
    return ctx;
}

// Sends `b` (the whole body) with the module's headers.
static ngx_int_t wa_send_buf(ngx_http_request_t* r, ngx_uint_t status, ngx_buf_t* b, const api::Response* extra) {
    if (wa_http_ctx_t* ctx = wa_ctx(r)) ctx->answered = true;
    r->headers_out.status = status;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = b->last - b->pos;
    auto add_header = [r](const char* name, size_t name_len, const u_char* value, size_t len) {
        ngx_table_elt_t* h = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
        if (h == NULL) return;
        h->hash = 1;
        h->key.data = (u_char*)name;
        h->key.len = name_len;
        h->value.len = len;
        h->value.data = static_cast<u_char*>(ngx_pnalloc(r->pool, len));
        if (h->value.data) ngx_memcpy(h->value.data, value, len);
    };
    auto add = [&](const char* name, const std::string& v) {
        add_header(name, ngx_strlen(name), reinterpret_cast<const u_char*>(v.data()), v.size());
    };
    if (extra && !extra->retry_after.empty()) add("Retry-After", extra->retry_after);
    if (extra && !extra->allow.empty()) add("Allow", extra->allow);
    add_header("Cache-Control", sizeof("Cache-Control") - 1, (const u_char*)"no-store", sizeof("no-store") - 1);
    if (r->method == NGX_HTTP_HEAD) r->header_only = 1;
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, NULL};
    return ngx_http_output_filter(r, &out);
}

static ngx_int_t wa_send(ngx_http_request_t* r, const api::Response& resp) {
    ngx_buf_t* b = ngx_create_temp_buf(r->pool, resp.body.size() + 1);
    if (b == NULL) return NGX_ERROR;
    b->last = ngx_cpymem(b->last, resp.body.data(), resp.body.size());
    *b->last++ = '\n';
    return wa_send_buf(r, resp.status, b, &resp);
}

ngx_int_t wa_send_response(ngx_http_request_t* r, const api::Response& resp) { return wa_send(r, resp); }

static api::Response wa_ok(std::string body) { return api::Response{200, std::move(body), {}, {}}; }

// The first header called `name`; `count`, when given, receives how many there are.
static ngx_table_elt_t* wa_find_header(ngx_http_request_t* r, const char* name, ngx_uint_t* count = NULL) {
    size_t n = ngx_strlen(name);
    ngx_table_elt_t* first = NULL;
    ngx_uint_t found = 0;
    ngx_list_part_t* part = &r->headers_in.headers.part;
    auto* h = static_cast<ngx_table_elt_t*>(part->elts);
    for (ngx_uint_t i = 0;; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) break;
            part = part->next;
            h = static_cast<ngx_table_elt_t*>(part->elts);
            i = 0;
        }
        if (h[i].key.len != n || ngx_strncasecmp(h[i].key.data, (u_char*)name, n) != 0) continue;
        if (first == NULL) first = &h[i];
        found++;
        if (count == NULL) break;
    }
    if (count) *count = found;
    return first;
}

// Exactly one X-API-Key, equal to a configured key. Several headers are refused: which one decides would
// depend on proxies in between. Digests are compared (wa::key_matches), so the time taken reveals neither
// the configured keys nor their lengths.
static bool wa_authorized(ngx_http_request_t* r, wa_main_conf_t* m) {
    ngx_uint_t n = 0;
    ngx_table_elt_t* h = wa_find_header(r, "X-API-Key", &n);
    if (n != 1 || m->api_keys == NULL) return false;
    wa::KeyDigest given = wa::key_digest(std::string_view(reinterpret_cast<const char*>(h->value.data), h->value.len));
    return wa::key_matches(given, static_cast<wa::KeyDigest*>(m->api_keys->elts), m->api_keys->nelts);
}

// The organization's session token from the cookie wa_token (never the query string): its expiry, or 0 when no
// valid one was sent. Tokens are never logged, whatever is wrong with them.
static int64_t wa_token_expiry(ngx_http_request_t* r, wa_main_conf_t* m, const std::string& org) {
    namespace st = wa::session_token;
    std::vector<std::string_view> values;
    ngx_list_part_t* part = &r->headers_in.headers.part;
    auto* h = static_cast<ngx_table_elt_t*>(part->elts);
    for (ngx_uint_t i = 0;; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) break;
            part = part->next;
            h = static_cast<ngx_table_elt_t*>(part->elts);
            i = 0;
        }
        if (h[i].key.len == 6 && ngx_strncasecmp(h[i].key.data, (u_char*)"Cookie", 6) == 0)
            st::cookie_values(std::string_view(reinterpret_cast<const char*>(h[i].value.data), h[i].value.len),
                              st::kCookie, values);
    }
    if (values.empty() || !wa::valid_org_id(org)) return 0;
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    const uint8_t(&key)[st::kKeySize] = z->sh->token_key;  // written once, when the zone was made
    for (size_t i = 0; i < values.size() && i < 4; i++) {
        int64_t exp = 0;
        if (st::verify(key, values[i], org, ngx_time(), &exp) == st::Check::Ok) return exp;
    }
    return 0;
}

// POST /api/session-token (API key): minted here, in the worker, with the zone's key.
static api::Response wa_session_token(wa_main_conf_t* m, const std::string& body) {
    namespace st = wa::session_token;
    std::string org;
    int64_t ttl = 0;
    api::Response err;
    if (!st::parse_request(body, org, ttl, err)) return err;
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    const uint8_t(&key)[st::kKeySize] = z->sh->token_key;
    int64_t exp = ngx_time() + ttl;
    return wa_ok(st::response_json(st::mint(key, org, exp), org, exp, ttl));
}


// GET /api/status/:org and /api/qr/:org, the routes read thousands of times per change: the helper rendered the
// document when the record changed; the worker copies it under the zone lock (memcpy into the request's pool)
// and writes the clock-dependent end itself. NGX_DECLINED when there is no rendered document (the zone had no
// room for it): the caller builds the answer from the record's fields instead.
static ngx_int_t wa_send_doc(ngx_http_request_t* r, wa_main_conf_t* m, std::string_view org, bool qr) {
    static std::string unknown_status, no_qr[api::kStateCount];  // documents that never change
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    ngx_buf_t* b = NULL;
    int64_t next_retry_at = 0, restricted_until = 0, qr_expires_at = 0;
    uint8_t state = 0;
    bool known = false, rendered = false;
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(org.data()), org.size());
    if (o) {
        known = true;
        state = o->state;
        const u_char* doc = qr ? o->qr_doc : o->status_doc;
        size_t len = qr ? o->qr_doc_len : o->status_doc_len;
        rendered = o->status_doc != NULL;
        if (doc) b = ngx_create_temp_buf(r->pool, len + (qr ? api::kQrTailMax : api::kStatusTailMax) + 1);
        if (b) {
            b->last = ngx_cpymem(b->last, doc, len);
            next_retry_at = o->next_retry_at;
            restricted_until = o->restricted_until;
            qr_expires_at = o->qr_expires_at;
        }
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (b) {
        char* tail = reinterpret_cast<char*>(b->last);
        b->last += qr ? api::qr_json_tail(tail, qr_expires_at, ngx_time())
                      : api::status_json_tail(tail, next_retry_at, restricted_until, ngx_time());
        *b->last++ = '\n';
        return wa_send_buf(r, 200, b, NULL);
    }
    // A record without its documents (the zone had no room for them), or a QR without its document.
    if (known && (!rendered || !qr || state == static_cast<uint8_t>(wa::State::QrReady))) return NGX_DECLINED;
    // Never seen, or no QR shown: a document that depends on the state alone.
    const std::string* body;
    if (!known && !qr) {
        if (unknown_status.empty()) unknown_status = api::status_json(api::StatusView{}, 0) + "\n";
        body = &unknown_status;
    } else {
        if (state >= api::kStateCount) return NGX_DECLINED;
        std::string& doc = no_qr[state];
        if (doc.empty()) {
            api::StatusView v;
            v.status.state = static_cast<wa::State>(state);
            doc = api::qr_json(v, 0) + "\n";
        }
        body = &doc;
    }
    b = static_cast<ngx_buf_t*>(ngx_calloc_buf(r->pool));
    if (b == NULL) return NGX_ERROR;
    b->pos = reinterpret_cast<u_char*>(const_cast<char*>(body->data()));
    b->last = b->pos + body->size();
    b->memory = 1;
    return wa_send_buf(r, 200, b, NULL);
}

// The organization id of /api/status/:org or /api/qr/:org exactly as api::match would route it, for the fast
// path above; false for anything else (which takes the general path).
static bool wa_doc_route(ngx_http_request_t* r, wa_loc_conf_t* l, std::string_view& org, bool& qr) {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) return false;
    std::string_view uri(reinterpret_cast<const char*>(r->uri.data), r->uri.len);
    std::string_view prefix(reinterpret_cast<const char*>(l->prefix.data), l->prefix.len);
    if (uri.substr(0, prefix.size()) != prefix) return false;
    uri.remove_prefix(prefix.size());
    static constexpr std::string_view kStatus = "/api/status/", kQr = "/api/qr/";
    if (uri.substr(0, kStatus.size()) == kStatus) {
        org = uri.substr(kStatus.size());
        qr = false;
    } else if (uri.substr(0, kQr.size()) == kQr) {
        org = uri.substr(kQr.size());
        qr = true;
    } else {
        return false;
    }
    return wa::valid_org_id(org);
}

static api::Response wa_read_org(wa_main_conf_t* m, const api::Route& route) {
    if (!wa::valid_org_id(route.org))
        return api::error(400, "invalid_organization_id",
                          "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'");
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    api::StatusView v;
    v.org = route.org;
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_shm_org_t* o = wa_shm_org_find(z, reinterpret_cast<const u_char*>(route.org.data()), route.org.size());
    if (o) wa_shm_org_view(o, v, route.id != api::RouteId::Message);
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (route.id == api::RouteId::Status) return wa_ok(api::status_json(v, ngx_time()));
    if (route.id == api::RouteId::Qr) return wa_ok(api::qr_json(v, ngx_time()));
    // No message has been sent through this build yet (messaging comes with the Signal layer), so no
    // message id is known.
    return api::error(404, "not_found", "unknown message id");
}

// What one /api/connections item shows, as plain bytes: copied under the zone mutex into memory reserved
// before taking it, so that the lock is held for memcpy only (no allocation, no JSON) and status reads in
// other workers do not wait behind a listing.
struct wa_conn_row_t {
    u_char id[WA_ID_MAX];
    size_t id_len;
    uint8_t state;
    uint32_t retry_count;
    int64_t connected_at, state_since, next_retry_at;
    u_char phone[24];
    uint16_t phone_len, last_error_len;
    u_char last_error[WA_ERR_MAX];
};

static void wa_copy_row(const wa_shm_org_t* o, wa_conn_row_t& row) {
    row.id_len = o->sn.str.len;
    ngx_memcpy(row.id, o->id, row.id_len);
    row.state = o->state;
    row.retry_count = o->retry_count;
    row.connected_at = o->connected_at;
    row.state_since = o->state_since;
    row.next_retry_at = o->next_retry_at;
    row.phone_len = o->phone_len;
    ngx_memcpy(row.phone, o->phone, o->phone_len);
    row.last_error_len = static_cast<uint16_t>(o->last_error ? o->last_error_len : 0);
    if (row.last_error_len) ngx_memcpy(row.last_error, o->last_error, row.last_error_len);
}

static api::StatusView wa_row_view(const wa_conn_row_t& row) {
    api::StatusView v;
    v.org.assign(reinterpret_cast<const char*>(row.id), row.id_len);
    v.status.state = static_cast<wa::State>(row.state);
    v.status.retry_count = row.retry_count;
    v.status.connected_at = row.connected_at;
    v.status.state_since = row.state_since;
    v.status.next_retry_at = row.next_retry_at;
    v.status.phone.assign(reinterpret_cast<const char*>(row.phone), row.phone_len);
    v.status.last_error.assign(reinterpret_cast<const char*>(row.last_error), row.last_error_len);
    return v;
}

static api::Response wa_read_connections(ngx_http_request_t* r, wa_main_conf_t* m) {
    api::PageQuery q;
    api::Response err;
    if (!api::parse_page_query(std::string_view(reinterpret_cast<const char*>(r->args.data), r->args.len), q, err))
        return err;
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    std::vector<wa_conn_row_t> rows(q.limit);
    size_t n = 0;
    bool more = false;
    ngx_shmtx_lock(&z->shpool->mutex);
    uint64_t total = z->sh->org_count;
    wa_shm_org_t* o = wa_shm_org_after(z, reinterpret_cast<const u_char*>(q.cursor.data()), q.cursor.size());
    for (; o && n < q.limit; o = wa_shm_org_next(z, o)) wa_copy_row(o, rows[n++]);
    more = o != NULL;
    ngx_shmtx_unlock(&z->shpool->mutex);
    std::vector<api::StatusView> items;
    items.reserve(n);
    for (size_t i = 0; i < n; i++) items.push_back(wa_row_view(rows[i]));
    std::string next = more && n ? items.back().org : std::string();
    return wa_ok(api::connections_json(items, next, total, ngx_time()));
}

static api::Response wa_read_health(wa_main_conf_t* m) {
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    api::HelperInfo h;
    api::ZoneUse zu;
    api::StateCounts sessions{};
    ngx_shmtx_lock(&z->shpool->mutex);
    for (ngx_queue_t* q = ngx_queue_head(&z->sh->orgs); q != ngx_queue_sentinel(&z->sh->orgs); q = ngx_queue_next(q)) {
        uint8_t st = (ngx_queue_data(q, wa_shm_org_t, link))->state;
        if (st < sessions.size()) sessions[st]++;
    }
    h.pid = z->sh->helper_pid;
    h.started_at = z->sh->helper_since;
    h.generation = z->sh->generation;
    if (z->sh->helper_since) h.loop_lag_max_ms = static_cast<int64_t>(z->sh->loop_lag_max_us / 1000);
    uint8_t role = z->sh->helper_role;
    h.reason.assign(reinterpret_cast<const char*>(z->sh->reason), z->sh->reason_len);
    zu.queue_len = z->sh->pending_count;
    zu.organizations = z->sh->org_count;
    zu.size = z->shpool->end - z->shpool->start;
    zu.used = zu.size - z->shpool->pfree * ngx_pagesize;
    ngx_shmtx_unlock(&z->shpool->mutex);
    zu.queue_max = m->queue_size;
    h.active = role == WA_HELPER_ACTIVE && wa_process_alive(static_cast<ngx_pid_t>(h.pid));
    static const char* const roles[] = {"none", "standby", "active", "draining"};
    h.role = h.active || role != WA_HELPER_ACTIVE ? roles[role & 3] : "none";
    api::SessionLimits limits;
    limits.max_sessions = m->max_sessions;
    limits.configured = m->max_sessions_set;
    limits.worker_connections = m->worker_connections;
    limits.open_files = m->open_files;
    return wa_ok(api::api_health_json(h, sessions, zu, limits, ngx_time()));
}

static api::Response wa_read_route(ngx_http_request_t* r, wa_main_conf_t* m, const api::Route& route) {
    if (route.id == api::RouteId::Connections) return wa_read_connections(r, m);
    if (route.id == api::RouteId::ApiHealth) return wa_read_health(m);
    return wa_read_org(m, route);
}

// GET /api/messages/:org/:id/media: the bytes of a received document or image, as the helper stored them
// (media_download.cpp: <state_dir>/media/<org>/<sha256(id)> and its .json), sent from the file (sendfile).
static ngx_int_t wa_serve_media(ngx_http_request_t* r, wa_main_conf_t* m, const api::Route& route) {
    if (!wa::valid_org_id(route.org))
        return wa_send(r, api::error(400, "invalid_organization_id",
                                     "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"));
    if (route.message_id.empty() || route.message_id.size() > 128)
        return wa_send(r, api::error(400, "invalid_parameter", "message id must be 1-128 bytes"));
    std::string base = wa_str(m->state_dir) + "/media/" + route.org + "/" + wa_media_name(route.message_id);
    auto not_found = [&] { return wa_send(r, api::error(404, "not_found", "no stored media for that message")); };
    // The description: mimetype (what the sender declared; sent as the Content-Type) and the file name.
    json_t* meta = json_load_file((base + ".json").c_str(), 0, nullptr);
    if (meta == NULL) return not_found();
    std::string mime = json_string_value(json_object_get(meta, "mimetype")) ? json_string_value(json_object_get(meta, "mimetype")) : "";
    std::string fname = json_string_value(json_object_get(meta, "filename")) ? json_string_value(json_object_get(meta, "filename")) : "";
    json_decref(meta);
    bool mime_ok = !mime.empty() && mime.size() <= 127;
    for (char c : mime) if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || static_cast<unsigned char>(c) > 0x7e) mime_ok = false;
    if (!mime_ok) mime = "application/octet-stream";
    ngx_open_file_info_t of;
    ngx_memzero(&of, sizeof(of));
    auto* clcf = static_cast<ngx_http_core_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    of.directio = NGX_OPEN_FILE_DIRECTIO_OFF;
    of.read_ahead = clcf->read_ahead;
    of.valid = 0;
    of.min_uses = 0;
    of.errors = 1;
    of.events = 0;
    ngx_str_t path;
    path.len = base.size();
    path.data = static_cast<u_char*>(ngx_pnalloc(r->pool, base.size() + 1));
    if (path.data == NULL) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ngx_memcpy(path.data, base.c_str(), base.size() + 1);
    if (ngx_open_cached_file(NULL, &path, &of, r->pool) != NGX_OK || !of.is_file) return not_found();
    if (wa_http_ctx_t* ctx = wa_ctx(r)) ctx->answered = true;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = of.size;
    r->headers_out.last_modified_time = of.mtime;
    r->headers_out.content_type.len = mime.size();
    r->headers_out.content_type.data = static_cast<u_char*>(ngx_pnalloc(r->pool, mime.size()));
    if (r->headers_out.content_type.data == NULL) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ngx_memcpy(r->headers_out.content_type.data, mime.data(), mime.size());
    r->headers_out.content_type_len = mime.size();
    auto add_header = [r](const char* name, const std::string& value) {
        ngx_table_elt_t* h = static_cast<ngx_table_elt_t*>(ngx_list_push(&r->headers_out.headers));
        if (h == NULL) return;
        h->hash = 1;
        h->key.data = (u_char*)name;
        h->key.len = ngx_strlen(name);
        h->value.len = value.size();
        h->value.data = static_cast<u_char*>(ngx_pnalloc(r->pool, value.size()));
        if (h->value.data) ngx_memcpy(h->value.data, value.data(), value.size());
    };
    add_header("Cache-Control", "no-store");
    add_header("X-Content-Type-Options", "nosniff");
    // The sender's file name, ASCII letters, digits and ._- only (RFC 6266 without the encoding games).
    std::string safe;
    for (char c : fname) safe += (isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') ? c : '_';
    add_header("Content-Disposition", safe.empty() ? std::string("attachment") : "attachment; filename=\"" + safe + "\"");
    if (r->method == NGX_HTTP_HEAD) r->header_only = 1;
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || of.size == 0) return rc;
    ngx_buf_t* b = static_cast<ngx_buf_t*>(ngx_calloc_buf(r->pool));
    if (b == NULL) return NGX_ERROR;
    b->file = static_cast<ngx_file_t*>(ngx_pcalloc(r->pool, sizeof(ngx_file_t)));
    if (b->file == NULL) return NGX_ERROR;
    b->file_pos = 0;
    b->file_last = of.size;
    b->in_file = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    b->file->fd = of.fd;
    b->file->name = path;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;
    ngx_chain_t out = {b, NULL};
    return ngx_http_output_filter(r, &out);
}

static void wa_finish(wa_req_ctx_t* ctx, const api::Response& resp) {
    ngx_http_request_t* r = ctx->r;
    ngx_connection_t* c = r->connection;
    if (ctx->waiting) {
        ngx_queue_remove(&ctx->link);
        ctx->waiting = false;
    }
    if (ctx->timer.timer_set) ngx_del_timer(&ctx->timer);
    ngx_http_finalize_request(r, wa_send(r, resp));
    ngx_http_run_posted_requests(c);
}

// Whoever sees the command last frees it: a NEW or DONE command is ours to free; a TAKEN one belongs to the
// helper until it completes, so it is only marked.
static void wa_release_cmd(wa_zone_ctx_t* z, wa_req_ctx_t* ctx) {
    if (ctx->cmd == NULL) return;
    ngx_shmtx_lock(&z->shpool->mutex);
    if (ctx->cmd->state == WA_CMD_TAKEN) ctx->cmd->abandoned = 1;
    else wa_shm_cmd_free(z, ctx->cmd);
    ngx_shmtx_unlock(&z->shpool->mutex);
    ctx->cmd = NULL;
}

static void wa_req_cleanup(void* data) {
    auto* ctx = static_cast<wa_req_ctx_t*>(data);
    if (ctx->waiting) {
        ngx_queue_remove(&ctx->link);
        ctx->waiting = false;
    }
    if (ctx->timer.timer_set) ngx_del_timer(&ctx->timer);
    wa_release_cmd(wa_zone((ngx_cycle_t*)ngx_cycle), ctx);
}

static void wa_req_timeout(ngx_event_t* ev) {
    auto* ctx = static_cast<wa_req_ctx_t*>(ev->data);
    wa_zone_ctx_t* z = wa_zone((ngx_cycle_t*)ngx_cycle);
    std::string id;
    if (ctx->cmd) {
        ngx_shmtx_lock(&z->shpool->mutex);
        id.assign(reinterpret_cast<const char*>(ctx->cmd->partial), ctx->cmd->partial_len);
        ngx_shmtx_unlock(&z->shpool->mutex);
    }
    wa_release_cmd(z, ctx);
    // A send whose message id already exists returns it with the 504: the message may still go out, and its
    // status is at GET /api/messages/:org/:id.
    wa_finish(ctx, id.empty() ? api::error(504, "timeout", "no answer from WhatsApp in time")
                              : api::error_with_id(504, "timeout", "no answer from WhatsApp in time", id));
}

void wa_worker_doorbell_handler(ngx_event_t* ev) {
    auto* dc = static_cast<ngx_connection_t*>(ev->data);
    if (dc->close) {
        // Graceful shutdown (reload, quit): ngx_close_idle_connections() marks the doorbell and calls this once.
        // It stays open for the answers of suspended commands; event streams end so that clients reconnect.
        dc->close = 0;
        dc->idle = 0;
    }
    wa_doorbell_drain(dc);
    if (ngx_exiting) wa_events_shutdown();
    else wa_events_wake();
    if (!wa_waiting_init) return;
    wa_zone_ctx_t* z = wa_zone((ngx_cycle_t*)ngx_cycle);
    ngx_queue_t* q = ngx_queue_head(&wa_waiting);
    while (q != ngx_queue_sentinel(&wa_waiting)) {
        auto* ctx = ngx_queue_data(q, wa_req_ctx_t, link);
        q = ngx_queue_next(q);
        api::Response resp;
        bool done = false;
        ngx_shmtx_lock(&z->shpool->mutex);
        if (ctx->cmd && ctx->cmd->state == WA_CMD_DONE) {
            resp.status = ctx->cmd->http_status;
            resp.body.assign(reinterpret_cast<const char*>(ctx->cmd->resp), ctx->cmd->resp_len);
            if (ctx->cmd->retry_after) resp.retry_after = std::to_string(ctx->cmd->retry_after);
            wa_shm_cmd_free(z, ctx->cmd);
            ctx->cmd = NULL;
            done = true;
        }
        ngx_shmtx_unlock(&z->shpool->mutex);
        if (done) wa_finish(ctx, resp);
    }
}

static api::Response wa_unavailable(const char* code, const char* msg) {
    api::Response r = api::error(503, code, msg);
    r.retry_after = "1";
    return r;
}

// On a reload the master starts the new helper and, 100 ms later, tells the old one to quit. On a loaded
// machine the old one may let go before the new one has said it is waiting: for that moment nobody is alive
// to name, yet the next owner is on its way. Commands are queued for it (it takes the queue when it becomes
// the owner) rather than refused with 503. A release long ago with nobody since really means no helper.
static bool wa_handover(wa_shm_t* sh) {
    // signed: this worker's cached clock may be a little behind the helper's
    return sh->clean_release && sh->helper_role == WA_HELPER_NONE &&
           static_cast<ngx_msec_int_t>(ngx_current_msec - sh->released_at) < 2000;
}

// Queues the command and suspends the request. Returns false with `err` when it cannot be queued.
static bool wa_submit(ngx_http_request_t* r, wa_main_conf_t* m, const api::Command& cmd, api::Response& err) {
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    std::string json = api::command_to_json(cmd);
    ngx_msec_t timeout = cmd.type == api::Command::Send ? m->send_timeout : m->command_timeout;

    auto* ctx = static_cast<wa_req_ctx_t*>(ngx_pcalloc(r->pool, sizeof(wa_req_ctx_t)));
    ngx_pool_cleanup_t* cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ctx == NULL || cln == NULL) {
        err = api::error(500, "internal_error", "out of memory");
        return false;
    }
    ctx->r = r;
    ngx_shmtx_lock(&z->shpool->mutex);
    ngx_pid_t active = z->sh->helper_pid, standby = z->sh->standby_pid;
    bool full = z->sh->pending_count >= m->queue_size;
    wa_shm_cmd_t* c = NULL;
    if (!full) {
        c = static_cast<wa_shm_cmd_t*>(ngx_slab_calloc_locked(z->shpool, sizeof(wa_shm_cmd_t)));
        if (c && !wa_shm_set_bytes(z, &c->req, &c->req_len, json)) {
            ngx_slab_free_locked(z->shpool, c);
            c = NULL;
        }
    }
    bool alive = wa_process_alive(active) || wa_process_alive(standby) || wa_handover(z->sh);
    std::string reason(reinterpret_cast<const char*>(z->sh->reason), alive ? 0 : z->sh->reason_len);
    if (c && alive) {
        c->id = z->sh->next_cmd_id++;
        c->state = WA_CMD_NEW;
        c->requester = ngx_pid;
        c->expires_at = ngx_time() + timeout / 1000 + 30;
        ngx_queue_insert_tail(&z->sh->pending, &c->link);
        z->sh->pending_count++;
        z->sh->commands_total++;
    } else {
        if (c) {
            ngx_slab_free_locked(z->shpool, c->req);
            ngx_slab_free_locked(z->shpool, c);
            c = NULL;
        }
        z->sh->commands_rejected++;
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    if (!alive) {
        err = wa_unavailable("helper_unavailable", reason.empty()
                                                       ? "the WhatsApp helper process is not running; retry shortly"
                                                       : ("no WhatsApp helper owns the sessions: " + reason).c_str());
        return false;
    }
    if (c == NULL) {
        err = full ? wa_unavailable("queue_full", "too many commands are waiting for the WhatsApp helper")
                   : wa_unavailable("zone_full", "whatsapp_zone is out of memory");
        return false;
    }
    ctx->cmd = c;
    cln->handler = wa_req_cleanup;
    cln->data = ctx;
    ctx->timer.handler = wa_req_timeout;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;
    ngx_add_timer(&ctx->timer, timeout);
    if (!wa_waiting_init) {
        ngx_queue_init(&wa_waiting);
        wa_waiting_init = true;
    }
    ngx_queue_insert_tail(&wa_waiting, &ctx->link);
    ctx->waiting = true;
    // A client that goes away finalizes the request (499); the pool cleanup then releases the command.
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
    bool rang = wa_doorbell_ring(z->sh, active);
    if (standby != active) rang = wa_doorbell_ring(z->sh, standby) || rang;
    if (!rang) ngx_log_error(NGX_LOG_INFO, r->connection->log, 0, "whatsapp: helper doorbell not answering; queued");
    return true;
}

// GET routes the helper answers (message status and lists from its store, contact lookups on WhatsApp): the
// request is suspended like a POST's.
static ngx_int_t wa_helper_read(ngx_http_request_t* r, wa_main_conf_t* m, const api::Route& route) {
    api::Command cmd;
    api::Response err;
    std::string_view args(reinterpret_cast<const char*>(r->args.data), r->args.len);
    if (!api::read_command(route, args, wa_str(m->default_region), cmd, err) || !wa_submit(r, m, cmd, err))
        return wa_send(r, err);
    r->main->count++;
    return NGX_DONE;
}

// Reads the whole body into one string (it may be in memory buffers or, past client_body_buffer_size, in a
// temporary file).
static bool wa_body_string(ngx_http_request_t* r, std::string& out, size_t max) {
    if (r->request_body == NULL) return true;
    for (ngx_chain_t* cl = r->request_body->bufs; cl; cl = cl->next) {
        ngx_buf_t* b = cl->buf;
        if (b->in_file) {
            off_t len = b->file_last - b->file_pos;
            if (out.size() + len > max) return false;
            std::string chunk(static_cast<size_t>(len), '\0');
            ssize_t n = ngx_read_file(b->file, reinterpret_cast<u_char*>(&chunk[0]), len, b->file_pos);
            if (n != len) return false;
            out += chunk;
        } else {
            size_t len = b->last - b->pos;
            if (out.size() + len > max) return false;
            out.append(reinterpret_cast<const char*>(b->pos), len);
        }
    }
    return true;
}

// whatsapp_send_rate, per organization, shared by every worker. Runs for every send whose organization id
// is valid, whatever the rest of it says and whether or not the organization runs.
static bool wa_send_rate_allows(wa_main_conf_t* m, const std::string& org, api::Response& err) {
    wa::RateLimit limit{static_cast<double>(m->send_rate_per_min), static_cast<double>(m->send_burst)};
    uint64_t wait_ms = 0;
    wa_zone_ctx_t* z = static_cast<wa_zone_ctx_t*>(m->zone->data);
    switch (wa_shm_rate_take(z, limit, org, ngx_current_msec, &wait_ms)) {
    case wa_rate_result::allowed:
        return true;
    case wa_rate_result::limited:
        err = api::error(429, "rate_limited", "send rate of this organization exceeded (whatsapp_send_rate)");
        err.retry_after = std::to_string(wait_ms < 1000 ? 1 : (wait_ms + 999) / 1000);
        return false;
    case wa_rate_result::no_memory:
        break;
    }
    err = wa_unavailable("zone_full", "whatsapp_zone is out of memory");
    return false;
}

// A send-media's file, written to <state_dir>/spool/<32 hex> as it is decoded: 0600, created exclusively on the
// first bytes, under a ".part" name renamed when complete (the helper never sees half a file), hashed on the way.
class WaSpoolWriter {
public:
    WaSpoolWriter(ngx_http_request_t* r, wa_main_conf_t* m)
        : log_(r->connection->log), dir_(wa_str(m->state_dir) + "/" WA_SPOOL_DIR), sha_(EVP_MD_CTX_new()) {}
    ~WaSpoolWriter() {
        if (fd_ >= 0) close(fd_);
        if (!part_.empty()) unlink(part_.c_str());
        EVP_MD_CTX_free(sha_);
    }
    WaSpoolWriter(const WaSpoolWriter&) = delete;
    WaSpoolWriter& operator=(const WaSpoolWriter&) = delete;

    bool write(std::string_view bytes) {
        if (fd_ < 0 && !open_part()) return false;
        if (EVP_DigestUpdate(sha_, bytes.data(), bytes.size()) != 1) return false;
        if (wa_write_all(fd_, bytes)) return true;
        ngx_log_error(NGX_LOG_ERR, log_, ngx_errno, "whatsapp: cannot write spool file %s", part_.c_str());
        return false;
    }
    // The file under its final name; its name and SHA-256 (hex). False: nothing is left behind.
    bool commit(std::string& name, std::string& sha256_hex) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (fd_ < 0 || EVP_DigestFinal_ex(sha_, md, &len) != 1) return false;
        int rc = close(fd_);
        fd_ = -1;
        std::string path = dir_ + "/" + name_;
        if (rc != 0 || rename(part_.c_str(), path.c_str()) != 0) {
            ngx_log_error(NGX_LOG_ERR, log_, ngx_errno, "whatsapp: cannot write spool file %s", part_.c_str());
            return false;
        }
        part_.clear();
        sha256_hex = wa::hex_lower(std::string_view(reinterpret_cast<const char*>(md), len));
        name = name_;
        return true;
    }

private:
    bool open_part() {
        if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
            ngx_log_error(NGX_LOG_ERR, log_, ngx_errno, "whatsapp: cannot create %s", dir_.c_str());
            return false;
        }
        std::string rnd = wa::crypto::random_string(16);
        if (rnd.size() != 16 || sha_ == nullptr || EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr) != 1) return false;
        name_ = wa::hex_lower(rnd);
        std::string part = dir_ + "/" + name_ + ".part";
        fd_ = open(part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd_ < 0) {
            ngx_log_error(NGX_LOG_ERR, log_, ngx_errno, "whatsapp: cannot create a spool file in %s", dir_.c_str());
            return false;
        }
        part_ = part;
        return true;
    }

    ngx_log_t* log_;
    std::string dir_, name_, part_;
    EVP_MD_CTX* sha_;
    int fd_ = -1;
};

// The request body as one read-only view, without copying a large one: a single memory buffer as it is, the
// temporary file nginx wrote a body past client_body_buffer_size to mapped, else (several buffers) a copy.
class WaBodyView {
public:
    ~WaBodyView() {
        if (map_ != MAP_FAILED) munmap(map_, map_len_);
    }
    bool load(ngx_http_request_t* r, size_t max) {
        ngx_chain_t* cl = r->request_body ? r->request_body->bufs : NULL;
        if (cl == NULL) return true;
        ngx_buf_t* b = cl->buf;
        if (cl->next == NULL && b->in_file) {
            off_t len = b->file_last - b->file_pos;
            if (len < 0 || static_cast<uint64_t>(len) > max) return false;
            if (len == 0) return true;
            off_t start = b->file_pos - b->file_pos % static_cast<off_t>(ngx_pagesize);
            map_len_ = static_cast<size_t>(b->file_last - start);
            map_ = mmap(nullptr, map_len_, PROT_READ, MAP_PRIVATE, b->file->fd, start);
            if (map_ != MAP_FAILED) {
                view_ = std::string_view(static_cast<const char*>(map_) + (b->file_pos - start), static_cast<size_t>(len));
                return true;
            }
        }
        if (cl->next == NULL && !b->in_file) {
            if (static_cast<size_t>(b->last - b->pos) > max) return false;
            view_ = std::string_view(reinterpret_cast<const char*>(b->pos), b->last - b->pos);
            return true;
        }
        if (!wa_body_string(r, copy_, max)) return false;
        view_ = copy_;
        return true;
    }
    std::string_view view() const { return view_; }

private:
    void* map_ = MAP_FAILED;
    size_t map_len_ = 0;
    std::string copy_;
    std::string_view view_;
};

static void wa_send_media_body(ngx_http_request_t* r, wa_main_conf_t* m, std::string_view body) {
    api::Response err;
    ngx_table_elt_t* idem = wa_find_header(r, "Idempotency-Key");
    std::string_view idem_v = idem ? std::string_view(reinterpret_cast<const char*>(idem->value.data), idem->value.len)
                                   : std::string_view();
    ngx_table_elt_t* ct = r->headers_in.content_type;
    std::string_view ctype = ct ? std::string_view(reinterpret_cast<const char*>(ct->value.data), ct->value.len)
                                : std::string_view();
    api::OrgGate rate_gate = [m](const std::string& org, api::Response& e) { return wa_send_rate_allows(m, org, e); };
    api::Command cmd;
    WaSpoolWriter spool(r, m);
    api::FileSink sink = [&spool, &cmd](std::string_view bytes) {
        cmd.media_size += bytes.size();
        return spool.write(bytes);
    };
    if (!api::parse_send_media(ctype, body, wa_str(m->default_region), idem_v, m->max_media, cmd, sink, err, rate_gate)) {
        ngx_http_finalize_request(r, wa_send(r, err));
        return;
    }
    if (!spool.commit(cmd.spool, cmd.media_sha256)) {
        ngx_http_finalize_request(r, wa_send(r, api::error(507, "storage_error", "the file could not be spooled")));
        return;
    }
    // From here the helper owns the spool file (it removes it when the send ends); not queued → ours to remove.
    if (!wa_submit(r, m, cmd, err)) {
        std::string path = wa_str(m->state_dir) + "/" WA_SPOOL_DIR "/" + cmd.spool;
        unlink(path.c_str());
        ngx_http_finalize_request(r, wa_send(r, err));
    }
}

static void wa_body_handler(ngx_http_request_t* r) {
    auto* m = static_cast<wa_main_conf_t*>(ngx_http_get_module_main_conf(r, ngx_http_whatsapp_module));
    std::string body;
    api::Response err;
    auto* hctx = static_cast<wa_http_ctx_t*>(ngx_http_get_module_ctx(r, ngx_http_whatsapp_module));
    auto* route_id = &hctx->route;
    if (*route_id == api::RouteId::SendMedia) {
        WaBodyView view;
        if (!view.load(r, wa_media_body_limit(m))) {
            ngx_http_finalize_request(r, wa_send(r, api::error(413, "media_too_large",
                                                               "request body is larger than whatsapp_max_media_size allows")));
            return;
        }
        return wa_send_media_body(r, m, view.view());
    }
    if (!wa_body_string(r, body, hctx->max_body ? hctx->max_body : m->max_body)) {
        err = api::error(413, "body_too_large", "request body is larger than whatsapp_max_body");
        ngx_http_finalize_request(r, wa_send(r, err));
        return;
    }
    if (*route_id == api::RouteId::SessionToken) {
        ngx_http_finalize_request(r, wa_send(r, wa_session_token(m, body)));
        return;
    }
    ngx_table_elt_t* idem = wa_find_header(r, "Idempotency-Key");
    std::string_view idem_v = idem ? std::string_view(reinterpret_cast<const char*>(idem->value.data), idem->value.len)
                                   : std::string_view();
    api::OrgGate rate_gate;
    if (*route_id == api::RouteId::SendMessage)
        rate_gate = [m](const std::string& org, api::Response& e) { return wa_send_rate_allows(m, org, e); };
    api::Command cmd;
    if (!api::parse_command(*route_id, body, wa_str(m->default_region), idem_v, cmd, err, rate_gate) ||
        !wa_submit(r, m, cmd, err)) {
        ngx_http_finalize_request(r, wa_send(r, err));
        return;
    }
    // Suspended: the doorbell or the timer finalizes it. read_client_request_body took a reference already.
}

// A POST route's JSON body, read, checked and queued as the API does it (the dashboard's actions).
static ngx_int_t wa_read_command(ngx_http_request_t* r, wa_main_conf_t* m, api::RouteId route, size_t max_body) {
    ngx_table_elt_t* ct = r->headers_in.content_type;
    std::string_view ctype = ct ? std::string_view(reinterpret_cast<const char*>(ct->value.data), ct->value.len)
                                : std::string_view();
    std::string boundary;
    bool media = route == api::RouteId::SendMedia;  // the one route that also takes multipart/form-data
    if (!api::is_json_content_type(ctype) && !(media && api::multipart_boundary(ctype, boundary))) {
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        return wa_send(r, api::error(415, "unsupported_media_type",
                                     media ? "request body must be application/json or multipart/form-data"
                                           : "request body must be application/json"));
    }
    size_t limit = media ? wa_media_body_limit(m) : max_body;
    if (r->headers_in.content_length_n > (off_t)limit) {
        // As nginx does for client_max_body_size: drop the body as it arrives, answer, then close.
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        r->keepalive = 0;
        return wa_send(r, media ? api::error(413, "media_too_large", "request body is larger than whatsapp_max_media_size allows")
                                : api::error(413, "body_too_large", "request body is larger than whatsapp_max_body"));
    }
    wa_http_ctx_t* ctx = wa_ctx(r);
    if (ctx == NULL) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    ctx->route = route;
    ctx->max_body = max_body;
    ngx_int_t rc = ngx_http_read_client_request_body(r, wa_body_handler);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
    return NGX_DONE;
}

ngx_int_t wa_command_request(ngx_http_request_t* r, wa_main_conf_t* m, api::RouteId route, size_t max_body) {
    return wa_read_command(r, m, route, max_body < m->max_body ? max_body : m->max_body);
}

// The route of the request, relative to the location's mount prefix.
static api::Route wa_route(ngx_http_request_t* r, wa_loc_conf_t* l) {
    std::string_view uri(reinterpret_cast<const char*>(r->uri.data), r->uri.len);
    std::string_view prefix(reinterpret_cast<const char*>(l->prefix.data), l->prefix.len);
    std::string_view method(reinterpret_cast<const char*>(r->method_name.data), r->method_name.len);
    if (method == "HEAD") method = "GET";
    api::Route route;
    if (uri.substr(0, prefix.size()) == prefix) route = api::match(method, uri.substr(prefix.size()));
    return route;
}

ngx_int_t wa_api_handler(ngx_http_request_t* r) {
    auto* m = static_cast<wa_main_conf_t*>(ngx_http_get_module_main_conf(r, ngx_http_whatsapp_module));
    auto* l = static_cast<wa_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module));
    if (m->zone == NULL) {
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) return rc;
        return wa_send(r, api::error(500, "internal_error", "whatsapp_api needs whatsapp_zone in the http block"));
    }
    std::string_view doc_org;
    bool doc_qr = false;
    // The prebuilt status documents are for API-key reads; a token_only location never takes the API key.
    if (!l->token_only && wa_doc_route(r, l, doc_org, doc_qr) && wa_authorized(r, m)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ngx_int_t rc = wa_send_doc(r, m, doc_org, doc_qr);
        if (rc != NGX_DECLINED) return rc;
    }
    api::Route route = wa_route(r, l);
    if (route.id == api::RouteId::Unknown) {
        // Every answer given before reading the body discards it: left unread, it would be parsed as the next
        // request on a keep-alive connection.
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) return rc;
        if (!l->token_only && !wa_authorized(r, m))
            return wa_send(r, api::error(401, "unauthorized", "missing or invalid X-API-Key"));
        return wa_send(r, api::error(404, "not_found", "unknown route"));
    }
    // Session tokens: accepted by the organization's read-only routes only, from the cookie wa_token. A
    // `whatsapp_api token_only` location accepts nothing else (no API key, no other route).
    int64_t token_expires = 0;
    bool authorized = !l->token_only && (!route.needs_auth || wa_authorized(r, m));
    if (!authorized && route.token_ok) {
        token_expires = wa_token_expiry(r, m, route.org);
        authorized = token_expires > 0;
    }
    if (!authorized) {
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        return wa_send(r, api::error(401, "unauthorized",
                                     l->token_only ? "this location serves status, qr and events with a session token (cookie wa_token)"
                                     : route.token_ok ? "missing or invalid X-API-Key or session token"
                                                      : "missing or invalid X-API-Key"));
    }
    if (!route.method_ok) {
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        api::Response resp = api::error(405, "method_not_allowed", "method not allowed on this route");
        resp.allow = route.allow;
        return wa_send(r, resp);
    }
    if (route.id == api::RouteId::Health) {
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        return wa_send(r, wa_ok(api::health_json()));
    }
    if (!route.has_body) {
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) return rc;
        if (route.id == api::RouteId::Events || route.id == api::RouteId::EventsAll)
            return wa_events_start(r, m, route, token_expires);
        if (route.id == api::RouteId::MessageMedia) return wa_serve_media(r, m, route);
        if (route.id == api::RouteId::Message || route.id == api::RouteId::Messages || route.id == api::RouteId::Contact ||
            route.id == api::RouteId::WebhooksDead)
            return wa_helper_read(r, m, route);
        return wa_send(r, wa_read_route(r, m, route));
    }
    return wa_read_command(r, m, route.id, m->max_body);
}

// ---------------------------------------------------------------------------------------------------------
// Errors nginx raises itself inside an API location (a body over client_max_body_size, which follows
// whatsapp_max_body; a broken chunked body; deny; a handler's bare status code) would otherwise get nginx's HTML
// page. These filters give them the contract's JSON instead; the module's own answers pass untouched.

static ngx_http_output_header_filter_pt wa_next_header_filter;
static ngx_http_output_body_filter_pt wa_next_body_filter;

// The status and JSON that replace nginx's answer. A body refused for its size before the handler ran is
// still a 401 first when the key is missing or wrong: authentication comes before everything else.
static api::Response wa_replacement(ngx_http_request_t* r, wa_loc_conf_t* l, ngx_uint_t status) {
    if (status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        auto* m = static_cast<wa_main_conf_t*>(ngx_http_get_module_main_conf(r, ngx_http_whatsapp_module));
        if (wa_route(r, l).needs_auth && !wa_authorized(r, m))
            return api::error(401, "unauthorized", "missing or invalid X-API-Key");
    }
    return api::error_for_status(static_cast<int>(status));
}

static ngx_int_t wa_error_header_filter(ngx_http_request_t* r) {
    auto* l = static_cast<wa_loc_conf_t*>(ngx_http_get_module_loc_conf(r, ngx_http_whatsapp_module));
    if (r != r->main || l == NULL || l->api != 1 || r->headers_out.status < NGX_HTTP_BAD_REQUEST)
        return wa_next_header_filter(r);
    wa_http_ctx_t* ctx = wa_ctx(r);
    if (ctx == NULL || ctx->answered) return wa_next_header_filter(r);
    api::Response resp = wa_replacement(r, l, r->headers_out.status);
    u_char* body = static_cast<u_char*>(ngx_pnalloc(r->pool, resp.body.size() + 1));
    if (body == NULL) return wa_next_header_filter(r);
    ngx_memcpy(body, resp.body.data(), resp.body.size());
    body[resp.body.size()] = '\n';
    ctx->replacement = {resp.body.size() + 1, body};
    ctx->replacing = true;
    r->headers_out.status = resp.status;
    if (r->err_status) r->err_status = resp.status;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
    r->headers_out.content_length_n = ctx->replacement.len;
    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);
    return wa_next_header_filter(r);
}

static ngx_int_t wa_error_body_filter(ngx_http_request_t* r, ngx_chain_t* in) {
    auto* ctx = static_cast<wa_http_ctx_t*>(ngx_http_get_module_ctx(r, ngx_http_whatsapp_module));
    if (ctx == NULL || !ctx->replacing) return wa_next_body_filter(r, in);
    for (ngx_chain_t* cl = in; cl; cl = cl->next) {  // nginx's HTML page: consumed, never sent
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }
    if (ctx->replacement_sent) return NGX_OK;
    ctx->replacement_sent = true;
    auto* b = static_cast<ngx_buf_t*>(ngx_calloc_buf(r->pool));
    if (b == NULL) return NGX_ERROR;
    b->pos = ctx->replacement.data;
    b->last = ctx->replacement.data + ctx->replacement.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, NULL};
    return wa_next_body_filter(r, &out);
}

ngx_int_t wa_install_error_filters() {
    wa_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = wa_error_header_filter;
    wa_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = wa_error_body_filter;
    return NGX_OK;
}

ngx_int_t wa_worker_init_process(ngx_cycle_t* cycle) {
    if (!wa_waiting_init) {
        ngx_queue_init(&wa_waiting);
        wa_waiting_init = true;
    }
    // Marked idle: a graceful shutdown calls its handler, which ends the event streams (clients reconnect).
    return wa_doorbell_open(cycle, wa_worker_doorbell_handler, true);
}

void wa_worker_exit_process(ngx_cycle_t*) {
    wa_events_exit();
    wa_doorbell_close();
}
