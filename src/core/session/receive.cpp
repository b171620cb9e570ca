// What the server delivers about messages: receipts for ours (status), retry receipts (resend, whatsmeow
// retry.go), and incoming messages (decrypt, store, then receipt: never acknowledge what was not stored).
#include "ctx.hpp"
#include "wa/media/crypto.hpp"
#include "wa/signal/account.hpp"
#include "wa/signal/plaintext.hpp"

namespace wa {

namespace {

constexpr uint32_t kMaxRetries = 5;  // whatsmeow: no retry receipt past count 5, no resend past 5 per device

// whatsmeow receipt.go buildBaseReceipt.
Node base_receipt(const Node& msg) {
    Node r("receipt", {{"id", std::string(msg.attr_or("id"))}, {"to", std::string(msg.attr_or("from"))}});
    if (const std::string* v = msg.attr("recipient")) r.attrs.emplace_back("recipient", *v);
    if (const std::string* v = msg.attr("participant")) r.attrs.emplace_back("participant", *v);
    return r;
}

std::string message_type(const waproto::Message& m) {
    if (m.has_conversation() || m.has_extendedtextmessage()) return "text";
    if (m.has_imagemessage()) return "image";
    if (m.has_documentmessage()) return "document";
    if (m.has_audiomessage()) return "audio";
    if (m.has_videomessage()) return "video";
    if (m.has_stickermessage()) return "sticker";
    if (m.has_reactionmessage()) return "reaction";
    if (m.has_contactmessage()) return "contact";
    if (m.has_locationmessage()) return "location";
    if (m.has_protocolmessage()) return "protocol";
    return "unknown";
}

std::string path_escape(std::string_view s) {
    static const char* hexd = "0123456789ABCDEF";
    std::string o;
    for (unsigned char c : s) {
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') o += static_cast<char>(c);
        else o += '%', o += hexd[c >> 4], o += hexd[c & 15];
    }
    return o;
}

std::string text_of(const waproto::Message& m) {
    if (m.has_conversation()) return m.conversation();
    if (m.has_extendedtextmessage()) return m.extendedtextmessage().text();
    return {};
}

}  // namespace

bool Session::alternate_address(const Jid& from, Jid& out) {
    std::string other, err;
    bool found = false;
    if (from.is_pn()) {
        if (!store_->lid_for_pn(org_, from.user, other, found, &err) || !found) return false;
        out = Jid{other, std::string(jid_server::kLid)};
    } else if (from.is_lid()) {
        if (!store_->pn_for_lid(org_, from.user, other, found, &err) || !found) return false;
        out = Jid{other, std::string(jid_server::kUser)};
    } else {
        return false;
    }
    out.device = from.device;
    out.has_device = from.device != 0;
    return true;
}

// Delivery, read and played receipts for our messages: every id in the receipt (and its <list>).
void Session::on_receipt(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out) {
    std::string_view type = n.attr_or("type");
    if (type == "retry") return on_retry_receipt(now_ms, n, out);
    std::string status = type.empty() || type == "delivery" ? "delivered"
                         : (type == "read" || type == "read-self") ? "read"
                         : type == "played" ? "played" : "";
    if (status.empty() || !store_) return;
    std::vector<std::string> ids{std::string(n.attr_or("id"))};
    if (const Node* list = n.child("list"))
        for (const Node* item : list->children_by_tag("item")) ids.emplace_back(item->attr_or("id"));
    std::string err;
    for (const std::string& id : ids) {
        bool changed = false;
        store_->advance_message_status(org_, id, status, unix_s * 1000, 0, {}, changed, &err);
        if (changed) {
            stats_.receipts_in++;
            emit(webhook::kMessageStatus, webhook::status_data(id, status, 0, {}), unix_s);
        }
        if (changed && status == "delivered") stats_.messages_delivered++;
        if (changed && status != "delivered") stats_.messages_read++;  // read, read-self, played
    }
}

// A device could not decrypt one of our messages: resend to that device alone, with a fresh session when
// whatsmeow would recreate it (no session, or a second retry), at most 5 times per device.
void Session::on_retry_receipt(uint64_t now_ms, const Node& n, Actions& out) {
    const Node* retry = n.child("retry");
    Jid from;
    if (!retry || !store_ || !signal_ || !ctx_ || !Jid::parse(n.attr_or("participant").empty() ? n.attr_or("from") : n.attr_or("participant"), from))
        return;
    std::string id(retry->attr_or("id"));
    uint32_t count = 1;
    parse_jid_number(retry->attr_or("count"), 1000, count);
    uint32_t& resent = resends_[id + "/" + from.to_string()];
    if (++resent > kMaxRetries) return;
    store::MessageRecord m;
    bool found = false;
    std::string err;
    if (!store_->load_message(org_, id, m, found, &err) || !found || m.direction != "out") return;
    // Texts, and documents and images once uploaded (their message, media key included, is kept in `raw`).
    const bool media = (m.type == "document" || m.type == "image") && !m.raw.empty();
    if (m.type != "text" && !media) return;
    signal::Address addr = signal::address_of(from);
    if (count >= 2 || !signal_->has_session(addr)) signal_->delete_session(addr);
    auto job = std::make_unique<SendJob>();
    job->id = id;
    job->text = m.text;
    job->phone = m.recipient_pn;
    if (media) {
        job->media_message = m.raw;
        job->media_stage = SendJob::Uploaded;
        job->media.type = static_cast<uint8_t>(m.type == "image" ? media::Type::Image : media::Type::Document);
    }
    Jid::parse(m.chat_jid, job->dest);
    job->addressed = from.to_non_ad();
    job->devices = {from};
    job->retry_count = count;
    job->resend = true;
    SendJob& j = *job;
    std::string key = id + "#retry";
    retry_jobs_[key] = std::move(job);
    encrypt_and_send(now_ms, j, out);
}

// An incoming message: decrypt each <enc>, store, and only then send the receipt (durable write).
void Session::on_incoming_message(uint64_t now_ms, int64_t unix_s, const Node& n, Actions& out) {
    (void)now_ms;
    Jid from;
    std::string id(n.attr_or("id"));
    if (!ctx_ || id.empty() || !Jid::parse(n.attr_or("from"), from)) return;
    open_signal();
    Node ack("ack", {{"class", "message"}, {"id", id}, {"to", std::string(n.attr_or("from"))}});
    if (const std::string* p = n.attr("participant")) ack.attrs.emplace_back("participant", *p);
    // Groups and status (skmsg, broadcast) are out of scope: acknowledged, never a retry storm.
    if (from.is_group() || from.server == jid_server::kBroadcast || !signal_ || !store_) {
        ctx_->write_node(ack, out);
        return;
    }
    // Mappings come with every stanza that carries both forms (whatsmeow message.go StoreLIDPNMapping).
    std::string err;
    Jid alt;
    if (from.is_lid() && Jid::parse(n.attr_or("sender_pn"), alt)) store_->put_lid_mapping(org_, alt.user, from.user, &err);
    if (from.is_pn() && Jid::parse(n.attr_or("sender_lid"), alt)) store_->put_lid_mapping(org_, from.user, alt.user, &err);
    bool stored = false, failed = false;
    for (const Node* enc : n.children_by_tag("enc")) {
        signal::EncType type;
        if (!signal::parse_enc_type(enc->attr_or("type"), type)) continue;  // skmsg and others: nothing to decrypt
        signal::Decrypted dec;
        signal::Result r = signal_->decrypt(signal::address_of(from), type, enc->bytes, dec);
        // A session kept under the other form of the sender's address (we wrote to its LID, it answers from its
        // phone number, or the reverse): the commonest cause of "Bad MAC" in peers (wa-protocol-2026.md). Try the
        // alternate address once, as whatsmeow does (message.go decryptDM with the LID/PN mapping).
        Jid other;
        if (r == signal::Result::NoSession && alternate_address(from, other))
            r = signal_->decrypt(signal::address_of(other), type, enc->bytes, dec);
        if (r == signal::Result::Duplicate) { stored = true; continue; }  // already stored and receipted
        if (r != signal::Result::Ok) { failed = true; continue; }
        signal::ReceivedMessage rm;
        if (!signal::decode_message(dec.plaintext, rm, &err)) { failed = true; continue; }
        store::MessageRecord m;
        m.id = id;
        m.direction = "in";
        m.sender_jid = from.to_string();
        m.chat_jid = rm.device_sent ? rm.destination_jid : from.to_non_ad().to_string();
        m.type = message_type(rm.message);
        m.text = text_of(rm.message);
        if (m.type != "text") m.raw = rm.message.SerializeAsString();
        m.status = rm.device_sent ? "sent_by_own_device" : "received";
        m.created_at = unix_s * 1000;
        uint32_t t = 0;
        if (parse_jid_number(n.attr_or("t"), 0xFFFFFFFFu, t)) m.server_t = t;
        // The event goes into the same transaction as the message, before the (durable) receipt.
        bool fresh = true;
        {
            store::MessageRecord old;
            bool found = false;
            std::string e2;
            if (store_->load_message(org_, id, old, found, &e2) && found && old.direction == "in") fresh = false;
        }
        store_->put_message(org_, m, &err);
        if (fresh) {
            webhook::Received ev;
            Jid sender_pn;
            ev.from = from.is_pn() ? from.user
                      : Jid::parse(n.attr_or("sender_pn"), sender_pn) ? sender_pn.user : from.user;
            ev.from_jid = from.to_non_ad().to_string();
            ev.chat_jid = m.chat_jid;
            ev.id = id;
            ev.type = m.type;
            ev.text = m.text;
            ev.push_name = std::string(n.attr_or("notify"));
            ev.timestamp = m.server_t ? m.server_t : unix_s;
            ev.from_me = rm.device_sent;
            // Where the file will be (GET /api/messages/:org/:id/media, 404 until the helper stored it).
            if (m.type == "document" || m.type == "image") ev.media_path = "/api/messages/" + org_ + "/" + path_escape(id) + "/media";
            emit(webhook::kMessageReceived, webhook::received_data(ev), unix_s);
            if (m.type == "document" || m.type == "image") queue_download(now_ms, id, rm.message, out);
        }
        stored = true;
        stats_.messages_received++;
    }
    Jid me;
    Jid::parse(creds_->me_jid, me);
    Jid own_lid;
    Jid::parse(creds_->me_lid, own_lid);
    bool from_me = from.user == me.user || (!own_lid.user.empty() && from.user == own_lid.user);
    if (stored) {
        Node receipt = base_receipt(n);
        // whatsmeow sendMessageReceipt: "sender" for our own devices' copies, "inactive" while we never said
        // we are available (this gateway never sends presence).
        receipt.attrs.emplace_back("type", from_me ? "sender" : "inactive");
        ctx_->write_node(receipt, out, true);
        return;
    }
    if (!failed) {
        ctx_->write_node(ack, out);
        return;
    }
    // Could not decrypt: a retry receipt (whatsmeow retry.go sendRetryReceipt), at most 4, then give up quietly.
    uint32_t& count = retries_sent_[id];
    if (++count >= kMaxRetries) {
        ctx_->write_node(ack, out);
        return;
    }
    Node receipt = base_receipt(n);
    receipt.attrs.emplace_back("type", "retry");
    receipt.kind = Node::Content::Children;
    receipt.children.push_back(Node("retry", {{"count", std::to_string(count)}, {"id", id},
                                              {"t", std::string(n.attr_or("t"))}, {"v", "1"}}));
    receipt.children.push_back(Node::with_bytes("registration", {}, be_bytes(creds_->registration_id, 4)));
    ctx_->write_node(receipt, out);
    stats_.retry_receipts_sent++;
}

}  // namespace wa
