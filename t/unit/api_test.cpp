#include <gtest/gtest.h>
#include <jansson.h>
#include <string>
#include <vector>

#include "wa/api/api.hpp"

using namespace wa::api;

namespace {

// Parses a response body and returns a borrowed value by key (the test owns `root`).
struct Parsed {
    json_t* root = nullptr;
    explicit Parsed(const std::string& s) { root = json_loads(s.c_str(), 0, nullptr); }
    ~Parsed() { json_decref(root); }
    json_t* operator[](const char* k) const { return json_object_get(root, k); }
    std::string str(const char* k) const {
        const char* v = json_string_value((*this)[k]);
        return v ? v : "<null>";
    }
};

Response parse_err(RouteId r, const std::string& body, Command* out = nullptr) {
    Command cmd;
    Response err;
    bool ok = parse_command(r, body, "CO", "", cmd, err);
    if (out) *out = cmd;
    if (ok) return Response{200, "", {}, {}};
    return err;
}

std::string code_of(const Response& r) { return Parsed(r.body).str("code"); }

}  // namespace

TEST(Routes, MatchTheContract) {
    EXPECT_EQ(match("GET", "/health").id, RouteId::Health);
    EXPECT_FALSE(match("GET", "/health").needs_auth);
    EXPECT_EQ(match("GET", "/api/health").id, RouteId::ApiHealth);
    EXPECT_TRUE(match("GET", "/api/health").needs_auth);
    auto st = match("GET", "/api/status/23");
    EXPECT_EQ(st.id, RouteId::Status);
    EXPECT_EQ(st.org, "23");
    EXPECT_TRUE(st.method_ok);
    auto m = match("GET", "/api/messages/23/3EB0ABC");
    EXPECT_EQ(m.id, RouteId::Message);
    EXPECT_EQ(m.message_id, "3EB0ABC");
    auto post = match("GET", "/api/send-message");
    EXPECT_EQ(post.id, RouteId::SendMessage);
    EXPECT_FALSE(post.method_ok);
    EXPECT_STREQ(post.allow, "POST");
    EXPECT_EQ(match("POST", "/api/start-session").id, RouteId::StartSession);
    EXPECT_TRUE(match("POST", "/api/start-session").has_body);
    EXPECT_EQ(match("GET", "/api/status/23/x").id, RouteId::Unknown);
    EXPECT_EQ(match("GET", "/api/nope").id, RouteId::Unknown);
    EXPECT_EQ(match("GET", "/").id, RouteId::Unknown);
    EXPECT_EQ(match("GET", "").id, RouteId::Unknown);
}

TEST(Commands, OrganizationIdStringOrInteger) {
    Command a, b;
    EXPECT_EQ(parse_err(RouteId::StartSession, R"({"organization_id":"23"})", &a).status, 200);
    EXPECT_EQ(parse_err(RouteId::StartSession, R"({"organization_id":23})", &b).status, 200);
    EXPECT_EQ(a.org, "23");
    EXPECT_EQ(b.org, "23");
    EXPECT_EQ(a.type, Command::Start);
}

TEST(Commands, RejectBadOrganizationIds) {
    for (const char* body : {R"({"organization_id":".."})", R"({"organization_id":"a/b"})",
                             R"({"organization_id":"a\u0000b"})", R"({"organization_id":""})",
                             R"({"organization_id":2.5})", R"({"organization_id":true})",
                             R"({"organization_id":"ñ"})"}) {
        Response r = parse_err(RouteId::StartSession, body);
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(code_of(r), "invalid_organization_id") << body;
    }
    std::string id64(64, 'a'), id65(65, 'a');
    EXPECT_EQ(parse_err(RouteId::Logout, "{\"organization_id\":\"" + id64 + "\"}").status, 200);
    EXPECT_EQ(code_of(parse_err(RouteId::Logout, "{\"organization_id\":\"" + id65 + "\"}")),
              "invalid_organization_id");
}

