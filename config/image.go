package config

import "strings"

// imageName returns the name part of an image reference, without checking
// it.
func imageName(ref string) string {
	name, _, _ := strings.Cut(ref, "@")
	return name
}
