// The Signal layer (wa::signal): addresses, bundle parsing, padding and message framing, and two Accounts,
// each on its own SQLite store, exchanging messages both ways (pkmsg, msg, out of order, replays, tampering,
// restarts, identity changes, store failures). The cross-check against the node libsignal that Baileys uses
// is t/signal/crosscheck.mjs (make signaltest).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "wa/codec/binary.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/store/fsutil.hpp"
#include "wa/signal/account.hpp"
#include "wa/signal/address.hpp"
#include "wa/signal/bundle.hpp"
#include "wa/signal/plaintext.hpp"
#include "wa/store/store.hpp"

using wa::Jid;
using wa::Node;
using wa::signal::Account;
using wa::signal::AccountOptions;
using wa::signal::Address;
using wa::signal::Decrypted;
using wa::signal::EncType;
using wa::signal::Encrypted;
using wa::signal::PreKeyBundle;
using wa::signal::Result;
using wa::store::Credentials;
using wa::store::PreKey;
using wa::store::Store;

namespace {

Address addr(const char* jid) {
    Address a;
    EXPECT_TRUE(wa::signal::address_of(jid, a)) << jid;
    return a;
}

// ---- addresses ----------------------------------------------------------------------------------------

TEST(SignalAddress, PhoneNumberLidHostedAndDevices) {
    Address a = addr("573001234567@s.whatsapp.net");
    EXPECT_EQ(a.name, "573001234567");
    EXPECT_EQ(a.device, 0u);
    EXPECT_EQ(a.to_string(), "573001234567.0");
    EXPECT_EQ(addr("573001234567:0@s.whatsapp.net"), a);
    EXPECT_EQ(addr("573001234567:5@s.whatsapp.net").to_string(), "573001234567.5");
    EXPECT_EQ(addr("123456789012345@lid").to_string(), "123456789012345_1.0");
    EXPECT_EQ(addr("123456789012345:3@lid").to_string(), "123456789012345_1.3");
    EXPECT_EQ(addr("77:2@hosted").to_string(), "77_128.2");
    EXPECT_EQ(addr("88:4@hosted.lid").to_string(), "88_129.4");
    // whatsmeow drops a raw agent on s.whatsapp.net (ActualAgent is 0 there); Baileys would write 1555_5.
    EXPECT_EQ(addr("1555_5:2@s.whatsapp.net").to_string(), "1555.2");
    Jid j;
    ASSERT_TRUE(Jid::parse("999:7@lid", j));
    EXPECT_EQ(wa::signal::address_of(j).to_string(), "999_1.7");
    Address out;
    EXPECT_FALSE(wa::signal::address_of("not a jid", out));
    EXPECT_FALSE(wa::signal::address_of("1:999@s.whatsapp.net", out));
}

// ---- padding and framing ------------------------------------------------------------------------------

TEST(SignalPadding, RandomPadIsOneToFifteenCopiesOfItsLength) {
    int seen[16] = {};
    for (int i = 0; i < 3000; i++) {
        std::string p = wa::signal::pad_message("hello");
        ASSERT_GE(p.size(), 6u);
        auto n = static_cast<uint8_t>(p.back());
        ASSERT_GE(n, 1);
        ASSERT_LE(n, 15);
        ASSERT_EQ(p.size(), 5u + n);
        EXPECT_EQ(p.substr(5), std::string(n, static_cast<char>(n)));
        seen[n]++;
        std::string_view un;
        ASSERT_TRUE(wa::signal::unpad_message(p, un));
        EXPECT_EQ(un, "hello");
    }
    EXPECT_EQ(seen[0], 0);
    for (int n = 1; n <= 15; n++) EXPECT_GT(seen[n], 0) << n;  // 3000 draws: each value ~200 times
    // 15 is twice as likely as the others (0 becomes 15), as in whatsmeow.
    EXPECT_GT(seen[15], seen[1]);
}

TEST(SignalPadding, UnpadEdgeCases) {
    std::string_view out = "untouched";
    EXPECT_FALSE(wa::signal::unpad_message("", out));
    EXPECT_EQ(out, "untouched");
    EXPECT_TRUE(wa::signal::unpad_message(std::string("abc\x03\x03\x03", 6), out));
    EXPECT_EQ(out, "abc");
    EXPECT_FALSE(wa::signal::unpad_message(std::string("abc\x02\x03\x03", 6), out));  // a pad byte differs
    EXPECT_FALSE(wa::signal::unpad_message(std::string("a\x05\x05\x05\x05", 5), out));  // longer than the input
    EXPECT_TRUE(wa::signal::unpad_message(std::string("\x05\x05\x05\x05\x05", 5), out));  // pad only
    EXPECT_EQ(out, "");
    EXPECT_TRUE(wa::signal::unpad_message(std::string("\x01", 1), out));
    EXPECT_EQ(out, "");
    // whatsmeow isValidPadding: a last byte 0 is "no padding" (nothing stripped).
    EXPECT_TRUE(wa::signal::unpad_message(std::string("ab\0", 3), out));
    EXPECT_EQ(out, std::string("ab\0", 3));
    // Baileys pads up to 16: accepted.
    std::string b16 = "xyz" + std::string(16, '\x10');
    EXPECT_TRUE(wa::signal::unpad_message(b16, out));
    EXPECT_EQ(out, "xyz");
    EXPECT_EQ(wa::signal::pad_message("payload", 0), "payload");
    for (int p = 1; p < 256; p++) {
        std::string s = wa::signal::pad_message("payload", static_cast<uint8_t>(p));
        ASSERT_EQ(s.size(), 7u + p);
        ASSERT_TRUE(wa::signal::unpad_message(s, out)) << p;
        EXPECT_EQ(out, "payload") << p;
    }
}

TEST(SignalFraming, TextMessageIsConversation) {
    waproto::Message m = wa::signal::text_message("hola ñandú 👋\nline 2");
    EXPECT_TRUE(m.has_conversation());
    EXPECT_FALSE(m.has_extendedtextmessage());
    std::string padded;
    ASSERT_TRUE(wa::signal::encode_message(m, padded));
    wa::signal::ReceivedMessage got;
    std::string err;
    ASSERT_TRUE(wa::signal::decode_message(padded, got, &err)) << err;
    EXPECT_FALSE(got.device_sent);
    EXPECT_EQ(got.message.conversation(), "hola ñandú 👋\nline 2");
    // Exactly Message{1: text} plus 1..15 pad bytes.
    std::string raw;
    ASSERT_TRUE(m.SerializeToString(&raw));
    EXPECT_EQ(raw.substr(0, 1), "\x0a");
    EXPECT_EQ(padded.substr(0, raw.size()), raw);
}

TEST(SignalFraming, DeviceSentWrapperCopiesContextInfoAndUnwraps) {
    waproto::Message m = wa::signal::text_message("to the chat");
    m.mutable_messagecontextinfo()->set_messagesecret(std::string(32, 's'));
    waproto::Message dsm = wa::signal::device_sent_message(m, "573009876543@s.whatsapp.net");
    ASSERT_TRUE(dsm.has_devicesentmessage());
    EXPECT_EQ(dsm.devicesentmessage().destinationjid(), "573009876543@s.whatsapp.net");
    EXPECT_EQ(dsm.devicesentmessage().message().conversation(), "to the chat");
    EXPECT_EQ(dsm.messagecontextinfo().messagesecret(), std::string(32, 's'));
    EXPECT_FALSE(dsm.has_conversation());
    // Without a messageContextInfo none is added.
    EXPECT_FALSE(wa::signal::device_sent_message(wa::signal::text_message("x"), "1@s.whatsapp.net").has_messagecontextinfo());

    std::string padded;
    ASSERT_TRUE(wa::signal::encode_message(dsm, padded));
    wa::signal::ReceivedMessage got;
    ASSERT_TRUE(wa::signal::decode_message(padded, got));
    EXPECT_TRUE(got.device_sent);
    EXPECT_EQ(got.destination_jid, "573009876543@s.whatsapp.net");
    EXPECT_EQ(got.message.conversation(), "to the chat");
    EXPECT_EQ(got.message.messagecontextinfo().messagesecret(), std::string(32, 's'));
}

TEST(SignalFraming, DecodeRefusesBadPaddingAndMistypedFields) {
    wa::signal::ReceivedMessage got;
    std::string err;
    EXPECT_FALSE(wa::signal::decode_message("", got, &err));
    EXPECT_FALSE(wa::signal::decode_message(std::string("\x0a\x01x\x02\x03", 5), got, &err));  // pad 03 vs 02
    EXPECT_NE(err.find("padding"), std::string::npos);
    EXPECT_FALSE(wa::signal::decode_message(wa::signal::pad_message(std::string("\x0a\x09x", 3), 1), got, &err));
    // conversation (field 1) as a varint instead of a string
    EXPECT_FALSE(wa::signal::decode_message(wa::signal::pad_message(std::string("\x08\x01", 2), 3), got, &err));
    // A deviceSentMessage without an inner message is left as it is.
    std::string dsm_only = std::string("\xfa\x01\x03\x0a\x01z", 6);  // field 31, {destinationJid: "z"}
    ASSERT_TRUE(wa::signal::decode_message(wa::signal::pad_message(dsm_only, 2), got, &err)) << err;
    EXPECT_FALSE(got.device_sent);
    EXPECT_EQ(got.message.devicesentmessage().destinationjid(), "z");
}

TEST(SignalFraming, MessageIdsFollowWhatsmeow) {
    std::string r16;
    for (int i = 0; i < 16; i++) r16.push_back(static_cast<char>(i));
    // SHA-256(u64 BE 1764600000 ‖ "573001234567@c.us" ‖ 00..0f)[:9], computed with Python's hashlib.
    EXPECT_EQ(wa::signal::message_id(1764600000, "573001234567", r16), "3EB0D0008EA5B6DF4BA9F3");
    EXPECT_EQ(wa::signal::message_id(1764600000, "", r16), "3EB0E0331AC90F6990D8E7");
    std::string a = wa::signal::new_message_id("573001234567"), b = wa::signal::new_message_id("573001234567");
    EXPECT_EQ(a.size(), 22u);
    EXPECT_EQ(a.substr(0, 4), "3EB0");
    EXPECT_NE(a, b);
    for (char c : a) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')) << a;
}

TEST(SignalFraming, ParticipantHashFollowsWhatsmeow) {
    std::vector<Jid> devs(3);
    ASSERT_TRUE(Jid::parse("573001234567:3@s.whatsapp.net", devs[0]));
    ASSERT_TRUE(Jid::parse("123456789012345:2@lid", devs[1]));
    ASSERT_TRUE(Jid::parse("573001234567@s.whatsapp.net", devs[2]));
    EXPECT_EQ(wa::signal::ad_string(devs[0]), "573001234567.0:3@s.whatsapp.net");
    EXPECT_EQ(wa::signal::ad_string(devs[1]), "123456789012345.0:2@lid");
    // sha256("123456789012345.0:2@lid573001234567.0:0@s.whatsapp.net573001234567.0:3@s.whatsapp.net")[:6]
    EXPECT_EQ(wa::signal::participant_hash(devs), "2:3eaYGH0I");
    std::swap(devs[0], devs[2]);
    EXPECT_EQ(wa::signal::participant_hash(devs), "2:3eaYGH0I");
    EXPECT_EQ(wa::signal::participant_hash({}).size(), 10u);
}

// ---- bundle nodes ---------------------------------------------------------------------------------------

std::string bytes(size_t n, int k) {
    std::string s;
    for (size_t i = 0; i < n; i++) s.push_back(static_cast<char>((k + i * 7) & 0xFF));
    return s;
}

Node key_node(const char* tag, std::string id3, std::string value, std::string sig = {}) {
    std::vector<Node> c{Node::with_bytes("id", {}, std::move(id3)), Node::with_bytes("value", {}, std::move(value))};
    if (!sig.empty()) c.push_back(Node::with_bytes("signature", {}, std::move(sig)));
    return Node(tag, {}, std::move(c));
}

Node user_node(const std::string& jid, bool with_key, bool wrapped) {
    std::vector<Node> keys{Node::with_bytes("type", {}, "\x05"), Node::with_bytes("identity", {}, bytes(32, 1)),
                           key_node("skey", std::string("\x00\x00\x01", 3), bytes(32, 2), bytes(64, 3))};
    if (with_key) keys.push_back(key_node("key", std::string("\x01\x02\x03", 3), bytes(32, 4)));
    std::vector<Node> c{Node::with_bytes("registration", {}, std::string("\x00\x00\x30\x39", 4))};
    if (wrapped)
        c.push_back(Node("keys", {}, std::move(keys)));
    else
        for (Node& k : keys) c.push_back(std::move(k));
    return Node("user", {{"jid", jid}}, std::move(c));
}

TEST(SignalBundles, ParsesUsersAndSkipsOnlyTheFailedOnes) {
    std::vector<Node> users;
    users.push_back(user_node("123456789012345:2@lid", true, false));
    users.push_back(user_node("573001234567@s.whatsapp.net", false, true));  // <keys> wrapper, no one-time key
    users.push_back(Node("user", {{"jid", "555:1@lid"}},
                         {Node("error", {{"code", "404"}, {"text", "item-not-found"}})}));
    Node bad = user_node("556@s.whatsapp.net", true, false);
    bad.children[2].bytes.resize(31);  // identity of 31 bytes
    users.push_back(std::move(bad));
    Node bad_reg = user_node("557@s.whatsapp.net", true, false);
    bad_reg.children[0].bytes = "\x01\x02\x03";
    users.push_back(std::move(bad_reg));
    users.push_back(Node("user", {{"jid", "nonsense"}}));
    users.push_back(Node("other"));
    Node iq("iq", {{"type", "result"}, {"id", "1.2-3"}}, {Node("list", {}, std::move(users))});

    // Through the binary codec, as it arrives.
    Node wire;
    std::string err;
    ASSERT_TRUE(wa::decode(wa::encode(iq), wire, &err)) << err;
    std::vector<wa::signal::UserBundle> out;
    ASSERT_TRUE(wa::signal::parse_prekey_bundles(wire, out, &err)) << err;
    ASSERT_EQ(out.size(), 6u);

    EXPECT_TRUE(out[0].ok) << out[0].error;
    EXPECT_EQ(out[0].jid_text, "123456789012345:2@lid");
    EXPECT_EQ(out[0].jid.device, 2);
    EXPECT_EQ(wa::signal::address_of(out[0].jid).to_string(), "123456789012345_1.2");
    const PreKeyBundle& b = out[0].bundle;
    EXPECT_EQ(b.registration_id, 12345u);
    EXPECT_EQ(b.identity, bytes(32, 1));
    EXPECT_EQ(b.signed_prekey_id, 1u);
    EXPECT_EQ(b.signed_prekey, bytes(32, 2));
    EXPECT_EQ(b.signed_prekey_sig, bytes(64, 3));
    EXPECT_TRUE(b.has_prekey);
    EXPECT_EQ(b.prekey_id, 0x010203u);
    EXPECT_EQ(b.prekey, bytes(32, 4));

    EXPECT_TRUE(out[1].ok) << out[1].error;
    EXPECT_FALSE(out[1].bundle.has_prekey);
    EXPECT_EQ(out[1].bundle.identity, bytes(32, 1));

    EXPECT_FALSE(out[2].ok);
    EXPECT_EQ(out[2].jid_text, "555:1@lid");
    EXPECT_NE(out[2].error.find("404"), std::string::npos);
    EXPECT_NE(out[2].error.find("item-not-found"), std::string::npos);
    EXPECT_FALSE(out[3].ok);
    EXPECT_NE(out[3].error.find("identity"), std::string::npos);
    EXPECT_TRUE(out[3].bundle.identity.empty());
    EXPECT_FALSE(out[4].ok);
    EXPECT_NE(out[4].error.find("registration"), std::string::npos);
    EXPECT_FALSE(out[5].ok);

    // The iq as a whole.
    EXPECT_FALSE(wa::signal::parse_prekey_bundles(Node("iq", {{"type", "result"}}), out, &err));
    EXPECT_FALSE(wa::signal::parse_prekey_bundles(
        Node("iq", {{"type", "error"}}, {Node("error", {{"code", "500"}, {"text", "internal"}})}), out, &err));
    EXPECT_NE(err.find("500"), std::string::npos);
}

TEST(SignalBundles, RequestAsWhatsmeowSendsIt) {
    std::vector<Jid> devs(2);
    ASSERT_TRUE(Jid::parse("123456789012345:2@lid", devs[0]));
    ASSERT_TRUE(Jid::parse("573001234567@s.whatsapp.net", devs[1]));
    Node iq = wa::signal::prekey_request(devs);
    EXPECT_EQ(wa::to_string(iq),
              wa::to_string(Node("iq", {{"xmlns", "encrypt"}, {"type", "get"}, {"to", "@s.whatsapp.net"}},
                                 {Node("key", {},
                                       {Node("user", {{"jid", "123456789012345:2@lid"}, {"reason", "identity"}}),
                                        Node("user", {{"jid", "573001234567@s.whatsapp.net"}, {"reason", "identity"}})})})));
    std::string enc;
    EXPECT_TRUE(wa::encode(iq, enc));
}

// ---- two accounts -----------------------------------------------------------------------------------------

// A Store that forwards to another and can be told to fail session writes.
class FlakyStore : public Store {
public:
    explicit FlakyStore(Store& s) : s_(s) {}
    bool fail_put_session = false;
    // messages, idempotency, device lists, privacy tokens: passed through
    bool put_message(const std::string& o, const wa::store::MessageRecord& m, std::string* e) override { return s_.put_message(o, m, e); }
    bool load_message(const std::string& o, const std::string& id, wa::store::MessageRecord& m, bool& f, std::string* e) override {
        return s_.load_message(o, id, m, f, e);
    }
    bool advance_message_status(const std::string& o, const std::string& id, const std::string& st, int64_t at, int code,
                                const std::string& er, bool& ch, std::string* e) override {
        return s_.advance_message_status(o, id, st, at, code, er, ch, e);
    }
    bool list_messages(const std::string& o, const std::string& d, size_t l, const std::string& c,
                       std::vector<wa::store::MessageRecord>& it, std::string& n, std::string* e) override {
        return s_.list_messages(o, d, l, c, it, n, e);
    }
    bool pending_messages(const std::string& o, std::vector<wa::store::MessageRecord>& out, std::string* e) override {
        return s_.pending_messages(o, out, e);
    }
    bool expire_messages(int64_t t, uint64_t cap, uint64_t& d, std::string* e) override { return s_.expire_messages(t, cap, d, e); }
    bool count_messages(const std::string& o, const std::string& d, uint64_t& n, std::string* e) override {
        return s_.count_messages(o, d, n, e);
    }
    bool put_idempotency(const std::string& o, const std::string& k, const std::string& h, const std::string& id, int64_t t,
                         std::string* e) override {
        return s_.put_idempotency(o, k, h, id, t, e);
    }
    bool load_idempotency(const std::string& o, const std::string& k, std::string& h, std::string& id, int64_t& t, bool& f,
                          std::string* e) override {
        return s_.load_idempotency(o, k, h, id, t, f, e);
    }
    bool expire_idempotency(int64_t t, uint64_t& d, std::string* e) override { return s_.expire_idempotency(t, d, e); }
    bool put_devices(const std::string& o, const std::string& u, const std::vector<uint32_t>& d, int64_t t, std::string* e) override {
        return s_.put_devices(o, u, d, t, e);
    }
    bool load_devices(const std::string& o, const std::string& u, std::vector<uint32_t>& d, int64_t& t, bool& f,
                      std::string* e) override {
        return s_.load_devices(o, u, d, t, f, e);
    }
    bool delete_devices(const std::string& o, const std::string& u, std::string* e) override { return s_.delete_devices(o, u, e); }
    bool expire_devices(int64_t t, uint64_t& d, std::string* e) override { return s_.expire_devices(t, d, e); }
    bool put_privacy_token(const std::string& o, const std::string& j, const std::string& tk, int64_t t, std::string* e) override {
        return s_.put_privacy_token(o, j, tk, t, e);
    }
    bool put_privacy_token_sender_t(const std::string& o, const std::string& j, int64_t t, std::string* e) override {
        return s_.put_privacy_token_sender_t(o, j, t, e);
    }
    bool load_privacy_token(const std::string& o, const std::string& j, wa::store::PrivacyToken& p, bool& f, std::string* e) override {
        return s_.load_privacy_token(o, j, p, f, e);
    }
    bool expire_privacy_tokens(int64_t t, uint64_t& d, std::string* e) override { return s_.expire_privacy_tokens(t, d, e); }
    bool begin(std::string* e) override { return s_.begin(e); }
    bool commit(std::string* e) override { return s_.commit(e); }
    void rollback() override { s_.rollback(); }
    bool in_transaction() const override { return s_.in_transaction(); }
    bool set_synchronous(bool f, std::string* e) override { return s_.set_synchronous(f, e); }
    bool load_orgs(std::vector<wa::store::OrgRecord>& o, std::vector<std::pair<std::string, std::string>>& c,
                   std::string* e) override {
        return s_.load_orgs(o, c, e);
    }
    bool put_org(const wa::store::OrgRecord& r, std::string* e) override { return s_.put_org(r, e); }
    bool clear_org(const std::string& o, std::string* e) override { return s_.clear_org(o, e); }
    bool forget_credentials(const std::string& o, std::string* e) override { return s_.forget_credentials(o, e); }
    bool purge_org(const std::string& o, std::string* e) override { return s_.purge_org(o, e); }
    bool load_credentials(const std::string& o, Credentials& c, bool& f, std::string* e) override {
        return s_.load_credentials(o, c, f, e);
    }
    bool put_credentials(const std::string& o, const Credentials& c, std::string* e) override {
        return s_.put_credentials(o, c, e);
    }
    bool put_prekeys(const std::string& o, const std::vector<PreKey>& k, std::string* e) override {
        return s_.put_prekeys(o, k, e);
    }
    bool load_prekey(const std::string& o, uint32_t id, PreKey& k, bool& f, std::string* e) override {
        return s_.load_prekey(o, id, k, f, e);
    }
    bool load_unuploaded_prekeys(const std::string& o, size_t l, std::vector<PreKey>& k, std::string* e) override {
        return s_.load_unuploaded_prekeys(o, l, k, e);
    }
    bool mark_prekeys_uploaded(const std::string& o, uint32_t a, uint32_t b, std::string* e) override {
        return s_.mark_prekeys_uploaded(o, a, b, e);
    }
    bool remove_prekey(const std::string& o, uint32_t id, std::string* e) override { return s_.remove_prekey(o, id, e); }
    bool count_prekeys(const std::string& o, bool u, uint32_t& n, std::string* e) override {
        return s_.count_prekeys(o, u, n, e);
    }
    bool load_session(const std::string& o, const std::string& a, std::string& r, bool& f, std::string* e) override {
        return s_.load_session(o, a, r, f, e);
    }
    bool put_session(const std::string& o, const std::string& a, const std::string& r, std::string* e) override {
        if (fail_put_session) {
            if (e) *e = "disk full (test)";
            return false;
        }
        return s_.put_session(o, a, r, e);
    }
    bool delete_session(const std::string& o, const std::string& a, std::string* e) override {
        return s_.delete_session(o, a, e);
    }
    bool session_devices(const std::string& o, const std::string& n, std::vector<uint32_t>& d, std::string* e) override {
        return s_.session_devices(o, n, d, e);
    }
    bool load_identity(const std::string& o, const std::string& a, std::string& k, bool& f, std::string* e) override {
        return s_.load_identity(o, a, k, f, e);
    }
    bool put_identity(const std::string& o, const std::string& a, const std::string& k, std::string* e) override {
        return s_.put_identity(o, a, k, e);
    }
    bool put_lid_mapping(const std::string& o, const std::string& p, const std::string& l, std::string* e) override {
        return s_.put_lid_mapping(o, p, l, e);
    }
    bool lid_for_pn(const std::string& o, const std::string& p, std::string& l, bool& f, std::string* e) override {
        return s_.lid_for_pn(o, p, l, f, e);
    }
    bool pn_for_lid(const std::string& o, const std::string& l, std::string& p, bool& f, std::string* e) override {
        return s_.pn_for_lid(o, l, p, f, e);
    }

private:
    Store& s_;
};

Credentials make_credentials() {
    Credentials c;
    wa::crypto::KeyPair noise, identity, spk;
    EXPECT_TRUE(wa::crypto::generate_keypair(noise) && wa::crypto::generate_keypair(identity) &&
                wa::crypto::generate_keypair(spk));
    c.noise_priv = noise.priv;
    c.noise_pub = noise.pub;
    c.identity_priv = identity.priv;
    c.identity_pub = identity.pub;
    uint16_t reg = 0;
    wa::crypto::random_bytes(&reg, sizeof reg);
    c.registration_id = (reg & 16383) ? (reg & 16383) : 1;
    c.signed_prekey_id = 7;
    c.signed_prekey_priv = spk.priv;
    c.signed_prekey_pub = spk.pub;
    c.signed_prekey_sig = wa::crypto::xeddsa_sign(identity.priv, std::string(1, '\x05') + spk.pub);
    c.adv_secret = wa::crypto::random_string(32);
    c.next_prekey_id = 1;
    return c;
}

// One side: a temp-dir SQLite store with credentials and a few one-time prekeys, and its Account.
struct Side {
    std::string dir, org;
    std::unique_ptr<Store> store;
    std::unique_ptr<FlakyStore> flaky;
    std::unique_ptr<Account> account;
    std::vector<PreKey> prekeys;

