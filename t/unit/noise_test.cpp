#include "wa/link/noise.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace {

namespace n = wa::noise;

std::string unhex(std::string_view h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
    return out;
}
std::string hex(std::string_view b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

// Fake "XEdDSA": sig = SHA256("sig" || pub || msg) || SHA256(msg || pub). Only the holder of `pub`
// (the test) makes these; the point is to exercise the chain logic, not the signature scheme.
std::string fake_sign(std::string_view pub, std::string_view msg) {
    return n::sha256("sig" + std::string(pub) + std::string(msg)) + n::sha256(std::string(msg) + std::string(pub));
}
bool fake_verify(std::string_view pub, std::string_view msg, std::string_view sig) {
    return sig.size() == 64 && sig == fake_sign(pub, msg);
}

struct KP {
    std::string priv, pub;
    KP() { EXPECT_TRUE(n::x25519_keypair(priv, pub)); }
};

constexpr int64_t kNow = 1700000000;

// A certificate chain builder whose every field a test can break.
struct ChainSpec {
    std::string root_pub;     // who signs the intermediate
    std::string inter_pub;    // intermediate key (and who signs the leaf)
    std::string leaf_signer;  // override the leaf signer
    std::string leaf_key;
    n::CertDetails inter{1, 0, "", uint64_t(kNow - 3600), uint64_t(kNow + 86400)};
    n::CertDetails leaf{2, 1, "", uint64_t(kNow - 3600), uint64_t(kNow + 86400)};
    int inter_sig_len = 64, leaf_sig_len = 64;
    bool drop_leaf = false;

    std::string build() {
        inter.key = inter_pub;
        leaf.key = leaf_key;
        n::CertChain c;
        c.intermediate_details = n::encode_details(inter);
        c.intermediate_signature = fake_sign(root_pub, c.intermediate_details);
        c.leaf_details = n::encode_details(leaf);
        c.leaf_signature = fake_sign(leaf_signer.empty() ? inter_pub : leaf_signer, c.leaf_details);
        c.intermediate_signature.resize(inter_sig_len, 'x');
        c.leaf_signature.resize(leaf_sig_len, 'x');
        if (drop_leaf) c.leaf_details.clear(), c.leaf_signature.clear();
        return n::encode_cert_chain(c);
    }
};

// Server side of the handshake, written here from the same primitives (mirrors t/wa-sim/lib/noise.mjs).
struct Responder {
    KP e, s;
    std::string cert;
    n::SymmetricState ss;
    std::string client_eph, client_static, client_payload;
    std::string c2s, s2c;
    int static_tamper = -1, payload_tamper = -1;

    std::string on_client_hello(std::string_view body) {
        n::HandshakeMessage m;
        EXPECT_TRUE(n::decode_handshake(body, m));
        EXPECT_TRUE(m.client_hello.present);
        client_eph = m.client_hello.ephemeral;
        EXPECT_EQ(client_eph.size(), 32u);
        ss.mix_hash(n::wa_intro());
        ss.mix_hash(client_eph);
        ss.mix_hash(e.pub);
        std::string dh, stat, payload;
        EXPECT_TRUE(n::x25519(e.priv, client_eph, dh));
        EXPECT_TRUE(ss.mix_key(dh));
        EXPECT_TRUE(ss.encrypt_and_hash(s.pub, stat));
        EXPECT_TRUE(n::x25519(s.priv, client_eph, dh));
        EXPECT_TRUE(ss.mix_key(dh));
        EXPECT_TRUE(ss.encrypt_and_hash(cert, payload));
        if (static_tamper >= 0) stat[static_tamper] ^= 1;
        if (payload_tamper >= 0) payload[payload_tamper] ^= 1;
        n::HandshakeMessage out;
        out.server_hello = {true, e.pub, stat, payload};
        return n::encode_handshake(out);
    }
    bool on_client_finish(std::string_view body) {
        n::HandshakeMessage m;
        if (!n::decode_handshake(body, m) || !m.client_finish.present) return false;
        if (ss.n() != 1) return false;  // the client static comes at counter 1
        if (!ss.decrypt_and_hash(m.client_finish.static_key, client_static)) return false;
        std::string dh;
        if (!n::x25519(e.priv, client_static, dh) || !ss.mix_key(dh)) return false;
        if (!ss.decrypt_and_hash(m.client_finish.payload, client_payload)) return false;
        return ss.split(c2s, s2c);
    }
};

// Strips the intro and the 3-byte length.
std::string body_of(std::string_view f, bool intro) {
    if (intro) {
        EXPECT_EQ(f.substr(0, 4), n::wa_intro());
        f.remove_prefix(4);
    }
    EXPECT_GE(f.size(), 3u);
    size_t len = (size_t(uint8_t(f[0])) << 16) | (size_t(uint8_t(f[1])) << 8) | uint8_t(f[2]);
    EXPECT_EQ(len, f.size() - 3);
    return std::string(f.substr(3));
}

struct Pair {
    Responder r;
    KP noise;
    ChainSpec spec;
    std::function<int64_t()> now = [] { return kNow; };
    n::Verify verify = fake_verify;
    KP root, inter;

    Pair() {
        spec.root_pub = root.pub;
        spec.inter_pub = inter.pub;
        spec.leaf_key = r.s.pub;
    }
    n::Handshake client() { return n::Handshake({noise.priv, noise.pub, "", ""}, root.pub, verify, now); }
    // Runs hello + server hello; returns on_server_hello's result.
    bool hello(n::Handshake& c, std::string* err) {
        r.cert = spec.build();
        std::string f = c.client_hello_frame();
        EXPECT_EQ(f.size(), 43u);
        return c.on_server_hello(r.on_client_hello(body_of(f, true)), err);
    }
};

TEST(Noise, Sha256AndHkdfVectors) {
    EXPECT_EQ(hex(n::sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // RFC 5869 test case 1
    std::string okm;
    ASSERT_TRUE(n::hkdf_sha256(unhex("000102030405060708090a0b0c"), std::string(22, '\x0b'),
                               unhex("f0f1f2f3f4f5f6f7f8f9"), 42, okm));
    EXPECT_EQ(hex(okm), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    // RFC 5869 test case 3 (empty salt and info)
    ASSERT_TRUE(n::hkdf_sha256("", std::string(22, '\x0b'), "", 42, okm));
    EXPECT_EQ(hex(okm), "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Noise, X25519Rfc7748) {
    std::string shared, pub;
    ASSERT_TRUE(n::x25519_public(unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"), pub));
    EXPECT_EQ(hex(pub), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    ASSERT_TRUE(n::x25519(unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
                          unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"), shared));
    EXPECT_EQ(hex(shared), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    EXPECT_FALSE(n::x25519(std::string(32, '\1'), std::string(32, '\0'), shared));  // low-order point
    EXPECT_FALSE(n::x25519(std::string(31, '\1'), pub, shared));
}

TEST(Noise, ProtocolNameIsTheInitialHashAndMixKeyVector) {
    n::SymmetricState ss;
    EXPECT_EQ(n::protocol_name().size(), 32u);
    EXPECT_EQ(n::protocol_name(), std::string("Noise_XX_25519_AESGCM_SHA256") + std::string(4, '\0'));
    EXPECT_EQ(ss.h(), n::protocol_name());
    EXPECT_EQ(ss.ck(), n::protocol_name());
    ss.mix_hash(n::wa_intro());
    EXPECT_EQ(hex(ss.h()), "ffff0c9267310966f1311170c04b38c79504285bf5edf763e5c946492a50a755");  // node crypto
    // MixKey(32 x 01) from the initial ck, then Split: expected values from Node's crypto.hkdfSync
    ASSERT_TRUE(ss.mix_key(std::string(32, '\1')));
    EXPECT_EQ(hex(ss.ck()), "e9a1271ac9879475ba5c07b2dfeffb1f2946dd88bda479c5687408537f0a35a6");
    EXPECT_EQ(ss.n(), 0u);
    std::string a, b;
    ASSERT_TRUE(ss.split(a, b));
    EXPECT_EQ(hex(a + b), "2670ad3a4ba557d39543ca698bc088f4277bb298976da03edf4ffa84f958b33d"
                          "39170a7fc4182b34f82ab629d92a2f4351729e36799c00aeb2c4923a0dbf9ef2");
    EXPECT_EQ(hex(n::iv(0x01020304)), "000000000000000001020304");
    EXPECT_EQ(hex(n::wa_root_public()), "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b");
}

TEST(Noise, FullHandshakeAndTransport) {
    Pair p;
    n::Handshake c = p.client();
    std::string err;
    std::string hello = c.client_hello_frame();
    ASSERT_EQ(hello.size(), 43u);
    EXPECT_EQ(hex(hello.substr(0, 11)), "57410603000024122" "20a20");
    EXPECT_EQ(c.client_hello_frame(), "");  // only once
    p.r.cert = p.spec.build();
    ASSERT_TRUE(c.on_server_hello(p.r.on_client_hello(body_of(hello, true)), &err)) << err;
    EXPECT_EQ(c.server_static(), p.r.s.pub);
    std::string fin = c.client_finish_frame("client payload bytes");
    ASSERT_FALSE(fin.empty());
    EXPECT_EQ(uint8_t(fin[3]), 0x22);  // clientFinish = field 4
    ASSERT_TRUE(p.r.on_client_finish(body_of(fin, false)));
    EXPECT_EQ(p.r.client_static, p.noise.pub);
    EXPECT_EQ(p.r.client_payload, "client payload bytes");
    EXPECT_EQ(c.handshake_hash(), p.r.ss.h());
    EXPECT_EQ(c.client_finish_frame("again"), "");

    n::Transport t = c.split();
    ASSERT_TRUE(t.valid());
    EXPECT_FALSE(c.split().valid());
    n::Transport srv(p.r.s2c, p.r.c2s);  // the server sends with the second half

    // client -> server, three frames, counters 0..2
    for (int i = 0; i < 3; i++) {
        std::string f = t.encrypt_frame("hello " + std::to_string(i));
        EXPECT_EQ(f.size(), 3 + 7 + 16u);
        srv.feed(f);
        std::string pt;
        ASSERT_EQ(srv.next(pt), n::Transport::Frame);
        EXPECT_EQ(pt, "hello " + std::to_string(i));
    }
    EXPECT_EQ(t.send_counter(), 3u);
    EXPECT_EQ(srv.recv_counter(), 3u);
    // first half encrypts client->server at IV 0 with empty AAD
    {
        std::string f = n::Transport(p.r.c2s, p.r.s2c).encrypt_frame("x");
        std::string ct;
        ASSERT_TRUE(n::aes_gcm_encrypt(p.r.c2s, n::iv(0), "", "x", ct));
        EXPECT_EQ(f.substr(3), ct);
    }
    // server -> client, several frames in one feed, then one split byte by byte
    std::string all = srv.encrypt_frame("a");  // separate statements: '+' operands are unsequenced
    all += srv.encrypt_frame("");
    all += srv.encrypt_frame(std::string(70000, 'z'));
    t.feed(all);
    std::string pt;
    ASSERT_EQ(t.next(pt), n::Transport::Frame);
    EXPECT_EQ(pt, "a");
    ASSERT_EQ(t.next(pt), n::Transport::Frame);
    EXPECT_EQ(pt, "");
    ASSERT_EQ(t.next(pt), n::Transport::Frame);
    EXPECT_EQ(pt, std::string(70000, 'z'));
    ASSERT_EQ(t.next(pt), n::Transport::NeedMore);
    std::string one = srv.encrypt_frame("byte by byte");
    for (size_t i = 0; i < one.size(); i++) {
        EXPECT_EQ(t.next(pt), n::Transport::NeedMore);
        t.feed(one.substr(i, 1));
    }
    ASSERT_EQ(t.next(pt), n::Transport::Frame);
    EXPECT_EQ(pt, "byte by byte");
    EXPECT_EQ(t.recv_counter(), 4u);
    EXPECT_EQ(srv.send_counter(), 4u);

    // a tampered frame is an error, and the error is sticky
    std::string bad = srv.encrypt_frame("tamper me");
    bad[5] ^= 0x40;
    t.feed(bad);
    std::string e2;
    EXPECT_EQ(t.next(pt, &e2), n::Transport::Error);
    EXPECT_EQ(e2, "frame decryption failed");
    t.feed(srv.encrypt_frame("later"));
    EXPECT_EQ(t.next(pt), n::Transport::Error);
}

TEST(Noise, KeysGeneratedOrValidated) {
    KP noise;
    n::Handshake a({noise.priv, "", "", ""}, std::string(32, 'r'), fake_verify, [] { return kNow; });
    EXPECT_EQ(a.ephemeral_public().size(), 32u);  // generated in the constructor
    EXPECT_EQ(a.noise_public(), noise.pub);        // derived from the private key
    n::Handshake b({noise.priv, "", "", ""}, std::string(32, 'r'), fake_verify, [] { return kNow; });
    EXPECT_NE(a.ephemeral_public(), b.ephemeral_public());
    std::string f = a.client_hello_frame();
    EXPECT_EQ(f.substr(11), a.ephemeral_public());
    n::Handshake bad({noise.priv.substr(1), "", "", ""}, std::string(32, 'r'), fake_verify, [] { return kNow; });
    EXPECT_EQ(bad.client_hello_frame(), "");
    std::string err;
    EXPECT_FALSE(bad.on_server_hello("x", &err));
}

TEST(Noise, TransportRejectsReplayAndOversize) {
    std::string k1(32, 'a'), k2(32, 'b');
    n::Transport a(k1, k2), b(k2, k1);
    std::string f0 = a.encrypt_frame("zero");
    std::string pt;
    b.feed(f0);
    ASSERT_EQ(b.next(pt), n::Transport::Frame);
    b.feed(f0);  // replay at counter 1
    EXPECT_EQ(b.next(pt), n::Transport::Error);
    EXPECT_EQ(a.encrypt_frame(std::string(n::kMaxFrame - 15, 'x')), "");
    EXPECT_EQ(a.encrypt_frame(std::string(n::kMaxFrame - 16, 'x')).size(), n::kMaxFrame + 3);
    n::Transport small(k1, k2, 100);
    small.feed(std::string("\x00\x00\x65", 3));  // 101 > 100
    std::string err;
    EXPECT_EQ(small.next(pt, &err), n::Transport::Error);
    EXPECT_EQ(err, "frame too large");
    n::Transport none;
    EXPECT_EQ(none.encrypt_frame("x"), "");
    EXPECT_EQ(none.next(pt), n::Transport::Error);
    // a frame shorter than the tag
    n::Transport c(k1, k2);
    c.feed(std::string("\x00\x00\x05hello", 8));
    EXPECT_EQ(c.next(pt), n::Transport::Error);
}

TEST(Noise, FrameReaderByteByByteAndHandover) {
    std::string stream = n::frame("one") + n::frame("") + n::frame(std::string(300, 'q')) + n::frame("tail");
    n::FrameReader r;
    std::vector<std::string> got;
    std::string out;
    for (char ch : stream) {
        r.feed(std::string_view(&ch, 1));
        while (r.next(out)) got.push_back(out);
    }
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[0], "one");
    EXPECT_EQ(got[1], "");
    EXPECT_EQ(got[2], std::string(300, 'q'));
    EXPECT_EQ(got[3], "tail");
    EXPECT_FALSE(r.error());
    r.feed(n::frame("x") + std::string("\x00\x00", 2));
    ASSERT_TRUE(r.next(out));
    EXPECT_EQ(r.buffered(), 2u);
    EXPECT_EQ(r.take_buffered(), std::string("\x00\x00", 2));
    EXPECT_EQ(r.buffered(), 0u);
    n::FrameReader lim(10);
    lim.feed(std::string("\x00\x00\x0b", 3));
    EXPECT_FALSE(lim.next(out));
    EXPECT_TRUE(lim.error());
    EXPECT_EQ(n::frame(std::string(n::kMaxFrame + 1, 'a')), "");
}

TEST(Noise, CertChainRulesEachViolationRejected) {
    struct Case {
        const char* name;
        std::function<void(Pair&)> breakit;
        const char* err;
    };
    KP other;
    std::vector<Case> cases = {
        {"no leaf", [](Pair& p) { p.spec.drop_leaf = true; }, "missing parts of the certificate chain"},
        {"inter sig 63", [](Pair& p) { p.spec.inter_sig_len = 63; }, "intermediate signature is not 64 bytes"},
        {"leaf sig 65", [](Pair& p) { p.spec.leaf_sig_len = 65; }, "leaf signature is not 64 bytes"},
        {"inter not by root", [&](Pair& p) { p.spec.root_pub = other.pub; }, "intermediate certificate signature invalid"},
        {"inter issuer 1", [](Pair& p) { p.spec.inter.issuer_serial = 1; }, "intermediate issuer serial is not 0"},
        {"inter key 31", [](Pair& p) { p.spec.inter_pub.resize(31); }, "intermediate key is not 32 bytes"},
        {"leaf not by inter", [&](Pair& p) { p.spec.leaf_signer = other.pub; }, "leaf certificate signature invalid"},
        {"inter not yet", [](Pair& p) { p.spec.inter.not_before = kNow + 1; }, "intermediate certificate not valid now"},
        {"inter expired", [](Pair& p) { p.spec.inter.not_after = kNow - 1; }, "intermediate certificate not valid now"},
        {"leaf not yet", [](Pair& p) { p.spec.leaf.not_before = kNow + 1; }, "leaf certificate not valid now"},
        {"leaf expired", [](Pair& p) { p.spec.leaf.not_after = kNow - 1; }, "leaf certificate not valid now"},
        {"leaf issuer", [](Pair& p) { p.spec.leaf.issuer_serial = 7; }, "leaf issuer serial != intermediate serial"},
        {"leaf key", [&](Pair& p) { p.spec.leaf_key = other.pub; }, "leaf key != server static key"},
        {"leaf key short", [&](Pair& p) { p.spec.leaf_key = p.r.s.pub.substr(0, 31); }, "leaf key != server static key"},
        {"no verifier", [](Pair& p) { p.verify = nullptr; }, "no signature verifier"},
        {"verifier says no", [](Pair& p) { p.verify = [](auto, auto, auto) { return false; }; },
         "intermediate certificate signature invalid"},
        {"clock before epoch", [](Pair& p) { p.now = [] { return int64_t(-5); }; },
         "intermediate certificate not valid now"},
    };
    for (auto& tc : cases) {
        Pair p;
        tc.breakit(p);
        n::Handshake c = p.client();
        std::string err;
        EXPECT_FALSE(p.hello(c, &err)) << tc.name;
        EXPECT_EQ(err, tc.err) << tc.name;
        EXPECT_EQ(c.client_finish_frame("x"), "") << tc.name;
        EXPECT_FALSE(c.split().valid());
    }
    // boundaries are inclusive
    Pair p;
    p.spec.inter.not_before = p.spec.leaf.not_before = kNow;
    p.spec.inter.not_after = p.spec.leaf.not_after = kNow;
    n::Handshake c = p.client();
    std::string err;
    EXPECT_TRUE(p.hello(c, &err)) << err;
    // the real root key is not the test root
    Pair q;
    n::Handshake real({q.noise.priv, "", "", ""}, std::string(n::wa_root_public()), fake_verify, q.now);
    q.r.cert = q.spec.build();
    ASSERT_TRUE(q.r.cert.size() > 0);
    std::string f = real.client_hello_frame();
    EXPECT_FALSE(real.on_server_hello(q.r.on_client_hello(body_of(f, true)), &err));
    EXPECT_EQ(err, "intermediate certificate signature invalid");
}

TEST(Noise, TamperedServerHelloRejected) {
    for (int which = 0; which < 4; which++) {
        Pair p;
        if (which == 0) p.r.static_tamper = 0;
        if (which == 1) p.r.static_tamper = 47;  // the tag
        if (which == 2) p.r.payload_tamper = 3;
        n::Handshake c = p.client();
        std::string err;
        if (which == 3) {
            std::string f = c.client_hello_frame();
            p.r.cert = p.spec.build();
            std::string sh = p.r.on_client_hello(body_of(f, true));
            sh[5] ^= 1;  // inside the server ephemeral: every later key differs
            EXPECT_FALSE(c.on_server_hello(sh, &err));
        } else {
            EXPECT_FALSE(p.hello(c, &err));
        }
        EXPECT_FALSE(err.empty());
    }
    // wrong state, malformed message
    Pair p;
    n::Handshake c = p.client();
    std::string err;
    EXPECT_FALSE(c.on_server_hello("", &err));
    EXPECT_EQ(err, "server hello in the wrong state");
    n::Handshake d = p.client();
    d.client_hello_frame();
    EXPECT_FALSE(d.on_server_hello("\x1a\x05\x0a\x20", &err));
    EXPECT_EQ(err, "malformed server hello");
    n::Handshake e = p.client();
    e.client_hello_frame();
    n::HandshakeMessage m;
    m.client_hello = {true, std::string(32, 'e'), "", ""};
    EXPECT_FALSE(e.on_server_hello(n::encode_handshake(m), &err));
    EXPECT_EQ(err, "malformed server hello");
}

TEST(Noise, TamperedClientFinishDetectedByResponder) {
    Pair p;
    n::Handshake c = p.client();
    std::string err;
    ASSERT_TRUE(p.hello(c, &err)) << err;
    std::string fin = c.client_finish_frame("payload");
    fin[fin.size() - 1] ^= 1;
    EXPECT_FALSE(p.r.on_client_finish(body_of(fin, false)));
}

// The bounds checks the hand-written reader had, now protobuf-lite's, seen through each decoder.
TEST(Noise, MalformedMessagesRejected) {
    const std::string bad[] = {
        std::string("\x12\x05hi", 4),                                  // length past the end
        std::string("\x08\x80", 2),                                    // truncated varint
        std::string("\x08") + std::string(10, '\xff') + "\x01",         // varint of more than 10 bytes
        std::string("\x1d\x01\x02", 3),                                // truncated fixed32
        std::string("\x0b", 1),                                        // group start, no end
        std::string("\x0b\x0c", 2),                                    // a whole (empty) group
        std::string("\x00\x01", 2),                                    // field 0
        std::string("\x12\xff\xff\xff\xff\x0f", 6),                     // huge length
        std::string("\x0f", 1),                                        // wire type 7
    };
    for (const std::string& b : bad) {
        n::HandshakeMessage m;
        n::CertChain c;
        n::CertDetails d;
        EXPECT_FALSE(n::decode_handshake(b, m)) << hex(b);
        EXPECT_FALSE(n::decode_cert_chain(b, c)) << hex(b);
        EXPECT_FALSE(n::decode_details(b, d)) << hex(b);
    }
    // the same inside a part or a certificate
    n::HandshakeMessage m;
    EXPECT_FALSE(n::decode_handshake(std::string("\x1a\x02\x08\x80", 4), m));      // serverHello: truncated varint
    EXPECT_FALSE(n::decode_handshake(std::string("\x1a\x02\x0a\x05", 4), m));      // serverHello: length past its end
    EXPECT_FALSE(n::decode_handshake(std::string("\x1a\x02\x08\x01", 4), m));      // serverHello.ephemeral as a varint
    EXPECT_FALSE(n::decode_handshake(std::string("\x22\x02\x10\x01", 4), m));      // clientFinish.payload as a varint
    EXPECT_FALSE(n::decode_handshake(std::string("\x12\x02\x1d\x01", 4), m));      // clientHello: truncated fixed32
    n::CertChain c;
    EXPECT_FALSE(n::decode_cert_chain(std::string("\x08\x01", 2), c));              // leaf as a varint
    EXPECT_FALSE(n::decode_cert_chain(std::string("\x0a\x02\x10\x01", 4), c));      // leaf.signature as a varint
    EXPECT_FALSE(n::decode_cert_chain(std::string("\x12\x02\x0b\x0c", 4), c));      // a group in intermediate
    ASSERT_TRUE(n::decode_cert_chain(std::string("\x0a\x02\x12\x00\x18\x05", 6), c));  // empty signature, field 3
    EXPECT_TRUE(c.leaf_details.empty() && c.leaf_signature.empty() && c.intermediate_details.empty());
    n::CertDetails d;
    EXPECT_FALSE(n::decode_details(std::string("\x18\x01", 2), d));                 // key as a varint
    EXPECT_FALSE(n::decode_details(std::string("\x20\x01\x20\x02\x1a\x00\x28\x80\x80", 9), d));  // truncated notAfter
    EXPECT_FALSE(n::decode_details(std::string("\x21\x00\x00\x00\x00\x00\x00\x00\x00", 9), d));  // notBefore as fixed64
    ASSERT_TRUE(n::decode_details(std::string("\x10\x80\x80\x80\x80\x0f\x20\x01\x20\x02", 10), d));  // repeated: last wins
    EXPECT_EQ(d.issuer_serial, 0xf0000000u);
    EXPECT_EQ(d.not_before, 2u);
}

TEST(Noise, MessagesSkipUnknownFieldsRejectWrongWireTypes) {
    n::HandshakeMessage m;
    EXPECT_TRUE(n::decode_handshake(std::string("\x08\x01\x1a\x04\x20\x01\x0a\x00", 8), m));
    EXPECT_TRUE(m.server_hello.present);
    EXPECT_EQ(m.server_hello.ephemeral, "");
    EXPECT_FALSE(n::decode_handshake(std::string("\x18\x01", 2), m));  // serverHello as a varint
    n::CertDetails d;
    EXPECT_FALSE(n::decode_details(std::string("\x08\x80\x80\x80\x80\x10", 6), d));  // serial > u32
    EXPECT_FALSE(n::decode_details(std::string("\x08\xff\xff\xff\xff\x0f\x12\x01x", 9), d));  // issuerSerial as bytes
    ASSERT_TRUE(n::decode_details(std::string("\x08\xff\xff\xff\xff\x0f\x32\x01x", 9), d));  // unknown field 6
    EXPECT_EQ(d.serial, UINT32_MAX);
}

}  // namespace
