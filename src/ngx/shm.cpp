// The shared-memory zone: organization status table (written by the helper, read by workers without any
// IPC) and the bounded command queue. Every access holds the slab pool's mutex, which the master
// force-unlocks if a process dies holding it.

#include <openssl/rand.h>

#include "wa_module.hpp"

#include <cstddef>

#include "wa/api/api.hpp"

ngx_int_t wa_shm_init_zone(ngx_shm_zone_t* zone, void* data) {
    auto* ctx = static_cast<wa_zone_ctx_t*>(zone->data);
    auto* octx = static_cast<wa_zone_ctx_t*>(data);
    if (octx) {
        // Reload with the same name and size: keep the table, the queue and the doorbell token, so that
        // old-generation workers and the new helper still find each other.
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }
    ctx->shpool = reinterpret_cast<ngx_slab_pool_t*>(zone->shm.addr);
    if (zone->shm.exists) {
        ctx->sh = static_cast<wa_shm_t*>(ctx->shpool->data);
        return NGX_OK;
    }
    auto* sh = static_cast<wa_shm_t*>(ngx_slab_calloc(ctx->shpool, sizeof(wa_shm_t)));
    if (sh == NULL) return NGX_ERROR;
    ctx->shpool->data = sh;
    ctx->sh = sh;
    sh->layout = WA_SHM_LAYOUT;
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) return NGX_ERROR;
    ngx_hex_dump(sh->token, rnd, sizeof rnd);
    sh->token[16] = '\0';
    // Session tokens are signed with this key: every token dies with the zone (an nginx restart, a new size).
    if (RAND_bytes(sh->token_key, sizeof sh->token_key) != 1) return NGX_ERROR;
    ngx_rbtree_init(&sh->org_tree, &sh->org_sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->orgs);
    ngx_queue_init(&sh->pending);
    ngx_queue_init(&sh->taken);
    ngx_queue_init(&sh->done);
    ngx_rbtree_init(&sh->rate_tree, &sh->rate_sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->rate_lru);
    sh->next_cmd_id = 1;
    // Error messages of the slab allocator name the zone instead of a bare "ngx_slab_alloc() failed".
    size_t len = sizeof(" in whatsapp_zone \"\"") + zone->shm.name.len;
    ctx->shpool->log_ctx = static_cast<u_char*>(ngx_slab_alloc(ctx->shpool, len));
    if (ctx->shpool->log_ctx) ngx_sprintf(ctx->shpool->log_ctx, " in whatsapp_zone \"%V\"%Z", &zone->shm.name);
    ctx->shpool->log_nomem = 0;
    return NGX_OK;
}

wa_shm_org_t* wa_shm_org_find(wa_zone_ctx_t* z, const u_char* id, size_t len) {
    ngx_str_t name = {len, const_cast<u_char*>(id)};
    uint32_t hash = ngx_crc32_short(const_cast<u_char*>(id), len);
    auto* sn = ngx_str_rbtree_lookup(&z->sh->org_tree, &name, hash);
    return reinterpret_cast<wa_shm_org_t*>(sn);
}

// <0, 0, >0 as position (key, str) sorts before, at or after node `n`, in ngx_str_rbtree_insert_value's order.
static ngx_int_t wa_str_node_cmp(ngx_rbtree_key_t key, const ngx_str_t& str, ngx_str_node_t* n) {
    if (key != n->node.key) return key < n->node.key ? -1 : 1;
    return ngx_memn2cmp(str.data, n->str.data, str.len, n->str.len);
}

wa_shm_org_t* wa_shm_org_after(wa_zone_ctx_t* z, const u_char* id, size_t len) {
    ngx_rbtree_t* tree = &z->sh->org_tree;
    ngx_rbtree_node_t* node = tree->root;
    if (node == tree->sentinel) return NULL;
    if (len == 0) return reinterpret_cast<wa_shm_org_t*>(ngx_rbtree_min(node, tree->sentinel));
    ngx_str_t str = {len, const_cast<u_char*>(id)};
    ngx_rbtree_key_t key = ngx_crc32_short(str.data, len);
    ngx_rbtree_node_t* best = NULL;
    while (node != tree->sentinel) {
        if (wa_str_node_cmp(key, str, reinterpret_cast<ngx_str_node_t*>(node)) < 0) {
            best = node;
            node = node->left;
        } else {
            node = node->right;
        }
    }
    return reinterpret_cast<wa_shm_org_t*>(best);
}

