// wa/pbcheck.hpp and the generated waproto:: classes (protobuf-lite) as the core uses them.
#include "wa/codec/pbcheck.hpp"

#include "WAProto.pb.h"

#include <gtest/gtest.h>

#include <string>

namespace {

std::string bytes(const char* s, size_t n) { return std::string(s, n); }

TEST(PbCheck, NoMistyped) {
    EXPECT_TRUE(wa::pb::no_mistyped("", {1, 2}));
    EXPECT_TRUE(wa::pb::no_mistyped(bytes("\x18\x01\x22\x00", 4), {1, 2}));  // fields 3 and 4
    EXPECT_FALSE(wa::pb::no_mistyped(bytes("\x18\x01\x10\x01", 4), {1, 2}));  // field 2
    EXPECT_FALSE(wa::pb::no_mistyped(bytes("\x1b\x1c", 2), {1}));            // a group (field 3)
    EXPECT_FALSE(wa::pb::no_mistyped(bytes("\x18", 1), {1}));                // malformed
}

TEST(PbCheck, VarintsFitU32) {
    EXPECT_TRUE(wa::pb::varints_fit_u32("", {1}));
    EXPECT_TRUE(wa::pb::varints_fit_u32(bytes("\x08\xff\xff\xff\xff\x0f", 6), {1}));         // 2^32 - 1
    EXPECT_FALSE(wa::pb::varints_fit_u32(bytes("\x08\x80\x80\x80\x80\x10", 6), {1}));        // 2^32
    EXPECT_TRUE(wa::pb::varints_fit_u32(bytes("\x10\x80\x80\x80\x80\x10", 6), {1}));         // not listed
    EXPECT_TRUE(wa::pb::varints_fit_u32(bytes("\x0a\x01x\x15\x01\x02\x03\x04", 8), {1, 2}));  // not varints
    EXPECT_FALSE(wa::pb::varints_fit_u32(bytes("\x0a\x05x", 3), {1}));                     // malformed
    EXPECT_FALSE(wa::pb::varints_fit_u32(bytes("\x00", 1), {1}));                          // field 0
}

TEST(PbCheck, ParseRefusesMalformed) {
    waproto::HandshakeMessage m;
    EXPECT_TRUE(wa::pb::parse("", m));
    EXPECT_FALSE(wa::pb::parse(bytes("\x12\x05hi", 4), m));
    EXPECT_TRUE(wa::pb::parse(bytes("\x12\x02\x0a\x00", 4), m));
    EXPECT_TRUE(m.has_clienthello() && m.clienthello().has_ephemeral() && m.clienthello().ephemeral().empty());
}

// proto3 packs repeated scalars by default; proto/WAProto.proto marks them [packed=true] so that
// ClientPayload.shards (field 14, int32) is written as Baileys writes it.
TEST(WaProto, RepeatedScalarsArePacked) {
    waproto::ClientPayload p;
    p.add_shards(1);
    p.add_shards(300);
    EXPECT_EQ(p.SerializeAsString(), bytes("\x72\x03\x01\xac\x02", 5));
    waproto::ClientPayload q;  // unpacked input is still accepted, as protobuf requires
    ASSERT_TRUE(wa::pb::parse(bytes("\x70\x01\x70\xac\x02", 5), q));
    ASSERT_EQ(q.shards_size(), 2);
    EXPECT_EQ(q.shards(1), 300);
}

// Message keeps only the fields the gateway handles; the others are carried as unknown fields.
TEST(WaProto, TrimmedMessageKeepsUnknownFields) {
    waproto::Message m;
    m.mutable_extendedtextmessage()->set_text("hi");
    m.mutable_messagecontextinfo()->set_messagesecret(std::string(32, 's'));
    std::string wire = m.SerializeAsString();
    std::string poll = bytes("\x8a\x03\x02\x0a\x00", 5);  // pollCreationMessage (49) {name: ""}: not kept
    waproto::Message back;
    ASSERT_TRUE(wa::pb::parse(wire + poll, back));
    EXPECT_EQ(back.extendedtextmessage().text(), "hi");
    EXPECT_EQ(back.messagecontextinfo().messagesecret().size(), 32u);
    EXPECT_EQ(back.unknown_fields(), poll);
    EXPECT_EQ(back.SerializeAsString(), wire + poll);
}

}  // namespace
