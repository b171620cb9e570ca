// See media_upload.hpp. whatsmeow upload.go (Upload, rawUpload) and mediaconn.go; Baileys' answers to the same
// requests are in t/wa-sim (NOTES.md §9).
#include "media_upload.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "wa/codec/base64.hpp"

namespace {

constexpr size_t kChunk = 64 * 1024;

std::string spool_path(wa_main_conf_t* conf, const std::string& name) {
    return wa_str(conf->state_dir) + "/" WA_SPOOL_DIR "/" + name;
}

// base64url with padding, as whatsmeow (base64.URLEncoding); the simulator and WhatsApp accept it.
std::string base64url(std::string_view in) {
    std::string s = wa::base64_encode(in);
    for (char& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
    return s;
}

std::string query_escape(std::string_view in) {
    static const char* hexd = "0123456789ABCDEF";
    std::string o;
    for (unsigned char c : in) {
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') o += static_cast<char>(c);
        else o += '%', o += hexd[c >> 4], o += hexd[c & 15];
    }
    return o;
}

ssize_t read_full(int fd, char* buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += static_cast<size_t>(n);
    }
    return static_cast<ssize_t>(got);
}

}  // namespace

WaMediaUpload::WaMediaUpload(wa_main_conf_t* conf, ngx_log_t* log, std::shared_ptr<const wa::Action::UploadSpec> spec,
                             Done done)
    : conf_(conf), log_(log), spec_(std::move(spec)), done_(std::move(done)) {
    ngx_memzero(&pass1_ev_, sizeof(pass1_ev_));
}

WaMediaUpload::~WaMediaUpload() {
    if (pass1_ev_.posted) {  // (the macro is several statements: braces needed)
        ngx_delete_posted_event(&pass1_ev_);
    }
    if (fd_ >= 0) close(fd_);
}

void WaMediaUpload::fail(const std::string& code, const std::string& why) {
    if (finished_) return;
    finished_ = true;
    if (fd_ >= 0) close(fd_), fd_ = -1;
    wa::UploadResult r;
    r.code = code;
    r.error = why;
    Done d = std::move(done_);
    if (d) d(r);
}

void WaMediaUpload::start() {
    const auto type = static_cast<wa::media::Type>(spec_->media_type);
    fd_ = open(spool_path(conf_, spec_->spool).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd_ < 0 || fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode))
        return fail("media_lost", "the spooled file of this send is gone (helper restarted?); send it again");
    if (static_cast<uint64_t>(st.st_size) != spec_->size) return fail("media_lost", "the spooled file changed size");
    if (type == wa::media::Type::Image) {
        // What a receiving phone shows before it downloads: the dimensions and a 32 px JPEG thumbnail (Baileys
        // extractImageThumb), made from JPEGs and PNGs as they are read. A WebP goes without one.
        char head[32] = {0};
        ssize_t n = pread(fd_, head, sizeof head, 0);
        wa::media::Magic magic = n > 0 ? wa::media::sniff(std::string_view(head, static_cast<size_t>(n))) : wa::media::Magic::Unknown;
        std::string why, path = spool_path(conf_, spec_->spool);
        bool made = magic == wa::media::Magic::Jpeg ? wa::media::jpeg_thumbnail_file(path, 32, image_, &why)
                    : magic == wa::media::Magic::Png ? wa::media::png_thumbnail_file(path, 32, image_, &why)
                                                     : true;
        if (!made) {
            ngx_log_error(NGX_LOG_INFO, log_, 0, "whatsapp: no thumbnail for %s: %s", spec_->job_id.c_str(), why.c_str());
            uint32_t w = image_.width, h = image_.height;  // the header's size still helps the receiver
            image_ = wa::media::ImageInfo{};
            if (w && h && w <= 65535 && h <= 65535) {
                image_.width = w;
                image_.height = h;
            }
        }
    }
    // A PDF's page count is read off pass 1's chunks.
    if (type == wa::media::Type::Document) {
        char head[8] = {0};
        ssize_t n = pread(fd_, head, sizeof head, 0);
        count_pages_ = n > 0 && wa::media::sniff(std::string_view(head, static_cast<size_t>(n))) == wa::media::Magic::Pdf;
    }
    // Pass 1: fileEncSha256 names the upload, so it is needed before the first byte goes out.
    if (!first_.init(spec_->media_key, type)) return fail("internal_error", "media encryption failed");
    ngx_memzero(&pass1_ev_, sizeof(pass1_ev_));
    pass1_ev_.handler = pass1_handler;
    pass1_ev_.data = this;
    pass1_ev_.log = log_;
    pass1_step();
}

void WaMediaUpload::pass1_handler(ngx_event_t* ev) { static_cast<WaMediaUpload*>(ev->data)->pass1_step(); }

