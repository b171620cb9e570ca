// Signal protocol addresses of WhatsApp devices (docs/wa-protocol.md §7 "Signal addresses").
// No nginx types.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wa/codec/jid.hpp"

namespace wa::signal {

// libsignal's (name, device id). name = the JID's user for a phone number, `user_<domainType>` for a LID
// (`user_1`) and for hosted accounts (`_128`, `_129`); device = the JID's device (0 when it has none).
struct Address {
    std::string name;
    uint32_t device = 0;

    // "name.device": the key of wa::store::Store's session and identity rows (and libsignal-node's
    // ProtocolAddress.toString(), the simulator's).
    std::string to_string() const;

    bool operator==(const Address& o) const { return name == o.name && device == o.device; }
    bool operator!=(const Address& o) const { return !(*this == o); }
};

// The Signal address of a device JID, as whatsmeow types/jid.go SignalAddress/SignalAddressUser: the suffix
// is the domain the server implies (ActualAgent: lid → 1, hosted → 128, hosted.lid → 129, s.whatsapp.net
// → none). A raw agent on s.whatsapp.net (`user_5:2@s.whatsapp.net`) is dropped, as whatsmeow drops it
// (ActualAgent returns 0 for s.whatsapp.net); Baileys rc14 would write `user_5` there.
Address address_of(const Jid& jid);

// Parses `jid` (wa::Jid::parse) and maps it; false when it does not parse.
bool address_of(std::string_view jid, Address& out);

}  // namespace wa::signal
