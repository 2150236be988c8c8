// Package dashboards holds what analysts open on the history table: Grafana
// provisioning (a grafana-clickhouse-datasource datasource, a dashboards
// provider and three dashboards) and a library of named SQL queries. The
// files are embedded so that tests, and tools that want them, read the very
// files a Grafana installation is given.
//
// Expand turns a panel's SQL into what ClickHouse receives: Grafana's
// template variables first (the frontend does that), then the ClickHouse
// plugin's macros (its backend does that). See docs/analytics.md.
package dashboards

import (
	"bufio"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Files are the provisioning files, the dashboards and the query library,
// at their paths under dashboards/.
//
//go:embed grafana/provisioning/datasources/*.yaml grafana/provisioning/dashboards/*.yaml grafana/dashboards/*.json queries/*.sql
var Files embed.FS

// PluginType is the Grafana plugin id of the ClickHouse datasource every
// panel uses.
const PluginType = "grafana-clickhouse-datasource"

// DatasourceUID is the uid the provisioning gives the datasource; panels
// refer to it.
const DatasourceUID = "hookgate-clickhouse"

// AllValue is the value of the source and portal variables when "All" is
// chosen; the queries test for it.
const AllValue = "__all"

// Dashboard is the part of a Grafana dashboard model that tools read.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	File string `json:"-"` // path in Files
}

// DatasourceRef names a datasource by plugin type and uid.
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Panel is a dashboard panel; a row panel holds its collapsed panels.
type Panel struct {
	ID         int            `json:"id"`
	Title      string         `json:"title"`
	Type       string         `json:"type"`
	Datasource *DatasourceRef `json:"datasource"`
	Targets    []Target       `json:"targets"`
	Panels     []Panel        `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string         `json:"refId"`
	Datasource *DatasourceRef `json:"datasource"`
	EditorType string         `json:"editorType"`
	QueryType  string         `json:"queryType"`
	RawSQL     string         `json:"rawSql"`
}

// Variable is a template variable. For a query variable of the ClickHouse
// plugin Query is the SQL (the plugin also accepts an object with rawSql).
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *DatasourceRef  `json:"datasource"`
	RawQuery   json.RawMessage `json:"query"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

// SQL returns the variable's query text ("" for variables without SQL).
func (v Variable) SQL() string {
	var s string
	if json.Unmarshal(v.RawQuery, &s) == nil {
		if v.Type == "query" {
			return s
		}
		return ""
	}
	var q struct {
		RawSQL string `json:"rawSql"`
	}
	if json.Unmarshal(v.RawQuery, &q) == nil {
		return q.RawSQL
	}
	return ""
}

// Value returns the text of a constant, textbox or custom variable's query
// (its value), "" for others.
func (v Variable) Value() string {
	var s string
	if v.Type != "query" && json.Unmarshal(v.RawQuery, &s) == nil {
		return s
	}
	return ""
}

// AllPanels returns the dashboard's panels with the panels of rows flattened.
func (d Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Dashboards reads every dashboard JSON in Files, sorted by file name.
func Dashboards() ([]Dashboard, error) {
	names, err := fs.Glob(Files, "grafana/dashboards/*.json")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Dashboard
	for _, name := range names {
		b, err := Files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var d Dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("dashboards: %s: %w", name, err)
		}
		d.File = name
		out = append(out, d)
	}
	return out, nil
}

// Query is one named analyst query of the library (queries/*.sql).
type Query struct {
	Name    string // file name without .sql
	Comment string // the header comment, without the "--" markers
	SQL     string // the whole file, header included
}

// Queries reads the query library, sorted by name. Each file starts with a
// header of "--" comment lines saying what it answers.
func Queries() ([]Query, error) {
	names, err := fs.Glob(Files, "queries/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Query
	for _, name := range names {
		b, err := Files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		q := Query{Name: strings.TrimSuffix(path.Base(name), ".sql"), SQL: string(b)}
		var comment []string
		sc := bufio.NewScanner(strings.NewReader(q.SQL))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "--") {
				break
			}
			comment = append(comment, strings.TrimSpace(strings.TrimPrefix(line, "--")))
		}
		q.Comment = strings.TrimSpace(strings.Join(comment, "\n"))
		out = append(out, q)
	}
	return out, nil
}

