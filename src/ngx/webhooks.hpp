// Webhook delivery in the helper (issue 11): the whatsapp_webhook* directives and the engine that posts the
// store's outbox to each URL, signed, with retries, a concurrency cap per URL and no head-of-line blocking.
#pragma once
#include <functional>

#include "wa/api/api.hpp"
#include "wa/store/store.hpp"
#include "wa/webhook/events.hpp"
#include "wa_module.hpp"

char* wa_webhook_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* wa_webhook_retry_for_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* wa_webhook_concurrency_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* wa_webhook_backoff_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* wa_webhook_timeout_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* wa_webhook_keepalive_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
char* wa_webhook_override_secret_directive(ngx_conf_t* cf, ngx_command_t* cmd, void* conf);
// init_main_conf: TLS contexts for https URLs (their ca=, else whatsapp_ssl_trusted_certificate).
bool wa_webhooks_init_conf(ngx_conf_t* cf, wa_main_conf_t* m);

// The helper: the router the sessions enqueue with (empty when no webhook is configured), start once the
// store is open, kick after every commit (due events go out), stop before the store closes.
// `begin_write` opens the pass's transaction (results are written like any other change).
wa::webhook::Router wa_webhooks_router(wa_main_conf_t* m);
void wa_webhooks_start(wa_main_conf_t* m, wa::store::Store* store, ngx_log_t* log, std::function<void()> begin_write);
void wa_webhooks_kick();
void wa_webhooks_stop();
// GET /api/webhooks/dead (paged by row number) and POST /api/webhooks/replay, answered from the store.
wa::api::Response wa_webhooks_dead(wa::store::Store* store, const std::string& org, const std::string& cursor,
                                   uint32_t limit);
// POST /api/webhooks: the organization's own URL, "" = none. Signed with the secret of the whatsapp_webhook it lies
// under, else whatsapp_webhook_override_secret, else the first whatsapp_webhook's.
wa::api::Response wa_webhooks_set(wa::store::Store* store, const std::string& org, const std::string& url,
                                  const std::string& events);
wa::api::Response wa_webhooks_replay(wa::store::Store* store, const std::string& org, const std::string& id);
