#include "wa/api/api.hpp"
#include "wa/codec/json.hpp"
#include "wa/webhook/events.hpp"
#include "wa/webhook/http.hpp"
#include "wa/codec/jid.hpp"

#include <openssl/sha.h>

#include <jansson.h>

#include <cctype>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>

#include "wa/codec/base64.hpp"
#include "wa/media/crypto.hpp"
#include "wa/api/phone.hpp"
#include "wa/api/validate.hpp"

namespace wa::api {

namespace {

using Json = wa::json::Ptr;
using wa::json::dump;

json_t* str_or_null(const std::string& s) { return s.empty() ? json_null() : json_stringn(s.data(), s.size()); }

bool split_path(std::string_view path, std::vector<std::string_view>& parts) {
    if (path.empty() || path[0] != '/') return false;
    size_t i = 1;
    while (i <= path.size()) {
        size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        parts.push_back(path.substr(i, j - i));
        i = j + 1;
    }
    return true;
}

}  // namespace

Route match(std::string_view method, std::string_view path) {
    Route r;
    std::vector<std::string_view> p;
    if (!split_path(path, p)) return r;
    auto route = [&](RouteId id, const char* m, bool body) {
        r.id = id;
        r.allow = m;
        r.method_ok = method == m;
        r.has_body = body;
    };
    if (p.size() == 1 && p[0] == "health") {
        route(RouteId::Health, "GET", false);
        r.needs_auth = false;
        return r;
    }
    if (p.empty() || p[0] != "api") return r;
    if (p.size() == 2) {
        if (p[1] == "health") route(RouteId::ApiHealth, "GET", false);
        else if (p[1] == "connections") route(RouteId::Connections, "GET", false);
        else if (p[1] == "start-session") route(RouteId::StartSession, "POST", true);
        else if (p[1] == "send-message") route(RouteId::SendMessage, "POST", true);
        else if (p[1] == "send-media") route(RouteId::SendMedia, "POST", true);
        else if (p[1] == "logout") route(RouteId::Logout, "POST", true);
        else if (p[1] == "clear-session") route(RouteId::ClearSession, "POST", true);
        else if (p[1] == "pairing-code") route(RouteId::PairingCode, "POST", true);
        else if (p[1] == "purge") route(RouteId::Purge, "POST", true);
        else if (p[1] == "events") route(RouteId::EventsAll, "GET", false);
        else if (p[1] == "session-token") route(RouteId::SessionToken, "POST", true);
        else if (p[1] == "webhooks") route(RouteId::WebhooksSet, "POST", true);
        return r;
    }
    if (p.size() == 3 && p[1] == "webhooks" && (p[2] == "dead" || p[2] == "replay")) {
        if (p[2] == "dead") route(RouteId::WebhooksDead, "GET", false);
        else route(RouteId::WebhooksReplay, "POST", true);
        return r;
    }
    if (p.size() == 3 && (p[1] == "status" || p[1] == "qr" || p[1] == "events")) {
        route(p[1] == "status" ? RouteId::Status : p[1] == "qr" ? RouteId::Qr : RouteId::Events, "GET", false);
        r.org.assign(p[2]);
        r.token_ok = true;
        return r;
    }
    if (p.size() == 3 && p[1] == "messages") {
        route(RouteId::Messages, "GET", false);
        r.org.assign(p[2]);
        return r;
    }
    if (p.size() == 4 && p[1] == "contacts") {
        route(RouteId::Contact, "GET", false);
        r.org.assign(p[2]);
        r.message_id.assign(p[3]);  // the phone, validated by read_command
        return r;
    }
    if (p.size() == 5 && p[1] == "messages" && p[4] == "media") {
        route(RouteId::MessageMedia, "GET", false);
        r.org.assign(p[2]);
        r.message_id.assign(p[3]);
        return r;
    }
    if (p.size() == 4 && p[1] == "messages") {
        route(RouteId::Message, "GET", false);
        r.org.assign(p[2]);
        r.message_id.assign(p[3]);
        return r;
    }
    return r;
}

Response error(int status, std::string_view code, std::string_view message) {
    Json j(json_object());
    json_object_set_new(j.get(), "success", json_false());
    json_object_set_new(j.get(), "error", json_stringn(message.data(), message.size()));
    json_object_set_new(j.get(), "code", json_stringn(code.data(), code.size()));
    return Response{status, dump(j.get()), {}, {}};
}

Response error_with_id(int status, std::string_view code, std::string_view message, std::string_view message_id) {
    Json j(json_object());
    json_object_set_new(j.get(), "success", json_false());
    json_object_set_new(j.get(), "error", json_stringn(message.data(), message.size()));
    json_object_set_new(j.get(), "code", json_stringn(code.data(), code.size()));
    json_object_set_new(j.get(), "message_id", json_stringn(message_id.data(), message_id.size()));
    return Response{status, dump(j.get()), {}, {}};
}

Response error_for_status(int status) {
    struct Known {
        int status;
        const char* code;
        const char* message;
    };
    static const Known known[] = {
        {400, "bad_request", "the request is malformed"},
        {403, "forbidden", "access to this location is denied"},
        {404, "not_found", "unknown route"},
        {405, "method_not_allowed", "method not allowed on this route"},
        {408, "timeout", "the request was not received in time"},
        {411, "length_required", "the request needs a Content-Length"},
        {413, "body_too_large", "request body is larger than whatsapp_max_body"},
        {414, "uri_too_long", "the request URI is too long"},
        {429, "rate_limited", "too many requests"},
        {500, "internal_error", "internal server error"},
        {501, "not_implemented", "not implemented"},
        {502, "bad_gateway", "bad gateway"},
        {503, "unavailable", "service unavailable; retry shortly"},
        {504, "timeout", "gateway timeout"},
    };
    for (const Known& k : known) {
        if (k.status == status) return error(status, k.code, k.message);
    }
    return error(status, "http_" + std::to_string(status), "the request failed with HTTP status " + std::to_string(status));
}

bool is_json_content_type(std::string_view ct) {
    size_t semi = ct.find(';');
    std::string_view type = ct.substr(0, semi);
    while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
    while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
    static const char kJson[] = "application/json";
    if (type.size() != sizeof(kJson) - 1) return false;
    for (size_t i = 0; i < type.size(); i++) {
        if (std::tolower(static_cast<unsigned char>(type[i])) != kJson[i]) return false;
    }
    return true;
}

// organization_id: a JSON string, or a JSON integer ("23" and 23 are the same organization).
static bool org_from_json(json_t* v, std::string& out) {
    if (json_is_string(v)) {
        out.assign(json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v)) {
        out = std::to_string(json_integer_value(v));
    } else {
        return false;
    }
    return valid_org_id(out);
}

// A "phone" field: digits (string or number), normalized with the default region.
static bool phone_field(json_t* phone, std::string_view default_region, std::string& out, Response& err) {
    std::string in;
    if (json_is_string(phone)) in.assign(json_string_value(phone), json_string_length(phone));
    else if (json_is_integer(phone)) in = std::to_string(json_integer_value(phone));
    else {
        err = error(400, "invalid_phone", "phone must be a string of digits");
        return false;
    }
    PhoneResult pr = normalize_phone(in, default_region);
    if (!pr.ok) {
        err = error(400, "invalid_phone", "phone is not a valid number: " + pr.error);
        return false;
    }
    out = pr.digits;
    return true;
}

// POST /api/pairing-code {"organization_id","phone"}: the phone number of the WhatsApp account that will
// enter the code, in international form (whatsmeow PairPhone rejects short or 0-prefixed numbers).
static bool parse_pairing_code(json_t* root, std::string_view default_region, Command& cmd, Response& err) {
    cmd.type = Command::PairingCode;
    json_t* phone = json_object_get(root, "phone");
    if (!phone || json_is_null(phone)) {
        err = error(400, "missing_field", "phone is required");
        return false;
    }
    std::string in;
    if (json_is_string(phone)) in.assign(json_string_value(phone), json_string_length(phone));
    else if (json_is_integer(phone)) in = std::to_string(json_integer_value(phone));
    PhoneResult pr = normalize_phone(in, default_region);
    if (in.empty() || !pr.ok) {
        err = error(400, "invalid_phone", "phone is not a valid number" + (pr.error.empty() ? std::string() : ": " + pr.error));
        return false;
    }
    cmd.phone = pr.digits;
    return true;
}

// "phone" or "jid" of a send (send-message, send-media).
static bool recipient_fields(json_t* root, std::string_view default_region, Command& cmd, Response& err) {
    json_t* phone = json_object_get(root, "phone");
    json_t* jid = json_object_get(root, "jid");
    if ((!phone || json_is_null(phone)) && jid && !json_is_null(jid)) {
        // "jid" instead of "phone": send to a JID as given (a sender known only by its LID).
        Jid j;
        if (!json_is_string(jid) || !Jid::parse(json_string_value(jid), j) || j.user.empty() || j.has_device ||
            !(j.is_pn() || j.is_lid())) {
            err = error(400, "invalid_jid", "jid must be a user JID like 573001234567@s.whatsapp.net or 1234@lid");
            return false;
        }
        cmd.jid = j.to_string();
        if (j.is_pn()) cmd.phone = j.user;
        return true;
    }
    if (!phone || json_is_null(phone)) {
        err = error(400, "missing_field", "phone is required");
        return false;
    }
    return phone_field(phone, default_region, cmd.phone, err);
}

static bool idempotency_field(json_t* root, std::string_view idempotency_header, Command& cmd, Response& err) {
    json_t* key = json_object_get(root, "idempotency_key");
    if (key && !json_is_null(key)) {
        if (!json_is_string(key)) {
            err = error(400, "invalid_json", "idempotency_key must be a string");
            return false;
        }
        cmd.idempotency_key.assign(json_string_value(key), json_string_length(key));
    } else {
        cmd.idempotency_key.assign(idempotency_header);
    }
    if (cmd.idempotency_key.size() > 128) {
        err = error(400, "invalid_json", "idempotency key is longer than 128 bytes");
        return false;
    }
    return true;
}

bool parse_command(RouteId route, std::string_view body, std::string_view default_region,
                   std::string_view idempotency_header, Command& cmd, Response& err, const OrgGate& gate) {
    json_error_t je;
    // NUL is allowed through the parser so that an id or phone holding one is reported as the invalid
    // field it is, not as broken JSON.
    Json root(json_loadb(body.data(), body.size(), JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je));
    if (!root) {
        err = error(400, "invalid_json", std::string("request body is not valid JSON: ") + je.text);
        return false;
    }
    if (!json_is_object(root.get())) {
        err = error(400, "invalid_json", "request body must be a JSON object");
        return false;
    }
    json_t* org = json_object_get(root.get(), "organization_id");
    if (!org || json_is_null(org)) {
        err = error(400, "missing_field", "organization_id is required");
        return false;
    }
    if (!org_from_json(org, cmd.org)) {
        err = error(400, "invalid_organization_id",
                    "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'");
        return false;
    }
    if (gate && !gate(cmd.org, err)) return false;
    switch (route) {
    case RouteId::StartSession: cmd.type = Command::Start; return true;
    case RouteId::Logout: cmd.type = Command::Logout; return true;
    case RouteId::ClearSession: cmd.type = Command::Clear; return true;
    case RouteId::Purge: cmd.type = Command::Purge; return true;
    case RouteId::WebhooksSet: {
        cmd.type = Command::WebhookSet;
        json_t* url = json_object_get(root.get(), "url");
        json_t* events = json_object_get(root.get(), "events");
        if (url && !json_is_null(url)) {
            wa::http::Url u;
            std::string why;
            if (!json_is_string(url) || json_string_length(url) > 2048 ||
                !wa::http::parse_url(json_string_value(url), u, &why)) {
                err = error(400, "invalid_field", "url: " + (why.empty() ? std::string("must be a string") : why));
                return false;
            }
            cmd.url = json_string_value(url);
        }
        if (events && !json_is_null(events)) {
            if (!json_is_array(events)) {
                err = error(400, "invalid_field", "events must be an array of event types");
                return false;
            }
            size_t i;
            json_t* v;
            json_array_foreach(events, i, v) {
                if (!json_is_string(v) || !wa::webhook::known_type(json_string_value(v))) {
                    err = error(400, "invalid_field", "events: unknown event type");
                    return false;
                }
                if (!cmd.events.empty()) cmd.events += ",";
                cmd.events += json_string_value(v);
            }
        }
        return true;
    }
    case RouteId::WebhooksReplay: {
        cmd.type = Command::WebhookReplay;
        json_t* id = json_object_get(root.get(), "id");
        if (id && !json_is_null(id)) {
            if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 64) {
                err = error(400, "invalid_field", "id must be an event id (\"evt_...\")");
                return false;
            }
            cmd.message.assign(json_string_value(id), json_string_length(id));
        }
        return true;
    }
    case RouteId::SendMessage: break;
    case RouteId::PairingCode: return parse_pairing_code(root.get(), default_region, cmd, err);
    default: err = error(404, "not_found", "unknown route"); return false;
    }
    cmd.type = Command::Send;
    if (!recipient_fields(root.get(), default_region, cmd, err)) return false;
    json_t* message = json_object_get(root.get(), "message");
    if (!message || json_is_null(message)) {
        err = error(400, "missing_field", "message is required");
        return false;
    }
    if (!json_is_string(message) || json_string_length(message) == 0 ||
        std::memchr(json_string_value(message), '\0', json_string_length(message))) {
        err = error(400, "invalid_message", "message must be a non-empty string without NUL characters");
        return false;
    }
    // WhatsApp's own limit for a text message is 65536 characters; bytes bound it from above.
    if (json_string_length(message) > 65536 * 4) {
        err = error(400, "invalid_message", "message is longer than 65536 characters");
        return false;
    }
    cmd.message.assign(json_string_value(message), json_string_length(message));
    return idempotency_field(root.get(), idempotency_header, cmd, err);
}

