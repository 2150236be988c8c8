#!/usr/bin/env bash
# Builds Vault 1.20.4 from the Go module proxy into $HOOKGATE_CACHE/vault-1.20.4
# (default ~/.cache/hookgate), following the checked recipe of
# shared/reference/test-servers.md. Prints the binary's path. A `vault` on
# PATH is preferred; the build is cached and redone only when this recipe
# changes.
set -euo pipefail
VERSION=1.20.4
RECIPE=3   # bump when the edits below change
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${HOOKGATE_CACHE:-$HOME/.cache/hookgate}
bin=$cache/vault-$VERSION-r$RECIPE
if command -v vault >/dev/null 2>&1; then command -v vault; exit 0; fi
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
work=$cache/vault-tools
rm -rf "$work"; mkdir -p "$work"
cp "$here/tools/vault/main.go" "$work/"
cd "$work"
export GOSUMDB=off GOFLAGS=-mod=mod
cat > go.mod <<MOD
module hookgate.local/tools/vault

go 1.26
MOD
go get github.com/hashicorp/vault@v$VERSION >&2
src=$(go env GOMODCACHE)/github.com/hashicorp/vault@v$VERSION
cp -r "$src" vault-src
chmod -R u+w vault-src
sed -i 's/GetCloudSQLAuthOptions(credentials, false)/GetCloudSQLAuthOptions(credentials, false, false)/' vault-src/plugins/database/mysql/connection_producer.go
sed -i 's/p\.Type\.IsPQC()/false/' vault-src/builtin/logical/transit/backend.go
sed -i 's/polReq\.KeyType\.IsPQC()/false/' vault-src/builtin/logical/transit/path_keys.go
cat > vault-src/vault/zz_rotation_info.go <<'GO'
package vault

import (
	"context"
	"errors"

	"github.com/hashicorp/vault/sdk/rotation"
)

// GetRotationInformation satisfies sdk v0.19.0's logical.SystemView.
func (d dynamicSystemView) GetRotationInformation(ctx context.Context, req *rotation.RotationInfoRequest) (*rotation.RotationInfoResponse, error) {
	return nil, errors.New("rotation information is not supported in this build")
}
GO
cat >> go.mod <<MOD
replace github.com/hashicorp/vault => ./vault-src
replace github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk v0.19.0
replace github.com/hashicorp/vault/api => github.com/hashicorp/vault/api v1.22.0
MOD
go mod tidy >&2 || true
go build -o "$bin.tmp" . >&2
mv "$bin.tmp" "$bin"
rm -rf "$work/vault-src"
echo "$bin"
