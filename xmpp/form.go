package xmpp

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// NSData is XEP-0004 Data Forms.
const NSData = "jabber:x:data"

// Form types (XEP-0004 §3.1).
const (
	FormForm   = "form"
	FormSubmit = "submit"
	FormCancel = "cancel"
	FormResult = "result"
)

// Field types (XEP-0004 §3.3).
const (
	FieldBool        = "boolean"
	FieldFixed       = "fixed"
	FieldHidden      = "hidden"
	FieldJIDMulti    = "jid-multi"
	FieldJIDSingle   = "jid-single"
	FieldListMulti   = "list-multi"
	FieldListSingle  = "list-single"
	FieldTextMulti   = "text-multi"
	FieldTextPrivate = "text-private"
	FieldTextSingle  = "text-single"
)

// Limits on a parsed form. A form arrives inside an IQ that already passed
// the stream's stanza size limit; these keep a small stanza from making a
// handler loop over pathological shapes.
const (
	maxFormFields  = 64
	maxFieldValues = 256
	maxFieldOpts   = 256
	// maxTextLines bounds a text-multi field (or one without a type, which
	// may be one): a whole config file travels as one, a line per value.
	maxTextLines = 16384
)

// Form is a XEP-0004 data form.
type Form struct {
	Type         string // form, submit, cancel, result
	Title        string
	Instructions []string
	Fields       []FormField
}

// FormField is one <field/>.
type FormField struct {
	Var      string
	Type     string // empty means text-single (XEP-0004 §3.3)
	Label    string
	Desc     string
	Required bool
	Values   []string
	Options  []FormOption
}

// FormOption is an option of a list-single or list-multi field.
type FormOption struct {
	Label, Value string
}

// ErrForm is wrapped by every form parsing and validation error.
var ErrForm = errors.New("bad form")

// ParseForm parses an <x xmlns='jabber:x:data'/> element. It checks the
// structure (types, duplicate vars, limits), not the values against a
// template: see Form.Check.
func ParseForm(x *Element) (*Form, error) {
	if x == nil || x.Space != NSData || x.Name != "x" {
		return nil, fmt.Errorf("%w: not a jabber:x:data <x/>", ErrForm)
	}
	f := &Form{Type: x.Attr("type")}
	switch f.Type {
	case FormForm, FormSubmit, FormCancel, FormResult:
	default:
		return nil, fmt.Errorf("%w: type %q", ErrForm, f.Type)
	}
	for _, c := range x.Children {
		if c.Space != NSData {
			continue // extensions such as XEP-0122 validation are ignored
		}
		switch c.Name {
		case "title":
			f.Title = c.Text
		case "instructions":
			f.Instructions = append(f.Instructions, c.Text)
		case "field":
			if len(f.Fields) == maxFormFields {
				return nil, fmt.Errorf("%w: more than %d fields", ErrForm, maxFormFields)
			}
			fld, err := parseField(c)
			if err != nil {
				return nil, err
			}
			if fld.Var != "" && f.Field(fld.Var) != nil {
				return nil, fmt.Errorf("%w: field %q appears twice", ErrForm, fld.Var)
			}
			f.Fields = append(f.Fields, fld)
		}
	}
	return f, nil
}

func parseField(c *Element) (FormField, error) {
	fld := FormField{Var: c.Attr("var"), Type: c.Attr("type"), Label: c.Attr("label")}
	switch fld.Type {
	case "", FieldBool, FieldFixed, FieldHidden, FieldJIDMulti, FieldJIDSingle, FieldListMulti,
		FieldListSingle, FieldTextMulti, FieldTextPrivate, FieldTextSingle:
	default:
		return fld, fmt.Errorf("%w: field %q has unknown type %q", ErrForm, fld.Var, fld.Type)
	}
	if fld.Var == "" && fld.Type != FieldFixed {
		return fld, fmt.Errorf("%w: a %s field without var", ErrForm, fld.kind())
	}
	for _, v := range c.Children {
		if v.Space != NSData {
			continue
		}
		switch v.Name {
		case "desc":
			fld.Desc = v.Text
		case "required":
			fld.Required = true
		case "value":
			if limit := fld.valueLimit(); len(fld.Values) == limit {
				return fld, fmt.Errorf("%w: field %q has more than %d values", ErrForm, fld.Var, limit)
			}
			fld.Values = append(fld.Values, v.Text)
		case "option":
			if len(fld.Options) == maxFieldOpts {
				return fld, fmt.Errorf("%w: field %q has more than %d options", ErrForm, fld.Var, maxFieldOpts)
			}
			fld.Options = append(fld.Options, FormOption{Label: v.Attr("label"), Value: v.ChildText(NSData, "value")})
		}
	}
	// A submitting entity may leave the type out (XEP-0004 §3.2); then
	// the offered form's type decides, in Check.
	if fld.Type != "" && !fld.multi() && len(fld.Values) > 1 {
		return fld, fmt.Errorf("%w: %s field %q has %d values", ErrForm, fld.kind(), fld.Var, len(fld.Values))
	}
	return fld, nil
}

// valueLimit is how many values the field may carry.
func (f *FormField) valueLimit() int {
	if f.Type == FieldTextMulti || f.Type == "" {
		return maxTextLines
	}
	return maxFieldValues
}