static const char* const kTypeNames[] = {"start", "send", "logout", "clear", "pairing_code", "purge",
                                         "message_get", "message_list", "contact", "webhook_dead", "webhook_replay", "webhook_set",
                                         "send_media"};

std::string command_to_json(const Command& cmd) {
    Json j(json_object());
    json_object_set_new(j.get(), "type", json_string(kTypeNames[cmd.type]));
    json_object_set_new(j.get(), "organization_id", json_stringn(cmd.org.data(), cmd.org.size()));
    if (cmd.type == Command::PairingCode || cmd.type == Command::Contact)
        json_object_set_new(j.get(), "phone", json_stringn(cmd.phone.data(), cmd.phone.size()));
    if (cmd.type == Command::MessageGet || cmd.type == Command::WebhookReplay)
        json_object_set_new(j.get(), "message", json_stringn(cmd.message.data(), cmd.message.size()));
    if (cmd.type == Command::MessageList || cmd.type == Command::WebhookDead) {
        json_object_set_new(j.get(), "direction", json_stringn(cmd.direction.data(), cmd.direction.size()));
        json_object_set_new(j.get(), "cursor", json_stringn(cmd.cursor.data(), cmd.cursor.size()));
        json_object_set_new(j.get(), "limit", json_integer(cmd.limit));
    }
    if (cmd.type == Command::WebhookSet) {
        json_object_set_new(j.get(), "url", json_stringn(cmd.url.data(), cmd.url.size()));
        json_object_set_new(j.get(), "events", json_stringn(cmd.events.data(), cmd.events.size()));
    }
    if ((cmd.type == Command::Send || cmd.type == Command::SendMedia) && !cmd.jid.empty())
        json_object_set_new(j.get(), "jid", json_stringn(cmd.jid.data(), cmd.jid.size()));
    if (cmd.type == Command::SendMedia) {
        json_object_set_new(j.get(), "media_type", json_stringn(cmd.media_type.data(), cmd.media_type.size()));
        json_object_set_new(j.get(), "filename", json_stringn(cmd.filename.data(), cmd.filename.size()));
        json_object_set_new(j.get(), "mimetype", json_stringn(cmd.mimetype.data(), cmd.mimetype.size()));
        json_object_set_new(j.get(), "spool", json_stringn(cmd.spool.data(), cmd.spool.size()));
        json_object_set_new(j.get(), "media_size", json_integer(static_cast<json_int_t>(cmd.media_size)));
        json_object_set_new(j.get(), "media_sha256", json_stringn(cmd.media_sha256.data(), cmd.media_sha256.size()));
    }
    if (cmd.type == Command::Send || cmd.type == Command::SendMedia) {
        json_object_set_new(j.get(), "phone", json_stringn(cmd.phone.data(), cmd.phone.size()));
        json_object_set_new(j.get(), "message", json_stringn(cmd.message.data(), cmd.message.size()));
        if (!cmd.idempotency_key.empty())
            json_object_set_new(j.get(), "idempotency_key",
                                json_stringn(cmd.idempotency_key.data(), cmd.idempotency_key.size()));
    }
    return dump(j.get());
}

