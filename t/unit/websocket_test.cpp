#include "wa/link/websocket.hpp"

#include "wa/codec/base64.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using wa::ws::FrameDecoder;
using wa::ws::Opcode;
using wa::ws::UpgradeResult;

std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int v : b) s.push_back(static_cast<char>(v));
    return s;
}

// Server frames are unmasked; builds one with the given header fields.
std::string server_frame(int first_byte, const std::string& payload) {
    std::string f;
    f.push_back(static_cast<char>(first_byte));
    size_t n = payload.size();
    if (n < 126) {
        f.push_back(static_cast<char>(n));
    } else if (n <= 0xffff) {
        f.push_back(126);
        f.push_back(static_cast<char>(n >> 8));
        f.push_back(static_cast<char>(n & 0xff));
    } else {
        f.push_back(127);
        for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<char>((uint64_t(n) >> s) & 0xff));
    }
    return f + payload;
}

const char kRfcKey[] = "dGhlIHNhbXBsZSBub25jZQ==";
const char kRfcAccept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

std::string good_response() {
    return std::string("HTTP/1.1 101 Switching Protocols\r\n"
                       "Upgrade: websocket\r\n"
                       "Connection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: ") +
           kRfcAccept + "\r\n\r\n";
}

TEST(WebSocketHandshake, RfcAcceptExample) {
    EXPECT_EQ(wa::ws::accept_for_key(kRfcKey), kRfcAccept);
}

TEST(WebSocketHandshake, NewKeyIs16RandomBytes) {
    std::string k1 = wa::ws::new_key(), k2 = wa::ws::new_key();
    ASSERT_EQ(k1.size(), 24u);
    std::string raw;
    ASSERT_TRUE(wa::base64_decode(k1, raw));
    EXPECT_EQ(raw.size(), 16u);
    EXPECT_NE(k1, k2);
}

TEST(WebSocketHandshake, UpgradeRequestExact) {
    std::string r = wa::ws::upgrade_request("web.whatsapp.com", "/ws/chat", kRfcKey, "https://web.whatsapp.com",
                                            {{"User-Agent", "ngx_whatsapp"}});
    EXPECT_EQ(r,
              "GET /ws/chat HTTP/1.1\r\n"
              "Host: web.whatsapp.com\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n"
              "Origin: https://web.whatsapp.com\r\n"
              "User-Agent: ngx_whatsapp\r\n"
              "\r\n");
}

TEST(WebSocketHandshake, UpgradeRequestRefusesInjection) {
    EXPECT_EQ(wa::ws::upgrade_request("h\r\nX: y", "/", kRfcKey, ""), "");
    EXPECT_EQ(wa::ws::upgrade_request("h", "/\nX", kRfcKey, ""), "");
    std::string r = wa::ws::upgrade_request("h", "", kRfcKey, "", {{"X-Bad", "a\r\nInjected: 1"}, {"X-Ok", "1"}});
    EXPECT_EQ(r,
              "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Ok: 1\r\n\r\n");
}

TEST(WebSocketHandshake, AcceptsGoodResponseAndReportsConsumed) {
    std::string head = good_response();
    std::string buf = head + bytes({0x81, 0x05}) + "Hello";
    UpgradeResult r = wa::ws::parse_upgrade_response(buf, kRfcKey);
    ASSERT_EQ(r.kind, UpgradeResult::Accepted) << r.error;
    EXPECT_EQ(r.status, 101);
    EXPECT_EQ(r.consumed, head.size());
    EXPECT_EQ(r.error, "");
}

TEST(WebSocketHandshake, CaseInsensitiveHeaders) {
    std::string head = std::string("HTTP/1.1 101 Switching Protocols\r\n"
                                   "upgrade:   WebSocket  \r\n"
                                   "CONNECTION: keep-alive, UPGRADE\r\n"
                                   "sec-websocket-accept:") +
                       kRfcAccept + "\r\nServer: x\r\n\r\n";
    UpgradeResult r = wa::ws::parse_upgrade_response(head, kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Accepted) << r.error;
    EXPECT_EQ(r.consumed, head.size());
}

TEST(WebSocketHandshake, IncompleteUntilBlankLine) {
    std::string head = good_response();
    for (size_t i = 0; i < head.size(); i++) {
        UpgradeResult r = wa::ws::parse_upgrade_response(std::string_view(head).substr(0, i), kRfcKey);
        ASSERT_EQ(r.kind, UpgradeResult::Incomplete) << i;
        EXPECT_EQ(r.consumed, 0u);
    }
}

