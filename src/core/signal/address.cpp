// Signal addresses of WhatsApp devices (whatsmeow types/jid.go SignalAddress, SignalAddressUser).
#include "wa/signal/address.hpp"

#include <new>

namespace wa::signal {

std::string Address::to_string() const {
    std::string s;
    try {
        s.reserve(name.size() + 11);
        s += name;
        s += '.';
        s += std::to_string(device);
    } catch (const std::bad_alloc&) {
        s.clear();
    }
    return s;
}

Address address_of(const Jid& jid) {
    Address a;
    try {
        a.name = jid.user;
        // whatsmeow ActualAgent: the server's domain (lid 1, hosted 128, hosted.lid 129; s.whatsapp.net 0, so a
        // raw agent there is dropped); other servers keep their raw agent, which wa::Jid only has on
        // s.whatsapp.net, hence none.
        int domain = jid_domain_for_server(jid.server);
        if (domain > 0) {
            a.name += '_';
            a.name += std::to_string(domain);
        }
    } catch (const std::bad_alloc&) {
        a.name.clear();
    }
    a.device = jid.device;
    return a;
}

bool address_of(std::string_view jid, Address& out) {
    Jid j;
    if (!Jid::parse(jid, j)) return false;
    out = address_of(j);
    return true;
}

}  // namespace wa::signal
