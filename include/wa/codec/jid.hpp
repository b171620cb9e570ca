// WhatsApp JIDs: the string form `user[_agent][:device]@server` (Baileys' spelling of agents) and,
// for interop, `integrator-user:device@interop`. See docs/wa-protocol.md section 3.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace wa {

namespace jid_server {
constexpr std::string_view kUser = "s.whatsapp.net";  // phone numbers ("PN")
constexpr std::string_view kLid = "lid";
constexpr std::string_view kGroup = "g.us";
constexpr std::string_view kBroadcast = "broadcast";
constexpr std::string_view kNewsletter = "newsletter";
constexpr std::string_view kHosted = "hosted";
constexpr std::string_view kHostedLid = "hosted.lid";
constexpr std::string_view kMessenger = "msgr";
constexpr std::string_view kInterop = "interop";
constexpr std::string_view kBot = "bot";
constexpr std::string_view kLegacyUser = "c.us";
}  // namespace jid_server

// AD_JID domainType byte. Any other value is a raw agent on s.whatsapp.net.
enum JidDomain : uint8_t {
    kDomainWhatsApp = 0,
    kDomainLid = 1,
    kDomainHosted = 128,
    kDomainHostedLid = 129,
};

bool is_known_jid_server(std::string_view server);

// The AD_JID domain byte for a server: 0/1/128/129, or -1 when the server has no domain byte.
int jid_domain_for_server(std::string_view server);

struct Jid {
    std::string user;    // may be empty: "@s.whatsapp.net" is the server JID
    std::string server;
    uint16_t device = 0;
    uint8_t domain_type = 0;  // AD_JID domain: derived from server, or the raw agent (s.whatsapp.net only)
    uint16_t agent = 0;       // raw agent (2..255 except 128/129); 0 = none
    uint16_t integrator = 0;  // interop JIDs only
    bool has_device = false;  // ':device' present in the string form (even ":0"; Baileys then writes AD_JID)

    // Strict parser. Accepts `user[_agent][:device]@server` with a known server (see is_known_jid_server),
    // device a canonical decimal 0..65535 (0..255 unless msgr/interop), agent only on s.whatsapp.net,
    // `integrator-user:device@interop` for interop. The user may not contain '@', ':' or '_'.
    // On failure returns false and leaves `out` untouched.
    static bool parse(std::string_view s, Jid& out);

    // The string form (inverse of parse for every accepted input).
    std::string to_string() const;

    // The same account without device/agent (`user@server`).
    Jid to_non_ad() const;

    bool is_pn() const { return server == jid_server::kUser; }
    bool is_lid() const { return server == jid_server::kLid; }
    bool is_group() const { return server == jid_server::kGroup; }
    bool is_server_jid() const { return user.empty() && server == jid_server::kUser; }

    // The JID an AD_JID (domainType, device, user) denotes: 0 → s.whatsapp.net, 1 → lid, 128 → hosted,
    // 129 → hosted.lid, anything else → s.whatsapp.net with that raw agent. has_device is set.
    static Jid from_ad(uint8_t domain_type, uint8_t device, std::string user);

    bool operator==(const Jid& o) const {
        return user == o.user && server == o.server && device == o.device && domain_type == o.domain_type &&
               agent == o.agent && integrator == o.integrator && has_device == o.has_device;
    }
    bool operator!=(const Jid& o) const { return !(*this == o); }
};

// Canonical unsigned decimal ("0" or no leading zero), value <= max. Used by the JID and node codecs.
bool parse_jid_number(std::string_view s, uint32_t max, uint32_t& out);

}  // namespace wa