    explicit Side(std::string o, AccountOptions opts = {}) : org(std::move(o)) {
        char tmpl[] = "/tmp/wa_signal_test_XXXXXX";
        EXPECT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
        std::string err;
        store = wa::store::open_sqlite_store(dir, false, &err);
        EXPECT_TRUE(store) << err;
        Credentials c = make_credentials();
        for (uint32_t id = 1; id <= 5; id++) {
            wa::crypto::KeyPair kp;
            EXPECT_TRUE(wa::crypto::generate_keypair(kp));
            prekeys.push_back(PreKey{id, kp.priv, kp.pub, true});
        }
        c.next_prekey_id = 6;
        EXPECT_TRUE(store->put_credentials(org, c, &err)) << err;
        EXPECT_TRUE(store->put_prekeys(org, prekeys, &err)) << err;
        reopen(opts);
    }
    ~Side() {
        account.reset();
        flaky.reset();
        store.reset();
        std::string err;
        EXPECT_TRUE(wa::remove_tree(dir, &err)) << err;
    }
    // A fresh store connection and Account on the same file (a restart).
    void reopen(AccountOptions opts = {}) {
        account.reset();
        flaky.reset();
        store.reset();
        std::string err;
        store = wa::store::open_sqlite_store(dir, false, &err);
        ASSERT_TRUE(store) << err;
        flaky = std::make_unique<FlakyStore>(*store);
        account = Account::open(*flaky, org, &err, opts);
        ASSERT_TRUE(account) << err;
    }
    PreKeyBundle bundle(size_t prekey_index) {
        return account->own_bundle(prekey_index < prekeys.size() ? &prekeys[prekey_index] : nullptr);
    }
    bool has_prekey(uint32_t id) {
        PreKey k;
        bool found = false;
        std::string err;
        EXPECT_TRUE(store->load_prekey(org, id, k, found, &err)) << err;
        return found;
    }
    std::string identity_of(const Address& a) {
        std::string key, err;
        bool found = false;
        EXPECT_TRUE(store->load_identity(org, a.to_string(), key, found, &err)) << err;
        return found ? key : std::string();
    }
};

// Encrypts text as the messages layer will (conversation, padded) and checks the enc type.
Encrypted send(Side& from, const Address& to, const std::string& text, EncType want) {
    std::string padded;
    EXPECT_TRUE(wa::signal::encode_message(wa::signal::text_message(text), padded));
    Encrypted e;
    Result r = from.account->encrypt(to, padded, e);
    EXPECT_EQ(r, Result::Ok) << wa::signal::result_name(r) << " " << from.account->last_error();
    EXPECT_EQ(e.type, want) << wa::signal::enc_type_name(e.type);
    return e;
}

std::string receive(Side& to, const Address& from, const Encrypted& e, Result want = Result::Ok,
                    Decrypted* info = nullptr) {
    Decrypted d;
    Result r = to.account->decrypt(from, e.type, e.ciphertext, d);
    EXPECT_EQ(r, want) << wa::signal::result_name(r) << " " << to.account->last_error();
    if (info) *info = d;
    if (r != Result::Ok) return {};
    wa::signal::ReceivedMessage m;
    std::string err;
    EXPECT_TRUE(wa::signal::decode_message(d.plaintext, m, &err)) << err;
    return m.message.conversation();
}

const Address kAlice = {"573001111111", 0};        // how Bob names Alice's device
const Address kBob = {"123456789012345_1", 3};     // Bob's LID device, as Alice names it

TEST(SignalAccount, TwoAccountsExchangeMessagesBothWays) {
    Side alice("1"), bob("2");
    EXPECT_FALSE(alice.account->has_session(kBob));
    Encrypted none;
    EXPECT_EQ(alice.account->encrypt(kBob, "x", none), Result::NoSession);

    bool changed = true;
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(1), &changed), Result::Ok) << alice.account->last_error();
    EXPECT_FALSE(changed);
    EXPECT_TRUE(alice.account->has_session(kBob));
    EXPECT_EQ(alice.identity_of(kBob), bob.account->own_bundle().identity);

    // Until Bob answers, every message is a pkmsg naming prekey 2.
    Encrypted m1 = send(alice, kBob, "hola Bob ñ 👋", EncType::PkMsg);
    Encrypted m2 = send(alice, kBob, "second\nline", EncType::PkMsg);
    ASSERT_TRUE(bob.has_prekey(2));
    Decrypted info;
    EXPECT_EQ(receive(bob, kAlice, m1, Result::Ok, &info), "hola Bob ñ 👋");
    EXPECT_EQ(info.prekey_used, 2u);
    EXPECT_FALSE(info.identity_changed);
    EXPECT_FALSE(bob.has_prekey(2));  // consumed (remove_prekey)
    EXPECT_TRUE(bob.has_prekey(1));
    EXPECT_EQ(bob.identity_of(kAlice), alice.account->own_bundle().identity);
    EXPECT_EQ(receive(bob, kAlice, m2, Result::Ok, &info), "second\nline");
    EXPECT_EQ(info.prekey_used, 0u);  // the session was there already

    // Bob answers with plain msgs; Alice's next message is a msg too.
    for (int i = 0; i < 5; i++) {
        Encrypted r = send(bob, kAlice, "reply " + std::to_string(i), EncType::Msg);
        EXPECT_EQ(receive(alice, kBob, r), "reply " + std::to_string(i));
    }
    for (int i = 0; i < 5; i++) {
        Encrypted r = send(alice, kBob, "more " + std::to_string(i), EncType::Msg);
        EXPECT_EQ(receive(bob, kAlice, r), "more " + std::to_string(i));
    }
    // Ping-pong (a DH ratchet step on every turn).
    for (int i = 0; i < 6; i++) {
        Side& from = i % 2 ? bob : alice;
        Side& to = i % 2 ? alice : bob;
        const Address& fa = i % 2 ? kAlice : kBob;
        const Address& ta = i % 2 ? kBob : kAlice;
        EXPECT_EQ(receive(to, ta, send(from, fa, "turn " + std::to_string(i), EncType::Msg)), "turn " + std::to_string(i));
    }
}