TEST(Commands, JsonErrors) {
    EXPECT_EQ(code_of(parse_err(RouteId::StartSession, "{")), "invalid_json");
    EXPECT_EQ(code_of(parse_err(RouteId::StartSession, "[1]")), "invalid_json");
    EXPECT_EQ(code_of(parse_err(RouteId::StartSession, "{}")), "missing_field");
    EXPECT_EQ(code_of(parse_err(RouteId::StartSession, R"({"organization_id":null})")), "missing_field");
    // Invalid UTF-8 is not JSON.
    EXPECT_EQ(code_of(parse_err(RouteId::StartSession, "{\"organization_id\":\"\xff\"}")), "invalid_json");
}

TEST(Commands, SendMessageValidation) {
    Command c;
    EXPECT_EQ(parse_err(RouteId::SendMessage, R"({"organization_id":"23","phone":"3001234567","message":"Hola 👋 ñandú"})",
                        &c)
                  .status,
              200);
    EXPECT_EQ(c.type, Command::Send);
    EXPECT_EQ(c.phone, "573001234567");
    EXPECT_EQ(c.message, "Hola 👋 ñandú");
    EXPECT_EQ(code_of(parse_err(RouteId::SendMessage, R"({"organization_id":"23","message":"x"})")), "missing_field");
    EXPECT_EQ(code_of(parse_err(RouteId::SendMessage, R"({"organization_id":"23","phone":"3001234567"})")),
              "missing_field");
    EXPECT_EQ(code_of(parse_err(RouteId::SendMessage, R"({"organization_id":"23","phone":"abc","message":"x"})")),
              "invalid_phone");
    EXPECT_EQ(code_of(parse_err(RouteId::SendMessage, R"({"organization_id":"23","phone":"3001234567","message":""})")),
              "invalid_message");
    EXPECT_EQ(code_of(parse_err(RouteId::SendMessage, R"({"organization_id":"23","phone":"3001234567","message":5})")),
              "invalid_message");
}

TEST(Commands, IdempotencyKeyFromBodyOrHeader) {
    Command cmd;
    Response err;
    ASSERT_TRUE(parse_command(RouteId::SendMessage, R"({"organization_id":"1","phone":"+573001234567","message":"x"})",
                              "CO", "hdr-key", cmd, err));
    EXPECT_EQ(cmd.idempotency_key, "hdr-key");
    ASSERT_TRUE(parse_command(RouteId::SendMessage,
                              R"({"organization_id":"1","phone":"+573001234567","message":"x","idempotency_key":"body"})",
                              "CO", "hdr-key", cmd, err));
    EXPECT_EQ(cmd.idempotency_key, "body");
}

TEST(Commands, SurviveTheTripThroughSharedMemory) {
    Command c;
    c.type = Command::Send;
    c.org = "org_1";
    c.phone = "573001234567";
    c.message = "Cita confirmada ✅ — mañana 10:00 \"óptica\"\n";
    c.idempotency_key = "k1";
    Command back;
    ASSERT_TRUE(command_from_json(command_to_json(c), back));
    EXPECT_EQ(back.type, Command::Send);
    EXPECT_EQ(back.org, c.org);
    EXPECT_EQ(back.phone, c.phone);
    EXPECT_EQ(back.message, c.message);
    EXPECT_EQ(back.idempotency_key, "k1");
    EXPECT_FALSE(command_from_json(R"({"type":"start","organization_id":"../x"})", back));
    EXPECT_FALSE(command_from_json(R"({"type":"fly","organization_id":"x"})", back));
}

TEST(ContentType, JsonWithParameters) {
    EXPECT_TRUE(is_json_content_type("application/json"));
    EXPECT_TRUE(is_json_content_type("Application/JSON; charset=utf-8"));
    EXPECT_FALSE(is_json_content_type("text/plain"));
    EXPECT_FALSE(is_json_content_type("application/jsonx"));
    EXPECT_FALSE(is_json_content_type(""));
}

TEST(StatusJson, NeverSeenOrganization) {
    StatusView v;
    Parsed p(status_json(v, 1000));
    ASSERT_NE(p.root, nullptr);
    EXPECT_TRUE(json_is_true(p["success"]));
    EXPECT_EQ(p.str("status"), "disconnected");
    EXPECT_TRUE(json_is_false(p["connected"]));
    EXPECT_TRUE(json_is_false(p["has_qr"]));
    for (const char* k : {"phone_number", "phone", "qr", "last_error", "connected_at"})
        EXPECT_TRUE(json_is_null(p[k])) << k;
    EXPECT_EQ(json_integer_value(p["retry_count"]), 0);
}

