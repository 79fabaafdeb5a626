# Image for manifests/install (ztunnel-ts:dev). Not built in CI here (no container engine on these
# machines); build it where you have one: docker build -t ztunnel-ts:dev .
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libbpf1 iproute2 util-linux && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/ztunnel-ts
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY dist/src ./dist/src
COPY bpf/capture.bpf.o ./bpf/capture.bpf.o
# The GC flags the daemon is measured with (src/cli/node-flags.ts).
ENTRYPOINT ["node", "--v8-pool-size=1", "--no-concurrent-marking", "--no-cppheap-concurrent-marking", "--no-parallel-scavenge", "dist/src/cli/main.js"]
