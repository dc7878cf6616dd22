#!/usr/bin/env bash
# Builds the pinned Gitea (the test bed's Git forge) into the cache unless it is present.
# Gitea's go.mod has replace directives (and names the module gitea.dev), so it cannot be a
# dependency of a wrapper module: the build runs inside a writable copy of the module's
# source, which also holds the templates and options Gitea reads at run time (no bindata).
# Its cache key is separate from the control plane's, so a Gitea pin never rebuilds those.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
if [ -x "$GITEA_HOME/bin/gitea" ]; then echo "$GITEA_HOME"; exit 0; fi
mkdir -p "$GITEA_HOME/bin"
log "building gitea $GITEA_VERSION"
start=$SECONDS
dir=$(go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$dir" ] || die "go mod download of code.gitea.io/gitea@$GITEA_VERSION gave no source dir"
rm -rf "$GITEA_HOME/src"
cp -r "$dir" "$GITEA_HOME/src"
chmod -R u+w "$GITEA_HOME/src"
# SQLite through the pure-Go modernc driver (Gitea's default), so no cgo.
if ! (cd "$GITEA_HOME/src" && GOFLAGS=-mod=readonly go build -trimpath \
    -ldflags "-s -w -X main.Version=${GITEA_VERSION#v}" -o "$GITEA_HOME/bin/gitea.tmp" .) \
    >"$GITEA_HOME/build.log" 2>&1; then
  tail -n 20 "$GITEA_HOME/build.log" >&2
  die "build of gitea failed; full log: $GITEA_HOME/build.log"
fi
mv "$GITEA_HOME/bin/gitea.tmp" "$GITEA_HOME/bin/gitea"
log "built gitea in $((SECONDS - start)) s"
echo "$GITEA_HOME"
