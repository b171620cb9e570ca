#include "core/store/message_rules.hpp"

#include <climits>

#include "wa/codec/base64.hpp"

namespace wa::store {

namespace rules {

namespace {

const char* const kTypes[] = {"text",    "image",    "document", "audio",    "video",   "sticker",
                              "reaction", "contact", "location", "protocol", "unknown"};

// The forward order of outgoing statuses; failed stands apart (-1 = not an outgoing status).
int rank(std::string_view status) {
    static const char* const kOrder[] = {"pending", "sent", "delivered", "read", "played"};
    for (int i = 0; i < 5; i++)
        if (status == kOrder[i]) return i;
    return -1;
}

int64_t* slot(StatusState& s, std::string_view status) {
    if (status == "sent") return &s.sent_at;
    if (status == "delivered") return &s.delivered_at;
    if (status == "read") return &s.read_at;
    if (status == "played") return &s.played_at;
    return nullptr;
}

const char kCursorPrefix[] = "m1:";

}  // namespace

bool valid_direction(std::string_view d) {
    return d == "out" || d == "in";
}

bool valid_type(std::string_view t) {
    for (const char* known : kTypes)
        if (t == known) return true;
    return false;
}

bool valid_status(std::string_view direction, std::string_view status) {
    if (direction == "in") return status == "received";
    if (direction == "out") return rank(status) >= 0 || status == "failed";
    return false;
}

std::string message_problem(const MessageRecord& m) {
    if (m.id.empty() || m.id.size() > kMaxMessageIdBytes)
        return "id must be 1.." + std::to_string(kMaxMessageIdBytes) + " bytes";
    if (!valid_direction(m.direction)) return "direction must be out or in";
    if (!valid_type(m.type)) return "unknown type";
    if (!valid_status(m.direction, m.status)) return "status is not one of an " + m.direction + " message";
    if (m.idempotency_key.size() > kMaxIdempotencyKeyBytes)
        return "idempotency_key is longer than " + std::to_string(kMaxIdempotencyKeyBytes) + " bytes";
    return std::string();
}

bool advance(StatusState& s, std::string_view status, int64_t at_ms, int error_code, const std::string& error,
             bool& status_changed, bool& row_changed, std::string& why) {
    status_changed = row_changed = false;
    if (!valid_status("out", status)) {
        why = "invalid status";
        return false;
    }
    bool failed_now = s.status == "failed";
    if (status == "failed") {
        if (s.status != "pending" && s.status != "sent") return true;  // too late, or failed already
        s.status = "failed";
        s.failed_at = at_ms;
        s.error_code = error_code;
        s.error = error;
        status_changed = row_changed = true;
        return true;
    }
    int64_t* when = slot(s, status);  // nullptr for pending, which never moves anything
    if (!when) return true;
    if (!failed_now && rank(status) > rank(s.status)) {
        s.status = std::string(status);
        status_changed = row_changed = true;
    }
    if (*when == 0) {
        *when = at_ms;
        row_changed = row_changed || at_ms != 0;
    }
    return true;
}

std::string encode_cursor(const Cursor& c) {
    std::string b64 = base64_encode(kCursorPrefix + std::to_string(c.created_at) + ":" + c.direction + ":" + c.id);
    std::string out;
    out.reserve(b64.size());
    for (char ch : b64) {
        if (ch == '=') break;
        out += ch == '+' ? '-' : ch == '/' ? '_' : ch;
    }
    return out;
}

bool decode_cursor(std::string_view text, Cursor& out) {
    // A cursor carries at most a 128-byte id: anything much longer is not ours.
    if (text.empty() || text.size() > 256 || text.size() % 4 == 1) return false;
    std::string b64;
    b64.reserve(text.size() + 3);
    for (char ch : text) {
        if (ch == '+' || ch == '/' || ch == '=') return false;  // base64url only, unpadded
        b64 += ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    while (b64.size() % 4) b64 += '=';
    std::string raw;
    if (!base64_decode(b64, raw)) return false;
    std::string_view v(raw);
    if (v.substr(0, sizeof kCursorPrefix - 1) != kCursorPrefix) return false;
    v.remove_prefix(sizeof kCursorPrefix - 1);
    bool negative = !v.empty() && v[0] == '-';
    if (negative) v.remove_prefix(1);
    size_t digits = 0;
    uint64_t magnitude = 0;
    while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') {
        magnitude = magnitude * 10 + static_cast<uint64_t>(v[digits] - '0');
        if (++digits > 19 || magnitude > static_cast<uint64_t>(INT64_MAX)) return false;
    }
    if (digits == 0 || digits >= v.size() || v[digits] != ':') return false;
    v.remove_prefix(digits + 1);
    size_t colon = v.find(':');
    if (colon == std::string_view::npos || !valid_direction(v.substr(0, colon))) return false;
    std::string_view id = v.substr(colon + 1);
    if (id.empty() || id.size() > kMaxMessageIdBytes) return false;
    out.created_at = negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
    out.direction = std::string(v.substr(0, colon));
    out.id = std::string(id);
    return true;
}

}  // namespace rules

bool message_cursor_valid(std::string_view cursor) {
    try {
        rules::Cursor c;
        return cursor.empty() || rules::decode_cursor(cursor, c);
    } catch (...) {  // out of memory: nothing escapes into the caller (nginx)
        return false;
    }
}

}  // namespace wa::store
