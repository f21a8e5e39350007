# Container targets (the Go targets are plain `go test` / `go run`, see README.md).
.PHONY: images e2e manifests

# Images FROM scratch for every example (static, CGO_ENABLED=0) and for memcached, redis-server and
# etcd (from this machine's Debian packages); prints their sizes. REPO and TAG name them.
images:
	images/build.sh

# Pods on the local Docker engine (skipped when `docker info` fails); builds its own images.
e2e:
	go test -race -count=1 -timeout 20m -v ./e2e/

# Kubernetes manifests: parsed and checked without a cluster.
manifests:
	go test -count=1 ./deploy/kubernetes/