TEST(SignalAccount, OutOfOrderReplayTamperAndGarbage) {
    Side alice("1"), bob("2");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    EXPECT_EQ(receive(bob, kAlice, send(alice, kBob, "first", EncType::PkMsg)), "first");
    EXPECT_EQ(receive(alice, kBob, send(bob, kAlice, "ack", EncType::Msg)), "ack");

    Encrypted a = send(alice, kBob, "a", EncType::Msg), b = send(alice, kBob, "b", EncType::Msg),
              c = send(alice, kBob, "c", EncType::Msg);
    EXPECT_EQ(receive(bob, kAlice, c), "c");  // skipped keys for a and b are kept
    EXPECT_EQ(receive(bob, kAlice, a), "a");
    EXPECT_EQ(receive(bob, kAlice, a, Result::Duplicate), "");  // replay
    EXPECT_EQ(receive(bob, kAlice, c, Result::Duplicate), "");

    Encrypted t = b;
    t.ciphertext.back() ^= 0x01;  // the MAC
    EXPECT_EQ(receive(bob, kAlice, t, Result::BadMac), "");
    t = b;
    t.ciphertext[t.ciphertext.size() / 2] ^= 0x40;  // the body
    Decrypted d;
    Result r = bob.account->decrypt(kAlice, t.type, t.ciphertext, d);
    EXPECT_TRUE(r == Result::BadMac || r == Result::InvalidMessage) << wa::signal::result_name(r);
    EXPECT_EQ(receive(bob, kAlice, b), "b");  // the untampered one still decrypts afterwards

    EXPECT_EQ(bob.account->decrypt(kAlice, EncType::Msg, "garbage", d), Result::InvalidMessage);
    EXPECT_EQ(bob.account->decrypt(kAlice, EncType::PkMsg, "garbage", d), Result::InvalidMessage);
    EXPECT_EQ(bob.account->decrypt(kAlice, EncType::Msg, "", d), Result::InvalidMessage);
    // A msg from someone Bob has no session with.
    Address stranger{"573009999999", 0};
    EXPECT_EQ(bob.account->decrypt(stranger, EncType::Msg, b.ciphertext, d), Result::NoSession);
    EncType et;
    EXPECT_TRUE(wa::signal::parse_enc_type("pkmsg", et) && et == EncType::PkMsg);
    EXPECT_TRUE(wa::signal::parse_enc_type("msg", et) && et == EncType::Msg);
    EXPECT_FALSE(wa::signal::parse_enc_type("skmsg", et));
}

