/*
 * LD_PRELOAD'ed into wrk for the full-handshake load: every new connection starts without a
 * session, so neither proxy can resume it.
 *
 * Why: wrk (4.1.0) reconnects by SSL_shutdown + SSL_clear on the same SSL object, and SSL_clear
 * keeps the session of a cleanly shut-down connection, so with `Connection: close` every
 * connection after the first resumes with the TLS 1.3 ticket the server sent (nginx's
 * $ssl_session_reused shows it: "r"). A resumed handshake skips the certificate signature, the
 * costliest step. Both proxies send tickets by default; the client is where both are stopped
 * alike. bench.py checks the effect in nginx's log.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *session);

int SSL_clear(SSL *s)
{
    static int (*real_clear)(SSL *);
    if (real_clear == NULL) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    }
    /* Drops the session (and its ticket) before the SSL object is reused. */
    SSL_set_session(s, NULL);
    return real_clear(s);
}