TEST(StatusJson, ConnectedAndQrReady) {
    StatusView v;
    v.status.state = wa::State::Connected;
    v.status.phone = "573126809496";
    v.status.connected_at = 1768384800;  // 2026-01-14T10:00:00Z
    Parsed p(status_json(v, 1768384900));
    EXPECT_EQ(p.str("status"), "connected");
    EXPECT_TRUE(json_is_true(p["connected"]));
    EXPECT_EQ(p.str("phone_number"), "573126809496");
    EXPECT_EQ(p.str("phone"), "573126809496");
    EXPECT_EQ(p.str("connected_at"), "2026-01-14T10:00:00Z");

    StatusView q;
    q.status.state = wa::State::QrReady;
    q.status.qr_text = "2@abc,def,ghi,jkl,1";
    q.qr_data_url = "data:image/png;base64,AAAA";
    q.qr_expires_at = 1018;
    Parsed s(status_json(q, 1000));
    EXPECT_TRUE(json_is_true(s["has_qr"]));
    EXPECT_EQ(s.str("qr"), "data:image/png;base64,AAAA");
    Parsed r(qr_json(q, 1000));
    EXPECT_TRUE(json_is_true(r["success"]));
    EXPECT_EQ(r.str("qr_text"), "2@abc,def,ghi,jkl,1");
    EXPECT_EQ(json_integer_value(r["expires_in"]), 18);
    Parsed none(qr_json(v, 1000));
    EXPECT_TRUE(json_is_false(none["success"]));
    EXPECT_TRUE(json_is_null(none["qr"]));
    EXPECT_EQ(none.str("status"), "connected");
}

// The documents the helper renders once per change, completed by the workers at read time: byte for byte what
// status_json / qr_json give at that time, for every state, deadline and restriction.
TEST(StatusJson, RenderedOnceCompletedAtReadTime) {
    std::vector<StatusView> views;
    StatusView v;
    views.push_back(v);  // never seen
    v.org = "23";
    v.status.state = wa::State::Reconnecting;
    v.status.retry_count = 7;
    v.status.last_error = "connect() to 127.0.0.1:9 failed: Connection refused \"quoted\" \xc3\xb1";
    v.status.state_since = 1768384800;
    v.status.next_retry_at = 1768384830;
    views.push_back(v);
    v.status.restricted_until = 1768388400;
    views.push_back(v);
    v.status.state = wa::State::Connected;
    v.status.next_retry_at = 0;
    v.status.phone = "573126809496";
    v.status.connected_at = 1768384800;
    views.push_back(v);
    v.status.state = wa::State::QrReady;
    v.status.restricted_until = 0;
    v.status.qr_text = "2@abc,def,ghi,jkl,1";
    v.qr_data_url = "data:image/png;base64,AAAA/+==";
    v.qr_expires_at = 1768384860;
    views.push_back(v);
    for (size_t i = 0; i < views.size(); i++) {
        const StatusView& x = views[i];
        std::string head = status_json_head(x);
        ASSERT_FALSE(head.empty()) << i;
        std::string qr_head = qr_json_head(x);
        EXPECT_EQ(qr_head.empty(), x.status.state != wa::State::QrReady) << i;
        for (int64_t now : {int64_t(1000), int64_t(1768384800), int64_t(1768384829), int64_t(1768384830),
                            int64_t(1768384900), int64_t(1768390000)}) {
            char tail[kStatusTailMax];
            size_t n = status_json_tail(tail, x.status.next_retry_at, x.status.restricted_until, now);
            ASSERT_LE(n, kStatusTailMax);
            EXPECT_EQ(head + std::string(tail, n), status_json(x, now)) << i << " at " << now;
            if (qr_head.empty()) continue;
            char qtail[kQrTailMax];
            size_t q = qr_json_tail(qtail, x.qr_expires_at, now);
            ASSERT_LE(q, kQrTailMax);
            EXPECT_EQ(qr_head + std::string(qtail, q), qr_json(x, now)) << i << " at " << now;
        }
    }
}

