// Sending a text (whatsmeow send.go SendMessage/sendDM/prepareMessageNode, user.go GetUserDevices):
//   id and "pending" committed first → usync (devices + LID) → prekey bundles for devices without a session →
//   one encryption per device (the recipient's devices get the message, our own other devices the
//   deviceSentMessage copy) → <message to=LID peer_recipient_pn=PN><participants>… → the server's ack.
// LID first, as whatsmeow: a number whose LID is known is addressed by its LID with the phone number in
// peer_recipient_pn, and our own devices by our LID.
#include <openssl/sha.h>

#include "ctx.hpp"
#include "wa/session/usync.hpp"
#include "wa/signal/account.hpp"
#include "wa/signal/plaintext.hpp"

namespace wa {


namespace {

constexpr uint64_t kDeviceCacheMs = 5 * 60 * 1000;  // Baileys keeps device lists 5 min; whatsmeow until notified

std::string json_escape(std::string_view s) {
    std::string o;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') o += '\\', o += static_cast<char>(c);
        else if (c < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); o += b; }
        else o += static_cast<char>(c);
    }
    return o;
}

std::string error_json(const std::string& code, const std::string& why, const std::string& id = {}, int error_code = 0) {
    std::string s = R"({"success":false,"error":")" + json_escape(why) + R"(","code":")" + code + "\"";
    if (!id.empty()) s += R"(,"message_id":")" + json_escape(id) + "\"";
    if (error_code) s += ",\"error_code\":" + std::to_string(error_code);
    return s + "}";
}

std::string sent_json(const std::string& id, const std::string& to, const std::string& status) {
    return R"({"success":true,"message_id":")" + json_escape(id) + R"(","to":")" + json_escape(to) +
           R"(","status":")" + status + "\"}";
}

int64_t now_ms_wall(int64_t unix_s) { return unix_s * 1000; }

}  // namespace

void Session::complete(uint64_t command_id, int http, std::string body, Actions& out) {
    if (!command_id) return;
    Action a{Action::Complete, static_cast<uint16_t>(http), 0, std::move(body)};
    a.command_id = command_id;
    out.push_back(std::move(a));
}

void Session::open_signal() {
    if (signal_ || !store_ || !creds_) return;
    std::string err;
    signal_ = signal::Account::open(*store_, org_, &err);
}

