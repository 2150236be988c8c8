package bitrix24test

import "testing"

func TestSeedDemo(t *testing.T) {
	s := NewServer()
	s.SeedDemo()
	for _, e := range []string{"deal", "contact", "lead"} {
		if n := s.Count(e); n != 3 {
			t.Errorf("Count(%s) = %d; want 3", e, n)
		}
	}
	deal := s.Item("deal", 1)
	if deal == nil || deal["TITLE"] == "" || deal["CONTACT_ID"] != "1" {
		t.Errorf("deal 1 = %v; want a title and contact 1", deal)
	}
	if c := s.Item("contact", 1); c == nil || c["LAST_NAME"] == nil {
		t.Errorf("contact 1 = %v; want a name", c)
	}
	if ids := s.SeedDeals(1); len(ids) != 1 || ids[0] != 4 {
		t.Errorf("SeedDeals after the demo = %v; want [4]", ids)
	}
}
