#include "wa/link/websocket.hpp"

#include "wa/codec/base64.hpp"
#include "wa/crypto/keys.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <exception>
#include <new>

namespace wa::ws {

namespace {

// RFC 6455 section 1.3; checked by the RFC accept vector in the unit tests.
const char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool has_line_break(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view item = trim(list.substr(0, comma));
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

// Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), which
// RFC 6455 section 8.1 requires of text messages and close reasons.
bool valid_utf8(std::string_view s) {
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

bool known_opcode(uint8_t op) { return op <= 2 || (op >= 8 && op <= 10); }

}  // namespace

std::string new_key() {
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) return std::string();
    return base64_encode(std::string_view(reinterpret_cast<const char*>(raw), sizeof raw));
}

std::string accept_for_key(std::string_view key) {
    try {
        std::string in(key);
        in.append(kGuid);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr) != 1) return std::string();
        return base64_encode(std::string_view(reinterpret_cast<const char*>(md), md_len));
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string upgrade_request(std::string_view host_header, std::string_view path, std::string_view key,
                            std::string_view origin,
                            const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    if (has_line_break(host_header) || has_line_break(path) || has_line_break(key)) return std::string();
    try {
        std::string r;
        r.reserve(256);
        r.append("GET ").append(path.empty() ? std::string_view("/") : path).append(" HTTP/1.1\r\n");
        r.append("Host: ").append(host_header).append("\r\n");
        r.append("Upgrade: websocket\r\nConnection: Upgrade\r\n");
        r.append("Sec-WebSocket-Key: ").append(key).append("\r\n");
        r.append("Sec-WebSocket-Version: 13\r\n");
        if (!origin.empty() && !has_line_break(origin)) r.append("Origin: ").append(origin).append("\r\n");
        for (const auto& h : extra_headers) {
            if (h.first.empty() || has_line_break(h.first) || h.first.find(':') != std::string::npos ||
                has_line_break(h.second))
                continue;
            r.append(h.first).append(": ").append(h.second).append("\r\n");
        }
        r.append("\r\n");
        return r;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

UpgradeResult parse_upgrade_response(std::string_view buf, std::string_view key, size_t max_header_bytes) {
    UpgradeResult res;
    auto reject = [&res](std::string why) {
        res.kind = UpgradeResult::Rejected;
        res.error = std::move(why);
        return res;
    };
    try {
        std::string_view window = buf.substr(0, max_header_bytes);
        size_t end = window.find("\r\n\r\n");
        if (end == std::string_view::npos) {
            if (buf.size() >= max_header_bytes) return reject("response headers too large");
            return res;  // Incomplete
        }
        res.consumed = end + 4;
        std::string_view head = buf.substr(0, end + 2);  // every line ends in CRLF

        size_t eol = head.find("\r\n");
        std::string_view status_line = head.substr(0, eol);
        head.remove_prefix(eol + 2);
        // "HTTP/1.x SSS[ reason]"
        if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ' ||
            (status_line.size() > 12 && status_line[12] != ' '))
            return reject("malformed status line");
        int status = 0;
        for (size_t i = 9; i < 12; i++) {
            char c = status_line[i];
            if (c < '0' || c > '9') return reject("malformed status line");
            status = status * 10 + (c - '0');
        }
        res.status = status;
        if (status != 101) return reject("HTTP " + std::to_string(status) + " from server");

        bool upgrade_ok = false, connection_ok = false, have_accept = false;
        std::string_view accept;
        while (!head.empty()) {
            eol = head.find("\r\n");
            std::string_view line = head.substr(0, eol);
            head.remove_prefix(eol + 2);
            if (line.empty() || line.front() == ' ' || line.front() == '\t') return reject("malformed header line");
            size_t colon = line.find(':');
            if (colon == std::string_view::npos || colon == 0) return reject("malformed header line");
            std::string_view name = line.substr(0, colon);
            if (name.find_first_of(" \t") != std::string_view::npos) return reject("malformed header line");
            std::string_view value = trim(line.substr(colon + 1));
            if (iequals(name, "Upgrade")) {
                upgrade_ok = iequals(value, "websocket");
            } else if (iequals(name, "Connection")) {
                connection_ok = connection_ok || has_token(value, "upgrade");
            } else if (iequals(name, "Sec-WebSocket-Accept")) {
                if (have_accept) return reject("duplicate Sec-WebSocket-Accept");
                have_accept = true;
                accept = value;
            } else if (iequals(name, "Sec-WebSocket-Extensions")) {
                // We never offer extensions and the decoder rejects RSV bits, so
                // a negotiated extension could only fail later, less clearly.
                if (!value.empty()) return reject("server selected an extension that was not offered");
            }
        }
        if (!upgrade_ok) return reject("missing Upgrade: websocket");
        if (!connection_ok) return reject("missing Connection: upgrade");
        if (!have_accept) return reject("missing Sec-WebSocket-Accept");
        std::string expected = accept_for_key(key);
        if (expected.empty() || accept != expected) return reject("bad Sec-WebSocket-Accept");
        res.kind = UpgradeResult::Accepted;
        return res;
    } catch (const std::exception&) {
        res.consumed = 0;
        return reject("out of memory");
    }
}

std::string encode_frame_with_mask(Opcode op, std::string_view payload, uint32_t mask, bool fin) {
    try {
        std::string f;
        size_t n = payload.size();
        f.reserve(n + 14);
        f.push_back(static_cast<char>((fin ? 0x80 : 0x00) | static_cast<uint8_t>(op)));
        if (n < 126) {
            f.push_back(static_cast<char>(0x80 | n));
        } else if (n <= 0xffff) {
            f.push_back(static_cast<char>(0x80 | 126));
            f.push_back(static_cast<char>((n >> 8) & 0xff));
            f.push_back(static_cast<char>(n & 0xff));
        } else {
            f.push_back(static_cast<char>(0x80 | 127));
            uint64_t n64 = n;
            for (int shift = 56; shift >= 0; shift -= 8) f.push_back(static_cast<char>((n64 >> shift) & 0xff));
        }
        unsigned char m[4] = {static_cast<unsigned char>(mask >> 24), static_cast<unsigned char>(mask >> 16),
                              static_cast<unsigned char>(mask >> 8), static_cast<unsigned char>(mask)};
        f.append(reinterpret_cast<const char*>(m), 4);
        size_t start = f.size();
        f.append(payload);
        for (size_t i = 0; i < n; i++) f[start + i] = static_cast<char>(f[start + i] ^ m[i & 3]);
        return f;
    } catch (const std::bad_alloc&) {
        return std::string();
    }
}

std::string encode_frame(Opcode op, std::string_view payload, bool fin) {
    unsigned char m[4];
    if (!crypto::random_bytes(m, sizeof m)) return std::string();
    uint32_t mask = (uint32_t(m[0]) << 24) | (uint32_t(m[1]) << 16) | (uint32_t(m[2]) << 8) | uint32_t(m[3]);
    return encode_frame_with_mask(op, payload, mask, fin);
}

std::string close_payload(uint16_t code, std::string_view reason) {
    std::string p;
    try {
        p.push_back(static_cast<char>(code >> 8));
        p.push_back(static_cast<char>(code & 0xff));
        reason = reason.substr(0, 123);
        // Cutting at 123 bytes must not split a UTF-8 sequence: drop trailing
        // continuation bytes and the lead byte they belong to.
        if (!valid_utf8(reason)) {
            while (!reason.empty() && (static_cast<unsigned char>(reason.back()) & 0xc0) == 0x80)
                reason.remove_suffix(1);
            if (!reason.empty() && static_cast<unsigned char>(reason.back()) >= 0xc0) reason.remove_suffix(1);
            // The peer fails the connection on a malformed reason; the code
            // alone is more useful than that.
            if (!valid_utf8(reason)) reason = std::string_view();
        }
        p.append(reason);
    } catch (const std::bad_alloc&) {
        p.clear();
    }
    return p;
}

FrameDecoder::FrameDecoder(size_t max_message) : max_message_(max_message) {}

void FrameDecoder::feed(std::string_view bytes) {
    if (!error_.empty()) return;
    try {
        if (off_ == buf_.size()) {
            buf_.clear();
            off_ = 0;
        } else if (off_ >= 65536 && off_ * 2 >= buf_.size()) {
            // Erasing costs at most what was already consumed, so compaction is
            // amortised O(1) per byte while the live tail never gets recopied
            // on every frame.
            buf_.erase(0, off_);
            off_ = 0;
        }
        buf_.append(bytes);
    } catch (const std::bad_alloc&) {
        fail("out of memory");
    }
}

FrameDecoder::Result FrameDecoder::fail(const char* why) {
    error_ = why;
    buf_.clear();
    off_ = 0;
    message_.clear();
    in_message_ = false;
    return Result::Error;
}

FrameDecoder::Result FrameDecoder::next(Opcode& op, std::string& payload) {
    if (!error_.empty()) return Result::Error;
    try {
        for (;;) {
            if (off_ != 0 && off_ == buf_.size()) {
                buf_.clear();
                off_ = 0;
            }
            const unsigned char* p = reinterpret_cast<const unsigned char*>(buf_.data()) + off_;
            size_t avail = buf_.size() - off_;
            if (avail < 2) return Result::NeedMore;
            bool fin = (p[0] & 0x80) != 0;
            if (p[0] & 0x70) return fail("reserved bits set");
            uint8_t code = p[0] & 0x0f;
            if (!known_opcode(code)) return fail("unknown opcode");
            if (p[1] & 0x80) return fail("masked frame from server");
            uint64_t len = p[1] & 0x7f;
            size_t hdr = 2;
            if (len == 126) {
                if (avail < 4) return Result::NeedMore;
                len = (uint64_t(p[2]) << 8) | p[3];
                hdr = 4;
            } else if (len == 127) {
                if (avail < 10) return Result::NeedMore;
                len = 0;
                for (int i = 2; i < 10; i++) len = (len << 8) | p[i];
                if (len >> 63) return fail("invalid frame length");
                hdr = 10;
            }
            bool control = code >= 8;
            if (control) {
                if (!fin) return fail("fragmented control frame");
                if (len > 125) return fail("control frame too large");
            } else {
                if (code == 0 && !in_message_) return fail("unexpected continuation frame");
                if (code != 0 && in_message_) return fail("expected continuation frame");
                // Checked before the payload arrives so an announced giant frame is
                // refused without buffering it.
                uint64_t so_far = in_message_ ? message_.size() : 0;
                if (len > max_message_ || so_far + len > max_message_) return fail("message too large");
            }
            if (avail - hdr < len) return Result::NeedMore;

            std::string_view body(reinterpret_cast<const char*>(p) + hdr, static_cast<size_t>(len));
            // `body` points into buf_, so the buffer is only reset at the top of
            // the next iteration/call, after the payload has been copied out.
            off_ += hdr + static_cast<size_t>(len);

            if (control) {
                if (code == 8) {
                    if (body.size() == 1) return fail("invalid close payload");
                    if (body.size() >= 2 && !valid_utf8(body.substr(2))) return fail("invalid UTF-8 in close reason");
                }
                op = static_cast<Opcode>(code);
                payload.assign(body.data(), body.size());
                return Result::Message;
            }
            if (code != 0) {
                message_op_ = static_cast<Opcode>(code);
                if (fin) {
                    if (message_op_ == Opcode::Text && !valid_utf8(body)) return fail("invalid UTF-8 in text message");
                    op = message_op_;
                    payload.assign(body.data(), body.size());
                    return Result::Message;
                }
                in_message_ = true;
                message_.assign(body.data(), body.size());
                continue;  // a loop, not recursion: a run of tiny fragments must not grow the stack
            }
            message_.append(body.data(), body.size());
            if (!fin) continue;  // a loop, not recursion: a run of tiny fragments must not grow the stack
            in_message_ = false;
            if (message_op_ == Opcode::Text && !valid_utf8(message_)) return fail("invalid UTF-8 in text message");
            op = message_op_;
            payload.swap(message_);
            message_.clear();
            return Result::Message;
        }
    } catch (const std::bad_alloc&) {
        return fail("out of memory");
    }
}

}  // namespace wa::ws
