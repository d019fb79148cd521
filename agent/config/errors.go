package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is one problem in a config file.
type Error struct {
	File string
	Line int    // 1-based; 0 when unknown
	Key  string // full path such as "device[2].pin"; "" for the file as a whole
	Msg  string
}

// Error formats e as "file:line: key: msg", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		} else {
			b.WriteString("line ")
		}
		b.WriteString(strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config file, in line order.
type Errors []*Error

// Error returns one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// index maps key paths ("xmpp.jid", "device[1]", "device[1].pin",
// "acl.operators[0]") to the line they are written on, so that problems
// found after decoding still point at the line to fix.
type index struct {
	lines   map[string]int
	byLine  map[int][]entry // paths written on a line, in document order
	exprs   []span          // top-level key/values, for recovery
	nl      []int           // offsets of '\n'
	secrets []string        // inline password values, never to be shown
	spans   []span          // where each inline password value is written
	err     error           // syntax error
}

type entry struct{ path, bare string } // bare: without array indexes

type span struct {
	path       string
	start, end int
}

func newIndex(data []byte) *index {
	ix := &index{lines: make(map[string]int), byLine: make(map[int][]entry)}
	for i, c := range data {
		if c == '\n' {
			ix.nl = append(ix.nl, i)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	table := ""
	counts := make(map[string]int) // array-table path -> elements so far
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path, line := "", 0
			for it := e.Key(); it.Next(); {
				n := it.Node()
				if line == 0 {
					line = ix.line(int(n.Raw.Offset))
				}
				path = join(path, string(n.Data))
				if it.IsLast() && e.Kind == unstable.ArrayTable {
					i := counts[path]
					counts[path] = i + 1
					path += "[" + strconv.Itoa(i) + "]"
				} else if i := counts[path]; i > 0 { // [[a]] then [a.b]: a[last].b
					path += "[" + strconv.Itoa(i-1) + "]"
				}
			}
			table = path
			ix.add(path, line)
		case unstable.KeyValue:
			path := ix.keyValue(table, e, 0)
			ix.exprs = append(ix.exprs, span{path, int(e.Raw.Offset), int(e.Raw.Offset + e.Raw.Length)})
		}
	}
	ix.err = p.Error()
	return ix
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// add records path on line; the first line wins, but byLine keeps every
// occurrence so that a duplicate key can be named.
func (ix *index) add(path string, line int) {
	if _, ok := ix.lines[path]; !ok {
		ix.lines[path] = line
	}
	ix.byLine[line] = append(ix.byLine[line], entry{path, stripIndexes(path)})
}

// stripIndexes turns "device[2].pin" into "device.pin", as go-toml names it.
func stripIndexes(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	b := make([]byte, 0, len(path))
	for i := 0; i < len(path); i++ {
		if path[i] == '[' {
			if j := strings.IndexByte(path[i:], ']'); j > 0 {
				i += j
				continue
			}
		}
		b = append(b, path[i])
	}
	return string(b)
}

// keyValue indexes a key/value and what its value contains; it returns
// the key's path.
func (ix *index) keyValue(prefix string, kv *unstable.Node, depth int) string {
	path, line, last := prefix, 0, ""
	for it := kv.Key(); it.Next(); {
		n := it.Node()
		last = string(n.Data)
		path = join(path, last)
		line = ix.line(int(n.Raw.Offset))
		ix.add(path, line)
	}
	v := kv.Value()
	if last == "password" && v.Kind == unstable.String && len(v.Data) > 0 {
		ix.secrets = append(ix.secrets, string(v.Data))
		if v.Raw.Length > 0 {
			ix.spans = append(ix.spans, span{path, int(v.Raw.Offset), int(v.Raw.Offset + v.Raw.Length)})
		}
	}
	ix.value(path, v, line, depth)
	return path
}

func (ix *index) value(path string, v *unstable.Node, line, depth int) {
	if depth > 32 { // nothing in the schema nests this deep
		return
	}
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			ix.keyValue(path, it.Node(), depth+1)
		}
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); i++ {
			n, l := it.Node(), line
			if n.Raw.Length > 0 { // nested arrays carry no range
				l = ix.line(int(n.Raw.Offset))
			}
			p := path + "[" + strconv.Itoa(i) + "]"
			ix.add(p, l)
			ix.value(p, n, l, depth+1)
		}
	}
}

