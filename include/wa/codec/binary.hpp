// WhatsApp binary node codec (dictionary version 3), wire-compatible with Baileys 7 (encoder
// byte-for-byte, see t/codec/crosscheck.mjs) and whatsmeow. docs/wa-protocol.md section 3.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wa {

struct Node {
    enum class Content { None, Bytes, Children };

    std::string tag;
    std::vector<std::pair<std::string, std::string>> attrs;  // insertion (= wire) order
    Content kind = Content::None;
    std::string bytes;  // kind == Bytes
    // kind == Bytes only: false = binary content, always written as BINARY_x and never tokenized
    // (refs, keys, ciphertexts); true = string content, written like an attribute value (token,
    // nibble, hex, JID or raw). The decoder sets it when the content was a non-BINARY string form,
    // so decode -> encode reproduces the input bytes. (A raw string is BINARY_x on the wire, so string
    // content written raw decodes with bytes_is_string = false.)
    bool bytes_is_string = false;
    std::vector<Node> children;  // kind == Children (may be empty: an empty list)

    Node() = default;
    explicit Node(std::string t) : tag(std::move(t)) {}
    Node(std::string t, std::vector<std::pair<std::string, std::string>> a)
        : tag(std::move(t)), attrs(std::move(a)) {}
    Node(std::string t, std::vector<std::pair<std::string, std::string>> a, std::vector<Node> c)
        : tag(std::move(t)), attrs(std::move(a)), kind(Content::Children), children(std::move(c)) {}

    static Node with_bytes(std::string t, std::vector<std::pair<std::string, std::string>> a, std::string b) {
        Node n(std::move(t), std::move(a));
        n.kind = Content::Bytes;
        n.bytes = std::move(b);
        return n;
    }
    static Node with_string(std::string t, std::vector<std::pair<std::string, std::string>> a, std::string s) {
        Node n = with_bytes(std::move(t), std::move(a), std::move(s));
        n.bytes_is_string = true;
        return n;
    }

    // First attribute with that key (a decoded frame may repeat keys; Baileys keeps the last), or nullptr.
    const std::string* attr(std::string_view key) const;
    std::string_view attr_or(std::string_view key, std::string_view fallback = {}) const;
    bool has_attr(std::string_view key) const { return attr(key) != nullptr; }
    // Replaces the first attribute with that key, or appends it (false only when out of memory).
    bool set_attr(std::string_view key, std::string_view value);

    // First child with that tag (kind == Children), or nullptr.
    const Node* child(std::string_view tag) const;
    Node* child(std::string_view tag);
    std::vector<const Node*> children_by_tag(std::string_view tag) const;

    bool operator==(const Node& o) const;
    bool operator!=(const Node& o) const { return !(*this == o); }
};

namespace binary {
constexpr uint8_t kFlagCompressed = 0x02;
constexpr size_t kMaxDepth = 64;                       // node nesting (and nested JID strings)
constexpr size_t kMaxInflated = size_t(16) << 20;      // bound for zlib-compressed frames
constexpr size_t kMaxItems = size_t(1) << 18;          // nodes + attributes per decoded frame (bounds memory)
enum Tag : uint8_t {
    LIST_EMPTY = 0,
    DICTIONARY_0 = 236,
    DICTIONARY_1 = 237,
    DICTIONARY_2 = 238,
    DICTIONARY_3 = 239,
    INTEROP_JID = 245,
    FB_JID = 246,
    AD_JID = 247,
    LIST_8 = 248,
    LIST_16 = 249,
    JID_PAIR = 250,
    HEX_8 = 251,
    BINARY_8 = 252,
    BINARY_20 = 253,
    BINARY_32 = 254,
    NIBBLE_8 = 255,
};
constexpr size_t kPackedMax = 127;
}  // namespace binary

// Encodes a node as frame plaintext: flags byte 0x00, then the node. String forms are chosen like
// Baileys' encoder: token, NIBBLE_8, HEX_8, JID (any string containing '@'), raw BINARY_x. One
// deliberate difference: a string containing '@' is written in a JID form only when that form decodes
// back to the same string (Baileys would silently alter e.g. "a_b@x", "1:02@s.whatsapp.net", "u:1@g.us");
// otherwise it is written raw. "user:device@msgr" and "integrator-user:device@interop" use FB_JID and
// INTEROP_JID (Baileys would write a lossy AD_JID).
// Fails (returns false, sets *err) for an empty tag, nesting deeper than kMaxDepth, more than 65535
// list items (attributes count twice) or content of 4 GiB or more.
bool encode(const Node& node, std::string& out, std::string* err = nullptr);
// Same, returning "" on failure.
std::string encode(const Node& node);

// Decodes frame plaintext (flags byte first; flags & 0x02 = zlib, inflated up to kMaxInflated).
// Strict: every length is checked against the remaining input, nesting is limited to kMaxDepth, at most
// kMaxItems nodes + attributes, trailing bytes after the node are an error, packed strings must pad with
// 0xF, INTEROP_JID must carry its server (Baileys makes it optional), JID_PAIR needs a non-empty server. JIDs become their string form (AD_JID keeps ":device"
// even for device 0 and a raw agent as "user_agent:device", unlike Baileys' decoder, so that
// decode -> encode is the identity on Baileys' output). On failure returns false, sets *err, and
// leaves `out` in an unspecified but valid state.
bool decode(std::string_view frame, Node& out, std::string* err = nullptr);

// Decodes a node without the flags byte and without decompression.
bool decode_node(std::string_view data, Node& out, std::string* err = nullptr);

// XML-ish rendering for logs: <tag k="v">...</tag>. Non-printable or long values are escaped/truncated;
// binary content is shown as hex (first 32 bytes) with its length. Output is bounded (about 16 KiB).
std::string to_string(const Node& node);

}  // namespace wa