Actions Session::send(uint64_t now_ms, int64_t unix_s, const SendRequest& req, uint64_t command_id) {
    Actions out;
    if (!store_ || !status_.linked || !creds_ || status_.state == State::LoggedOut ||
        status_.state == State::Conflict || !status_.wanted) {
        complete(command_id, 409,
                 error_json("not_connected", "the session of organization " + org_ + " is not connected (status: " +
                                                 state_name(status_.state) + ")"),
                 out);
        return finish(std::move(out), now_ms);
    }
    if (status_.restricted_until > unix_s) {
        Action a{Action::Complete, 429, 0,
                 error_json("account_restricted", "WhatsApp restricts this number from starting new chats until " +
                                                      std::to_string(status_.restricted_until))};
        a.command_id = command_id;
        a.retry_after_s = static_cast<uint32_t>(status_.restricted_until - unix_s);
        out.push_back(std::move(a));
        return finish(std::move(out), now_ms);
    }
    std::string err, hash, existing;
    int64_t created = 0;
    bool found = false;
    if (!req.idempotency_key.empty() &&
        store_->load_idempotency(org_, req.idempotency_key, hash, existing, created, found, &err) && found &&
        created > now_ms_wall(unix_s) - 24LL * 3600 * 1000) {
        if (hash != req.body_hash) {
            complete(command_id, 409, error_json("idempotency_conflict", "this idempotency key was used with another request"), out);
            return finish(std::move(out), now_ms);
        }
        auto it = jobs_.find(existing);
        if (it != jobs_.end()) {  // the first request is still in flight: wait for the same ack
            it->second->commands.push_back(command_id);
            return finish(std::move(out), now_ms);
        }
        store::MessageRecord m;
        bool have = false;
        store_->load_message(org_, existing, m, have, &err);
        // A media send that a helper restart interrupted (its spool file is gone, its record still pending):
        // this retry brings the file again and the send goes on under the same message id.
        if (have && m.status == "pending" && !req.media.spool.empty() && m.type != "text")
            return resume_media(now_ms, unix_s, req, command_id, m, std::move(out));
        if (have && m.status == "failed")
            complete(command_id, 502, error_json("rejected_by_whatsapp", m.error, m.id, m.error_code), out);
        else
            complete(command_id, 200, sent_json(existing, have ? m.recipient_pn : req.phone, have ? m.status : "sent"), out);
        return finish(std::move(out), now_ms);
    }
    auto job = std::make_unique<SendJob>();
    Jid me;
    Jid::parse(creds_->me_jid, me);
    job->id = signal::new_message_id(me.user);
    job->text = req.text;
    job->phone = req.phone;
    if (!req.jid.empty()) Jid::parse(req.jid, job->dest);
    else job->dest = Jid{req.phone, std::string(jid_server::kUser)};
    job->dest = job->dest.to_non_ad();
    job->commands.push_back(command_id);
    job->created_ms = now_ms;
    job->unix_s = unix_s;
    if (!req.media.spool.empty()) {
        job->media = req.media;
        job->media_stage = SendJob::NeedUpload;
    }
    store::MessageRecord m;
    m.id = job->id;
    m.direction = "out";
    m.chat_jid = job->dest.to_string();
    m.recipient_pn = req.phone;
    m.type = req.media.spool.empty() ? "text" : media_record_type(req.media.type);
    m.text = req.text;
    m.status = "pending";
    m.created_at = now_ms_wall(unix_s);
    m.idempotency_key = req.idempotency_key;
    if (!store_->put_message(org_, m, &err) ||
        (!req.idempotency_key.empty() &&
         !store_->put_idempotency(org_, req.idempotency_key, req.body_hash, job->id, m.created_at, &err))) {
        complete(command_id, 507, error_json("storage_error", "the message could not be stored"), out);
        return finish(std::move(out), now_ms);
    }
    // The id exists before the ack: a request that times out (504) still returns it.
    Action partial{Action::Partial, 0, 0, job->id};
    partial.command_id = command_id;
    out.push_back(std::move(partial));
    SendJob& j = *job;
    jobs_[job->id] = std::move(job);
    // Online: go now. Linked but briefly reconnecting (515, reload, a dropped link): the job waits for the
    // login, up to whatsapp_send_timeout on the HTTP side.
    if (phase_ == Phase::Online) start_job(now_ms, j, out);
    return finish(std::move(out), now_ms);
}

void Session::start_job(uint64_t now_ms, SendJob& job, Actions& out) {
    open_signal();
    if (!ctx_ || !signal_) return;
    // send-media: the file is uploaded first (media.cpp), then the message goes out like a text.
    if (job.media_stage == SendJob::NeedUpload) return start_media_job(now_ms, job, out);
    if (job.media_stage == SendJob::Uploading) return;
    Jid me;
    Jid::parse(creds_->me_jid, me);
    std::string err, lid;
    bool found = false;
    std::vector<uint32_t> devs, own;
    int64_t at = 0, own_at = 0;
    bool cached = false;
    if (job.dest.is_pn() && store_->lid_for_pn(org_, job.dest.user, lid, found, &err) && found) {
        Jid l{lid, std::string(jid_server::kLid)};
        bool f1 = false, f2 = false;
        Jid own_lid;
        Jid::parse(creds_->me_lid, own_lid);
        store_->load_devices(org_, l.to_string(), devs, at, f1, &err);
        store_->load_devices(org_, own_lid.to_non_ad().to_string(), own, own_at, f2, &err);
        cached = f1 && f2 && !own_lid.user.empty() && static_cast<uint64_t>(at) + kDeviceCacheMs > now_ms &&
                 static_cast<uint64_t>(own_at) + kDeviceCacheMs > now_ms;
    }
    if (!cached) {
        job.stage = SendJob::Resolving;
        std::vector<Jid> users{job.dest, me.to_non_ad()};
        std::string id = ctx_->send_iq(usync::query(users, ctx_->next_iq_id()), IqKind::Usync, now_ms, out);
        if (!id.empty()) ctx_->iqs[id].job = job.id;
        return;
    }
    // From the cache: LID addressing with the known device lists.
    job.addressed = Jid{lid, std::string(jid_server::kLid)};
    Jid own_lid;
    Jid::parse(creds_->me_lid, own_lid);
    job.devices.clear();
    for (uint32_t d : devs) {
        Jid x = job.addressed;
        x.device = static_cast<uint16_t>(d);
        x.has_device = d != 0;
        job.devices.push_back(x);
    }
    for (uint32_t d : own) {
        if (d == own_lid.device) continue;  // never to ourselves
        Jid x = own_lid.to_non_ad();
        x.device = static_cast<uint16_t>(d);
        x.has_device = d != 0;
        job.devices.push_back(x);
    }
    encrypt_and_send(now_ms, job, out);
}

