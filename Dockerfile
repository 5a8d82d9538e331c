# Sluice broker image: `docker build -t sluice .` then
# `docker run -p 9092:9092 -v sluice-data:/data sluice [--advertised-listener HOST:9092]`.
# A three-broker cluster: config/docker-compose.yml.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sluice-broker

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /data sluice && mkdir -p /data && chown sluice /data
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY config/sluice.toml /etc/sluice/sluice.toml
USER sluice
VOLUME /data
# 9092: clients; 9192: other brokers (Raft and forwarded admin requests).
EXPOSE 9092 9192
ENTRYPOINT ["sluice", "serve", "--data-dir", "/data", "--listen", "0.0.0.0:9092"]
# The address clients are told to use; override with the host's reachable name.
CMD ["--advertised-listener", "localhost:9092"]
