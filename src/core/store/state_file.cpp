#include "wa/store/state_file.hpp"

#include <jansson.h>

namespace wa {

std::string session_file_json(std::string_view org, const SessionStatus& s) {
    json_t* j = json_object();
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "organization_id", json_stringn(org.data(), org.size()));
    json_object_set_new(j, "wanted", json_boolean(s.wanted));
    json_object_set_new(j, "status", json_string(state_name(s.state)));
    json_object_set_new(j, "phone", json_stringn(s.phone.data(), s.phone.size()));
    json_object_set_new(j, "last_error", json_stringn(s.last_error.data(), s.last_error.size()));
    json_object_set_new(j, "retry_count", json_integer(s.retry_count));
    json_object_set_new(j, "connected_at", json_integer(s.connected_at));
    json_object_set_new(j, "state_since", json_integer(s.state_since));
    char* out = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    std::string r = out ? out : "";
    r.push_back('\n');
    free(out);
    json_decref(j);
    return r;
}

bool parse_session_file(std::string_view text, std::string_view org, SessionStatus& s, std::string& err) {
    json_error_t je;
    json_t* j = json_loadb(text.data(), text.size(), 0, &je);
    if (!j) {
        err = std::string("session.json does not parse: ") + je.text;
        return false;
    }
    bool ok = false;
    json_t* id = json_object_get(j, "organization_id");
    json_t* st = json_object_get(j, "status");
    State state;
    if (!json_is_object(j) || json_integer_value(json_object_get(j, "version")) != 1) {
        err = "session.json: unknown version";
    } else if (!json_is_string(id) || std::string_view(json_string_value(id)) != org) {
        err = "session.json: organization_id does not match its directory";
    } else if (!json_is_string(st) || !parse_state(json_string_value(st), state)) {
        err = "session.json: unknown status";
    } else {
        s = SessionStatus{};
        s.state = state;
        s.wanted = json_is_true(json_object_get(j, "wanted"));
        const char* phone = json_string_value(json_object_get(j, "phone"));
        const char* last = json_string_value(json_object_get(j, "last_error"));
        s.phone = phone ? phone : "";
        s.last_error = last ? last : "";
        s.retry_count = static_cast<uint32_t>(json_integer_value(json_object_get(j, "retry_count")));
        s.connected_at = json_integer_value(json_object_get(j, "connected_at"));
        s.state_since = json_integer_value(json_object_get(j, "state_since"));
        ok = true;
    }
    json_decref(j);
    return ok;
}

}  // namespace wa
