package xmpp

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// parseEl parses one element of a client stream.
func parseEl(t testing.TB, s string) *Element {
	t.Helper()
	el, err := parseOne(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return el
}

func parseOne(s string) (*Element, error) {
	r := newReader(strings.NewReader(header+s), 1<<16, 16)
	if _, err := r.header(); err != nil {
		return nil, err
	}
	return r.next()
}

const setForm = `<x xmlns='jabber:x:data' type='form'><title>Set</title><instructions>Pick one</instructions>
<field var='device' type='list-single' label='Device'><desc>writable devices</desc><required/>
<option label='Relay 1'><value>relay1</value></option><option><value>fan</value></option></field>
<field var='value' type='text-single'><required/></field>
<field var='confirm' type='boolean'><value>0</value></field>
<field var='who' type='jid-single'/>
<field var='devices' type='list-multi'><option><value>a</value></option><option><value>b</value></option></field>
<field type='fixed'><value>note</value></field></x>`

func TestParseForm(t *testing.T) {
	f, err := ParseForm(parseEl(t, setForm))
	if err != nil {
		t.Fatal(err)
	}
	if f.Type != FormForm || f.Title != "Set" || len(f.Instructions) != 1 || len(f.Fields) != 6 {
		t.Fatalf("form = %+v", f)
	}
	d := f.Field("device")
	if d == nil || !d.Required || d.Label != "Device" || d.Desc != "writable devices" ||
		!reflect.DeepEqual(d.Options, []FormOption{{"Relay 1", "relay1"}, {"", "fan"}}) {
		t.Errorf("device field = %+v", d)
	}
	if got := f.Value("confirm"); got != "0" {
		t.Errorf("Value(confirm) = %q", got)
	}
	// Round trip through the encoder.
	g, err := ParseForm(parseEl(t, f.Element().String()))
	if err != nil || !reflect.DeepEqual(f, g) {
		t.Errorf("round trip:\n%+v\n%+v (err %v)", f, g, err)
	}
}

func TestParseFormErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"wrong element", `<y xmlns='jabber:x:data' type='form'/>`, "not a jabber:x:data"},
		{"no type", `<x xmlns='jabber:x:data'/>`, `type ""`},
		{"unknown field type", `<x xmlns='jabber:x:data' type='submit'><field var='a' type='slider'/></x>`, "unknown type"},
		{"no var", `<x xmlns='jabber:x:data' type='submit'><field type='text-single'/></x>`, "without var"},
		{"duplicate", `<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>`, "twice"},
		{"two values", `<x xmlns='jabber:x:data' type='submit'><field var='a' type='text-single'><value>1</value><value>2</value></field></x>`, "2 values"},
		{"too many fields", `<x xmlns='jabber:x:data' type='submit'>` + strings.Repeat(`<field type='fixed'/>`, 65) + `</x>`, "more than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseForm(parseEl(t, tt.in))
			if err == nil || !errors.Is(err, ErrForm) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseForm = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestFormCheck(t *testing.T) {
	tmpl, err := ParseForm(parseEl(t, setForm))
	if err != nil {
		t.Fatal(err)
	}
	sub := func(fields string) *Form {
		f, err := ParseForm(parseEl(t, `<x xmlns='jabber:x:data' type='submit'>`+fields+`</x>`))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	dv := `<field var='device'><value>relay1</value></field><field var='value'><value>on</value></field>`
	tests := []struct{ name, fields, badVar string }{
		{"ok", dv, ""},
		{"ok all", dv + `<field var='confirm'><value>true</value></field><field var='who'><value>a@b.c</value></field>` +
			`<field var='devices'><value>a</value><value>b</value></field>`, ""},
		{"missing required", `<field var='device'><value>relay1</value></field>`, "value"},
		{"blank required", `<field var='device'><value>relay1</value></field><field var='value'><value> </value></field>`, "value"},
		{"not an option", `<field var='device'><value>pump</value></field><field var='value'><value>on</value></field>`, "device"},
		{"bad boolean", dv + `<field var='confirm'><value>yes</value></field>`, "confirm"},
		{"bad jid", dv + `<field var='who'><value>@@</value></field>`, "who"},
		{"bad multi option", dv + `<field var='devices'><value>c</value></field>`, "devices"},
		{"unknown field", dv + `<field var='extra'><value>1</value></field>`, "extra"},
		{"newline in single", `<field var='device'><value>relay1</value></field><field var='value'><value>a&#10;b</value></field>`, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tmpl.Check(sub(tt.fields))
			var fe *FormError
			switch {
			case tt.badVar == "" && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tt.badVar != "" && (!errors.As(err, &fe) || fe.Var != tt.badVar):
				t.Errorf("Check = %v, want a FormError for %q", err, tt.badVar)
			}
		})
	}
	if err := tmpl.Check(tmpl); err == nil {
		t.Error("Check accepted a form of type 'form' as a submission")
	}
}

func FuzzParseForm(f *testing.F) {
	f.Add(setForm)
	f.Add(`<x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</value></field></x>`)
	f.Add(`<x xmlns='jabber:x:data' type='result'><reported/><item/></x>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := parseOne(s)
		if err != nil {
			return
		}
		form, err := ParseForm(el)
		if err != nil {
			return
		}
		// What we parsed encodes to a form that parses back the same.
		el2, err := parseOne(form.Element().String())
		if err != nil {
			t.Fatalf("re-parse of encoded form: %v\n%s", err, form.Element())
		}
		form2, err := ParseForm(el2)
		if err != nil {
			t.Fatalf("ParseForm of encoded form: %v", err)
		}
		if !reflect.DeepEqual(form, form2) {
			t.Fatalf("round trip differs:\n%+v\n%+v", form, form2)
		}
		form.Check(form2) // must not panic
	})
}
