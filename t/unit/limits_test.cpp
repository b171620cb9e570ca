#include <gtest/gtest.h>

#include "wa/api/limits.hpp"

TEST(SessionLimit, DebianDefaultsAndShippedConfig) {
    EXPECT_EQ(wa::session_limit(768, 1024).max, 704u);   // Debian's nginx.conf, systemd's soft limit
    EXPECT_EQ(wa::session_limit(1024, 1024).max, 960u);  // conf/nginx.conf
    EXPECT_EQ(wa::session_limit(1024, 20000).max, 960u);
    EXPECT_EQ(wa::session_limit(1024, 1024).reserve, 64u);
}

TEST(SessionLimit, TheSmallerOfConnectionsAndOpenFiles) {
    EXPECT_EQ(wa::session_limit(16384, 4096).max, 4032u);
    EXPECT_EQ(wa::session_limit(4096, 16384).max, 4032u);
}

TEST(SessionLimit, SmallSettingsKeepHalf) {
    EXPECT_EQ(wa::session_limit(40, 20000).max, 20u);
    EXPECT_EQ(wa::session_limit(100, 20000).max, 50u);
    EXPECT_EQ(wa::session_limit(1, 20000).max, 1u);
    EXPECT_EQ(wa::session_limit(0, 20000).max, 0u);
}
