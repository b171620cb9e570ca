// WhatsApp's plaintext framing around Signal (enc v="2"), after whatsmeow: message.go padMessage /
// unpadMessage, send.go marshalMessage, GenerateMessageID and participantListHashV2, types/jid.go ADString,
// types/events UnwrapRaw.
#include "wa/signal/plaintext.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <ctime>
#include <new>

#include "wa/codec/base64.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/codec/pbcheck.hpp"

namespace wa::signal {

std::string pad_message(std::string_view plaintext, uint8_t p) {
    std::string s;
    try {
        s.reserve(plaintext.size() + p);
        s.append(plaintext.data(), plaintext.size());
        s.append(p, static_cast<char>(p));
    } catch (const std::bad_alloc&) {
        s.clear();
    }
    return s;
}

// whatsmeow message.go padMessage: pad[0] &= 0xf; if 0 then 0xf.
std::string pad_message(std::string_view plaintext) {
    uint8_t r = 0;
    if (!crypto::random_bytes(&r, 1)) r = 0;  // the pad only hides the length; 0 becomes 15 below
    uint8_t p = r & 0x0F;
    if (p == 0) p = 0x0F;
    return pad_message(plaintext, p);
}

// whatsmeow message.go unpadMessage + isValidPadding (checkPadding = true).
bool unpad_message(std::string_view padded, std::string_view& out) {
    if (padded.empty()) return false;
    auto p = static_cast<uint8_t>(padded.back());
    if (p > padded.size()) return false;
    for (size_t i = padded.size() - p; i < padded.size(); i++)
        if (static_cast<uint8_t>(padded[i]) != p) return false;
    out = padded.substr(0, padded.size() - p);
    return true;
}

waproto::Message text_message(std::string_view text) {
    waproto::Message m;
    try {
        m.set_conversation(std::string(text));
    } catch (const std::bad_alloc&) {
        m.Clear();
    }
    return m;
}

waproto::Message device_sent_message(const waproto::Message& message, std::string_view destination_jid) {
    waproto::Message m;
    try {
        waproto::Message_DeviceSentMessage* dsm = m.mutable_devicesentmessage();
        dsm->set_destinationjid(std::string(destination_jid));
        *dsm->mutable_message() = message;
        if (message.has_messagecontextinfo()) *m.mutable_messagecontextinfo() = message.messagecontextinfo();
    } catch (const std::bad_alloc&) {
        m.Clear();
    }
    return m;
}

bool encode_message(const waproto::Message& message, std::string& padded) {
    try {
        std::string raw;
        if (!message.SerializeToString(&raw)) return false;
        padded = pad_message(raw);
        return !padded.empty();
    } catch (const std::bad_alloc&) {
        return false;
    }
}

bool decode_message(std::string_view padded, ReceivedMessage& out, std::string* err) {
    auto fail = [&](const char* why) {
        if (err) *err = why;
        return false;
    };
    try {
        std::string_view raw;
        if (!unpad_message(padded, raw)) return fail("plaintext doesn't have expected padding");
        waproto::Message m;
        if (!pb::parse(raw, m)) return fail("not a Message protobuf");
        // The fields read here must have their own wire type (wa::pb: protobuf-lite files a mistyped known
        // field under unknown fields and goes on).
        if (!pb::no_mistyped(m.unknown_fields(), {1, 6, 31, 35})) return fail("Message field with a wrong wire type");
        out.device_sent = false;
        out.destination_jid.clear();
        out.phash.clear();
        if (m.has_devicesentmessage()) {
            const waproto::Message_DeviceSentMessage& dsm = m.devicesentmessage();
            if (!pb::no_mistyped(dsm.unknown_fields(), {1, 2, 3})) return fail("deviceSentMessage field with a wrong wire type");
            if (dsm.has_message()) {
                out.device_sent = true;
                out.destination_jid = dsm.destinationjid();
                out.phash = dsm.phash();
                waproto::Message inner = dsm.message();
                out.message.Swap(&inner);
                return true;
            }
        }
        out.message.Swap(&m);
        return true;
    } catch (const std::bad_alloc&) {
        return fail("out of memory");
    }
}

namespace {

std::string upper_hex(const unsigned char* p, size_t n) {
    static const char* d = "0123456789ABCDEF";
    std::string s;
    s.reserve(n * 2);
    for (size_t i = 0; i < n; i++) {
        s.push_back(d[p[i] >> 4]);
        s.push_back(d[p[i] & 15]);
    }
    return s;
}

}  // namespace

// whatsmeow send.go GenerateMessageID (WebMessageIDPrefix "3EB0", hash[:9]).
std::string message_id(int64_t unix_s, std::string_view own_user, std::string_view random16) {
    try {
        std::string data;
        data.reserve(8 + own_user.size() + 5 + random16.size());
        auto t = static_cast<uint64_t>(unix_s);
        for (int i = 7; i >= 0; i--) data.push_back(static_cast<char>((t >> (8 * i)) & 0xFF));
        if (!own_user.empty()) {
            data.append(own_user.data(), own_user.size());
            data += "@c.us";
        }
        data.append(random16.data(), random16.size());
        unsigned char h[SHA256_DIGEST_LENGTH];
        SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), h);
        return "3EB0" + upper_hex(h, 9);
    } catch (const std::bad_alloc&) {
        return {};
    }
}

std::string new_message_id(std::string_view own_user) {
    unsigned char r[16];
    if (!crypto::random_bytes(r, sizeof r)) return {};
    return message_id(static_cast<int64_t>(std::time(nullptr)), own_user,
                      std::string_view(reinterpret_cast<const char*>(r), sizeof r));
}

// whatsmeow types/jid.go ADString: "%s.%d:%d@%s" (user, RawAgent, Device, Server).
std::string ad_string(const Jid& jid) {
    std::string s;
    try {
        s = jid.user;
        s += '.';
        s += std::to_string(jid.agent);
        s += ':';
        s += std::to_string(jid.device);
        s += '@';
        s += jid.server;
    } catch (const std::bad_alloc&) {
        s.clear();
    }
    return s;
}

// whatsmeow send.go participantListHashV2.
std::string participant_hash(const std::vector<Jid>& devices) {
    try {
        std::vector<std::string> parts;
        parts.reserve(devices.size());
        for (const Jid& j : devices) parts.push_back(ad_string(j));
        std::sort(parts.begin(), parts.end());
        std::string joined;
        for (const std::string& p : parts) joined += p;
        unsigned char h[SHA256_DIGEST_LENGTH];
        SHA256(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), h);
        return "2:" + base64_encode(std::string_view(reinterpret_cast<const char*>(h), 6));
    } catch (const std::bad_alloc&) {
        return {};
    }
}

}  // namespace wa::signal
