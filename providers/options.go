package providers

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hookgate/hookgate/config"
)

// Kind is the type of a provider option's value. Options are strings in
// the config (sources[i].options); the kind says how they are read.
type Kind int

// The kinds of option values.
const (
	String   Kind = iota + 1 // any text
	Duration                 // "30s", "5m" or a bare number of seconds (config.Duration)
	Bool                     // true or false (strconv.ParseBool)
	Int                      // a decimal integer
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Duration:
		return "duration"
	case Bool:
		return "bool"
	case Int:
		return "int"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Option declares one option a provider reads from sources[i].options.
type Option struct {
	Name string
	Kind Kind
	Doc  string // one line for docs/configuration.md
}

// Options is the declaration of every option a provider takes. A provider
// declares it as an exported variable and reads a source's options with
// Parse, so that an unknown name or a bad value is a constructor error
// naming the option (*OptionError), which config validation and the admin
// API report at sources[i].options.<name>. A provider that takes no
// options declares an empty Options and still calls Parse: any option
// set on its sources is then reported as unknown.
type Options []Option

// OptionError is a problem with one option of a source: an unknown name,
// a bad value, or a value the constructor rejects. Constructors return it
// (alone or several in an errors.Join) so the problem is reported at the
// option's key path.
type OptionError struct {
	Option string // the option's name, the key under options
	Err    error
}

func (e *OptionError) Error() string { return "options." + e.Option + ": " + e.Err.Error() }

func (e *OptionError) Unwrap() error { return e.Err }

// ErrUnknownOption is wrapped by the OptionError of an option the provider
// does not declare.
var ErrUnknownOption = errors.New("unknown option")

// Parse reads set (a source's options) against the declaration. It reports
// every unknown name and every value that does not read as its kind at
// once, as *OptionError values joined with errors.Join. An empty value is
// the same as an unset option. Error messages never quote a value: an
// option may carry a credential.
func (o Options) Parse(set map[string]string) (Values, error) {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names) // problems in a stable order
	v := Values{}
	var errs []error
	for _, name := range names {
		s := set[name]
		opt, ok := o.lookup(name)
		if !ok {
			errs = append(errs, &OptionError{Option: name, Err: o.unknown()})
			continue
		}
		if s == "" {
			continue
		}
		val, err := opt.Kind.parse(s)
		if err != nil {
			errs = append(errs, &OptionError{Option: name, Err: err})
			continue
		}
		v[name] = val
	}
	return v, errors.Join(errs...)
}

func (o Options) lookup(name string) (Option, bool) {
	for _, opt := range o {
		if opt.Name == name {
			return opt, true
		}
	}
	return Option{}, false
}

func (o Options) unknown() error {
	if len(o) == 0 {
		return fmt.Errorf("%w (this provider takes none)", ErrUnknownOption)
	}
	names := make([]string, len(o))
	for i, opt := range o {
		names[i] = opt.Name
	}
	return fmt.Errorf("%w (known options: %s)", ErrUnknownOption, strings.Join(names, ", "))
}

func (k Kind) parse(s string) (any, error) {
	switch k {
	case String:
		return s, nil
	case Duration:
		var d config.Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return nil, errors.New(`want a duration such as "5m"`)
		}
		return d.D(), nil
	case Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	case Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return n, nil
	}
	return nil, fmt.Errorf("option of unknown kind %v", k)
}

// Values are a source's options as read by Options.Parse, by name. Each
// getter returns false when the option is unset or of another kind.
type Values map[string]any

// String returns a String option.
func (v Values) String(name string) (string, bool) { s, ok := v[name].(string); return s, ok }

// Duration returns a Duration option.
func (v Values) Duration(name string) (time.Duration, bool) {
	d, ok := v[name].(time.Duration)
	return d, ok
}

// Bool returns a Bool option.
func (v Values) Bool(name string) (bool, bool) { b, ok := v[name].(bool); return b, ok }

// Int returns an Int option.
func (v Values) Int(name string) (int, bool) { n, ok := v[name].(int); return n, ok }

// Problems turns the error of a Constructor into problems at key paths
// relative to the source's entry: options.<name> for each *OptionError
// (joined errors are split, wrapped ones unwrapped), "" with the whole
// message for anything else.
func Problems(err error) config.Problems {
	switch e := err.(type) {
	case nil:
		return nil
	case *OptionError:
		return config.Problems{{Path: "options." + e.Option, Message: e.Err.Error()}}
	case interface{ Unwrap() []error }:
		var ps config.Problems
		for _, inner := range e.Unwrap() {
			ps = append(ps, Problems(inner)...)
		}
		return ps
	case interface{ Unwrap() error }:
		if ps := Problems(e.Unwrap()); slices.ContainsFunc(ps, func(p config.Problem) bool { return p.Path != "" }) {
			return ps
		}
	}
	return config.Problems{{Message: err.Error()}}
}
