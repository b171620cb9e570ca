// The session router, state machine, deadlines and disconnect table, driven with a fake clock and a fake
// WhatsApp server (Noise responder, binary nodes, real XEdDSA signatures) — no sockets.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "WAProto.pb.h"
#include "wa/codec/binary.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/codec/jid.hpp"
#include "wa/link/noise.hpp"
#include <set>

#include "wa/session.hpp"
#include "wa/store/store.hpp"
#include "wa/crypto/xeddsa.hpp"

using wa::Action;
using wa::Disconnect;
using wa::DisconnectPolicy;
using wa::Node;
using wa::Session;
using wa::State;
namespace n = wa::noise;

namespace {

constexpr int64_t kNow = 1700000000;

wa::SessionConfig cfg(double r = 0.5) {
    wa::SessionConfig c;
    c.server_url = "wss://example.test/ws/chat";
    c.handshake_timeout_ms = 20000;
    c.random = [r] { return r; };
    return c;
}

bool has(const wa::Actions& a, Action::Kind k) {
    for (const auto& x : a)
        if (x.kind == k) return true;
    return false;
}

const Action* find(const wa::Actions& a, Action::Kind k) {
    for (const auto& x : a)
        if (x.kind == k) return &x;
    return nullptr;
}

Disconnect transport_error(const char* text) { return Disconnect{Disconnect::Transport, 0, {}, 0, text}; }

// ---- a fake WhatsApp server: Noise responder with a real XEdDSA certificate chain, then binary nodes ----
struct FakeServer {
    wa::crypto::KeyPair root, inter, eph, stat, account;
    n::SymmetricState ss;
    n::Transport tx;       // the server's side of the transport
    n::FrameReader reader;
    bool handshaken = false;
    waproto::ClientPayload payload;
    std::vector<Node> received;

    FakeServer() {
        EXPECT_TRUE(wa::crypto::generate_keypair(root) && wa::crypto::generate_keypair(inter) &&
                    wa::crypto::generate_keypair(eph) && wa::crypto::generate_keypair(stat) &&
                    wa::crypto::generate_keypair(account));
    }
    std::string chain() {
        n::CertDetails i{1, 0, inter.pub, uint64_t(kNow - 3600), uint64_t(kNow + 86400)};
        n::CertDetails l{2, 1, stat.pub, uint64_t(kNow - 3600), uint64_t(kNow + 86400)};
        n::CertChain c;
        c.intermediate_details = n::encode_details(i);
        c.intermediate_signature = wa::crypto::xeddsa_sign(root.priv, c.intermediate_details);
        c.leaf_details = n::encode_details(l);
        c.leaf_signature = wa::crypto::xeddsa_sign(inter.priv, c.leaf_details);
        return n::encode_cert_chain(c);
    }
    // Feeds what the client wrote; returns the bytes the server answers (handshake only).
    std::string feed(std::string_view bytes) {
        if (!handshaken && reader.buffered() == 0 && bytes.substr(0, 4) == n::wa_intro()) bytes.remove_prefix(4);
        std::string out;
        if (!handshaken) {
            reader.feed(bytes);
            std::string body;
            while (reader.next(body)) {
                n::HandshakeMessage m;
                EXPECT_TRUE(n::decode_handshake(body, m));
                if (m.client_hello.present) out += server_hello(m.client_hello.ephemeral);
                if (m.client_finish.present) finish(m.client_finish);
            }
            return out;
        }
        tx.feed(bytes);
        std::string plain;
        while (tx.next(plain) == n::Transport::Frame) {
            Node node;
            EXPECT_TRUE(wa::decode(plain, node));
            received.push_back(node);
        }
        return out;
    }
    std::string server_hello(const std::string& client_eph) {
        std::string dh, st, pl;
        ss.mix_hash(n::wa_intro());
        ss.mix_hash(client_eph);
        ss.mix_hash(eph.pub);
        EXPECT_TRUE(n::x25519(eph.priv, client_eph, dh) && ss.mix_key(dh));
        EXPECT_TRUE(ss.encrypt_and_hash(stat.pub, st));
        EXPECT_TRUE(n::x25519(stat.priv, client_eph, dh) && ss.mix_key(dh));
        EXPECT_TRUE(ss.encrypt_and_hash(chain(), pl));
        n::HandshakeMessage out;
        out.server_hello = {true, eph.pub, st, pl};
        return n::frame(n::encode_handshake(out));
    }
    void finish(const n::HandshakePart& f) {
        std::string client_static, p, dh, c2s, s2c;
        EXPECT_TRUE(ss.decrypt_and_hash(f.static_key, client_static));
        EXPECT_TRUE(n::x25519(eph.priv, client_static, dh) && ss.mix_key(dh));
        EXPECT_TRUE(ss.decrypt_and_hash(f.payload, p));
        EXPECT_TRUE(payload.ParseFromString(p));
        EXPECT_TRUE(ss.split(c2s, s2c));
        tx = n::Transport(s2c, c2s);  // sends with s2c, receives with c2s
        handshaken = true;
    }
    std::string send(const Node& node) { return tx.encrypt_frame(wa::encode(node)); }
};

// Drives a session against the fake server: every Write goes to the server; answers go back.
struct Link {
    FakeServer srv;
    std::unique_ptr<Session> s;
    uint64_t now = 1000;
    wa::Actions last;

