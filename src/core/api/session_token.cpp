#include "wa/api/session_token.hpp"
#include "wa/codec/json.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <jansson.h>

#include <memory>

#include "wa/api/validate.hpp"

namespace wa::session_token {

namespace {

const char kPrefix[] = "wa1.";

std::string base64url(const unsigned char* p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
        out += tab[v >> 18];
        out += tab[(v >> 12) & 63];
        out += tab[(v >> 6) & 63];
        out += tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = p[i] << 16;
        out += tab[v >> 18];
        out += tab[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
        out += tab[v >> 18];
        out += tab[(v >> 12) & 63];
        out += tab[(v >> 6) & 63];
    }
    return out;
}

std::string mac_of(const uint8_t (&key)[kKeySize], std::string_view signed_part) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key, kKeySize, reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(),
         md, &len);
    std::string out = base64url(md, len);
    OPENSSL_cleanse(md, sizeof md);
    return out;
}

using JsonDeleter = wa::json::Deleter;

}  // namespace

std::string mint(const uint8_t (&key)[kKeySize], std::string_view org, int64_t expires_at) {
    std::string s = kPrefix;
    s.append(org);
    s += '.';
    s += std::to_string(expires_at);
    std::string mac = mac_of(key, s);
    s += '.';
    s += mac;
    return s;
}

Check verify(const uint8_t (&key)[kKeySize], std::string_view token, std::string_view org, int64_t now,
             int64_t* expires_at) {
    // Shape: prefix, an organization id, a decimal expiry, a 43-character MAC. Nothing here depends on the key.
    if (token.size() > 256 || token.substr(0, sizeof kPrefix - 1) != kPrefix) return Check::Malformed;
    std::string_view rest = token.substr(sizeof kPrefix - 1);
    size_t d1 = rest.find('.');
    if (d1 == std::string_view::npos) return Check::Malformed;
    size_t d2 = rest.find('.', d1 + 1);
    if (d2 == std::string_view::npos) return Check::Malformed;
    std::string_view tok_org = rest.substr(0, d1), exp_s = rest.substr(d1 + 1, d2 - d1 - 1);
    if (!valid_org_id(tok_org) || exp_s.empty() || exp_s.size() > 12) return Check::Malformed;
    int64_t exp = 0;
    for (char c : exp_s) {
        if (c < '0' || c > '9') return Check::Malformed;
        exp = exp * 10 + (c - '0');
    }
    // The expected token for what this one claims, compared whole in constant time.
    std::string expected = mint(key, tok_org, exp);
    bool same = expected.size() == token.size() && CRYPTO_memcmp(expected.data(), token.data(), token.size()) == 0;
    OPENSSL_cleanse(&expected[0], expected.size());
    if (!same) return Check::Forged;
    if (expires_at) *expires_at = exp;
    if (exp <= now) return Check::Expired;
    if (tok_org != org) return Check::OtherOrganization;
    return Check::Ok;
}

const char* check_name(Check c) {
    switch (c) {
    case Check::Ok: return "ok";
    case Check::Malformed: return "malformed";
    case Check::Forged: return "forged";
    case Check::Expired: return "expired";
    case Check::OtherOrganization: return "other_organization";
    }
    return "?";
}

void cookie_values(std::string_view h, std::string_view name, std::vector<std::string_view>& out) {
    while (!h.empty()) {
        size_t semi = h.find(';');
        std::string_view pair = h.substr(0, semi);
        h = semi == std::string_view::npos ? std::string_view() : h.substr(semi + 1);
        while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
        while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t')) pair.remove_suffix(1);
        size_t eq = pair.find('=');
        if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
        std::string_view v = pair.substr(eq + 1);
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        out.push_back(v);
    }
}

bool parse_request(std::string_view body, std::string& org, int64_t& ttl, api::Response& err) {
    json_error_t je;
    std::unique_ptr<json_t, JsonDeleter> root(json_loadb(body.data(), body.size(), JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je));
    if (!root || !json_is_object(root.get())) {
        err = api::error(400, "invalid_json", root ? "request body must be a JSON object"
                                                   : std::string("request body is not valid JSON: ") + je.text);
        return false;
    }
    json_t* o = json_object_get(root.get(), "organization_id");
    if (!o || json_is_null(o)) {
        err = api::error(400, "missing_field", "organization_id is required");
        return false;
    }
    if (json_is_string(o)) org.assign(json_string_value(o), json_string_length(o));
    else if (json_is_integer(o)) org = std::to_string(json_integer_value(o));
    else org.clear();
    if (!valid_org_id(org)) {
        err = api::error(400, "invalid_organization_id",
                         "organization_id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'");
        return false;
    }
    json_t* t = json_object_get(root.get(), "ttl");
    ttl = kDefaultTtl;
    if (t && !json_is_null(t)) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > kMaxTtl) {
            err = api::error(400, "invalid_parameter", "ttl must be a whole number of seconds from 1 to 600");
            return false;
        }
        ttl = json_integer_value(t);
    }
    return true;
}

std::string response_json(const std::string& token, const std::string& org, int64_t expires_at, int64_t ttl) {
    std::unique_ptr<json_t, JsonDeleter> j(json_object());
    json_object_set_new(j.get(), "success", json_true());
    json_object_set_new(j.get(), "token", json_stringn(token.data(), token.size()));
    json_object_set_new(j.get(), "organization_id", json_stringn(org.data(), org.size()));
    json_object_set_new(j.get(), "expires_at", json_string(api::iso8601(expires_at).c_str()));
    json_object_set_new(j.get(), "expires_in", json_integer(ttl));
    json_object_set_new(j.get(), "cookie", json_string(kCookie));
    char* s = json_dumps(j.get(), JSON_COMPACT | JSON_PRESERVE_ORDER);
    std::string out = s ? s : "{}";
    free(s);
    return out;
}

}  // namespace wa::session_token
