// Phone number normalisation for the send API (libphonenumber).
#pragma once

#include <string>
#include <string_view>

namespace wa {

struct PhoneResult {
    bool ok = false;
    std::string digits;  // E.164 without the leading '+', e.g. "573001234567"
    std::string error;   // human readable, suitable for an API error body
};

// Accepts digits with an optional leading '+' and the usual separators
// (spaces, '-', '(', ')', '.'), at most 32 characters. Numbers without '+' are
// read in `default_region` (ISO 3166 alpha-2, e.g. "CO"); if that does not give
// a valid number but the digits are valid with a leading '+', the latter wins,
// because users often type the country code without '+'.
PhoneResult normalize_phone(std::string_view input, std::string_view default_region);

// True for a two-letter region libphonenumber has metadata for (case-insensitive).
bool valid_region(std::string_view region);

}  // namespace wa
