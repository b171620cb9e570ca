// Sending a document or an image (POST /api/send-media, issue 13). Follows whatsmeow:
//   mediaconn.go queryMediaConn: <iq type="set" xmlns="w:m" to="s.whatsapp.net"><media_conn/></iq> →
//     <media_conn auth ttl auth_ttl max_buckets><host hostname/>…, cached for ttl seconds;
//   upload.go Upload: a random 32-byte media key, encrypt (the helper does it while streaming the spool file,
//     src/ngx/media_upload.cpp), POST https://<host>/mms/<type>/<token>?auth=…&token=…;
//   send.go: a DocumentMessage / ImageMessage with url, directPath, mediaKey, fileSha256, fileEncSha256,
//     fileLength, mimetype, fileName, caption, mediaKeyTimestamp, in <message type="media">, <enc mediatype=…>.
// The job then goes through the text path (usync, prekeys, one encryption per device, the server's ack).
#include "ctx.hpp"
#include "wa/crypto/keys.hpp"
#include "wa/media/crypto.hpp"
#include "wa/signal/plaintext.hpp"

namespace wa {

std::string Session::media_record_type(uint8_t type) {
    return static_cast<media::Type>(type) == media::Type::Image ? "image" : "document";
}

std::string_view Session::media_enc_type(uint8_t type) { return media::enc_mediatype(static_cast<media::Type>(type)); }

void Session::start_media_job(uint64_t now_ms, SendJob& job, Actions& out) {
    if (!media_conn_.host.empty() && media_conn_.expires_ms > now_ms) return emit_upload(job, out);
    if (std::find(media_conn_.waiting.begin(), media_conn_.waiting.end(), job.id) == media_conn_.waiting.end())
        media_conn_.waiting.push_back(job.id);
    if (!media_conn_.asking.empty() && ctx_->iqs.count(media_conn_.asking)) return;  // one iq in flight
    Node iq("iq", {{"to", "s.whatsapp.net"}, {"type", "set"}, {"xmlns", "w:m"}}, {Node("media_conn")});
    media_conn_.asking = ctx_->send_iq(std::move(iq), IqKind::MediaConn, now_ms, out);
}

void Session::emit_upload(SendJob& job, Actions& out) {
    job.media_key = crypto::random_string(media::kMediaKeyLen);
    if (job.media_key.size() != media::kMediaKeyLen)
        return fail_job(job.id, 500, "internal_error", "no random bytes for the media key", 0, out);
    auto spec = std::make_shared<Action::UploadSpec>();
    spec->job_id = job.id;
    spec->spool = job.media.spool;
    spec->host = media_conn_.host;
    spec->auth = media_conn_.auth;
    spec->mms_type = std::string(media::mms_type(static_cast<media::Type>(job.media.type)));
    spec->media_key = job.media_key;
    spec->media_type = job.media.type;
    spec->size = job.media.size;
    job.media_stage = SendJob::Uploading;
    Action a{Action::Upload};
    a.upload = std::move(spec);
    out.push_back(std::move(a));
}

// A received document or image (whatsmeow download.go Download → downloadAndDecrypt): fetched by direct path from
// a media_conn host, checked (fileEncSha256, mac, fileSha256) and stored by the helper (media_download.cpp).
void Session::queue_download(uint64_t now_ms, const std::string& id, const waproto::Message& m, Actions& out) {
    auto d = std::make_shared<Action::DownloadSpec>();
    d->message_id = id;
    if (m.has_documentmessage()) {
        const auto& x = m.documentmessage();
        d->direct_path = x.directpath();
        d->media_key = x.mediakey();
        d->file_enc_sha256 = x.fileencsha256();
        d->file_sha256 = x.filesha256();
        d->file_length = x.filelength();
        d->media_type = static_cast<uint8_t>(media::Type::Document);
        d->mimetype = x.mimetype();
        d->filename = x.filename();
    } else if (m.has_imagemessage()) {
        const auto& x = m.imagemessage();
        d->direct_path = x.directpath();
        d->media_key = x.mediakey();
        d->file_enc_sha256 = x.fileencsha256();
        d->file_sha256 = x.filesha256();
        d->file_length = x.filelength();
        d->media_type = static_cast<uint8_t>(media::Type::Image);
        d->mimetype = x.mimetype();
    } else {
        return;
    }
    // Only what can be verified end to end, by a path on the media host (no scheme, host or "..").
    if (d->media_key.size() != media::kMediaKeyLen || d->file_enc_sha256.size() != 32 || d->file_sha256.size() != 32 ||
        d->direct_path.empty() || d->direct_path[0] != '/' || d->direct_path.size() > 2048 ||
        d->direct_path.find("..") != std::string::npos || d->direct_path.find_first_of(" \r\n\t#") != std::string::npos)
        return;
    if (d->mimetype.size() > 127) d->mimetype.clear();
    if (d->filename.size() > 255) d->filename.resize(255);
    if (!media_conn_.host.empty() && media_conn_.expires_ms > now_ms) {
        d->host = media_conn_.host;
        Action a{Action::Download};
        a.download = std::move(d);
        out.push_back(std::move(a));
        return;
    }
    if (media_conn_.downloads.size() >= 1000) return;  // bounded: the rest stay unfetched
    media_conn_.downloads.push_back(std::move(d));
    if (!media_conn_.asking.empty() && ctx_->iqs.count(media_conn_.asking)) return;
    Node iq("iq", {{"to", "s.whatsapp.net"}, {"type", "set"}, {"xmlns", "w:m"}}, {Node("media_conn")});
    media_conn_.asking = ctx_->send_iq(std::move(iq), IqKind::MediaConn, now_ms, out);
}

void Session::fail_media_waiting(const std::string& code, const std::string& why, Actions& out) {
    media_conn_.downloads.clear();
    std::vector<std::string> waiting;
    waiting.swap(media_conn_.waiting);
    media_conn_.asking.clear();
    for (const std::string& id : waiting) {
        auto it = jobs_.find(id);
        if (it != jobs_.end() && it->second->media_stage == SendJob::NeedUpload) fail_job(id, 502, code, why, 0, out);
    }
}

void Session::on_media_conn(uint64_t now_ms, const Node& iq, bool ok, Actions& out) {
    media_conn_.asking.clear();
    const Node* mc = ok ? iq.child("media_conn") : nullptr;
    std::string host;
    uint32_t ttl = 0;
    if (mc) {
        // whatsmeow mediaconn.go takes every <host hostname>; Baileys uploads to them in turn. The first is ours.
        for (const Node& h : mc->children)
            if (h.tag == "host" && !h.attr_or("hostname").empty()) {
                host = std::string(h.attr_or("hostname"));
                break;
            }
        parse_jid_number(mc->attr_or("ttl"), 7 * 24 * 3600, ttl);
    }
    // A host name or host:port of safe characters only: it goes into a URL and the TLS name check.
    bool host_ok = !host.empty() && host.size() <= 253;
    for (char c : host)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':')) host_ok = false;
    std::string auth = mc ? std::string(mc->attr_or("auth")) : std::string();
    if (!mc || !host_ok || auth.empty() || auth.size() > 1024)
        return fail_media_waiting("media_conn_failed", "WhatsApp did not give a media upload host (media_conn)", out);
    media_conn_.host = host;
    media_conn_.auth = auth;
    // Cached for its ttl (at least a minute is asked of the server; a ttl of 0 means ask every time).
    media_conn_.expires_ms = now_ms + static_cast<uint64_t>(ttl) * 1000;
    std::vector<std::string> waiting;
    waiting.swap(media_conn_.waiting);
    for (const std::string& id : waiting) {
        auto it = jobs_.find(id);
        if (it != jobs_.end() && it->second->media_stage == SendJob::NeedUpload) emit_upload(*it->second, out);
    }
    std::vector<std::shared_ptr<Action::DownloadSpec>> downloads;
    downloads.swap(media_conn_.downloads);
    for (auto& d : downloads) {
        d->host = host;
        Action a{Action::Download};
        a.download = std::move(d);
        out.push_back(std::move(a));
    }
}