wa_shm_org_t* wa_shm_org_next(wa_zone_ctx_t* z, wa_shm_org_t* o) {
    return reinterpret_cast<wa_shm_org_t*>(ngx_rbtree_next(&z->sh->org_tree, &o->sn.node));
}

wa_shm_org_t* wa_shm_org_create(wa_zone_ctx_t* z, const u_char* id, size_t len) {
    if (len == 0 || len > WA_ID_MAX) return NULL;
    // New organizations never take the last pages: commands (logout, clear-session) must still fit in a full
    // zone, or an operator could not stop anything without a reload.
    if (z->shpool->pfree < WA_SHM_RESERVE_PAGES) return NULL;
    auto* o = static_cast<wa_shm_org_t*>(ngx_slab_calloc_locked(z->shpool, offsetof(wa_shm_org_t, id) + len));
    if (o == NULL) return NULL;
    ngx_memcpy(o->id, id, len);
    o->sn.str.len = len;
    o->sn.str.data = o->id;
    o->sn.node.key = ngx_crc32_short(o->id, len);
    ngx_rbtree_insert(&z->sh->org_tree, &o->sn.node);
    ngx_queue_insert_tail(&z->sh->orgs, &o->link);
    z->sh->org_count++;
    o->created_at = ngx_time();
    return o;
}

void wa_shm_cmd_free(wa_zone_ctx_t* z, wa_shm_cmd_t* cmd) {
    ngx_queue_remove(&cmd->link);
    if (cmd->state == WA_CMD_NEW) z->sh->pending_count--;
    if (cmd->req) ngx_slab_free_locked(z->shpool, cmd->req);
    if (cmd->resp) ngx_slab_free_locked(z->shpool, cmd->resp);
    ngx_slab_free_locked(z->shpool, cmd);
}

bool wa_shm_set_bytes(wa_zone_ctx_t* z, u_char** dst, uint32_t* dst_len, const std::string& v) {
    if (*dst) ngx_slab_free_locked(z->shpool, *dst);
    *dst = NULL;
    *dst_len = 0;
    if (v.empty()) return true;
    *dst = static_cast<u_char*>(ngx_slab_alloc_locked(z->shpool, v.size()));
    if (*dst == NULL) return false;
    ngx_memcpy(*dst, v.data(), v.size());
    *dst_len = static_cast<uint32_t>(v.size());
    return true;
}

bool wa_shm_set_text(wa_zone_ctx_t* z, u_char** dst, uint32_t* dst_len, const std::string& v, size_t cap) {
    size_t n = v.size() < cap ? v.size() : cap;
    if (n == *dst_len && (n == 0 || ngx_memcmp(*dst, v.data(), n) == 0)) return true;
    return wa_shm_set_bytes(z, dst, dst_len, v.substr(0, n));
}

void wa_shm_org_purge(wa_zone_ctx_t* z, wa_shm_org_t* o) {
    std::string none;
    wa_shm_set_bytes(z, &o->last_error, &o->last_error_len, none);
    wa_shm_set_bytes(z, &o->qr_text, &o->qr_text_len, none);
    wa_shm_set_bytes(z, &o->qr_url, &o->qr_url_len, none);
    wa_shm_set_bytes(z, &o->status_doc, &o->status_doc_len, none);
    wa_shm_set_bytes(z, &o->qr_doc, &o->qr_doc_len, none);
    o->state = 0;  // wa::State::Disconnected
    o->wanted = 0;
    o->retry_count = 0;
    o->connected_at = o->state_since = o->next_retry_at = o->qr_expires_at = o->restricted_until = 0;
    o->phone_len = 0;
    ngx_memzero(&o->metrics, sizeof o->metrics);
    o->today = 0;
    o->sent_today = o->failed_today = 0;
    o->webhooks_delivered = o->webhooks_failed = o->webhooks_dead = 0;
    o->updated_at = ngx_time();
    o->version++;
    o->change_seq = o->dash_seq = o->qr_seq = ++z->sh->events_seq;
}