TEST(WebSocketHandshake, Rejections) {
    UpgradeResult r = wa::ws::parse_upgrade_response("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.error, "HTTP 404 from server");

    std::string bad_accept = good_response();
    bad_accept.replace(bad_accept.find("s3pP"), 4, "s3pQ");
    r = wa::ws::parse_upgrade_response(bad_accept, kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "bad Sec-WebSocket-Accept");

    r = wa::ws::parse_upgrade_response(good_response(), "AAAAAAAAAAAAAAAAAAAAAA==");
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "bad Sec-WebSocket-Accept");

    std::string no_upgrade = good_response();
    no_upgrade.replace(no_upgrade.find("Upgrade: websocket"), 18, "Upgrade: h2c");
    r = wa::ws::parse_upgrade_response(no_upgrade, kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "missing Upgrade: websocket");

    std::string no_conn = good_response();
    no_conn.replace(no_conn.find("Connection: Upgrade"), 19, "Connection: close");
    r = wa::ws::parse_upgrade_response(no_conn, kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "missing Connection: upgrade");

    r = wa::ws::parse_upgrade_response("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
                                       kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "missing Sec-WebSocket-Accept");

    r = wa::ws::parse_upgrade_response("garbage\r\n\r\n", kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "malformed status line");

    std::string ext = good_response();
    ext.insert(ext.size() - 2, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    r = wa::ws::parse_upgrade_response(ext, kRfcKey);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "server selected an extension that was not offered");
}

TEST(WebSocketHandshake, OversizedHeaders) {
    std::string big = "HTTP/1.1 101 Switching Protocols\r\nX-Pad: " + std::string(200, 'a');
    UpgradeResult r = wa::ws::parse_upgrade_response(big, kRfcKey, 128);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    EXPECT_EQ(r.error, "response headers too large");
    // Complete, but the head itself is longer than the limit.
    std::string head = good_response();
    r = wa::ws::parse_upgrade_response(head, kRfcKey, head.size() - 1);
    EXPECT_EQ(r.kind, UpgradeResult::Rejected);
    r = wa::ws::parse_upgrade_response(head, kRfcKey, head.size());
    EXPECT_EQ(r.kind, UpgradeResult::Accepted);
}

