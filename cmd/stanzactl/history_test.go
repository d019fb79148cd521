package main

import (
	"encoding/json"
	"testing"
)

func TestHistoryJSON(t *testing.T) {
	out, err := historyJSON("time,field,min,avg,max,readings\n2026-11-29T10:00:00.000Z,temperature,12.5,13.25,14,6\n2026-11-29T10:01:00.000Z,temperature,1e-3,2,3,1")
	if err != nil {
		t.Fatal(err)
	}
	var rows []historyRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0] != (historyRow{"2026-11-29T10:00:00.000Z", "temperature", 12.5, 13.25, 14, 6}) || rows[1].Min != 0.001 {
		t.Fatalf("rows = %+v", rows)
	}
	if _, err := historyJSON("time,field,min,avg,max,readings\n2026-11-29,t,1,2"); err == nil {
		t.Error("a short row was accepted")
	}
	if _, err := historyJSON("h\nt,f,x,1,1,1"); err == nil {
		t.Error("a bad number was accepted")
	}
}

func TestIsSpan(t *testing.T) {
	for s, want := range map[string]bool{"90m": true, "12h": true, "7d": true, "temperature": false, "d": false, "1h30m": true} {
		if isSpan(s) != want {
			t.Errorf("isSpan(%q) = %v", s, !want)
		}
	}
}