    explicit Link(wa::SessionConfig c = cfg()) {
        c.root_pub = srv.root.pub;
        s = std::make_unique<Session>(std::move(c));
    }
    void pump(const wa::Actions& acts) {
        last = acts;
        for (const Action& a : acts) {
            if (a.kind != Action::Write) continue;
            std::string back = srv.feed(a.bytes);
            if (!back.empty()) pump(s->on_message(now, kNow, back));
        }
    }
    void connect() {
        pump(s->start(now, kNow));
        pump(s->on_transport_open(now, kNow));
    }
    void deliver(const Node& node) { pump(s->on_message(now, kNow, srv.send(node))); }
    const Node* last_received(std::string_view tag) {
        for (auto it = srv.received.rbegin(); it != srv.received.rend(); ++it)
            if (it->tag == tag) return &*it;
        return nullptr;
    }
};

Node pair_device_iq() {
    std::vector<Node> refs;
    for (int i = 0; i < 6; i++) refs.push_back(Node::with_bytes("ref", {}, "2@ref" + std::to_string(i)));
    return Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "set"}, {"id", "pd1"}, {"xmlns", "md"}},
                {Node("pair-device", {}, std::move(refs))});
}

// The phone's side of §5a: ADVDeviceIdentity signed by the account key, wrapped in the HMAC container.
Node pair_success_iq(FakeServer& srv, const std::string& adv_secret, const std::string& companion_identity,
                     bool break_hmac = false) {
    waproto::ADVDeviceIdentity d;
    d.set_rawid(7);
    d.set_timestamp(kNow);
    d.set_keyindex(3);
    std::string details = d.SerializeAsString();
    waproto::ADVSignedDeviceIdentity id;
    id.set_details(details);
    id.set_accountsignaturekey(srv.account.pub);
    id.set_accountsignature(wa::crypto::xeddsa_sign(srv.account.priv, std::string("\x06\x00", 2) + details + companion_identity));
    waproto::ADVSignedDeviceIdentityHMAC c;
    c.set_details(id.SerializeAsString());
    c.set_hmac(wa::crypto::hmac_sha256(adv_secret, c.details()));
    if (break_hmac) (*c.mutable_hmac())[0] ^= 1;
    return Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "set"}, {"id", "ps1"}},
                {Node("pair-success", {},
                      {Node::with_bytes("device-identity", {{"key-index", "3"}}, c.SerializeAsString()),
                       Node("platform", {{"name", "android"}}),
                       Node("device", {{"jid", "573001112233:4@s.whatsapp.net"}, {"lid", "123456789012345:4@lid"}})})});
}

}  // namespace

// ---- backoff --------------------------------------------------------------------------------------------

TEST(Backoff, DoublesFromTwoSecondsUpToThirty) {
    wa::Backoff b;
    EXPECT_EQ(b.delay_ms(1, 0.5), 2000u);
    EXPECT_EQ(b.delay_ms(2, 0.5), 4000u);
    EXPECT_EQ(b.delay_ms(3, 0.5), 8000u);
    EXPECT_EQ(b.delay_ms(4, 0.5), 16000u);
    EXPECT_EQ(b.delay_ms(5, 0.5), 30000u);
    EXPECT_EQ(b.delay_ms(500, 0.5), 30000u);
}

TEST(Backoff, JitterStaysWithinTwentyPercent) {
    wa::Backoff b;
    EXPECT_EQ(b.delay_ms(1, 0.0), 1600u);
    EXPECT_EQ(b.delay_ms(1, 1.0), 2400u);
    EXPECT_EQ(b.delay_ms(5, 0.0), 24000u);
    EXPECT_EQ(b.delay_ms(5, 1.0), 36000u);
}

// ---- deadlines ------------------------------------------------------------------------------------------