func (ix *index) line(offset int) int { return sort.SearchInts(ix.nl, offset) + 1 }

// offset converts go-toml's 1-based row and byte column to an offset.
func (ix *index) offset(row, col int) int {
	if row < 1 || row > len(ix.nl)+1 {
		return -1
	}
	start := 0
	if row > 1 {
		start = ix.nl[row-2] + 1
	}
	return start + col - 1
}

// has reports whether key is written in the file.
func (ix *index) has(key string) bool {
	_, ok := ix.lines[key]
	return ok
}

// at returns the line of key or, for a key that is not written, of the
// nearest enclosing table or array that is; else 0.
func (ix *index) at(key string) int {
	for ; key != ""; key = parent(key) {
		if l, ok := ix.lines[key]; ok {
			return l
		}
	}
	return 0
}

// parent returns "device[1]" for "device[1].pin", "sink[0].devices" for
// "sink[0].devices[2]", and "" for "xmpp".
func parent(key string) string { return key[:max(strings.LastIndexAny(key, ".["), 0)] }

// pathAt names the key go-toml reports on a line: go-toml leaves out
// array indexes, and names a duplicate key without its table.
func (ix *index) pathAt(line int, key []string) string {
	want := strings.Join(key, ".")
	var suffix string
	for _, e := range ix.byLine[line] {
		switch {
		case e.bare == want:
			return e.path
		case suffix == "" && want != "" && strings.HasSuffix(e.bare, "."+want):
			suffix = e.path
		}
	}
	if suffix != "" {
		return suffix
	}
	return want
}

// exprAt returns the top-level key/value that holds offset.
func (ix *index) exprAt(offset int) *span {
	i := sort.Search(len(ix.exprs), func(i int) bool { return ix.exprs[i].end > offset })
	if i < len(ix.exprs) && ix.exprs[i].start <= offset {
		return &ix.exprs[i]
	}
	return nil
}

// checker collects problems and warnings. With no index (a Config built
// in code) there are no lines, and "written in the file" means "non-zero".
type checker struct {
	file string
	ix   *index
	errs Errors
	warn []string
	done map[string]bool // keys with a decode error: don't report them twice
}

func newChecker(data []byte, file string) *checker {
	return &checker{file: file, ix: newIndex(data), done: make(map[string]bool)}
}

func (c *checker) add(key, format string, args ...any) {
	for k := key; k != ""; k = parent(k) {
		if c.done[k] {
			return
		}
	}
	line := 0
	if c.ix != nil {
		line = c.ix.at(key)
	}
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) warnf(format string, args ...any) {
	c.warn = append(c.warn, fmt.Sprintf(format, args...))
}

// has reports whether key is written in the file.
func (c *checker) has(key string) bool { return c.ix != nil && c.ix.has(key) }

// setKeys returns the TOML keys of struct v (at path prefix) that are set:
// written in the file, or without a file non-zero.
func (c *checker) setKeys(prefix string, v any) []string {
	rv := reflect.ValueOf(v)
	var keys []string
	for i := range rv.NumField() {
		k, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("toml"), ",")
		if k == "" || k == "-" {
			continue
		}
		if c.ix != nil && c.ix.has(prefix+"."+k) || c.ix == nil && !rv.Field(i).IsZero() {
			keys = append(keys, k)
		}
	}
	return keys
}

