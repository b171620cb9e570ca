// Session tokens (wa::session_token) and the routes of issue 10.
#include <gtest/gtest.h>

#include <cstring>

#include "wa/api/api.hpp"
#include "wa/api/session_token.hpp"

namespace st = wa::session_token;
namespace api = wa::api;

namespace {
struct Key {
    uint8_t k[st::kKeySize];
    explicit Key(uint8_t fill) { std::memset(k, fill, sizeof k); }
};
}  // namespace

TEST(SessionToken, MintAndVerify) {
    Key key(7);
    std::string t = st::mint(key.k, "org-23", 1000);
    EXPECT_EQ(t.rfind("wa1.org-23.1000.", 0), 0u) << t;
    EXPECT_EQ(t.size(), std::string("wa1.org-23.1000.").size() + 43);  // base64url of 32 bytes, unpadded
    int64_t exp = 0;
    EXPECT_EQ(st::verify(key.k, t, "org-23", 999, &exp), st::Check::Ok);
    EXPECT_EQ(exp, 1000);
    EXPECT_EQ(st::verify(key.k, t, "org-23", 1000), st::Check::Expired);
    EXPECT_EQ(st::verify(key.k, t, "org-24", 10), st::Check::OtherOrganization);
    Key other(8);
    EXPECT_EQ(st::verify(other.k, t, "org-23", 10), st::Check::Forged);
}

TEST(SessionToken, ForgeriesAreRefused) {
    Key key(1);
    std::string t = st::mint(key.k, "23", 5000);
    // A longer expiry or another organization under the same MAC.
    std::string longer = t;
    longer.replace(longer.find(".5000."), 6, ".9000.");
    EXPECT_EQ(st::verify(key.k, longer, "23", 10), st::Check::Forged);
    std::string moved = t;
    moved.replace(0, 6, "wa1.24");
    EXPECT_EQ(st::verify(key.k, moved, "24", 10), st::Check::Forged);
    // Every single flipped MAC character.
    for (size_t i = t.rfind('.') + 1; i < t.size(); i++) {
        std::string f = t;
        f[i] = f[i] == 'A' ? 'B' : 'A';
        EXPECT_EQ(st::verify(key.k, f, "23", 10), st::Check::Forged) << i;
    }
    EXPECT_EQ(st::verify(key.k, t.substr(0, t.size() - 1), "23", 10), st::Check::Forged);
    EXPECT_EQ(st::verify(key.k, "", "23", 10), st::Check::Malformed);
    EXPECT_EQ(st::verify(key.k, "wa1.23", "23", 10), st::Check::Malformed);
    EXPECT_EQ(st::verify(key.k, "wa1.../..5000.x", "23", 10), st::Check::Malformed);
    EXPECT_EQ(st::verify(key.k, "wa1.23.-5.x", "23", 10), st::Check::Malformed);
    EXPECT_EQ(st::verify(key.k, "wa2" + t.substr(3), "23", 10), st::Check::Malformed);
}

TEST(SessionToken, Cookies) {
    std::vector<std::string_view> v;
    st::cookie_values("a=1; wa_token=abc; b=2;wa_token=\"def\" ; xwa_token=no", "wa_token", v);
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0], "abc");
    EXPECT_EQ(v[1], "def");
    v.clear();
    st::cookie_values("", "wa_token", v);
    st::cookie_values("wa_token", "wa_token", v);
    EXPECT_TRUE(v.empty());
}

TEST(SessionToken, Request) {
    std::string org;
    int64_t ttl = 0;
    api::Response err;
    EXPECT_TRUE(st::parse_request(R"({"organization_id":"23","ttl":60})", org, ttl, err));
    EXPECT_EQ(org, "23");
    EXPECT_EQ(ttl, 60);
    EXPECT_TRUE(st::parse_request(R"({"organization_id":23})", org, ttl, err));
    EXPECT_EQ(ttl, st::kDefaultTtl);
    EXPECT_FALSE(st::parse_request(R"({"organization_id":"23","ttl":601})", org, ttl, err));
    EXPECT_EQ(err.status, 400);
    EXPECT_NE(err.body.find("invalid_parameter"), std::string::npos);
    EXPECT_FALSE(st::parse_request(R"({"organization_id":"23","ttl":0})", org, ttl, err));
    EXPECT_FALSE(st::parse_request(R"({"organization_id":"23","ttl":"60"})", org, ttl, err));
    EXPECT_FALSE(st::parse_request(R"({"organization_id":"../x"})", org, ttl, err));
    EXPECT_NE(err.body.find("invalid_organization_id"), std::string::npos);
    EXPECT_FALSE(st::parse_request(R"({})", org, ttl, err));
    EXPECT_NE(err.body.find("missing_field"), std::string::npos);
    EXPECT_FALSE(st::parse_request("nope", org, ttl, err));
    EXPECT_NE(err.body.find("invalid_json"), std::string::npos);
    std::string j = st::response_json("tok", "23", 1768384800, 60);
    EXPECT_EQ(j, R"({"success":true,"token":"tok","organization_id":"23","expires_at":"2026-01-14T10:00:00Z","expires_in":60,"cookie":"wa_token"})");
}

TEST(SessionToken, Routes) {
    api::Route r = api::match("GET", "/api/events/23");
    EXPECT_EQ(r.id, api::RouteId::Events);
    EXPECT_EQ(r.org, "23");
    EXPECT_TRUE(r.token_ok);
    EXPECT_TRUE(r.method_ok);
    r = api::match("GET", "/api/events");
    EXPECT_EQ(r.id, api::RouteId::EventsAll);
    EXPECT_FALSE(r.token_ok);
    r = api::match("POST", "/api/session-token");
    EXPECT_EQ(r.id, api::RouteId::SessionToken);
    EXPECT_TRUE(r.has_body);
    EXPECT_FALSE(r.token_ok);
    EXPECT_TRUE(api::match("GET", "/api/status/23").token_ok);
    EXPECT_TRUE(api::match("GET", "/api/qr/23").token_ok);
    EXPECT_FALSE(api::match("POST", "/api/send-message").token_ok);
    EXPECT_FALSE(api::match("GET", "/api/messages/23").token_ok);
    EXPECT_FALSE(api::match("GET", "/api/connections").token_ok);
}
