#include "wa/webhook/http.hpp"

#include <algorithm>
#include <cctype>

namespace wa::http {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

bool clean(std::string_view s) {
    for (char c : s)
        if (c == '\r' || c == '\n' || c == '\0') return false;
    return true;
}

bool token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos))
            return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

bool parse_url(std::string_view s, Url& out, std::string* err) {
    auto bad = [&](const char* why) {
        if (err) *err = why;
        return false;
    };
    Url u;
    if (s.substr(0, 7) == "http://") {
        s.remove_prefix(7);
        u.port = 80;
    } else if (s.substr(0, 8) == "https://") {
        s.remove_prefix(8);
        u.tls = true;
        u.port = 443;
    } else {
        return bad("the URL must start with http:// or https://");
    }
    if (!clean(s) || s.find(' ') != std::string_view::npos) return bad("the URL contains spaces or control characters");
    size_t slash = s.find_first_of("/?#");
    std::string_view authority = s.substr(0, slash);
    std::string_view rest = slash == std::string_view::npos ? std::string_view() : s.substr(slash);
    if (authority.find('@') != std::string_view::npos) return bad("user information in the URL is not supported");
    size_t hash = rest.find('#');
    if (hash != std::string_view::npos) rest = rest.substr(0, hash);
    std::string_view host = authority, port;
    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) return bad("unterminated IPv6 address in the URL");
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') return bad("bad characters after the IPv6 address");
            port = after.substr(1);
        }
    } else {
        size_t colon = authority.rfind(':');
        if (colon != std::string_view::npos) {
            host = authority.substr(0, colon);
            port = authority.substr(colon + 1);
        }
    }
    if (host.empty()) return bad("the URL has no host");
    if (!port.empty()) {
        if (port.size() > 5) return bad("bad port in the URL");
        uint32_t p = 0;
        for (char c : port) {
            if (c < '0' || c > '9') return bad("bad port in the URL");
            p = p * 10 + static_cast<uint32_t>(c - '0');
        }
        if (p == 0 || p > 65535) return bad("bad port in the URL");
        u.port = static_cast<uint16_t>(p);
    }
    u.host = std::string(host);
    std::transform(u.host.begin(), u.host.end(), u.host.begin(), [](unsigned char c) { return std::tolower(c); });
    bool v6 = u.host.find(':') != std::string::npos;
    u.host_header = v6 ? "[" + u.host + "]" : u.host;
    if (u.port != (u.tls ? 443 : 80)) u.host_header += ":" + std::to_string(u.port);
    u.target = rest.empty() ? "/" : std::string(rest);
    if (u.target[0] == '?') u.target = "/" + u.target;
    out = std::move(u);
    return true;
}

std::string format_request(std::string_view method, const Url& url,
                           const std::vector<std::pair<std::string, std::string>>& headers,
                           std::string_view content_type, std::string_view body, bool keep_alive) {
    if (!token(method) || !clean(url.target) || !clean(url.host_header) || !clean(content_type)) return {};
    std::string r;
    r.reserve(256 + body.size());
    r.append(method).append(" ").append(url.target).append(" HTTP/1.1\r\nHost: ").append(url.host_header);
    r.append("\r\nUser-Agent: ngx_whatsapp\r\n");
    if (!content_type.empty()) r.append("Content-Type: ").append(content_type).append("\r\n");
    r.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    if (!keep_alive) r.append("Connection: close\r\n");
    for (const auto& [name, value] : headers) {
        if (!token(name) || !clean(value)) return {};
        r.append(name).append(": ").append(value).append("\r\n");
    }
    r.append("\r\n").append(body);
    return r;
}

ResponseParser::Result ResponseParser::fail(std::string why) {
    error_ = std::move(why);
    phase_ = Phase::Done;
    status_ = status_ ? status_ : 0;
    return Result::Error;
}

std::string ResponseParser::header(std::string_view name) const {
    for (const auto& [n, v] : headers_)
        if (iequals(n, name)) return v;
    return {};
}

bool ResponseParser::parse_head(std::string_view head) {
    size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    // HTTP/1.x SP 3DIGIT SP reason
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return false;
    for (int i = 9; i < 12; i++)
        if (line[i] < '0' || line[i] > '9') return false;
    status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (status_ < 100) return false;
    if (line.size() > 12) reason_ = std::string(trim(line.substr(12)));
    keep_alive_ = line[7] == '1';
    std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
    while (!rest.empty()) {
        size_t e = rest.find("\r\n");
        std::string_view h = rest.substr(0, e);
        rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 2);
        if (h.empty()) continue;
        size_t colon = h.find(':');
        if (colon == std::string_view::npos || !token(h.substr(0, colon))) return false;
        headers_.emplace_back(std::string(h.substr(0, colon)), std::string(trim(h.substr(colon + 1))));
    }
    std::string conn = header("Connection");
    if (iequals(conn, "close")) keep_alive_ = false;
    if (iequals(conn, "keep-alive")) keep_alive_ = true;
    return true;
}

