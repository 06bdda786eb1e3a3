//go:build !linux

package multicast

// gsoSupported: UDP GSO is Linux only; elsewhere packets go one by one.
const gsoSupported = false

func udpSegment(int) []byte { return nil }