TEST(Deadlines, EarliestFirstReplaceCancelAndTakeDue) {
    wa::Deadlines d;
    EXPECT_EQ(d.earliest(), 0u);
    d.set(wa::Deadlines::KeepAlive, 500);
    d.set(wa::Deadlines::Iq, 300, "a");
    d.set(wa::Deadlines::Iq, 900, "b");
    d.set(wa::Deadlines::Handshake, 700);
    EXPECT_EQ(d.earliest(), 300u);
    d.set(wa::Deadlines::Iq, 800, "a");  // replaces, not adds
    EXPECT_EQ(d.earliest(), 500u);
    d.cancel(wa::Deadlines::KeepAlive);
    EXPECT_EQ(d.earliest(), 700u);
    auto due = d.take_due(850);
    ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].kind, wa::Deadlines::Handshake);
    EXPECT_EQ(due[1].key, "a");
    EXPECT_TRUE(d.has(wa::Deadlines::Iq, "b"));
    d.cancel_all(wa::Deadlines::Iq);
    EXPECT_TRUE(d.empty());
}

// ---- the disconnect table, row by row (whatsmeow connectionevents.go) ----------------------------------

TEST(DisconnectTable, EveryRow) {
    struct Row {
        Disconnect d;
        DisconnectPolicy::Next next;
        bool delete_creds;
        bool keep_wanted;
        const char* error_part;
    } rows[] = {
        {{Disconnect::StreamError, 515, {}, 0, {}}, DisconnectPolicy::ReconnectNow, false, true, ""},
        {{Disconnect::StreamError, 401, "device_removed", 0, {}}, DisconnectPolicy::LoggedOut, true, false, "logged_out"},
        {{Disconnect::StreamError, 0, "replaced", 0, {}}, DisconnectPolicy::Conflict, false, true, "conflict"},
        {{Disconnect::StreamError, 503, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "stream error 503"},
        {{Disconnect::StreamError, 500, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "stream error 500"},
        {{Disconnect::LoginFailure, 401, {}, 0, {}}, DisconnectPolicy::LoggedOut, true, false, "logged_out"},
        {{Disconnect::LoginFailure, 403, {}, 0, {}}, DisconnectPolicy::LoggedOut, true, false, "locked"},
        {{Disconnect::LoginFailure, 406, {}, 0, {}}, DisconnectPolicy::LoggedOut, true, false, "banned"},
        {{Disconnect::LoginFailure, 402, {}, 3600, {}}, DisconnectPolicy::RetryAt, false, true, "temporarily banned"},
        {{Disconnect::LoginFailure, 405, {}, 0, {}}, DisconnectPolicy::Stop, false, true, "client_outdated"},
        {{Disconnect::LoginFailure, 409, {}, 0, {}}, DisconnectPolicy::Stop, false, true, "client_outdated"},
        {{Disconnect::LoginFailure, 411, {}, 0, {}}, DisconnectPolicy::Stop, false, true, "client_outdated"},
        {{Disconnect::LoginFailure, 500, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "login failure 500"},
        {{Disconnect::LoginFailure, 503, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "login failure 503"},
        {{Disconnect::WsClose, 1006, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "1006"},
        {{Disconnect::Transport, 0, {}, 0, "connection closed"}, DisconnectPolicy::Backoff, false, true, "closed"},
        {{Disconnect::Timeout, 0, {}, 0, "ping"}, DisconnectPolicy::Backoff, false, true, "timed out"},
        {{Disconnect::StreamEnd, 0, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "xmlstreamend"},
        {{Disconnect::QrTimeout, 0, {}, 0, {}}, DisconnectPolicy::Stop, false, false, "qr_timeout"},
        {{Disconnect::PasskeyRequired, 0, {}, 0, {}}, DisconnectPolicy::Stop, false, false, "passkey_required"},
        {{Disconnect::UpgradeRefused, 503, {}, 0, {}}, DisconnectPolicy::Backoff, false, true, "HTTP 503"},
    };
    for (const Row& r : rows) {
        DisconnectPolicy p = wa::decide(r.d, true);
        SCOPED_TRACE(wa::describe(r.d));
        EXPECT_EQ(p.next, r.next);
        EXPECT_EQ(p.delete_credentials, r.delete_creds);
        if (p.next == DisconnectPolicy::Stop || p.next == DisconnectPolicy::LoggedOut) {
            EXPECT_EQ(p.keep_wanted, r.keep_wanted);
        }
        EXPECT_NE(p.last_error.find(r.error_part), std::string::npos) << p.last_error;
    }
    EXPECT_EQ(wa::decide({Disconnect::LoginFailure, 402, {}, 3600, {}}, true).retry_after_s, 3600);
}

// ---- the state machine ----------------------------------------------------------------------------------

// With min == max the nominal delay never changes, so any difference between retries is the jitter. No
// `random` is injected: the session's own generator is used, as in the helper.
TEST(Backoff, JitterVariesWithTheRealRandomSource) {
    wa::SessionConfig c;
    c.backoff.base_ms = c.backoff.cap_ms = 10000;
    std::set<uint64_t> one_session, many_sessions;
    Session s(c);
    uint64_t now = 0;
    s.start(now, 100);
    for (int i = 0; i < 20; i++) {
        wa::Actions failed = s.on_transport_error(now, 100, transport_error("refused"));
        const Action* t = find(failed, Action::SetTimer);
        ASSERT_NE(t, nullptr);
        uint64_t delay = t->at_ms - now;
        EXPECT_GE(delay, 8000u);
        EXPECT_LE(delay, 12000u);
        one_session.insert(delay);
        now = t->at_ms;
        ASSERT_TRUE(has(s.on_timer(now, 100), Action::Connect));
    }
    for (int i = 0; i < 20; i++) {
        Session other(c);
        other.start(0, 100);
        wa::Actions failed = other.on_transport_error(0, 100, transport_error("refused"));
        const Action* t = find(failed, Action::SetTimer);
        ASSERT_NE(t, nullptr);
        many_sessions.insert(t->at_ms);
    }
    // 20 draws from 4001 values: all but a handful distinct unless the jitter is broken.
    EXPECT_GE(one_session.size(), 15u) << "20 retries of one session";
    EXPECT_GE(many_sessions.size(), 15u) << "first retries of 20 sessions";
}

TEST(Session, StartConnectsAndIsIdempotent) {
    Session s(cfg());
    auto a = s.start(1000, 100);
    EXPECT_EQ(s.status().state, State::Connecting);
    EXPECT_TRUE(s.status().wanted);
    EXPECT_TRUE(has(a, Action::Connect));
    EXPECT_TRUE(has(a, Action::Publish));
    auto again = s.start(1100, 100);
    EXPECT_FALSE(has(again, Action::Connect));
}

TEST(Session, TransportErrorBacksOffThenRetries) {
    Session s(cfg());
    s.start(0, 100);
    auto a = s.on_transport_error(10, 100, transport_error("connect() failed: Connection refused"));
    EXPECT_EQ(s.status().state, State::Reconnecting);
    EXPECT_EQ(s.status().retry_count, 1u);
    EXPECT_NE(s.status().last_error.find("Connection refused"), std::string::npos);
    const Action* t = find(a, Action::SetTimer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->at_ms, 10u + 2000u);
    EXPECT_FALSE(has(a, Action::Close));  // the transport is already gone
    auto r = s.on_timer(2010, 102);
    EXPECT_TRUE(has(r, Action::Connect));
    EXPECT_EQ(s.status().state, State::Connecting);
    s.on_transport_error(2020, 102, transport_error("refused"));
    EXPECT_EQ(s.status().retry_count, 2u);
    // The metrics count both retried link ends under their kind.
    EXPECT_EQ(s.stats().reconnects[wa::Disconnect::Transport], 2u);
    EXPECT_STREQ(wa::kind_name(wa::Disconnect::Transport), "transport");
    EXPECT_STREQ(wa::kind_name(wa::Disconnect::Protocol), "protocol");
}

TEST(Session, LateErrorsAndTimersAreIgnored) {
    Session s(cfg());
    EXPECT_TRUE(s.on_transport_error(0, 0, transport_error("late")).empty());
    EXPECT_TRUE(s.on_timer(0, 0).empty());
}

TEST(Session, LogoutAndClearForgetEverything) {
    Session s(cfg());
    s.start(0, 100);
    s.on_transport_error(10, 100, transport_error("x"));
    auto a = s.logout(20, 101, 7);
    EXPECT_EQ(s.status().state, State::LoggedOut);
    EXPECT_FALSE(s.status().wanted);
    const Action* done = find(a, Action::Complete);
    ASSERT_NE(done, nullptr);
    EXPECT_EQ(done->command_id, 7u);
    EXPECT_NE(done->bytes.find("\"unlinked_on_server\":false"), std::string::npos);
    // The pending retry was cancelled: its timer never reconnects.
    EXPECT_TRUE(s.on_timer(100000, 200).empty());
    Session c(cfg());
    c.start(0, 100);
    c.clear(5, 100);
    EXPECT_EQ(c.status().state, State::Disconnected);
    EXPECT_FALSE(c.status().wanted);
    EXPECT_TRUE(c.on_timer(100000, 200).empty());
}

TEST(Session, ShutdownClosesWithGoingAwayAndKeepsWanted) {
    Session s(cfg());
    s.start(0, 100);
    auto a = s.shutdown(5, 100);
    const Action* c = find(a, Action::Close);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->code, 1001);
    EXPECT_TRUE(s.status().wanted);
}

// ---- the link, frame by frame, against the fake server --------------------------------------------------

TEST(Link, HandshakeSendsARegistrationPayloadThenShowsTheQr) {
    Link l;
    l.connect();
    ASSERT_TRUE(l.srv.handshaken);
    const waproto::ClientPayload& p = l.srv.payload;
    ASSERT_TRUE(p.has_devicepairingdata());
    EXPECT_FALSE(p.passive());
    EXPECT_EQ(p.devicepairingdata().eregid().size(), 4u);
    EXPECT_EQ(p.devicepairingdata().ekeytype(), std::string(1, '\x05'));
    EXPECT_EQ(p.devicepairingdata().eskeyid(), std::string("\0\0\1", 3));
    // The signed prekey signature verifies with the identity key over 0x05 || pub.
    EXPECT_TRUE(wa::xeddsa_verify(p.devicepairingdata().eident(), std::string(1, '\x05') + p.devicepairingdata().eskeyval(),
                                  p.devicepairingdata().eskeysig()));
    EXPECT_EQ(p.useragent().appversion().tertiary(), 1047769893u);
    waproto::DeviceProps props;
    ASSERT_TRUE(props.ParseFromString(p.devicepairingdata().deviceprops()));
    EXPECT_EQ(props.os(), "Mac OS");

    l.deliver(pair_device_iq());
    const Node* ack = l.last_received("iq");
    ASSERT_NE(ack, nullptr);
    EXPECT_EQ(ack->attr_or("type"), "result");
    EXPECT_EQ(ack->attr_or("id"), "pd1");
    EXPECT_EQ(l.s->status().state, State::QrReady);
    const wa::store::Credentials* c = l.s->credentials();
    std::string expect = "https://wa.me/settings/linked_devices#2@ref0," + wa::noise::sha256("").substr(0, 0);
    EXPECT_EQ(l.s->status().qr_text.rfind("https://wa.me/settings/linked_devices#2@ref0,", 0), 0u);
    EXPECT_EQ(l.s->status().qr_text.substr(l.s->status().qr_text.size() - 2), ",1");  // Chrome
    EXPECT_EQ(l.s->status().qr_expires_ms, l.now + 60000);  // 6 refs: the first lives 60 s
    ASSERT_NE(c, nullptr);
    (void)expect;
}

TEST(Link, QrRotatesThenStopsWithQrTimeout) {
    Link l;
    l.connect();
    l.deliver(pair_device_iq());
    std::string first = l.s->status().qr_text;
    l.now += 60000;
    l.pump(l.s->on_timer(l.now, kNow + 60));
    EXPECT_NE(l.s->status().qr_text, first);
    EXPECT_EQ(l.s->status().qr_expires_ms, l.now + 20000);
    for (int i = 0; i < 5; i++) {
        l.now += 20000;
        l.pump(l.s->on_timer(l.now, kNow + 80 + 20 * i));
    }
    EXPECT_EQ(l.s->status().state, State::Disconnected);
    EXPECT_EQ(l.s->status().last_error, "qr_timeout");
    EXPECT_FALSE(l.s->status().wanted);
    EXPECT_TRUE(has(l.last, Action::Close));
}

TEST(Link, PairSuccessIsVerifiedSignedAndRestartsTo515Login) {
    Link l;
    l.connect();
    l.deliver(pair_device_iq());
    const wa::store::Credentials* c = l.s->credentials();
    l.deliver(pair_success_iq(l.srv, c->adv_secret, c->identity_pub));
    const Node* sign = l.last_received("iq");
    ASSERT_NE(sign, nullptr);
    ASSERT_EQ(sign->attr_or("type"), "result");
    const Node* di = sign->child("pair-device-sign") ? sign->child("pair-device-sign")->child("device-identity") : nullptr;
    ASSERT_NE(di, nullptr);
    EXPECT_EQ(di->attr_or("key-index"), "3");
    const Action* w = find(l.last, Action::Write);
    ASSERT_NE(w, nullptr);
    EXPECT_TRUE(w->durable);  // credentials on disk before the phone lists the device
    waproto::ADVSignedDeviceIdentity back;
    ASSERT_TRUE(back.ParseFromString(di->bytes));
    EXPECT_FALSE(back.has_accountsignaturekey());  // omitted in the reply (whatsmeow)
    std::string msg = std::string("\x06\x01", 2) + back.details() + c->identity_pub + l.srv.account.pub;
    EXPECT_TRUE(wa::xeddsa_verify(c->identity_pub, msg, back.devicesignature()));
    EXPECT_EQ(c->me_jid, "573001112233:4@s.whatsapp.net");
    EXPECT_EQ(c->me_lid, "123456789012345:4@lid");
    EXPECT_EQ(l.s->status().phone, "573001112233");

    l.deliver(Node("stream:error", {{"code", "515"}}));
    EXPECT_TRUE(has(l.last, Action::Close));
    EXPECT_TRUE(has(l.last, Action::Connect));
    EXPECT_EQ(l.s->status().state, State::Connecting);
    EXPECT_EQ(l.s->status().retry_count, 0u);  // an expected restart is not a failure

    // Second connection: a login payload, then <success>.
    l.srv = FakeServer();
    // (a new server object has a new root: keep the session's trust)
}

TEST(Link, BadHmacIsRefusedWithAnErrorIq) {
    Link l;
    l.connect();
    l.deliver(pair_device_iq());
    const wa::store::Credentials* c = l.s->credentials();
    l.deliver(pair_success_iq(l.srv, c->adv_secret, c->identity_pub, true));
    const Node* err = l.last_received("iq");
    ASSERT_NE(err, nullptr);
    EXPECT_EQ(err->attr_or("type"), "error");
    ASSERT_NE(err->child("error"), nullptr);
    EXPECT_EQ(err->child("error")->attr_or("text"), "hmac-mismatch");
    EXPECT_EQ(l.s->status().state, State::Reconnecting);
    EXPECT_TRUE(l.s->credentials()->me_jid.empty());
}

TEST(Link, WrongAccountSignatureIsRefused) {
    Link l;
    l.connect();
    l.deliver(pair_device_iq());
    const wa::store::Credentials* c = l.s->credentials();
    std::string other_identity(32, 'x');  // signed for another companion
    l.deliver(pair_success_iq(l.srv, c->adv_secret, other_identity));
    const Node* err = l.last_received("iq");
    ASSERT_NE(err, nullptr);
    EXPECT_EQ(err->attr_or("type"), "error");
    EXPECT_EQ(err->child("error")->attr_or("text"), "signature-mismatch");
}

TEST(Link, WrongRootKeyFailsTheHandshake) {
    wa::SessionConfig c = cfg();
    Link l(c);
    wa::crypto::KeyPair other;
    wa::crypto::generate_keypair(other);
    l.s = std::make_unique<Session>([&] {
        wa::SessionConfig x = cfg();
        x.root_pub = other.pub;
        return x;
    }());
    l.connect();
    EXPECT_FALSE(l.srv.handshaken);
    EXPECT_EQ(l.s->status().state, State::Reconnecting);
    EXPECT_NE(l.s->status().last_error.find("Noise"), std::string::npos);
}

struct LoggedIn : ::testing::Test {
    std::string dir;
    std::unique_ptr<wa::store::Store> store;
    std::unique_ptr<Link> l;

    void SetUp() override {
        char tmpl[] = "/tmp/wa-session-test-XXXXXX";
        dir = mkdtemp(tmpl);
        std::string err;
        store = wa::store::open_sqlite_store(dir, false, &err);
        ASSERT_TRUE(store) << err;
        // Pair once (first connection), then log in (second connection).
        l = std::make_unique<Link>();
        wa::SessionConfig c = cfg();
        c.root_pub = l->srv.root.pub;
        l->s = std::make_unique<Session>(c, "org1", store.get());
        l->connect();
        l->deliver(pair_device_iq());
        const wa::store::Credentials* cr = l->s->credentials();
        l->deliver(pair_success_iq(l->srv, cr->adv_secret, cr->identity_pub));
        l->deliver(Node("stream:error", {{"code", "515"}}));
        wa::crypto::KeyPair root = l->srv.root, inter = l->srv.inter;
        l->srv = FakeServer();
        l->srv.root = root;
        l->srv.inter = inter;
        l->pump(l->s->on_transport_open(l->now, kNow));
        ASSERT_TRUE(l->srv.handshaken);
    }
    // Answers every iq the session sent (count: 812 on the server) until it has nothing left to ask.
    void settle() {
        size_t answered = 0;
        for (int turn = 0; turn < 50; turn++) {
            l->now += 1;
            l->pump(l->s->on_timer(l->now, kNow));
            while (answered < l->srv.received.size()) {
                Node q = l->srv.received[answered++];
                if (q.tag != "iq") continue;
                std::vector<Node> kids;
                if (q.child("count")) kids.push_back(Node("count", {{"value", "812"}}));
                l->deliver(Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "result"}, {"id", std::string(q.attr_or("id"))}},
                                std::move(kids)));
            }
        }
    }
    void TearDown() override {
        l.reset();
        store.reset();
        std::system(("rm -rf " + dir).c_str());
    }
};

TEST_F(LoggedIn, LoginPayloadThenSuccessCountUploadPassive) {
    const waproto::ClientPayload& p = l->srv.payload;
    EXPECT_FALSE(p.has_devicepairingdata());
    EXPECT_EQ(p.username(), 573001112233u);
    EXPECT_EQ(p.device(), 4u);
    EXPECT_TRUE(p.passive());
    EXPECT_TRUE(p.pull());
    l->deliver(Node("success", {{"t", std::to_string(kNow)}, {"lid", "123456789012345:4@lid"}}));
    EXPECT_EQ(l->s->status().state, State::Connected);
    EXPECT_EQ(l->s->status().phone, "573001112233");
    const Node* count = l->last_received("iq");
    ASSERT_NE(count, nullptr);
    EXPECT_EQ(count->attr_or("xmlns"), "encrypt");
    ASSERT_NE(count->child("count"), nullptr);
    l->deliver(Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "result"}, {"id", std::string(count->attr_or("id"))}},
                    {Node("count", {{"value", "0"}})}));
    // 812 keys are generated in slices of 100: one per timer turn, never all in one event.
    int turns = 0;
    while (!l->last_received("iq")->child("list") && turns < 20) {
        l->now += 1;  // a later event-loop turn
        l->pump(l->s->on_timer(l->now, kNow));
        turns++;
    }
    const Node* up = l->last_received("iq");
    ASSERT_NE(up->child("list"), nullptr);
    EXPECT_EQ(up->child("list")->children.size(), 812u);
    EXPECT_GE(turns, 8);
    const Action* w = find(l->last, Action::Write);
    ASSERT_NE(w, nullptr);
    EXPECT_TRUE(w->durable);
    uint32_t stored = 0;
    std::string err;
    ASSERT_TRUE(store->count_prekeys("org1", false, stored, &err));
    EXPECT_EQ(stored, 812u);
    l->deliver(Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "result"}, {"id", std::string(up->attr_or("id"))}}));
    uint32_t uploaded = 0;
    store->count_prekeys("org1", true, uploaded, &err);
    EXPECT_EQ(uploaded, 812u);
    const Node* passive = l->last_received("iq");
    EXPECT_EQ(passive->attr_or("xmlns"), "passive");
    ASSERT_NE(passive->child("active"), nullptr);
}

