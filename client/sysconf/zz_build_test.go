package sysconf

import (
	"testing"

	"github.com/goldcast/goldcast/internal/testtree"
)

func TestZZBuildBootable(t *testing.T) { t.Log(testtree.Bootable(t)) }
