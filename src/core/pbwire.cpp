#include "wa/pbwire.hpp"

namespace wa::pb {

void Writer::put_varint(std::string& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

void Writer::varint_field(uint32_t field, uint64_t v) {
    put_varint(out_, (static_cast<uint64_t>(field) << 3) | Varint);
    put_varint(out_, v);
}

void Writer::bytes_field(uint32_t field, std::string_view b) {
    put_varint(out_, (static_cast<uint64_t>(field) << 3) | Len);
    put_varint(out_, b.size());
    out_.append(b.data(), b.size());
}

bool Reader::get_varint(std::string_view in, size_t& pos, uint64_t& v) {
    v = 0;
    for (int i = 0; i < 10; i++) {
        if (pos >= in.size()) return false;
        uint8_t b = static_cast<uint8_t>(in[pos++]);
        if (i == 9 && b > 1) return false;  // more than 64 bits
        v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) return true;
    }
    return false;
}

bool Reader::next(Field& f) {
    if (error_ || pos_ >= in_.size()) return false;
    uint64_t key;
    if (!get_varint(in_, pos_, key)) return error_ = true, false;
    uint64_t number = key >> 3;
    if (number == 0 || number > 0x1fffffff) return error_ = true, false;
    f = Field{};
    f.number = static_cast<uint32_t>(number);
    switch (key & 7) {
    case Varint:
        f.type = Varint;
        if (!get_varint(in_, pos_, f.varint)) return error_ = true, false;
        return true;
    case Fixed64:
    case Fixed32: {
        size_t n = (key & 7) == Fixed64 ? 8 : 4;
        if (in_.size() - pos_ < n) return error_ = true, false;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
        pos_ += n;
        f.type = (key & 7) == Fixed64 ? Fixed64 : Fixed32;
        f.varint = v;
        return true;
    }
    case Len: {
        uint64_t len;
        if (!get_varint(in_, pos_, len) || len > in_.size() - pos_) return error_ = true, false;
        f.type = Len;
        f.bytes = in_.substr(pos_, static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len);
        return true;
    }
    default:  // groups (3, 4) and reserved types: not used by these messages
        return error_ = true, false;
    }
}

}  // namespace wa::pb
