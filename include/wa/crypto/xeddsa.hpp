// XEdDSA ("Curve25519 signature") verification, as WhatsApp uses for its Noise certificate chain and for
// ADV device identities. Delegated to libsignal-protocol-c: never hand-written here.
#pragma once
#include <string_view>

namespace wa {

// pub: 32 raw bytes (no 0x05 prefix); sig: 64 bytes. True only for a valid signature.
bool xeddsa_verify(std::string_view pub, std::string_view msg, std::string_view sig);

}  // namespace wa
