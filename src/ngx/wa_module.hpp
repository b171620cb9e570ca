// Shared declarations of the nginx layer: configuration, the shared-memory zone, doorbells, the helper.
// The protocol and the HTTP contract live in the core (include/wa); this layer only wires nginx to it.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>
#include <ngx_channel.h>
}

#include <string>
#include <string_view>
#include <vector>

#include "wa/api/rate_limit.hpp"

static_assert(__cplusplus >= 201703L, "ngx_whatsapp needs C++17");

extern "C" ngx_module_t ngx_http_whatsapp_module;

// ---------------------------------------------------------------------------------------------------------
// Configuration (http{} level) and the per-location switch.

struct wa_server_url_t {
    ngx_str_t url;      // as configured
    bool tls = false;   // wss://
    ngx_str_t host;     // for SNI, certificate check and the Host header
    ngx_str_t host_header;  // host[:port]
    ngx_str_t path;     // /ws/chat
    in_port_t port = 0;
    ngx_addr_t* addrs = nullptr;  // set when the host is an IP literal or localhost
    ngx_uint_t naddrs = 0;
};

struct wa_main_conf_t {
    ngx_shm_zone_t* zone;
    ngx_str_t state_dir;
    ngx_array_t* api_keys;         // of wa::KeyDigest: only digests of the keys are kept
    ngx_str_t server;              // whatsapp_server
    wa_server_url_t* url;
    ngx_str_t default_region;
    ngx_str_t root_key;            // base64 of a test server's Noise root public key (empty = WhatsApp's)
    ngx_str_t trusted_certificate;
    ngx_ssl_t* ssl;
    ngx_resolver_t* resolver;
    ngx_msec_t resolver_timeout;
    ngx_msec_t connect_timeout;
    ngx_msec_t handshake_timeout;
    ngx_msec_t command_timeout;
    ngx_msec_t send_timeout;
    ngx_msec_t backoff_min;
    ngx_msec_t backoff_max;
    size_t max_body;
    size_t max_media;              // whatsapp_max_media_size: the decoded file of send-media
    ngx_uint_t send_rate_per_min;  // whatsapp_send_rate
    ngx_uint_t send_burst;
    ngx_uint_t queue_size;
    uint32_t client_version[3];    // whatsapp_client_version (what the server checks; 405 = raise it)
    ngx_str_t browser, browser_os; // whatsapp_browser (what the phone's "Linked devices" shows)
    ngx_msec_t keepalive_min, keepalive_max, ping_timeout;  // whatsapp_keepalive
    ngx_msec_t qr_first, qr_next;  // whatsapp_qr_refresh
    time_t message_retention;      // whatsapp_message_retention (seconds)
    ngx_uint_t message_cap;        // ... max=N messages per organization
    ngx_flag_t store_sync_full;    // whatsapp_store_sync full
    ngx_msec_t status_summary;     // whatsapp_status_summary: the helper's periodic summary line (0: none)
    ngx_uint_t max_sessions;       // effective: whatsapp_max_sessions, or what the helper can hold
    ngx_uint_t session_capacity;   // what the helper can hold (wa::session_limit), 0 = not known yet
    ngx_uint_t worker_connections; // and what it was derived from, for /api/health
    ngx_uint_t open_files;
    ngx_flag_t max_sessions_set;   // whatsapp_max_sessions was given
    ngx_int_t helper_worker;       // ngx_worker index of the helper, -1 = none
    ngx_flag_t enabled;            // a zone is configured
    ngx_uint_t events_max;         // whatsapp_events_max: event streams per worker
    ngx_msec_t events_heartbeat;   // whatsapp_events_heartbeat
};

struct wa_loc_conf_t {
    ngx_flag_t api;
    ngx_flag_t dashboard;   // whatsapp_dashboard
    ngx_str_t dash_prefix;  // the dashboard's location, without a trailing '/'
    ngx_flag_t token_only;  // whatsapp_api token_only: only status, qr and events with a session token
    ngx_http_core_loc_conf_t* clcf;  // of the location that says whatsapp_api (its body limit follows ours)
    ngx_str_t prefix;      // mount prefix removed from the URI before routing
    ngx_flag_t prefix_set;
    ngx_flag_t media_location;  // the exact location made for POST <prefix>/api/send-media (larger body limit)
};