TEST_F(LoggedIn, KeepAlivePingsAndADeadLinkIsNoticed) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    settle();
    // The first ping is due 20-30 s later (random 0.5 here → 25 s); unanswered for 10 s → reconnect.
    l->now += 25000;
    l->pump(l->s->on_timer(l->now, kNow + 25));
    const Node* ping = l->last_received("iq");
    ASSERT_NE(ping, nullptr);
    EXPECT_EQ(ping->attr_or("xmlns"), "w:p");
    EXPECT_EQ(ping->kind, Node::Content::None);  // whatsmeow: no <ping/> child
    l->deliver(Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "result"}, {"id", std::string(ping->attr_or("id"))}}));
    EXPECT_EQ(l->s->status().state, State::Connected);
    l->now += 25000;
    l->pump(l->s->on_timer(l->now, kNow + 50));
    l->now += 10000;
    l->pump(l->s->on_timer(l->now, kNow + 60));
    EXPECT_EQ(l->s->status().state, State::Reconnecting);
    EXPECT_NE(l->s->status().last_error.find("keep-alive"), std::string::npos);
}

TEST_F(LoggedIn, EveryNotificationAndReceiptIsAcked) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    l->deliver(Node("notification", {{"from", "@s.whatsapp.net"}, {"type", "server_sync"}, {"id", "n1"}}));
    const Node* ack = l->last_received("ack");
    ASSERT_NE(ack, nullptr);
    EXPECT_EQ(ack->attr_or("class"), "notification");
    EXPECT_EQ(ack->attr_or("id"), "n1");
    EXPECT_EQ(ack->attr_or("type"), "server_sync");
    l->deliver(Node("receipt", {{"from", "573009998877@s.whatsapp.net"}, {"id", "r1"}, {"type", "read"}}));
    ack = l->last_received("ack");
    EXPECT_EQ(ack->attr_or("class"), "receipt");
    EXPECT_EQ(ack->attr_or("to"), "573009998877@s.whatsapp.net");
    EXPECT_EQ(ack->attr_or("type"), "read");
}

