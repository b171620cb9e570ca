// WhatsApp's plaintext framing around Signal (enc v="2"): random padding, the Message protobuf, the
// deviceSentMessage wrapper for the account's own other devices, message ids and the participant hash.
// Where Baileys rc14 and whatsmeow differ, whatsmeow is followed (file named at each function).
// No nginx types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "WAProto.pb.h"
#include "wa/codec/jid.hpp"

namespace wa::signal {

// whatsmeow message.go padMessage: p = one random byte & 0x0F, 0 replaced by 15 (so 1..15), then p copies
// of the byte p. (Baileys writeRandomPadMax16 pads 1..16.)
std::string pad_message(std::string_view plaintext);
// The same with a given pad length (tests; any 0..255 is written as asked).
std::string pad_message(std::string_view plaintext, uint8_t p);

// whatsmeow message.go unpadMessage for v2: refuses an empty input and a tail that is not p copies of the
// last byte p (isValidPadding); otherwise strips p bytes. Like whatsmeow, p = 0 strips nothing, and any
// p up to the length is accepted (so Baileys' 16 is). On failure returns false, `out` unchanged.
bool unpad_message(std::string_view padded, std::string_view& out);

// A text message as whatsmeow sends it: Message{conversation} (send.go SendMessage documentation and
// mdtest; Baileys rc14 sends extendedTextMessage{text} plus a messageContextInfo.messageSecret).
waproto::Message text_message(std::string_view text);

// The copy for the account's own other devices, as whatsmeow send.go marshalMessage builds it:
// Message{deviceSentMessage{destinationJid = the chat, message = the original}, messageContextInfo = the
// original's (copied when it has one)}.
waproto::Message device_sent_message(const waproto::Message& message, std::string_view destination_jid);

// Serializes and pads: the plaintext to hand to Account::encrypt. False when serialization fails.
bool encode_message(const waproto::Message& message, std::string& padded);

// What decode_message found.
struct ReceivedMessage {
    waproto::Message message;        // unwrapped: a deviceSentMessage's inner message
    bool device_sent = false;        // it came wrapped in deviceSentMessage (sent by one of our devices)
    std::string destination_jid;     // deviceSentMessage.destinationJid (the chat it was sent to)
    std::string phash;               // deviceSentMessage.phash
};
// Unpads (v2), parses strictly (wa::pb: a known field with the wrong wire type is refused), and unwraps
// deviceSentMessage as whatsmeow types/events UnwrapRaw does (the inner message replaces the outer one
// when deviceSentMessage.message is set). False with *err otherwise.
bool decode_message(std::string_view padded, ReceivedMessage& out, std::string* err = nullptr);

// Message ids in WhatsApp Web's current form, whatsmeow send.go Client.GenerateMessageID:
// "3EB0" + uppercase hex of the first 9 bytes of SHA-256(unix seconds as u64 BE ‖ own user ‖ "@c.us" ‖ 16
// random bytes) = 22 characters; user and "@c.us" are left out when own_user is empty. (Baileys
// generateMessageIDV2 hashes a fixed 44-byte buffer, zero-filled between the user and the random bytes.)
std::string message_id(int64_t unix_s, std::string_view own_user, std::string_view random16);
// The same with the current time and 16 bytes from OpenSSL's RAND_bytes ("" if that fails).
std::string new_message_id(std::string_view own_user);

// The participant list hash of a send, whatsmeow send.go participantListHashV2: the devices' AD strings
// ("user.agent:device@server", whatsmeow JID.ADString, agent 0 unless a raw agent), sorted, concatenated,
// SHA-256, the first 6 bytes in unpadded base64: "2:" + 8 characters. (Baileys generateParticipantHashV2
// hashes the plain JID strings and keeps 6 base64 characters.)
std::string participant_hash(const std::vector<Jid>& devices);
// whatsmeow JID.ADString of one device.
std::string ad_string(const Jid& jid);

}  // namespace wa::signal