bool command_from_json(std::string_view text, Command& cmd) {
    Json j(json_loadb(text.data(), text.size(), JSON_ALLOW_NUL, nullptr));
    if (!j || !json_is_object(j.get())) return false;
    const char* type = json_string_value(json_object_get(j.get(), "type"));
    const char* org = json_string_value(json_object_get(j.get(), "organization_id"));
    if (!type || !org) return false;
    bool found = false;
    for (uint8_t i = 0; i < sizeof(kTypeNames) / sizeof(kTypeNames[0]); i++) {
        if (std::strcmp(type, kTypeNames[i]) == 0) {
            cmd.type = static_cast<Command::Type>(i);
            found = true;
        }
    }
    cmd.org = org;
    if (!found || !valid_org_id(cmd.org)) return false;
    if (cmd.type == Command::PairingCode || cmd.type == Command::Contact) {
        const char* p = json_string_value(json_object_get(j.get(), "phone"));
        if (!p) return false;
        cmd.phone = p;
    }
    if (cmd.type == Command::MessageGet || cmd.type == Command::WebhookReplay) {
        json_t* m = json_object_get(j.get(), "message");
        if (!json_is_string(m)) return false;
        cmd.message.assign(json_string_value(m), json_string_length(m));
    }
    if (cmd.type == Command::MessageList || cmd.type == Command::WebhookDead) {
        const char* d = json_string_value(json_object_get(j.get(), "direction"));
        const char* c = json_string_value(json_object_get(j.get(), "cursor"));
        cmd.direction = d ? d : "";
        cmd.cursor = c ? c : "";
        cmd.limit = static_cast<uint32_t>(json_integer_value(json_object_get(j.get(), "limit")));
    }
    if (cmd.type == Command::WebhookSet) {
        const char* u = json_string_value(json_object_get(j.get(), "url"));
        const char* e = json_string_value(json_object_get(j.get(), "events"));
        if (!u || !e) return false;
        cmd.url = u;
        cmd.events = e;
    }
    if (cmd.type == Command::SendMedia) {
        json_t* t = json_object_get(j.get(), "media_type");
        json_t* f = json_object_get(j.get(), "filename");
        json_t* mt = json_object_get(j.get(), "mimetype");
        json_t* sp = json_object_get(j.get(), "spool");
        json_t* sz = json_object_get(j.get(), "media_size");
        json_t* sh = json_object_get(j.get(), "media_sha256");
        if (!json_is_string(t) || !json_is_string(f) || !json_is_string(mt) || !json_is_string(sp) || !json_is_integer(sz) ||
            !json_is_string(sh) || json_integer_value(sz) < 0)
            return false;
        cmd.media_type = json_string_value(t);
        cmd.filename.assign(json_string_value(f), json_string_length(f));
        cmd.mimetype = json_string_value(mt);
        cmd.spool = json_string_value(sp);
        cmd.media_size = static_cast<uint64_t>(json_integer_value(sz));
        cmd.media_sha256 = json_string_value(sh);
        if (!valid_spool_name(cmd.spool)) return false;
    }
    if (cmd.type == Command::Send || cmd.type == Command::SendMedia) {
        json_t* m = json_object_get(j.get(), "message");
        const char* p = json_string_value(json_object_get(j.get(), "phone"));
        if (!json_is_string(m) || !p) return false;
        cmd.phone = p;
        cmd.message.assign(json_string_value(m), json_string_length(m));
        json_t* k = json_object_get(j.get(), "idempotency_key");
        if (json_is_string(k)) cmd.idempotency_key.assign(json_string_value(k), json_string_length(k));
        const char* jid = json_string_value(json_object_get(j.get(), "jid"));
        cmd.jid = jid ? jid : "";
    }
    return true;
}