void Session::on_usync(uint64_t now_ms, int64_t unix_s, const std::string& job_id, const Node& iq, Actions& out) {
    (void)unix_s;
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return;
    SendJob& job = *it->second;
    std::vector<usync::UserInfo> users;
    std::string err;
    if (!usync::parse(iq, users, &err)) return fail_job(job_id, 502, "usync_failed", "WhatsApp did not list the recipient's devices", 0, out);
    Jid me, own_lid;
    Jid::parse(creds_->me_jid, me);
    Jid::parse(creds_->me_lid, own_lid);
    const usync::UserInfo* dest = nullptr;
    const usync::UserInfo* self = nullptr;
    for (const auto& u : users) {
        if (u.jid.user == job.dest.user) dest = &u;
        if (u.jid.user == me.user) self = &u;
        // Learn every mapping the server gives us (whatsmeow StoreLIDPNMapping).
        if (u.jid.is_pn() && !u.lid.user.empty()) store_->put_lid_mapping(org_, u.jid.user, u.lid.user, &err);
    }
    if (!dest || !dest->on_whatsapp)
        return fail_job(job_id, 422, "not_on_whatsapp", "the number " + job.dest.user + " has no WhatsApp account", 0, out);
    bool use_lid = !dest->lid.user.empty() && !own_lid.user.empty();
    job.addressed = use_lid ? dest->lid.to_non_ad() : job.dest;
    std::vector<uint32_t> ids(dest->devices.begin(), dest->devices.end());
    store_->put_devices(org_, job.addressed.to_string(), ids, static_cast<int64_t>(now_ms), &err);
    job.devices = usync::device_jids(job.addressed, *dest);
    if (self) {
        Jid own_user = use_lid ? own_lid.to_non_ad() : me.to_non_ad();
        std::vector<uint32_t> own(self->devices.begin(), self->devices.end());
        store_->put_devices(org_, own_user.to_string(), own, static_cast<int64_t>(now_ms), &err);
        for (const Jid& d : usync::device_jids(own_user, *self))
            if (d.device != me.device) job.devices.push_back(d);
    }
    encrypt_and_send(now_ms, job, out);
}

void Session::on_prekeys(uint64_t now_ms, int64_t unix_s, const std::string& job_id, const Node& iq, Actions& out) {
    (void)unix_s;
    auto& jobs = job_id.size() > 6 && job_id.compare(job_id.size() - 6, 6, "#retry") == 0 ? retry_jobs_ : jobs_;
    auto it = jobs.find(job_id);
    if (it == jobs.end()) return;
    SendJob& job = *it->second;
    std::vector<signal::UserBundle> bundles;
    std::string err;
    signal::parse_prekey_bundles(iq, bundles, &err);
    for (const auto& b : bundles)
        if (b.ok) signal_->build_session(signal::address_of(b.jid), b.bundle);
    // Devices whose bundle did not come are skipped, as whatsmeow does (encryptMessageForDevices).
    job.fetching.clear();
    encrypt_and_send(now_ms, job, out);
}

