package events

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the embedded bus's client token, under data_dir. The
// embedded server refuses a client without it; it is made on the first
// start (32 random bytes, hex) with mode 0600, and kept.
const TokenFile = "bus.token"

// LoadOrCreateToken returns the token in dataDir/bus.token, creating the
// file (and dataDir) when it does not exist.
func LoadOrCreateToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, TokenFile)
	if tok, err := ReadToken(dataDir); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	tok := hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // made by another process meanwhile
		return ReadToken(dataDir)
	}
	if err != nil {
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	return tok, nil
}

// TokenURL returns nats://<token>@listen for the embedded bus whose data
// directory is dataDir: for NATS clients that take credentials in the URL
// (tests, the load harness). Do not log it.
func TokenURL(listen, dataDir string) (string, error) {
	tok, err := ReadToken(dataDir)
	if err != nil {
		return "", err
	}
	return "nats://" + tok + "@" + listen, nil
}

// ReadToken reads the embedded bus's token from dataDir/bus.token. A file
// that others may read is refused: the token is a credential.
func ReadToken(dataDir string) (string, error) {
	path := filepath.Join(dataDir, TokenFile)
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("events: bus token %s: mode %v lets others read it; want 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("events: bus token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("events: bus token %s is empty", path)
	}
	return tok, nil
}
