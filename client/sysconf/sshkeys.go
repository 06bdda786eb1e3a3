package sysconf

import (
	"context"
	"path"
	"strings"
)

// sshKeys is the SSH host key step: unless KeepSSHKeys, it removes the
// image's /etc/ssh/ssh_host_* and runs `ssh-keygen -A -f ROOT` (the host's
// ssh-keygen) for new ones, then names the node in the public keys'
// comments. It skips, leaving the keys alone, when the image has no
// /etc/ssh, neither host keys nor sshd, or the host has no ssh-keygen.
func (c *configurer) sshKeys(ctx context.Context) error {
	if c.o.KeepSSHKeys {
		c.note("SSH host keys kept: the node's own are provided by an override")
		return nil
	}
	if !c.isDir("etc/ssh") || c.isSymlink("etc/ssh") {
		c.note("SSH host keys left out: the image has no /etc/ssh directory")
		return nil
	}
	names, err := c.listDir("etc/ssh")
	if err != nil {
		return err
	}
	var old []string
	for _, n := range names {
		if strings.HasPrefix(n, "ssh_host_") {
			old = append(old, path.Join("etc/ssh", n))
		}
	}
	if len(old) == 0 && !c.exists("usr/sbin/sshd") && !c.exists("sbin/sshd") {
		c.note("SSH host keys left out: the image has no SSH server")
		return nil
	}
	keygen, err := lookTool("ssh-keygen")
	if err != nil {
		c.note("SSH host keys kept as in the image: ssh-keygen is not installed on this host (Debian package openssh-client)")
		return nil
	}
	for _, rel := range old {
		if err := c.root.Remove(rel); err != nil {
			return err
		}
		c.changed(rel, "removed the image's host key")
	}
	if _, err := c.run(ctx, toolEnv(), keygen, "-A", "-f", c.dir); err != nil {
		return err
	}
	short, _, _ := c.o.Node.names()
	names, err = c.listDir("etc/ssh")
	if err != nil {
		return err
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "ssh_host_") {
			continue
		}
		rel := path.Join("etc/ssh", n)
		if short != "" && strings.HasSuffix(n, ".pub") {
			if err := c.renamePubKey(rel, "root@"+short); err != nil {
				return err
			}
		}
		c.changed(rel, "new host key")
	}
	return nil
}

// renamePubKey sets the comment of the public key in rel, which ssh-keygen
// -A takes from the host running it.
func (c *configurer) renamePubKey(rel, comment string) error {
	data, err := c.readFile(rel)
	if err != nil {
		return err
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return nil
	}
	_, err = c.writeFile(rel, []byte(f[0]+" "+f[1]+" "+comment+"\n"), 0o644)
	return err
}
