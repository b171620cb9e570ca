// The webhook outbox of the SQLite store (schema 3): seq per organization, one row per target, due/mark,
// dead listing and replay, clear keeps, purge deletes.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <memory>
#include <string>

#include "wa/store/fsutil.hpp"
#include "wa/store/store.hpp"

using wa::store::Store;
using wa::store::WebhookEvent;

namespace {

class WebhookStoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/wa_hook_test_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        std::string err;
        store_ = wa::store::open_sqlite_store(dir_, false, &err);
        ASSERT_TRUE(store_) << err;
    }
    void TearDown() override {
        store_.reset();
        std::string err;
        EXPECT_TRUE(wa::remove_tree(dir_, &err)) << err;
    }
    uint64_t enqueue(const std::string& org, const std::vector<std::string>& targets, int64_t now, std::string* id = nullptr) {
        std::string err, eid;
        uint64_t seq = 0;
        EXPECT_TRUE(store_->enqueue_webhook(org, "message.received", "{\"text\":\"hola\"}", targets, now, eid, seq, &err))
            << err;
        if (id) *id = eid;
        return seq;
    }
    std::string dir_;
    std::unique_ptr<Store> store_;
};

}  // namespace

TEST_F(WebhookStoreTest, SeqPerOrganizationAndRowPerTarget) {
    std::string err, id1, id2;
    EXPECT_EQ(enqueue("acme", {"http://a/", "http://b/"}, 1000, &id1), 1u);
    EXPECT_EQ(enqueue("acme", {"http://a/"}, 1001, &id2), 2u);
    EXPECT_EQ(enqueue("beta", {"http://a/"}, 1002), 1u);
    EXPECT_EQ(enqueue("acme", {}, 1003), 3u);  // filtered out everywhere: the seq is still taken
    EXPECT_NE(id1, id2);
    EXPECT_EQ(id1.size(), 28u);
    std::vector<std::string> targets;
    ASSERT_TRUE(store_->webhook_targets_due(5000, targets, &err)) << err;
    EXPECT_EQ(targets.size(), 2u);
    std::vector<WebhookEvent> due;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 5000, 10, {}, due, &err)) << err;
    ASSERT_EQ(due.size(), 3u);
    EXPECT_EQ(due[0].id, id1);
    EXPECT_EQ(due[0].seq, 1u);
    EXPECT_EQ(due[0].data, "{\"text\":\"hola\"}");
    EXPECT_EQ(due[2].org, "beta");
    ASSERT_TRUE(store_->due_webhooks("http://a/", 5000, 2, {due[0].n}, due, &err)) << err;
    ASSERT_EQ(due.size(), 2u);
    EXPECT_EQ(due[0].id, id2);
    ASSERT_TRUE(store_->due_webhooks("http://b/", 999, 10, {}, due, &err)) << err;
    EXPECT_TRUE(due.empty());  // not due yet
}

TEST_F(WebhookStoreTest, RetryDeadReplay) {
    std::string err, id;
    enqueue("acme", {"http://a/"}, 1000, &id);
    enqueue("acme", {"http://a/"}, 1000);
    std::vector<WebhookEvent> due;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 1000, 10, {}, due, &err)) << err;
    ASSERT_EQ(due.size(), 2u);
    ASSERT_TRUE(store_->webhook_retry(due[0].n, 3000, "HTTP 500", &err)) << err;
    ASSERT_TRUE(store_->webhook_delivered(due[1].n, &err)) << err;
    std::vector<WebhookEvent> later;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 2000, 10, {}, later, &err)) << err;
    EXPECT_TRUE(later.empty());
    ASSERT_TRUE(store_->due_webhooks("http://a/", 3000, 10, {}, later, &err)) << err;
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].attempts, 1u);
    EXPECT_EQ(later[0].last_error, "HTTP 500");
    ASSERT_TRUE(store_->webhook_dead(later[0].n, "gave up", &err)) << err;
    std::vector<WebhookEvent> dead;
    ASSERT_TRUE(store_->list_dead_webhooks("acme", 0, 10, dead, &err)) << err;
    ASSERT_EQ(dead.size(), 1u);
    EXPECT_EQ(dead[0].id, id);
    EXPECT_EQ(dead[0].state, "dead");
    ASSERT_TRUE(store_->list_dead_webhooks("acme", dead[0].n, 10, dead, &err)) << err;
    EXPECT_TRUE(dead.empty());
    uint64_t n = 0;
    ASSERT_TRUE(store_->replay_webhooks("acme", {"evt_unknown"}, 4000, n, &err)) << err;
    EXPECT_EQ(n, 0u);
    ASSERT_TRUE(store_->replay_webhooks("acme", {}, 4000, n, &err)) << err;
    EXPECT_EQ(n, 1u);
    ASSERT_TRUE(store_->due_webhooks("http://a/", 4000, 10, {}, later, &err)) << err;
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].id, id);
    EXPECT_EQ(later[0].seq, 1u);
    ASSERT_TRUE(store_->count_webhooks("acme", "delivered", n, &err)) << err;
    EXPECT_EQ(n, 1u);
    uint64_t deleted = 0;
    ASSERT_TRUE(store_->expire_webhooks(1001, deleted, &err)) << err;
    EXPECT_EQ(deleted, 1u);
}

