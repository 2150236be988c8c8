package history

import (
	"strings"

	"github.com/hookgate/hookgate"
)

// kind is how a column is typed, in ClickHouse and in a JSONEachRow line.
type kind uint8

const (
	kindString    kind = iota // String, LowCardinality(String), UUID: a JSON string
	kindTime                  // ts: DateTime64(3) / DateTime, text in UTC
	kindDirection             // direction: Enum8, by name
	kindUint16                // UInt16: a JSON number
	kindFloat32               // Float32: a JSON number
)

// column is one column of hookgate.exchanges. The table below is the only
// list of them: it makes the DDL, the INSERT's column list and values, and
// the JSONEachRow lines of NDJSON files and of the spool.
type column struct {
	name   string
	kind   kind
	modern string                           // type on a modern server (20.1 and later)
	codec  string                           // compression codec on a modern server, "" = default
	legacy string                           // type on an old server (18.16)
	str    func(*hookgate.Exchange) *string // kindString
	u16    func(*hookgate.Exchange) *uint16 // kindUint16
}

// columns are the columns of hookgate.exchanges in table order (SPEC.md,
// "History"). ts, direction and duration_ms are the only columns of their
// kinds.
var columns = [...]column{
	{name: "ts", kind: kindTime, modern: "DateTime64(3, 'UTC')", codec: "CODEC(Delta, ZSTD(1))", legacy: "DateTime('UTC')"},
	{name: "exchange_id", modern: "UUID", legacy: "UUID", str: func(x *hookgate.Exchange) *string { return &x.ExchangeID }},
	{name: "event_id", modern: "String", codec: "CODEC(ZSTD(1))", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.EventID }},
	{name: "direction", kind: kindDirection, modern: "Enum8('inbound' = 1, 'outbound' = 2)", legacy: "Enum8('inbound' = 1, 'outbound' = 2)"},
	{name: "source", modern: "LowCardinality(String)", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.Source }},
	{name: "provider", modern: "LowCardinality(String)", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.Provider }},
	{name: "event", modern: "LowCardinality(String)", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.Event }},
	{name: "operation", modern: "LowCardinality(String)", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.Operation }},
	{name: "http_method", modern: "String", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.HTTPMethod }},
	{name: "url", modern: "String", codec: "CODEC(ZSTD(1))", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.URL }},
	{name: "status", kind: kindUint16, modern: "UInt16", legacy: "UInt16", u16: func(x *hookgate.Exchange) *uint16 { return &x.Status }},
	{name: "outcome", modern: "LowCardinality(String)", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.Outcome }},
	{name: "error", modern: "String", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.Error }},
	{name: "attempt", kind: kindUint16, modern: "UInt16", legacy: "UInt16", u16: func(x *hookgate.Exchange) *uint16 { return &x.Attempt }},
	{name: "duration_ms", kind: kindFloat32, modern: "Float32", legacy: "Float32"},
	{name: "request_headers", modern: "String", codec: "CODEC(ZSTD(3))", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.RequestHeaders }},
	{name: "request_body", modern: "String", codec: "CODEC(ZSTD(3))", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.RequestBody }},
	{name: "response_body", modern: "String", codec: "CODEC(ZSTD(3))", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.ResponseBody }},
	{name: "remote_addr", modern: "String", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.RemoteAddr }},
	// migration 2 (addTraceID); new columns go last, added by a migration
	{name: "trace_id", modern: "String", codec: "CODEC(ZSTD(1))", legacy: "String", str: func(x *hookgate.Exchange) *string { return &x.TraceID }},
}

// Columns are the names of the columns of hookgate.exchanges, in table
// order. Inserts name them explicitly: ClickHouse 18.16 needs it.
var Columns = columnNames()

func columnNames() []string {
	names := make([]string, len(columns))
	for i := range columns {
		names[i] = columns[i].name
	}
	return names
}

// value is the column's value in x as the INSERT appends it.
func (c *column) value(x *hookgate.Exchange) any {
	switch c.kind {
	case kindTime:
		return x.TS
	case kindDirection:
		return x.Direction.String()
	case kindUint16:
		return *c.u16(x)
	case kindFloat32:
		return x.DurationMS
	}
	return *c.str(x)
}

// typ is the column's type in the DDL for a server of version v.
func (c *column) typ(v ServerVersion) string {
	if !v.Modern() {
		return c.legacy
	}
	if c.codec != "" {
		return c.modern + " " + c.codec
	}
	return c.modern
}

// SelectList is the columns of hookgate.exchanges as a SELECT lists them
// for ScanExchange: exchange_id and direction as text.
func SelectList() string {
	var b strings.Builder
	for i := range columns {
		if i > 0 {
			b.WriteString(", ")
		}
		switch c := &columns[i]; {
		case c.kind == kindDirection || c.modern == "UUID":
			b.WriteString("toString(" + c.name + ")")
		default:
			b.WriteString(c.name)
		}
	}
	return b.String()
}

// ScanExchange reads one row selected with SelectList into x, through
// scan (the Scan method of clickhouse-go's rows or row).
func ScanExchange(scan func(dest ...any) error, x *hookgate.Exchange) error {
	var dir string
	dest := make([]any, len(columns))
	for i := range columns {
		switch c := &columns[i]; c.kind {
		case kindString:
			dest[i] = c.str(x)
		case kindTime:
			dest[i] = &x.TS
		case kindDirection:
			dest[i] = &dir
		case kindUint16:
			dest[i] = c.u16(x)
		case kindFloat32:
			dest[i] = &x.DurationMS
		}
	}
	if err := scan(dest...); err != nil {
		return err
	}
	x.TS = x.TS.UTC()
	x.Direction = hookgate.ParseDirection(dir)
	return nil
}
