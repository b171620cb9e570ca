// Doorbells: one AF_UNIX datagram socket per process, bound to the abstract name
// "\0ngxwa/<zone token>/<pid>". Addressing by pid needs no plumbing before fork, and lets an old-generation
// worker and a new-generation helper reach each other during a reload. A datagram carries no data, only
// "look at shared memory"; a forged one costs a scan and nothing else.

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "wa_module.hpp"

static ngx_connection_t* wa_doorbell_conn;

static socklen_t wa_doorbell_addr(wa_shm_t* sh, ngx_pid_t pid, struct sockaddr_un* sa) {
    ngx_memzero(sa, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "ngxwa/%s/%ld", (const char*)sh->token, (long)pid);
    return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

ngx_int_t wa_doorbell_open(ngx_cycle_t* cycle, ngx_event_handler_pt handler, bool mark_idle) {
    wa_zone_ctx_t* z = wa_zone(cycle);
    if (z == NULL) return NGX_ERROR;
    if (wa_doorbell_conn) {
        // master_process off: the one process is worker and helper; the helper's handler serves both.
        wa_doorbell_conn->read->handler = handler;
        if (mark_idle) wa_doorbell_conn->idle = 1;
        return NGX_OK;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno, "whatsapp doorbell: socket() failed");
        return NGX_ERROR;
    }
    struct sockaddr_un sa;
    socklen_t len = wa_doorbell_addr(z->sh, ngx_pid, &sa);
    if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno, "whatsapp doorbell: bind() failed");
        close(fd);
        return NGX_ERROR;
    }
    // A channel event: level-triggered, exempt from the shutdown-timeout kill and the "open socket left" check.
    if (ngx_add_channel_event(cycle, fd, NGX_READ_EVENT, handler) != NGX_OK) {
        close(fd);
        return NGX_ERROR;
    }
    for (ngx_uint_t i = 0; i < cycle->connection_n; i++) {
        if (cycle->connections[i].fd == fd) wa_doorbell_conn = &cycle->connections[i];
    }
    if (wa_doorbell_conn && mark_idle) wa_doorbell_conn->idle = 1;
    return NGX_OK;
}

void wa_doorbell_close() {
    if (wa_doorbell_conn == NULL) return;
    ngx_close_connection(wa_doorbell_conn);
    wa_doorbell_conn = NULL;
}

void wa_doorbell_drain(ngx_connection_t* c) {
    char buf[16];
    while (recv(c->fd, buf, sizeof buf, 0) >= 0) {
    }
}

bool wa_doorbell_ring(wa_shm_t* sh, ngx_pid_t pid) {
    if (pid <= 0) return false;
    struct sockaddr_un sa;
    socklen_t len = wa_doorbell_addr(sh, pid, &sa);
    int fd = wa_doorbell_conn ? wa_doorbell_conn->fd : -1;
    if (fd == -1) return false;
    if (sendto(fd, "!", 1, MSG_DONTWAIT, reinterpret_cast<struct sockaddr*>(&sa), len) == 1) return true;
    // EAGAIN: the peer's queue is full, so a wake-up is already pending there.
    return ngx_socket_errno == NGX_EAGAIN;
}

bool wa_process_alive(ngx_pid_t pid) {
    if (pid <= 0) return false;
    return kill(pid, 0) == 0 || ngx_errno == EPERM;
}
