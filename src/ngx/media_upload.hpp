// One media upload in the helper (send-media, issue 13): the spool file is encrypted twice with the same key
// in 64 KiB chunks (src/core/media: AES-256-CBC, 10-byte HMAC) — once to learn fileEncSha256, which names the
// upload (whatsmeow upload.go: token = base64url(fileEncSha256)), once while streaming it to
// POST https://<host>/mms/<type>/<token>?auth=…&token=… through WaHttpClient (verified against
// whatsapp_ssl_trusted_certificate). Neither pass holds more than one chunk: a 16 MB file never sits in memory.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "http_client.hpp"
#include "wa/media/crypto.hpp"
#include "wa/media/pdf.hpp"
#include "wa/media/thumbnail.hpp"
#include "wa/session.hpp"

class WaMediaUpload {
public:
    using Done = std::function<void(const wa::UploadResult&)>;
    WaMediaUpload(wa_main_conf_t* conf, ngx_log_t* log, std::shared_ptr<const wa::Action::UploadSpec> spec, Done done);
    ~WaMediaUpload();
    WaMediaUpload(const WaMediaUpload&) = delete;
    WaMediaUpload& operator=(const WaMediaUpload&) = delete;
    // Calls `done` exactly once, possibly from inside start() (a missing file).
    void start();
    bool finished() const { return finished_; }
    const std::string& org() const { return org_; }
    std::string org_;

private:
    static void pass1_handler(ngx_event_t* ev);
    void pass1_step();
    void start_http();
    void fail(const std::string& code, const std::string& why);
    void on_response(int status, const std::string& error);
    bool next_chunk(std::string& out, bool& eof, std::string& why);

    wa_main_conf_t* conf_;
    ngx_log_t* log_;
    std::shared_ptr<const wa::Action::UploadSpec> spec_;
    Done done_;
    int fd_ = -1;
    uint64_t read_ = 0;
    bool finished_ = false;
    std::string enc_sha256_, file_sha256_;
    wa::media::ImageInfo image_;  // images: dimensions and the JPEG thumbnail
    bool count_pages_ = false;    // a PDF document: pass 1 feeds pages_
    wa::media::PdfPageCounter pages_;
    wa::media::Encryptor first_, enc_;
    ngx_event_t pass1_ev_;  // the first pass runs 1 MiB per event-loop turn (other organizations go on meanwhile)
    std::unique_ptr<WaHttpClient> http_;
};