// LibraryDatabase is the database the library queries name
// ("hookgate.exchanges"); ForDatabase points them elsewhere.
const LibraryDatabase = "hookgate"

// ForDatabase returns a library query's SQL with its table reference
// hookgate.exchanges replaced by database.exchanges.
func ForDatabase(sql, database string) string {
	if database == "" || database == LibraryDatabase {
		return sql
	}
	return strings.ReplaceAll(sql, LibraryDatabase+".exchanges", database+".exchanges")
}

// Context is what Grafana knows when it runs a panel's query: the time
// range, the panel's interval and the template variables' values.
type Context struct {
	From, To time.Time
	// Interval is the panel's $__interval (Grafana derives it from the
	// range and the panel's width); at least one second is used.
	Interval time.Duration
	// Vars are the template variables' current values by name.
	Vars map[string]string
}

// Expand returns sql as the ClickHouse plugin sends it to the server.
//
// First Grafana's template variables, as the frontend replaces them:
// $name, ${name} and ${name:format} for the formats raw, text,
// singlequote, sqlstring and doublequote, plus the global $__from and
// $__to (epoch milliseconds) and $__interval_ms. An unknown variable is an
// error here (Grafana would leave it in the SQL and ClickHouse would fail).
//
// Then the plugin's macros (pkg/macros of grafana/clickhouse-datasource,
// interpolated by grafana/sqlds with the pattern \$__name\b(?:\((.*?)\))?,
// arguments split at commas and trimmed):
//
//	$__timeFilter(c)      c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)
//	$__timeFilter_ms(c)   c >= fromUnixTimestamp64Milli(<from ms>) AND c <= fromUnixTimestamp64Milli(<to ms>)
//	$__dateFilter(c)      c >= toDate('<from>') AND c <= toDate('<to>')
//	$__timeInterval(c)    toStartOfInterval(toDateTime(c), INTERVAL <s> second)
//	$__timeInterval_ms(c) toStartOfInterval(toDateTime64(c, 3), INTERVAL <ms> millisecond)
//	$__interval_s         <s>
//	$__fromTime           toDateTime(<from s>)
//	$__toTime             toDateTime(<to s>)
//	$__fromTime_ms        fromUnixTimestamp64Milli(<from ms>)
//	$__toTime_ms          fromUnixTimestamp64Milli(<to ms>)
//
// where <s> is the interval in whole seconds (at least 1). The _ms forms
// need a modern server; the hookgate dashboards use the second forms only,
// which run on ClickHouse 18.16 too.
func Expand(sql string, c Context) (string, error) {
	out, err := expandVars(sql, c)
	if err != nil {
		return "", err
	}
	return expandMacros(out, c)
}

var varRE = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::([A-Za-z]+))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func expandVars(sql string, c Context) (string, error) {
	var bad []string
	out := varRE.ReplaceAllStringFunc(sql, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		name, format := sub[1], sub[2]
		if name == "" {
			name = sub[3]
		}
		var val string
		switch {
		case name == "__from":
			val = strconv.FormatInt(c.From.UnixMilli(), 10)
		case name == "__to":
			val = strconv.FormatInt(c.To.UnixMilli(), 10)
		case name == "__interval_ms":
			val = strconv.FormatInt(max(c.Interval.Milliseconds(), 1), 10)
		case strings.HasPrefix(name, "__"):
			return m // a plugin macro: the backend's turn
		default:
			v, ok := c.Vars[name]
			if !ok {
				bad = append(bad, name)
				return m
			}
			val = v
		}
		switch format {
		case "", "raw", "text":
			return val
		case "singlequote":
			return "'" + strings.ReplaceAll(val, "'", `\'`) + "'"
		case "sqlstring":
			return "'" + strings.ReplaceAll(val, "'", "''") + "'"
		case "doublequote":
			return `"` + strings.ReplaceAll(val, `"`, `\"`) + `"`
		}
		bad = append(bad, name+":"+format)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("dashboards: unknown template variables or formats: %s", strings.Join(bad, ", "))
	}
	return out, nil
}

type macro func(c Context, args []string) (string, error)

