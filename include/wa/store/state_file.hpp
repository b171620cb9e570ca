// The per-organization session file (<state_dir>/<org>/session.json): what must survive restarts,
// reloads and crashes of the helper. Credentials join it with the link layer.
#pragma once
#include <string>
#include <string_view>

#include "wa/session.hpp"

namespace wa {

std::string session_file_json(std::string_view org, const SessionStatus& s);
// false (with `err`) when the file does not parse: the caller quarantines the organization.
bool parse_session_file(std::string_view text, std::string_view org, SessionStatus& s, std::string& err);

}  // namespace wa