void Session::encrypt_and_send(uint64_t now_ms, SendJob& job, Actions& out) {
    if (!ctx_ || !signal_) return;
    if (job.stage != SendJob::Fetching) {
        std::vector<Jid> missing;
        job.stage = SendJob::Fetching;  // at most one bundle fetch per attempt
        for (const Jid& d : job.devices)
            if (!signal_->has_session(signal::address_of(d))) missing.push_back(d);
        if (!missing.empty()) {
            job.fetching = missing;
            std::string id = ctx_->send_iq(signal::prekey_request(missing), IqKind::PreKeys, now_ms, out);
            if (!id.empty()) ctx_->iqs[id].job = job.resend ? job.id + "#retry" : job.id;
            return;
        }
    }
    Jid me;
    Jid::parse(creds_->me_jid, me);
    Jid own_lid;
    Jid::parse(creds_->me_lid, own_lid);
    waproto::Message msg;
    if (job.media_stage == SendJob::Uploaded) {
        if (!msg.ParseFromString(job.media_message)) return fail_job(job.id, 500, "internal_error", "media message lost", 0, out);
    } else {
        msg = signal::text_message(job.text);
    }
    // whatsmeow send.go getTypeFromMessage / getMediaTypeFromMessage: type="media", <enc mediatype=…>.
    const bool media = job.media_stage == SendJob::Uploaded;
    const std::string enc_mediatype = media ? std::string(media_enc_type(job.media.type)) : std::string();
    std::string plain, dsm;
    signal::encode_message(msg, plain);
    signal::encode_message(signal::device_sent_message(msg, job.addressed.to_string()), dsm);
    std::vector<Node> participants;
    bool any_pkmsg = false;
    std::vector<Jid> reached;
    for (const Jid& d : job.devices) {
        bool own = d.user == me.user || d.user == own_lid.user;
        signal::Encrypted enc;
        if (signal_->encrypt(signal::address_of(d), own ? dsm : plain, enc) != signal::Result::Ok) continue;
        any_pkmsg = any_pkmsg || enc.type == signal::EncType::PkMsg;
        reached.push_back(d);
        Node e = Node::with_bytes("enc", {{"v", "2"}, {"type", signal::enc_type_name(enc.type)}}, std::move(enc.ciphertext));
        if (media) e.attrs.emplace_back("mediatype", enc_mediatype);
        participants.push_back(Node("to", {{"jid", d.to_string()}}, {std::move(e)}));
    }
    if (participants.empty()) {
        if (job.resend) return;
        return fail_job(job.id, 502, "no_devices", "no device of the recipient could be reached", 0, out);
    }
    if (job.resend) {
        // A resend after a retry receipt goes to that one device (wa-protocol.md §8 "Sender side").
        Node& to = participants.front();
        Node enc = to.children.front();
        enc.attrs.emplace_back("count", std::to_string(job.retry_count));
        Node stanza("message", {{"id", job.id}, {"to", to.attr_or("jid").data()}, {"type", media ? "media" : "text"}, {"device_fanout", "false"}},
                    {std::move(enc)});
        if (any_pkmsg && !creds_->account.empty())
            stanza.children.push_back(Node::with_bytes("device-identity", {}, creds_->account));
        ctx_->write_node(stanza, out, true);
        return;
    }
    Node stanza("message", {{"id", job.id}, {"to", job.addressed.to_string()}, {"type", media ? "media" : "text"}});
    if (job.addressed.is_lid() && job.dest.is_pn()) stanza.attrs.emplace_back("peer_recipient_pn", job.dest.to_string());
    stanza.kind = Node::Content::Children;
    stanza.children.push_back(Node("participants", {}, std::move(participants)));
    // whatsmeow getMessageContent: the account identity goes along when any device gets a pkmsg.
    if (any_pkmsg && !creds_->account.empty())
        stanza.children.push_back(Node::with_bytes("device-identity", {}, creds_->account));
    // whatsmeow sendDM: the contact's trusted-contact token, when we hold a fresh one.
    std::string token = privacy_token_for(job.dest, static_cast<int64_t>(job.unix_s));
    if (!token.empty()) stanza.children.push_back(Node::with_bytes("tctoken", {}, std::move(token)));
    job.stage = SendJob::Sent;
    // durable: the ratchet states of the encryption and the pending message are on disk before it leaves.
    ctx_->write_node(stanza, out, true);
    stats_.messages_sent++;
}

