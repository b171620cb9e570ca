// Webhook events (issue 11): what the session core enqueues into the store's outbox in the same transaction
// as the change that caused it, and the pure parts of delivering them (envelope, signature, backoff).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "wa/store/store.hpp"

namespace wa::webhook {

// The target URLs that get an event of `type` for `org` (the helper's whatsapp_webhook list, or the
// organization's override). An empty Router means webhooks are off: nothing is stored.
using Router = std::function<std::vector<std::string>(const std::string& org, std::string_view type)>;

// Event types.
inline constexpr std::string_view kMessageReceived = "message.received";
inline constexpr std::string_view kMessageStatus = "message.status";
inline constexpr std::string_view kSessionStatus = "session.status";
inline constexpr std::string_view kAccountRestricted = "account.restricted";
// Only to URLs that name it (never through "" or "*"): the QR string links a phone to the gateway while it lives.
inline constexpr std::string_view kSessionQr = "session.qr";
bool known_type(std::string_view type);
// "message.received,message.status" (or "" = every type but session.qr) → true when `type` is in it.
bool events_match(std::string_view list, std::string_view type);
// Validates a comma-separated list of types (for the directive and the API). "" is valid (all).
bool valid_events(std::string_view list, std::string* bad);

// Enqueues one event (data: a JSON object). No-op (true) without a store or a router.
bool emit(store::Store* store, const Router& router, const std::string& org, std::string_view type,
          const std::string& data, int64_t now_ms, std::string* err);

// The "data" objects.
struct Received {
    std::string from;        // E.164 digits when known, else the sender's JID user
    std::string from_jid;    // the sender's JID as it came
    std::string chat_jid;
    std::string id;
    std::string type;        // text, image, ...
    std::string text;
    std::string push_name;   // "" = not known
    int64_t timestamp = 0;   // the server's t (unix seconds)
    bool from_me = false;    // a copy of a message the organization's own phone sent
    std::string media_path;  // documents and images: "/api/messages/<org>/<id>/media" (relative to the API mount)
};
std::string received_data(const Received& r);
std::string status_data(const std::string& id, const std::string& status, int error_code, const std::string& error);
std::string session_data(const std::string& state, const std::string& last_error, const std::string& phone);
std::string restricted_data(int64_t until, const std::string& reason, int error_code);
// session.qr: the QR string (what GET /api/qr's qr_text holds), when it expires (unix seconds) and its lifetime.
std::string qr_data(const std::string& qr, int64_t expires_at, int64_t expires_in);

// The body posted for a stored event, the same bytes on every attempt:
// {"id","type","organization_id","timestamp","seq","data"}.
std::string envelope(const store::WebhookEvent& e);

// A JSON string's inside (quotes, backslashes, control characters escaped).
std::string json_escape(std::string_view s);

// X-WhatsApp-Signature: "t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
std::string signature(std::string_view secret, int64_t t, std::string_view body);

// The wait before attempt `attempts + 1` (attempts already made >= 1): base·2^(attempts-1) capped, with
// full jitter in [50%, 100%] (unit_random in [0, 1)).
uint64_t backoff_ms(uint32_t attempts, uint64_t base_ms, uint64_t cap_ms, double unit_random);

}  // namespace wa::webhook