Actions Session::on_upload_done(uint64_t now_ms, int64_t unix_s, const std::string& job_id, const UploadResult& r) {
    Actions out;
    auto it = jobs_.find(job_id);
    if (it == jobs_.end() || it->second->media_stage != SendJob::Uploading) return finish(std::move(out), now_ms);
    SendJob& job = *it->second;
    if (!r.ok) {
        // An auth refused by the host: the cached media_conn is useless (whatsmeow asks again after a failure).
        media_conn_.expires_ms = 0;
        fail_job(job_id, 502, r.code.empty() ? "upload_failed" : r.code, r.error, 0, out);
        return finish(std::move(out), now_ms);
    }
    waproto::Message msg;
    const std::string& f = job.media.filename;
    if (static_cast<media::Type>(job.media.type) == media::Type::Image) {
        auto* im = msg.mutable_imagemessage();
        im->set_url(r.url);
        im->set_mimetype(job.media.mimetype);
        if (!job.text.empty()) im->set_caption(job.text);
        im->set_filesha256(r.file_sha256);
        im->set_filelength(r.file_length);
        im->set_mediakey(job.media_key);
        im->set_fileencsha256(r.file_enc_sha256);
        im->set_directpath(r.direct_path);
        im->set_mediakeytimestamp(unix_s);
        if (r.width && r.height) {
            im->set_width(r.width);
            im->set_height(r.height);
        }
        if (!r.jpeg_thumbnail.empty()) im->set_jpegthumbnail(r.jpeg_thumbnail);
    } else {
        auto* d = msg.mutable_documentmessage();
        d->set_url(r.url);
        d->set_mimetype(job.media.mimetype);
        d->set_title(f);
        d->set_filesha256(r.file_sha256);
        d->set_filelength(r.file_length);
        d->set_mediakey(job.media_key);
        d->set_filename(f);
        d->set_fileencsha256(r.file_enc_sha256);
        d->set_directpath(r.direct_path);
        d->set_mediakeytimestamp(unix_s);
        if (r.page_count) d->set_pagecount(r.page_count);
        if (!job.text.empty()) d->set_caption(job.text);
    }
    if (!msg.SerializeToString(&job.media_message))
        fail_job(job_id, 500, "internal_error", "the media message could not be encoded", 0, out);
    else {
        // The message (with its media key) is kept with the record: a retry receipt resends it (receive.cpp).
        store::MessageRecord m;
        bool found = false;
        std::string err;
        if (store_ && store_->load_message(org_, job_id, m, found, &err) && found && m.direction == "out") {
            m.raw = job.media_message;
            store_->put_message(org_, m, &err);
        }
        job.media_stage = SendJob::Uploaded;
        job.stage = SendJob::Waiting;
        if (phase_ == Phase::Online) start_job(now_ms, job, out);
    }
    return finish(std::move(out), now_ms);
}

// A retried send-media whose first attempt a helper restart interrupted: the record (pending, same id) stays, the
// file is the retry's.
Actions Session::resume_media(uint64_t now_ms, int64_t unix_s, const SendRequest& req, uint64_t command_id,
                              const store::MessageRecord& m, Actions out) {
    auto job = std::make_unique<SendJob>();
    job->id = m.id;
    job->text = req.text;
    job->phone = req.phone;
    if (!Jid::parse(m.chat_jid, job->dest)) {
        complete(command_id, 500, R"({"success":false,"error":"stored message unreadable","code":"internal_error"})", out);
        return finish(std::move(out), now_ms);
    }
    job->commands.push_back(command_id);
    job->created_ms = now_ms;
    job->unix_s = unix_s;
    job->media = req.media;
    job->media_stage = SendJob::NeedUpload;
    Action partial{Action::Partial, 0, 0, job->id};
    partial.command_id = command_id;
    out.push_back(std::move(partial));
    SendJob& j = *job;
    jobs_[job->id] = std::move(job);
    if (phase_ == Phase::Online) start_job(now_ms, j, out);
    return finish(std::move(out), now_ms);
}

}  // namespace wa
