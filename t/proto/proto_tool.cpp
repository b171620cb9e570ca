// Line-oriented driver of the generated waproto:: classes (build/libwaproto.a) for t/proto/crosscheck.mjs.
// Hex everywhere; one answer line per command:
//   cases                   -> the names of the compiled-in cases, space-separated
//   enc CASE                -> HEX                  our encoding of the compiled-in case
//   dec CASE HEX            -> REENCODED_HEX SAME   parse HEX as the case's type, serialize again; SAME is 1
//                                                   if the parsed message equals the compiled-in case
//   rt TYPE HEX             -> REENCODED_HEX        parse HEX as TYPE (a top-level message name), serialize
// Errors answer "err MESSAGE". The cases' values are repeated in crosscheck.mjs (CASES), where Baileys
// encodes and decodes them: the two lists must agree field for field, which is the point of the test.
#include "WAProto.pb.h"

#include <google/protobuf/message_lite.h>

#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

namespace {

using Lite = google::protobuf::MessageLite;

std::string hex(std::string_view b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (unsigned char c : b) {
        s.push_back(d[c >> 4]);
        s.push_back(d[c & 15]);
    }
    return s;
}

bool unhex(const std::string& h, std::string& out) {
    out.clear();
    if (h == "-") return true;
    if (h.size() % 2) return false;
    auto v = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
    for (size_t i = 0; i < h.size(); i += 2) {
        int a = v(h[i]), b = v(h[i + 1]);
        if (a < 0 || b < 0) return false;
        out.push_back(static_cast<char>(a * 16 + b));
    }
    return true;
}

// n deterministic bytes; crosscheck.mjs has the same function
std::string pat(size_t n, unsigned k) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((k + i * 7) & 0xff);
    return s;
}

// ---- the top-level types the script may name -------------------------------------------------------
using Factory = std::function<std::unique_ptr<Lite>()>;
template <class T>
Factory factory() {
    return [] { return std::unique_ptr<Lite>(new T); };
}
const std::map<std::string, Factory>& types() {
    static const std::map<std::string, Factory> t = {
        {"HandshakeMessage", factory<waproto::HandshakeMessage>()},
        {"CertChain", factory<waproto::CertChain>()},
        {"CertChain.NoiseCertificate.Details", factory<waproto::CertChain::NoiseCertificate::Details>()},
        {"ClientPayload", factory<waproto::ClientPayload>()},
        {"DeviceProps", factory<waproto::DeviceProps>()},
        {"ClientPairingProps", factory<waproto::ClientPairingProps>()},
        {"ADVSignedDeviceIdentityHMAC", factory<waproto::ADVSignedDeviceIdentityHMAC>()},
        {"ADVSignedDeviceIdentity", factory<waproto::ADVSignedDeviceIdentity>()},
        {"ADVDeviceIdentity", factory<waproto::ADVDeviceIdentity>()},
        {"ADVKeyIndexList", factory<waproto::ADVKeyIndexList>()},
        {"ADVSignedKeyIndexList", factory<waproto::ADVSignedKeyIndexList>()},
        {"Message", factory<waproto::Message>()},
    };
    return t;
}

// ---- compiled-in cases -------------------------------------------------------------------------------
using waproto::ClientPayload;

void user_agent(ClientPayload::UserAgent& ua) {
    ua.set_platform(ClientPayload::UserAgent::WEB);
    auto* v = ua.mutable_appversion();
    v->set_primary(2);
    v->set_secondary(3000);
    v->set_tertiary(1029496320);
    ua.set_releasechannel(ClientPayload::UserAgent::RELEASE);
    ua.set_osversion("0.1");
    ua.set_device("Desktop");
    ua.set_osbuildnumber("0.1");
    ua.set_localelanguageiso6391("en");
    ua.set_mnc("000");
    ua.set_mcc("000");
    ua.set_localecountryiso31661alpha2("CO");
}

void base_payload(ClientPayload& p) {
    p.set_connecttype(ClientPayload::WIFI_UNKNOWN);
    p.set_connectreason(ClientPayload::USER_ACTIVATED);
    user_agent(*p.mutable_useragent());
    p.mutable_webinfo()->set_websubplatform(ClientPayload::WebInfo::WEB_BROWSER);
}

