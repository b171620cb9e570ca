// Strict parsing on top of protobuf-lite (the generated waproto:: classes, build/gen/WAProto.pb.h).
// protobuf is lenient where the gateway's decoders must not be:
//  - a known field that arrives with another wire type (serverHello as a varint) is filed under the
//    message's unknown fields and parsing goes on, the field simply absent;
//  - a varint too large for a uint32 field is silently truncated to its low 32 bits.
// These helpers let a decoder refuse both, as the hand-written decoder they replace did. (One leniency
// stays, protobuf's own: a 10-byte varint's bits beyond 64 are dropped rather than refused.)
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace google::protobuf {
class MessageLite;
}

namespace wa::pb {

// ParseFromArray, refusing inputs larger than protobuf's int sizes. Unknown fields are kept aside
// (see no_mistyped); missing fields are the caller's business (proto2 `optional` everywhere).
bool parse(std::string_view bytes, google::protobuf::MessageLite& msg);

// `unknown` is a parsed message's unknown_fields(). True if none of the given field numbers occur in
// it (a known field lands there only with the wrong wire type) and it holds no group (WhatsApp's
// messages have none).
bool no_mistyped(const std::string& unknown, std::initializer_list<uint32_t> numbers);

// True if every top-level varint field of the serialized message `bytes` whose number is listed
// fits in 32 bits. False also on malformed input.
bool varints_fit_u32(std::string_view bytes, std::initializer_list<uint32_t> numbers);

}  // namespace wa::pb
