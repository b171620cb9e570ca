// The TLS steps every outbound connection of the helper takes, whatever it carries (the WhatsApp WebSocket in
// transport.cpp, webhook requests and media uploads in http_client.cpp): the client side of nginx's ngx_ssl with
// SNI for names, a handshake on the connection's own events, then the checks nginx's proxy module leaves to
// proxy_ssl_verify: the chain against the trusted certificates of the context, and the host name (or IP
// address) in the certificate.
#pragma once

#include <string>

#include "wa_module.hpp"  // nginx's headers, with ngx_ssl as the module sees it

enum class WaTlsResult { Ok, Again, Failed };
enum class WaTlsFailure { None, Handshake, Chain, Host };

// Starts TLS on `c` (connected). Ok: done at once (then call wa_tls_check); Again: `handler` runs when the
// handshake ends or times out (after `timeout` ms); Failed: setup failed, `err` says why.
WaTlsResult wa_tls_start(ngx_connection_t* c, ngx_ssl_t* ssl, const std::string& host, ngx_msec_t timeout,
                         ngx_connection_handler_pt handler, std::string& err);
// After the handshake: whether it succeeded and the certificate is trusted and names `host`. On failure, `err`
// names `peer` and says what was wrong; a refused certificate counts in whatsapp_tls_verify_failures_total.
WaTlsFailure wa_tls_check(ngx_connection_t* c, const std::string& host, const std::string& peer, std::string& err);
// Closes an outbound connection made with its own pool (TLS or not) and frees it. close_notify: say goodbye in
// TLS first (the WhatsApp server); without it the socket just closes (an HTTP peer needs no more).
void wa_outbound_close(ngx_connection_t* c, bool close_notify);
// An IPv4 or IPv6 literal (no SNI for those: RFC 6066; matched against the certificate's IP addresses).
bool wa_ip_literal(const std::string& host);
