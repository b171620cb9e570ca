// Sans-IO RFC 6455 client codec: the caller owns the socket (nginx event loop)
// and moves bytes in and out; nothing here blocks or touches file descriptors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wa::ws {

// 16 random bytes, base64: the Sec-WebSocket-Key for one handshake.
// Returns "" only if the OpenSSL RNG fails.
std::string new_key();

// The expected Sec-WebSocket-Accept for `key` (RFC 6455 section 4.2.2).
std::string accept_for_key(std::string_view key);

// Builds the opening handshake. Returns "" if host, path or key contain CR, LF
// or NUL (that would let a value inject headers); an empty origin omits the
// Origin header, and extra headers with such bytes are skipped.
std::string upgrade_request(std::string_view host_header, std::string_view path, std::string_view key,
                            std::string_view origin,
                            const std::vector<std::pair<std::string, std::string>>& extra_headers = {});

struct UpgradeResult {
    enum Kind { Incomplete, Accepted, Rejected } kind = Incomplete;
    size_t consumed = 0;  // length of the response head incl. the blank line
    int status = 0;       // HTTP status once the status line was parsed
    std::string error;
};

// Parses the server's handshake response from the start of `buf`. Bytes past
// `consumed` already belong to the WebSocket stream and must be fed to a
// FrameDecoder.
UpgradeResult parse_upgrade_response(std::string_view buf, std::string_view key, size_t max_header_bytes = 8192);

enum class Opcode : uint8_t { Continuation = 0, Text = 1, Binary = 2, Close = 8, Ping = 9, Pong = 10 };

// Client-to-server frames must be masked (RFC 6455 section 5.3); the mask
// comes from the OpenSSL RNG. Returns "" if the RNG fails.
std::string encode_frame(Opcode op, std::string_view payload, bool fin = true);
// Same with a caller-chosen mask (big-endian: the first mask byte is mask >> 24),
// for deterministic tests.
std::string encode_frame_with_mask(Opcode op, std::string_view payload, uint32_t mask, bool fin = true);

// Close frame body: 2-byte big-endian status code followed by the reason,
// truncated so the whole payload fits a control frame (125 bytes).
std::string close_payload(uint16_t code, std::string_view reason);

// Decodes server-to-client frames. Data messages are returned whole after
// reassembling continuation frames; control frames are returned as soon as
// they arrive, even between the fragments of a data message. After an Error
// the decoder stays in the error state: the connection must be failed.
class FrameDecoder {
public:
    explicit FrameDecoder(size_t max_message = 16u << 20);

    void feed(std::string_view bytes);

    enum class Result { NeedMore, Message, Error };
    Result next(Opcode& op, std::string& payload);

    const std::string& error() const { return error_; }
    // Bytes fed but not yet consumed by next() (for flow control / tests).
    size_t buffered() const { return buf_.size() - off_; }

private:
    Result fail(const char* why);

    size_t max_message_;
    std::string buf_;
    size_t off_ = 0;  // consumed prefix of buf_; compacted lazily in feed()
    bool in_message_ = false;
    Opcode message_op_ = Opcode::Binary;
    std::string message_;
    std::string error_;
};

}  // namespace wa::ws
