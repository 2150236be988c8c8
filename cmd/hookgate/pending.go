package main

import (
	"context"
	"errors"
	"io"
)

// Commands whose packages are still being written; each moves to its own
// file as it lands.
var errNotYet = errors.New("this command is not available in this build yet")

func cmdDead(ctx context.Context, args []string, stdout, stderr io.Writer) error    { return errNotYet }
func cmdHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error { return errNotYet }
