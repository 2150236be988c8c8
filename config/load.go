package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment override: HOOKGATE_<PATH>, the key path
// upper-cased with '.' as '_' (HOOKGATE_SERVER_LISTEN,
// HOOKGATE_HISTORY_CLICKHOUSE_ADDR, HOOKGATE_SOURCES_0_SECRET). Lists of
// scalars take comma-separated values.
const EnvPrefix = "HOOKGATE_"

// Default returns the configuration a new user starts with: file secrets,
// embedded bus, NDJSON history.
func Default() *Config {
	return &Config{
		Server: Server{
			Listen:           "127.0.0.1:8080",
			MaxBodyBytes:     1 << 20,
			MaxHeaderBytes:   16 << 10,
			MaxFormFields:    1000,
			MaxInflightBytes: 16 << 20,
			ReadTimeout:      Duration(10 * time.Second),
			WriteTimeout:     Duration(10 * time.Second),
			IdleTimeout:      Duration(60 * time.Second),
			ShutdownTimeout:  Duration(15 * time.Second),
		},
		DataDir: "./data",
		Admin:   Admin{Console: true, ConsoleSession: Duration(12 * time.Hour)},
		Secrets: Secrets{
			Backend: "file",
			File:    "./secrets.yaml",
			Vault: Vault{
				Address:       "http://127.0.0.1:8200",
				Mount:         "secret",
				Auth:          "token",
				AppRole:       AppRole{Mount: "approle"},
				CacheTTL:      Duration(30 * time.Second),
				RotationGrace: Duration(24 * time.Hour),
				Timeout:       Duration(5 * time.Second),
			},
		},
		Bus: Bus{
			Listen:   "127.0.0.1:4222",
			Stream:   "HOOKGATE",
			Sync:     "group",
			MaxAge:   Duration(7 * 24 * time.Hour),
			Replicas: 1,
		},
		History: History{
			ClickHouse:    ClickHouse{Database: "hookgate", Username: "default"},
			BatchRows:     10000,
			FlushInterval: Duration(time.Second),
			Retention:     Duration(2160 * time.Hour),
			MaxBodyBytes:  64 << 10,
			SpoolMaxBytes: 1 << 30,
			FileMaxBytes:  100 << 20,
		},
		Retry: Retry{
			Schedule: durations(time.Minute, 5*time.Minute, time.Hour, 6*time.Hour, 24*time.Hour, 36*time.Hour, 48*time.Hour, 60*time.Hour, 72*time.Hour),
			Workers:  16,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

func durations(ds ...time.Duration) []Duration {
	out := make([]Duration, len(ds))
	for i, d := range ds {
		out[i] = Duration(d)
	}
	return out
}

// Load reads the YAML file at path (strictly: unknown keys are errors) over
// the defaults, applies HOOKGATE_* overrides from environ (os.Environ() in
// main), and fills per-entry defaults. It does not Validate (LoadValid
// does). An empty path means defaults plus environment.
func Load(path string, environ []string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		data, err = os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	return Parse(data, environ)
}

// LoadValid is Load followed by Validate, reporting the problems of both
// together: unknown keys and bad durations along with unknown providers,
// duplicate ids and missing secret references.
func LoadValid(path string, environ []string, known Known) (*Config, error) {
	cfg, problems, err := LoadChecked(path, environ, known)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return cfg, nil
}

// LoadChecked is LoadValid that also returns the config read when it has
// problems (for hookgate check, which goes on to its secrets). err is an
// error other than the config's problems (the file cannot be read).
func LoadChecked(path string, environ []string, known Known) (*Config, Problems, error) {
	cfg, err := Load(path, environ)
	var problems Problems
	if err != nil && !errors.As(err, &problems) {
		return nil, nil, err
	}
	if cfg == nil {
		return nil, problems, nil
	}
	var vp Problems
	if verr := cfg.Validate(known); errors.As(verr, &vp) {
		problems = append(problems, vp...)
	}
	if len(problems) > 0 {
		return cfg, problems, nil
	}
	if cfg.Bus.DedupWindow == 0 {
		cfg.Bus.DedupWindow = Duration(DefaultDedupWindow)
		if longest, _ := cfg.longestTolerance(known); longest > 0 {
			cfg.Bus.DedupWindow = Duration(max(DefaultDedupWindow, longest+DedupSkew))
		}
	}
	return cfg, nil, nil
}

// Parse is Load for YAML already in memory. On problems it returns them
// with the part of the configuration that could be read.
func Parse(data []byte, environ []string) (*Config, error) {
	cfg := Default()
	if addr := lookupEnv(environ, "VAULT_ADDR"); addr != "" {
		cfg.Secrets.Vault.Address = addr
	}
	var problems Problems
	if len(bytes.TrimSpace(data)) > 0 {
		problems = append(problems, decodeYAML(data, cfg)...)
	}
	cfg.fillDefaults() // before the environment, so it can override them
	problems = append(problems, applyEnv(cfg, environ)...)
	if len(problems) > 0 {
		return cfg, problems // what could be read, for LoadValid
	}
	return cfg, nil
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

var yamlLineErr = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeYAML decodes strictly and turns yaml.v3's "line N: ..." errors into
// problems located by key path.
func decodeYAML(data []byte, cfg *Config) Problems {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Problems{{Path: "", Message: "invalid YAML: " + err.Error()}}
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root)
	lines := map[int]string{}
	indexPaths(&root, "", lines)
	var out Problems
	for _, e := range te.Errors {
		p := Problem{Message: e}
		if m := yamlLineErr.FindStringSubmatch(e); m != nil {
			n, _ := strconv.Atoi(m[1])
			p.Path, p.Message = lines[n], m[2]
			if strings.HasPrefix(p.Message, "field ") && strings.Contains(p.Message, " not found in type ") {
				p.Message = "unknown key"
			}
		}
		out = append(out, p)
	}
	return out
}

// indexPaths records, for every line holding a key or a value, its key path.
func indexPaths(n *yaml.Node, path string, lines map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexPaths(c, path, lines)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			lines[k.Line] = p
			if _, taken := lines[v.Line]; !taken || v.Line != k.Line {
				lines[v.Line] = p
			}
			indexPaths(v, p, lines)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if _, taken := lines[c.Line]; !taken {
				lines[c.Line] = p
			}
			indexPaths(c, p, lines)
		}
	default:
		if _, taken := lines[n.Line]; !taken {
			lines[n.Line] = path
		}
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// UnmarshalYAML reads a duration; a bad one is reported with its line so
// that every problem of the file is listed at once.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	return nil
}

// applyEnv sets every HOOKGATE_* variable that names a key of the tree.
func applyEnv(cfg *Config, environ []string) Problems {
	fields := map[string]reflect.Value{}
	paths := map[string]string{}
	walkFields(reflect.ValueOf(cfg).Elem(), "", fields, paths)
	var problems Problems
	var names []string
	vals := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		names = append(names, k)
		vals[k] = v
	}
	sort.Strings(names)
	for _, k := range names {
		f, ok := fields[k]
		if !ok {
			continue // other tools' HOOKGATE_* variables (tests, scripts)
		}
		if err := setFromString(f, vals[k]); err != nil {
			problems = append(problems, Problem{Path: paths[k], Message: fmt.Sprintf("from %s: %v", k, err)})
		}
	}
	return problems
}

func walkFields(v reflect.Value, path string, fields map[string]reflect.Value, paths map[string]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fv := v.Field(i)
		p := joinPath(path, tag)
		addField(fv, p, fields, paths)
	}
}