std::string send_body_hash(const Command& cmd) {
    std::string in = cmd.jid.empty() ? "phone:" + cmd.phone : "jid:" + cmd.jid;
    in.push_back('\0');
    in += cmd.message;
    if (cmd.type == Command::SendMedia) {
        for (const std::string* f : {&cmd.media_type, &cmd.filename, &cmd.mimetype, &cmd.media_sha256}) {
            in.push_back('\0');
            in += *f;
        }
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(in.data()), in.size(), md);
    return std::string(reinterpret_cast<char*>(md), sizeof md);
}

// One query parameter's raw value ("" when absent). Values here are plain tokens: no decoding needed.
static std::string query_arg(std::string_view q, std::string_view name) {
    while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view kv = q.substr(0, amp);
        if (kv.size() > name.size() && kv.substr(0, name.size()) == name && kv[name.size()] == '=')
            return std::string(kv.substr(name.size() + 1));
        if (amp == std::string_view::npos) break;
        q.remove_prefix(amp + 1);
    }
    return {};
}

bool read_command(const Route& route, std::string_view query, std::string_view default_region, Command& cmd,
                  Response& err) {
    cmd.org = route.id == RouteId::WebhooksDead ? query_arg(query, "organization_id") : route.org;
    if (!valid_org_id(cmd.org)) {
        err = error(400, "invalid_organization_id", "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'");
        return false;
    }
    if (route.id == RouteId::Message) {
        cmd.type = Command::MessageGet;
        cmd.message = route.message_id;
        if (cmd.message.empty() || cmd.message.size() > 128) {
            err = error(404, "not_found", "unknown message id");
            return false;
        }
        return true;
    }
    if (route.id == RouteId::Contact) {
        cmd.type = Command::Contact;
        PhoneResult pr = normalize_phone(route.message_id, default_region);
        if (!pr.ok) {
            err = error(400, "invalid_phone", "phone is not a valid number: " + pr.error);
            return false;
        }
        cmd.phone = pr.digits;
        return true;
    }
    if (route.id == RouteId::WebhooksDead) {
        cmd.type = Command::WebhookDead;
        cmd.cursor = query_arg(query, "cursor");
        std::string limit = query_arg(query, "limit");
        uint32_t n = 100;
        if (!limit.empty() && (!parse_jid_number(limit, 1000, n) || n == 0)) {
            err = error(400, "invalid_parameter", "limit must be a number from 1 to 1000");
            return false;
        }
        cmd.limit = n;
        if (cmd.cursor.size() > 20 || cmd.cursor.find_first_not_of("0123456789") != std::string::npos) {
            err = error(400, "invalid_parameter", "cursor is not one of ours");
            return false;
        }
        return true;
    }
    cmd.type = Command::MessageList;
    cmd.direction = query_arg(query, "direction");
    std::string limit = query_arg(query, "limit");
    cmd.cursor = query_arg(query, "cursor");
    uint32_t n = 100;
    if (!limit.empty() && (!parse_jid_number(limit, 1000, n) || n == 0)) {
        err = error(400, "invalid_parameter", "limit must be a number from 1 to 1000");
        return false;
    }
    cmd.limit = n;
    if (!cmd.direction.empty() && cmd.direction != "in" && cmd.direction != "out") {
        err = error(400, "invalid_parameter", "direction must be in or out");
        return false;
    }
    if (cmd.cursor.size() > 256) {
        err = error(400, "invalid_parameter", "cursor is not one of ours");
        return false;
    }
    return true;
}