void ResponseParser::take_body(std::string_view b) {
    body_total_ += b.size();
    if (body_head_.size() < keep_) body_head_.append(b.substr(0, keep_ - body_head_.size()));
    if (sink_ && !b.empty() && status_ >= 200 && status_ < 300) sink_(b);
}

ResponseParser::Result ResponseParser::feed(std::string_view data, size_t* consumed) {
    size_t used = 0;
    auto done = [&](Result r) {
        if (consumed) *consumed = used;
        return r;
    };
    while (used < data.size() || phase_ == Phase::Done) {
        std::string_view d = data.substr(used);
        switch (phase_) {
        case Phase::Done: return done(error_.empty() ? Result::Done : Result::Error);
        case Phase::Head: {
            size_t before = buf_.size();
            buf_.append(d);
            size_t end = buf_.find("\r\n\r\n");
            if (end == std::string::npos) {
                used = data.size();
                if (buf_.size() > max_header_) return done(fail("response header too large"));
                break;
            }
            used += end + 4 - before;
            std::string head = buf_.substr(0, end);
            buf_.clear();
            if (!parse_head(head)) return done(fail("malformed HTTP response"));
            if (status_ < 200) {  // 100 Continue and friends: the real response follows
                headers_.clear();
                status_ = 0;
                reason_.clear();
                break;
            }
            std::string te = header("Transfer-Encoding"), cl = header("Content-Length");
            if (!te.empty() && !iequals(te, "identity")) {
                if (!iequals(te, "chunked")) return done(fail("unsupported Transfer-Encoding " + te));
                phase_ = Phase::ChunkSize;
            } else if (!cl.empty()) {
                uint64_t n = 0;
                for (char c : cl) {
                    if (c < '0' || c > '9' || n > (1ULL << 40)) return done(fail("bad Content-Length"));
                    n = n * 10 + static_cast<uint64_t>(c - '0');
                }
                if (n > max_body_) return done(fail("response body larger than " + std::to_string(max_body_) + " bytes"));
                remaining_ = n;
                phase_ = n ? Phase::Body : Phase::Done;
            } else if (status_ == 204 || status_ == 304) {
                phase_ = Phase::Done;
            } else {
                keep_alive_ = false;
                phase_ = Phase::UntilClose;
            }
            break;
        }
        case Phase::Body: {
            size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, d.size()));
            take_body(d.substr(0, n));
            used += n;
            remaining_ -= n;
            if (!remaining_) phase_ = Phase::Done;
            break;
        }
        case Phase::UntilClose:
            take_body(d);
            used = data.size();
            if (body_total_ > max_body_) return done(fail("response body larger than " + std::to_string(max_body_) + " bytes"));
            break;
        case Phase::ChunkSize:
        case Phase::Trailer:
        case Phase::ChunkDataEnd: {
            size_t before = buf_.size();
            buf_.append(d);
            size_t eol = buf_.find("\r\n");
            if (eol == std::string::npos) {
                used = data.size();
                if (buf_.size() > 4096) return done(fail("chunk line too long"));
                break;
            }
            used += eol + 2 - before;
            std::string line = buf_.substr(0, eol);
            buf_.clear();
            if (phase_ == Phase::ChunkDataEnd) {
                if (!line.empty()) return done(fail("malformed chunk"));
                phase_ = Phase::ChunkSize;
            } else if (phase_ == Phase::Trailer) {
                if (line.empty()) phase_ = Phase::Done;
            } else {
                uint64_t n = 0;
                size_t i = 0;
                for (; i < line.size() && std::isxdigit(static_cast<unsigned char>(line[i])); i++) {
                    if (n > (1ULL << 40)) return done(fail("chunk too large"));
                    n = n * 16 + static_cast<uint64_t>(std::isdigit(static_cast<unsigned char>(line[i]))
                                                           ? line[i] - '0'
                                                           : std::tolower(static_cast<unsigned char>(line[i])) - 'a' + 10);
                }
                if (i == 0 || (i < line.size() && line[i] != ';' && line[i] != ' ')) return done(fail("malformed chunk size"));
                if (body_total_ + n > max_body_)
                    return done(fail("response body larger than " + std::to_string(max_body_) + " bytes"));
                remaining_ = n;
                phase_ = n ? Phase::ChunkData : Phase::Trailer;
            }
            break;
        }
        case Phase::ChunkData: {
            size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, d.size()));
            take_body(d.substr(0, n));
            used += n;
            remaining_ -= n;
            if (!remaining_) phase_ = Phase::ChunkDataEnd;
            break;
        }
        }
    }
    return done(phase_ == Phase::Done ? (error_.empty() ? Result::Done : Result::Error) : Result::NeedMore);
}

ResponseParser::Result ResponseParser::on_eof() {
    if (phase_ == Phase::Done) return error_.empty() ? Result::Done : Result::Error;
    if (phase_ == Phase::UntilClose) {
        phase_ = Phase::Done;
        return Result::Done;
    }
    return fail(status_ ? "connection closed in the middle of the response body" : "connection closed before a response");
}

}  // namespace wa::http