// ---------------------------------------------------------------------------------------------------------
// Shared memory. The zone is mapped before the master forks, so pointers are valid in every process of
// one master; a reload with the same name and size reuses the mapping. Persistent truth lives in files.

#define WA_SHM_LAYOUT 9
#define WA_ID_MAX 64
#define WA_ERR_MAX 512
#define WA_QRTEXT_MAX 512
#define WA_SHM_RESERVE_PAGES 16  // kept free for commands and results when organizations fill the zone
#define WA_FAIL_SLOTS 8          // distinct failure codes counted per organization (then "other")
#define WA_RECONNECT_KINDS 11    // wa::kDisconnectKinds (checked in metrics.cpp)
#define WA_EVENT_WORKERS 256     // workers (all generations) that may have event streams open at once
#define WA_COMMIT_BUCKETS 12     // store commit latency histogram: 11 bounds and +Inf (metrics.cpp)
#define WA_TOKEN_KEY_SIZE 32     // wa::session_token::kKeySize
#define WA_REASON_MAX 256

enum wa_helper_role_e : uint8_t { WA_HELPER_NONE = 0, WA_HELPER_STANDBY, WA_HELPER_ACTIVE, WA_HELPER_DRAINING };
enum wa_cmd_state_e : uint8_t { WA_CMD_NEW = 0, WA_CMD_TAKEN, WA_CMD_DONE };

// One organization's status record. Sized at allocation (limit_req's shape): the id at the end, as long as it
// is; the texts that change (last error, QR) in slab blocks sized to their content, freed when they empty.
// A purged organization keeps only this fixed part (wa_shm_org_purge): its event ids must keep growing.
struct wa_shm_org_t {
    ngx_str_node_t sn;         // rbtree node; key = crc32(id), str -> id
    ngx_queue_t link;          // sh->orgs, creation order
    uint8_t state;             // wa::State
    uint8_t wanted;
    uint32_t retry_count;
    int64_t created_at, updated_at, connected_at, state_since, next_retry_at, qr_expires_at, restricted_until;
    uint16_t phone_len;
    u_char phone[24];
    u_char* last_error;        // slab, at most WA_ERR_MAX bytes; NULL when empty
    uint32_t last_error_len;
    u_char* qr_text;           // slab, at most WA_QRTEXT_MAX bytes; NULL when no QR
    uint32_t qr_text_len;
    u_char* qr_url;            // slab; "data:image/png;base64,..."
    uint32_t qr_url_len;
    // Appended by issue 10 (live push, metrics).
    uint64_t version;          // +1 on every publish: the id of this organization's events
    uint64_t change_seq;       // sh->events_seq at the last publish (orders changes across organizations)
    uint64_t qr_seq;           // sh->events_seq when the QR (or its absence) last changed
    struct {                   // counters, added by the helper (wa_metrics_apply); they outlive helper restarts
        uint64_t sent, delivered, read, received;
        uint64_t reconnects[WA_RECONNECT_KINDS];  // by wa::Disconnect::Kind
        struct {
            u_char code[23];
            uint8_t len;
            uint64_t n;
        } failed[WA_FAIL_SLOTS];
        uint64_t failed_other;
    } metrics;
    // The answers of GET /api/status and /api/qr, rendered by the helper when the record changes (slab, NULL
    // when the zone had no room: workers then build them from the fields above). Clock-dependent parts come
    // last and are written by the worker (wa::api::status_json_tail, qr_json_tail).
    u_char* status_doc;        // up to and including "next_retry_in":
    uint32_t status_doc_len;
    u_char* qr_doc;            // up to and including "expires_in":, only while a QR is shown
    uint32_t qr_doc_len;
    // Appended by issue 12 (operator dashboard).
    uint64_t dash_seq;         // sh->events_seq at the last publish or change of the counters below
    int64_t today;             // the day (wa_local_day) that sent_today and failed_today count
    uint64_t sent_today, failed_today;  // as metrics.sent and the sum of metrics.failed, since local midnight
    // Appended by issue 11 (webhooks): events acknowledged by a 2xx, attempts that failed, events parked dead.
    uint64_t webhooks_delivered, webhooks_failed, webhooks_dead;
    u_char id[1];              // sized at allocation: offsetof(wa_shm_org_t, id) + the id's length
};

