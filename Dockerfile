# Multi-stage build: a static binary on distroless, running as non-root.
# The Helm chart relies on the ENTRYPOINT (it sets only args) and on a numeric non-root
# USER (its pods set runAsNonRoot); charts/image_test.go checks both.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY delivery/ delivery/
COPY internal/ internal/
COPY resync/ resync/
COPY sinks/ sinks/
COPY tencent/ tencent/
COPY webhookserver/ webhookserver/
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -ldflags="-s -w" -o manager ./cmd

FROM gcr.io/distroless/static:nonroot
WORKDIR /
COPY --from=builder /workspace/manager /manager
USER 65532:65532
EXPOSE 8090 8080 8081
ENTRYPOINT ["/manager"]
