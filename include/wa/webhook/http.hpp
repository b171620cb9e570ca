// The pure half of the outbound HTTP/1.1 client (webhooks, later media uploads): request formatting and an
// incremental response parser (status line, headers, a Content-Length or chunked body read and discarded up
// to a cap). The nginx layer (src/ngx/http_client.cpp) owns the socket, TLS and timers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wa::http {

// An http:// or https:// URL split for a request. Userinfo, fragments and non-numeric ports are refused.
struct Url {
    bool tls = false;
    std::string host;         // without brackets for IPv6 literals
    uint16_t port = 0;
    std::string host_header;  // host[:port] as sent in Host
    std::string target;       // path?query, "/" when empty
};
bool parse_url(std::string_view s, Url& out, std::string* err);

// "POST /path HTTP/1.1" with Host, Content-Length, Content-Type and the extra headers (names and values
// checked: no CR, LF or NUL). Empty string when a header cannot be put in a request.
std::string format_request(std::string_view method, const Url& url,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::string_view content_type, std::string_view body, bool keep_alive);

class ResponseParser {
public:
    enum class Result { NeedMore, Done, Error };
    explicit ResponseParser(size_t max_header = 16384, size_t max_body = 65536)
        : max_header_(max_header), max_body_(max_body) {}
    // Feeds bytes; `consumed` is how many belong to this response (the rest is the next one on keep-alive).
    Result feed(std::string_view data, size_t* consumed = nullptr);
    // The peer closed: a body delimited by the close ends here.
    Result on_eof();

    int status() const { return status_; }
    const std::string& reason() const { return reason_; }
    const std::string& error() const { return error_; }
    // First value of a header (name case-insensitive), "" when absent.
    std::string header(std::string_view name) const;
    // The first bytes of the body (up to 512), for error messages.
    const std::string& body_head() const { return body_head_; }
    bool keep_alive() const { return keep_alive_; }
    // Keep up to `n` bytes of the body in body_head() instead of 512 (a small JSON answer read whole).
    void keep_body(size_t n) { keep_ = n; }
    // Every body byte also goes to `sink` as it arrives (a download streamed to a file; nothing is kept whole).
    void body_sink(std::function<void(std::string_view)> sink) { sink_ = std::move(sink); }

private:
    enum class Phase { Head, Body, ChunkSize, ChunkData, ChunkDataEnd, Trailer, UntilClose, Done };
    Result fail(std::string why);
    bool parse_head(std::string_view head);
    void take_body(std::string_view b);

    size_t max_header_, max_body_;
    Phase phase_ = Phase::Head;
    std::string buf_;  // the head, or a partial chunk-size / trailer line
    int status_ = 0;
    std::string reason_, error_, body_head_;
    std::vector<std::pair<std::string, std::string>> headers_;
    uint64_t remaining_ = 0;  // Content-Length or chunk bytes left
    uint64_t body_total_ = 0;
    bool keep_alive_ = true;
    size_t keep_ = 512;
    std::function<void(std::string_view)> sink_;
};

}  // namespace wa::http
