# The purser binary in a small image.
FROM rust:1.88-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin purser

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 purser
COPY --from=build /src/target/release/purser /usr/local/bin/purser
USER purser
ENV PURSER_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["purser"]
CMD ["serve"]