void wa_shm_org_view(const wa_shm_org_t* o, wa::api::StatusView& v, bool with_qr) {
    v.org.assign(reinterpret_cast<const char*>(o->id), o->sn.str.len);
    v.status.state = static_cast<wa::State>(o->state);
    v.status.wanted = o->wanted;
    v.status.retry_count = o->retry_count;
    v.status.connected_at = o->connected_at;
    v.status.state_since = o->state_since;
    v.status.next_retry_at = o->next_retry_at;
    v.status.restricted_until = o->restricted_until;
    v.status.phone.assign(reinterpret_cast<const char*>(o->phone), o->phone_len);
    if (o->last_error) v.status.last_error.assign(reinterpret_cast<const char*>(o->last_error), o->last_error_len);
    if (o->qr_text) v.status.qr_text.assign(reinterpret_cast<const char*>(o->qr_text), o->qr_text_len);
    v.qr_expires_at = o->qr_expires_at;
    if (with_qr && o->qr_url) v.qr_data_url.assign(reinterpret_cast<const char*>(o->qr_url), o->qr_url_len);
}

static void wa_rate_free(wa_zone_ctx_t* z, wa_shm_rate_t* b) {
    ngx_rbtree_delete(&z->sh->rate_tree, &b->sn.node);
    ngx_queue_remove(&b->lru);
    ngx_slab_free_locked(z->shpool, b);
    z->sh->rate_buckets--;
}

// Frees up to `max` buckets that are full again, oldest first; the first one still in use ends the walk.
static void wa_rate_expire(wa_zone_ctx_t* z, const wa::RateLimit& limit, uint64_t now_ms, ngx_uint_t max) {
    uint64_t idle = limit.refill_ms();
    while (max-- && !ngx_queue_empty(&z->sh->rate_lru)) {
        auto* b = ngx_queue_data(ngx_queue_last(&z->sh->rate_lru), wa_shm_rate_t, lru);
        if (now_ms < b->bucket.last_ms || now_ms - b->bucket.last_ms < idle) return;
        wa_rate_free(z, b);
    }
}

static wa_shm_rate_t* wa_rate_find_or_create(wa_zone_ctx_t* z, const wa::RateLimit& limit, const std::string& org,
                                              uint64_t now_ms) {
    ngx_str_t name = {org.size(), reinterpret_cast<u_char*>(const_cast<char*>(org.data()))};
    uint32_t hash = ngx_crc32_short(name.data, name.len);
    auto* found = reinterpret_cast<wa_shm_rate_t*>(ngx_str_rbtree_lookup(&z->sh->rate_tree, &name, hash));
    if (found) return found;
    if (org.empty() || org.size() > WA_ID_MAX) return NULL;
    // Buckets may use half of the pages kept for commands, after dropping every bucket that is full again.
    if (z->shpool->pfree < WA_SHM_RESERVE_PAGES) wa_rate_expire(z, limit, now_ms, NGX_MAX_UINT32_VALUE);
    if (z->shpool->pfree < WA_SHM_RESERVE_PAGES / 2) return NULL;
    auto* b = static_cast<wa_shm_rate_t*>(ngx_slab_calloc_locked(z->shpool, sizeof(wa_shm_rate_t)));
    if (b == NULL) return NULL;
    ngx_memcpy(b->id, org.data(), org.size());
    b->sn.str.len = org.size();
    b->sn.str.data = b->id;
    b->sn.node.key = hash;
    b->bucket = wa::BucketState{};
    ngx_rbtree_insert(&z->sh->rate_tree, &b->sn.node);
    ngx_queue_insert_head(&z->sh->rate_lru, &b->lru);
    z->sh->rate_buckets++;
    return b;
}

wa_rate_result wa_shm_rate_take(wa_zone_ctx_t* z, const wa::RateLimit& limit, const std::string& org, uint64_t now_ms,
                                uint64_t* retry_after_ms) {
    ngx_shmtx_lock(&z->shpool->mutex);
    wa_rate_expire(z, limit, now_ms, 2);  // a little on every call keeps the table as small as the traffic
    wa_shm_rate_t* b = wa_rate_find_or_create(z, limit, org, now_ms);
    wa_rate_result r = wa_rate_result::no_memory;
    if (b) {
        r = limit.take(b->bucket, now_ms, retry_after_ms) ? wa_rate_result::allowed : wa_rate_result::limited;
        ngx_queue_remove(&b->lru);
        ngx_queue_insert_head(&z->sh->rate_lru, &b->lru);
    }
    ngx_shmtx_unlock(&z->shpool->mutex);
    return r;
}