func addField(fv reflect.Value, p string, fields map[string]reflect.Value, paths map[string]string) {
	env := EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "[", "_", "]", "").Replace(p))
	switch {
	case fv.Type() == reflect.TypeOf(Duration(0)):
		fields[env], paths[env] = fv, p
	case fv.Kind() == reflect.Struct:
		walkFields(fv, p, fields, paths)
	case fv.Kind() == reflect.Pointer && fv.Type().Elem().Kind() == reflect.Struct:
		if !fv.IsNil() {
			walkFields(fv.Elem(), p, fields, paths)
		}
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
		for j := 0; j < fv.Len(); j++ {
			walkFields(fv.Index(j), p+"["+strconv.Itoa(j)+"]", fields, paths)
		}
	case fv.Kind() == reflect.Map:
		// maps (options, params) are YAML-only
	default:
		fields[env], paths[env] = fv, p
	}
}

func setFromString(f reflect.Value, s string) error {
	if f.Kind() == reflect.Slice {
		parts := []string{}
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		out := reflect.MakeSlice(f.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setFromString(out.Index(i), p); err != nil {
				return err
			}
		}
		f.Set(out)
		return nil
	}
	if f.Type() == reflect.TypeOf(Duration(0)) {
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		f.Set(reflect.ValueOf(d))
		return nil
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", s)
		}
		f.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		f.SetFloat(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", s)
		}
		f.SetBool(b)
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// fillDefaults completes entries whose defaults depend on other keys.
func (c *Config) fillDefaults() {
	for i := range c.Portals {
		p := &c.Portals[i]
		if p.Rate == nil {
			p.Rate = &Rate{PerSecond: 2, Burst: 50}
		}
		if p.Timeout == 0 {
			p.Timeout = Duration(30 * time.Second)
		}
		if p.Retries == 0 {
			p.Retries = 3
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Deliver != nil && r.Deliver.Timeout == 0 {
			r.Deliver.Timeout = Duration(30 * time.Second)
		}
	}
}
