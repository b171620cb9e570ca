// Webhook events: data objects, the envelope, the signature, the backoff, type lists.
#include <gtest/gtest.h>

#include "wa/webhook/events.hpp"

namespace wh = wa::webhook;

TEST(WebhookEvents, SignatureMatchesPythonHmac) {
    EXPECT_EQ(wh::signature("sekret", 1700000000, "{\"a\":1}"),
              "t=1700000000,v1=10be3b6b2644ed2b13d525be7004b23fae6ab58a4646a0a4b89a0fb5ef23c7b8");
}

TEST(WebhookEvents, EnvelopeKeepsDataBytes) {
    wa::store::WebhookEvent e;
    e.id = "evt_1";
    e.type = "message.received";
    e.org = "acme";
    e.created_at_ms = 1700000000123;
    e.seq = 7;
    wh::Received r;
    r.id = "3EB0";
    r.from = "573001234567";
    r.text = "confirmo ✅ ñ";
    r.timestamp = 1700000000;
    e.data = wh::received_data(r);
    std::string body = wh::envelope(e);
    EXPECT_EQ(body.substr(0, body.find("\"data\"")),
              "{\"id\":\"evt_1\",\"type\":\"message.received\",\"organization_id\":\"acme\",\"timestamp\":1700000000,\"seq\":7,");
    EXPECT_NE(body.find("\"data\":{\"id\":\"3EB0\",\"from\":\"573001234567\""), std::string::npos);
    EXPECT_NE(body.find("confirmo"), std::string::npos);
    EXPECT_EQ(body, wh::envelope(e));
    EXPECT_NE(body.find("\"push_name\":null"), std::string::npos);
    EXPECT_EQ(body.find("media_path"), std::string::npos);  // texts have none
    r.type = "document";
    r.media_path = "/api/messages/acme/3EB0/media";
    EXPECT_NE(wh::received_data(r).find("\"media_path\":\"/api/messages/acme/3EB0/media\""), std::string::npos);
}

TEST(WebhookEvents, TypesAndLists) {
    EXPECT_TRUE(wh::events_match("", "message.status"));
    EXPECT_TRUE(wh::events_match("message.received,message.status", "message.status"));
    EXPECT_FALSE(wh::events_match("message.received", "message.status"));
    // session.qr only when named
    EXPECT_FALSE(wh::events_match("", "session.qr"));
    EXPECT_FALSE(wh::events_match("*", "session.qr"));
    EXPECT_FALSE(wh::events_match("session.status", "session.qr"));
    EXPECT_TRUE(wh::events_match("session.status,session.qr", "session.qr"));
    EXPECT_TRUE(wh::events_match("*", "session.status"));
    EXPECT_TRUE(wh::valid_events("session.qr", nullptr));
    EXPECT_EQ(wh::qr_data("2@abc,def", 1700000060, 60), "{\"qr\":\"2@abc,def\",\"expires_at\":1700000060,\"expires_in\":60}");
    std::string bad;
    EXPECT_TRUE(wh::valid_events("session.status,account.restricted", &bad));
    EXPECT_FALSE(wh::valid_events("message.received,nope", &bad));
    EXPECT_EQ(bad, "nope");
}

TEST(WebhookEvents, BackoffGrowsWithJitterAndCap) {
    EXPECT_EQ(wh::backoff_ms(1, 1000, 60000, 0.0), 500u);
    EXPECT_EQ(wh::backoff_ms(1, 1000, 60000, 0.999999), 999u);
    EXPECT_EQ(wh::backoff_ms(4, 1000, 60000, 0.0), 4000u);
    EXPECT_EQ(wh::backoff_ms(40, 1000, 60000, 0.0), 30000u);
}