void Session::fail_job(const std::string& id, int http, const std::string& code, const std::string& why, int error_code,
                       Actions& out) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    std::string err;
    bool changed = false;
    if (store_) store_->advance_message_status(org_, id, "failed", 0, error_code, why, changed, &err);
    stats_.messages_failed[error_code ? std::to_string(error_code) : code]++;
    if (changed) emit(webhook::kMessageStatus, webhook::status_data(id, "failed", error_code, why), 0);
    for (uint64_t c : it->second->commands) complete(c, http, error_json(code, why, id, error_code), out);
    jobs_.erase(it);
}

// <ack class="message" id from t error? phash?> (wa-protocol.md §7; whatsmeow send.go waits for it).
void Session::on_message_ack(uint64_t now_ms, int64_t unix_s, const Node& ack, Actions& out) {
    (void)now_ms;
    std::string id(ack.attr_or("id"));
    if (retry_jobs_.erase(id + "#retry")) return;  // the ack of a resend to one device
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    uint32_t code = 0;
    if (parse_jid_number(ack.attr_or("error"), 65535, code) && code) {
        if (code == 463) {
            // 463: this number may not reach this contact now (reach-out timelock); repeated sends into it get
            // numbers restricted: stop new sends for a day (a timelock notice gives the exact end).
            status_.restricted_until = unix_s + 24 * 3600;
            persist_org();  // a restart must not forget it
            out.push_back({Action::Publish});
            emit(webhook::kAccountRestricted, webhook::restricted_data(status_.restricted_until, "reach_out_refused", 463),
                 unix_s);
        }
        std::string why = code == 463 ? "WhatsApp refused: this number may not message this contact now (463)"
                          : code == 479 ? "WhatsApp rejected the message as invalid (479)"
                                        : "WhatsApp rejected the message (" + std::to_string(code) + ")";
        return fail_job(id, 502, "rejected_by_whatsapp", why, static_cast<int>(code), out);
    }
    SendJob& job = *it->second;
    std::string err;
    bool changed = false;
    store_->advance_message_status(org_, id, "sent", now_ms_wall(unix_s), 0, {}, changed, &err);
    if (changed) emit(webhook::kMessageStatus, webhook::status_data(id, "sent", 0, {}), unix_s);
    std::string to = job.phone.empty() ? job.dest.to_string() : job.phone;
    for (uint64_t c : job.commands) complete(c, 200, sent_json(id, to, "sent"), out);
    Jid dest = job.dest;
    jobs_.erase(it);
    maybe_issue_token(now_ms, unix_s, dest, out);
}

// After a (re)login: messages that waited, and messages a crash left pending, go out (same id: WhatsApp
// deduplicates by id).
void Session::resume_jobs(uint64_t now_ms, Actions& out) {
    if (!store_) return;
    std::vector<store::MessageRecord> pending;
    std::string err;
    store_->pending_messages(org_, pending, &err);
    for (const auto& m : pending) {
        if (jobs_.count(m.id) || m.type != "text") continue;
        auto job = std::make_unique<SendJob>();
        job->id = m.id;
        job->text = m.text;
        job->phone = m.recipient_pn;
        if (!Jid::parse(m.chat_jid, job->dest)) continue;
        job->created_ms = now_ms;
        job->unix_s = m.created_at / 1000;
        jobs_[m.id] = std::move(job);
    }
    for (auto& [id, job] : jobs_) {
        job->stage = SendJob::Waiting;
        start_job(now_ms, *job, out);
    }
}

}  // namespace wa

// ---- queries answered from the store or the server -------------------------------------------------------

