// The link: Noise XX handshake (noise.cpp, cross-checked with Baileys) and the ClientPayload it carries
// (whatsmeow store/clientpayload.go: registration payload for a new device, login payload once paired).
#include "WAProto.pb.h"
#include "ctx.hpp"

namespace wa::link {

namespace {

waproto::DeviceProps_PlatformType platform_type(const std::string& browser) {
    if (browser == "Chrome") return waproto::DeviceProps_PlatformType_CHROME;
    if (browser == "Firefox") return waproto::DeviceProps_PlatformType_FIREFOX;
    if (browser == "Safari") return waproto::DeviceProps_PlatformType_SAFARI;
    if (browser == "Edge") return waproto::DeviceProps_PlatformType_EDGE;
    if (browser == "Opera") return waproto::DeviceProps_PlatformType_OPERA;
    if (browser == "Desktop") return waproto::DeviceProps_PlatformType_DESKTOP;
    return waproto::DeviceProps_PlatformType_UNKNOWN;
}

std::string version_string(const ClientProfile& p) {
    return std::to_string(p.version[0]) + "." + std::to_string(p.version[1]) + "." + std::to_string(p.version[2]);
}

void base_payload(waproto::ClientPayload& cp, const ClientProfile& p) {
    auto* ua = cp.mutable_useragent();
    ua->set_platform(waproto::ClientPayload_UserAgent_Platform_WEB);
    ua->set_releasechannel(waproto::ClientPayload_UserAgent_ReleaseChannel_RELEASE);
    auto* v = ua->mutable_appversion();
    v->set_primary(p.version[0]);
    v->set_secondary(p.version[1]);
    v->set_tertiary(p.version[2]);
    ua->set_mcc("000");
    ua->set_mnc("000");
    ua->set_osversion("0.1");
    ua->set_manufacturer("");
    ua->set_device("Desktop");
    ua->set_osbuildnumber("0.1");
    ua->set_localelanguageiso6391("en");
    ua->set_localecountryiso31661alpha2("US");
    cp.mutable_webinfo()->set_websubplatform(waproto::ClientPayload_WebInfo_WebSubPlatform_WEB_BROWSER);
    cp.set_connecttype(waproto::ClientPayload_ConnectType_WIFI_UNKNOWN);
    cp.set_connectreason(waproto::ClientPayload_ConnectReason_USER_ACTIVATED);
}

std::string device_props(const ClientProfile& p) {
    waproto::DeviceProps dp;
    dp.set_os(p.os);
    dp.mutable_version()->set_primary(0);
    dp.mutable_version()->set_secondary(1);
    dp.mutable_version()->set_tertiary(0);
    dp.set_platformtype(platform_type(p.browser));
    dp.set_requirefullsync(false);
    auto* h = dp.mutable_historysyncconfig();
    h->set_storagequotamb(10240);
    h->set_inlineinitialpayloadine2eemsg(true);
    h->set_supportcallloghistory(false);
    return dp.SerializeAsString();
}

}  // namespace

int qr_platform_code(const ClientProfile& p) {
    // CompanionWebClientType: Chrome 1, Edge 2, Firefox 3, IE 4, Opera 5, Safari 6, Electron 7, UWP 8, other 9.
    if (p.browser == "Chrome") return 1;
    if (p.browser == "Edge") return 2;
    if (p.browser == "Firefox") return 3;
    if (p.browser == "Opera") return 5;
    if (p.browser == "Safari") return 6;
    if (p.browser == "Desktop") return 7;
    return 9;
}

std::string client_payload(const store::Credentials& creds, const ClientProfile& profile) {
    waproto::ClientPayload cp;
    base_payload(cp, profile);
    Jid me;
    if (!creds.me_jid.empty() && Jid::parse(creds.me_jid, me)) {
        cp.set_username(std::stoull(me.user));
        cp.set_device(me.device);
        cp.set_passive(true);
        cp.set_pull(true);
        cp.set_liddbmigrated(true);
        cp.set_lc(1);
        return cp.SerializeAsString();
    }
    auto* reg = cp.mutable_devicepairingdata();
    reg->set_eregid(be_bytes(creds.registration_id, 4));
    reg->set_ekeytype(std::string(1, '\x05'));
    reg->set_eident(creds.identity_pub);
    reg->set_eskeyid(be_bytes(creds.signed_prekey_id, 3));
    reg->set_eskeyval(creds.signed_prekey_pub);
    reg->set_eskeysig(creds.signed_prekey_sig);
    reg->set_buildhash(crypto::md5(version_string(profile)));
    reg->set_deviceprops(device_props(profile));
    cp.set_passive(false);
    cp.set_pull(false);
    return cp.SerializeAsString();
}

bool start_handshake(Session::Ctx& c, const store::Credentials& creds, const SessionConfig& cfg, Actions& out,
                     std::string* err) {
    noise::Handshake::Keys keys;
    keys.noise_priv = creds.noise_priv;
    keys.noise_pub = creds.noise_pub;
    Session::Ctx* ctx = &c;  // the certificate validity window is checked against the wall clock of the hello
    c.handshake = std::make_unique<noise::Handshake>(std::move(keys), cfg.root_pub, cfg.verify,
                                                     [ctx] { return ctx->unix_now; });
    std::string hello = c.handshake->client_hello_frame();
    if (hello.empty()) return *err = "cannot build the client hello", false;
    out.push_back({Action::Write, 0, 0, std::move(hello)});
    return true;
}

bool on_handshake_bytes(Session::Ctx& c, std::string_view payload, const store::Credentials& creds,
                        const SessionConfig& cfg, int64_t unix_s, Actions& out, std::string* err) {
    c.reader.feed(payload);
    std::string body;
    if (!c.reader.next(body)) return c.reader.error() ? (*err = "oversized handshake frame", false) : true;
    c.unix_now = unix_s;
    if (!c.handshake->on_server_hello(body, err)) return false;
    std::string finish = c.handshake->client_finish_frame(client_payload(creds, cfg.profile));
    if (finish.empty()) return *err = "cannot build the client finish", false;
    out.push_back({Action::Write, 0, 0, std::move(finish)});
    c.transport = c.handshake->split();
    c.handshake.reset();
    c.transport_ready = c.transport.valid();
    return c.transport_ready ? true : (*err = "no transport keys after the handshake", false);
}

}  // namespace wa::link
