// POST /api/send-media parsing (wa::api::parse_send_media): JSON with base64 and multipart/form-data, the size
// limit, magic bytes, the fields, the command's JSON through shared memory, and the routes.
#include <gtest/gtest.h>

#include <jansson.h>

#include <random>
#include <string>

#include "wa/api/api.hpp"
#include "wa/codec/base64.hpp"

namespace {

namespace api = wa::api;

const std::string kPdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\nbody";
const std::string kPng("\x89PNG\r\n\x1A\n\0\0\0\rIHDR....", 20);

bool parse(const std::string& ct, const std::string& body, api::Command& cmd, std::string& file, api::Response& err,
           uint64_t max = 1 << 20) {
    file.clear();
    api::FileSink sink = [&file](std::string_view bytes) {
        file.append(bytes);
        return true;
    };
    return api::parse_send_media(ct, body, "CO", "", max, cmd, sink, err);
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

// The error code of a refusal ("" when accepted).
std::string code_of(bool ok, const api::Response& err) {
    if (ok) return "";
    size_t at = err.body.find("\"code\":\"");
    return at == std::string::npos ? "?" : err.body.substr(at + 8, err.body.find('"', at + 8) - at - 8);
}

// What the body means by the letter: jansson parses all of it, data decoded whole (the way before the file
// was decoded in place), with the same checks in the same order.
std::string reference(const std::string& body, std::string& file) {
    file.clear();
    json_error_t je;
    json_t* root = json_loadb(body.data(), body.size(), JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root || !json_is_object(root)) {
        if (root) json_decref(root);
        return "invalid_json";
    }
    json_t* data = json_object_get(root, "data");
    std::string code;
    if (!data || json_is_null(data)) code = "missing_field";
    else if (!json_is_string(data)) code = "invalid_media";
    else if (!wa::base64_decode(std::string_view(json_string_value(data), json_string_length(data)), file)) code = "invalid_media";
    else if (file.empty()) code = "invalid_media";
    json_decref(root);
    return code;
}

TEST(SendMedia, DecodedInPlaceAsJanssonWouldAcrossPieces) {
    // 200 KiB: four 64 KiB pieces of base64, the last with padding; '/' escaped as PHP's json_encode does.
    std::string big;
    for (int i = 0; i < 200 * 1024 + 1; i++) big += static_cast<char>((i * 131 + i / 7) & 0xff);
    big.replace(0, kPdf.size(), kPdf);
    std::string b64 = wa::base64_encode(big), escaped;
    for (char c : b64) escaped += c == '/' ? std::string("\\/") : std::string(1, c);
    ASSERT_NE(escaped.size(), b64.size());
    api::Command cmd;
    std::string file;
    api::Response err;
    size_t largest = 0, calls = 0;
    api::FileSink sink = [&](std::string_view bytes) {
        largest = std::max(largest, bytes.size());
        calls++;
        file.append(bytes);
        return true;
    };
    ASSERT_TRUE(api::parse_send_media("application/json", json_body(escaped), "CO", "", 1 << 20, cmd, sink, err)) << err.body;
    EXPECT_EQ(file, big);
    EXPECT_LE(largest, 49152u);  // pieces, never the whole file
    EXPECT_GE(calls, 4u);
    // The sink refuses (a full disk): 507, not 200.
    api::FileSink full = [](std::string_view) { return false; };
    EXPECT_FALSE(api::parse_send_media("application/json", json_body(b64), "CO", "", 1 << 20, cmd, full, err));
    EXPECT_EQ(err.status, 507);
    EXPECT_EQ(code_of(false, err), "storage_error");
    EXPECT_FALSE(api::parse_send_media("multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; "
        "name=\"organization_id\"\r\n\r\no1\r\n--B\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n3001234567\r\n"
        "--B\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ndocument\r\n--B\r\nContent-Disposition: form-data; "
        "name=\"file\"\r\n\r\n" + kPdf + "\r\n--B--\r\n", "CO", "", 1 << 20, cmd, full, err));
    EXPECT_EQ(err.status, 507);
    // '=' before the last piece is not padding.
    std::string early = b64;
    early[65536 - 1] = '=';
    EXPECT_FALSE(parse("application/json", json_body(early), cmd, file, err));
    EXPECT_EQ(code_of(false, err), "invalid_media");
}

TEST(SendMedia, SameAnswerAsParsingTheWholeBody) {
    // Bodies around the data string that the in-place scan must read as jansson does (or leave to jansson).
    const std::string pdf64 = wa::base64_encode(kPdf + std::string(300, 'x'));
    const std::string head = R"("organization_id":"o1","phone":"3001234567","type":"document","mimetype":"application/pdf")";
    std::vector<std::string> bodies = {
        "{" + head + R"(,"data":")" + pdf64 + "\"}",
        " \n{ " + head + R"( , "data" :  ")" + pdf64 + "\"\t}\n",
        "{" + head + R"(,"x":{"data":"QUFB"},"data":")" + pdf64 + "\"}",          // a nested "data" first
        "{" + head + R"(,"x":"{\"data\":\"QUFB\"}","data":")" + pdf64 + "\"}",   // "data" inside a string
        "{" + head + R"(,"x":[1,{"y":"]}"}],"data":")" + pdf64 + "\"}",
        "{" + head + R"(,"data":")" + pdf64 + R"(","data":"QUFB"})",             // twice: invalid_json
        "{" + head + R"(,"data":"QUFB","data":")" + pdf64 + "\"}",
        "{" + head + R"(,"\u0064ata":")" + pdf64 + "\"}",                           // the key escaped
        "{" + head + R"(,"data":")" + pdf64.substr(0, 8) + R"(\u0041)" + pdf64.substr(9) + "\"}",
        "{" + head + R"(,"data":")" + pdf64.substr(0, 8) + R"(\n)" + pdf64.substr(8) + "\"}",
        "{" + head + R"(,"data":")" + pdf64.substr(0, 8) + "\n" + pdf64.substr(8) + "\"}",   // a raw newline
        "{" + head + R"(,"data":")" + pdf64.substr(0, 8) + R"(\x)" + pdf64.substr(8) + "\"}",
        "{" + head + R"(,"data":")" + pdf64 + "\"",                                 // unterminated object
        "{" + head + R"(,"data":")" + pdf64,                                        // unterminated string
        "{" + head + R"(,"data":")" + pdf64 + "\"} x",
        "{" + head + R"(,"data":")" + pdf64 + "\",}",
        "{" + head + R"(,"data":)" + "12}",
        "{" + head + R"(,"data":null})",
        "{" + head + R"(,"data":""})",
        "{" + head + R"(,"data":"@@@@"})",
        "{" + head + "}",
        "[" + head + "]",
        "{" + head + R"(,"data":")" + pdf64 + "\"}\xff",
        "{" + head + R"(,"data":")" + pdf64.substr(0, 4) + "\xc3\xa9" + pdf64.substr(4) + "\"}",
    };
    std::mt19937 rng(7);
    for (int i = 0; i < 300; i++) {  // random damage to the data string
        std::string d = pdf64;
        int kind = static_cast<int>(rng() % 5);
        size_t at = rng() % d.size();
        if (kind == 0) d[at] = '=';
        else if (kind == 1) d.erase(at, 1);
        else if (kind == 2) d.insert(at, R"(\/)");
        else if (kind == 3) d.insert(at, R"(\")");
        else d[at] = "+/AZaz09"[rng() % 8];
        bodies.push_back("{" + head + R"(,"data":")" + d + "\"}");
    }
    for (const std::string& body : bodies) {
        std::string want_file, got_file;
        std::string want = reference(body, want_file);
        api::Command cmd;
        api::Response err;
        std::string got = code_of(parse("application/json", body, cmd, got_file, err), err);
        if (want.empty() && got == "invalid_media") want = "invalid_media";  // a damaged PDF header: magic check
        EXPECT_EQ(got, want) << body.substr(0, 200);
        if (got.empty()) {
            EXPECT_EQ(got_file, want_file) << body.substr(0, 200);
        }
    }
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
