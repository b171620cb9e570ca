// POST /api/send-media parsing (wa::api::parse_send_media): JSON with base64 and multipart/form-data, the size
// limit, magic bytes, the fields, the command's JSON through shared memory, and the routes.
#include <gtest/gtest.h>

#include <string>

#include "wa/api.hpp"
#include "wa/base64.hpp"

namespace {

namespace api = wa::api;

const std::string kPdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\nbody";
const std::string kPng("\x89PNG\r\n\x1A\n\0\0\0\rIHDR....", 20);

bool parse(const std::string& ct, std::string body, api::Command& cmd, std::string& file, api::Response& err,
           uint64_t max = 1 << 20) {
    return api::parse_send_media(ct, body, "CO", "", max, cmd, file, err);
}

std::string json_body(const std::string& data_b64, const std::string& extra = R"(,"filename":"a.pdf","mimetype":"application/pdf")") {
    return R"({"organization_id":"o1","phone":"3001234567","type":"document","data":")" + data_b64 + "\"" + extra + "}";
}

TEST(SendMedia, JsonBase64) {
    api::Command cmd;
    std::string file;
    api::Response err;
    ASSERT_TRUE(parse("application/json", json_body(wa::base64_encode(kPdf), R"(,"filename":"a.pdf","caption":"hola","idempotency_key":"k1")"), cmd, file, err)) << err.body;
    EXPECT_EQ(cmd.type, api::Command::SendMedia);
    EXPECT_EQ(file, kPdf);
    EXPECT_EQ(cmd.phone, "573001234567");
    EXPECT_EQ(cmd.mimetype, "application/pdf");  // from the magic bytes
    EXPECT_EQ(cmd.filename, "a.pdf");
    EXPECT_EQ(cmd.message, "hola");
    EXPECT_EQ(cmd.idempotency_key, "k1");
}

TEST(SendMedia, Refusals) {
    api::Command cmd;
    std::string file;
    api::Response err;
    EXPECT_FALSE(parse("application/json", json_body(wa::base64_encode(kPng)), cmd, file, err));
    EXPECT_EQ(err.status, 400);
    EXPECT_NE(err.body.find("invalid_media"), std::string::npos);
    EXPECT_FALSE(parse("application/json", json_body(wa::base64_encode(std::string(1025, 'a')), R"(,"mimetype":"text/plain")"), cmd, file, err, 1024));
    EXPECT_EQ(err.status, 413);
    EXPECT_NE(err.body.find("media_too_large"), std::string::npos);
    EXPECT_TRUE(parse("application/json", json_body(wa::base64_encode(std::string(1024, 'a')), R"(,"mimetype":"text/plain")"), cmd, file, err, 1024)) << err.body;
    EXPECT_FALSE(parse("application/json", json_body("@@@@"), cmd, file, err));
    EXPECT_NE(err.body.find("invalid_media"), std::string::npos);
    EXPECT_FALSE(parse("application/json", json_body(""), cmd, file, err));  // empty file
    EXPECT_FALSE(parse("application/json", json_body(wa::base64_encode(kPdf), R"(,"filename":"../x")"), cmd, file, err));
    EXPECT_FALSE(parse("application/json", json_body(wa::base64_encode(kPdf), R"(,"mimetype":"pdf")"), cmd, file, err));
    EXPECT_FALSE(parse("application/json", R"({"organization_id":"o1","phone":"3001234567","data":"QQ=="})", cmd, file, err));
    EXPECT_NE(err.body.find("missing_field"), std::string::npos);  // type
    EXPECT_FALSE(parse("text/plain", "x", cmd, file, err));
    EXPECT_EQ(err.status, 415);
    std::string img = R"({"organization_id":"o1","phone":"3001234567","type":"image","data":")" + wa::base64_encode("a,b\n") +
                      R"(","mimetype":"text/csv"})";
    EXPECT_FALSE(parse("application/json", img, cmd, file, err));  // an image must be an image
}

