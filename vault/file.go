package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hookgate/hookgate"
)

// fileBackend is the development store: a YAML file
// { "<path>": { "<field>": "<value>" } }, reloaded when it changes.
type fileBackend struct {
	path string
	log  *slog.Logger
	red  *hookgate.Redactor // learns every value in the file, served or not

	mu      sync.Mutex
	stamp   fileStamp                    // of the file last loaded
	data    map[string]map[string]string // last good contents
	loadErr error                        // of the last reload attempt; nil when it worked
}

// fileStamp identifies a version of the file on disk.
type fileStamp struct {
	mtime time.Time
	size  int64
}

func openFile(path string, log *slog.Logger, red *hookgate.Redactor) (*fileBackend, error) {
	if path == "" {
		return nil, errors.New("vault: secrets.file is not set")
	}
	b := &fileBackend{path: path, log: log, red: red}
	if err := b.reload(); err != nil {
		return nil, err
	}
	return b, nil
}

// cacheTTL: the store keeps what it read for a second, so that requests do
// not stat the file each time; an edit applies within a second.
func (b *fileBackend) cacheTTL() time.Duration { return time.Second }

func (b *fileBackend) close() error { return nil }

func (b *fileBackend) check(context.Context) error { return b.reload() }

func (b *fileBackend) read(_ context.Context, path string, _ time.Time) (*document, error) {
	if err := b.reload(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	fields, ok := b.data[path]
	if !ok {
		return nil, fmt.Errorf("%w: no %q in %s", errNotFound, path, b.path)
	}
	return &document{versions: []version{{number: 1, data: fields}}}, nil
}

// reload reads the file again when its modification time or size changed.
// A file that cannot be read or parsed keeps the last good contents in use;
// the error is returned (the store then serves cached values as stale) and
// logged once per change.
func (b *fileBackend) reload() error {
	fi, err := os.Stat(b.path)
	if err != nil {
		return b.failed(fileStamp{}, fmt.Errorf("vault: secrets file: %w", err))
	}
	stamp := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	b.mu.Lock()
	same := b.data != nil && stamp == b.stamp
	lastErr := b.loadErr
	b.mu.Unlock()
	if same {
		return lastErr
	}
	raw, err := os.ReadFile(b.path)
	if err != nil {
		return b.failed(stamp, fmt.Errorf("vault: secrets file: %w", err))
	}
	data, err := parseSecretsFile(raw)
	if err != nil {
		return b.failed(stamp, fmt.Errorf("vault: secrets file %s: %w", b.path, err))
	}
	// Every value of the file is a secret, whether a source uses it yet
	// or not (a runtime source may, later): redact them all from now on.
	if b.red != nil {
		for _, fields := range data {
			for _, v := range fields {
				b.red.Add(v)
			}
		}
	}
	b.mu.Lock()
	reloaded := b.data != nil
	b.data, b.stamp, b.loadErr = data, stamp, nil
	b.mu.Unlock()
	if reloaded {
		b.log.Info("secrets file reloaded", "file", b.path, "paths", len(data))
	}
	return nil
}

func (b *fileBackend) failed(stamp fileStamp, err error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data != nil && (stamp != b.stamp || b.loadErr == nil) {
		b.log.Warn("secrets file unreadable, keeping the last good contents", "file", b.path, "err", err)
	}
	if b.data != nil {
		b.stamp, b.loadErr = stamp, err
	}
	return err
}

var yamlLine = regexp.MustCompile(`line \d+`)

// parseSecretsFile decodes { path: { field: value } }. Values must be
// scalars; they are taken as written (0123 stays "0123"). Errors name paths
// and fields, never values.
func parseSecretsFile(raw []byte) (map[string]map[string]string, error) {
	var doc map[string]map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		// yaml.v3's errors may quote the offending text, which may be a
		// secret: keep only the line numbers.
		lines := yamlLine.FindAllString(err.Error(), -1)
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("want a map of paths to maps of fields to values %v", lines)
		}
		return nil, fmt.Errorf("not valid YAML %v", lines)
	}
	out := make(map[string]map[string]string, len(doc))
	for path, fields := range doc {
		m := make(map[string]string, len(fields))
		for field, n := range fields {
			if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
				return nil, fmt.Errorf("%s#%s (line %d): want a string value", path, field, n.Line)
			}
			m[field] = n.Value
		}
		out[path] = m
	}
	return out, nil
}