struct wa_shm_cmd_t {
    ngx_queue_t link;          // sh->pending (NEW), sh->taken (TAKEN), sh->done (DONE)
    uint64_t id;
    uint8_t state;
    uint8_t abandoned;         // the request is gone: whoever holds it last frees it
    ngx_pid_t requester;
    int64_t expires_at;        // unix seconds after which an unclaimed result is swept
    u_char* req;               // slab; the command as compact JSON
    uint32_t req_len;
    uint16_t http_status;
    uint16_t retry_after;
    uint8_t partial_len;       // a partial result known before the answer: the message id of a send
    u_char partial[64];
    u_char* resp;              // slab; the response body
    uint32_t resp_len;
};

// A send-rate bucket, kept apart from the status records: sends to organizations that do not run are limited
// too, without creating a record for them. A bucket left alone for RateLimit::refill_ms() is full again and
// is freed (oldest first, as ngx_http_limit_req expires its nodes).
struct wa_shm_rate_t {
    ngx_str_node_t sn;         // rbtree node; key = crc32(id), str -> id
    ngx_queue_t lru;           // sh->rate_lru, most recently used first
    u_char id[WA_ID_MAX];
    wa::BucketState bucket;
};

struct wa_shm_t {
    uint32_t layout;
    u_char token[17];          // random, names the doorbells of this zone's processes
    ngx_rbtree_t org_tree;
    ngx_rbtree_node_t org_sentinel;
    ngx_queue_t orgs;
    ngx_uint_t org_count;
    ngx_queue_t pending, taken, done;
    ngx_uint_t pending_count;
    uint64_t next_cmd_id;
    // Who serves commands. Informational: the authority is the OFD lock on <state_dir>/owner.lock.
    ngx_pid_t helper_pid;      // the ACTIVE (or DRAINING) helper
    ngx_pid_t standby_pid;     // a new-generation helper waiting for the lock
    uint8_t helper_role;
    uint8_t clean_release;     // the last owner released the lock after closing its connections
    ngx_msec_t released_at;    // when (ngx_current_msec, monotonic: the same clock in every process)
    int64_t helper_since;
    uint64_t generation;
    uint64_t commands_total, commands_rejected;
    ngx_rbtree_t rate_tree;
    ngx_rbtree_node_t rate_sentinel;
    ngx_queue_t rate_lru;
    ngx_uint_t rate_buckets;
    // Appended by issue 10 (live push, session tokens, metrics).
    uint64_t events_seq;                        // +1 on every publish of any organization
    ngx_pid_t event_pids[WA_EVENT_WORKERS];     // workers with event streams open: the helper rings them
    uint32_t event_streams[WA_EVENT_WORKERS];   // ... and how many each has
    u_char token_key[WA_TOKEN_KEY_SIZE];        // HMAC key of session tokens, random per zone
    uint64_t loop_lag_last_us, loop_lag_max_us; // the helper's event-loop lateness (max since it started)
    uint64_t commit_count, commit_sum_us, commit_buckets[WA_COMMIT_BUCKETS];  // store commits
    // Why no helper owns the sessions (owner.lock cannot be opened), or why the owner cannot use its store:
    // /api/health's helper.reason and the message of 503 helper_unavailable. Empty while all is well.
    u_char reason[WA_REASON_MAX];
    uint16_t reason_len;
    // WAL checkpoints of the current helper's store: by its checkpoint thread, or inside a commit (a stall)
    uint64_t checkpoints_background, checkpoints_inline;
    // Appended by issue 11: webhook receivers refused at the TLS check (untrusted chain, another host's name).
    uint64_t tls_verify_failures[2];
    // Checkpoints the helper ran between passes to let the WAL start over (Store::restart_wal_if_due)
    uint64_t checkpoints_restart;
};

struct wa_zone_ctx_t {
    wa_shm_t* sh;
    ngx_slab_pool_t* shpool;
};

