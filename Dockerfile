# kcache images. The native engine and the TypeScript packages are built once in a build stage;
# then the dependencies are cut to what `kcache` needs at run time (no dev tools, no benchmarks:
# @kcache/bench and node-llama-cpp stay out), and the runtime stages copy the result.
#   docker build --target cpu  -t kcache:cpu  .   (CPU backend)
#   docker build --target cuda -t kcache:cuda .   (CUDA backend, NVIDIA GPUs)
ARG NODE_IMAGE=node:20-bookworm
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04

# ---- build (CPU): native engine + TypeScript -------------------------------------------------
FROM ${NODE_IMAGE} AS build-cpu
RUN apt-get update && apt-get install -y --no-install-recommends cmake g++ make python3 ninja-build \
    && rm -rf /var/lib/apt/lists/* && npm install -g pnpm@10
WORKDIR /src
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build \
    && pnpm install --prod --frozen-lockfile --prefer-offline --filter-prod '@kcache/cli...' && rm -rf packages/bench

# ---- runtime (CPU) ---------------------------------------------------------------------------
FROM ${NODE_IMAGE}-slim AS cpu
WORKDIR /app
COPY --from=build-cpu /src/package.json /src/pnpm-workspace.yaml ./
COPY --from=build-cpu /src/node_modules ./node_modules
COPY --from=build-cpu /src/packages ./packages
COPY --from=build-cpu /src/native/build/Release/kcache_engine.node ./native/build/Release/kcache_engine.node
# not root; the files are root's and read-only to it (the root filesystem may be mounted read-only)
USER 10001:10001
EXPOSE 50051 50061 9400
ENTRYPOINT ["node", "packages/cli/dist/main.js"]
CMD ["help"]

# ---- build (CUDA): the same, with nvcc present so the CUDA backend is compiled --------------
FROM ${NODE_IMAGE} AS node
FROM ${CUDA_DEVEL_IMAGE} AS build-cuda
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && apt-get update && apt-get install -y --no-install-recommends cmake g++ make python3 ninja-build \
    && rm -rf /var/lib/apt/lists/* && npm install -g pnpm@10
WORKDIR /src
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build \
    && pnpm install --prod --frozen-lockfile --prefer-offline --filter-prod '@kcache/cli...' && rm -rf packages/bench

# ---- runtime (CUDA) --------------------------------------------------------------------------
FROM ${CUDA_RUNTIME_IMAGE} AS cuda
COPY --from=node /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build-cuda /src/package.json /src/pnpm-workspace.yaml ./
COPY --from=build-cuda /src/node_modules ./node_modules
COPY --from=build-cuda /src/packages ./packages
COPY --from=build-cuda /src/native/build/Release/kcache_engine.node ./native/build/Release/kcache_engine.node
USER 10001:10001
EXPOSE 50061 9400
ENTRYPOINT ["node", "packages/cli/dist/main.js"]
CMD ["help"]