func (c *checker) oneOf(key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	c.add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// result returns the problems in line order, or nil.
func (c *checker) result() error {
	if len(c.errs) == 0 {
		return nil
	}
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	if c.ix != nil { // belt and braces: no message may carry a password
		for _, e := range c.errs {
			for _, s := range c.ix.secrets {
				if len(s) >= 3 {
					e.Msg = strings.ReplaceAll(e.Msg, s, redacted)
				}
			}
		}
	}
	return c.errs
}

// maxRecover bounds the decode retries for one document.
const maxRecover = 100

// decode decodes data strictly into v, a pointer to a struct, and reports
// go-toml's errors as c's. go-toml stops at the first bad value; to report
// every problem in one run, decode blanks out that key/value (keeping
// newlines, so lines stay put) and tries again. It returns false if v
// could not be decoded.
func (c *checker) decode(data []byte, v any) bool {
	buf := bytes.Clone(data)
	for tries := 0; ; tries++ {
		err := decodeInto(buf, v)
		var strict *toml.StrictMissingError
		var de *toml.DecodeError
		var e *span
		switch {
		case err == nil:
			return true
		case errors.As(err, &strict):
			for i := range strict.Errors {
				se := &strict.Errors[i]
				row, _ := se.Position()
				msg := "unknown key"
				if strings.HasSuffix(se.Error(), "missing table") {
					msg = "unknown table"
				}
				c.fail(row, c.ix.pathAt(row, se.Key()), msg)
			}
			return true
		case errors.As(err, &de):
			row, col := de.Position()
			c.fail(row, c.ix.pathAt(row, de.Key()), decodeMsg(de))
			if c.ix.err == nil {
				e = c.ix.exprAt(c.ix.offset(row, col))
			}
		default: // an UnmarshalText error for a non-string value: no position
			if c.ix.err == nil {
				e = c.firstFailing(buf, v)
			}
			if e != nil {
				c.fail(c.ix.lines[e.path], e.path, err.Error())
			} else {
				c.fail(0, "", err.Error())
			}
		}
		if e == nil || tries == maxRecover || len(bytes.TrimSpace(buf[e.start:e.end])) == 0 {
			return false
		}
		for i := e.start; i < e.end; i++ {
			if buf[i] != '\n' && buf[i] != '\r' {
				buf[i] = ' '
			}
		}
		c.done[e.path] = true
	}
}

func decodeInto(data []byte, v any) error {
	reflect.ValueOf(v).Elem().SetZero()
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields().EnableUnmarshalerInterface() // Endpoints
	return dec.Decode(v)
}

// firstFailing finds the key/value go-toml stopped at when its error
// carries no position: decoding is sequential, so it ends the shortest
// prefix of whole key/values that fails.
func (c *checker) firstFailing(buf []byte, v any) *span {
	exprs := c.ix.exprs
	k := sort.Search(len(exprs), func(i int) bool {
		var strict *toml.StrictMissingError
		err := decodeInto(buf[:exprs[i].end], v)
		return err != nil && !errors.As(err, &strict)
	})
	if k == len(exprs) {
		return nil
	}
	return &exprs[k]
}

func (c *checker) fail(line int, key, msg string) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Key: key, Msg: msg})
	if key != "" {
		c.done[key] = true
	}
}

// mismatch splits go-toml's "cannot decode TOML <what> into [<...> of
// type ]<type>" as the expression
// ^cannot decode TOML (.+?) into (?:.* of type )?(\S+)$ would.
func mismatch(msg string) (what, typ string, ok bool) {
	rest, ok := strings.CutPrefix(msg, "cannot decode TOML ")
	if !ok {
		return "", "", false
	}
	const into, ofType = " into ", " of type "
	for i := 1; i < len(rest); {
		j := strings.Index(rest[i:], into)
		if j < 0 || strings.IndexByte(rest[:i+j], '\n') >= 0 {
			return "", "", false // . does not match a newline
		}
		what, after := rest[:i+j], rest[i+j+len(into):]
		if k := strings.LastIndex(after, ofType); k >= 0 && strings.IndexByte(after[:k], '\n') < 0 {
			if t := after[k+len(ofType):]; isWord(t) {
				return what, t, true
			}
		}
		if isWord(after) {
			return what, after, true
		}
		i += j + 1
	}
	return "", "", false
}

// isWord reports whether s is non-empty and has no white space (\S+).
func isWord(s string) bool {
	return s != "" && strings.IndexAny(s, " \t\n\f\r") < 0
}

// decodeMsg rewrites go-toml's message for people who write TOML, not Go.
func decodeMsg(de *toml.DecodeError) string {
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	what, t, ok := mismatch(msg)
	if !ok {
		return msg
	}
	want := "a " + t
	switch {
	case strings.HasPrefix(t, "[]"):
		want = "an array"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		want = "an integer"
	case strings.HasPrefix(t, "float"):
		want = "a number"
	case t == "bool":
		want = "true or false"
	case t == "string" || t == "config.Secret":
		want = "a string"
	case t == "config.Duration":
		want = `a duration string such as "30s"`
	case t == "config.Size":
		want = `a size such as "16MiB"`
	case strings.HasPrefix(t, "config.") || strings.HasPrefix(t, "*config."):
		want = "a table"
	}
	return fmt.Sprintf("got a TOML %s, want %s", what, want)
}
