// Linking a new device: QR refs (wa-protocol.md §5a; whatsmeow pair.go handlePairDevice/makeQRData),
// pair-success checked by whatsmeow's rules (HMAC, account signature with 32-byte key and 64-byte
// signature, device signature), and pairing by code (§5b; whatsmeow pair-code.go).
#include <openssl/crypto.h>

#include "WAProto.pb.h"
#include "ctx.hpp"
#include "wa/codec/base64.hpp"

namespace wa {

namespace {

const std::string kAccountSigPrefix("\x06\x00", 2), kHostedAccountSigPrefix("\x06\x05", 2);
const std::string kDeviceSigPrefix("\x06\x01", 2);
constexpr int kLinkCodeIterations = 2 << 16;  // whatsmeow pair-code.go: pbkdf2 with 2<<16 rounds

void pair_error(Session::Ctx& c, const std::string& id, const char* code, const char* text, Actions& out) {
    c.write_node(Node("iq", {{"to", "@s.whatsapp.net"}, {"type", "error"}, {"id", id}},
                      {Node("error", {{"code", code}, {"text", text}})}),
                 out);
}

bool verify_account_signature(const waproto::ADVSignedDeviceIdentity& id, const std::string& identity_pub,
                              bool hosted) {
    if (id.accountsignaturekey().size() != 32 || id.accountsignature().size() != 64) return false;
    std::string msg = (hosted ? kHostedAccountSigPrefix : kAccountSigPrefix) + id.details() + identity_pub;
    return xeddsa_verify(id.accountsignaturekey(), msg, id.accountsignature());
}

}  // namespace

namespace pair {

std::string qr_text(const store::Credentials& creds, const std::string& ref, const ClientProfile& profile) {
    return "https://wa.me/settings/linked_devices#" + ref + "," + base64_encode(creds.noise_pub) + "," +
           base64_encode(creds.identity_pub) + "," + base64_encode(creds.adv_secret) + "," +
           std::to_string(link::qr_platform_code(profile));
}

void on_pair_device(Session::Ctx& c, const Node& iq, uint64_t now_ms, Actions& out) {
    (void)now_ms;
    // whatsmeow answers at once with an empty result to the stanza's sender.
    c.write_node(Node("iq", {{"to", std::string(iq.attr_or("from"))}, {"id", std::string(iq.attr_or("id"))},
                             {"type", "result"}}),
                 out);
    c.refs.clear();
    c.ref_index = 0;
    const Node* pd = iq.child("pair-device");
    for (const Node* r : pd->children_by_tag("ref"))
        if (r->kind == Node::Content::Bytes && !r->bytes.empty() && r->bytes.size() < 256) c.refs.push_back(r->bytes);
}

std::string make_code() {
    static const char kAlphabet[] = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";  // whatsmeow linkingBase32
    unsigned char raw[5];
    crypto::random_bytes(raw, sizeof raw);
    uint64_t v = 0;
    for (unsigned char b : raw) v = (v << 8) | b;
    std::string code(8, '0');
    for (int i = 7; i >= 0; i--) {
        code[static_cast<size_t>(i)] = kAlphabet[v & 31];
        v >>= 5;
    }
    return code;
}

bool on_pair_success(Session::Ctx& c, const Node& iq, store::Credentials& creds, Actions& out, std::string* err) {
    std::string id(iq.attr_or("id"));
    const Node* ps = iq.child("pair-success");
    const Node* di = ps->child("device-identity");
    const Node* dev = ps->child("device");
    if (!di || di->kind != Node::Content::Bytes || !dev) {
        pair_error(c, id, "500", "internal-error", out);
        return *err = "pair-success without device-identity or device", false;
    }
    waproto::ADVSignedDeviceIdentityHMAC container;
    if (!container.ParseFromString(di->bytes)) {
        pair_error(c, id, "500", "internal-error", out);
        return *err = "device identity container does not parse", false;
    }
    bool hosted_account = container.accounttype() == waproto::ADVEncryptionType::HOSTED;
    std::string mac = crypto::hmac_sha256(creds.adv_secret,
                                          (hosted_account ? kHostedAccountSigPrefix : std::string()) + container.details());
    if (!crypto::constant_time_equal(mac, container.hmac())) {
        pair_error(c, id, "401", "hmac-mismatch", out);
        return *err = "pair-success HMAC mismatch", false;
    }
    waproto::ADVSignedDeviceIdentity identity;
    waproto::ADVDeviceIdentity details;
    if (!identity.ParseFromString(container.details()) || !details.ParseFromString(identity.details())) {
        pair_error(c, id, "500", "internal-error", out);
        return *err = "signed device identity does not parse", false;
    }
    if (!verify_account_signature(identity, creds.identity_pub,
                                  details.devicetype() == waproto::ADVEncryptionType::HOSTED)) {
        pair_error(c, id, "401", "signature-mismatch", out);
        return *err = "account signature does not verify", false;
    }
    std::string device_sig = crypto::xeddsa_sign(
        creds.identity_priv, kDeviceSigPrefix + identity.details() + creds.identity_pub + identity.accountsignaturekey());
    Jid jid, lid;
    if (device_sig.empty() || !Jid::parse(dev->attr_or("jid"), jid) || !jid.is_pn()) {
        pair_error(c, id, "500", "internal-error", out);
        return *err = "cannot sign the device identity or bad device jid", false;
    }
    identity.set_devicesignature(device_sig);
    creds.account = identity.SerializeAsString();  // kept with accountSignatureKey (sent in messages later)
    creds.me_jid = jid.to_string();
    if (Jid::parse(dev->attr_or("lid"), lid)) creds.me_lid = lid.to_string();
    if (const Node* pl = ps->child("platform")) creds.platform = std::string(pl->attr_or("name"));
    if (const Node* biz = ps->child("biz")) creds.push_name = std::string(biz->attr_or("name"));
    // The reply omits the accountSignatureKey (whatsmeow handlePair).
    waproto::ADVSignedDeviceIdentity reply = identity;
    reply.clear_accountsignaturekey();
    Node sign("iq", {{"to", "@s.whatsapp.net"}, {"type", "result"}, {"id", id}},
              {Node("pair-device-sign", {},
                    {Node::with_bytes("device-identity", {{"key-index", std::to_string(details.keyindex())}},
                                      reply.SerializeAsString())})});
    c.paired = true;
    // durable: the phone lists the device once it sees this; the credentials must already be on disk.
    c.write_node(sign, out, true);
    return true;
}

bool request_code(Session::Ctx& c, const store::Credentials& creds, const ClientProfile& profile, uint64_t now_ms,
                  Actions& out, std::string* err) {
    Session::Ctx::LinkCode& lc = *c.link_code;
    lc.code = make_code();
    std::string salt = crypto::random_string(32), iv = crypto::random_string(16), key, wrapped;
    if (!crypto::generate_keypair(lc.ephemeral) || salt.size() != 32 || iv.size() != 16 ||
        !crypto::pbkdf2_sha256(lc.code, salt, kLinkCodeIterations, 32, key) ||
        !crypto::aes256_ctr(key, iv, lc.ephemeral.pub, wrapped)) {
        return *err = "cannot wrap the companion key", false;
    }
    OPENSSL_cleanse(&key[0], key.size());
    std::string display = profile.browser + " (" + profile.os + ")";  // "Browser (OS)", validated by the server
    Node reg("link_code_companion_reg",
             {{"jid", lc.phone + "@s.whatsapp.net"}, {"stage", "companion_hello"}, {"should_show_push_notification", "true"}},
             {Node::with_bytes("link_code_pairing_wrapped_companion_ephemeral_pub", {}, salt + iv + wrapped),
              Node::with_bytes("companion_server_auth_key_pub", {}, creds.noise_pub),
              Node::with_string("companion_platform_id", {}, std::to_string(link::qr_platform_code(profile))),
              Node::with_string("companion_platform_display", {}, display),
              Node::with_bytes("link_code_pairing_nonce", {}, std::string(1, '\0'))});
    lc.requested = true;
    std::string id =
        c.send_iq(Node("iq", {{"to", "@s.whatsapp.net"}, {"type", "set"}, {"xmlns", "md"}}, {std::move(reg)}),
                  IqKind::LinkCodeHello, now_ms, out);
    return id.empty() ? (*err = "cannot send companion_hello", false) : true;
}

bool on_code_notification(Session::Ctx& c, const Node& n, store::Credentials& creds, uint64_t now_ms, Actions& out,
                          std::string* err) {
    Session::Ctx::LinkCode& lc = *c.link_code;
    const Node* reg = n.child("link_code_companion_reg");
    const Node* ref = reg ? reg->child("link_code_pairing_ref") : nullptr;
    const Node* wrapped = reg ? reg->child("link_code_pairing_wrapped_primary_ephemeral_pub") : nullptr;
    const Node* primary = reg ? reg->child("primary_identity_pub") : nullptr;
    if (!ref || !wrapped || !primary || wrapped->bytes.size() < 80 || primary->bytes.size() != 32)
        return *err = "incomplete link_code_companion_reg notification", false;
    if (!crypto::constant_time_equal(ref->bytes, lc.ref)) return *err = "pairing ref mismatch", false;
    std::string key, primary_eph, shared, identity_shared, bundle_key, sealed;
    std::string adv_random = crypto::random_string(32), salt = crypto::random_string(32), nonce = crypto::random_string(12);
    std::string_view w = wrapped->bytes;
    bool ok = crypto::pbkdf2_sha256(lc.code, w.substr(0, 32), kLinkCodeIterations, 32, key) &&
              crypto::aes256_ctr(key, w.substr(32, 16), w.substr(48, 32), primary_eph) &&
              noise::x25519(lc.ephemeral.priv, primary_eph, shared) &&
              noise::hkdf_sha256(salt, shared, "link_code_pairing_key_bundle_encryption_key", 32, bundle_key) &&
              noise::aes_gcm_encrypt(bundle_key, nonce, "", creds.identity_pub + primary->bytes + adv_random, sealed) &&
              noise::x25519(creds.identity_priv, primary->bytes, identity_shared);
    std::string adv;
    ok = ok && noise::hkdf_sha256("", shared + identity_shared + adv_random, "adv_secret", 32, adv);
    if (!ok) return *err = "link-code key agreement failed", false;
    creds.adv_secret = adv;  // replaces the QR's adv secret: pair-success is keyed with it
    Node finish("link_code_companion_reg", {{"jid", lc.phone + "@s.whatsapp.net"}, {"stage", "companion_finish"}},
                {Node::with_bytes("link_code_pairing_wrapped_key_bundle", {}, salt + nonce + sealed),
                 Node::with_bytes("companion_identity_public", {}, creds.identity_pub),
                 Node::with_bytes("link_code_pairing_ref", {}, lc.ref)});
    c.send_iq(Node("iq", {{"to", "@s.whatsapp.net"}, {"type", "set"}, {"xmlns", "md"}}, {std::move(finish)}),
              IqKind::LinkCodeFinish, now_ms, out, true);
    return true;
}

}  // namespace pair

// ---- session side ---------------------------------------------------------------------------------------

// Shows the next QR ref. whatsmeow (qrchan.go): the first ref lives 60 s when the server sent 6, else 20 s;
// every later one 20 s. When they run out the session stops with qr_timeout instead of looping.
void Session::on_qr_refs(uint64_t now_ms, int64_t unix_s, Actions& out) {
    if (!ctx_ || phase_ != Phase::Registering) return;
    Ctx& c = *ctx_;
    deadlines_.cancel(Deadlines::Login);
    if (c.paired) return;
    if (!code_phone_.empty() && !c.link_code) issue_pairing_code(now_ms, unix_s, out);
    if (c.ref_index >= c.refs.size()) {
        if (c.link_code) return;  // a code pairing is in progress: the server decides how long it waits
        end_link(now_ms, unix_s, Disconnect{Disconnect::QrTimeout, 0, {}, 0, {}}, out);
        return;
    }
    uint64_t ttl = (c.ref_index == 0 && c.refs.size() == 6) ? cfg_.qr_first_ms : cfg_.qr_next_ms;
    status_.qr_text = pair::qr_text(*creds_, c.refs[c.ref_index], cfg_.profile);
    status_.qr_expires_ms = now_ms + ttl;
    c.ref_index++;
    deadlines_.set(Deadlines::QrRef, now_ms + ttl);
    std::string qr = status_.qr_text;
    uint64_t exp = status_.qr_expires_ms;
    set_state(State::QrReady, unix_s, out);
    status_.qr_text = qr;  // set_state clears them for other states only; keep explicit
    status_.qr_expires_ms = exp;
    int64_t ttl_s = static_cast<int64_t>(ttl / 1000);
    emit(webhook::kSessionQr, webhook::qr_data(qr, unix_s + ttl_s, ttl_s), unix_s);
}

void Session::on_pair_success(uint64_t now_ms, int64_t unix_s, const Node& iq, Actions& out) {
    if (phase_ != Phase::Registering || !creds_) return;
    std::string err;
    if (!pair::on_pair_success(*ctx_, iq, *creds_, out, &err)) {
        end_link(now_ms, unix_s, Disconnect{Disconnect::Protocol, 0, {}, 0, "pairing failed: " + err}, out);
        return;
    }
    deadlines_.cancel_all(Deadlines::QrRef);
    status_.linked = true;
    Jid me;
    if (Jid::parse(creds_->me_jid, me)) status_.phone = me.user;
    if (store_) {
        store_->put_credentials(org_, *creds_, &err);
        Jid lid;
        if (Jid::parse(creds_->me_lid, lid)) store_->put_lid_mapping(org_, me.user, lid.user, &err);
    }
    // The server now sends <stream:error code="515"/>; allow it the login deadline.
    deadlines_.set(Deadlines::Login, now_ms + cfg_.login_timeout_ms);
}

void Session::issue_pairing_code(uint64_t now_ms, int64_t unix_s, Actions& out) {
    (void)unix_s;
    auto lc = std::make_unique<Ctx::LinkCode>();
    lc->phone = code_phone_;
    lc->command_id = code_command_;
    code_phone_.clear();
    code_command_ = 0;
    ctx_->link_code = std::move(lc);
    std::string err;
    if (!pair::request_code(*ctx_, *creds_, cfg_.profile, now_ms, out, &err)) {
        Action a{Action::Complete, 500, 0, R"({"success":false,"error":"cannot request a pairing code","code":"internal_error"})"};
        a.command_id = ctx_->link_code->command_id;
        out.push_back(std::move(a));
        ctx_->link_code.reset();
    }
}

Actions Session::pairing_code(uint64_t now_ms, int64_t unix_s, std::string phone_digits, uint64_t command_id) {
    Actions out;
    if (status_.linked || phase_ == Phase::Online || phase_ == Phase::LoggingIn) {
        Action a{Action::Complete, 409, 0,
                 R"({"success":false,"error":"this organization is already linked; log out first","code":"already_linked"})"};
        a.command_id = command_id;
        out.push_back(std::move(a));
        return finish(std::move(out), now_ms);
    }
    if (code_command_) {  // an older request is replaced by the newer one
        Action a{Action::Complete, 409, 0,
                 R"({"success":false,"error":"superseded by a newer pairing-code request","code":"superseded"})"};
        a.command_id = code_command_;
        out.push_back(std::move(a));
    }
    code_phone_ = std::move(phone_digits);
    code_command_ = command_id;
    if (ctx_ && phase_ == Phase::Registering && !ctx_->refs.empty()) {
        if (ctx_->link_code) ctx_->link_code.reset();
        issue_pairing_code(now_ms, unix_s, out);
        return finish(std::move(out), now_ms);
    }
    if (!busy()) {
        Actions started = start(now_ms, unix_s);
        out.insert(out.end(), started.begin(), started.end());
    }
    return finish(std::move(out), now_ms);
}

}  // namespace wa