// kind is the field's type with the XEP-0004 default applied.
func (f *FormField) kind() string {
	if f.Type == "" {
		return FieldTextSingle
	}
	return f.Type
}

func (f *FormField) multi() bool {
	switch f.Type {
	case FieldJIDMulti, FieldListMulti, FieldTextMulti, FieldFixed:
		return true
	}
	return false
}

// Field returns the field named v, or nil.
func (f *Form) Field(v string) *FormField {
	if f == nil {
		return nil
	}
	for i := range f.Fields {
		if f.Fields[i].Var == v {
			return &f.Fields[i]
		}
	}
	return nil
}

// Value returns the first value of field v, or "".
func (f *Form) Value(v string) string {
	if fld := f.Field(v); fld != nil && len(fld.Values) > 0 {
		return fld.Values[0]
	}
	return ""
}

// Values returns the values of field v; text-multi lines are returned as
// they were sent, one value per line.
func (f *Form) Values(v string) []string {
	if fld := f.Field(v); fld != nil {
		return fld.Values
	}
	return nil
}

// FormError says which field of a submitted form is wrong and why.
type FormError struct {
	Var, Msg string
}

func (e *FormError) Error() string {
	return fmt.Sprintf("%s: %s", e.Var, e.Msg)
}

func (e *FormError) Unwrap() error { return ErrForm }

// Check validates a submitted form against the form f that was offered:
// every required field has a value, list values are among the options,
// booleans and JIDs parse, single-valued fields have one value. Fields
// the offered form does not have are refused, as are values for fixed
// fields. The error is a *FormError naming the first bad field.
func (f *Form) Check(sub *Form) error {
	if sub == nil || sub.Type != FormSubmit {
		return &FormError{Var: "form", Msg: "want a submitted form (type='submit')"}
	}
	for _, s := range sub.Fields {
		tf := f.Field(s.Var)
		if tf == nil || tf.Type == FieldFixed {
			return &FormError{Var: s.Var, Msg: "no such field"}
		}
		if err := tf.check(s.Values); err != nil {
			return err
		}
	}
	for _, tf := range f.Fields {
		if !tf.Required {
			continue
		}
		if s := sub.Field(tf.Var); s == nil || len(s.Values) == 0 || (len(s.Values) == 1 && strings.TrimSpace(s.Values[0]) == "") {
			return &FormError{Var: tf.Var, Msg: "required"}
		}
	}
	return nil
}

func (f *FormField) check(vals []string) error {
	bad := func(format string, args ...any) error {
		return &FormError{Var: f.Var, Msg: fmt.Sprintf(format, args...)}
	}
	if !f.multi() && len(vals) > 1 {
		return bad("takes one value, got %d", len(vals))
	}
	for _, v := range vals {
		switch f.kind() {
		case FieldBool:
			if _, err := ParseFormBool(v); err != nil {
				return bad("%q is not a boolean (true/false, 1/0)", v)
			}
		case FieldJIDSingle, FieldJIDMulti:
			if _, err := ParseJID(v); err != nil {
				return bad("%q is not a JID", v)
			}
		case FieldListSingle, FieldListMulti:
			if len(f.Options) > 0 && !slices.ContainsFunc(f.Options, func(o FormOption) bool { return o.Value == v }) {
				return bad("%q is not one of %s", v, f.optionList())
			}
		case FieldTextSingle, FieldTextPrivate:
			if strings.ContainsAny(v, "\r\n") {
				return bad("must be one line")
			}
		}
	}
	return nil
}

func (f *FormField) optionList() string {
	vals := make([]string, len(f.Options))
	for i, o := range f.Options {
		vals[i] = o.Value
	}
	return strings.Join(vals, ", ")
}

// ParseFormBool parses an xs:boolean as XEP-0004 §3.3 defines it.
func ParseFormBool(s string) (bool, error) {
	switch strings.TrimSpace(s) {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %q is not a boolean", ErrForm, s)
}

// Element encodes the form as <x xmlns='jabber:x:data'/>.
func (f *Form) Element() *Element {
	x := NewElement(NSData, "x", "type", f.Type)
	if f.Title != "" {
		x.Add(NewElement(NSData, "title").SetText(f.Title))
	}
	for _, in := range f.Instructions {
		x.Add(NewElement(NSData, "instructions").SetText(in))
	}
	for i := range f.Fields {
		fld := &f.Fields[i]
		e := NewElement(NSData, "field")
		e.SetAttr("var", fld.Var)
		e.SetAttr("type", fld.Type)
		e.SetAttr("label", fld.Label)
		if fld.Desc != "" {
			e.Add(NewElement(NSData, "desc").SetText(fld.Desc))
		}
		if fld.Required {
			e.Add(NewElement(NSData, "required"))
		}
		for _, v := range fld.Values {
			e.Add(NewElement(NSData, "value").SetText(v))
		}
		for _, o := range fld.Options {
			oe := NewElement(NSData, "option")
			oe.SetAttr("label", o.Label)
			e.Add(oe.Add(NewElement(NSData, "value").SetText(o.Value)))
		}
		x.Add(e)
	}
	return x
}
