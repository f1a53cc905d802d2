# duplicati-gate: a TLS-terminating reverse proxy for Duplicati's web UI, in a scratch image.
#
#   Users:   docker build -t duplicati-gate .            (builds in rust:1-bookworm; last stage)
#   Offline: just image                                  (the binary is built on the host, then
#            docker build --target runtime-prebuilt -t duplicati-gate:e2e .)
#
# Rules this file keeps, because the CI engine is Docker 20.10 with no registry and the legacy
# builder (research/containers.md §1.5, §3):
# - runtime-prebuilt is the FIRST stage: the legacy builder builds every stage up to --target, and
#   the rust:1-bookworm stage would try to pull.
# - no "# syntax=" line (BuildKit would pull docker/dockerfile), no heredocs, no COPY --link,
#   no COPY --chmod / RUN --mount in the stages the offline build reaches.
# - a numeric USER: a scratch image has no /etc/passwd.
# - HEALTHCHECK in exec form: there is no shell. `duplicati-gate health` completes a TLS
#   handshake with 127.0.0.1:8443 and exits 0.

FROM scratch AS runtime-prebuilt
COPY target/x86_64-unknown-linux-gnu/release/duplicati-gate /usr/local/bin/duplicati-gate
# The state folder (self-signed certificate when no --cert is given) must be writable by the
# container user, and a named volume mounted there inherits this ownership. `just image` makes
# the empty folder; there is no shell here to mkdir it.
COPY --chown=65532:65532 target/docker-empty/ /state/
USER 65532:65532
EXPOSE 8443 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/duplicati-gate", "health"]
ENTRYPOINT ["/usr/local/bin/duplicati-gate"]
CMD ["serve", "--listen", "0.0.0.0:8443", "--redirect-http", "0.0.0.0:8080", "--upstream", "http://duplicati:8200", "--state-dir", "/state"]

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# +crt-static with an explicit --target: a static-pie glibc binary (resolves names through
# /etc/hosts and DNS without NSS modules); without --target RUSTFLAGS would also hit proc-macros
# (rust-lang/rust#78210).
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu -p duplicati-gate \
    && mkdir -p /empty

FROM scratch AS runtime
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/duplicati-gate /usr/local/bin/duplicati-gate
COPY --from=build --chown=65532:65532 /empty/ /state/
USER 65532:65532
EXPOSE 8443 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/duplicati-gate", "health"]
ENTRYPOINT ["/usr/local/bin/duplicati-gate"]
CMD ["serve", "--listen", "0.0.0.0:8443", "--redirect-http", "0.0.0.0:8080", "--upstream", "http://duplicati:8200", "--state-dir", "/state"]