TEST(SignalAccount, PkmsgReplayIsDuplicateAndUnknownPrekeyIsInvalidPrekeyId) {
    Side alice("1"), bob("2"), carol("3");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    Encrypted p = send(alice, kBob, "x", EncType::PkMsg);
    EXPECT_EQ(receive(bob, kAlice, p), "x");
    EXPECT_EQ(receive(bob, kAlice, p, Result::Duplicate), "");  // session found by base key; key used

    // Carol builds from a bundle whose one-time prekey Bob no longer has (prekey 1 was just consumed).
    Address kCarol{"573002222222", 0};
    ASSERT_EQ(carol.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    EXPECT_EQ(receive(bob, kCarol, send(carol, kBob, "late", EncType::PkMsg), Result::InvalidPreKeyId), "");
    // A bundle without a one-time prekey works (the server ran out).
    Side dave("4");
    Address kDave{"573003333333", 0};
    ASSERT_EQ(dave.account->build_session(kBob, bob.bundle(99)), Result::Ok);
    Decrypted info;
    EXPECT_EQ(receive(bob, kDave, send(dave, kBob, "no otk", EncType::PkMsg), Result::Ok, &info), "no otk");
    EXPECT_EQ(info.prekey_used, 0u);
}

TEST(SignalAccount, BadBundlesAreRefused) {
    Side alice("1"), bob("2");
    PreKeyBundle b = bob.bundle(0);
    b.signed_prekey_sig[5] ^= 1;
    EXPECT_EQ(alice.account->build_session(kBob, b), Result::InvalidBundle);
    EXPECT_FALSE(alice.account->has_session(kBob));
    b = bob.bundle(0);
    b.identity.resize(31);
    EXPECT_EQ(alice.account->build_session(kBob, b), Result::InvalidBundle);
    b = bob.bundle(0);
    b.signed_prekey_sig.clear();
    EXPECT_EQ(alice.account->build_session(kBob, b), Result::InvalidBundle);
    EXPECT_FALSE(alice.account->has_session(kBob));
}

TEST(SignalAccount, SessionsSurviveARestart) {
    Side alice("1"), bob("2");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    EXPECT_EQ(receive(bob, kAlice, send(alice, kBob, "before", EncType::PkMsg)), "before");
    EXPECT_EQ(receive(alice, kBob, send(bob, kAlice, "ack", EncType::Msg)), "ack");
    Encrypted pending = send(alice, kBob, "in flight", EncType::Msg);

    bob.reopen();  // a new process on the same whatsapp.db
    alice.reopen();
    EXPECT_EQ(bob.account->stats().store_reads, 0u);
    EXPECT_EQ(receive(bob, kAlice, pending), "in flight");
    EXPECT_EQ(receive(alice, kBob, send(bob, kAlice, "after restart", EncType::Msg)), "after restart");
    EXPECT_EQ(receive(bob, kAlice, send(alice, kBob, "still going", EncType::Msg)), "still going");
    EXPECT_EQ(bob.account->stats().store_reads, 1u);  // read once, then cached

    EXPECT_EQ(bob.account->delete_session(kAlice), Result::Ok);
    EXPECT_FALSE(bob.account->has_session(kAlice));
    bob.reopen();
    EXPECT_FALSE(bob.account->has_session(kAlice));
}

TEST(SignalAccount, CacheIsWriteThroughAndBounded) {
    Side alice("1", AccountOptions{true, 2}), bob("2");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    EXPECT_EQ(receive(bob, kAlice, send(alice, kBob, "one", EncType::PkMsg)), "one");
    uint64_t reads = alice.account->stats().store_reads;
    for (int i = 0; i < 20; i++) send(alice, kBob, "again", EncType::PkMsg);
    EXPECT_EQ(alice.account->stats().store_reads, reads);  // no SQLite reads on an existing session
    // Every write reached the store: another connection sees the newest record.
    std::string rec, err;
    bool found = false;
    auto other = wa::store::open_sqlite_store(alice.dir, false, &err);
    ASSERT_TRUE(other) << err;
    ASSERT_TRUE(other->load_session("1", kBob.to_string(), rec, found, &err)) << err;
    EXPECT_TRUE(found);
    // Two other addresses push kBob out of the 2-entry cache; it is read again, once.
    alice.account->has_session({"x", 1});
    alice.account->has_session({"y", 1});
    EXPECT_EQ(alice.account->cached_sessions(), 2u);
    reads = alice.account->stats().store_reads;
    send(alice, kBob, "evicted", EncType::PkMsg);
    EXPECT_EQ(alice.account->stats().store_reads, reads + 1);
    alice.account->drop_cache();
    EXPECT_EQ(alice.account->cached_sessions(), 0u);
}

TEST(SignalAccount, ChangedIdentityIsReplacedSilentlyUnlessAutoTrustIsOff) {
    Side alice("1"), bob("2");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    EXPECT_EQ(receive(bob, kAlice, send(alice, kBob, "old identity", EncType::PkMsg)), "old identity");
    std::string old_identity = bob.identity_of(kAlice);

    // Alice reinstalls: same address, new identity (another store with new credentials).
    Side alice2("5");
    ASSERT_EQ(alice2.account->build_session(kBob, bob.bundle(1)), Result::Ok);
    Encrypted p = send(alice2, kBob, "new identity", EncType::PkMsg);

    // whatsmeow with AutoTrustIdentity off: ErrUntrustedIdentity; nothing is consumed or replaced.
    bob.reopen(AccountOptions{false, 4096});
    EXPECT_EQ(receive(bob, kAlice, p, Result::UntrustedIdentity), "");
    EXPECT_TRUE(bob.has_prekey(2));
    EXPECT_EQ(bob.identity_of(kAlice), old_identity);

    // Default (auto trust): the identity is replaced, the session rebuilt, the message read.
    bob.reopen();
    Decrypted info;
    EXPECT_EQ(receive(bob, kAlice, p, Result::Ok, &info), "new identity");
    EXPECT_TRUE(info.identity_changed);
    EXPECT_EQ(info.prekey_used, 2u);
    EXPECT_EQ(bob.identity_of(kAlice), alice2.account->own_bundle().identity);
    EXPECT_EQ(receive(alice2, kBob, send(bob, kAlice, "welcome back", EncType::Msg)), "welcome back");

    // The same on the sending side: a bundle with a new identity for a known address.
    Side bob2("6");
    bool changed = false;
    EXPECT_EQ(alice2.account->build_session(kBob, bob2.bundle(0), &changed), Result::Ok);
    EXPECT_TRUE(changed);
    alice2.reopen(AccountOptions{false, 4096});
    Side bob3("7");
    EXPECT_EQ(alice2.account->build_session(kBob, bob3.bundle(0), &changed), Result::UntrustedIdentity);
}

TEST(SignalAccount, StoreFailuresAreReportedAsSuch) {
    Side alice("1"), bob("2");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    Encrypted p = send(alice, kBob, "x", EncType::PkMsg);
    bob.flaky->fail_put_session = true;
    Decrypted d;
    EXPECT_EQ(bob.account->decrypt(kAlice, p.type, p.ciphertext, d), Result::StoreFailed);
    EXPECT_NE(bob.account->last_error().find("disk full"), std::string::npos) << bob.account->last_error();
    EXPECT_TRUE(bob.has_prekey(1));  // libsignal stops before removing the prekey
    bob.flaky->fail_put_session = false;
    EXPECT_EQ(receive(bob, kAlice, p), "x");
    alice.flaky->fail_put_session = true;
    Encrypted e;
    EXPECT_EQ(alice.account->encrypt(kBob, "y", e), Result::StoreFailed);
    alice.flaky->fail_put_session = false;
    EXPECT_EQ(alice.account->encrypt(kBob, "y", e), Result::Ok);
    for (Result r : {Result::Ok, Result::NoSession, Result::BadMac, Result::InvalidMessage, Result::Duplicate,
                     Result::UntrustedIdentity, Result::InvalidPreKeyId, Result::InvalidBundle, Result::StoreFailed,
                     Result::Internal})
        EXPECT_STRNE(wa::signal::result_name(r), "");
}

TEST(SignalAccount, OpenWithoutCredentialsFails) {
    char tmpl[] = "/tmp/wa_signal_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    std::string dir = tmpl, err;
    {
        auto store = wa::store::open_sqlite_store(dir, false, &err);
        ASSERT_TRUE(store) << err;
        EXPECT_FALSE(Account::open(*store, "9", &err));
        EXPECT_NE(err.find("no credentials"), std::string::npos) << err;
        Credentials c = make_credentials();
        c.signed_prekey_sig.resize(10);
        EXPECT_FALSE(Account::create(*store, "9", c, &err));
    }
    EXPECT_TRUE(wa::remove_tree(dir, &err)) << err;
}

// Not a pass/fail test: the cost of one encrypt on an existing session, with the record written through to
// SQLite inside one transaction (as the helper's group commit does), the message framed and padded.
TEST(SignalAccount, MeasureEncryptOnExistingSession) {
    Side alice("1"), bob("2");
    ASSERT_EQ(alice.account->build_session(kBob, bob.bundle(0)), Result::Ok);
    EXPECT_EQ(receive(bob, kAlice, send(alice, kBob, "hi", EncType::PkMsg)), "hi");
    EXPECT_EQ(receive(alice, kBob, send(bob, kAlice, "ack", EncType::Msg)), "ack");

    const int n = 2000;
    std::string err;
    std::vector<Encrypted> out(n);
    ASSERT_TRUE(alice.store->begin(&err)) << err;
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
        std::string padded;
        wa::signal::encode_message(wa::signal::text_message("Recordatorio: su cita es mañana a las 10:00"), padded);
        if (alice.account->encrypt(kBob, padded, out[i]) != Result::Ok) {
            ADD_FAILURE() << "encrypt " << i << " " << alice.account->last_error();
            break;
        }
    }
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(alice.store->commit(&err)) << err;
    double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / n;

    ASSERT_TRUE(bob.store->begin(&err)) << err;
    auto t2 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
        Decrypted d;
        if (bob.account->decrypt(kAlice, out[i].type, out[i].ciphertext, d) != Result::Ok) {
            ADD_FAILURE() << "decrypt " << i;
            break;
        }
    }
    auto t3 = std::chrono::steady_clock::now();
    ASSERT_TRUE(bob.store->commit(&err)) << err;
    double us_dec = std::chrono::duration<double, std::micro>(t3 - t2).count() / n;
    std::printf("[ MEASURE ] signal encrypt on an existing session (framed, padded, written through to SQLite in one "
                "transaction): %.1f us/message (%.0f/s); decrypt %.1f us/message\n",
                us, 1e6 / us, us_dec);
    EXPECT_EQ(alice.account->stats().store_reads, 1u);
}

}  // namespace

