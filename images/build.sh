#!/usr/bin/env bash
# Builds a container image FROM scratch for every example binary (static, CGO_ENABLED=0) and for the
# third-party servers the e2e pods need (memcached, redis-server, etcd), which are copied from this
# machine's Debian packages together with the shared libraries ldd lists. No registry is needed.
#
#   images/build.sh                  # every example, podtool, worker, memcached, redis-server, etcd
#   images/build.sh elector etcd     # only these
#   REPO=podblocks TAG=dev           # image names are $REPO/<name>:$TAG (these are the defaults)
#
# Names: a directory under examples/, "podtool" (the e2e helper, e2e/podtool), "worker" (the
# workqueue binary plus podtool as the item command, the way a user's worker image adds its own
# command), memcached, redis-server, etcd. Prints a table of image sizes at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repo=${REPO:-podblocks}
tag=${TAG:-dev}
go=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

thirdparty=(memcached redis-server etcd)
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	for d in "$root"/examples/*/; do
		n=$(basename "$d")
		# only directories holding a main package
		if grep -qs '^package main' "$d"/*.go; then names+=("$n"); fi
	done
	names+=(podtool worker "${thirdparty[@]}")
fi

pkgs=()
for n in "${names[@]}"; do
	case " ${thirdparty[*]} " in *" $n "*) continue ;; esac
	case "$n" in
	podtool) pkgs+=(./e2e/podtool) ;;
	worker) pkgs+=(./examples/workqueue ./e2e/podtool) ;;
	*) pkgs+=("./examples/$n") ;;
	esac
done

if [ ${#pkgs[@]} -gt 0 ]; then
	mkdir -p "$work/bin"
	# One go build for all of them: packages they share compile once.
	mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
	(cd "$root" && CGO_ENABLED=0 "$go" build -trimpath -ldflags='-s -w' -o "$work/bin/" "${pkgs[@]}")
fi

# rootfs_from_debian BIN DIR: copies BIN and every library ldd lists (and the loader) under DIR.
rootfs_from_debian() {
	local bin=$1 dir=$2 lib
	mkdir -p "$dir/etc" "$dir/tmp"
	chmod 1777 "$dir/tmp"
	cp -L --parents "$bin" "$dir"
	# "libx.so => /lib/.../libx.so (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"; not linux-vdso.
	for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		cp -L --parents "$lib" "$dir"
	done
	printf 'root:x:0:0:root:/:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
}

for n in "${names[@]}"; do
	ctx="$work/ctx-$n"
	mkdir -p "$ctx"
	case "$n" in
	memcached)
		bin=$(command -v memcached || true)
		[ -n "$bin" ] || { echo "build.sh: memcached is not installed (apt-get install memcached)" >&2; exit 1; }
		rootfs_from_debian "$bin" "$ctx/rootfs"
		printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65534:65534\nEXPOSE 11211\nENTRYPOINT ["%s"]\nCMD ["-p", "11211", "-U", "0"]\n' "$bin" >"$ctx/Dockerfile"
		;;
	redis-server)
		bin=$(command -v redis-server || true)
		[ -n "$bin" ] || { echo "build.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
		rootfs_from_debian "$bin" "$ctx/rootfs"
		printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65534:65534\nWORKDIR /tmp\nEXPOSE 6379\nENTRYPOINT ["%s"]\nCMD ["--protected-mode", "no", "--save", "", "--appendonly", "no"]\n' "$bin" >"$ctx/Dockerfile"
		;;
	etcd)
		bin=$(command -v etcd || true)
		[ -n "$bin" ] || { echo "build.sh: etcd is not installed (apt-get install etcd-server)" >&2; exit 1; }
		rootfs_from_debian "$bin" "$ctx/rootfs"
		mkdir -p "$ctx/rootfs/var/lib/etcd"
		printf 'FROM scratch\nCOPY rootfs/ /\nWORKDIR /var/lib/etcd\nEXPOSE 2379 2380\nENTRYPOINT ["%s"]\n' "$bin" >"$ctx/Dockerfile"
		;;
	worker)
		cp "$work/bin/workqueue" "$work/bin/podtool" "$ctx/"
		printf 'FROM scratch\nCOPY workqueue podtool /\nENTRYPOINT ["/workqueue"]\n' >"$ctx/Dockerfile"
		;;
	*)
		cp "$work/bin/$n" "$ctx/$n"
		printf 'FROM scratch\nCOPY %s /%s\nENTRYPOINT ["/%s"]\n' "$n" "$n" "$n" >"$ctx/Dockerfile"
		;;
	esac
	# The legacy builder needs no buildx plugin; its deprecation notice is shown only on failure.
	if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$repo/$n:$tag" "$ctx" 2>&1); then
		echo "$out" >&2
		exit 1
	fi
done

printf '| image | size |\n|---|---|\n'
for n in "${names[@]}"; do
	size=$(docker image inspect -f '{{.Size}}' "$repo/$n:$tag")
	printf '| %s/%s:%s | %s MB |\n' "$repo" "$n" "$tag" "$(awk -v s="$size" 'BEGIN{printf "%.1f", s/1e6}')"
done
