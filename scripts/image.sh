#!/usr/bin/env bash
# Builds ferry's container image without a Docker daemon, with umoci on an empty OCI
# layout (`FROM scratch`): the ferry binary (stripped), the pinned helm and kustomize of the
# test bed's build, git and ssh with exactly the shared libraries they load (copied from
# this Debian machine as ldd lists them), CA certificates, and a non-root user
# (ferry, 65532). The one shell is dash as /bin/sh, with coreutils' timeout: gix runs an SSH
# fetch's `core.sshCommand` (`timeout … ssh …`, see ferry-source) through `sh -c`; ferry,
# helm, kustomize and git need none. Labels carry the version and commit; every file is dated at
# the commit, so the same inputs give the same image digest.
#
#   scripts/image.sh [--binary PATH] [--out DIR] [--push HOST[:PORT]/REPO]
#
# Output in DIR (default dist/image): `oci/` (an OCI layout, tag <version>) and
# `ferry-<version>-image.tar` (the same as an OCI archive: `skopeo copy oci-archive:…`,
# `podman load -i …`); sizes are reported on stderr, the layout's path is printed last.
# Without --binary the release binary is built (`cargo build --release`). --push copies
# the image to REPO:<version> with skopeo (plain HTTP allowed, for the test bed's registry).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

binary= out=dist/image push=
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    *) echo "usage: scripts/image.sh [--binary PATH] [--out DIR] [--push HOST/REPO]" >&2; exit 2 ;;
  esac
done
say() { printf '[image] %s\n' "$*" >&2; }
for tool in umoci skopeo strip ldd; do
  command -v "$tool" >/dev/null || { say "error: $tool is missing: run scripts/setup.sh"; exit 2; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
if [ -z "$binary" ]; then
  cargo build --release --locked -p ferry >&2
  binary=$CARGO_TARGET_DIR/release/ferry
fi
for tool in helm kustomize; do
  [ -x "$TESTBED_BIN/$tool" ] || { say "error: $TESTBED_BIN/$tool is missing: run testbed/build.sh"; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{etc/ssl/certs,home/ferry,tmp,usr/bin,usr/local/bin,usr/lib/x86_64-linux-gnu,usr/lib64,var/lib/ferry}
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s usr/bin "$root/bin"

# copy_elf <source> <path in the image>: the program and every shared library it loads.
copy_elf() {
  install -D -m 0755 "$1" "$root$2"
  local lib
  while read -r lib; do
    [ -n "$lib" ] || continue
    local name=${lib##*/}
    case $name in
      ld-linux-x86-64.so.2) cp -L "$lib" "$root/usr/lib/x86_64-linux-gnu/$name"
        ln -sf ../lib/x86_64-linux-gnu/$name "$root/usr/lib64/$name" ;;
      *) cp -L "$lib" "$root/usr/lib/x86_64-linux-gnu/$name" ;;
    esac
  done < <(ldd "$1" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }')
}

strip -o "$work/ferry" "$binary"
copy_elf "$work/ferry" /usr/local/bin/ferry
install -m 0755 "$TESTBED_BIN/helm" "$root/usr/local/bin/helm"
install -m 0755 "$TESTBED_BIN/kustomize" "$root/usr/local/bin/kustomize"
copy_elf /usr/bin/git /usr/bin/git
copy_elf /usr/bin/ssh /usr/bin/ssh
copy_elf /usr/bin/dash /usr/bin/dash
ln -s dash "$root/usr/bin/sh"
copy_elf /usr/bin/timeout /usr/bin/timeout
# git's helpers for HTTP(S) remotes and for being fetched from; the rest are builtins.
for helper in git-remote-http git-upload-pack git-upload-archive git-receive-pack; do
  copy_elf "/usr/lib/git-core/$helper" "/usr/lib/git-core/$helper"
done
ln -s git-remote-http "$root/usr/lib/git-core/git-remote-https"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
ferry:x:65532:65532:ferry:/home/ferry:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
ferry:x:65532:
GROUP
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
chown 65532:65532 "$root/home/ferry" "$root/var/lib/ferry"
find "$root" -exec touch -h -d "@$epoch" {} +

layout=$out/oci
rm -rf "$layout" && mkdir -p "$out"
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$work/bundle" >/dev/null
cp -a "$root/." "$work/bundle/rootfs/"
touch -h -d "@$epoch" "$work/bundle/rootfs"
umoci repack --image "$layout:$version" --history.created "$created" \
  --history.created_by "scripts/image.sh" --history.comment "ferry $version" "$work/bundle"
git_version=$(git --version | cut -d' ' -f3)
ssh_version=$(ssh -V 2>&1 | cut -d' ' -f1)
umoci config --image "$layout:$version" --no-history --created "$created" --author ferry \
  --os linux --architecture amd64 \
  --config.user 65532:65532 --config.workingdir /home/ferry \
  --config.entrypoint /usr/local/bin/ferry --config.cmd version \
  --config.env PATH=/usr/local/bin:/usr/bin --config.env HOME=/home/ferry \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.exposedports 8080/tcp \
  --config.label org.opencontainers.image.title=ferry \
  --config.label "org.opencontainers.image.description=GitOps continuous delivery for Kubernetes" \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.revision="$commit" \
  --config.label org.opencontainers.image.created="$created" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label org.opencontainers.image.source=https://github.com/ferry-dev/ferry \
  --config.label dev.ferry.helm.version="$HELM_VERSION" \
  --config.label dev.ferry.kustomize.version="$KUSTOMIZE_VERSION" \
  --config.label dev.ferry.git.version="$git_version" \
  --config.label dev.ferry.ssh.version="$ssh_version"
umoci gc --layout "$layout"

archive=$out/ferry-$version-image.tar
rm -f "$archive"
skopeo copy --quiet "oci:$layout:$version" "oci-archive:$archive:ferry:$version"
say "$(du -sh "$layout" | cut -f1) OCI layout $layout (tag $version, digest $(skopeo inspect --format '{{.Digest}}' "oci:$layout:$version"))"
say "$(du -h "$archive" | cut -f1) archive $archive; unpacked: $(du -sh "$work/bundle/rootfs" | cut -f1)"
if [ -n "$push" ]; then
  skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$version" "docker://$push:$version"
  say "pushed $push:$version"
fi
(cd "$layout" && pwd)
