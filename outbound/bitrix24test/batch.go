package bitrix24test

import "strconv"

// Nested returns how many commands to method ran inside batch requests
// (Requests counts the batch requests themselves under "batch").
func (s *Server) Nested(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nested[method]
}

// Bump increments the VERSION field of one stored item, as a change in
// the portal does before it sends its ONCRM*UPDATE event, and returns the
// new version (0 when there is no such item).
func (s *Server) Bump(entityName string, id int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.crm[entityName]
	if !ok {
		return 0
	}
	item, ok := e.items[id]
	if !ok {
		return 0
	}
	v, _ := strconv.Atoi(scalar(item["VERSION"]))
	v++
	item["VERSION"] = strconv.Itoa(v)
	item["DATE_MODIFY"] = s.now().Format("2006-01-02T15:04:05Z07:00")
	return v
}