TEST_F(LoggedIn, LowPrekeyNotificationUploadsFifty) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    l->deliver(Node("notification", {{"from", "@s.whatsapp.net"}, {"type", "encrypt"}, {"id", "n2"}},
                    {Node("count", {{"value", "3"}})}));
    const Node* up = l->last_received("iq");
    ASSERT_NE(up, nullptr);
    ASSERT_NE(up->child("list"), nullptr);
    EXPECT_EQ(up->child("list")->children.size(), 50u);
}

TEST_F(LoggedIn, DeviceRemovedLogsOutAndDeletesCredentials) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    l->deliver(Node("stream:error", {{"code", "401"}}, {Node("conflict", {{"type", "device_removed"}})}));
    EXPECT_EQ(l->s->status().state, State::LoggedOut);
    EXPECT_FALSE(l->s->status().wanted);
    EXPECT_EQ(l->s->credentials(), nullptr);
    wa::store::Credentials c;
    bool found = true;
    std::string err;
    ASSERT_TRUE(store->load_credentials("org1", c, found, &err));
    EXPECT_FALSE(found);
    EXPECT_TRUE(l->s->on_timer(l->now + 100000, kNow + 100).empty() ||
                !has(l->s->on_timer(l->now + 100000, kNow + 100), Action::Connect));
}

