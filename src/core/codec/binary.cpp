#include "wa/codec/binary.hpp"

#include <zlib.h>

#include <climits>
#include <new>

#include "wa/codec/jid.hpp"
#include "wa/codec/tokens.hpp"

namespace wa {

// ---------------------------------------------------------------------------------------------
// Node helpers

const std::string* Node::attr(std::string_view key) const {
    for (const auto& kv : attrs)
        if (kv.first == key) return &kv.second;
    return nullptr;
}

std::string_view Node::attr_or(std::string_view key, std::string_view fallback) const {
    const std::string* v = attr(key);
    return v ? std::string_view(*v) : fallback;
}

bool Node::set_attr(std::string_view key, std::string_view value) {
    try {
        for (auto& kv : attrs)
            if (kv.first == key) {
                kv.second.assign(value.data(), value.size());
                return true;
            }
        attrs.emplace_back(std::string(key), std::string(value));
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

const Node* Node::child(std::string_view t) const {
    if (kind != Content::Children) return nullptr;
    for (const Node& c : children)
        if (c.tag == t) return &c;
    return nullptr;
}

Node* Node::child(std::string_view t) {
    return const_cast<Node*>(static_cast<const Node*>(this)->child(t));
}

std::vector<const Node*> Node::children_by_tag(std::string_view t) const {
    std::vector<const Node*> v;
    if (kind != Content::Children) return v;
    try {
        for (const Node& c : children)
            if (c.tag == t) v.push_back(&c);
    } catch (const std::exception&) {  // out of memory: what fitted
    }
    return v;
}

bool Node::operator==(const Node& o) const {
    if (tag != o.tag || attrs != o.attrs || kind != o.kind) return false;
    switch (kind) {
    case Content::None: return true;
    case Content::Bytes: return bytes == o.bytes && bytes_is_string == o.bytes_is_string;
    case Content::Children: return children == o.children;
    }
    return false;
}

namespace {

using namespace binary;

void set_err(std::string* err, const std::string& m) {
    if (!err) return;
    try {
        *err = m;
    } catch (...) {
    }
}

// ---------------------------------------------------------------------------------------------
// Encoder

constexpr size_t kMaxJidNesting = 8;  // "a@b@c": the server of a JID_PAIR may itself be a JID

bool is_nibble(std::string_view s) {
    if (s.empty() || s.size() > kPackedMax) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || c == '-' || c == '.')) return false;
    return true;
}

bool is_hex(std::string_view s) {
    if (s.empty() || s.size() > kPackedMax) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return false;
    return true;
}

uint8_t pack_char(char c) {
    if (c >= '0' && c <= '9') return uint8_t(c - '0');
    if (c == '-') return 10;
    if (c == '.') return 11;
    if (c >= 'A' && c <= 'F') return uint8_t(10 + c - 'A');  // hex only; never mixed with '-'/'.'
    return 15;
}

struct Writer {
    std::string& out;
    void byte(uint8_t b) { out.push_back(char(b)); }
    void u16(uint32_t v) {
        byte(uint8_t(v >> 8));
        byte(uint8_t(v));
    }
    void byte_length(uint64_t n) {  // n < 2^32, checked by callers
        if (n >= (uint64_t(1) << 20)) {
            byte(BINARY_32);
            byte(uint8_t(n >> 24));
            byte(uint8_t(n >> 16));
            byte(uint8_t(n >> 8));
            byte(uint8_t(n));
        } else if (n >= 256) {
            byte(BINARY_20);
            byte(uint8_t((n >> 16) & 0x0F));
            byte(uint8_t(n >> 8));
            byte(uint8_t(n));
        } else {
            byte(BINARY_8);
            byte(uint8_t(n));
        }
    }
    void raw(std::string_view s) {
        byte_length(s.size());
        out.append(s.data(), s.size());
    }
    void packed(std::string_view s, uint8_t tag) {
        byte(tag);
        size_t n = s.size();
        byte(uint8_t(((n + 1) / 2) | ((n & 1) ? 0x80 : 0)));
        for (size_t i = 0; i + 1 < n; i += 2) byte(uint8_t((pack_char(s[i]) << 4) | pack_char(s[i + 1])));
        if (n & 1) byte(uint8_t((pack_char(s[n - 1]) << 4) | 0x0F));
    }
    void list_start(size_t n) {  // n <= 65535, checked by callers
        if (n == 0) {
            byte(LIST_EMPTY);
        } else if (n < 256) {
            byte(LIST_8);
            byte(uint8_t(n));
        } else {
            byte(LIST_16);
            u16(uint32_t(n));
        }
    }

    // Writes `s` in a JID form if (like Baileys) it contains '@' and that form decodes back to `s`.
    // Decides before writing anything; returns false (nothing written) otherwise.
    bool jid(std::string_view s, size_t nesting) {
        size_t at = s.find('@');
        if (at == std::string_view::npos) return false;
        std::string_view server = s.substr(at + 1);
        std::string_view left = s.substr(0, at);
        size_t colon = left.find(':');
        if (colon != std::string_view::npos) {
            std::string_view dev_s = left.substr(colon + 1);
            std::string_view ua = left.substr(0, colon);
            uint32_t dev = 0;
            if (server == jid_server::kMessenger) {  // FB_JID: user, u16 device, server
                if (!parse_jid_number(dev_s, 0xFFFF, dev)) return false;
                byte(FB_JID);
                string(ua, nesting + 1);
                u16(dev);
                string(server, nesting + 1);
                return true;
            }
            if (server == jid_server::kInterop) {  // INTEROP_JID: user, u16 device, u16 integrator, server
                size_t dash = ua.find('-');
                uint32_t integ = 0;
                if (dash == std::string_view::npos || !parse_jid_number(ua.substr(0, dash), 0xFFFF, integ) ||
                    !parse_jid_number(dev_s, 0xFFFF, dev))
                    return false;
                byte(INTEROP_JID);
                string(ua.substr(dash + 1), nesting + 1);
                u16(dev);
                u16(integ);
                string(server, nesting + 1);
                return true;
            }
            // AD_JID: domainType, device, user (Baileys: whenever the string has ':device').
            if (!parse_jid_number(dev_s, 0xFF, dev)) return false;
            std::string_view user = ua;
            int domain = jid_domain_for_server(server);
            size_t us = ua.find('_');
            if (us != std::string_view::npos) {  // user_agent: the agent is the domain byte
                uint32_t agent = 0;
                if (server != jid_server::kUser || !parse_jid_number(ua.substr(us + 1), 0xFF, agent) ||
                    agent == kDomainWhatsApp || agent == kDomainLid || agent == kDomainHosted ||
                    agent == kDomainHostedLid)
                    return false;
                domain = int(agent);
                user = ua.substr(0, us);
            }
            if (domain < 0) return false;  // the server is not representable (e.g. g.us)
            byte(AD_JID);
            byte(uint8_t(domain));
            byte(uint8_t(dev));
            string(user, nesting + 1);
            return true;
        }
        // JID_PAIR: Baileys cuts the user at '_' and its decoder rejects an empty server.
        if (left.find('_') != std::string_view::npos || server.empty()) return false;
        byte(JID_PAIR);
        if (left.empty())
            byte(LIST_EMPTY);
        else
            string(left, nesting + 1);
        string(server, nesting + 1);
        return true;
    }

    void string(std::string_view s, size_t nesting = 0) {
        if (s.empty()) {
            raw(s);
            return;
        }
        tokens::Index ti;
        if (tokens::find(s, ti)) {
            if (ti.dict >= 0) byte(uint8_t(DICTIONARY_0 + ti.dict));
            byte(ti.index);
        } else if (is_nibble(s)) {
            packed(s, NIBBLE_8);
        } else if (is_hex(s)) {
            packed(s, HEX_8);
        } else if (nesting >= kMaxJidNesting || !jid(s, nesting)) {
            raw(s);
        }
    }
};

bool encode_node(Writer& w, const Node& n, size_t depth, std::string* err) {
    if (depth > kMaxDepth) {
        set_err(err, "node nesting too deep");
        return false;
    }
    if (n.tag.empty()) {
        set_err(err, "node without tag");
        return false;
    }
    if (n.attrs.size() > 32766) {
        set_err(err, "too many attributes");
        return false;
    }
    if (n.kind == Node::Content::Bytes && uint64_t(n.bytes.size()) >= (uint64_t(1) << 32)) {
        set_err(err, "content too large");
        return false;
    }
    if (n.kind == Node::Content::Children && n.children.size() > 65535) {
        set_err(err, "too many children");
        return false;
    }
    if (uint64_t(n.tag.size()) >= (uint64_t(1) << 32)) {
        set_err(err, "tag too large");
        return false;
    }
    for (const auto& kv : n.attrs)
        if (uint64_t(kv.first.size()) >= (uint64_t(1) << 32) || uint64_t(kv.second.size()) >= (uint64_t(1) << 32)) {
            set_err(err, "attribute too large");
            return false;
        }
    w.list_start(1 + 2 * n.attrs.size() + (n.kind != Node::Content::None ? 1 : 0));
    w.string(n.tag);
    for (const auto& kv : n.attrs) {
        w.string(kv.first);
        w.string(kv.second);
    }
    switch (n.kind) {
    case Node::Content::None: break;
    case Node::Content::Bytes:
        if (n.bytes_is_string)
            w.string(n.bytes);
        else
            w.raw(n.bytes);
        break;
    case Node::Content::Children:
        w.list_start(n.children.size());
        for (const Node& c : n.children)
            if (!encode_node(w, c, depth + 1, err)) return false;
        break;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// Decoder

struct Reader {
    const uint8_t* p;
    size_t n;
    size_t i = 0;
    size_t items = 0;
    const char* error = nullptr;

    bool fail(const char* m) {
        if (!error) error = m;
        return false;
    }
    size_t left() const { return n - i; }
    bool u8(uint8_t& v) {
        if (i >= n) return fail("unexpected end of data");
        v = p[i++];
        return true;
    }
    bool uint(size_t width, uint32_t& v) {
        if (left() < width) return fail("unexpected end of data");
        v = 0;
        for (size_t k = 0; k < width; k++) v = (v << 8) | p[i++];
        return true;
    }
    bool take(uint64_t len, std::string& out) {
        if (len > left()) return fail("length exceeds the data");
        out.assign(reinterpret_cast<const char*>(p + i), size_t(len));
        i += size_t(len);
        return true;
    }
    bool binary_length(uint8_t tag, uint32_t& len) {
        switch (tag) {
        case BINARY_8: return uint(1, len);
        case BINARY_20:
            if (!uint(3, len)) return false;
            len &= 0x0FFFFF;
            return true;
        case BINARY_32: return uint(4, len);
        default: return fail("not a binary tag");
        }
    }
    static bool is_list(uint8_t tag) { return tag == LIST_EMPTY || tag == LIST_8 || tag == LIST_16; }
    bool list_size(uint8_t tag, uint32_t& size) {
        switch (tag) {
        case LIST_EMPTY: size = 0; return true;
        case LIST_8: return uint(1, size);
        case LIST_16: return uint(2, size);
        default: return fail("invalid list tag");
        }
    }

    bool packed(uint8_t tag, std::string& out) {
        uint8_t start = 0;
        if (!u8(start)) return false;
        size_t count = start & 0x7F;
        bool odd = (start & 0x80) != 0;
        if (count > left()) return fail("length exceeds the data");
        if (odd && count == 0) return fail("invalid packed length");
        out.clear();
        out.reserve(count * 2);
        for (size_t k = 0; k < count; k++) {
            uint8_t b = p[i++];
            for (int half = 0; half < 2; half++) {
                uint8_t v = half == 0 ? uint8_t(b >> 4) : uint8_t(b & 0x0F);
                bool pad = odd && half == 1 && k + 1 == count;
                if (pad) {
                    if (v != 0x0F) return fail("invalid packed padding");
                    continue;
                }
                if (tag == HEX_8) {
                    out.push_back(char(v < 10 ? '0' + v : 'A' + v - 10));
                } else if (v < 10) {
                    out.push_back(char('0' + v));
                } else if (v == 10) {
                    out.push_back('-');
                } else if (v == 11) {
                    out.push_back('.');
                } else {
                    return fail("invalid nibble");
                }
            }
        }
        return true;
    }

    bool string_at(std::string& out, size_t depth) {
        uint8_t tag = 0;
        return u8(tag) && string(tag, out, depth);
    }

    bool string(uint8_t tag, std::string& out, size_t depth) {
        if (depth > kMaxDepth) return fail("string nesting too deep");
        if (tag >= 1 && tag < tokens::kSingleByteCount) {
            out.assign(tokens::single(tag));
            return true;
        }
        switch (tag) {
        case LIST_EMPTY: out.clear(); return true;
        case DICTIONARY_0:
        case DICTIONARY_1:
        case DICTIONARY_2:
        case DICTIONARY_3: {
            uint8_t idx = 0;
            if (!u8(idx)) return false;
            out.assign(tokens::dictionary(tag - DICTIONARY_0, idx));
            return true;
        }
        case BINARY_8:
        case BINARY_20:
        case BINARY_32: {
            uint32_t len = 0;
            return binary_length(tag, len) && take(len, out);
        }
        case HEX_8:
        case NIBBLE_8: return packed(tag, out);
        case JID_PAIR: {
            std::string user, server;
            if (!string_at(user, depth + 1) || !string_at(server, depth + 1)) return false;
            if (server.empty()) return fail("invalid jid pair");
            out = std::move(user);
            out += '@';
            out += server;
            return true;
        }
        case AD_JID: {
            uint8_t domain = 0, device = 0;
            std::string user;
            if (!u8(domain) || !u8(device) || !string_at(user, depth + 1)) return false;
            out = Jid::from_ad(domain, device, std::move(user)).to_string();
            return !out.empty() || fail("out of memory");
        }
        case FB_JID: {
            std::string user, server;
            uint32_t device = 0;
            if (!string_at(user, depth + 1) || !uint(2, device) || !string_at(server, depth + 1)) return false;
            out = std::move(user);
            out += ':';
            out += std::to_string(device);
            out += '@';
            out += server;
            return true;
        }
        case INTEROP_JID: {
            std::string user, server;
            uint32_t device = 0, integrator = 0;
            if (!string_at(user, depth + 1) || !uint(2, device) || !uint(2, integrator) ||
                !string_at(server, depth + 1))
                return false;
            out = std::to_string(integrator);
            out += '-';
            out += user;
            out += ':';
            out += std::to_string(device);
            out += '@';
            out += server;
            return true;
        }
        default: return fail("invalid string tag");
        }
    }

    bool node(Node& out, size_t depth) {
        if (depth > kMaxDepth) return fail("node nesting too deep");
        if (++items > kMaxItems) return fail("too many nodes and attributes");
        uint8_t t = 0;
        uint32_t size = 0;
        if (!u8(t) || !list_size(t, size)) return false;
        if (size == 0) return fail("empty node");
        if (!string_at(out.tag, 0)) return false;
        if (out.tag.empty()) return fail("node without tag");
        size_t nattrs = (size - 1) >> 1;
        if (nattrs * 2 > left()) return fail("attribute count exceeds the data");
        items += nattrs;
        if (items > kMaxItems) return fail("too many nodes and attributes");
        out.attrs.clear();
        out.attrs.reserve(nattrs);
        for (size_t k = 0; k < nattrs; k++) {
            out.attrs.emplace_back();
            if (!string_at(out.attrs.back().first, 0) || !string_at(out.attrs.back().second, 0)) return false;
        }
        out.kind = Node::Content::None;
        out.bytes.clear();
        out.bytes_is_string = false;
        out.children.clear();
        if (size % 2 != 0) return true;
        if (!u8(t)) return false;
        if (is_list(t)) {
            uint32_t count = 0;
            if (!list_size(t, count)) return false;
            if (uint64_t(count) * 2 > left()) return fail("child count exceeds the data");
            out.kind = Node::Content::Children;
            out.children.reserve(count);
            for (uint32_t k = 0; k < count; k++) {
                out.children.emplace_back();
                if (!node(out.children.back(), depth + 1)) return false;
            }
            return true;
        }
        out.kind = Node::Content::Bytes;
        if (t == BINARY_8 || t == BINARY_20 || t == BINARY_32) {
            uint32_t len = 0;
            return binary_length(t, len) && take(len, out.bytes);
        }
        out.bytes_is_string = true;
        return string(t, out.bytes, 0);
    }
};

bool inflate_bounded(std::string_view in, std::string& out, const char*& error) {
    if (in.size() > UINT_MAX) {
        error = "compressed frame too large";
        return false;
    }
    z_stream zs{};
    if (inflateInit(&zs) != Z_OK) {
        error = "zlib init failed";
        return false;
    }
    struct Guard {
        z_stream* z;
        ~Guard() { inflateEnd(z); }
    } guard{&zs};
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = uInt(in.size());
    out.clear();
    unsigned char buf[16384];
    int rc = Z_OK;
    do {
        zs.next_out = buf;
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            error = "invalid zlib data";
            return false;
        }
        size_t got = sizeof buf - zs.avail_out;
        if (got > kMaxInflated - out.size()) {
            error = "inflated frame too large";
            return false;
        }
        out.append(reinterpret_cast<const char*>(buf), got);
    } while (rc != Z_STREAM_END);
    if (zs.avail_in != 0) {
        error = "trailing data after zlib stream";
        return false;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// to_string

constexpr size_t kRenderMax = 16384;

void append_escaped(std::string& out, std::string_view s, size_t limit) {
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (; k < s.size() && k < limit; k++) {
        unsigned char c = static_cast<unsigned char>(s[k]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c >= 0x20 && c < 0x7F) {
            out += char(c);
        } else {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (k < s.size()) {
        out += "...(";
        out += std::to_string(s.size());
        out += " bytes)";
    }
}

bool printable(std::string_view s) {
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c >= 0x7F) return false;
    }
    return true;
}

void render(std::string& out, const Node& n, size_t depth) {
    if (out.size() > kRenderMax) return;
    if (depth > kMaxDepth) {
        out += "<...>";
        return;
    }
    out += '<';
    append_escaped(out, n.tag, 64);
    for (const auto& kv : n.attrs) {
        if (out.size() > kRenderMax) break;
        out += ' ';
        append_escaped(out, kv.first, 64);
        out += "=\"";
        append_escaped(out, kv.second, 256);
        out += '"';
    }
    if (n.kind == Node::Content::None) {
        out += "/>";
        return;
    }
    out += '>';
    if (n.kind == Node::Content::Bytes) {
        if (n.bytes_is_string && printable(n.bytes)) {
            append_escaped(out, n.bytes, 256);
        } else {
            static const char hex[] = "0123456789abcdef";
            out += '[';
            out += std::to_string(n.bytes.size());
            out += " bytes";
            if (!n.bytes.empty()) {
                out += ' ';
                size_t m = n.bytes.size() < 32 ? n.bytes.size() : 32;
                for (size_t k = 0; k < m; k++) {
                    unsigned char c = static_cast<unsigned char>(n.bytes[k]);
                    out += hex[c >> 4];
                    out += hex[c & 15];
                }
                if (m < n.bytes.size()) out += "...";
            }
            out += ']';
        }
    } else {
        for (const Node& c : n.children) {
            if (out.size() > kRenderMax) {
                out += "...";
                break;
            }
            render(out, c, depth + 1);
        }
    }
    out += "</";
    append_escaped(out, n.tag, 64);
    out += '>';
}

}  // namespace

bool encode(const Node& node, std::string& out, std::string* err) {
    try {
        out.clear();
        out.push_back('\0');  // flags: uncompressed
        Writer w{out};
        if (!encode_node(w, node, 1, err)) {
            out.clear();
            return false;
        }
        return true;
    } catch (const std::exception&) {
        out.clear();
        set_err(err, "out of memory");
        return false;
    }
}

std::string encode(const Node& node) {
    std::string out;
    encode(node, out, nullptr);
    return out;
}

bool decode_node(std::string_view data, Node& out, std::string* err) {
    try {
        Reader r{reinterpret_cast<const uint8_t*>(data.data()), data.size()};
        if (!r.node(out, 1)) {
            set_err(err, r.error ? r.error : "decode failed");
            return false;
        }
        if (r.i != r.n) {
            set_err(err, "trailing bytes after the node");
            return false;
        }
        return true;
    } catch (const std::exception&) {
        set_err(err, "out of memory");
        return false;
    }
}

bool decode(std::string_view frame, Node& out, std::string* err) {
    if (frame.empty()) {
        set_err(err, "empty frame");
        return false;
    }
    uint8_t flags = uint8_t(frame[0]);
    if (!(flags & kFlagCompressed)) return decode_node(frame.substr(1), out, err);
    try {
        std::string plain;
        const char* error = nullptr;
        if (!inflate_bounded(frame.substr(1), plain, error)) {
            set_err(err, error);
            return false;
        }
        return decode_node(plain, out, err);
    } catch (const std::exception&) {
        set_err(err, "out of memory");
        return false;
    }
}

std::string to_string(const Node& node) {
    std::string out;
    try {
        render(out, node, 1);
    } catch (const std::exception&) {
    }
    return out;
}

}  // namespace wa