TEST(WebSocketEncode, RfcMaskedHello) {
    EXPECT_EQ(wa::ws::encode_frame_with_mask(Opcode::Text, "Hello", 0x37fa213d),
              bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(WebSocketEncode, FragmentAndControl) {
    EXPECT_EQ(wa::ws::encode_frame_with_mask(Opcode::Text, "Hel", 0, false),
              bytes({0x01, 0x83, 0, 0, 0, 0, 'H', 'e', 'l'}));
    EXPECT_EQ(wa::ws::encode_frame_with_mask(Opcode::Continuation, "lo", 0x01020304),
              bytes({0x80, 0x82, 0x01, 0x02, 0x03, 0x04, 'l' ^ 0x01, 'o' ^ 0x02}));
    EXPECT_EQ(wa::ws::encode_frame_with_mask(Opcode::Ping, "", 0xaabbccdd), bytes({0x89, 0x80, 0xaa, 0xbb, 0xcc, 0xdd}));
}

TEST(WebSocketEncode, LengthForms) {
    std::string f = wa::ws::encode_frame_with_mask(Opcode::Binary, std::string(125, 'x'), 0);
    EXPECT_EQ(f.substr(0, 2), bytes({0x82, 0x80 | 125}));
    EXPECT_EQ(f.size(), 2u + 4 + 125);

    f = wa::ws::encode_frame_with_mask(Opcode::Binary, std::string(256, 'x'), 0);
    EXPECT_EQ(f.substr(0, 4), bytes({0x82, 0xfe, 0x01, 0x00}));
    EXPECT_EQ(f.size(), 4u + 4 + 256);

    f = wa::ws::encode_frame_with_mask(Opcode::Binary, std::string(65535, 'x'), 0);
    EXPECT_EQ(f.substr(0, 4), bytes({0x82, 0xfe, 0xff, 0xff}));

    f = wa::ws::encode_frame_with_mask(Opcode::Binary, std::string(65536, 'x'), 0);
    EXPECT_EQ(f.substr(0, 10), bytes({0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}));
    EXPECT_EQ(f.size(), 10u + 4 + 65536);
}

TEST(WebSocketEncode, RandomMaskActuallyMasks) {
    std::string payload(64, '\0');
    std::string a = wa::ws::encode_frame(Opcode::Binary, payload);
    std::string b = wa::ws::encode_frame(Opcode::Binary, payload);
    ASSERT_EQ(a.size(), 2u + 4 + 64);
    EXPECT_EQ(static_cast<unsigned char>(a[1]), 0x80 | 64);
    EXPECT_NE(a.substr(2, 4), b.substr(2, 4));  // fresh mask each frame (2^-32 flake odds)
    // A zero payload XOR mask repeats the mask bytes.
    EXPECT_EQ(a.substr(6, 4), a.substr(2, 4));
}

TEST(WebSocketEncode, ClosePayload) {
    EXPECT_EQ(wa::ws::close_payload(1000, "bye"), bytes({0x03, 0xe8, 'b', 'y', 'e'}));
    EXPECT_EQ(wa::ws::close_payload(4001, ""), bytes({0x0f, 0xa1}));
    EXPECT_EQ(wa::ws::close_payload(1000, std::string(200, 'r')).size(), 125u);
    // 122 ASCII bytes + a 2-byte character straddling the cut: the character is dropped whole.
    std::string reason = std::string(122, 'a') + "\xc3\xa9";
    EXPECT_EQ(wa::ws::close_payload(1000, reason).size(), 2u + 122);
    EXPECT_EQ(wa::ws::close_payload(1000, "\xff" "ok"), bytes({0x03, 0xe8}));
}

TEST(WebSocketDecode, RfcUnmaskedHello) {
    FrameDecoder d;
    Opcode op;
    std::string payload;
    EXPECT_EQ(d.next(op, payload), FrameDecoder::Result::NeedMore);
    d.feed(bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));
    ASSERT_EQ(d.next(op, payload), FrameDecoder::Result::Message);
    EXPECT_EQ(op, Opcode::Text);
    EXPECT_EQ(payload, "Hello");
    EXPECT_EQ(d.next(op, payload), FrameDecoder::Result::NeedMore);
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(WebSocketDecode, RfcFragmentedWithPingInBetween) {
    FrameDecoder d;
    d.feed(bytes({0x01, 0x03, 0x48, 0x65, 0x6c}));          // "Hel", not final
    d.feed(bytes({0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));  // ping "Hello"
    d.feed(bytes({0x80, 0x02, 0x6c, 0x6f}));                // "lo", final
    Opcode op;
    std::string payload;
    ASSERT_EQ(d.next(op, payload), FrameDecoder::Result::Message);
    EXPECT_EQ(op, Opcode::Ping);
    EXPECT_EQ(payload, "Hello");
    ASSERT_EQ(d.next(op, payload), FrameDecoder::Result::Message);
    EXPECT_EQ(op, Opcode::Text);
    EXPECT_EQ(payload, "Hello");
    EXPECT_EQ(d.next(op, payload), FrameDecoder::Result::NeedMore);
}

TEST(WebSocketDecode, ByteByByte) {
    std::string stream = server_frame(0x82, std::string(300, '\x07')) + server_frame(0x8a, "pong") +
                         server_frame(0x02, "ab") + server_frame(0x00, "cd") + server_frame(0x80, "ef") +
                         server_frame(0x88, wa::ws::close_payload(1000, "done"));
    FrameDecoder d;
    std::vector<std::pair<Opcode, std::string>> got;
    for (char c : stream) {
        d.feed(std::string_view(&c, 1));
        Opcode op;
        std::string payload;
        FrameDecoder::Result r;
        while ((r = d.next(op, payload)) == FrameDecoder::Result::Message) got.emplace_back(op, payload);
        ASSERT_EQ(r, FrameDecoder::Result::NeedMore) << d.error();
    }
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[0].first, Opcode::Binary);
    EXPECT_EQ(got[0].second, std::string(300, '\x07'));
    EXPECT_EQ(got[1].first, Opcode::Pong);
    EXPECT_EQ(got[1].second, "pong");
    EXPECT_EQ(got[2].first, Opcode::Binary);
    EXPECT_EQ(got[2].second, "abcdef");
    EXPECT_EQ(got[3].first, Opcode::Close);
    EXPECT_EQ(got[3].second, bytes({0x03, 0xe8, 'd', 'o', 'n', 'e'}));
}

TEST(WebSocketDecode, Length16And64) {
    std::string p16(256, 'a'), p64(70000, 'b');
    p64[0] = 'X';
    p64[69999] = 'Y';
    std::string f16 = server_frame(0x82, p16), f64 = server_frame(0x82, p64);
    ASSERT_EQ(f16.substr(0, 4), bytes({0x82, 126, 0x01, 0x00}));
    ASSERT_EQ(f64.substr(0, 10), bytes({0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70}));
    FrameDecoder d;
    d.feed(f16 + f64);
    Opcode op;
    std::string payload;
    ASSERT_EQ(d.next(op, payload), FrameDecoder::Result::Message);
    EXPECT_EQ(payload, p16);
    ASSERT_EQ(d.next(op, payload), FrameDecoder::Result::Message);
    EXPECT_EQ(payload, p64);
}

TEST(WebSocketDecode, ManyFramesAcrossCompaction) {
    // Enough traffic to cross the compaction threshold with frames split at odd offsets.
    std::string stream;
    for (int i = 0; i < 2000; i++) stream += server_frame(0x82, std::string(100 + i % 50, char('a' + i % 26)));
    FrameDecoder d;
    int seen = 0;
    for (size_t pos = 0; pos < stream.size(); pos += 997) {
        d.feed(std::string_view(stream).substr(pos, 997));
        Opcode op;
        std::string payload;
        while (d.next(op, payload) == FrameDecoder::Result::Message) {
            ASSERT_EQ(payload, std::string(100 + seen % 50, char('a' + seen % 26)));
            seen++;
        }
    }
    EXPECT_EQ(seen, 2000);
    EXPECT_EQ(d.buffered(), 0u);
}

FrameDecoder::Result decode_one(const std::string& wire, std::string* error, size_t max = 16u << 20) {
    FrameDecoder d(max);
    d.feed(wire);
    Opcode op;
    std::string payload;
    FrameDecoder::Result r = d.next(op, payload);
    *error = d.error();
    return r;
}

TEST(WebSocketDecode, Errors) {
    std::string err;
    EXPECT_EQ(decode_one(bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}), &err),
              FrameDecoder::Result::Error);
    EXPECT_EQ(err, "masked frame from server");
    EXPECT_EQ(decode_one(bytes({0xc1, 0x00}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "reserved bits set");
    EXPECT_EQ(decode_one(bytes({0x83, 0x00}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "unknown opcode");
    EXPECT_EQ(decode_one(bytes({0x8b, 0x00}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "unknown opcode");
    EXPECT_EQ(decode_one(bytes({0x09, 0x00}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "fragmented control frame");
    EXPECT_EQ(decode_one(bytes({0x89, 126, 0x00, 126}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "control frame too large");
    EXPECT_EQ(decode_one(bytes({0x80, 0x00}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "unexpected continuation frame");
    EXPECT_EQ(decode_one(bytes({0x01, 0x01, 'a', 0x81, 0x01, 'b'}) + "", &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "expected continuation frame");
    EXPECT_EQ(decode_one(bytes({0x88, 0x01, 0x03}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "invalid close payload");
    EXPECT_EQ(decode_one(bytes({0x81, 0x02, 0xc3, 0x28}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "invalid UTF-8 in text message");
    EXPECT_EQ(decode_one(bytes({0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "invalid frame length");
}

TEST(WebSocketDecode, OversizedRefusedFromHeaderAlone) {
    std::string err;
    // Only the header of a 2^32-byte frame: refused without waiting for the body.
    EXPECT_EQ(decode_one(bytes({0x82, 127, 0, 0, 0, 0x01, 0, 0, 0, 0}), &err), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "message too large");
    EXPECT_EQ(decode_one(server_frame(0x82, std::string(101, 'x')), &err, 100), FrameDecoder::Result::Error);
    EXPECT_EQ(err, "message too large");
    EXPECT_EQ(decode_one(server_frame(0x82, std::string(100, 'x')), &err, 100), FrameDecoder::Result::Message);
}

TEST(WebSocketDecode, OversizedAcrossFragments) {
    FrameDecoder d(100);
    d.feed(server_frame(0x02, std::string(60, 'x')));
    d.feed(server_frame(0x00, std::string(41, 'y')));
    Opcode op;
    std::string payload;
    EXPECT_EQ(d.next(op, payload), FrameDecoder::Result::Error);
    EXPECT_EQ(d.error(), "message too large");
    // The error is sticky: later input is not decoded.
    d.feed(server_frame(0x82, "ok"));
    EXPECT_EQ(d.next(op, payload), FrameDecoder::Result::Error);
}

TEST(WebSocketDecode, ManyEmptyFragmentsDoNotRecurse) {
    std::string stream = server_frame(0x02, "a");
    for (int i = 0; i < 200000; i++) stream += server_frame(0x00, "");
    stream += server_frame(0x80, "b");
    FrameDecoder d;
    d.feed(stream);
    Opcode op;
    std::string payload;
    ASSERT_EQ(d.next(op, payload), FrameDecoder::Result::Message);
    EXPECT_EQ(payload, "ab");
}

}  // namespace