std::string iso8601(int64_t unix_s) {
    if (unix_s <= 0) return "";
    time_t t = static_cast<time_t>(unix_s);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static json_t* time_or_null(int64_t t) {
    std::string s = iso8601(t);
    return s.empty() ? json_null() : json_string(s.c_str());
}

static json_t* status_object(const StatusView& v, int64_t now, bool with_org) {
    const SessionStatus& s = v.status;
    bool qr = s.state == State::QrReady && !v.qr_data_url.empty();
    json_t* j = json_object();
    if (with_org) json_object_set_new(j, "organization_id", json_string(v.org.c_str()));
    else json_object_set_new(j, "success", json_true());
    json_object_set_new(j, "status", json_string(state_name(s.state)));
    json_object_set_new(j, "connected", json_boolean(s.state == State::Connected));
    json_object_set_new(j, "has_qr", json_boolean(qr));
    json_object_set_new(j, "phone_number", str_or_null(s.phone));
    json_object_set_new(j, "phone", str_or_null(s.phone));
    if (!with_org) json_object_set_new(j, "qr", qr ? str_or_null(v.qr_data_url) : json_null());
    json_object_set_new(j, "last_error", str_or_null(s.last_error));
    json_object_set_new(j, "retry_count", json_integer(s.retry_count));
    json_object_set_new(j, "connected_at", time_or_null(s.connected_at));
    json_object_set_new(j, "state_since", time_or_null(s.state_since));
    json_object_set_new(j, "next_retry_in",
                        s.next_retry_at > 0 ? json_integer(s.next_retry_at > now ? s.next_retry_at - now : 0)
                                            : json_null());
    // Present only while WhatsApp restricts the number (463 / reach-out timelock): sends answer 429 until then.
    if (s.restricted_until > now) json_object_set_new(j, "restricted_until", time_or_null(s.restricted_until));
    return j;
}

std::string status_json(const StatusView& v, int64_t now) {
    Json j(status_object(v, now, false));
    return dump(j.get());
}

std::string qr_json(const StatusView& v, int64_t now) {
    Json j(json_object());
    bool qr = v.status.state == State::QrReady && !v.qr_data_url.empty();
    json_object_set_new(j.get(), "success", json_boolean(qr));
    if (qr) {
        json_object_set_new(j.get(), "qr", str_or_null(v.qr_data_url));
        json_object_set_new(j.get(), "qr_text", str_or_null(v.status.qr_text));
        json_object_set_new(j.get(), "expires_in", json_integer(v.qr_expires_at > now ? v.qr_expires_at - now : 0));
    } else {
        json_object_set_new(j.get(), "qr", json_null());
    }
    json_object_set_new(j.get(), "status", json_string(state_name(v.status.state)));
    return dump(j.get());
}

std::string status_json_with_org(const StatusView& v, int64_t now) {
    Json j(status_object(v, now, false));
    json_object_set_new(j.get(), "organization_id", json_stringn(v.org.data(), v.org.size()));
    return dump(j.get());
}

std::string qr_json_with_org(const StatusView& v, int64_t now) {
    Json j(json_loads(qr_json(v, now).c_str(), 0, nullptr));
    if (!j) return "{}";
    json_object_set_new(j.get(), "organization_id", json_stringn(v.org.data(), v.org.size()));
    return dump(j.get());
}

namespace {

// Everything before `suffix` in `doc`, which must end with it ("" otherwise: the caller's layout is wrong).
std::string head_before(const std::string& doc, std::string_view suffix) {
    if (doc.size() < suffix.size() || doc.compare(doc.size() - suffix.size(), suffix.size(), suffix) != 0) return {};
    return doc.substr(0, doc.size() - suffix.size());
}

char* put(char* out, std::string_view s) {
    std::memcpy(out, s.data(), s.size());
    return out + s.size();
}

char* put_int(char* out, int64_t v) {
    char digits[24];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    do {
        digits[n++] = static_cast<char>('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *out++ = '-';
    while (n) *out++ = digits[--n];
    return out;
}

}  // namespace

std::string status_json_head(const StatusView& v) {
    StatusView fixed = v;
    fixed.status.next_retry_at = 0;
    fixed.status.restricted_until = 0;
    return head_before(status_json(fixed, 0), "null}");
}

size_t status_json_tail(char* out, int64_t next_retry_at, int64_t restricted_until, int64_t now) {
    char* p = out;
    if (next_retry_at > 0) p = put_int(p, next_retry_at > now ? next_retry_at - now : 0);
    else p = put(p, "null");
    if (restricted_until > now) {
        time_t t = static_cast<time_t>(restricted_until);
        struct tm tm;
        char iso[32];
        gmtime_r(&t, &tm);
        size_t n = strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
        p = put(p, ",\"restricted_until\":\"");
        p = put(p, std::string_view(iso, n));
        p = put(p, "\"");
    }
    *p++ = '}';
    return static_cast<size_t>(p - out);
}

std::string qr_json_head(const StatusView& v) {
    if (v.status.state != State::QrReady || v.qr_data_url.empty()) return {};
    StatusView fixed = v;
    fixed.qr_expires_at = 0;
    return head_before(qr_json(fixed, 0), "0,\"status\":\"qr_ready\"}");
}

size_t qr_json_tail(char* out, int64_t qr_expires_at, int64_t now) {
    char* p = put_int(out, qr_expires_at > now ? qr_expires_at - now : 0);
    p = put(p, ",\"status\":\"qr_ready\"}");
    return static_cast<size_t>(p - out);
}

std::string dashboard_json(const StatusView& v, uint64_t sent_today, uint64_t failed_today, int64_t now) {
    Json j(status_object(v, now, true));
    json_object_set_new(j.get(), "has_qr", json_boolean(v.status.state == State::QrReady));
    json_object_set_new(j.get(), "wanted", json_boolean(v.status.wanted));
    json_object_set_new(j.get(), "restricted_until",
                        v.status.restricted_until > now ? time_or_null(v.status.restricted_until) : json_null());
    json_object_set_new(j.get(), "sent_today", json_integer(static_cast<json_int_t>(sent_today)));
    json_object_set_new(j.get(), "failed_today", json_integer(static_cast<json_int_t>(failed_today)));
    return dump(j.get());
}

std::string ok_status_json(State s) {
    Json j(json_object());
    json_object_set_new(j.get(), "success", json_true());
    json_object_set_new(j.get(), "status", json_string(state_name(s)));
    return dump(j.get());
}

std::string health_json() { return "{\"status\":\"ok\"}"; }

static json_t* limits_json(const SessionLimits& l) {
    json_t* j = json_object();
    json_object_set_new(j, "max_sessions", json_integer(static_cast<json_int_t>(l.max_sessions)));
    const char* from = l.configured ? "whatsapp_max_sessions"
                       : l.worker_connections <= l.open_files ? "worker_connections" : "open_files";
    json_object_set_new(j, "max_sessions_from", json_string(from));
    json_object_set_new(j, "worker_connections", json_integer(static_cast<json_int_t>(l.worker_connections)));
    json_object_set_new(j, "open_files", json_integer(static_cast<json_int_t>(l.open_files)));
    return j;
}

std::string api_health_json(const HelperInfo& h, const StateCounts& sessions, const ZoneUse& z,
                            const SessionLimits& limits, int64_t now) {
    Json j(json_object());
    json_object_set_new(j.get(), "success", json_true());
    json_object_set_new(j.get(), "status", json_string(h.active && h.reason.empty() ? "ok" : "degraded"));
    json_t* helper = json_object();
    json_object_set_new(helper, "state", json_string(h.role.c_str()));
    json_object_set_new(helper, "pid", h.pid ? json_integer(h.pid) : json_null());
    json_object_set_new(helper, "uptime_s", h.started_at ? json_integer(now - h.started_at) : json_null());
    json_object_set_new(helper, "generation", json_integer(static_cast<json_int_t>(h.generation)));
    json_object_set_new(helper, "loop_lag_max_ms", h.loop_lag_max_ms >= 0 ? json_integer(h.loop_lag_max_ms) : json_null());
    json_object_set_new(helper, "reason", h.reason.empty() ? json_null() : json_string(h.reason.c_str()));
    json_object_set_new(j.get(), "helper", helper);
    json_t* by_state = json_object();
    for (size_t i = 0; i < kStateCount; i++)
        json_object_set_new(by_state, state_name(static_cast<State>(i)), json_integer(static_cast<json_int_t>(sessions[i])));
    json_object_set_new(j.get(), "sessions", by_state);
    json_t* shm = json_object();
    json_object_set_new(shm, "size", json_integer(static_cast<json_int_t>(z.size)));
    json_object_set_new(shm, "used", json_integer(static_cast<json_int_t>(z.used)));
    json_object_set_new(shm, "organizations", json_integer(static_cast<json_int_t>(z.organizations)));
    json_object_set_new(shm, "queue_length", json_integer(static_cast<json_int_t>(z.queue_len)));
    json_object_set_new(shm, "queue_max", json_integer(static_cast<json_int_t>(z.queue_max)));
    json_object_set_new(j.get(), "shared_memory", shm);
    json_object_set_new(j.get(), "limits", limits_json(limits));
    return dump(j.get());
}

static bool page_limit(std::string_view v, size_t& out) {
    if (v.empty() || v.size() > 4) return false;
    size_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<size_t>(c - '0');
    }
    if (n < 1 || n > kPageMax) return false;
    out = n;
    return true;
}

bool parse_page_query(std::string_view args, PageQuery& q, Response& err) {
    while (!args.empty()) {
        size_t amp = args.find('&');
        std::string_view kv = args.substr(0, amp);
        args = amp == std::string_view::npos ? std::string_view() : args.substr(amp + 1);
        size_t eq = kv.find('=');
        std::string_view key = kv.substr(0, eq), value = eq == std::string_view::npos ? "" : kv.substr(eq + 1);
        if (key == "limit" && !page_limit(value, q.limit)) {
            err = error(400, "invalid_parameter",
                        "limit must be a whole number from 1 to " + std::to_string(kPageMax));
            return false;
        }
        if (key == "cursor") {
            // Cursors are organization ids: nothing in them needs percent-encoding.
            if (!value.empty() && !valid_org_id(value)) {
                err = error(400, "invalid_parameter", "cursor must be the next_cursor of a previous page");
                return false;
            }
            q.cursor.assign(value);
        }
    }
    return true;
}

std::string connections_json(const std::vector<StatusView>& items, const std::string& next_cursor, uint64_t total,
                             int64_t now) {
    Json j(json_object());
    json_object_set_new(j.get(), "success", json_true());
    json_t* list = json_array();
    for (const auto& o : items) json_array_append_new(list, status_object(o, now, true));
    json_object_set_new(j.get(), "items", list);
    json_object_set_new(j.get(), "next_cursor", str_or_null(next_cursor));
    json_object_set_new(j.get(), "total", json_integer(static_cast<json_int_t>(total)));
    return dump(j.get());
}

}  // namespace wa::api

// ---- POST /api/send-media ---------------------------------------------------------------------------------------

namespace wa::api {

bool valid_spool_name(std::string_view name) {
    if (name.size() != 32) return false;
    for (char c : name)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

static std::string lower(std::string_view s) {
    std::string o(s);
    for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return o;
}

static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The value of parameter `name` in a header value like `form-data; name="file"; filename="a.pdf"` (quoted or a
// token); false when absent. Quoted strings may escape with '\'.
static bool header_param(std::string_view v, std::string_view name, std::string& out) {
    size_t i = v.find(';');
    while (i != std::string_view::npos) {
        v.remove_prefix(i + 1);
        std::string_view rest = trim(v);
        size_t eq = rest.find('=');
        if (eq == std::string_view::npos) return false;
        std::string key = lower(trim(rest.substr(0, eq)));
        std::string_view val = rest.substr(eq + 1);
        std::string parsed;
        size_t used = 0;
        if (!val.empty() && val[0] == '"') {
            size_t k = 1;
            for (; k < val.size() && val[k] != '"'; k++) {
                if (val[k] == '\\' && k + 1 < val.size()) k++;
                parsed.push_back(val[k]);
            }
            if (k >= val.size()) return false;  // unterminated
            used = k + 1;
        } else {
            size_t semi = val.find(';');
            parsed = std::string(trim(val.substr(0, semi)));
            used = semi == std::string_view::npos ? val.size() : semi;
        }
        if (key == name) {
            out = parsed;
            return true;
        }
        v = rest.substr(eq + 1 + used);
        i = v.find(';');
    }
    return false;
}

bool multipart_boundary(std::string_view content_type, std::string& boundary) {
    std::string_view main = trim(content_type.substr(0, content_type.find(';')));
    if (lower(main) != "multipart/form-data") return false;
    if (!header_param(content_type, "boundary", boundary)) return false;
    // RFC 2046: 1-70 characters.
    return !boundary.empty() && boundary.size() <= 70 && boundary.find_first_of("\r\n") == std::string::npos;
}

namespace {

struct Part {
    std::string name, filename, content_type;
    std::string_view data;
};

// RFC 7578 multipart/form-data: at most `max_parts` parts, each with headers of at most 8 KiB.
bool parse_multipart(std::string_view body, const std::string& boundary, std::vector<Part>& parts, std::string& why) {
    const std::string delim = "--" + boundary;
    const std::string next = "\r\n" + delim;
    size_t pos = body.find(delim);
    if (pos == std::string_view::npos) return why = "no multipart boundary in the body", false;
    pos += delim.size();
    for (;;) {
        if (body.substr(pos, 2) == "--") return true;  // the closing delimiter
        // Transport padding (spaces) may follow a delimiter, then CRLF.
        while (pos < body.size() && (body[pos] == ' ' || body[pos] == '\t')) pos++;
        if (body.substr(pos, 2) != "\r\n") return why = "malformed multipart delimiter", false;
        pos += 2;
        if (parts.size() >= 16) return why = "more than 16 multipart parts", false;
        size_t head_end = body.find("\r\n\r\n", pos);
        if (head_end == std::string_view::npos || head_end - pos > 8192) return why = "malformed multipart part headers", false;
        Part part;
        std::string_view head = body.substr(pos, head_end - pos);
        bool disposition = false;
        while (!head.empty()) {
            size_t eol = head.find("\r\n");
            std::string_view line = head.substr(0, eol);
            head = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
            size_t colon = line.find(':');
            if (colon == std::string_view::npos) return why = "malformed multipart part header", false;
            std::string key = lower(trim(line.substr(0, colon)));
            std::string_view val = trim(line.substr(colon + 1));
            if (key == "content-disposition") {
                if (lower(trim(val.substr(0, val.find(';')))) != "form-data" || !header_param(val, "name", part.name))
                    return why = "a multipart part without form-data; name=…", false;
                header_param(val, "filename", part.filename);
                disposition = true;
            } else if (key == "content-type") {
                part.content_type = std::string(val);
            }
        }
        if (!disposition) return why = "a multipart part without Content-Disposition", false;
        size_t start = head_end + 4;
        size_t end = body.find(next, start);
        if (end == std::string_view::npos) return why = "multipart body ends without its closing boundary", false;
        part.data = body.substr(start, end - start);
        for (const Part& p : parts)
            if (p.name == part.name) return why = "multipart field \"" + part.name + "\" given twice", false;
        parts.push_back(std::move(part));
        pos = end + next.size();
    }
}

bool printable_utf8_field(std::string_view v) {
    for (unsigned char c : v)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

// A MIME type: type "/" subtype of token characters (RFC 6838), parameters allowed after ';'.
bool valid_mimetype(std::string_view m) {
    if (m.empty() || m.size() > 127) return false;
    std::string_view t = trim(m.substr(0, m.find(';')));
    size_t slash = t.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 == t.size()) return false;
    for (size_t i = 0; i < t.size(); i++) {
        char c = t[i];
        if (i == slash) continue;
        if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$&-^_.+", c))) return false;
    }
    return printable_utf8_field(m);
}

// ---- a JSON body's "data" string, found without parsing the rest of the body

size_t skip_ws(std::string_view b, size_t i) {
    while (i < b.size() && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) i++;
    return i;
}

// `i` at an opening quote: the index after the closing one, npos when the string does not end.
size_t skip_string(std::string_view b, size_t i) {
    for (i++; i < b.size(); i++) {
        if (b[i] == '\\') i++;
        else if (b[i] == '"') return i + 1;
    }
    return std::string_view::npos;
}

// `i` at a value: the index after it (objects and arrays by their brackets, strings skipped whole); npos when the
// body ends first. Nothing is validated: jansson does that.
size_t skip_value(std::string_view b, size_t i) {
    if (i >= b.size()) return std::string_view::npos;
    if (b[i] == '"') return skip_string(b, i);
    if (b[i] == '{' || b[i] == '[') {
        int depth = 0;
        while (i < b.size()) {
            char c = b[i];
            if (c == '"') {
                i = skip_string(b, i);
                if (i == std::string_view::npos) return i;
                continue;
            }
            if (c == '{' || c == '[') depth++;
            if ((c == '}' || c == ']') && --depth == 0) return i + 1;
            i++;
        }
        return std::string_view::npos;
    }
    while (i < b.size() && !std::strchr(",}] \t\r\n", b[i])) i++;
    return i;
}

// The top-level "data" member's string, between its quotes ([begin, end)), and its length once unescaped, when
// the string is plain: printable ASCII and the escapes \" \\ \/ \b \f \n \r \t only (what base64 from any JSON
// encoder looks like). False otherwise (absent, not a string, \u escapes, other bytes, a body this scan does not
// follow): the caller then lets jansson parse the whole body, which is always correct, only heavier.
bool find_plain_data(std::string_view b, size_t& begin, size_t& end, size_t& unescaped) {
    size_t i = skip_ws(b, 0);
    if (i >= b.size() || b[i] != '{') return false;
    i++;
    for (;;) {
        i = skip_ws(b, i);
        if (i >= b.size() || b[i] != '"') return false;
        size_t key_end = skip_string(b, i);
        if (key_end == std::string_view::npos) return false;
        bool is_data = b.substr(i, key_end - i) == "\"data\"";
        i = skip_ws(b, key_end);
        if (i >= b.size() || b[i] != ':') return false;
        i = skip_ws(b, i + 1);
        if (is_data) {
            if (i >= b.size() || b[i] != '"') return false;
            unescaped = 0;
            for (size_t k = i + 1; k < b.size(); k++, unescaped++) {
                unsigned char c = static_cast<unsigned char>(b[k]);
                if (c == '"') {
                    begin = i + 1;
                    end = k;
                    return true;
                }
                if (c < 0x20 || c > 0x7e) return false;
                if (c == '\\' && (k + 1 >= b.size() || !std::strchr("\"\\/bfnrt", b[++k]))) return false;
            }
            return false;
        }
        i = skip_value(b, i);
        if (i == std::string_view::npos) return false;
        i = skip_ws(b, i);
        if (i >= b.size() || b[i] != ',') return false;
        i++;
    }
}

char unescape_char(char c) {
    switch (c) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return c;  // " \\ /
    }
}

enum class Feed { Ok, Invalid, SinkRefused };

// Base64 text (JSON-escaped when `escaped`, as find_plain_data found it) decoded to `sink` piece by piece, by the
// same strict rules as base64_decode on the whole text: pieces of 64 KiB of characters, '=' only in the last one.
Feed decode_base64_to(std::string_view text, bool escaped, const FileSink& sink) {
    constexpr size_t kPiece = 65536;  // a multiple of 4
    std::string chars, out;
    chars.reserve(std::min(text.size(), kPiece));
    auto flush = [&](bool last) {
        if (!last && chars.find('=') != std::string::npos) return Feed::Invalid;
        if (!base64_decode(chars, out)) return Feed::Invalid;
        chars.clear();
        return out.empty() || sink(out) ? Feed::Ok : Feed::SinkRefused;
    };
    for (size_t i = 0; i < text.size(); i++) {
        char c = text[i];
        if (escaped && c == '\\' && i + 1 < text.size()) c = unescape_char(text[++i]);
        chars.push_back(c);
        if (chars.size() == kPiece && i + 1 < text.size()) {
            Feed f = flush(false);
            if (f != Feed::Ok) return f;
        }
    }
    return flush(true);
}

Feed feed_raw(std::string_view bytes, const FileSink& sink) {
    constexpr size_t kPiece = 49152;
    for (size_t i = 0; i < bytes.size(); i += kPiece)
        if (!sink(bytes.substr(i, kPiece))) return Feed::SinkRefused;
    return Feed::Ok;
}

}  // namespace

bool parse_send_media(std::string_view content_type, std::string_view body, std::string_view default_region,
                      std::string_view idempotency_header, uint64_t max_media, Command& cmd, const FileSink& sink,
                      Response& err, const OrgGate& gate) {
    cmd.type = Command::SendMedia;
    Json root;
    std::string boundary;
    std::string_view raw_file;    // multipart: the part's bytes; JSON: the data string's text, when found in place
    size_t data_length = 0;       // JSON: that string's length once unescaped
    bool data_in_place = false;   // JSON: raw_file is the data string's escaped text in `body`
    std::string part_filename, part_type;
    bool multipart = multipart_boundary(content_type, boundary);
    if (multipart) {
        std::vector<Part> parts;
        std::string why;
        if (!parse_multipart(body, boundary, parts, why)) {
            err = error(400, "invalid_multipart", why);
            return false;
        }
        root.reset(json_object());
        bool have_file = false;
        for (const Part& p : parts) {
            if (p.name == "file") {
                raw_file = p.data;
                part_filename = p.filename;
                part_type = p.content_type;
                have_file = true;
            } else if (p.name == "data") {
                err = error(400, "invalid_field", "multipart/form-data carries the file as the part \"file\", not \"data\"");
                return false;
            } else {
                if (p.data.size() > 65536) {
                    err = error(400, "invalid_field", "multipart field \"" + p.name + "\" is longer than 64 KiB");
                    return false;
                }
                json_object_set_new(root.get(), p.name.c_str(), json_stringn(p.data.data(), p.data.size()));
            }
        }
        if (!have_file) {
            err = error(400, "missing_field", "the file is required (multipart part \"file\")");
            return false;
        }
        if (raw_file.size() > max_media) {
            err = error(413, "media_too_large", "the file is larger than whatsapp_max_media_size");
            return false;
        }
    } else if (is_json_content_type(content_type)) {
        json_error_t je;
        size_t begin = 0, end = 0;
        if (find_plain_data(body, begin, end, data_length)) {
            // The rest of the body with "data":"" in place of the file: jansson checks it all, duplicates included.
            std::string rest;
            rest.reserve(body.size() - (end - begin));
            rest.append(body.substr(0, begin)).append(body.substr(end));
            root.reset(json_loadb(rest.data(), rest.size(), JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je));
            raw_file = body.substr(begin, end - begin);
            data_in_place = true;
        } else {
            root.reset(json_loadb(body.data(), body.size(), JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je));
        }
        if (!root) {
            err = error(400, "invalid_json", std::string("request body is not valid JSON: ") + je.text);
            return false;
        }
        if (!json_is_object(root.get())) {
            err = error(400, "invalid_json", "request body must be a JSON object");
            return false;
        }
    } else {
        err = error(415, "unsupported_media_type", "request body must be application/json or multipart/form-data");
        return false;
    }
    json_t* org = json_object_get(root.get(), "organization_id");
    if (!org || json_is_null(org)) {
        err = error(400, "missing_field", "organization_id is required");
        return false;
    }
    if (!org_from_json(org, cmd.org)) {
        err = error(400, "invalid_organization_id", "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'");
        return false;
    }
    if (gate && !gate(cmd.org, err)) return false;
    if (!recipient_fields(root.get(), default_region, cmd, err)) return false;
    auto text = [&](const char* name, std::string& out, size_t max, bool& present) {
        json_t* v = json_object_get(root.get(), name);
        present = v && !json_is_null(v);
        if (!present) return true;
        if (!json_is_string(v) || json_string_length(v) > max ||
            std::memchr(json_string_value(v), '\0', json_string_length(v))) {
            err = error(400, "invalid_field", std::string(name) + " must be a string of at most " + std::to_string(max) + " bytes");
            return false;
        }
        out.assign(json_string_value(v), json_string_length(v));
        return true;
    };
    bool has_type = false, has_name = false, has_mime = false, has_caption = false;
    if (!text("type", cmd.media_type, 16, has_type) || !text("filename", cmd.filename, 255, has_name) ||
        !text("mimetype", cmd.mimetype, 127, has_mime) || !text("caption", cmd.message, 4096, has_caption))
        return false;
    if (!has_type) {
        err = error(400, "missing_field", "type is required (\"document\" or \"image\")");
        return false;
    }
    if (cmd.media_type != "document" && cmd.media_type != "image") {
        err = error(400, "invalid_field", "type must be \"document\" or \"image\"");
        return false;
    }
    if (!has_name && !part_filename.empty()) {
        if (part_filename.size() > 255) {
            err = error(400, "invalid_field", "filename must be a string of at most 255 bytes");
            return false;
        }
        cmd.filename = part_filename;
    }
    if (!printable_utf8_field(cmd.filename) || cmd.filename.find('/') != std::string::npos) {
        err = error(400, "invalid_field", "filename must not contain control characters or '/'");
        return false;
    }
    if (!has_mime && !part_type.empty() && lower(part_type) != "application/octet-stream") cmd.mimetype = part_type;
    if (!cmd.mimetype.empty() && !valid_mimetype(cmd.mimetype)) {
        err = error(400, "invalid_field", "mimetype must look like type/subtype");
        return false;
    }
    if (!idempotency_field(root.get(), idempotency_header, cmd, err)) return false;
    // The file, to the sink, counted, its first bytes kept for the magic check.
    uint64_t total = 0;
    std::string head;
    bool too_large = false;
    FileSink counted = [&](std::string_view bytes) {
        total += bytes.size();
        if (total > max_media) return !(too_large = true);
        if (head.size() < 64) head.append(bytes.substr(0, 64 - head.size()));
        return sink(bytes);
    };
    Feed fed;
    if (multipart) {
        fed = feed_raw(raw_file, counted);
    } else {
        std::string_view text = raw_file;
        if (!data_in_place) {  // jansson holds it
            json_t* data = json_object_get(root.get(), "data");
            if (!data || json_is_null(data)) {
                err = error(400, "missing_field", "data is required (the file, base64)");
                return false;
            }
            if (!json_is_string(data)) {
                err = error(400, "invalid_media", "data must be a base64 string");
                return false;
            }
            text = std::string_view(json_string_value(data), json_string_length(data));
            data_length = text.size();
        }
        // Decoded size from the encoded length (padding aside), checked before decoding anything.
        if (data_length / 4 * 3 > max_media + 2) {
            err = error(413, "media_too_large", "the file is larger than whatsapp_max_media_size");
            return false;
        }
        fed = decode_base64_to(text, data_in_place, counted);
        if (fed == Feed::Invalid) {
            err = error(400, "invalid_media", "data is not valid base64");
            return false;
        }
    }
    if (too_large) {
        err = error(413, "media_too_large", "the file is larger than whatsapp_max_media_size");
        return false;
    }
    if (fed == Feed::SinkRefused) {
        err = error(507, "storage_error", "the file could not be spooled");
        return false;
    }
    if (total == 0) {
        err = error(400, "invalid_media", "the file is empty");
        return false;
    }
    media::Type t = cmd.media_type == "image" ? media::Type::Image : media::Type::Document;
    if (cmd.mimetype.empty()) {
        // Not declared: what the magic bytes say, else a generic document.
        cmd.mimetype = std::string(media::magic_mimetype(media::sniff(head)));
        if (cmd.mimetype.empty()) cmd.mimetype = t == media::Type::Image ? "" : "application/octet-stream";
    }
    if (!media::mimetype_consistent(t, cmd.mimetype, head)) {
        err = error(400, "invalid_media",
                    t == media::Type::Image && cmd.mimetype.rfind("image/", 0) != 0
                        ? "an image must be image/jpeg, image/png or image/webp"
                        : "the file's content does not match mimetype " + cmd.mimetype);
        return false;
    }
    if (cmd.filename.empty() && t == media::Type::Document) cmd.filename = "document";
    return true;
}

}  // namespace wa::api