void device_props(waproto::DeviceProps& d) {
    d.set_os("Ubuntu");
    d.set_platformtype(waproto::DeviceProps::CHROME);
    d.set_requirefullsync(false);
    auto* h = d.mutable_historysyncconfig();
    h->set_storagequotamb(10240);
    h->set_inlineinitialpayloadine2eemsg(true);
    h->set_supportcallloghistory(false);
    h->set_supportbotuseragentchathistory(true);
    h->set_supportmessageassociation(true);
    auto* v = d.mutable_version();
    v->set_primary(10);
    v->set_secondary(15);
    v->set_tertiary(7);
}

void registration(Lite& m) {
    auto& p = static_cast<ClientPayload&>(m);
    base_payload(p);
    p.set_passive(false);
    p.set_pull(false);
    auto* d = p.mutable_devicepairingdata();
    d->set_buildhash(pat(16, 1));
    waproto::DeviceProps props;
    device_props(props);
    d->set_deviceprops(props.SerializeAsString());
    d->set_eregid(std::string("\x00\x00\x30\x39", 4));
    d->set_ekeytype(std::string("\x05", 1));
    d->set_eident(pat(32, 2));
    d->set_eskeyid(std::string("\x00\x00\x01", 3));
    d->set_eskeyval(pat(32, 3));
    d->set_eskeysig(pat(64, 4));
}

void login(Lite& m) {
    auto& p = static_cast<ClientPayload&>(m);
    base_payload(p);
    p.set_passive(true);
    p.set_pull(true);
    p.set_username(573001234567ULL);
    p.set_device(3);
    p.set_liddbmigrated(false);
    p.set_pushname("Gateway ✓");
    p.set_sessionid(-123456);  // sfixed32
    p.add_shards(1);           // packed repeated int32, with a negative (10-byte varint) in it
    p.add_shards(300);
    p.add_shards(-1);
}

void device_props_case(Lite& m) { device_props(static_cast<waproto::DeviceProps&>(m)); }

void adv_hmac(Lite& m) {
    auto& h = static_cast<waproto::ADVSignedDeviceIdentityHMAC&>(m);
    h.set_details(pat(120, 5));
    h.set_hmac(pat(32, 6));
    h.set_accounttype(waproto::E2EE);  // explicitly 0: still written (presence)
}

void adv_signed(Lite& m) {
    auto& s = static_cast<waproto::ADVSignedDeviceIdentity&>(m);
    s.set_details(pat(40, 7));
    s.set_accountsignaturekey(pat(32, 8));
    s.set_accountsignature(pat(64, 9));
    s.set_devicesignature(pat(64, 10));
}

void adv_identity(Lite& m) {
    auto& d = static_cast<waproto::ADVDeviceIdentity&>(m);
    d.set_rawid(3141592653u);
    d.set_timestamp(1764600000);
    d.set_keyindex(7);
    d.set_accounttype(waproto::E2EE);
    d.set_devicetype(waproto::HOSTED);
}

void adv_key_index_list(Lite& m) {
    auto& k = static_cast<waproto::ADVKeyIndexList&>(m);
    k.set_rawid(42);
    k.set_timestamp(1764600000);
    k.set_currentindex(5);
    for (uint32_t i : {0u, 1u, 5u, 300u, 4294967295u}) k.add_validindexes(i);
    k.set_accounttype(waproto::HOSTED);
}

void client_hello(Lite& m) {
    static_cast<waproto::HandshakeMessage&>(m).mutable_clienthello()->set_ephemeral(pat(32, 11));
}

void server_hello(Lite& m) {
    auto* s = static_cast<waproto::HandshakeMessage&>(m).mutable_serverhello();
    s->set_ephemeral(pat(32, 12));
    s->set_static_(pat(48, 13));
    s->set_payload(pat(300, 14));
}

void client_finish(Lite& m) {
    auto* f = static_cast<waproto::HandshakeMessage&>(m).mutable_clientfinish();
    f->set_static_(pat(48, 15));
    f->set_payload(pat(200, 16));
}

void details(waproto::CertChain::NoiseCertificate::Details& d, uint32_t serial, uint32_t issuer, unsigned k) {
    d.set_serial(serial);
    d.set_issuerserial(issuer);
    d.set_key(pat(32, k));
    d.set_notbefore(1764500000);
    d.set_notafter(1767100000);
}

