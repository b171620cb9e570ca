#include <gtest/gtest.h>

#include <set>

#include "wa/session.hpp"
#include "wa/state_file.hpp"

using wa::Action;
using wa::Session;
using wa::State;

namespace {

wa::SessionConfig cfg(double r = 0.5) {
    wa::SessionConfig c;
    c.server_url = "wss://example.test/ws/chat";
    c.handshake_timeout_ms = 20000;
    c.random = [r] { return r; };
    return c;
}

bool has(const wa::Actions& a, Action::Kind k) {
    for (const auto& x : a)
        if (x.kind == k) return true;
    return false;
}

const Action* find(const wa::Actions& a, Action::Kind k) {
    for (const auto& x : a)
        if (x.kind == k) return &x;
    return nullptr;
}

}  // namespace

TEST(Backoff, DoublesFromTwoSecondsUpToThirty) {
    wa::Backoff b;
    EXPECT_EQ(b.delay_ms(1, 0.5), 2000u);
    EXPECT_EQ(b.delay_ms(2, 0.5), 4000u);
    EXPECT_EQ(b.delay_ms(3, 0.5), 8000u);
    EXPECT_EQ(b.delay_ms(4, 0.5), 16000u);
    EXPECT_EQ(b.delay_ms(5, 0.5), 30000u);
    EXPECT_EQ(b.delay_ms(500, 0.5), 30000u);
}

TEST(Backoff, JitterStaysWithinTwentyPercent) {
    wa::Backoff b;
    EXPECT_EQ(b.delay_ms(1, 0.0), 1600u);
    EXPECT_EQ(b.delay_ms(1, 1.0), 2400u);
    EXPECT_EQ(b.delay_ms(5, 0.0), 24000u);
    EXPECT_EQ(b.delay_ms(5, 1.0), 36000u);
}

// With min == max the nominal delay never changes, so any difference between retries is the jitter. No
// `random` is injected: the session's own generator is used, as in the helper.
TEST(Backoff, JitterVariesWithTheRealRandomSource) {
    wa::SessionConfig c;
    c.backoff.base_ms = c.backoff.cap_ms = 10000;
    std::set<uint64_t> one_session, many_sessions;
    Session s(c);
    uint64_t now = 0;
    s.start(now, 100);
    for (int i = 0; i < 20; i++) {
        wa::Actions failed = s.on_transport_error(now, 100, "refused");
        const Action* t = find(failed, Action::SetTimer);
        ASSERT_NE(t, nullptr);
        uint64_t delay = t->at_ms - now;
        EXPECT_GE(delay, 8000u);
        EXPECT_LE(delay, 12000u);
        one_session.insert(delay);
        now = t->at_ms;
        ASSERT_TRUE(has(s.on_timer(now, 100), Action::Connect));
    }
    for (int i = 0; i < 20; i++) {
        Session other(c);
        other.start(0, 100);
        wa::Actions failed = other.on_transport_error(0, 100, "refused");
        const Action* t = find(failed, Action::SetTimer);
        ASSERT_NE(t, nullptr);
        many_sessions.insert(t->at_ms);
    }
    // 20 draws from 4001 values: all but a handful distinct unless the jitter is broken.
    EXPECT_GE(one_session.size(), 15u) << "20 retries of one session";
    EXPECT_GE(many_sessions.size(), 15u) << "first retries of 20 sessions";
}

TEST(Session, StartConnectsAndIsIdempotent) {
    Session s(cfg());
    auto a = s.start(1000, 100);
    EXPECT_EQ(s.status().state, State::Connecting);
    EXPECT_TRUE(s.status().wanted);
    EXPECT_TRUE(has(a, Action::Connect));
    EXPECT_TRUE(has(a, Action::Persist));
    EXPECT_TRUE(has(a, Action::Publish));
    auto again = s.start(1100, 100);
    EXPECT_FALSE(has(again, Action::Connect));
    EXPECT_EQ(s.status().state, State::Connecting);
}

TEST(Session, OpenSocketWithoutHandshakeTimesOutAndBacksOff) {
    Session s(cfg());
    s.start(0, 100);
    auto open = s.on_transport_open(500, 100);
    const Action* t = find(open, Action::SetTimer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->at_ms, 20500u);
    EXPECT_EQ(s.status().state, State::Connecting);

    auto to = s.on_timer(20500, 120);
    const Action* close = find(to, Action::Close);
    ASSERT_NE(close, nullptr);
    EXPECT_EQ(close->code, 1000);
    EXPECT_EQ(s.status().state, State::Reconnecting);
    EXPECT_EQ(s.status().retry_count, 1u);
    EXPECT_NE(s.status().last_error.find("no WhatsApp handshake"), std::string::npos);
    EXPECT_NE(s.status().last_error.find("wss://example.test/ws/chat"), std::string::npos);
    const Action* retry = find(to, Action::SetTimer);
    ASSERT_NE(retry, nullptr);
    EXPECT_EQ(retry->at_ms, 22500u);
    EXPECT_EQ(s.status().next_retry_at, 122);

    auto dial = s.on_timer(22500, 122);
    EXPECT_TRUE(has(dial, Action::Connect));
    EXPECT_EQ(s.status().state, State::Reconnecting);  // still retrying, per the contract
    EXPECT_EQ(s.status().next_retry_at, 0);
}

