#include "wa/codec/jid.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

wa::Jid parsed(const std::string& s) {
    wa::Jid j;
    EXPECT_TRUE(wa::Jid::parse(s, j)) << s;
    return j;
}

TEST(Jid, ParsesPlainJids) {
    wa::Jid j = parsed("15550001111@s.whatsapp.net");
    EXPECT_EQ(j.user, "15550001111");
    EXPECT_EQ(j.server, "s.whatsapp.net");
    EXPECT_FALSE(j.has_device);
    EXPECT_EQ(j.device, 0);
    EXPECT_EQ(j.domain_type, 0);
    EXPECT_TRUE(j.is_pn());

    j = parsed("111111111111111@lid");
    EXPECT_EQ(j.domain_type, wa::kDomainLid);
    EXPECT_TRUE(j.is_lid());
    j = parsed("status@broadcast");
    EXPECT_EQ(j.user, "status");
    EXPECT_EQ(j.server, "broadcast");
    j = parsed("120363000000000000@g.us");
    EXPECT_TRUE(j.is_group());
    j = parsed("@s.whatsapp.net");
    EXPECT_TRUE(j.is_server_jid());
    EXPECT_EQ(j.to_string(), "@s.whatsapp.net");
}

TEST(Jid, EveryKnownServer) {
    for (const char* s : {"s.whatsapp.net", "lid", "g.us", "broadcast", "newsletter", "hosted", "hosted.lid", "msgr",
                          "interop", "bot", "c.us"}) {
        std::string str = std::string("123@") + s;
        wa::Jid j = parsed(str);
        EXPECT_EQ(j.server, s);
        EXPECT_EQ(j.to_string(), str);
        EXPECT_TRUE(wa::is_known_jid_server(s));
    }
    EXPECT_FALSE(wa::is_known_jid_server("example.com"));
    EXPECT_EQ(wa::jid_domain_for_server("s.whatsapp.net"), 0);
    EXPECT_EQ(wa::jid_domain_for_server("lid"), 1);
    EXPECT_EQ(wa::jid_domain_for_server("hosted"), 128);
    EXPECT_EQ(wa::jid_domain_for_server("hosted.lid"), 129);
    EXPECT_EQ(wa::jid_domain_for_server("g.us"), -1);
}

TEST(Jid, DevicesAndDomains) {
    wa::Jid j = parsed("15550001111:5@s.whatsapp.net");
    EXPECT_TRUE(j.has_device);
    EXPECT_EQ(j.device, 5);
    EXPECT_EQ(j.to_string(), "15550001111:5@s.whatsapp.net");
    j = parsed("15550001111:0@s.whatsapp.net");
    EXPECT_TRUE(j.has_device);
    EXPECT_EQ(j.device, 0);
    EXPECT_EQ(j.to_string(), "15550001111:0@s.whatsapp.net");
    j = parsed("1:99@hosted");
    EXPECT_EQ(j.domain_type, 128);
    EXPECT_EQ(j.device, 99);
    j = parsed("1:255@hosted.lid");
    EXPECT_EQ(j.domain_type, 129);
    EXPECT_EQ(j.device, 255);
    j = parsed("1:65535@msgr");
    EXPECT_EQ(j.device, 65535);
    EXPECT_EQ(j.to_string(), "1:65535@msgr");
    EXPECT_EQ(j.to_non_ad().to_string(), "1@msgr");
    EXPECT_EQ(parsed("5:3@lid").to_non_ad().to_string(), "5@lid");
    EXPECT_EQ(parsed("5:3@lid").to_non_ad().domain_type, 1);
}

TEST(Jid, AgentAndInterop) {
    wa::Jid j = parsed("15550001111_5:2@s.whatsapp.net");
    EXPECT_EQ(j.user, "15550001111");
    EXPECT_EQ(j.agent, 5);
    EXPECT_EQ(j.domain_type, 5);
    EXPECT_EQ(j.device, 2);
    EXPECT_EQ(j.to_string(), "15550001111_5:2@s.whatsapp.net");

    j = parsed("7-abc:3@interop");
    EXPECT_EQ(j.integrator, 7);
    EXPECT_EQ(j.user, "abc");
    EXPECT_EQ(j.device, 3);
    EXPECT_EQ(j.to_string(), "7-abc:3@interop");
}

TEST(Jid, RejectsMalformed) {
    wa::Jid j;
    j.user = "untouched";
    for (const char* s : {"", "15550001111", "1@", "1@example.com", "1:@s.whatsapp.net", "1:01@s.whatsapp.net",
                          "1:256@s.whatsapp.net", "1:65536@msgr", "1:-1@s.whatsapp.net", "1:2:3@s.whatsapp.net",
                          "1_1:2@s.whatsapp.net", "1_0:2@s.whatsapp.net", "1_128:2@s.whatsapp.net",
                          "1_5:2@lid", "1_x@s.whatsapp.net", "1_@s.whatsapp.net", "abc:3@interop",
                          "x-abc:3@interop", "1@s.whatsapp.net@x", "1:1 @s.whatsapp.net"}) {
        EXPECT_FALSE(wa::Jid::parse(s, j)) << s;
    }
    EXPECT_EQ(j.user, "untouched");
}

TEST(Jid, FromAdJid) {
    EXPECT_EQ(wa::Jid::from_ad(0, 5, "15550001111").to_string(), "15550001111:5@s.whatsapp.net");
    EXPECT_EQ(wa::Jid::from_ad(0, 0, "15550001111").to_string(), "15550001111:0@s.whatsapp.net");
    EXPECT_EQ(wa::Jid::from_ad(1, 3, "42").to_string(), "42:3@lid");
    EXPECT_EQ(wa::Jid::from_ad(128, 99, "42").to_string(), "42:99@hosted");
    EXPECT_EQ(wa::Jid::from_ad(129, 99, "42").to_string(), "42:99@hosted.lid");
    wa::Jid j = wa::Jid::from_ad(7, 1, "42");
    EXPECT_EQ(j.agent, 7);
    EXPECT_EQ(j.to_string(), "42_7:1@s.whatsapp.net");
    EXPECT_EQ(parsed("42_7:1@s.whatsapp.net"), j);
}

TEST(Jid, NumberParser) {
    uint32_t v = 0;
    EXPECT_TRUE(wa::parse_jid_number("0", 10, v));
    EXPECT_EQ(v, 0u);
    EXPECT_TRUE(wa::parse_jid_number("4294967295", 0xFFFFFFFFu, v));
    EXPECT_EQ(v, 4294967295u);
    EXPECT_FALSE(wa::parse_jid_number("4294967296", 0xFFFFFFFFu, v));
    EXPECT_FALSE(wa::parse_jid_number("00", 10, v));
    EXPECT_FALSE(wa::parse_jid_number("11", 10, v));
    EXPECT_FALSE(wa::parse_jid_number("", 10, v));
    EXPECT_FALSE(wa::parse_jid_number("+1", 10, v));
}

}  // namespace
