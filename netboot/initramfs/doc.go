// Package initramfs builds the goldcast initramfs and holds the code that
// runs inside it.
//
// A network-booting node loads a Linux kernel and this initramfs (see
// package ipxe for the iPXE script). Its /init is the goldcast binary
// itself, so the package has two halves:
//
//   - Build, on the server side, writes the archive: a compressed newc
//     cpio (the format the kernel unpacks into its rootfs) holding the
//     goldcast binary at /init, the kernel modules for virtio, common NICs
//     and disks together with their dependencies, the directories and
//     device nodes an early userspace needs, and any extra files.
//   - InitMain, on the node, is what goldcast runs as PID 1: it mounts
//     /proc, /sys and /dev, loads the modules, configures the first
//     Ethernet interface by DHCP, reports the machine to the server
//     (Report) and powers the machine off, every step logged to
//     /dev/console.
//
// # Layout of the archive
//
//	/init                              the goldcast binary (statically linked)
//	/etc/goldcast/modules              module files to load, in order, one path a line
//	/lib/modules/VERSION/kernel/...    those modules, as the kernel package ships them
//	/dev/console, /dev/null            character devices 5:1 and 1:3
//	/dev /proc /sys /run /tmp /etc     empty directories
//
// Modules keep their form: a .ko.xz, .ko.zst or .ko.gz stays compressed
// and InitMain asks the kernel to decompress it (finit_module with
// MODULE_INIT_COMPRESSED_FILE), decompressing zstd and gzip itself when
// the kernel cannot (kernels built without CONFIG_MODULE_DECOMPRESS,
// such as Debian 12's, whose modules are not compressed anyway).
//
// # Kernel command line
//
// InitMain reads its instructions from /proc/cmdline, where the iPXE
// script puts them:
//
//	goldcast.server=URL     the goldcast API (required), e.g. http://10.0.0.1:8080
//	goldcast.node=NAME      the node's name (required)
//	goldcast.token=TOKEN    the node's token, sent in the X-Goldcast-Node-Token header
//	goldcast.action=ACTION  what to do after the report: install or poweroff
//	                        (the default: power off; installing is not done yet),
//	                        reboot, or shell or rescue (stay up, doing nothing)
//
// The report goes to SERVER/api/v1/boot/report as JSON (see Report).
package initramfs