void details_case(Lite& m) { details(static_cast<waproto::CertChain::NoiseCertificate::Details&>(m), 1, 0, 17); }

void cert_chain(Lite& m) {
    auto& c = static_cast<waproto::CertChain&>(m);
    waproto::CertChain::NoiseCertificate::Details leaf, inter;
    details(leaf, 2, 1, 18);
    details(inter, 1, 0, 17);
    c.mutable_leaf()->set_details(leaf.SerializeAsString());
    c.mutable_leaf()->set_signature(pat(64, 19));
    c.mutable_intermediate()->set_details(inter.SerializeAsString());
    c.mutable_intermediate()->set_signature(pat(64, 20));
}

void context_info(waproto::MessageContextInfo& c) {
    c.set_messagesecret(pat(32, 21));
    auto* d = c.mutable_devicelistmetadata();
    d->set_senderkeyhash(pat(10, 22));
    d->set_sendertimestamp(1764600000);
    d->add_senderkeyindexes(0);
    d->add_senderkeyindexes(2);
    d->set_recipientkeyhash(pat(10, 23));
    d->set_recipienttimestamp(1764600001);
}

void extended_text(waproto::Message::ExtendedTextMessage& t) {
    t.set_text("hola 👋 https://example.com");
    auto* c = t.mutable_contextinfo();
    c->set_stanzaid("3EB0C0FFEE0123456789");
    c->set_participant("573001234567@s.whatsapp.net");
    c->mutable_quotedmessage()->set_conversation("quoted");
    c->add_mentionedjid("573001234567@s.whatsapp.net");
    c->add_mentionedjid("12345678901234@lid");
    c->set_forwardingscore(2);
    c->set_isforwarded(true);
    c->set_expiration(604800);
}

void text(Lite& m) {
    auto& msg = static_cast<waproto::Message&>(m);
    extended_text(*msg.mutable_extendedtextmessage());
    context_info(*msg.mutable_messagecontextinfo());
}

void device_sent(Lite& m) {
    auto& msg = static_cast<waproto::Message&>(m);
    auto* d = msg.mutable_devicesentmessage();
    d->set_destinationjid("573009876543@s.whatsapp.net");
    extended_text(*d->mutable_message()->mutable_extendedtextmessage());
    d->set_phash("2:qZ0p");
    context_info(*msg.mutable_messagecontextinfo());
}

void conversation(Lite& m) { static_cast<waproto::Message&>(m).set_conversation("hi"); }

void document(Lite& m) {
    auto* d = static_cast<waproto::Message&>(m).mutable_documentmessage();
    d->set_url("https://mmg.whatsapp.net/v/t62.7119-24/1.enc");
    d->set_mimetype("application/pdf");
    d->set_title("invoice");
    d->set_filesha256(pat(32, 24));
    d->set_filelength(5000000000ULL);  // > 2^32
    d->set_pagecount(3);
    d->set_mediakey(pat(32, 25));
    d->set_filename("invoice.pdf");
    d->set_fileencsha256(pat(32, 26));
    d->set_directpath("/v/t62.7119-24/1.enc");
    d->set_mediakeytimestamp(1764600000);
}

void image(Lite& m) {
    auto* i = static_cast<waproto::Message&>(m).mutable_imagemessage();
    i->set_mimetype("image/jpeg");
    i->set_caption("a picture");
    i->set_filesha256(pat(32, 27));
    i->set_filelength(123456);
    i->set_height(1280);
    i->set_width(960);
    i->set_mediakey(pat(32, 28));
    i->set_jpegthumbnail(pat(200, 29));
    i->set_scanssidecar(pat(40, 30));
    for (uint32_t n : {4096u, 11000u, 70000u}) i->add_scanlengths(n);  // packed repeated uint32
}

void location(Lite& m) {
    auto* l = static_cast<waproto::Message&>(m).mutable_locationmessage();
    l->set_degreeslatitude(4.6097);  // doubles: fixed64 on the wire
    l->set_degreeslongitude(-74.0817);
    l->set_name("Bogotá");
    l->set_address("Cra. 7 #11-10");
}

