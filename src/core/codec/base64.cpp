#include "wa/codec/base64.hpp"

#include <cstdint>
#include <new>

namespace wa {

namespace {

const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int decode_char(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

}  // namespace

std::string base64_encode(std::string_view in) {
    std::string out;
    try {
        out.reserve((in.size() + 2) / 3 * 4);
        size_t i = 0;
        for (; i + 3 <= in.size(); i += 3) {
            uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) |
                         uint32_t(uint8_t(in[i + 2]));
            out.push_back(kAlphabet[(v >> 18) & 63]);
            out.push_back(kAlphabet[(v >> 12) & 63]);
            out.push_back(kAlphabet[(v >> 6) & 63]);
            out.push_back(kAlphabet[v & 63]);
        }
        size_t rest = in.size() - i;
        if (rest == 1) {
            uint32_t v = uint32_t(uint8_t(in[i])) << 16;
            out.push_back(kAlphabet[(v >> 18) & 63]);
            out.push_back(kAlphabet[(v >> 12) & 63]);
            out.append("==");
        } else if (rest == 2) {
            uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8);
            out.push_back(kAlphabet[(v >> 18) & 63]);
            out.push_back(kAlphabet[(v >> 12) & 63]);
            out.push_back(kAlphabet[(v >> 6) & 63]);
            out.push_back('=');
        }
    } catch (const std::bad_alloc&) {
        out.clear();
    }
    return out;
}

bool base64_decode(std::string_view in, std::string& out) {
    out.clear();
    if (in.size() % 4 != 0) return false;
    try {
        out.reserve(in.size() / 4 * 3);
        for (size_t i = 0; i < in.size(); i += 4) {
            bool last = i + 4 == in.size();
            int pad = 0;
            if (last) {
                if (in[i + 3] == '=') pad = (in[i + 2] == '=') ? 2 : 1;
            }
            uint32_t v = 0;
            for (int k = 0; k < 4; k++) {
                int d;
                if (k >= 4 - pad) {
                    d = 0;
                } else {
                    d = decode_char(uint8_t(in[i + k]));
                    if (d < 0) {
                        out.clear();
                        return false;
                    }
                }
                v = (v << 6) | uint32_t(d);
            }
            if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0)) {
                out.clear();
                return false;
            }
            out.push_back(char((v >> 16) & 0xff));
            if (pad < 2) out.push_back(char((v >> 8) & 0xff));
            if (pad < 1) out.push_back(char(v & 0xff));
        }
    } catch (const std::bad_alloc&) {
        out.clear();
        return false;
    }
    return true;
}

}  // namespace wa
