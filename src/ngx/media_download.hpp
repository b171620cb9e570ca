// One received document or image, fetched by the helper (issue 13; whatsmeow download.go downloadAndDecrypt):
// GET https://<media_conn host><direct_path>&hash=…&mms-type=…&__wa-mms= through WaHttpClient (verified against
// whatsapp_ssl_trusted_certificate), decrypted as it arrives (src/core/media Decryptor: bounded buffers) into
// <state_dir>/media/<org>/<sha256(id)>.part, kept only when fileEncSha256, the mac and fileSha256 all match, then
// renamed; "<name>.json" beside it says mimetype, filename and size for GET /api/messages/:org/:id/media.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "http_client.hpp"
#include "wa/media/crypto.hpp"
#include "wa/session.hpp"

// The file name of a message's media in <state_dir>/media/<org>/ (hex SHA-256 of the message id).
std::string wa_media_name(const std::string& message_id);

class WaMediaDownload {
public:
    WaMediaDownload(wa_main_conf_t* conf, ngx_log_t* log, std::string org, std::shared_ptr<const wa::Action::DownloadSpec> spec);
    ~WaMediaDownload();
    WaMediaDownload(const WaMediaDownload&) = delete;
    WaMediaDownload& operator=(const WaMediaDownload&) = delete;
    void start();
    bool finished() const { return finished_; }
    std::function<void()> on_finished;  // called once at the end (the owner frees it later, never inside)

private:
    void done(bool ok, const std::string& why);
    void on_body(std::string_view chunk);
    void on_response(int status, const std::string& error);

    wa_main_conf_t* conf_;
    ngx_log_t* log_;
    std::string org_;
    std::shared_ptr<const wa::Action::DownloadSpec> spec_;
    std::string dir_, part_;
    int fd_ = -1;
    bool finished_ = false, write_failed_ = false;
    wa::media::Decryptor dec_;
    std::unique_ptr<WaHttpClient> http_;
};
