// Package layout holds no code: its test enforces the import rules of
// shared/DESIGN.md ("Layout"), so a forbidden import fails `make test`
// instead of waiting for a reviewer.
package layout
