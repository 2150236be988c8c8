package outbound

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hookgate/hookgate"
)

// EncodeParams encodes params the way Bitrix24 (PHP) reads a query string
// or urlencoded body, like PHP's http_build_query: nested maps become
// fields[TITLE]=x, slices get indices (select[0]=ID), keys are sorted at
// every level for a stable wire form. Booleans are 1/0; nil values and
// empty maps or slices are left out, as PHP does.
func EncodeParams(params map[string]any) (string, error) {
	var b strings.Builder
	if err := encodeMap(&b, "", reflect.ValueOf(params)); err != nil {
		return "", err
	}
	return b.String(), nil
}

func encodeMap(b *strings.Builder, prefix string, m reflect.Value) error {
	keys := m.MapKeys()
	names := make([]string, len(keys))
	byName := make(map[string]reflect.Value, len(keys))
	for i, k := range keys {
		names[i] = k.String()
		byName[names[i]] = m.MapIndex(k)
	}
	sort.Strings(names)
	for _, n := range names {
		key := n
		if prefix != "" {
			key = prefix + "[" + n + "]"
		}
		if err := encodeValue(b, key, byName[n]); err != nil {
			return err
		}
	}
	return nil
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	secretType = reflect.TypeFor[hookgate.Secret]()
	numberType = reflect.TypeFor[json.Number]()
)

func encodeValue(b *strings.Builder, key string, v reflect.Value) error {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return nil
	}
	switch v.Type() {
	case secretType:
		return fmt.Errorf("param %q: a hookgate.Secret is not sent as a parameter", key)
	case timeType:
		writePair(b, key, v.Interface().(time.Time).Format(time.RFC3339))
		return nil
	case numberType:
		writePair(b, key, v.String())
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		writePair(b, key, v.String())
	case reflect.Bool:
		if v.Bool() {
			writePair(b, key, "1")
		} else {
			writePair(b, key, "0")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		writePair(b, key, strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		writePair(b, key, strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		writePair(b, key, strconv.FormatFloat(v.Float(), 'f', -1, v.Type().Bits()))
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("param %q: map keys must be strings, not %s", key, v.Type().Key())
		}
		return encodeMap(b, key, v)
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return fmt.Errorf("param %q: byte slices are not supported", key)
		}
		for i := 0; i < v.Len(); i++ {
			if err := encodeValue(b, key+"["+strconv.Itoa(i)+"]", v.Index(i)); err != nil {
				return err
			}
		}
	default:
		if s, ok := v.Interface().(fmt.Stringer); ok {
			writePair(b, key, s.String())
			return nil
		}
		return fmt.Errorf("param %q: unsupported type %s", key, v.Type())
	}
	return nil
}

func writePair(b *strings.Builder, key, value string) {
	if b.Len() > 0 {
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(key))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(value))
}

// errMethod reports a REST method name that cannot be put in a URL path.
var errMethod = errors.New("outbound: bad method name")

func checkMethod(m string) error {
	if m == "" || strings.ContainsAny(m, "/?#% \t\r\n") {
		return fmt.Errorf("%w %q", errMethod, m)
	}
	return nil
}
