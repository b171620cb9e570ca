#include "wa/webhook/events.hpp"
#include "wa/codec/json.hpp"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <memory>

namespace wa::webhook {

namespace {

using Json = wa::json::Ptr;
using wa::json::dump;

void set_str(json_t* o, const char* k, const std::string& v) { json_object_set_new(o, k, json_stringn(v.data(), v.size())); }
void set_str_or_null(json_t* o, const char* k, const std::string& v) {
    json_object_set_new(o, k, v.empty() ? json_null() : json_stringn(v.data(), v.size()));
}

const std::string_view kTypes[] = {kMessageReceived, kMessageStatus, kSessionStatus, kAccountRestricted, kSessionQr};

}  // namespace

bool known_type(std::string_view type) {
    for (auto t : kTypes)
        if (t == type) return true;
    return false;
}

bool events_match(std::string_view list, std::string_view type) {
    bool opt_in = type == kSessionQr;
    if (list.empty()) return !opt_in;
    while (!list.empty()) {
        size_t c = list.find(',');
        std::string_view item = list.substr(0, c);
        if (item == type || (item == "*" && !opt_in)) return true;
        if (c == std::string_view::npos) break;
        list.remove_prefix(c + 1);
    }
    return false;
}

bool valid_events(std::string_view list, std::string* bad) {
    if (list.empty()) return true;
    while (true) {
        size_t c = list.find(',');
        std::string_view item = list.substr(0, c);
        if (!known_type(item) && item != "*") {
            if (bad) *bad = std::string(item);
            return false;
        }
        if (c == std::string_view::npos) return true;
        list.remove_prefix(c + 1);
    }
}

bool emit(store::Store* store, const Router& router, const std::string& org, std::string_view type,
          const std::string& data, int64_t now_ms, std::string* err) {
    if (!store || !router) return true;
    std::vector<std::string> targets = router(org, type);
    // A QR nobody asked for is not an event at all: it takes no seq (receivers of the other types see no gap).
    if (targets.empty() && type == kSessionQr) return true;
    std::string id;
    uint64_t seq = 0;
    return store->enqueue_webhook(org, std::string(type), data, targets, now_ms, id, seq, err);
}

std::string received_data(const Received& r) {
    Json j(json_object());
    set_str(j.get(), "id", r.id);
    set_str(j.get(), "from", r.from);
    set_str(j.get(), "from_jid", r.from_jid);
    set_str(j.get(), "chat_jid", r.chat_jid);
    set_str(j.get(), "type", r.type);
    set_str(j.get(), "text", r.text);
    set_str_or_null(j.get(), "push_name", r.push_name);
    json_object_set_new(j.get(), "timestamp", json_integer(r.timestamp));
    json_object_set_new(j.get(), "from_me", json_boolean(r.from_me));
    if (!r.media_path.empty()) set_str(j.get(), "media_path", r.media_path);
    return dump(j.get());
}

std::string status_data(const std::string& id, const std::string& status, int error_code, const std::string& error) {
    Json j(json_object());
    set_str(j.get(), "id", id);
    set_str(j.get(), "status", status);
    json_object_set_new(j.get(), "error_code", error_code ? json_integer(error_code) : json_null());
    set_str_or_null(j.get(), "error", error);
    return dump(j.get());
}

std::string session_data(const std::string& state, const std::string& last_error, const std::string& phone) {
    Json j(json_object());
    set_str(j.get(), "state", state);
    set_str_or_null(j.get(), "last_error", last_error);
    set_str_or_null(j.get(), "phone", phone);
    return dump(j.get());
}

std::string restricted_data(int64_t until, const std::string& reason, int error_code) {
    Json j(json_object());
    json_object_set_new(j.get(), "until", json_integer(until));
    set_str(j.get(), "reason", reason);
    json_object_set_new(j.get(), "error_code", error_code ? json_integer(error_code) : json_null());
    return dump(j.get());
}

std::string qr_data(const std::string& qr, int64_t expires_at, int64_t expires_in) {
    Json j(json_object());
    set_str(j.get(), "qr", qr);
    json_object_set_new(j.get(), "expires_at", json_integer(expires_at));
    json_object_set_new(j.get(), "expires_in", json_integer(expires_in));
    return dump(j.get());
}

std::string envelope(const store::WebhookEvent& e) {
    // The data object was produced by us; it is spliced in as text so its bytes never change.
    Json j(json_object());
    set_str(j.get(), "id", e.id);
    set_str(j.get(), "type", e.type);
    set_str(j.get(), "organization_id", e.org);
    json_object_set_new(j.get(), "timestamp", json_integer(e.created_at_ms / 1000));
    json_object_set_new(j.get(), "seq", json_integer(static_cast<json_int_t>(e.seq)));
    std::string head = dump(j.get());
    head.pop_back();  // '}'
    return head + ",\"data\":" + (e.data.empty() ? std::string("{}") : e.data) + "}";
}

std::string json_escape(std::string_view s) {
    Json j(json_stringn(s.data(), s.size()));
    if (!j) return {};
    char* d = json_dumps(j.get(), JSON_ENCODE_ANY);
    std::string out = d ? d : "\"\"";
    free(d);
    return out.size() >= 2 ? out.substr(1, out.size() - 2) : std::string();
}

std::string signature(std::string_view secret, int64_t t, std::string_view body) {
    std::string msg = std::to_string(t) + "." + std::string(body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(msg.data()),
         msg.size(), mac, &len);
    static const char hex[] = "0123456789abcdef";
    std::string out = "t=" + std::to_string(t) + ",v1=";
    for (unsigned i = 0; i < len; i++) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

uint64_t backoff_ms(uint32_t attempts, uint64_t base_ms, uint64_t cap_ms, double unit_random) {
    uint64_t d = base_ms;
    for (uint32_t i = 1; i < attempts && d < cap_ms; i++) d *= 2;
    if (d > cap_ms) d = cap_ms;
    return static_cast<uint64_t>(static_cast<double>(d) * (0.5 + 0.5 * unit_random));
}

}  // namespace wa::webhook
