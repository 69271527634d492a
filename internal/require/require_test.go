package require

import "testing"

func TestRequired(t *testing.T) {
	for _, c := range []struct {
		env, need string
		want      bool
	}{
		{"", "root", false},
		{"all", "root", true},
		{"root,docker", "docker", true},
		{"root", "docker", false},
		{"all", "kernel:netem", false},
		{"all,kernel:netem", "kernel:netem", true},
	} {
		t.Setenv(Env, c.env)
		if got := Required(c.need); got != c.want {
			t.Errorf("with %s=%q, Required(%q) = %v, want %v", Env, c.env, c.need, got, c.want)
		}
	}
}
