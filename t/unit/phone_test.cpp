#include "wa/api/phone.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

void expect_ok(const char* input, const char* region, const char* want) {
    wa::PhoneResult r = wa::normalize_phone(input, region);
    EXPECT_TRUE(r.ok) << input << " / " << region << ": " << r.error;
    EXPECT_EQ(r.digits, want) << input;
    EXPECT_EQ(r.error, "") << input;
}

void expect_bad(const std::string& input, const char* region) {
    wa::PhoneResult r = wa::normalize_phone(input, region);
    EXPECT_FALSE(r.ok) << input;
    EXPECT_EQ(r.digits, "") << input;
    EXPECT_FALSE(r.error.empty()) << input;
}

TEST(Phone, NationalInDefaultRegion) {
    expect_ok("3001234567", "CO", "573001234567");
    expect_ok("300 123 4567", "CO", "573001234567");
    expect_ok("(300) 123-4567", "co", "573001234567");
    expect_ok("300.123.4567", "CO", "573001234567");
    expect_ok("(650) 253-0000", "US", "16502530000");
}

TEST(Phone, InternationalWithPlus) {
    expect_ok("+57 300 123 4567", "CO", "573001234567");
    expect_ok("+57 300 123 4567", "US", "573001234567");
    expect_ok("+1 (650) 253-0000", "CO", "16502530000");
    expect_ok("+44 20 7946 0958", "", "442079460958");
}

TEST(Phone, CountryCodeWithoutPlus) {
    expect_ok("573001234567", "CO", "573001234567");
    expect_ok("16502530000", "CO", "16502530000");
    expect_ok("57 300 123 4567", "US", "573001234567");
}

TEST(Phone, Invalid) {
    expect_bad("123", "CO");
    expect_bad("+57 12", "CO");
    expect_bad("+99 123456789", "CO");
    expect_bad("", "CO");
    expect_bad("   ", "CO");
    expect_bad("+", "CO");
    expect_bad("300123456a", "CO");
    expect_bad("3001234567\xf0\x9f\x98\x80", "CO");  // emoji
    expect_bad("+57 300 123 4567 ext. 5", "CO");
    expect_bad("57+3001234567", "CO");
    expect_bad("++573001234567", "CO");
    expect_bad(std::string("3001234567\0", 11), "CO");
    expect_bad("3001234567", "");  // national number, no region to read it in
}

TEST(Phone, LengthLimit) {
    // 32 characters of separators around a valid number is fine, 33 is not.
    std::string s32 = "+57 300 123 4567" + std::string(16, ' ');
    ASSERT_EQ(s32.size(), 32u);
    EXPECT_TRUE(wa::normalize_phone(s32, "CO").ok);
    wa::PhoneResult r = wa::normalize_phone(s32 + " ", "CO");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "phone number is too long (max 32 characters)");
}

TEST(Phone, ErrorMessages) {
    EXPECT_EQ(wa::normalize_phone("", "CO").error, "phone number is empty");
    EXPECT_EQ(wa::normalize_phone("abc", "CO").error,
              "phone number may only contain digits, '+', spaces, dashes, dots and parentheses");
    EXPECT_EQ(wa::normalize_phone("123", "CO").error, "not a valid phone number");
}

TEST(Phone, ValidRegion) {
    EXPECT_TRUE(wa::valid_region("CO"));
    EXPECT_TRUE(wa::valid_region("US"));
    EXPECT_TRUE(wa::valid_region("de"));
    EXPECT_FALSE(wa::valid_region(""));
    EXPECT_FALSE(wa::valid_region("C"));
    EXPECT_FALSE(wa::valid_region("COL"));
    EXPECT_FALSE(wa::valid_region("ZZ"));
    EXPECT_FALSE(wa::valid_region("XX"));
    EXPECT_FALSE(wa::valid_region("C1"));
    EXPECT_FALSE(wa::valid_region("001"));
}

}  // namespace

namespace {

// Answers are remembered per (digits, '+', region): a second call, a call after thousands of other numbers
// (the memory starts over when full) and the same digits in another region all answer as the first time.
TEST(Phone, RememberedAnswersAreTheSameAnswers) {
    for (int round = 0; round < 2; round++) {
        expect_ok("3001234567", "CO", "573001234567");
        expect_ok("(650) 253-0000", "US", "16502530000");
        expect_ok("+57 300 123 4567", "US", "573001234567");
        expect_bad("3001234567", "US");  // not a US number, nor with 300 as a country code
        expect_bad("123", "CO");
    }
    EXPECT_EQ(wa::normalize_phone("6502530000", "US").digits, "16502530000");
    EXPECT_FALSE(wa::normalize_phone("6502530000", "CO").ok);
    EXPECT_FALSE(wa::normalize_phone("+6502530000", "US").ok);  // '+' makes 650 a country code
    for (int i = 0; i < 20000; i++) wa::normalize_phone("30012" + std::to_string(10000 + i), "CO");
    expect_ok("3001234567", "CO", "573001234567");
    expect_bad("3001234567", "US");
    EXPECT_EQ(wa::normalize_phone("3001234567", "CO").error, "");
}

}  // namespace