wa_main_conf_t* wa_main_conf(ngx_cycle_t* cycle);
wa_zone_ctx_t* wa_zone(ngx_cycle_t* cycle);

ngx_int_t wa_shm_init_zone(ngx_shm_zone_t* zone, void* data);
wa_shm_org_t* wa_shm_org_find(wa_zone_ctx_t* z, const u_char* id, size_t len);  // caller holds the lock
wa_shm_org_t* wa_shm_org_create(wa_zone_ctx_t* z, const u_char* id, size_t len);  // caller holds the lock
// Paging in the table's own order (crc32 of the id, then the id), which inserts and deletes do not disturb:
// the first record after position `id` (len 0: the very first), and the one after `o`. Lock held.
wa_shm_org_t* wa_shm_org_after(wa_zone_ctx_t* z, const u_char* id, size_t len);
wa_shm_org_t* wa_shm_org_next(wa_zone_ctx_t* z, wa_shm_org_t* o);
void wa_shm_cmd_free(wa_zone_ctx_t* z, wa_shm_cmd_t* cmd);                          // caller holds the lock
bool wa_shm_set_bytes(wa_zone_ctx_t* z, u_char** dst, uint32_t* dst_len, const std::string& v);  // lock held
// The same for a text of at most `cap` bytes (cut there), kept in place when it did not change.
bool wa_shm_set_text(wa_zone_ctx_t* z, u_char** dst, uint32_t* dst_len, const std::string& v, size_t cap);
// Data-protection purge of the organization's record (lock held): its texts, documents and counters go; the
// fixed part stays, state disconnected, so that its event ids keep growing for streams that watch it.
void wa_shm_org_purge(wa_zone_ctx_t* z, wa_shm_org_t* o);
namespace wa::api { struct StatusView; }
// The record as the API's StatusView (lock held); the QR data URL only when with_qr.
void wa_shm_org_view(const wa_shm_org_t* o, wa::api::StatusView& v, bool with_qr);

enum class wa_rate_result { allowed, limited, no_memory };
// Takes one send from the organization's bucket, creating it on first use. Takes the lock itself.
wa_rate_result wa_shm_rate_take(wa_zone_ctx_t* z, const wa::RateLimit& limit, const std::string& org, uint64_t now_ms,
                                uint64_t* retry_after_ms);

// ---------------------------------------------------------------------------------------------------------
// Doorbells: one AF_UNIX datagram socket per process, named by the zone token and the pid. A datagram is a
// hint that something changed in shm for that process; the data is always read from shm.

ngx_int_t wa_doorbell_open(ngx_cycle_t* cycle, ngx_event_handler_pt handler, bool mark_idle);
void wa_doorbell_close();
void wa_doorbell_drain(ngx_connection_t* c);
bool wa_doorbell_ring(wa_shm_t* sh, ngx_pid_t pid);  // false: nobody listens at that pid
bool wa_process_alive(ngx_pid_t pid);

// ---------------------------------------------------------------------------------------------------------
// The helper process (an extra worker) and the HTTP handler.

ngx_int_t wa_helper_init_process(ngx_cycle_t* cycle);
void wa_helper_exit_process(ngx_cycle_t* cycle);
ngx_int_t wa_worker_init_process(ngx_cycle_t* cycle);
void wa_worker_exit_process(ngx_cycle_t* cycle);
ngx_int_t wa_api_handler(ngx_http_request_t* r);
ngx_int_t wa_install_error_filters();  // postconfiguration: JSON for errors nginx raises in API locations
void wa_worker_doorbell_handler(ngx_event_t* ev);

// ---------------------------------------------------------------------------------------------------------
// Live push (events.cpp): server-sent events served by the workers. The helper bumps an organization's
// version when it publishes and, once per event-loop pass, rings every worker registered in shm as having
// streams open; such a worker compares versions and writes to its streams. No timer polls anything.

