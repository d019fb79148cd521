package testserver

import (
	"bytes"
	"strings"
	"testing"
)

func TestCheckEjabberdOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     EjabberdOptions
		wantErr  string // substring; empty: valid
		wantNode string
	}{
		{name: "zero", opts: EjabberdOptions{}},
		{name: "node without host", opts: EjabberdOptions{NodeName: "n1"}, wantNode: "n1@localhost"},
		{name: "node with localhost", opts: EjabberdOptions{NodeName: "n1@localhost"}, wantNode: "n1@localhost"},
		{name: "node elsewhere", opts: EjabberdOptions{NodeName: "n1@example.com"}, wantErr: "node name"},
		{name: "node with quote", opts: EjabberdOptions{NodeName: "n'1"}, wantErr: "node name"},
		{name: "admin", opts: EjabberdOptions{Admins: []string{"alice@iot.test"}}},
		{name: "admin without domain", opts: EjabberdOptions{Admins: []string{"alice"}}, wantErr: "admin"},
		{name: "admin with quote", opts: EjabberdOptions{Admins: []string{`a"b@iot.test`}}, wantErr: "admin"},
		{name: "negative offline cap", opts: EjabberdOptions{MaxOfflineMessages: -1}, wantErr: "offline"},
		{name: "no shaper", opts: EjabberdOptions{C2SShaper: -1}},
		{name: "bad shaper", opts: EjabberdOptions{C2SShaper: -2}, wantErr: "shaper"},
		{name: "bad hash", opts: EjabberdOptions{PasswordHash: "MD5"}, wantErr: "password hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			err := checkEjabberdOptions(&opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("checkEjabberdOptions(%+v) = %v, want nil", tt.opts, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checkEjabberdOptions(%+v) = %v, want an error about %s", tt.opts, err, tt.wantErr)
			}
			if tt.wantNode != "" && opts.NodeName != tt.wantNode {
				t.Errorf("NodeName = %q, want %q", opts.NodeName, tt.wantNode)
			}
		})
	}
}

func TestCheckEjabberdDir(t *testing.T) {
	for _, dir := range []string{"/tmp/TestX123/001", "/tmp/a+b,c=d@e%f~g/001"} {
		if err := checkEjabberdDir(dir); err != nil {
			t.Errorf("checkEjabberdDir(%q) = %v, want nil", dir, err)
		}
	}
	for _, dir := range []string{"/tmp/a b", "/tmp/a'b", `/tmp/a"b`, `/tmp/a\b`, "/tmp/a*", "/tmp/a[1]", "/tmp/a\nb"} {
		if err := checkEjabberdDir(dir); err == nil {
			t.Errorf("checkEjabberdDir(%q) = nil, want an error", dir)
		}
	}
}

// TestEjabberdTemplate checks the rules each option writes; that ejabberd
// accepts them is the integration tests' business.
func TestEjabberdTemplate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ejabberdConfig
		want []string
		not  []string
	}{
		{
			name: "stock",
			cfg:  ejabberdConfig{},
			want: []string{"    5000: admin\n    100: all\n", "  c2s_shaper: # Debian's stock rule\n    none: admin\n    normal: all\n", `      - "" # nobody`},
			not:  []string{"mod_muc", "mod_pubsub", "c2s_test"},
		},
		{
			name: "caps",
			cfg:  ejabberdConfig{MaxOffline: 2, C2SShaper: 50000, Admins: []string{"a@iot.test"}, MUC: true, PubSub: true},
			want: []string{"  max_user_offline_messages: 2\n", "  c2s_test: 50000\n", "  c2s_shaper: c2s_test\n", `      - "a@iot.test"`, "  mod_muc:\n", "      - pep\n"},
			not:  []string{"100: all"},
		},
		{
			name: "no shaper",
			cfg:  ejabberdConfig{C2SShaper: -1},
			want: []string{"  c2s_shaper: none\n"},
			not:  []string{"normal: all"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := ejabberdTemplate.Execute(&b, tt.cfg); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("config lacks %q:\n%s", w, b.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(b.String(), n) {
					t.Errorf("config has %q:\n%s", n, b.String())
				}
			}
		})
	}
}
