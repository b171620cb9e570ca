// The outbound HTTP/1.1 client's pure half: URLs, request formatting, response parsing.
#include <gtest/gtest.h>

#include "wa/webhook/http.hpp"

using wa::http::ResponseParser;
using wa::http::Url;

TEST(HttpUrl, Parses) {
    Url u;
    ASSERT_TRUE(wa::http::parse_url("https://Hooks.Example.com/wa/in?x=1#frag", u, nullptr));
    EXPECT_TRUE(u.tls);
    EXPECT_EQ(u.host, "hooks.example.com");
    EXPECT_EQ(u.port, 443);
    EXPECT_EQ(u.host_header, "hooks.example.com");
    EXPECT_EQ(u.target, "/wa/in?x=1");
    ASSERT_TRUE(wa::http::parse_url("http://127.0.0.1:8081", u, nullptr));
    EXPECT_FALSE(u.tls);
    EXPECT_EQ(u.port, 8081);
    EXPECT_EQ(u.host_header, "127.0.0.1:8081");
    EXPECT_EQ(u.target, "/");
    ASSERT_TRUE(wa::http::parse_url("http://[::1]:9/h", u, nullptr));
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.host_header, "[::1]:9");
    std::string err;
    EXPECT_FALSE(wa::http::parse_url("ftp://x/", u, &err));
    EXPECT_FALSE(wa::http::parse_url("http://u:p@x/", u, &err));
    EXPECT_FALSE(wa::http::parse_url("http://x:0/", u, &err));
    EXPECT_FALSE(wa::http::parse_url("http://x:65536/", u, &err));
    EXPECT_FALSE(wa::http::parse_url("http://x/a b", u, &err));
    EXPECT_FALSE(wa::http::parse_url("http:///a", u, &err));
}

TEST(HttpRequest, Formats) {
    Url u;
    ASSERT_TRUE(wa::http::parse_url("http://h:81/p", u, nullptr));
    std::string r = wa::http::format_request("POST", u, {{"X-WhatsApp-Signature", "t=1,v1=ab"}}, "application/json",
                                             "{\"a\":1}", false);
    EXPECT_EQ(r,
              "POST /p HTTP/1.1\r\nHost: h:81\r\nUser-Agent: ngx_whatsapp\r\nContent-Type: application/json\r\n"
              "Content-Length: 7\r\nConnection: close\r\nX-WhatsApp-Signature: t=1,v1=ab\r\n\r\n{\"a\":1}");
    EXPECT_EQ(wa::http::format_request("POST", u, {{"X", "a\r\nEvil: 1"}}, "", "", true), "");
    EXPECT_EQ(wa::http::format_request("POST", u, {{"Bad Name", "v"}}, "", "", true), "");
}

TEST(HttpResponse, ContentLengthInPieces) {
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloHTTP/1.1";
    ResponseParser p;
    size_t used = 0;
    ResponseParser::Result r = ResponseParser::Result::NeedMore;
    size_t total = 0;
    for (size_t i = 0; i < resp.size() && r == ResponseParser::Result::NeedMore; i++) {
        r = p.feed(std::string_view(resp).substr(i, 1), &used);
        total += used;
    }
    ASSERT_EQ(r, ResponseParser::Result::Done);
    EXPECT_EQ(total, resp.size() - 8);
    EXPECT_EQ(p.status(), 200);
    EXPECT_EQ(p.reason(), "OK");
    EXPECT_EQ(p.header("x-a"), "b");
    EXPECT_EQ(p.body_head(), "hello");
    EXPECT_TRUE(p.keep_alive());
}

TEST(HttpResponse, Chunked) {
    ResponseParser p;
    std::string resp = "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
    size_t used = 0;
    ASSERT_EQ(p.feed(resp, &used), ResponseParser::Result::Done);
    EXPECT_EQ(used, resp.size());
    EXPECT_EQ(p.status(), 500);
    EXPECT_EQ(p.body_head(), "Wikipedia");
    EXPECT_FALSE(p.keep_alive());
}

TEST(HttpResponse, UntilCloseAndContinue) {
    ResponseParser p;
    EXPECT_EQ(p.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 202 Accepted\r\n\r\nabc"), ResponseParser::Result::NeedMore);
    EXPECT_EQ(p.on_eof(), ResponseParser::Result::Done);
    EXPECT_EQ(p.status(), 202);
    EXPECT_EQ(p.body_head(), "abc");
    EXPECT_FALSE(p.keep_alive());
}

TEST(HttpResponse, Errors) {
    {
        ResponseParser p;
        EXPECT_EQ(p.feed("SSH-2.0-OpenSSH\r\n\r\n"), ResponseParser::Result::Error);
    }
    {
        ResponseParser p(16384, 10);
        EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"), ResponseParser::Result::Error);
        EXPECT_NE(p.error().find("larger"), std::string::npos);
    }
    {
        ResponseParser p(16384, 10);
        EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n"), ResponseParser::Result::Error);
    }
    {
        ResponseParser p(64);
        EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\n" + std::string(100, 'a')), ResponseParser::Result::Error);
    }
    {
        ResponseParser p;
        EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), ResponseParser::Result::NeedMore);
        EXPECT_EQ(p.on_eof(), ResponseParser::Result::Error);
    }
}
