// Package ref names images and their versions: the rules for an image
// name, and references of the form NAME, NAME@N and NAME@latest shared by
// the store, the configuration and every command.
package ref

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen is the longest image, group or override name allowed.
const MaxNameLen = 128

// ValidName reports whether name may name an image: 1 to MaxNameLen
// ASCII letters, digits, ".", "_" and "-", not starting with "." or "-".
// The error it returns says what is wrong and quotes name.
func ValidName(name string) error {
	return CheckName("image", name)
}

// CheckName applies the image name rules to a name of another kind
// ("group", "override"), which only changes the error text.
func CheckName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", kind)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s name %q is %d bytes long, more than %d", kind, name, len(name), MaxNameLen)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("%s name %q starts with %q", kind, name, name[0])
	}
	for _, r := range name {
		if !isAlnum(r) && r != '.' && r != '_' && r != '-' {
			return fmt.Errorf("%s name %q contains %q; only letters, digits, \".\", \"_\" and \"-\" are allowed", kind, name, r)
		}
	}
	return nil
}

// isAlnum reports whether r is an ASCII letter or digit.
func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// Parse splits an image reference, NAME, NAME@VERSION or NAME@latest,
// into the image name and the version it pins. VERSION must be a positive
// decimal integer without leading zeros; version is 0 when the reference
// pins none. The name is checked with ValidName.
func Parse(ref string) (name string, version int, err error) {
	name, v, pinned := strings.Cut(ref, "@")
	if err := ValidName(name); err != nil {
		return "", 0, fmt.Errorf("image reference %q: %w", ref, err)
	}
	if !pinned || v == "latest" {
		return name, 0, nil
	}
	version, err = parseVersion(v)
	if err != nil {
		return "", 0, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return name, version, nil
}

// parseVersion parses the VERSION part of an image reference.
func parseVersion(v string) (int, error) {
	if v == "" {
		return 0, errors.New("version after \"@\" is empty")
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("version %q is not a positive integer", v)
		}
	}
	if v[0] == '0' {
		return 0, fmt.Errorf("version %q is not a positive integer without leading zeros", v)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("version %q: %w", v, err)
	}
	return n, nil
}
