// Command vault is HashiCorp Vault built from the Go module proxy, for the
// test suite's dev server. scripts/vault.sh builds it; see
// ../../../shared/reference/test-servers.md for why the source needs edits.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
