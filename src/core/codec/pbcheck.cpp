#include "wa/codec/pbcheck.hpp"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/message_lite.h>

#include <climits>

namespace wa::pb {

namespace {

using google::protobuf::io::CodedInputStream;

bool listed(uint32_t number, std::initializer_list<uint32_t> numbers) {
    for (uint32_t n : numbers)
        if (n == number) return true;
    return false;
}

// Calls fn(number, wire type, value) for each top-level field (value: the varint, else 0) and skips
// its payload. False on malformed input, a group, or when fn returns false.
template <class Fn>
bool each_field(std::string_view bytes, Fn fn) {
    if (bytes.size() > static_cast<size_t>(INT_MAX)) return false;
    CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
    for (;;) {
        uint32_t tag = in.ReadTag();
        if (tag == 0) return in.ConsumedEntireMessage();  // the end, or else a malformed or zero tag
        uint32_t number = tag >> 3, type = tag & 7;
        if (number == 0) return false;
        uint64_t v = 0;
        uint32_t len = 0, v32 = 0;
        bool ok;
        switch (type) {
        case 0: ok = in.ReadVarint64(&v); break;
        case 1: ok = in.ReadLittleEndian64(&v); v = 0; break;
        case 2: ok = in.ReadVarint32(&len) && in.Skip(static_cast<int>(len)); break;
        case 5: ok = in.ReadLittleEndian32(&v32); break;
        default: return false;  // groups (3, 4) and invalid wire types
        }
        if (!ok || !fn(number, type, v)) return false;
    }
}

}  // namespace

bool parse(std::string_view bytes, google::protobuf::MessageLite& msg) {
    if (bytes.size() > static_cast<size_t>(INT_MAX)) return false;
    return msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

bool no_mistyped(const std::string& unknown, std::initializer_list<uint32_t> numbers) {
    return each_field(unknown, [&](uint32_t number, uint32_t, uint64_t) { return !listed(number, numbers); });
}

bool varints_fit_u32(std::string_view bytes, std::initializer_list<uint32_t> numbers) {
    return each_field(bytes, [&](uint32_t number, uint32_t type, uint64_t v) {
        return type != 0 || v <= UINT32_MAX || !listed(number, numbers);
    });
}

}  // namespace wa::pb