TEST_F(LoggedIn, ConflictStopsWithoutRetry) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    l->deliver(Node("stream:error", {}, {Node("conflict", {{"type", "replaced"}})}));
    EXPECT_EQ(l->s->status().state, State::Conflict);
    EXPECT_FALSE(has(l->s->on_timer(l->now + 100000, kNow + 100), Action::Connect));
}

TEST_F(LoggedIn, ClientOutdatedStopsButStaysWanted) {
    l->deliver(Node("failure", {{"reason", "405"}}));
    EXPECT_EQ(l->s->status().state, State::Disconnected);
    EXPECT_EQ(l->s->status().last_error, "client_outdated");
    EXPECT_TRUE(l->s->status().wanted);
    EXPECT_FALSE(has(l->s->on_timer(l->now + 100000, kNow + 100), Action::Connect));
}

TEST_F(LoggedIn, TemporaryBanRetriesAtItsExpiry) {
    l->deliver(Node("failure", {{"reason", "402"}, {"expire", "120"}}));
    EXPECT_EQ(l->s->status().state, State::Reconnecting);
    EXPECT_FALSE(has(l->s->on_timer(l->now + 119000, kNow + 119), Action::Connect));
    EXPECT_TRUE(has(l->s->on_timer(l->now + 120000, kNow + 120), Action::Connect));
}

