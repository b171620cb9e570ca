#include "wa/codec/jid.hpp"

#include <new>

namespace wa {

bool is_known_jid_server(std::string_view s) {
    using namespace jid_server;
    return s == kUser || s == kLid || s == kGroup || s == kBroadcast || s == kNewsletter || s == kHosted ||
           s == kHostedLid || s == kMessenger || s == kInterop || s == kBot || s == kLegacyUser;
}

int jid_domain_for_server(std::string_view server) {
    if (server == jid_server::kUser) return kDomainWhatsApp;
    if (server == jid_server::kLid) return kDomainLid;
    if (server == jid_server::kHosted) return kDomainHosted;
    if (server == jid_server::kHostedLid) return kDomainHostedLid;
    return -1;
}

bool parse_jid_number(std::string_view s, uint32_t max, uint32_t& out) {
    if (s.empty() || s.size() > 10) return false;
    if (s.size() > 1 && s[0] == '0') return false;
    uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + uint64_t(c - '0');
    }
    if (v > max) return false;
    out = uint32_t(v);
    return true;
}

bool Jid::parse(std::string_view s, Jid& out) {
    try {
        size_t at = s.find('@');
        if (at == std::string_view::npos) return false;
        std::string_view server = s.substr(at + 1);
        std::string_view left = s.substr(0, at);
        if (!is_known_jid_server(server)) return false;
        bool wide = server == jid_server::kMessenger || server == jid_server::kInterop;

        Jid j;
        j.server = std::string(server);
        std::string_view ua = left;
        size_t colon = left.find(':');
        if (colon != std::string_view::npos) {
            uint32_t dev = 0;
            if (!parse_jid_number(left.substr(colon + 1), wide ? 0xFFFF : 0xFF, dev)) return false;
            j.device = uint16_t(dev);
            j.has_device = true;
            ua = left.substr(0, colon);
        }
        if (server == jid_server::kInterop && j.has_device) {
            size_t dash = ua.find('-');
            uint32_t integ = 0;
            if (dash == std::string_view::npos || !parse_jid_number(ua.substr(0, dash), 0xFFFF, integ)) return false;
            j.integrator = uint16_t(integ);
            ua = ua.substr(dash + 1);
        }
        size_t us = ua.find('_');
        if (us != std::string_view::npos) {
            uint32_t agent = 0;
            if (server != jid_server::kUser || !parse_jid_number(ua.substr(us + 1), 0xFF, agent)) return false;
            if (agent == kDomainWhatsApp || agent == kDomainLid || agent == kDomainHosted ||
                agent == kDomainHostedLid)
                return false;
            j.agent = uint16_t(agent);
            ua = ua.substr(0, us);
        }
        j.user = std::string(ua);
        int dom = jid_domain_for_server(server);
        j.domain_type = j.agent ? uint8_t(j.agent) : dom > 0 ? uint8_t(dom) : 0;
        out = std::move(j);
        return true;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

std::string Jid::to_string() const {
    std::string s;
    try {
        if (server == jid_server::kInterop && has_device) {
            s += std::to_string(integrator);
            s += '-';
        }
        s += user;
        if (agent) {
            s += '_';
            s += std::to_string(agent);
        }
        if (has_device) {
            s += ':';
            s += std::to_string(device);
        }
        s += '@';
        s += server;
    } catch (const std::bad_alloc&) {
        s.clear();
    }
    return s;
}

Jid Jid::to_non_ad() const {
    Jid j;
    try {
        j.user = user;
        j.server = server;
    } catch (const std::bad_alloc&) {
        return Jid();
    }
    int dom = jid_domain_for_server(server);
    j.domain_type = dom > 0 ? uint8_t(dom) : 0;
    return j;
}

Jid Jid::from_ad(uint8_t domain_type, uint8_t device, std::string user) {
    Jid j;
    j.user = std::move(user);
    j.device = device;
    j.has_device = true;
    j.domain_type = domain_type;
    switch (domain_type) {
    case kDomainWhatsApp: j.server = std::string(jid_server::kUser); break;
    case kDomainLid: j.server = std::string(jid_server::kLid); break;
    case kDomainHosted: j.server = std::string(jid_server::kHosted); break;
    case kDomainHostedLid: j.server = std::string(jid_server::kHostedLid); break;
    default:
        j.server = std::string(jid_server::kUser);
        j.agent = domain_type;
        break;
    }
    return j;
}

}  // namespace wa