namespace wa {

namespace {

std::string message_json(const store::MessageRecord& m) {
    auto t = [](int64_t ms) { return ms ? std::to_string(ms / 1000) : std::string("null"); };
    std::string s = R"({"message_id":")" + json_escape(m.id) + R"(","direction":")" + m.direction + R"(","status":")" +
                    json_escape(m.status) + R"(","type":")" + json_escape(m.type) + R"(","chat":")" +
                    json_escape(m.chat_jid) + "\"";
    if (m.direction == "out") s += R"(,"to":")" + json_escape(m.recipient_pn) + "\"";
    else s += R"(,"from":")" + json_escape(m.sender_jid) + "\"";
    s += R"(,"text":")" + json_escape(m.text) + "\"";
    s += ",\"created_at\":" + t(m.created_at) + ",\"sent_at\":" + t(m.sent_at) + ",\"delivered_at\":" +
         t(m.delivered_at) + ",\"read_at\":" + t(m.read_at) + ",\"played_at\":" + t(m.played_at) +
         ",\"failed_at\":" + t(m.failed_at);
    s += ",\"error_code\":" + (m.error_code ? std::to_string(m.error_code) : std::string("null"));
    s += ",\"error\":" + (m.error.empty() ? std::string("null") : "\"" + json_escape(m.error) + "\"");
    return s + "}";
}

}  // namespace

Actions Session::message_status(uint64_t now_ms, const std::string& id, uint64_t command_id) {
    Actions out;
    store::MessageRecord m;
    bool found = false;
    std::string err;
    if (!store_ || !store_->load_message(org_, id, m, found, &err) || !found)
        complete(command_id, 404, error_json("not_found", "no message with that id"), out);
    else
        complete(command_id, 200, "{\"success\":true," + message_json(m).substr(1), out);
    return finish(std::move(out), now_ms);
}

Actions Session::list_messages(uint64_t now_ms, const std::string& direction, size_t limit, const std::string& cursor,
                               uint64_t command_id) {
    Actions out;
    std::vector<store::MessageRecord> items;
    std::string next, err;
    if (!store_ || !store_->list_messages(org_, direction, limit, cursor, items, next, &err)) {
        complete(command_id, 400, error_json("invalid_parameter", "bad cursor"), out);
        return finish(std::move(out), now_ms);
    }
    std::string s = R"({"success":true,"items":[)";
    for (size_t i = 0; i < items.size(); i++) s += (i ? "," : "") + message_json(items[i]);
    s += "],\"next_cursor\":" + (next.empty() ? std::string("null") : "\"" + json_escape(next) + "\"") + "}";
    complete(command_id, 200, std::move(s), out);
    return finish(std::move(out), now_ms);
}

// GET /api/contacts/:org/:phone → {"on_whatsapp","jid","lid"}, from the same usync a send uses.
Actions Session::contact_info(uint64_t now_ms, int64_t unix_s, const std::string& phone, uint64_t command_id) {
    (void)unix_s;
    Actions out;
    if (phase_ != Phase::Online || !ctx_) {
        complete(command_id, 409, error_json("not_connected", "the session of organization " + org_ + " is not connected (status: " +
                                                                  state_name(status_.state) + ")"),
                 out);
        return finish(std::move(out), now_ms);
    }
    Jid user{phone, std::string(jid_server::kUser)};
    std::string id = ctx_->send_iq(usync::query({user}, ctx_->next_iq_id()), IqKind::ContactUsync, now_ms, out);
    if (!id.empty()) ctx_->iqs[id].command_id = command_id;
    return finish(std::move(out), now_ms);
}

void Session::on_contact_usync(uint64_t command_id, const Node& iq, Actions& out) {
    std::vector<usync::UserInfo> users;
    std::string err;
    if (!usync::parse(iq, users, &err) || users.empty())
        return complete(command_id, 502, error_json("usync_failed", "WhatsApp did not answer the lookup"), out);
    const usync::UserInfo& u = users.front();
    if (store_ && u.jid.is_pn() && !u.lid.user.empty()) store_->put_lid_mapping(org_, u.jid.user, u.lid.user, &err);
    std::string s = std::string(R"({"success":true,"on_whatsapp":)") + (u.on_whatsapp ? "true" : "false") +
                    R"(,"jid":)" + (u.on_whatsapp ? "\"" + json_escape(u.jid.to_string()) + "\"" : std::string("null")) +
                    R"(,"lid":)" + (u.lid.user.empty() ? std::string("null") : "\"" + json_escape(u.lid.to_string()) + "\"") + "}";
    complete(command_id, 200, std::move(s), out);
}

}  // namespace wa
