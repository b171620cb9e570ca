// What every wa::store backend applies to messages, whatever its database: which values a MessageRecord may
// hold, the forward-only status rule of advance_message_status, and the list cursor. Private to src/core/store
// (and the unit tests).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wa/store/store.hpp"

namespace wa::store::rules {

bool valid_direction(std::string_view d);        // "out" | "in"
bool valid_type(std::string_view t);             // text, image, ... unknown
bool valid_status(std::string_view direction, std::string_view status);

// Why `m` cannot be stored ("" when it can). Names the field, never a value.
std::string message_problem(const MessageRecord& m);

// The status columns advance_message_status reads and writes.
struct StatusState {
    std::string status;
    int error_code = 0;
    std::string error;
    int64_t sent_at = 0, delivered_at = 0, read_at = 0, played_at = 0, failed_at = 0;
};

// Applies `status` at `at_ms` to `s` by the rule Store::advance_message_status documents. false with `why`
// for a status that is not an outgoing one. status_changed: the status moved; row_changed: anything did.
bool advance(StatusState& s, std::string_view status, int64_t at_ms, int error_code, const std::string& error,
             bool& status_changed, bool& row_changed, std::string& why);

// The position after a listed message: base64url (no padding) of "m1:<created_at>:<direction>:<id>".
struct Cursor {
    int64_t created_at = 0;
    std::string direction;
    std::string id;
};
std::string encode_cursor(const Cursor& c);
bool decode_cursor(std::string_view text, Cursor& out);

}  // namespace wa::store::rules