void reaction(Lite& m) {
    auto* r = static_cast<waproto::Message&>(m).mutable_reactionmessage();
    auto* k = r->mutable_key();
    k->set_remotejid("573001234567@s.whatsapp.net");
    k->set_fromme(true);
    k->set_id("3EB0C0FFEE0123456789");
    r->set_text("👍");
    r->set_sendertimestampms(1764600000123);
}

void revoke(Lite& m) {
    auto* p = static_cast<waproto::Message&>(m).mutable_protocolmessage();
    auto* k = p->mutable_key();
    k->set_remotejid("120363000000000000@g.us");
    k->set_fromme(false);
    k->set_id("ABCDEF");
    k->set_participant("573001234567@s.whatsapp.net");
    p->set_type(waproto::Message::ProtocolMessage::REVOKE);
}

void sender_key(Lite& m) {
    auto& msg = static_cast<waproto::Message&>(m);
    msg.set_conversation("group hello");
    auto* s = msg.mutable_senderkeydistributionmessage();
    s->set_groupid("120363000000000000@g.us");
    s->set_axolotlsenderkeydistributionmessage(pat(80, 31));
}

struct Case {
    const char* type;
    void (*build)(Lite&);
};
const std::map<std::string, Case>& cases() {
    static const std::map<std::string, Case> c = {
        {"registration", {"ClientPayload", registration}},
        {"login", {"ClientPayload", login}},
        {"device-props", {"DeviceProps", device_props_case}},
        {"adv-hmac", {"ADVSignedDeviceIdentityHMAC", adv_hmac}},
        {"adv-signed", {"ADVSignedDeviceIdentity", adv_signed}},
        {"adv-identity", {"ADVDeviceIdentity", adv_identity}},
        {"adv-key-index-list", {"ADVKeyIndexList", adv_key_index_list}},
        {"client-hello", {"HandshakeMessage", client_hello}},
        {"server-hello", {"HandshakeMessage", server_hello}},
        {"client-finish", {"HandshakeMessage", client_finish}},
        {"cert-details", {"CertChain.NoiseCertificate.Details", details_case}},
        {"cert-chain", {"CertChain", cert_chain}},
        {"text", {"Message", text}},
        {"device-sent", {"Message", device_sent}},
        {"conversation", {"Message", conversation}},
        {"document", {"Message", document}},
        {"image", {"Message", image}},
        {"location", {"Message", location}},
        {"reaction", {"Message", reaction}},
        {"revoke", {"Message", revoke}},
        {"sender-key", {"Message", sender_key}},
    };
    return c;
}

// ---- commands ------------------------------------------------------------------------------------------
std::unique_ptr<Lite> build(const Case& c) {
    auto m = types().at(c.type)();
    c.build(*m);
    return m;
}

std::string reencode(const std::string& type, const std::string& h, std::unique_ptr<Lite>& m) {
    auto t = types().find(type);
    if (t == types().end()) return "err unknown type";
    std::string in;
    if (!unhex(h, in)) return "err bad hex";
    m = t->second();
    if (!m->ParseFromString(in)) return "err parse";
    return hex(m->SerializeAsString());
}

std::string run(const std::string& cmd, const std::string& a, const std::string& b) {
    if (cmd == "cases") {
        std::string s;
        for (const auto& c : cases()) s += (s.empty() ? "" : " ") + c.first;
        return s;
    }
    if (cmd == "rt") {
        std::unique_ptr<Lite> m;
        return reencode(a, b, m);
    }
    auto c = cases().find(a);
    if (c == cases().end()) return "err unknown case";
    if (cmd == "enc") return hex(build(c->second)->SerializeAsString());
    if (cmd != "dec") return "err unknown command";
    std::unique_ptr<Lite> m;
    std::string out = reencode(c->second.type, b, m);
    if (out.rfind("err", 0) == 0) return out;
    // serialization is deterministic (field-number order), so equal bytes mean equal messages
    bool same = m->SerializeAsString() == build(c->second)->SerializeAsString();
    return out + (same ? " 1" : " 0");
}

}  // namespace

int main() {
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd, a, b;
        in >> cmd >> a >> b;
        std::cout << run(cmd, a, b) << "\n" << std::flush;
    }
}
