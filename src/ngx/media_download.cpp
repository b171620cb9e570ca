// See media_download.hpp.
#include "media_download.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "wa/codec/base64.hpp"
#include "wa/codec/hex.hpp"

std::string wa_media_name(const std::string& message_id) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(message_id.data(), message_id.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
    return wa::hex_lower(std::string_view(reinterpret_cast<const char*>(md), len));
}

namespace {


std::string json_str(std::string_view s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += static_cast<char>(c);
        else if (c < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); o += b; }
        else o += static_cast<char>(c);
    }
    return o + "\"";
}

}  // namespace

WaMediaDownload::WaMediaDownload(wa_main_conf_t* conf, ngx_log_t* log, std::string org,
                                 std::shared_ptr<const wa::Action::DownloadSpec> spec)
    : conf_(conf), log_(log), org_(std::move(org)), spec_(std::move(spec)) {}

WaMediaDownload::~WaMediaDownload() {
    if (fd_ >= 0) close(fd_);
    if (!part_.empty() && !finished_) unlink(part_.c_str());
}

void WaMediaDownload::done(bool ok, const std::string& why) {
    if (finished_) return;
    finished_ = true;
    if (fd_ >= 0) close(fd_), fd_ = -1;
    if (!ok) {
        if (!part_.empty()) unlink(part_.c_str());
        part_.clear();
        ngx_log_error(NGX_LOG_WARN, log_, 0, "whatsapp org=%s: media of message %s not stored: %s", org_.c_str(),
                      spec_->message_id.c_str(), why.c_str());
    }
    if (on_finished) on_finished();
}

void WaMediaDownload::start() {
    if (spec_->file_length > conf_->max_media)
        return done(false, "larger than whatsapp_max_media_size (" + std::to_string(spec_->file_length) + " bytes)");
    std::string name = wa_media_name(spec_->message_id);
    std::string root = wa_str(conf_->state_dir) + "/media";
    dir_ = root + "/" + org_;
    if ((mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) || (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST))
        return done(false, "cannot create " + dir_);
    if (name.empty()) return done(false, "no name");
    part_ = dir_ + "/" + name + ".part";
    unlink(part_.c_str());
    fd_ = open(part_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) return done(false, "cannot create " + part_);
    auto type = static_cast<wa::media::Type>(spec_->media_type);
    if (!dec_.init(spec_->media_key, type)) return done(false, "bad media key");
    std::string path = spec_->direct_path;
    path += path.find('?') == std::string::npos ? '?' : '&';
    std::string hash = wa::base64_encode(spec_->file_enc_sha256);
    for (char& c : hash) c = c == '+' ? '-' : c == '/' ? '_' : c;
    std::string esc;
    for (char c : hash) esc += c == '=' ? std::string("%3D") : std::string(1, c);
    path += "hash=" + esc + "&mms-type=" + std::string(wa::media::mms_type(type)) + "&__wa-mms=";
    wa::http::Url url;
    std::string why;
    if (!wa::http::parse_url("https://" + spec_->host + path, url, &why)) return done(false, "bad direct path: " + why);
    std::string req_bytes = wa::http::format_request("GET", url, {{"Origin", "https://web.whatsapp.com"}}, "", "", false);
    if (req_bytes.empty()) return done(false, "bad direct path");
    WaHttpClient::Request req;
    req.url = url;
    req.ssl = conf_->ssl;
    req.resolver = conf_->resolver;
    req.resolver_timeout = conf_->resolver_timeout;
    req.connect_timeout = conf_->connect_timeout;
    req.timeout = 120000;
    req.bytes = std::move(req_bytes);
    req.max_body = static_cast<size_t>(wa::media::enc_length(spec_->file_length));
    req.body_sink = [this](std::string_view b) { on_body(b); };
    http_.reset(new WaHttpClient(log_, [this](int status, const std::string& error) { on_response(status, error); }));
    http_->start(std::move(req));
}

void WaMediaDownload::on_body(std::string_view chunk) {
    if (finished_ || write_failed_) return;
    std::string plain;
    if (!dec_.update(chunk, plain) || !wa_write_all(fd_, plain)) write_failed_ = true;
    // More plaintext than the message declared: stop keeping it (the size check at the end fails).
    if (dec_.plain_length() > spec_->file_length + 16) write_failed_ = true;
}

void WaMediaDownload::on_response(int status, const std::string& error) {
    if (finished_) return;
    if (status != 200) return done(false, status ? "the media host answered HTTP " + std::to_string(status) : error);
    if (write_failed_) return done(false, "cannot write " + part_);
    std::string tail;
    if (!dec_.final(tail, spec_->file_enc_sha256))
        return done(false, dec_.error() == wa::media::Decryptor::Error::BadEncSha256 ? "fileEncSha256 mismatch"
                           : dec_.error() == wa::media::Decryptor::Error::BadMac ? "media mac mismatch"
                                                                                 : "cannot decrypt");
    if (!wa_write_all(fd_, tail)) return done(false, "cannot write " + part_);
    if (dec_.file_sha256() != spec_->file_sha256) return done(false, "fileSha256 mismatch");
    if (dec_.plain_length() != spec_->file_length) return done(false, "fileLength mismatch");
    if (fsync(fd_) != 0 || close(fd_) != 0) {
        fd_ = -1;
        return done(false, "cannot write " + part_);
    }
    fd_ = -1;
    std::string name = wa_media_name(spec_->message_id), base = dir_ + "/" + name;
    std::string mime = spec_->mimetype.empty() ? "application/octet-stream" : spec_->mimetype;
    std::string meta = "{\"mimetype\":" + json_str(mime) + ",\"filename\":" + json_str(spec_->filename) +
                       ",\"size\":" + std::to_string(dec_.plain_length()) + "}\n";
    std::string meta_part = base + ".json.part";
    int mfd = open(meta_part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    bool ok = mfd >= 0 && wa_write_all(mfd, meta);
    if (mfd >= 0 && close(mfd) != 0) ok = false;
    if (!ok || rename(meta_part.c_str(), (base + ".json").c_str()) != 0 || rename(part_.c_str(), base.c_str()) != 0) {
        unlink(meta_part.c_str());
        return done(false, "cannot store the file");
    }
    part_.clear();
    ngx_log_error(NGX_LOG_INFO, log_, 0, "whatsapp org=%s: media of message %s stored (%uL bytes)", org_.c_str(),
                  spec_->message_id.c_str(), dec_.plain_length());
    done(true, "");
}