// Schema 5: a replay opens a fresh retry window without touching the event's timestamp or its attempt count,
// and only to the URLs given; park_webhooks parks pending rows of URLs that are not targets any more.
TEST_F(WebhookStoreTest, ReplayOpensAWindowParkDeadensUnknownUrls) {
    std::string err, id;
    enqueue("acme", {"http://a/", "http://gone/"}, 1000, &id);
    std::vector<WebhookEvent> due;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 1000, 10, {}, due, &err)) << err;
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].window_start_ms, 1000);  // the window opens at created_at
    EXPECT_EQ(due[0].replays, 0u);
    ASSERT_TRUE(store_->webhook_retry(due[0].n, 1500, "HTTP 500", &err)) << err;
    ASSERT_TRUE(store_->webhook_retry(due[0].n, 1600, "HTTP 500", &err)) << err;
    ASSERT_TRUE(store_->webhook_dead(due[0].n, "gave up", &err)) << err;
    std::vector<wa::store::ParkedWebhooks> parked;
    ASSERT_TRUE(store_->park_webhooks({"http://a/"}, "not configured", parked, &err)) << err;
    ASSERT_EQ(parked.size(), 1u);
    EXPECT_EQ(parked[0].org, "acme");
    EXPECT_EQ(parked[0].target, "http://gone/");
    EXPECT_EQ(parked[0].n, 1u);
    ASSERT_TRUE(store_->park_webhooks({"http://a/"}, "not configured", parked, &err)) << err;
    EXPECT_TRUE(parked.empty());  // nothing pending is left for it
    std::vector<WebhookEvent> dead;
    ASSERT_TRUE(store_->list_dead_webhooks("acme", 0, 10, dead, &err)) << err;
    ASSERT_EQ(dead.size(), 2u);
    EXPECT_EQ(dead[1].target, "http://gone/");
    EXPECT_EQ(dead[1].last_error, "not configured");
    uint64_t n = 0, skipped = 0;
    ASSERT_TRUE(store_->replay_webhooks_to("acme", {}, 9000, {"http://a/"}, n, skipped, &err)) << err;
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(skipped, 1u);  // http://gone/ is not a target: it stays dead
    ASSERT_TRUE(store_->due_webhooks("http://a/", 9000, 10, {}, due, &err)) << err;
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].id, id);
    EXPECT_EQ(due[0].created_at_ms, 1000);  // the envelope's timestamp stays
    EXPECT_EQ(due[0].window_start_ms, 9000);  // a fresh window
    EXPECT_EQ(due[0].attempts, 3u);  // attempts count on
    EXPECT_EQ(due[0].window_attempts, 3u);
    EXPECT_EQ(due[0].replays, 1u);
    ASSERT_TRUE(store_->list_dead_webhooks("acme", 0, 10, dead, &err)) << err;
    ASSERT_EQ(dead.size(), 1u);
    ASSERT_TRUE(store_->replay_webhooks_to("acme", {}, 9500, {"http://a/", "http://gone/"}, n, skipped, &err)) << err;
    EXPECT_EQ(n, 1u);  // once the URL is configured again
    EXPECT_EQ(skipped, 0u);
}

TEST_F(WebhookStoreTest, ClearKeepsPurgeDeletesTargetsFollowTheGeneration) {
    std::string err;
    enqueue("acme", {"http://a/"}, 1000);
    ASSERT_TRUE(store_->put_webhook_target("acme", "http://mine/", "message.received", &err)) << err;
    std::vector<std::array<std::string, 3>> t;
    ASSERT_TRUE(store_->load_webhook_targets(t, &err)) << err;
    ASSERT_EQ(t.size(), 1u);
    EXPECT_EQ(t[0][1], "http://mine/");
    ASSERT_TRUE(store_->clear_org("acme", &err)) << err;
    ASSERT_TRUE(store_->load_webhook_targets(t, &err)) << err;
    EXPECT_TRUE(t.empty());
    uint64_t n = 9;
    ASSERT_TRUE(store_->count_webhooks("acme", "", n, &err)) << err;
    EXPECT_EQ(n, 0u);  // the live generation has none; the cleared one keeps its row
    EXPECT_EQ(enqueue("acme", {"http://a/"}, 2000), 2u);  // seq goes on across generations
    std::vector<WebhookEvent> due;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 5000, 10, {}, due, &err)) << err;
    EXPECT_EQ(due.size(), 2u);
    ASSERT_TRUE(store_->purge_org("acme", &err)) << err;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 5000, 10, {}, due, &err)) << err;
    EXPECT_TRUE(due.empty());
    EXPECT_EQ(enqueue("acme", {"http://a/"}, 6000), 1u);
}

TEST_F(WebhookStoreTest, EnqueueIsPartOfTheGroupTransaction) {
    std::string err;
    ASSERT_TRUE(store_->begin(&err)) << err;
    enqueue("acme", {"http://a/"}, 1000);
    store_->rollback();
    std::vector<WebhookEvent> due;
    ASSERT_TRUE(store_->due_webhooks("http://a/", 5000, 10, {}, due, &err)) << err;
    EXPECT_TRUE(due.empty());
    EXPECT_EQ(enqueue("acme", {"http://a/"}, 1000), 1u);  // the rolled-back seq is not lost as a gap
}