namespace wa::api {
struct Route;
struct Response;
enum class RouteId : uint8_t;
}
// The contract's JSON answer (api_handler.cpp); marks the request as answered by the module.
ngx_int_t wa_send_response(ngx_http_request_t* r, const wa::api::Response& resp);
// GET /api/events/:org (token_expires: the session token's expiry, 0 with an API key) and GET /api/events.
ngx_int_t wa_events_start(ngx_http_request_t* r, wa_main_conf_t* m, const wa::api::Route& route, int64_t token_expires);
void wa_events_wake();              // worker: the doorbell rang
void wa_events_shutdown();          // worker: graceful shutdown, end every stream so that clients reconnect
void wa_events_exit();              // worker: exiting
void wa_events_published(wa_zone_ctx_t* z);  // helper: a status record changed (rings at the end of the pass)
uint64_t wa_events_open_total(wa_zone_ctx_t* z);  // every worker's open streams (lock held)

// ---------------------------------------------------------------------------------------------------------
// Metrics (metrics.cpp): counters in shm, `whatsapp_metrics;` serves them in Prometheus text format.

struct wa_metrics_delta_t {
    uint64_t sent = 0, delivered = 0, read = 0, received = 0;
    uint64_t reconnects[WA_RECONNECT_KINDS] = {};
    std::vector<std::pair<std::string, uint64_t>> failed;  // by code
    bool empty() const;
};
// Adds to the organization's counters (the record must exist; nothing is created). Takes the lock.
void wa_metrics_apply(wa_zone_ctx_t* z, const std::string& org, const wa_metrics_delta_t& d);
void wa_metrics_count(wa_zone_ctx_t* z, const std::string& org, const char* what, uint64_t n);  // "sent", ...
// One store commit took `us`; the store's WAL checkpoints so far (background thread, inside commits).
void wa_metrics_commit(wa_zone_ctx_t* z, uint64_t us, uint64_t ckpt_background, uint64_t ckpt_inline,
                       uint64_t ckpt_restart);
// Webhook outcomes of one organization (added to its shm counters), and a TLS check that refused a receiver
// (host: the certificate names another host; else the chain is not trusted).
void wa_metrics_webhook(wa_zone_ctx_t* z, const std::string& org, uint64_t delivered, uint64_t failed, uint64_t dead);
void wa_metrics_tls_failure(wa_zone_ctx_t* z, bool host);
uint64_t wa_monotonic_us();
void wa_metrics_helper_start(ngx_cycle_t* cycle);  // the helper's 100 ms event-loop lag probe
void wa_metrics_helper_stop();
ngx_int_t wa_metrics_handler(ngx_http_request_t* r);

// ---------------------------------------------------------------------------------------------------------
// Operator dashboard (dashboard.cpp): `whatsapp_dashboard;` serves a page, its stream and its actions.

ngx_int_t wa_dashboard_handler(ngx_http_request_t* r);
// GET <dashboard>/events: every organization as the dashboard shows it (events.cpp).
ngx_int_t wa_dashboard_events_start(ngx_http_request_t* r, wa_main_conf_t* m);
// The JSON body of a dashboard action, then the same path as POST /api/start-session, /logout, /clear-session
// (api_handler.cpp): validated, queued for the helper, answered with the helper's answer.
ngx_int_t wa_command_request(ngx_http_request_t* r, wa_main_conf_t* m, wa::api::RouteId route, size_t max_body);
// Days since the epoch in nginx's local time zone: "today" of the dashboard's counters.
inline int64_t wa_local_day(time_t now) {
    return static_cast<int64_t>(now + static_cast<time_t>(ngx_cached_time->gmtoff) * 60) / 86400;
}
// The body limit of POST /api/send-media: base64 of the largest file (4/3) plus room for the other fields.
inline size_t wa_media_body_limit(const wa_main_conf_t* m) { return (m->max_media + 2) / 3 * 4 + 256 * 1024; }
// <state_dir>/spool: files of send-media between the worker and the helper (helper.cpp removes them).
#define WA_SPOOL_DIR "spool"

// Writes all of `b` to a blocking file descriptor (spool and media files), retrying after signals.
inline bool wa_write_all(int fd, std::string_view b) {
    while (!b.empty()) {
        ssize_t n = write(fd, b.data(), b.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        b.remove_prefix(static_cast<size_t>(n));
    }
    return true;
}

inline std::string wa_str(const ngx_str_t& s) { return std::string(reinterpret_cast<const char*>(s.data), s.len); }