void WaMediaUpload::pass1_step() {
    if (finished_) return;
    std::string buf(kChunk, '\0'), sink;
    for (int i = 0; i < 16; i++) {
        ssize_t n = read_full(fd_, &buf[0], buf.size());
        if (n < 0) return fail("media_lost", "the spooled file cannot be read");
        if (n == 0) {
            sink.clear();
            if (!first_.final(sink) || first_.plain_length() != spec_->size)
                return fail("internal_error", "media encryption failed");
            enc_sha256_ = first_.file_enc_sha256();
            file_sha256_ = first_.file_sha256();
            return start_http();
        }
        sink.clear();
        if (!first_.update(std::string_view(buf.data(), static_cast<size_t>(n)), sink))
            return fail("internal_error", "media encryption failed");
        if (count_pages_) pages_.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
    }
    ngx_post_event(&pass1_ev_, &ngx_posted_next_events);  // after the next epoll round
}

void WaMediaUpload::start_http() {
    const auto type = static_cast<wa::media::Type>(spec_->media_type);
    // Pass 2 streams from the start again.
    if (lseek(fd_, 0, SEEK_SET) != 0 || !enc_.init(spec_->media_key, type)) return fail("media_lost", "the spooled file cannot be read");
    std::string token = base64url(enc_sha256_);
    wa::http::Url url;
    std::string why;
    std::string target = "/mms/" + spec_->mms_type + "/" + token + "?auth=" + query_escape(spec_->auth) +
                         "&token=" + query_escape(token);
    if (!wa::http::parse_url("https://" + spec_->host + target, url, &why))
        return fail("upload_failed", "the media host from media_conn is not usable: " + why);
    // whatsmeow rawUpload: Origin and Referer of web.whatsapp.com; the body is ciphertext || mac.
    std::string head = "POST " + url.target + " HTTP/1.1\r\nHost: " + url.host_header +
                       "\r\nUser-Agent: ngx_whatsapp\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                       std::to_string(wa::media::enc_length(spec_->size)) +
                       "\r\nOrigin: https://web.whatsapp.com\r\nReferer: https://web.whatsapp.com/\r\nConnection: close\r\n\r\n";
    WaHttpClient::Request req;
    req.url = url;
    req.ssl = conf_->ssl;
    req.resolver = conf_->resolver;
    req.resolver_timeout = conf_->resolver_timeout;
    req.connect_timeout = conf_->connect_timeout;
    // The upload must end (or fail with its own code) before the request's whatsapp_send_timeout answers 504.
    req.timeout = conf_->send_timeout > 4000 ? conf_->send_timeout * 3 / 4 : conf_->send_timeout;
    req.bytes = std::move(head);
    req.max_body = 65536;
    req.keep_body = 65536;
    req.body_source = [this](std::string& out, bool& eof, std::string& w) { return next_chunk(out, eof, w); };
    http_.reset(new WaHttpClient(log_, [this](int status, const std::string& error) { on_response(status, error); }));
    http_->start(std::move(req));
}

bool WaMediaUpload::next_chunk(std::string& out, bool& eof, std::string& why) {
    std::string buf(kChunk, '\0');
    ssize_t n = read_full(fd_, &buf[0], buf.size());
    if (n < 0) return why = "the spooled file cannot be read", false;
    read_ += static_cast<uint64_t>(n);
    if (n > 0 && !enc_.update(std::string_view(buf.data(), static_cast<size_t>(n)), out))
        return why = "media encryption failed", false;
    if (static_cast<size_t>(n) < buf.size()) {
        if (!enc_.final(out)) return why = "media encryption failed", false;
        if (read_ != spec_->size || enc_.file_enc_sha256() != enc_sha256_)
            return why = "the spooled file changed during the upload", false;
        eof = true;
    }
    return true;
}

void WaMediaUpload::on_response(int status, const std::string& error) {
    if (finished_) return;
    if (status == 0) {
        bool timeout = error.find("timed out") != std::string::npos;
        return fail(timeout ? "upload_timeout" : "upload_failed",
                    (timeout ? "the media host did not answer in time: " : "the media upload failed: ") + error);
    }
    if (status != 200)
        return fail("upload_refused", "the media host refused the upload (HTTP " + std::to_string(status) + ")");
    const std::string& body = http_->response().body_head();
    json_error_t je;
    json_t* j = json_loadb(body.data(), body.size(), 0, &je);
    const char* u = j ? json_string_value(json_object_get(j, "url")) : nullptr;
    const char* dp = j ? json_string_value(json_object_get(j, "direct_path")) : nullptr;
    wa::UploadResult r;
    if (u && dp && *dp == '/' && strlen(u) < 4096 && strlen(dp) < 4096) {
        r.ok = true;
        r.url = u;
        r.direct_path = dp;
    }
    if (j) json_decref(j);
    if (!r.ok) return fail("upload_bad_response", "the media host's answer has no url and direct_path");
    r.file_sha256 = file_sha256_;
    r.file_enc_sha256 = enc_sha256_;
    r.file_length = spec_->size;
    r.width = image_.width;
    r.height = image_.height;
    r.jpeg_thumbnail = std::move(image_.jpeg_thumbnail);
    r.page_count = pages_.pages();
    finished_ = true;
    if (fd_ >= 0) close(fd_), fd_ = -1;
    Done d = std::move(done_);
    if (d) d(r);
}
