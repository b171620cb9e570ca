// Browser-safe session tokens (POST /api/session-token): bound to one organization, valid for at most 10 minutes,
// accepted only by that organization's read-only routes (status, qr, events) from the cookie `wa_token`.
//
//   wa1.<organization_id>.<expires, unix seconds>.<base64url(HMAC-SHA256(key, "wa1.<org>.<expires>"))>
//
// The key is 32 random bytes made when the shared-memory zone is created (every worker and the helper see it;
// a restart of nginx makes every token void, a reload or a helper restart does not). Nothing is stored per token:
// the expiry travels inside it and the MAC makes it unforgeable. Pure functions, no nginx types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "wa/api/api.hpp"

namespace wa::session_token {

constexpr size_t kKeySize = 32;
constexpr int64_t kMaxTtl = 600;      // seconds (the issue: ttl <= 10 min)
constexpr int64_t kDefaultTtl = 300;
constexpr const char* kCookie = "wa_token";

std::string mint(const uint8_t (&key)[kKeySize], std::string_view org, int64_t expires_at);

enum class Check : uint8_t { Ok, Malformed, Forged, Expired, OtherOrganization };
// Checks the MAC first (constant time, CRYPTO_memcmp over equal lengths), then the expiry, then the organization.
// `expires_at` receives the token's expiry when the MAC is good.
Check verify(const uint8_t (&key)[kKeySize], std::string_view token, std::string_view org, int64_t now,
             int64_t* expires_at = nullptr);
const char* check_name(Check c);

// Every value of cookie `name` in one Cookie header value ("a=1; wa_token=...; b=2"), in order.
void cookie_values(std::string_view header, std::string_view name, std::vector<std::string_view>& out);

// POST /api/session-token {"organization_id","ttl"}: ttl (seconds, integer) defaults to kDefaultTtl and must be
// 1..kMaxTtl. Errors: 400 invalid_json, invalid_organization_id, invalid_parameter.
bool parse_request(std::string_view body, std::string& org, int64_t& ttl, api::Response& err);
// {"success":true,"token":"...","organization_id":"...","expires_at":"ISO 8601","expires_in":ttl,"cookie":"wa_token"}
std::string response_json(const std::string& token, const std::string& org, int64_t expires_at, int64_t ttl);

}  // namespace wa::session_token
