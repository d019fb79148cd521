package config

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is one problem in a config file.
type Error struct {
	File string
	Line int    // 0 if unknown
	Key  string // dotted path, e.g. "device[2].pin"; "" for the file as a whole
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config file, in line order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// index maps key paths ("xmpp.jid", "device[1].pin", "device[1]") to the
// line they are written on, so problems found after decoding still point
// at the line to fix.
type index struct {
	lines   map[string]int
	tables  map[string][]string // table → keys written directly in it
	headers []header            // table headers in document order
	nl      []int               // offsets of '\n'
}

type header struct {
	line int
	path string
}

func newIndex(data []byte) *index {
	ix := &index{lines: make(map[string]int), tables: make(map[string][]string)}
	for i, c := range data {
		if c == '\n' {
			ix.nl = append(ix.nl, i)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table string
	arrays := make(map[string]int)
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			name, line := ix.key(e.Key())
			if e.Kind == unstable.ArrayTable {
				n := arrays[name]
				arrays[name] = n + 1
				name = name + "[" + strconv.Itoa(n) + "]"
			}
			table = name
			ix.lines[name] = line
			ix.headers = append(ix.headers, header{line, name})
		case unstable.KeyValue:
			name, line := ix.key(e.Key())
			if !strings.Contains(name, ".") {
				ix.tables[table] = append(ix.tables[table], name)
			}
			if table != "" {
				name = table + "." + name
			}
			ix.lines[name] = line
		}
	}
	return ix
}

func (ix *index) key(it unstable.Iterator) (string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = ix.line(int(n.Raw.Offset))
		}
		parts = append(parts, string(n.Data))
	}
	return strings.Join(parts, "."), line
}

func (ix *index) line(offset int) int {
	return sort.SearchInts(ix.nl, offset) + 1
}

// at returns the line of key, else of the nearest enclosing table written
// in the file, else 0.
func (ix *index) at(key string) int {
	for key != "" {
		if l, ok := ix.lines[key]; ok {
			return l
		}
		if strings.HasSuffix(key, "]") { // "x.devices[2]": the line of x.devices
			key = key[:strings.LastIndexByte(key, '[')]
			continue
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// has reports whether key was written in the file.
func (ix *index) has(key string) bool {
	_, ok := ix.lines[key]
	return ok
}

// keysUnder returns the keys written directly in table prefix.
func (ix *index) keysUnder(table string) []string {
	return ix.tables[table]
}

// tableAt names the table that line belongs to (with array indexes).
func (ix *index) tableAt(line int) string {
	i := sort.Search(len(ix.headers), func(i int) bool { return ix.headers[i].line > line })
	if i == 0 {
		return ""
	}
	return ix.headers[i-1].path
}

// collector gathers problems with their lines.
type collector struct {
	file string
	ix   *index
	errs Errors
}

func (c *collector) add(key, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: c.ix.at(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *collector) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	sort.SliceStable(c.errs, func(i, j int) bool { return c.errs[i].Line < c.errs[j].Line })
	return c.errs
}

// decodeErrors turns go-toml's errors into ours: syntax and type errors
// carry a position; strict-mode errors list every unknown key.
func (c *collector) decodeErrors(err error) {
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case errors.As(err, &strict):
		for i := range strict.Errors {
			e := &strict.Errors[i]
			row, _ := e.Position()
			key := strings.Join(e.Key(), ".")
			if t := c.ix.tableAt(row); t != "" && !strings.HasPrefix(key, t) {
				// go-toml names array tables without their index.
				if k := e.Key(); len(k) > 0 {
					key = t + "." + k[len(k)-1]
				}
			}
			c.errs = append(c.errs, &Error{File: c.file, Line: row, Key: key, Msg: "unknown key"})
		}
	case errors.As(err, &de):
		row, _ := de.Position()
		key := strings.Join(de.Key(), ".")
		if key == "" {
			key = keyOnLine(c.ix, row)
		}
		c.errs = append(c.errs, &Error{File: c.file, Line: row, Key: key, Msg: de.Error()})
	default:
		c.errs = append(c.errs, &Error{File: c.file, Msg: err.Error()})
	}
}

// keyOnLine returns the key written on line, if exactly one is.
func keyOnLine(ix *index, line int) string {
	found := ""
	for k, l := range ix.lines {
		if l == line {
			if found != "" {
				return ""
			}
			found = k
		}
	}
	return found
}
