// The HTTP API contract (../shared/spec/http-api.md) as pure functions: routing, request validation and
// JSON bodies. The nginx handler only moves bytes between the request and these functions.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "wa/session.hpp"

namespace wa::api {

enum class RouteId : uint8_t {
    Unknown, Health, ApiHealth, Connections, Status, Qr, StartSession, SendMessage, Logout, ClearSession, Message,
    PairingCode, Purge, Messages, Contact,
    Events, EventsAll, SessionToken,  // live push and browser tokens (issue 10)
    WebhooksDead, WebhooksReplay, WebhooksSet,  // webhooks (issue 11)
    SendMedia, MessageMedia                     // documents and images (issue 13)
};

struct Route {
    RouteId id = RouteId::Unknown;
    bool method_ok = false;
    const char* allow = "";    // Allow header for 405
    bool needs_auth = true;    // everything but GET /health
    bool has_body = false;     // POST routes carry a JSON body
    std::string org;           // :organization_id from the path (not yet validated)
    std::string message_id;    // :message_id
    bool token_ok = false;     // also accepts the organization's session token (cookie wa_token): status, qr, events
};

// `path` is the request path relative to the location's mount prefix, without the query string,
// already percent-decoded by nginx.
Route match(std::string_view method, std::string_view path);

struct Response {
    int status = 200;
    std::string body;
    std::string retry_after;  // header value when set
    std::string allow;        // header value when set
};

Response error(int status, std::string_view code, std::string_view message);
// The same with "message_id" (a send that timed out after its id was assigned).
Response error_with_id(int status, std::string_view code, std::string_view message, std::string_view message_id);

// The contract's JSON for an error status that nginx raised itself inside an API location (a body over
// client_max_body_size, a broken chunked body, deny, ...): the same shape and, where the contract has one,
// the same code as the module's own answers.
Response error_for_status(int status);

// A command for the helper, validated and normalized in the worker.
struct Command {
    enum Type : uint8_t {
        Start, Send, Logout, Clear, PairingCode, Purge, MessageGet, MessageList, Contact, WebhookDead, WebhookReplay, WebhookSet,
        SendMedia
    } type = Start;
    std::string org;
    std::string phone;            // E.164 digits (send, pairing-code, contact)
    std::string jid;              // send to a JID as given instead of a phone
    std::string message;          // UTF-8 text (send); the message id (message_get); an event id (webhook_replay)
    std::string idempotency_key;  // optional (send)
    std::string direction;        // message_list: "in", "out" or ""
    std::string cursor;           // message_list
    uint32_t limit = 100;         // message_list
    std::string url, events;      // webhook_set: the organization's URL ("" = back to the config's), its types
    // send_media (`message` holds the caption): the file is in the spool directory, never in the command.
    std::string media_type;       // "document" | "image"
    std::string filename, mimetype;
    std::string spool;            // the spool file's name: 32 lowercase hex digits
    uint64_t media_size = 0;
    std::string media_sha256;     // hex SHA-256 of the file (part of the idempotency meaning)
};



// The request's meaning for idempotency: a reused key must come with the same recipient and text.
std::string send_body_hash(const Command& cmd);

// GET routes answered by the helper (message status, message lists, contact lookups): the command, or false
// with `err` (400 family). `query` is the request's query string (args).
bool read_command(const Route& route, std::string_view query, std::string_view default_region, Command& cmd,
                  Response& err);

// Called with the organization id as soon as it is known to be valid, before any other field is looked at
// (the send rate limit goes there). Returning false stops parsing with `err`.
using OrgGate = std::function<bool(const std::string& org, Response& err)>;

// Validates the JSON body of a POST route. On failure fills `err` (400 family, or the gate's) and returns
// false. Checks in this order: JSON, organization_id, the gate, then the route's other fields.
bool parse_command(RouteId route, std::string_view body, std::string_view default_region,
                   std::string_view idempotency_header, Command& cmd, Response& err, const OrgGate& gate = {});

// POST /api/send-media: `application/json` with the file as base64 `data`, or `multipart/form-data` with the file
// as the part `file`; other fields as for send-message plus type ("document"|"image"), filename, mimetype, caption.
// Every field is checked first; then the file goes to `sink` in pieces of at most 48 KiB, decoded, and its first
// bytes are checked against the type. On success fills `cmd` (type SendMedia; spool, size and sha256 are the
// caller's, who saw the bytes). Errors: 400 (invalid_json, missing_field, invalid_phone, invalid_jid, invalid_field,
// invalid_media), 413 media_too_large over `max_media` bytes, 415 for another content type, 507 storage_error when
// the sink refuses, and the gate's; after a failure the sink may have had part of the file (the caller drops it).
// The body is only read: a JSON body's `data` string is decoded where it lies (jansson parses the body with that
// value cut out), so a 16 MB file is never held as a JSON string, nor as a whole decoded copy.
using FileSink = std::function<bool(std::string_view bytes)>;
bool parse_send_media(std::string_view content_type, std::string_view body, std::string_view default_region,
                      std::string_view idempotency_header, uint64_t max_media, Command& cmd, const FileSink& sink,
                      Response& err, const OrgGate& gate = {});
// multipart/form-data with a boundary (RFC 7578); the boundary without the leading "--".
bool multipart_boundary(std::string_view content_type, std::string& boundary);
// True for a spool file name the worker makes (32 lowercase hex digits).
bool valid_spool_name(std::string_view name);

// Commands cross shared memory as compact JSON.
std::string command_to_json(const Command& cmd);
bool command_from_json(std::string_view json, Command& cmd);

// Content-Type check: application/json, parameters allowed (charset=utf-8).
bool is_json_content_type(std::string_view content_type);

// What a worker reads from shared memory for one organization.
struct StatusView {
    std::string org;
    SessionStatus status;
    std::string qr_data_url;    // set while qr_ready
    int64_t qr_expires_at = 0;  // unix seconds
};

std::string iso8601(int64_t unix_s);  // "2026-01-14T10:00:00Z"; "" for 0
std::string status_json(const StatusView& v, int64_t now);
std::string qr_json(const StatusView& v, int64_t now);
// The same documents with "organization_id" added (events of GET /api/events, which carries every organization).
std::string status_json_with_org(const StatusView& v, int64_t now);
std::string qr_json_with_org(const StatusView& v, int64_t now);
// One organization as the operator dashboard shows it: status_json_with_org's fields (without the QR image),
// "wanted", "restricted_until" always (null unless restricted now), and the messages sent and failed today.
std::string dashboard_json(const StatusView& v, uint64_t sent_today, uint64_t failed_today, int64_t now);
std::string ok_status_json(State s);  // {"success":true,"status":"..."}

// The same documents rendered once per change (by the helper, into shared memory) and completed at read time
// without allocating: everything that depends on the clock comes last. For every view and time,
//   status_json_head(v) + tail written by status_json_tail(v.status.next_retry_at, v.status.restricted_until, now)
//   == status_json(v, now)
// and, while v shows a QR (qr_json_head(v) not empty), qr_json_head(v) + qr_json_tail(v.qr_expires_at, now)
// == qr_json(v, now). Without a QR, qr_json(v, now) does not depend on the time.
std::string status_json_head(const StatusView& v);  // up to and including "next_retry_in":
constexpr size_t kStatusTailMax = 96;
size_t status_json_tail(char* out, int64_t next_retry_at, int64_t restricted_until, int64_t now);
std::string qr_json_head(const StatusView& v);  // up to and including "expires_in":, or "" without a QR
constexpr size_t kQrTailMax = 48;
size_t qr_json_tail(char* out, int64_t qr_expires_at, int64_t now);
std::string health_json();            // {"status":"ok"}

struct HelperInfo {
    bool active = false;
    int64_t pid = 0;
    int64_t started_at = 0;
    uint64_t generation = 0;
    std::string role;  // "active", "standby", "draining", "none"
    int64_t loop_lag_max_ms = -1;  // the helper's worst event-loop lateness since it started (-1: not measured)
    std::string reason;  // why no helper owns the sessions, or why the owner cannot use its store; "" = none
};
struct ZoneUse {
    uint64_t size = 0, used = 0;
    uint64_t queue_len = 0, queue_max = 0;
    uint64_t organizations = 0;
};
constexpr size_t kStateCount = static_cast<size_t>(State::Conflict) + 1;
using StateCounts = std::array<uint64_t, kStateCount>;  // organizations per wa::State
// The effective whatsapp_max_sessions and where it comes from: set explicitly, or derived from the helper's
// worker_connections / open-file limit (whichever is smaller) minus a reserve.
struct SessionLimits {
    uint64_t max_sessions = 0;
    bool configured = false;  // whatsapp_max_sessions was given
    uint64_t worker_connections = 0, open_files = 0;
};
std::string api_health_json(const HelperInfo& h, const StateCounts& sessions, const ZoneUse& z,
                            const SessionLimits& limits, int64_t now);

// Paged lists (the contract's convention for extended routes): ?limit=N (1..1000, default 100) and
// ?cursor=<next_cursor of the previous page>. A cursor is a position (the last organization id listed), not a
// record: it stays valid when that organization is gone. Unknown parameters are ignored.
constexpr size_t kPageDefault = 100, kPageMax = 1000;
struct PageQuery {
    size_t limit = kPageDefault;
    std::string cursor;  // empty: from the start
};
// `args` is the raw query string (without '?'). Bad values fill `err` (400 invalid_parameter).
bool parse_page_query(std::string_view args, PageQuery& q, Response& err);
// {"success":true,"items":[...],"next_cursor":"..."|null,"total":N}
std::string connections_json(const std::vector<StatusView>& items, const std::string& next_cursor, uint64_t total,
                             int64_t now);

}  // namespace wa::api
