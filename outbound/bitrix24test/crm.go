package bitrix24test

import (
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// entity is one CRM entity type (deal, contact, lead).
type entity struct {
	name   string
	nextID int
	items  map[int]map[string]any
}

func newEntity(name string) *entity {
	return &entity{name: name, nextID: 1, items: map[int]map[string]any{}}
}

var errNotFound = &apiError{status: http.StatusBadRequest, code: "", description: "Not found"}

func errBadID() *apiError {
	return &apiError{status: http.StatusBadRequest, code: "", description: "ID is not defined or invalid."}
}

func errMethod() *apiError {
	return &apiError{status: http.StatusNotFound, code: CodeMethodNotFound, description: "Method not found!"}
}

// call runs a REST method for the webhook user. Batch may only run at the
// top level.
func (s *Server) call(user, method string, params *object, top bool) callResult {
	if method == "batch" {
		if !top {
			return callResult{err: &apiError{status: http.StatusMethodNotAllowed, code: CodeBatchMethod, description: "Method is not allowed for batch usage"}}
		}
		return s.batch(user, params)
	}
	parts := strings.Split(method, ".")
	if len(parts) != 3 || parts[0] != "crm" {
		return callResult{err: errMethod()}
	}
	s.mu.Lock()
	e, ok := s.crm[parts[1]]
	s.mu.Unlock()
	if !ok {
		return callResult{err: errMethod()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch parts[2] {
	case "get":
		return e.get(params)
	case "list":
		return e.list(params)
	case "add":
		return e.add(params, s.now())
	case "update":
		return e.update(params, s.now())
	}
	return callResult{err: errMethod()}
}

func readID(params *object) (int, bool) {
	v, ok := params.lookup("id", "ID")
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(strings.TrimSpace(scalar(v)))
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

func readFields(params *object) (map[string]any, bool) {
	v, ok := params.lookup("fields", "FIELDS")
	if !ok {
		return nil, false
	}
	m, ok := plain(v).(map[string]any)
	return m, ok
}

func (e *entity) get(params *object) callResult {
	id, ok := readID(params)
	if !ok {
		return callResult{err: errBadID()}
	}
	item, ok := e.items[id]
	if !ok {
		return callResult{err: errNotFound}
	}
	return callResult{result: copyItem(item)}
}

func copyItem(item map[string]any) map[string]any {
	out := make(map[string]any, len(item))
	for k, v := range item {
		out[k] = v
	}
	return out
}

func (e *entity) add(params *object, now time.Time) callResult {
	fields, ok := readFields(params)
	if !ok {
		return callResult{err: &apiError{status: http.StatusBadRequest, code: "", description: "Parameter 'fields' must be array."}}
	}
	id := e.insert(fields, now)
	return callResult{result: id}
}

func (e *entity) insert(fields map[string]any, now time.Time) int {
	id := e.nextID
	e.nextID++
	item := map[string]any{}
	for k, v := range fields {
		item[strings.ToUpper(k)] = v
	}
	item["ID"] = strconv.Itoa(id)
	stamp := now.Format(time.RFC3339)
	item["DATE_CREATE"] = stamp
	item["DATE_MODIFY"] = stamp
	e.items[id] = item
	return id
}

func (e *entity) update(params *object, now time.Time) callResult {
	id, ok := readID(params)
	if !ok {
		return callResult{err: errBadID()}
	}
	item, ok := e.items[id]
	if !ok {
		return callResult{err: errNotFound}
	}
	fields, ok := readFields(params)
	if !ok {
		return callResult{err: &apiError{status: http.StatusBadRequest, code: "", description: "Parameter 'fields' must be array."}}
	}
	for k, v := range fields {
		if strings.EqualFold(k, "ID") {
			continue
		}
		item[strings.ToUpper(k)] = v
	}
	item["DATE_MODIFY"] = now.Format(time.RFC3339)
	return callResult{result: true}
}

// filterTerm is one filter[<op><FIELD>]=value condition.
type filterTerm struct {
	field, op string
	values    []string
}

var filterOps = []string{">=", "<=", "!=", "!@", "=%", "%=", ">", "<", "=", "!", "@", "%"}

func parseFilter(v any) []filterTerm {
	obj, ok := v.(*object)
	if !ok {
		return nil
	}
	var terms []filterTerm
	for _, k := range obj.keys {
		op, field := "=", k
		for _, p := range filterOps {
			if strings.HasPrefix(k, p) {
				op, field = p, k[len(p):]
				break
			}
		}
		var vals []string
		if sub, ok := obj.vals[k].(*object); ok {
			for _, x := range list(sub) {
				vals = append(vals, scalar(x))
			}
		} else if l, ok := obj.vals[k].([]any); ok {
			for _, x := range l {
				vals = append(vals, scalar(x))
			}
		} else {
			vals = []string{scalar(obj.vals[k])}
		}
		terms = append(terms, filterTerm{field: strings.ToUpper(field), op: op, values: vals})
	}
	return terms
}

// compare orders a and b numerically when both are numbers, else as text.
func compare(a, b string) int {
	if c, ok := compareDates(a, b); ok { // sync.go
		return c
	}
	fa, ea := strconv.ParseFloat(a, 64)
	fb, eb := strconv.ParseFloat(b, 64)
	if ea == nil && eb == nil {
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func (t filterTerm) match(item map[string]any) bool {
	got := scalar(item[t.field])
	if _, isStr := item[t.field].(string); !isStr && item[t.field] != nil {
		got = ""
	}
	in := func() bool {
		for _, v := range t.values {
			if compare(got, v) == 0 {
				return true
			}
		}
		return false
	}
	want := ""
	if len(t.values) > 0 {
		want = t.values[0]
	}
	switch t.op {
	case "=", "@":
		return in()
	case "!=", "!", "!@":
		return !in()
	case ">":
		return compare(got, want) > 0
	case ">=":
		return compare(got, want) >= 0
	case "<":
		return compare(got, want) < 0
	case "<=":
		return compare(got, want) <= 0
	case "%":
		return strings.Contains(strings.ToLower(got), strings.ToLower(want))
	case "=%":
		return strings.HasPrefix(strings.ToLower(got), strings.ToLower(want))
	case "%=":
		return strings.HasSuffix(strings.ToLower(got), strings.ToLower(want))
	}
	return false
}

type orderTerm struct {
	field string
	desc  bool
}

func (e *entity) list(params *object) callResult {
	var terms []filterTerm
	if v, ok := params.lookup("filter", "FILTER"); ok {
		terms = parseFilter(v)
	}
	var order []orderTerm
	if v, ok := params.lookup("order", "ORDER"); ok {
		if obj, ok := v.(*object); ok {
			for _, k := range obj.keys {
				order = append(order, orderTerm{field: strings.ToUpper(k), desc: strings.EqualFold(scalar(obj.vals[k]), "DESC")})
			}
		}
	}
	order = append(order, orderTerm{field: "ID"})
	var sel []string
	if v, ok := params.lookup("select", "SELECT"); ok {
		for _, x := range list(v) {
			sel = append(sel, strings.ToUpper(scalar(x)))
		}
	}
	start := 0
	if v, ok := params.lookup("start", "START"); ok {
		n, err := strconv.Atoi(scalar(v))
		if err == nil {
			start = n
		}
	}

	ids := make([]int, 0, len(e.items))
	for id, item := range e.items {
		ok := true
		for _, t := range terms {
			if !t.match(item) {
				ok = false
				break
			}
		}
		if ok {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := e.items[ids[i]], e.items[ids[j]]
		for _, o := range order {
			c := compare(scalar(a[o.field]), scalar(b[o.field]))
			if c == 0 {
				continue
			}
			return (c < 0) != o.desc
		}
		return false
	})

	page := ids
	noCount := start < 0
	if noCount {
		start = 0
	}
	if start > len(page) {
		start = len(page)
	}
	page = page[start:]
	if len(page) > PageSize {
		page = page[:PageSize]
	}
	rows := make([]any, 0, len(page))
	for _, id := range page {
		rows = append(rows, project(e.items[id], sel))
	}
	res := callResult{result: rows}
	total := len(ids)
	if noCount {
		total = 0
		res.total = &total
		return res
	}
	res.total = &total
	if start+PageSize < len(ids) {
		next := start + PageSize
		res.next = &next
	}
	return res
}

func project(item map[string]any, sel []string) map[string]any {
	all := len(sel) == 0
	for _, f := range sel {
		if f == "*" {
			all = true
		}
	}
	if all {
		return copyItem(item)
	}
	out := map[string]any{}
	for _, f := range sel {
		if v, ok := item[f]; ok {
			out[f] = v
		}
	}
	return out
}

// batch runs cmd (an object or array of "method?query" strings) in order.
// Each command counts towards its own method's operating time (a method
// over its limit fails inside the batch with OPERATION_TIME_LIMIT and
// its time block) and has its own result_time.
func (s *Server) batch(user string, params *object) callResult {
	raw, ok := params.lookup("cmd", "CMD")
	var cmds *object
	isArray := false
	switch t := raw.(type) {
	case *object:
		cmds = t
		isArray = isList(t)
	case []any:
		cmds = newObject()
		for i, x := range t {
			cmds.set(strconv.Itoa(i), x)
		}
		isArray = true
	}
	if !ok || cmds == nil || len(cmds.keys) == 0 {
		return callResult{err: &apiError{status: http.StatusBadRequest, code: "", description: "Commands are not defined"}}
	}
	if len(cmds.keys) > MaxBatch {
		return callResult{err: &apiError{status: http.StatusBadRequest, code: CodeBatchLength, description: "Max batch length exceeded"}}
	}
	halt := false
	if v, ok := params.lookup("halt", "HALT"); ok {
		h := scalar(v)
		halt = h == "1" || strings.EqualFold(h, "true") || h == "Y"
	}

	results := map[string]any{}
	errs := map[string]any{}
	totals := map[string]any{}
	nexts := map[string]any{}
	times := map[string]any{}
	var resultList []any
	for _, key := range cmds.keys {
		start := s.now()
		cmd := scalar(cmds.vals[key])
		method, query, _ := strings.Cut(cmd, "?")
		method = trimFormat(method)
		sub := newObject()
		if err := parseQuery(sub, query); err != nil {
			errs[key] = map[string]any{"error": CodeInvalidRequest, "error_description": err.Error()}
			if halt {
				break
			}
			continue
		}
		substitute(sub, results, totals, nexts)
		var r callResult
		if resetAt, over := s.operatingExceeded(user, method, start); over && method != "batch" {
			r.err = &apiError{status: http.StatusTooManyRequests, code: CodeOperationTimeLimit, description: "Method is blocked due to operation time limit."}
			times[key] = s.timeBlock(start, user, method, resetAt)
		} else {
			r = s.call(user, method, sub, false)
			if method != "batch" {
				s.charge(user, method, start)
			}
			times[key] = s.timeBlock(start, user, method, time.Time{})
		}
		s.mu.Lock()
		s.nested[method]++
		s.mu.Unlock()
		if r.err != nil {
			errs[key] = map[string]any{"error": r.err.code, "error_description": r.err.description}
			if isArray {
				resultList = append(resultList, nil)
			}
			if halt {
				break
			}
			continue
		}
		results[key] = r.result
		if isArray {
			resultList = append(resultList, r.result)
		}
		if r.total != nil {
			totals[key] = *r.total
		}
		if r.next != nil {
			nexts[key] = *r.next
		}
	}
	var resultMember any = emptyOr(results)
	if isArray {
		if len(resultList) == 0 {
			resultMember = []any{}
		} else {
			resultMember = resultList
		}
	}
	return callResult{result: map[string]any{
		"result":       resultMember,
		"result_error": emptyOr(errs),
		"result_total": emptyOr(totals),
		"result_next":  emptyOr(nexts),
		"result_time":  emptyOr(times),
	}}
}

// emptyOr renders an empty map as [] (PHP's empty array), as Bitrix24 does.
func emptyOr(m map[string]any) any {
	if len(m) == 0 {
		return []any{}
	}
	return m
}

var refRE = regexp.MustCompile(`\$(result_total|result_next|result)\[([^\]]+)\]((?:\[[^\]]*\])*)`)

// substitute replaces $result[key][FIELD]... references in every string
// value of params with values from earlier commands.
func substitute(o *object, results, totals, nexts map[string]any) {
	for _, k := range o.keys {
		switch v := o.vals[k].(type) {
		case *object:
			substitute(v, results, totals, nexts)
		case string:
			if strings.Contains(v, "$result") {
				o.vals[k] = refRE.ReplaceAllStringFunc(v, func(m string) string {
					sm := refRE.FindStringSubmatch(m)
					src := results
					switch sm[1] {
					case "result_total":
						src = totals
					case "result_next":
						src = nexts
					}
					cur, ok := src[sm[2]]
					if !ok {
						return ""
					}
					for _, seg := range strings.Split(strings.Trim(sm[3], "[]"), "][") {
						if seg == "" {
							continue
						}
						switch c := cur.(type) {
						case map[string]any:
							cur = c[seg]
						case []any:
							i, err := strconv.Atoi(seg)
							if err != nil || i < 0 || i >= len(c) {
								return ""
							}
							cur = c[i]
						default:
							return ""
						}
					}
					switch c := cur.(type) {
					case map[string]any, []any:
						return ""
					default:
						return scalar(c)
					}
				})
			}
		}
	}
}

// Seed adds n items of entity ("deal", "contact", "lead") with generated
// fields and returns their ids.
func (s *Server) Seed(entityName string, n int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.crm[entityName]
	if !ok {
		panic("bitrix24test: unknown entity " + entityName)
	}
	now := s.now()
	ids := make([]int, 0, n)
	for i := 0; i < n; i++ {
		num := e.nextID
		fields := map[string]any{
			"TITLE":       strings.ToUpper(entityName[:1]) + entityName[1:] + " #" + strconv.Itoa(num),
			"OPPORTUNITY": strconv.Itoa(1000*(num%97+1)) + ".00",
			"CURRENCY_ID": "USD",
			"STAGE_ID":    []string{"NEW", "PREPARATION", "WON", "LOSE"}[num%4],
		}
		if entityName != "deal" {
			fields = map[string]any{
				"NAME":      "Name" + strconv.Itoa(num),
				"LAST_NAME": "Last" + strconv.Itoa(num),
			}
		}
		ids = append(ids, e.insert(fields, now))
	}
	return ids
}

// SeedDeals adds n deals.
func (s *Server) SeedDeals(n int) []int { return s.Seed("deal", n) }

// SeedContacts adds n contacts.
func (s *Server) SeedContacts(n int) []int { return s.Seed("contact", n) }

// SeedLeads adds n leads.
func (s *Server) SeedLeads(n int) []int { return s.Seed("lead", n) }

// Item returns a copy of one stored item (values as the portal returns
// them), or nil.
func (s *Server) Item(entityName string, id int) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.crm[entityName]
	if !ok {
		return nil
	}
	item, ok := e.items[id]
	if !ok {
		return nil
	}
	return copyItem(item)
}

// Count returns how many items of entity are stored.
func (s *Server) Count(entityName string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.crm[entityName]; ok {
		return len(e.items)
	}
	return 0
}

// SeedDemo adds a small demo CRM: three contacts, three deals (each with
// one of the contacts) and three leads, so that a new portal answers
// crm.deal.get id=1 at once. On an empty simulator the ids are 1, 2, 3 for
// each entity. cmd/b24sim seeds it by default.
func (s *Server) SeedDemo() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	contacts := []map[string]any{
		{"NAME": "Anna", "LAST_NAME": "Petrova", "POST": "Head of purchasing", "COMPANY_TITLE": "Acme Ltd",
			"PHONE": []any{map[string]any{"VALUE": "+1 555 0100", "VALUE_TYPE": "WORK"}},
			"EMAIL": []any{map[string]any{"VALUE": "anna.petrova@acme.example", "VALUE_TYPE": "WORK"}}},
		{"NAME": "Boris", "LAST_NAME": "Ivanov", "POST": "CTO", "COMPANY_TITLE": "Globex",
			"PHONE": []any{map[string]any{"VALUE": "+1 555 0101", "VALUE_TYPE": "WORK"}},
			"EMAIL": []any{map[string]any{"VALUE": "b.ivanov@globex.example", "VALUE_TYPE": "WORK"}}},
		{"NAME": "Clara", "LAST_NAME": "Schmidt", "POST": "Office manager", "COMPANY_TITLE": "Initech",
			"PHONE": []any{map[string]any{"VALUE": "+1 555 0102", "VALUE_TYPE": "WORK"}},
			"EMAIL": []any{map[string]any{"VALUE": "clara@initech.example", "VALUE_TYPE": "WORK"}}},
	}
	var contactIDs []string
	for _, c := range contacts {
		contactIDs = append(contactIDs, strconv.Itoa(s.crm["contact"].insert(c, now)))
	}
	deals := []map[string]any{
		{"TITLE": "Acme: website redesign", "STAGE_ID": "NEW", "OPPORTUNITY": "12500.00", "CURRENCY_ID": "USD", "CONTACT_ID": contactIDs[0]},
		{"TITLE": "Globex: 40 support licences", "STAGE_ID": "PREPARATION", "OPPORTUNITY": "31000.00", "CURRENCY_ID": "USD", "CONTACT_ID": contactIDs[1]},
		{"TITLE": "Initech: printer fleet", "STAGE_ID": "WON", "OPPORTUNITY": "7800.00", "CURRENCY_ID": "EUR", "CONTACT_ID": contactIDs[2]},
	}
	for _, d := range deals {
		s.crm["deal"].insert(d, now)
	}
	leads := []map[string]any{
		{"TITLE": "Inbound call: Umbrella Corp", "NAME": "Diego", "LAST_NAME": "Alvarez", "STATUS_ID": "NEW", "SOURCE_ID": "CALL"},
		{"TITLE": "Web form: Hooli", "NAME": "Emma", "LAST_NAME": "Larsen", "STATUS_ID": "IN_PROCESS", "SOURCE_ID": "WEB"},
		{"TITLE": "Trade show: Vandelay", "NAME": "Farid", "LAST_NAME": "Haddad", "STATUS_ID": "NEW", "SOURCE_ID": "TRADE_SHOW"},
	}
	for _, l := range leads {
		s.crm["lead"].insert(l, now)
	}
}
