// Command roundtrip sets up policy routing, NAT and tunnels on a Linux host and explains why a
// flow's reply does not come back.
package main

import (
	"os"

	"roundtrip/cmd/roundtrip/cli"
)

func main() { os.Exit(cli.Main()) }