// Small random requests come from a block of OpenSSL's output: they still differ from one another, and a forked
// child never hands out the bytes its parent is about to (the block is emptied in the child).
TEST(RandomBytes, SmallRequestsDifferAndAForkedChildDoesNotRepeatItsParent) {
    std::set<std::string> seen;
    for (int i = 0; i < 2000; i++) {
        unsigned char b[16];
        ASSERT_TRUE(wa::crypto::random_bytes(b, sizeof b));
        seen.insert(std::string(reinterpret_cast<char*>(b), sizeof b));
    }
    EXPECT_EQ(seen.size(), 2000u);
    unsigned char first[4];
    ASSERT_TRUE(wa::crypto::random_bytes(first, sizeof first));  // the parent's block is now filled
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        unsigned char c[16] = {0};
        wa::crypto::random_bytes(c, sizeof c);
        _exit(write(fds[1], c, sizeof c) == static_cast<ssize_t>(sizeof c) ? 0 : 1);
    }
    unsigned char child[16] = {0}, parent[16] = {0};
    ASSERT_EQ(read(fds[0], child, sizeof child), static_cast<ssize_t>(sizeof child));
    int status = 0;
    waitpid(pid, &status, 0);
    close(fds[0]);
    close(fds[1]);
    ASSERT_TRUE(wa::crypto::random_bytes(parent, sizeof parent));
    EXPECT_NE(std::string(reinterpret_cast<char*>(child), 16), std::string(reinterpret_cast<char*>(parent), 16));
}