TEST(Session, ErrorsGrowTheBackoffAndKeepTheReason) {
    Session s(cfg());
    s.start(0, 0);
    uint64_t now = 0;
    uint64_t expected[] = {2000, 4000, 8000, 16000, 30000, 30000};
    for (uint64_t e : expected) {
        auto a = s.on_transport_error(now, 0, "connect() failed: Connection refused");
        const Action* t = find(a, Action::SetTimer);
        ASSERT_NE(t, nullptr);
        EXPECT_EQ(t->at_ms - now, e);
        now = t->at_ms;
        EXPECT_TRUE(has(s.on_timer(now, 0), Action::Connect));
    }
    EXPECT_EQ(s.status().retry_count, 6u);
    EXPECT_EQ(s.status().last_error, "connect() failed: Connection refused");
}

TEST(Session, StartDuringBackoffDialsAtOnce) {
    Session s(cfg());
    s.start(0, 0);
    s.on_transport_error(10, 0, "refused");
    auto a = s.start(20, 0);
    EXPECT_TRUE(has(a, Action::CancelTimer));
    EXPECT_TRUE(has(a, Action::Connect));
}

TEST(Session, StaleEventsAreIgnored) {
    Session s(cfg());
    EXPECT_TRUE(s.on_transport_error(0, 0, "late").empty());
    EXPECT_TRUE(s.on_transport_open(0, 0).empty());
    EXPECT_TRUE(s.on_timer(0, 0).empty());
    EXPECT_EQ(s.status().state, State::Disconnected);
}

TEST(Session, LogoutDeletesStateAndClearMovesItAside) {
    Session s(cfg());
    s.start(0, 0);
    s.on_transport_open(1, 0);
    auto out = s.logout(2, 5);
    EXPECT_TRUE(has(out, Action::Close));
    EXPECT_TRUE(has(out, Action::DeleteState));
    EXPECT_FALSE(has(out, Action::MoveStateAside));
    EXPECT_EQ(s.status().state, State::LoggedOut);
    EXPECT_FALSE(s.status().wanted);

    Session c(cfg());
    c.start(0, 0);
    auto cl = c.clear(1, 5);
    EXPECT_TRUE(has(cl, Action::MoveStateAside));
    EXPECT_FALSE(has(cl, Action::DeleteState));
    EXPECT_EQ(c.status().state, State::Disconnected);
    EXPECT_EQ(c.status().retry_count, 0u);
}

TEST(Session, ShutdownClosesGoingAwayAndKeepsWanted) {
    Session s(cfg());
    s.start(0, 0);
    s.on_transport_open(1, 0);
    auto out = s.shutdown(2, 0);
    const Action* close = find(out, Action::Close);
    ASSERT_NE(close, nullptr);
    EXPECT_EQ(close->code, 1001);
    EXPECT_TRUE(has(out, Action::Persist));
    EXPECT_TRUE(s.status().wanted);
}

TEST(StateFile, RoundTrips) {
    wa::SessionStatus st;
    st.state = State::Reconnecting;
    st.wanted = true;
    st.phone = "573001234567";
    st.last_error = "Hola 👋 \"quoted\"";
    st.retry_count = 7;
    st.connected_at = 1700000000;
    std::string text = wa::session_file_json("org-23", st);
    wa::SessionStatus back;
    std::string err;
    ASSERT_TRUE(wa::parse_session_file(text, "org-23", back, err)) << err;
    EXPECT_EQ(back.state, State::Reconnecting);
    EXPECT_TRUE(back.wanted);
    EXPECT_EQ(back.phone, "573001234567");
    EXPECT_EQ(back.last_error, st.last_error);
    EXPECT_EQ(back.retry_count, 7u);
    EXPECT_EQ(back.connected_at, 1700000000);
}

TEST(StateFile, RejectsCorruptOrForeignFiles) {
    wa::SessionStatus back;
    std::string err;
    EXPECT_FALSE(wa::parse_session_file("{not json", "a", back, err));
    EXPECT_FALSE(wa::parse_session_file(wa::session_file_json("other", wa::SessionStatus{}), "a", back, err));
    EXPECT_NE(err.find("does not match"), std::string::npos);
    EXPECT_FALSE(wa::parse_session_file("{\"version\":2}", "a", back, err));
    EXPECT_FALSE(wa::parse_session_file(
        "{\"version\":1,\"organization_id\":\"a\",\"status\":\"flying\"}", "a", back, err));
}

TEST(Session, ShutdownAfterLogoutOrClearSavesNothing) {
    Session s(cfg());
    s.start(0, 0);
    s.logout(1, 0);
    EXPECT_FALSE(has(s.shutdown(2, 0), Action::Persist));
    Session c(cfg());
    c.start(0, 0);
    c.clear(1, 0);
    EXPECT_FALSE(has(c.shutdown(2, 0), Action::Persist));
}
