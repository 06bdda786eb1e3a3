package sysconf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

// machineID is the machine-id step: a fresh random /etc/machine-id, and
// the same in /var/lib/dbus/machine-id when that is a regular file (it is
// usually a symbolic link to the first, then left alone).
func (c *configurer) machineID(context.Context) error {
	var id [16]byte
	rand.Read(id[:])
	content := []byte(hex.EncodeToString(id[:]) + "\n")
	if _, err := c.writeFile("etc/machine-id", content, 0o444); err != nil {
		return err
	}
	c.changed("etc/machine-id", "new machine ID "+string(content[:32]))
	if c.isRegular("var/lib/dbus/machine-id") {
		if _, err := c.writeFile("var/lib/dbus/machine-id", content, 0o444); err != nil {
			return err
		}
		c.changed("var/lib/dbus/machine-id", "same machine ID as /etc/machine-id")
	}
	return nil
}
