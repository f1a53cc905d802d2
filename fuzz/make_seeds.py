#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/, from the cases listed here.

Each seed is named after what it is. Smuggling forms (RFC 9112 §6.3, §11.2; the PortSwigger and
"HTTP Desync" catalogues), Duplicati-shaped requests (the ngclient's login, file browser, restore
filter and notification WebSocket) and Kestrel-shaped responses (research/duplicati-wire.md).
Run from anywhere: `python3 fuzz/make_seeds.py`; it rewrites the seed files it names and no others.
"""

from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

H = "Host: gate.lan:8443\r\n"
UA = "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0\r\n"
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ3ZWJ1aSIsImV4cCI6MTc2NDE3NjAwMH0.c2lnbmF0dXJl"

REQUESTS = {
    # Plain shapes.
    "get-root": f"GET / HTTP/1.1\r\n{H}\r\n",
    "get-http10": "GET /ngclient/ HTTP/1.0\r\nHost: 192.168.1.20:8443\r\n\r\n",
    "get-http10-keepalive": f"GET / HTTP/1.0\r\n{H}Connection: keep-alive\r\n\r\n",
    "head": f"HEAD /ngclient/index.html HTTP/1.1\r\n{H}\r\n",
    "options-star": f"OPTIONS * HTTP/1.1\r\n{H}\r\n",
    "absolute-form-own-host": f"GET https://gate.lan:8443/api/v1/serverstate HTTP/1.1\r\n{H}\r\n",
    "absolute-form-other-host": f"GET http://evil.example/x HTTP/1.1\r\n{H}\r\n",
    "leading-blank-lines": f"\r\n\r\nGET / HTTP/1.1\r\n{H}\r\n",
    "connect": "CONNECT gate.lan:8443 HTTP/1.1\r\nHost: gate.lan:8443\r\n\r\n",
    "expect-continue": f"PUT /api/v1/backup/1/import HTTP/1.1\r\n{H}Expect: 100-continue\r\nContent-Length: 12\r\n\r\n",
    "expect-other": f"PUT /x HTTP/1.1\r\n{H}Expect: later\r\n\r\n",
    # Duplicati-shaped.
    "duplicati-login": (
        f"POST /api/v1/auth/login HTTP/1.1\r\n{H}{UA}Accept: application/json, text/plain, */*\r\n"
        "Content-Type: application/json\r\nContent-Length: 45\r\nOrigin: https://gate.lan:8443\r\n"
        "Referer: https://gate.lan:8443/ngclient/\r\n\r\n"
    ),
    "duplicati-refresh": (
        f"POST /api/v1/auth/refresh HTTP/1.1\r\n{H}Content-Length: 0\r\n"
        f"Cookie: RefreshToken_8443={JWT}; NgClient.Theme=dark\r\n\r\n"
    ),
    "duplicati-files": (
        f"GET /api/v1/backup/1/files/%2Fhome%2Fanna%2FDocuments%2FTax%20%26%20Bills%2B2024%2F?prefix-only=false&folder-contents=true&time=2025-11-26T14%3A03%3A00%2B02%3A00 HTTP/1.1\r\n"
        f"{H}Authorization: Bearer {JWT}\r\nAccept: application/json\r\n\r\n"
    ),
    "duplicati-search-filter": (
        f"GET /api/v1/backup/1/search?filter=%40%2Fhome%2Fanna%2Fr%C3%A9sum%C3%A9%20%231.pdf&time=2025-11-26T14%3A03%3A00%2B02%3A00&all-versions=false HTTP/1.1\r\n"
        f"{H}Authorization: Bearer {JWT}\r\n\r\n"
    ),
    "duplicati-restore-chunked": (
        f"POST /api/v1/backup/1/restore HTTP/1.1\r\n{H}Content-Type: application/json\r\n"
        f"Authorization: Bearer {JWT}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "duplicati-websocket": (
        f"GET /notifications?token={JWT} HTTP/1.1\r\n{H}{UA}Connection: keep-alive, Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Origin: https://gate.lan:8443\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\r\n"
    ),
    "duplicati-websocket-http10": (
        f"GET /notifications?token=t HTTP/1.0\r\n{H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    ),
    "forwarding-claims": (
        f"GET /api/v1/serverstate HTTP/1.1\r\n{H}X-Forwarded-Proto: http\r\nX-Forwarded-For: 6.6.6.6\r\n"
        "X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6;proto=http\r\nX-Real-IP: 6.6.6.6\r\n\r\n"
    ),
    "hop-by-hop-named": (
        f"GET / HTTP/1.1\r\n{H}Connection: keep-alive, X-Secret, TE\r\nX-Secret: 1\r\nTE: trailers\r\n"
        "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n"
        "Trailer: X-T\r\nCookie: a=b\r\n\r\n"
    ),
    "connection-names-host": f"GET / HTTP/1.1\r\n{H}Connection: Host\r\n\r\n",
    "preauth-own-credentials": f"GET /api/v1/backups HTTP/1.1\r\n{H}Authorization: Basic eDp5\r\n\r\n",
    "obs-text-value": f"GET / HTTP/1.1\r\n{H}X-Name: caf\xc3\xa9\r\n\r\n",
    # Smuggling forms: each must be refused or read in exactly one way.
    "smuggle-cl-te": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "smuggle-te-cl": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    "smuggle-cl-cl-same": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
    "smuggle-cl-cl-differ": f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "smuggle-cl-list": f"POST / HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\n",
    "smuggle-cl-plus": f"POST / HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\n",
    "smuggle-cl-negative": f"POST / HTTP/1.1\r\n{H}Content-Length: -1\r\n\r\n",
    "smuggle-cl-hex": f"POST / HTTP/1.1\r\n{H}Content-Length: 0x5\r\n\r\n",
    "smuggle-cl-overflow": f"POST / HTTP/1.1\r\n{H}Content-Length: 18446744073709551616\r\n\r\n",
    "smuggle-cl-leading-zeros": f"POST / HTTP/1.1\r\n{H}Content-Length: 0000000000000000005\r\n\r\n",
    "smuggle-cl-tab": f"POST / HTTP/1.1\r\n{H}Content-Length:\t5\t\r\n\r\n",
    "smuggle-te-xchunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n",
    "smuggle-te-chunked-identity": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, identity\r\n\r\n",
    "smuggle-te-gzip-chunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip, chunked\r\n\r\n",
    "smuggle-te-twice": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
    "smuggle-te-case": f"POST / HTTP/1.1\r\n{H}transfer-ENCODING: ChUnKeD\r\n\r\n",
    "smuggle-te-http10": f"POST / HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n\r\n",
    "smuggle-te-space-before-colon": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n\r\n",
    "smuggle-te-obs-fold": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n\r\n",
    "smuggle-te-vertical-tab": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding:\x0bchunked\r\n\r\n",
    "smuggle-te-nul": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\x00\r\n\r\n",
    "smuggle-obs-fold": f"GET / HTTP/1.1\r\n{H}X-A: a\r\n b\r\n\r\n",
    "smuggle-bare-lf": f"GET / HTTP/1.1\n{H}\n",
    "smuggle-bare-cr": f"GET / HTTP/1.1\r{H}\r\n\r\n",
    "smuggle-space-before-colon": f"GET / HTTP/1.1\r\nHost : gate.lan\r\n\r\n",
    "smuggle-two-hosts": "GET / HTTP/1.1\r\nHost: gate.lan\r\nHost: evil.example\r\n\r\n",
    "smuggle-host-userinfo": "GET / HTTP/1.1\r\nHost: u@gate.lan\r\n\r\n",
    "smuggle-no-host": "GET / HTTP/1.1\r\n\r\n",
    "smuggle-target-space": f"GET /a b HTTP/1.1\r\n{H}\r\n",
    "smuggle-pipelined": f"POST / HTTP/1.1\r\n{H}Content-Length: 0\r\n\r\nGET /admin HTTP/1.1\r\n{H}\r\n",
    "version-http2": f"GET / HTTP/2.0\r\n{H}\r\n",
    "version-http09": "GET /\r\n\r\n",
    "many-fields": f"GET / HTTP/1.1\r\n{H}" + "".join(f"X-{i}: {i}\r\n" for i in range(99)) + "\r\n",
}

KESTREL = "Date: Wed, 26 Nov 2025 16:03:00 GMT\r\nServer: Kestrel\r\n"
COOKIE = f"Set-Cookie: RefreshToken_8443={JWT}; expires=Wed, 24 Dec 2025 16:03:00 GMT; path=/api/v1/auth/refresh; samesite=strict; httponly\r\n"

# First byte: the request being answered. Bits: 0 HEAD, 1 HTTP/1.0 client, 2 WebSocket handshake,
# 3 Connection: close, 4 body cut short by the response, 5 HSTS on (see response_head.rs).
GET, HEAD, HTTP10, UPGRADE, CLOSE, CUT, HSTS = 0, 1, 2, 4, 8, 16, 32

RESPONSES = {
    "kestrel-json-chunked": (GET, f"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n{KESTREL}Transfer-Encoding: chunked\r\n\r\n"),
    "kestrel-json-chunked-http10-client": (HTTP10, f"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n{KESTREL}Transfer-Encoding: chunked\r\n\r\n"),
    "kestrel-static-length": (GET | HSTS, f"HTTP/1.1 200 OK\r\nContent-Length: 1732\r\nContent-Type: text/html\r\n{KESTREL}Accept-Ranges: bytes\r\nETag: \"1dc4e2a3b5c6d7e\"\r\nLast-Modified: Tue, 25 Nov 2025 10:00:00 GMT\r\n\r\n"),
    "kestrel-login-cookie": (GET, f"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n{KESTREL}Cache-Control: no-cache, no-store\r\n{COOKIE}Transfer-Encoding: chunked\r\n\r\n"),
    "kestrel-cookie-already-secure": (GET, f"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b; Secure; HttpOnly\r\nSet-Cookie: c=d;secure\r\n\r\n"),
    "cookie-secure-with-value": (GET, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b; Secure= 1; HttpOnly\r\nSet-Cookie: c=d; NotSecure\r\n\r\n"),
    "kestrel-101": (UPGRADE, f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n{KESTREL}Upgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
    "kestrel-101-unasked": (GET, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
    "kestrel-304": (GET, f"HTTP/1.1 304 Not Modified\r\n{KESTREL}ETag: \"1dc4e2a3b5c6d7e\"\r\nContent-Length: 1732\r\n\r\n"),
    "kestrel-304-te": (GET, f"HTTP/1.1 304 Not Modified\r\n{KESTREL}Transfer-Encoding: chunked\r\n\r\n"),
    "kestrel-head-length": (HEAD, f"HTTP/1.1 200 OK\r\nContent-Length: 1732\r\nContent-Type: text/html\r\n{KESTREL}\r\n"),
    "kestrel-204": (GET, f"HTTP/1.1 204 No Content\r\n{KESTREL}\r\n"),
    "kestrel-100-continue": (GET, "HTTP/1.1 100 Continue\r\n\r\n"),
    "kestrel-401": (CLOSE, f"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n{KESTREL}WWW-Authenticate: Bearer\r\n\r\n"),
    "kestrel-redirect-upstream-origin": (GET, f"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n{KESTREL}Location: http://127.0.0.1:8200/ngclient/?x=1\r\n\r\n"),
    "kestrel-redirect-host-origin": (GET, f"HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\nLocation: HTTP://gate.lan:8443\r\nContent-Location: http://gate.lan:8443/a\r\n\r\n"),
    "kestrel-redirect-lookalike": (GET, "HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: http://127.0.0.1:82000/x\r\n\r\n"),
    "kestrel-until-close": (GET, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
    "kestrel-http10-response": (GET, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n"),
    "kestrel-connection-close": (CUT, f"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n{KESTREL}\r\n"),
    "kestrel-own-security-headers": (HSTS, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nStrict-Transport-Security: max-age=60\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\r\n"),
    "hop-by-hop-response": (GET, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret, Set-Cookie\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: a=b\r\nTrailer: X-T\r\nUpgrade: h2c\r\nContent-Length: 1\r\n\r\n"),
    "field-named-close": (CLOSE, "HTTP/1.1 200 OK\r\nClose: x\r\nContent-Length: 1\r\n\r\n"),
    "smuggle-cl-te": (GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "smuggle-cl-cl-same": (GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
    "smuggle-cl-cl-differ": (GET, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    "smuggle-cl-plus": (GET, "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"),
    "smuggle-te-gzip": (GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
    "smuggle-te-gzip-chunked": (GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
    "smuggle-te-chunked-identity": (GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
    "smuggle-te-split": (GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "smuggle-te-xchunked": (GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n"),
    "smuggle-obs-fold": (GET, "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
    "smuggle-bare-lf": (GET, "HTTP/1.1 200 OK\nContent-Length: 0\n\n"),
    "smuggle-space-before-colon": (GET, "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"),
    "status-no-reason": (GET, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
    "status-odd-reason": (GET, "HTTP/1.1 599 Caf\xc3\xa9\tok\r\nContent-Length: 0\r\n\r\n"),
    "status-below-100": (GET, "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n"),
}

def chunk(payload: str) -> str:
    return f"{len(payload.encode('latin-1')):x}\r\n{payload}\r\n"


CHUNKED = {
    "one-chunk": "5\r\nhello\r\n0\r\n\r\n",
    "two-chunks-and-next-message": "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
    "empty-body": "0\r\n\r\n",
    "upper-hex": "A\r\n0123456789\r\n0\r\n\r\n",
    "leading-zeros": "0000000005\r\nhello\r\n000\r\n\r\n",
    "extensions": "5;name=\"v\"\r\nhello\r\n6 ; a=b;c\r\n world\r\n0;last\r\n\r\n",
    "extension-tab": "5\t;x\r\nhello\r\n0\r\n\r\n",
    "trailers": "5\r\nhello\r\n0\r\nX-Trailer: t\r\nX-Checksum: abc\r\n\r\n",
    "trailer-without-colon": "5\r\nhello\r\n0\r\nnot a field\r\n\r\n",
    "huge-size": "ffffffffffffffff\r\nabc",
    "size-17-digits": "10000000000000000\r\n",
    "size-overflow-16-digits": "fffffffffffffff0\r\n0\r\n\r\n",
    "size-space-before": " 5\r\nhello\r\n0\r\n\r\n",
    "size-plus": "+5\r\nhello\r\n0\r\n\r\n",
    "size-0x": "0x5\r\nhello\r\n0\r\n\r\n",
    "size-junk-after": "5 x\r\nhello\r\n0\r\n\r\n",
    "bare-lf-size": "5\nhello\r\n0\r\n\r\n",
    "bare-lf-after-data": "5\r\nhello\n0\r\n\r\n",
    "data-longer-than-size": "5\r\nhelloXX\r\n0\r\n\r\n",
    "data-shorter-than-size": "6\r\nhello\r\n0\r\n\r\n",
    "cut-mid-chunk": "5\r\nhel",
    "cut-before-last-chunk": "5\r\nhello\r\n",
    "cut-in-trailers": "5\r\nhello\r\n0\r\nX-T: 1\r\n",
    "last-chunk-lookalike-payload": "5\r\n0\r\n\r\n\r\n0\r\n\r\n",
    "nul-in-extension": "5;\x00\r\nhello\r\n0\r\n\r\n",
    "smuggled-request-in-chunk": chunk("GET /admin HTTP/1.1\r\nHost: gate.lan:8443\r\n\r\n") + "0\r\n\r\n",
    "duplicati-json": chunk('{"Status":"OK","ID":1}') + chunk('{"Type":"File","Path":"/home/anna/Tax & Bills+2024/r\xc3\xa9sum\xc3\xa9 #1.pdf"}') + "0\r\n\r\n",
}


def write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def main() -> None:
    for name, text in REQUESTS.items():
        write("request_head", name, text.encode("latin-1"))
    for name, (flags, text) in RESPONSES.items():
        write("response_head", name, bytes([flags]) + text.encode("latin-1"))
    for name, text in CHUNKED.items():
        write("chunked_body", name, text.encode("latin-1"))
    print(f"{len(REQUESTS)} request heads, {len(RESPONSES)} response heads, {len(CHUNKED)} chunked bodies")


if __name__ == "__main__":
    main()
