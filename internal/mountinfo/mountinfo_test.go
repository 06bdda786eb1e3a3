package mountinfo

import "testing"

func TestUnescape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`/plain`, "/plain"},
		{`/mnt/a\040b`, "/mnt/a b"},
		{`\011\012\134`, "\t\n\\"},
		{`/tab\011x\134y`, "/tab\tx\\y"},
		{`/trailing\04`, `/trailing\04`},
		{`/not\999octal`, `/not\999octal`},
		{`/not\9octal`, `/not\9octal`},
		{`/too\400big`, `/too\400big`},
	} {
		if got := Unescape(tt.in); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
