// The operator dashboard's pure parts: the language chosen by Accept-Language, the same-origin check of its
// actions, HTML escaping, and the page and script the module serves.
#include <gtest/gtest.h>

#include "wa/api/dashboard.hpp"

namespace d = wa::dashboard;

TEST(DashboardLang, SpanishWhenSpanishIsPreferred) {
    EXPECT_EQ(d::choose_lang("es-CO,es;q=0.9,en;q=0.8"), d::Lang::Es);
    EXPECT_EQ(d::choose_lang("es"), d::Lang::Es);
    EXPECT_EQ(d::choose_lang("ES-419"), d::Lang::Es);
    EXPECT_EQ(d::choose_lang("en;q=0.5, es-MX;q=0.8"), d::Lang::Es);
    EXPECT_EQ(d::choose_lang(" es ; q=1.0 "), d::Lang::Es);
}

TEST(DashboardLang, EnglishOtherwise) {
    EXPECT_EQ(d::choose_lang(""), d::Lang::En);
    EXPECT_EQ(d::choose_lang("en-US,en;q=0.9,es;q=0.8"), d::Lang::En);
    EXPECT_EQ(d::choose_lang("fr-FR, es;q=0.9"), d::Lang::En);
    EXPECT_EQ(d::choose_lang("es;q=0"), d::Lang::En);           // not acceptable at all
    EXPECT_EQ(d::choose_lang("es;q=abc"), d::Lang::En);         // unreadable q: skipped
    EXPECT_EQ(d::choose_lang("estonian, eo"), d::Lang::En);     // not the tag "es"
    EXPECT_EQ(d::choose_lang("*"), d::Lang::En);
    EXPECT_EQ(d::choose_lang("en, es"), d::Lang::En);           // equal q: the first wins
    EXPECT_EQ(d::choose_lang(std::string(5000, ',') + "es"), d::Lang::En);  // beyond what is read
}

TEST(DashboardOrigin, SameHostAndPort) {
    EXPECT_TRUE(d::same_origin("http://127.0.0.1:8080", "127.0.0.1:8080", false));
    EXPECT_TRUE(d::same_origin("http://Example.COM", "example.com", false));
    EXPECT_TRUE(d::same_origin("http://example.com:80", "example.com", false));
    EXPECT_TRUE(d::same_origin("http://example.com", "example.com:80", false));
    EXPECT_TRUE(d::same_origin("https://example.com", "example.com", true));
    EXPECT_TRUE(d::same_origin("https://example.com", "example.com:443", false));  // TLS ended in front
    EXPECT_TRUE(d::same_origin("http://[::1]:8080", "[::1]:8080", false));
}

TEST(DashboardOrigin, AnythingElseRefused) {
    EXPECT_FALSE(d::same_origin("", "example.com", false));
    EXPECT_FALSE(d::same_origin("null", "example.com", false));
    EXPECT_FALSE(d::same_origin("http://evil.example", "example.com", false));
    EXPECT_FALSE(d::same_origin("http://example.com:8080", "example.com", false));
    EXPECT_FALSE(d::same_origin("http://example.com", "example.com:8080", false));
    EXPECT_FALSE(d::same_origin("https://example.com", "example.com:80", false));  // 443 implied, not 80
    EXPECT_FALSE(d::same_origin("http://example.com", "example.com", true));       // downgrade
    EXPECT_FALSE(d::same_origin("http://example.com/", "example.com", false));
    EXPECT_FALSE(d::same_origin("http://user@example.com", "example.com", false));
    EXPECT_FALSE(d::same_origin("ftp://example.com", "example.com", false));
    EXPECT_FALSE(d::same_origin("http://", "", false));
    EXPECT_FALSE(d::same_origin("http://:80", ":80", false));
    EXPECT_FALSE(d::same_origin(std::string("http://a\0b", 10), std::string("a\0b", 3), false));
    EXPECT_FALSE(d::same_origin("http://" + std::string(300, 'a'), std::string(300, 'a'), false));
}

TEST(DashboardPage, EscapesAndLanguages) {
    EXPECT_EQ(d::html_escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    std::string en = d::page_html(d::Lang::En, "/ops\"<x>");
    EXPECT_NE(en.find("<html lang=\"en\">"), std::string::npos);
    EXPECT_NE(en.find("data-base=\"/ops&quot;&lt;x&gt;/\""), std::string::npos);
    EXPECT_EQ(en.find("<x>"), std::string::npos);
    std::string es = d::page_html(d::Lang::Es, "/dashboard");
    EXPECT_NE(es.find("<html lang=\"es\">"), std::string::npos);
    EXPECT_NE(es.find("Sesiones de WhatsApp"), std::string::npos);
    EXPECT_EQ(es.find("<script>"), std::string::npos);  // nothing inline: the CSP allows 'self' only
    EXPECT_EQ(d::script_js().find("innerHTML"), std::string::npos);
    EXPECT_NE(std::string(d::kContentSecurityPolicy).find("frame-ancestors 'none'"), std::string::npos);
}