TEST(SendMedia, Multipart) {
    std::string ct;
    EXPECT_FALSE(api::multipart_boundary("application/json", ct));
    ASSERT_TRUE(api::multipart_boundary("multipart/form-data; boundary=\"XyZ\"", ct));
    EXPECT_EQ(ct, "XyZ");
    std::string body = "--XyZ\r\nContent-Disposition: form-data; name=\"organization_id\"\r\n\r\no1\r\n"
                       "--XyZ\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n573001234567\r\n"
                       "--XyZ\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nimage\r\n"
                       "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\nContent-Type: image/png\r\n\r\n" +
                       kPng + "\r\n--XyZ--\r\n";
    api::Command cmd;
    std::string file;
    api::Response err;
    ASSERT_TRUE(parse("multipart/form-data; boundary=XyZ", body, cmd, file, err)) << err.body;
    EXPECT_EQ(file, kPng);
    EXPECT_EQ(cmd.media_type, "image");
    EXPECT_EQ(cmd.mimetype, "image/png");
    EXPECT_EQ(cmd.filename, "p.png");
    // Broken bodies: no closing boundary, a part twice, no file.
    EXPECT_FALSE(parse("multipart/form-data; boundary=XyZ", body.substr(0, body.size() - 9), cmd, file, err));
    EXPECT_NE(err.body.find("invalid_multipart"), std::string::npos);
    std::string twice = "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n2\r\n--XyZ--\r\n";
    EXPECT_FALSE(parse("multipart/form-data; boundary=XyZ", twice, cmd, file, err));
    std::string nofile = "--XyZ\r\nContent-Disposition: form-data; name=\"organization_id\"\r\n\r\no1\r\n--XyZ--\r\n";
    EXPECT_FALSE(parse("multipart/form-data; boundary=XyZ", nofile, cmd, file, err));
}

TEST(SendMedia, CommandJsonAndHash) {
    api::Command cmd;
    cmd.type = api::Command::SendMedia;
    cmd.org = "o1";
    cmd.phone = "573001234567";
    cmd.media_type = "document";
    cmd.filename = "a.pdf";
    cmd.mimetype = "application/pdf";
    cmd.spool = "0123456789abcdef0123456789abcdef";
    cmd.media_size = 42;
    cmd.media_sha256 = std::string(64, 'a');
    cmd.message = "caption";
    api::Command back;
    ASSERT_TRUE(api::command_from_json(api::command_to_json(cmd), back));
    EXPECT_EQ(back.type, api::Command::SendMedia);
    EXPECT_EQ(back.spool, cmd.spool);
    EXPECT_EQ(back.media_size, 42u);
    EXPECT_EQ(back.filename, "a.pdf");
    EXPECT_EQ(api::send_body_hash(back), api::send_body_hash(cmd));
    api::Command other = cmd;
    other.media_sha256 = std::string(64, 'b');
    EXPECT_NE(api::send_body_hash(other), api::send_body_hash(cmd));  // another file, another request
    cmd.spool = "../../etc/passwd";
    EXPECT_FALSE(api::command_from_json(api::command_to_json(cmd), back));  // only our own spool names
    EXPECT_FALSE(api::valid_spool_name("0123456789ABCDEF0123456789abcdef"));
}

TEST(SendMedia, Routes) {
    EXPECT_EQ(api::match("POST", "/api/send-media").id, api::RouteId::SendMedia);
    api::Route r = api::match("GET", "/api/messages/o1/3EB0ABC/media");
    EXPECT_EQ(r.id, api::RouteId::MessageMedia);
    EXPECT_EQ(r.org, "o1");
    EXPECT_EQ(r.message_id, "3EB0ABC");
    EXPECT_FALSE(api::match("POST", "/api/messages/o1/3EB0ABC/media").method_ok);
}

}  // namespace