// macros in the order they are applied: a name that is a prefix of another
// comes after it, and \b keeps $__timeFilter off $__timeFilter_ms anyway.
var macroOrder = []string{
	"timeFilter_ms", "timeFilter", "dateTimeFilter", "dateFilter", "timeInterval_ms", "timeInterval",
	"interval_s", "fromTime_ms", "fromTime", "toTime_ms", "toTime",
}

var macroRE = func() map[string]*regexp.Regexp {
	m := map[string]*regexp.Regexp{}
	for _, name := range macroOrder {
		m[name] = regexp.MustCompile(`\$__` + name + `\b(?:\((.*?)\))?`)
	}
	return m
}()

func oneArg(name string, args []string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", fmt.Errorf("dashboards: $__%s expects 1 argument, got %d", name, len(args))
	}
	return args[0], nil
}

func seconds(c Context) int64 { return int64(math.Max(c.Interval.Seconds(), 1)) }

func dateTime(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
func dateTime64(t time.Time) string {
	return fmt.Sprintf("fromUnixTimestamp64Milli(%d)", t.UnixMilli())
}
func date(t time.Time) string { return fmt.Sprintf("toDate('%s')", t.UTC().Format("2006-01-02")) }

var macros = map[string]macro{
	"timeFilter": func(c Context, args []string) (string, error) {
		col, err := oneArg("timeFilter", args)
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, dateTime(c.From), col, dateTime(c.To)), err
	},
	"timeFilter_ms": func(c Context, args []string) (string, error) {
		col, err := oneArg("timeFilter_ms", args)
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, dateTime64(c.From), col, dateTime64(c.To)), err
	},
	"dateFilter": func(c Context, args []string) (string, error) {
		col, err := oneArg("dateFilter", args)
		return fmt.Sprintf("%s >= %s AND %s <= %s", col, date(c.From), col, date(c.To)), err
	},
	"dateTimeFilter": func(c Context, args []string) (string, error) {
		if len(args) != 2 {
			return "", fmt.Errorf("dashboards: $__dateTimeFilter expects 2 arguments, got %d", len(args))
		}
		return fmt.Sprintf("(%s >= %s AND %s <= %s) AND (%s >= %s AND %s <= %s)",
			args[0], date(c.From), args[0], date(c.To), args[1], dateTime(c.From), args[1], dateTime(c.To)), nil
	},
	"timeInterval": func(c Context, args []string) (string, error) {
		col, err := oneArg("timeInterval", args)
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", col, seconds(c)), err
	},
	"timeInterval_ms": func(c Context, args []string) (string, error) {
		col, err := oneArg("timeInterval_ms", args)
		return fmt.Sprintf("toStartOfInterval(toDateTime64(%s, 3), INTERVAL %d millisecond)", col, max(c.Interval.Milliseconds(), 1)), err
	},
	"interval_s":  func(c Context, _ []string) (string, error) { return strconv.FormatInt(seconds(c), 10), nil },
	"fromTime":    func(c Context, _ []string) (string, error) { return dateTime(c.From), nil },
	"toTime":      func(c Context, _ []string) (string, error) { return dateTime(c.To), nil },
	"fromTime_ms": func(c Context, _ []string) (string, error) { return dateTime64(c.From), nil },
	"toTime_ms":   func(c Context, _ []string) (string, error) { return dateTime64(c.To), nil },
}

func expandMacros(sql string, c Context) (string, error) {
	for _, name := range macroOrder {
		re := macroRE[name]
		var err error
		sql = re.ReplaceAllStringFunc(sql, func(m string) string {
			sub := re.FindStringSubmatch(m)
			var args []string
			if strings.HasSuffix(m, ")") && strings.Contains(m, "(") {
				for _, a := range strings.Split(sub[1], ",") {
					args = append(args, strings.TrimSpace(a))
				}
			}
			res, merr := macros[name](c, args)
			if merr != nil && err == nil {
				err = merr
			}
			return res
		})
		if err != nil {
			return "", err
		}
	}
	if i := strings.Index(sql, "$__"); i >= 0 {
		end := min(len(sql), i+30)
		return "", fmt.Errorf("dashboards: unknown macro at %q", sql[i:end])
	}
	return sql, nil
}