TEST_F(LoggedIn, LogoutUnlinksOnTheServer) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    l->pump(l->s->logout(l->now, kNow, 42));
    const Node* iq = l->last_received("iq");
    ASSERT_NE(iq, nullptr);
    ASSERT_NE(iq->child("remove-companion-device"), nullptr);
    EXPECT_EQ(iq->child("remove-companion-device")->attr_or("jid"), "573001112233:4@s.whatsapp.net");
    EXPECT_EQ(iq->child("remove-companion-device")->attr_or("reason"), "user_initiated");
    l->deliver(Node("iq", {{"from", "@s.whatsapp.net"}, {"type", "result"}, {"id", std::string(iq->attr_or("id"))}}));
    const Action* done = find(l->last, Action::Complete);
    ASSERT_NE(done, nullptr);
    EXPECT_EQ(done->command_id, 42u);
    EXPECT_NE(done->bytes.find("\"unlinked_on_server\":true"), std::string::npos);
    EXPECT_EQ(l->s->status().state, State::LoggedOut);
}

TEST_F(LoggedIn, RestoredSessionLogsInWithStoredCredentials) {
    l->deliver(Node("success", {{"t", std::to_string(kNow)}}));
    // A new Session object (helper restart) finds the device in the store.
    wa::store::OrgRecord rec;
    rec.org = "org1";
    rec.wanted = true;
    rec.phone = "573001112233";
    Session again(cfg(), "org1", store.get());
    again.restore(rec);
    ASSERT_NE(again.credentials(), nullptr);
    EXPECT_EQ(again.credentials()->me_jid, "573001112233:4@s.whatsapp.net");
    EXPECT_TRUE(again.status().linked);
}
