#include "wa/api/phone.hpp"

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include <exception>
#include <set>
#include <unordered_map>

namespace wa {

namespace {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

// The library logs parse problems to stdout/stderr by default, which would end
// up in nginx's error stream for every bad user input.
PhoneNumberUtil* util() {
    static PhoneNumberUtil* instance = [] {
        PhoneNumberUtil* u = PhoneNumberUtil::GetInstance();
        u->SetLogger(new i18n::phonenumbers::NullLogger());  // ownership passes to the util
        return u;
    }();
    return instance;
}

bool upper_region(std::string_view in, std::string& out) {
    if (in.size() != 2) return false;
    out.clear();
    for (char c : in) {
        if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
        if (c < 'A' || c > 'Z') return false;
        out.push_back(c);
    }
    return true;
}

bool region_supported(const std::string& upper) {
    static const std::set<std::string> regions = [] {
        std::set<std::string> r;
        util()->GetSupportedRegions(&r);
        return r;
    }();
    return regions.count(upper) != 0;
}

// Parses and validates; on success stores E.164 digits without '+'.
bool parse_valid(const std::string& text, const std::string& region, std::string& digits) {
    PhoneNumberUtil* u = util();
    PhoneNumber number;
    if (u->Parse(text, region, &number) != PhoneNumberUtil::NO_PARSING_ERROR) return false;
    if (!u->IsValidNumber(number)) return false;
    std::string e164;
    u->Format(number, PhoneNumberUtil::E164, &e164);
    if (e164.size() < 2 || e164[0] != '+') return false;
    digits = e164.substr(1);
    return true;
}

PhoneResult error(const char* msg) {
    PhoneResult r;
    r.error = msg;
    return r;
}

// The digits (and whether a '+' came before them) in default_region, or the error.
PhoneResult parse_digits(const std::string& digits, bool plus, std::string_view default_region) {
    PhoneResult r;
    if (plus) {
        if (parse_valid("+" + digits, "ZZ", r.digits)) {
            r.ok = true;
            return r;
        }
        return error("not a valid phone number");
    }
    std::string region;
    if (!upper_region(default_region, region) || !region_supported(region)) {
        // Without a usable region only an explicit country code can work.
        if (parse_valid("+" + digits, "ZZ", r.digits)) {
            r.ok = true;
            return r;
        }
        return error("not a valid phone number (no default region; include the country code with '+')");
    }
    if (parse_valid(digits, region, r.digits) || parse_valid("+" + digits, "ZZ", r.digits)) {
        r.ok = true;
        return r;
    }
    return error("not a valid phone number");
}

// libphonenumber's Parse runs ICU regular expressions: ~14 us a number, 39 % of a worker's CPU per send in
// bench/send.pl. A shop writes to the same customers again and again (confirmation, reminder, receipt), so each
// process remembers its answers; bounded (it starts over when full), per thread (the core makes no assumption).
PhoneResult parse_digits_cached(const std::string& digits, bool plus, std::string_view default_region) {
    constexpr size_t kMaxEntries = 8192;  // ~1 MB at most
    thread_local std::unordered_map<std::string, PhoneResult> seen;
    std::string key;
    key.reserve(digits.size() + default_region.size() + 2);
    key.append(plus ? "+" : "").append(digits).append("|").append(default_region);
    auto it = seen.find(key);
    if (it != seen.end()) return it->second;
    PhoneResult r = parse_digits(digits, plus, default_region);
    if (seen.size() >= kMaxEntries) seen.clear();
    seen.emplace(std::move(key), r);
    return r;
}

}  // namespace

bool valid_region(std::string_view region) {
    try {
        std::string upper;
        return upper_region(region, upper) && region_supported(upper);
    } catch (const std::exception&) {
        return false;
    }
}

PhoneResult normalize_phone(std::string_view input, std::string_view default_region) {
    try {
        if (input.empty()) return error("phone number is empty");
        if (input.size() > 32) return error("phone number is too long (max 32 characters)");
        std::string digits;
        bool plus = false;
        for (size_t i = 0; i < input.size(); i++) {
            char c = input[i];
            if (c >= '0' && c <= '9') {
                digits.push_back(c);
            } else if (c == '+') {
                // Only before the first digit, and only once: "+57+1" or "57+1" are typos.
                if (plus || !digits.empty()) return error("'+' is only allowed at the start of a phone number");
                plus = true;
            } else if (c == ' ' || c == '-' || c == '(' || c == ')' || c == '.') {
                continue;
            } else {
                return error("phone number may only contain digits, '+', spaces, dashes, dots and parentheses");
            }
        }
        if (digits.empty()) return error("phone number has no digits");
        return parse_digits_cached(digits, plus, default_region);
    } catch (const std::exception&) {
        return error("phone number could not be processed");
    }
}

}  // namespace wa
