// Minimal protobuf wire-format reader/writer (varint and length-delimited fields only,
// other wire types are skipped on read). Enough for the Noise handshake messages and
// the certificate chain; bounds-checked, never reads past the end of its input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace wa::pb {

// Wire types (protobuf encoding spec).
enum WireType : uint8_t { Varint = 0, Fixed64 = 1, Len = 2, Fixed32 = 5 };

// Appends fields to a message.
class Writer {
public:
    void varint_field(uint32_t field, uint64_t v);
    void bytes_field(uint32_t field, std::string_view b);
    const std::string& str() const { return out_; }
    std::string take() { return std::move(out_); }

    static void put_varint(std::string& out, uint64_t v);

private:
    std::string out_;
};

// Iterates over the fields of one message. Usage:
//   Reader r(bytes); Reader::Field f;
//   while (r.next(f)) { ... }  if (r.error()) ...
class Reader {
public:
    struct Field {
        uint32_t number = 0;
        WireType type = Varint;
        uint64_t varint = 0;     // Varint, Fixed64, Fixed32 value
        std::string_view bytes;  // Len payload (a view into the input)
    };

    explicit Reader(std::string_view in) : in_(in) {}
    // Returns false at the end of the input or on malformed input (then error() is true).
    bool next(Field& f);
    bool error() const { return error_; }

    // Reads a varint at in[pos], advances pos. False on truncation or > 10 bytes / overflow.
    static bool get_varint(std::string_view in, size_t& pos, uint64_t& v);

private:
    std::string_view in_;
    size_t pos_ = 0;
    bool error_ = false;
};

}  // namespace wa::pb
