# tandem: the proxy sidecar and the migration CLI in one small image.
#   docker build -t tandem .
#   docker run --rm -e DATABASE_URL=postgres://… -p 6432:6432 -p 6433:6433 tandem
#   docker run --rm -e DATABASE_URL=postgres://… -v "$PWD/migrations:/migrations:ro" tandem migrate /migrations

# Build: compile TypeScript with the full toolchain.
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json

# The native forwarder (native/forwarder.c): built here with a compiler, shipped as one .node file.
# build.mjs never fails; if it could not build, the COPY below fails the image build instead of
# silently shipping a proxy that forwards in Node.
FROM node:20-slim AS native
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY native/forwarder.c native/binding.gyp native/build.mjs ./native/
RUN node native/build.mjs

# Runtime dependencies only: no compilers, no test tools, no embedded PostgreSQL (that is for `tandem dev`).
FROM node:20-slim AS dependencies
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts && npm cache clean --force

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=dependencies /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=native /app/native/build/Release/tandem_forwarder.node ./native/build/Release/tandem_forwarder.node
COPY package.json ./
COPY bin ./bin
# The image's node user (uid 1000): PostgreSQL clients and the proxy need no privileges.
USER node
EXPOSE 6432 6433
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:6433/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/tandem.js"]
CMD ["proxy", "--listen", "0.0.0.0:6432", "--http", "0.0.0.0:6433"]
