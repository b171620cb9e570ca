#include "tls.hpp"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

bool wa_ip_literal(const std::string& host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

void wa_outbound_close(ngx_connection_t* c, bool close_notify) {
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;  // never wait for the peer's close_notify
        if (!close_notify) c->ssl->no_send_shutdown = 1;
        ngx_ssl_shutdown(c);
    }
    ngx_pool_t* pool = c->pool;
    ngx_close_connection(c);
    if (pool) ngx_destroy_pool(pool);
}

WaTlsResult wa_tls_start(ngx_connection_t* c, ngx_ssl_t* ssl, const std::string& host, ngx_msec_t timeout,
                         ngx_connection_handler_pt handler, std::string& err) {
    if (ssl == nullptr || ngx_ssl_create_connection(ssl, c, NGX_SSL_BUFFER | NGX_SSL_CLIENT) != NGX_OK) {
        err = "TLS setup failed";
        return WaTlsResult::Failed;
    }
    if (!wa_ip_literal(host)) SSL_set_tlsext_host_name(c->ssl->connection, host.c_str());
    if (ngx_ssl_handshake(c) != NGX_AGAIN) return WaTlsResult::Ok;
    if (!c->write->timer_set) ngx_add_timer(c->write, timeout);
    c->ssl->handler = handler;
    return WaTlsResult::Again;
}

WaTlsFailure wa_tls_check(ngx_connection_t* c, const std::string& host, const std::string& peer, std::string& err) {
    if (c->write->timer_set) ngx_del_timer(c->write);
    if (!c->ssl->handshaked) {
        bool timedout = c->read->timedout || c->write->timedout;
        err = "TLS handshake with " + peer + (timedout ? " timed out" : " failed");
        return WaTlsFailure::Handshake;
    }
    long v = SSL_get_verify_result(c->ssl->connection);
    if (v != X509_V_OK) {
        err = "TLS certificate of " + peer + " not trusted: " + X509_verify_cert_error_string(v);
        wa_metrics_tls_failure(wa_zone(const_cast<ngx_cycle_t*>(ngx_cycle)), false);
        return WaTlsFailure::Chain;
    }
    X509* cert = SSL_get_peer_certificate(c->ssl->connection);
    bool named = false;
    if (cert) {
        named = wa_ip_literal(host) ? X509_check_ip_asc(cert, host.c_str(), 0) == 1
                                    : X509_check_host(cert, host.data(), host.size(), 0, NULL) == 1;
        X509_free(cert);
    }
    if (!named) {
        err = "TLS certificate of " + peer + " does not match host " + host;
        wa_metrics_tls_failure(wa_zone(const_cast<ngx_cycle_t*>(ngx_cycle)), true);
        return WaTlsFailure::Host;
    }
    return WaTlsFailure::None;
}