TEST(ErrorJson, Shape) {
    Response r = error(409, "not_connected", "session is not connected");
    EXPECT_EQ(r.status, 409);
    EXPECT_EQ(r.body, R"({"success":false,"error":"session is not connected","code":"not_connected"})");
}

// The send rate limit sits right after the organization id: invalid sends count, malformed ones do not.
TEST(Commands, GateRunsAfterTheOrganizationIdAndBeforeTheRest) {
    std::vector<std::string> seen;
    OrgGate refuse = [&seen](const std::string& org, Response& err) {
        seen.push_back(org);
        err = error(429, "rate_limited", "slow down");
        return false;
    };
    Command cmd;
    Response err;
    EXPECT_FALSE(parse_command(RouteId::SendMessage, R"({"organization_id":"7","phone":"abc"})", "CO", "", cmd, err, refuse));
    EXPECT_EQ(err.status, 429);
    EXPECT_FALSE(parse_command(RouteId::SendMessage, R"({"organization_id":8})", "CO", "", cmd, err, refuse));
    EXPECT_EQ(err.status, 429);
    EXPECT_FALSE(parse_command(RouteId::SendMessage, R"({"organization_id":"a.b"})", "CO", "", cmd, err, refuse));
    EXPECT_EQ(code_of(err), "invalid_organization_id");
    EXPECT_FALSE(parse_command(RouteId::SendMessage, R"({"phone":"3001234567"})", "CO", "", cmd, err, refuse));
    EXPECT_EQ(code_of(err), "missing_field");
    EXPECT_FALSE(parse_command(RouteId::SendMessage, R"({"organization_id":"7")", "CO", "", cmd, err, refuse));
    EXPECT_EQ(code_of(err), "invalid_json");
    EXPECT_EQ(seen, (std::vector<std::string>{"7", "8"}));

    OrgGate pass = [](const std::string&, Response&) { return true; };
    EXPECT_FALSE(parse_command(RouteId::SendMessage, R"({"organization_id":"7","phone":"abc","message":"x"})", "CO", "",
                               cmd, err, pass));
    EXPECT_EQ(code_of(err), "invalid_phone");
}

TEST(Paging, LimitAndCursor) {
    PageQuery q;
    Response err;
    ASSERT_TRUE(parse_page_query("", q, err));
    EXPECT_EQ(q.limit, 100u);
    EXPECT_EQ(q.cursor, "");
    ASSERT_TRUE(parse_page_query("limit=1000&cursor=org-7&x=y", q, err));
    EXPECT_EQ(q.limit, 1000u);
    EXPECT_EQ(q.cursor, "org-7");
    for (const char* bad : {"limit=0", "limit=1001", "limit=", "limit", "limit=1e3", "limit=-1", "limit=+5",
                            "limit=00001", "cursor=a.b", "cursor=a%2Fb", "cursor=../x"}) {
        PageQuery p;
        Response e;
        EXPECT_FALSE(parse_page_query(bad, p, e)) << bad;
        EXPECT_EQ(e.status, 400) << bad;
        EXPECT_EQ(code_of(e), "invalid_parameter") << bad;
    }
}

TEST(Paging, ConnectionsBody) {
    StatusView v;
    v.org = "23";
    Parsed last(connections_json({v}, "", 1, 0));
    EXPECT_TRUE(json_is_null(last["next_cursor"]));
    EXPECT_EQ(json_array_size(last["items"]), 1u);
    EXPECT_EQ(json_integer_value(last["total"]), 1);
    Parsed more(connections_json({v}, "23", 5, 0));
    EXPECT_EQ(more.str("next_cursor"), "23");
}

TEST(Errors, NginxStatusesGetTheContractsShape) {
    Response r = error_for_status(413);
    EXPECT_EQ(r.status, 413);
    EXPECT_EQ(code_of(r), "body_too_large");
    Parsed p(r.body);
    EXPECT_TRUE(json_is_false(p["success"]));
    EXPECT_FALSE(p.str("error").empty());
    EXPECT_EQ(code_of(error_for_status(400)), "bad_request");
    EXPECT_EQ(code_of(error_for_status(403)), "forbidden");
    EXPECT_EQ(code_of(error_for_status(405)), "method_not_allowed");
    EXPECT_EQ(code_of(error_for_status(418)), "http_418");
}
