module github.com/stanzad/stanzad

go 1.26.0

require (
	github.com/fsnotify/fsnotify v1.10.1
	github.com/pelletier/go-toml/v2 v2.4.3
	golang.org/x/sync v0.25.0
)

require golang.org/x/sys v0.13.0 // indirect
